/*-------------------------------------------------------------------------
 *
 * events.c
 *	  Status events for applications: the append-only table
 *	  withdrawal.status_event, the NOTIFY on channel withdrawal_status, and
 *	  their retention.
 *
 * Every change of a withdrawal's status, whoever makes it (a webhook, an
 * operator, the workers' set-based claims and submissions, the owner's
 * direct UPDATE), is an UPDATE of the row, so one AFTER UPDATE OF status
 * ROW trigger on withdrawal.withdrawal, fired only when the status
 * differs, is the single owner of those events.  A withdrawal's first
 * status is written by request() itself, in its one statement: an INSERT
 * trigger would also fire for the rows a restore of pg_dump's output
 * copies in, and give them a second history whose event ids collide with
 * the restored ones.  Each change writes one status_event row in its
 * transaction and, when withdrawal.notify_status is on, queues a NOTIFY
 * carrying the withdrawal id and the new status only, never an amount or
 * an account.
 *
 * NOTIFY is a setting because PostgreSQL serialises the commits of every
 * transaction that notified, cluster-wide, behind one lock held through
 * the commit's WAL flush (PreCommit_Notify); with durable commits that
 * costs concurrent request() callers their group commit (numbers in
 * docs/operations.md).  The table costs one row and two index entries.
 *
 * Rows are never updated; they are deleted only by prune_status_events(),
 * which keeps at least WITHDRAWAL_STATUS_EVENT_MIN_RETENTION of them and
 * every event of a withdrawal that is not final yet.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/events.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "args.h"
#include "audit.h"
#include "events.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_status_event_record);
PG_FUNCTION_INFO_V1(withdrawal_status_event_guard);
PG_FUNCTION_INFO_V1(withdrawal_prune_status_events);

/* The youngest events prune_status_events() may delete */
#define WITHDRAWAL_STATUS_EVENT_MIN_RETENTION	"1 day"

/*
 * True while prune_status_events() deletes: the guard trigger lets its
 * DELETE through and refuses every other.
 */
static bool pruning = false;

/*
 * The NOTIFY of a status change, when withdrawal.notify_status is on.
 */
void
WithdrawalStatusNotify(const pg_uuid_t *withdrawal_id, const char *status)
{
	/*
	 * Queued now, sent by PostgreSQL at commit and only then: a rolled back
	 * change notifies nobody.  Identical payloads in one transaction are
	 * folded into one, which is what a listener wants.
	 */
	if (withdrawal_notify_status)
		Async_Notify(WITHDRAWAL_STATUS_CHANNEL,
					 psprintf("%s %s", WithdrawalUuidText(withdrawal_id), status));
}

/*
 * Trigger status_event_record(): AFTER UPDATE OF status WHEN the status
 * changed, FOR EACH ROW on withdrawal.withdrawal.
 */
Datum
withdrawal_status_event_record(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	Oid			types[2] = {UUIDOID, TEXTOID};
	Datum		values[2];
	Datum		id;
	Datum		status;
	bool		id_null;
	bool		status_null;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		elog(ERROR, "withdrawal_status_event_record: must be fired after update, for each row");

	tupdesc = RelationGetDescr(trigdata->tg_relation);
	tuple = trigdata->tg_newtuple;
	id = heap_getattr(tuple, SPI_fnumber(tupdesc, "withdrawal_id"), tupdesc, &id_null);
	status = heap_getattr(tuple, SPI_fnumber(tupdesc, "status"), tupdesc, &status_null);
	if (id_null || status_null)
		elog(ERROR, "withdrawal_status_event_record: withdrawal without id or status");

	SPI_connect();
	WithdrawalPrepare(&plan,
					  "INSERT INTO withdrawal.status_event (withdrawal_id, status) VALUES ($1, $2)",
					  2, types);
	values[0] = id;
	values[1] = status;
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_INSERT);
	SPI_finish();

	WithdrawalStatusNotify(DatumGetUUIDP(id), TextDatumGetCString(status));
	return PointerGetDatum(NULL);
}

/*
 * Trigger status_event_guard(): BEFORE UPDATE OR DELETE FOR EACH ROW on
 * withdrawal.status_event.  Events are never changed, and deleted only by
 * prune_status_events(), even by the owner: a subscriber must be able to
 * trust that what it did not read yet is still there.
 */
Datum
withdrawal_status_event_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "withdrawal_status_event_guard: must be fired for each row");

	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) && pruning)
		return PointerGetDatum(trigdata->tg_trigtuple);

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("table \"%s\" is append-only",
					RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("Status events are never updated; they are deleted only by withdrawal.prune_status_events()."),
			 errhint("Schedule withdrawal.prune_status_events() to keep the table small.")));
	PG_RETURN_NULL();
}

/*
 * The audit detail of a prune: {"older_than": ..., "deleted": n}.
 */
static Jsonb *
prune_detail(Interval *older_than, int64 deleted)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INTERVALOID, INT8OID};
	Datum		values[2];
	bool		isnull;

	WithdrawalPrepare(&plan,
					  "SELECT pg_catalog.jsonb_build_object('older_than', $1::pg_catalog.text,"
					  " 'deleted', $2)",
					  2, types);
	values[0] = IntervalPGetDatum(older_than);
	values[1] = Int64GetDatum(deleted);
	WithdrawalExecute(plan, values, NULL, true, 1, SPI_OK_SELECT);
	return DatumGetJsonbP(WithdrawalSpiGet(0, 1, &isnull));
}

/*
 * prune_status_events(older_than interval) returns bigint: deletes the
 * events recorded more than older_than ago, which must be at least
 * WITHDRAWAL_STATUS_EVENT_MIN_RETENTION, except those of withdrawals that
 * are not final (review, queued, dispatching, submitted, dead): their
 * history stays whole, and retry_dead() finds when a payout died in it.
 * Returns how many were deleted and writes one audit row.
 */
Datum
withdrawal_prune_status_events(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INTERVALOID};
	Datum		values[1];
	Datum		minimum;
	Interval   *older_than;
	int64		deleted;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must not be null")));
	older_than = PG_GETARG_INTERVAL_P(0);
	minimum = DirectFunctionCall3(interval_in,
								  CStringGetDatum(WITHDRAWAL_STATUS_EVENT_MIN_RETENTION),
								  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	if (DatumGetBool(DirectFunctionCall2(interval_lt, IntervalPGetDatum(older_than), minimum)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must be at least %s", WITHDRAWAL_STATUS_EVENT_MIN_RETENTION),
				 errdetail("Subscribers that poll the table need time to read the events."),
				 errhint("Keep the events for longer than the longest outage of any subscriber, for example '30 days'.")));

	SPI_connect();
	WithdrawalPrepare(&plan,
					  "DELETE FROM withdrawal.status_event e"
					  " WHERE e.at < pg_catalog.now() - $1"
					  "   AND NOT EXISTS (SELECT FROM withdrawal.withdrawal w"
					  "                    WHERE w.withdrawal_id = e.withdrawal_id"
					  "                      AND w.status IN ('review', 'queued', 'dispatching',"
					  "                                       'submitted', 'dead'))",
					  1, types);
	values[0] = IntervalPGetDatum(older_than);
	pruning = true;
	PG_TRY();
	{
		WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_DELETE);
	}
	PG_FINALLY();
	{
		pruning = false;
	}
	PG_END_TRY();
	deleted = (int64) SPI_processed;

	WithdrawalAudit("prune_status_events", NULL, NULL, NULL, NULL, NULL,
					prune_detail(older_than, deleted));
	SPI_finish();
	PG_RETURN_INT64(deleted);
}
