/*-------------------------------------------------------------------------
 *
 * ops.c
 *	  The operators' SQL entry points of dispatch: sweep(), which the
 *	  worker also runs on a schedule, retry(), and retry_dead(), which
 *	  retries dead payouts in bulk through retry().
 *
 * Both run in the caller's transaction, under the search_path their
 * declarations pin (pg_catalog, pg_temp), and wake the workers at commit.
 * Sent means maybe paid: sweep() fails and refunds only payouts that were
 * never sent; everything else it only puts back on the queue or asks the
 * processor about, and retry() keeps sent_at and the idempotency key.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/ops.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "args.h"
#include "audit.h"
#include "lifecycle.h"
#include "ops.h"
#include "shmem.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_retry);
PG_FUNCTION_INFO_V1(withdrawal_sweep);
PG_FUNCTION_INFO_V1(withdrawal_retry_dead);

/*
 * Pushes stuck payouts forward; runs in the caller's transaction and SPI
 * connection (the worker's, or sweep()'s).  Returns how many payouts it
 * moved.  older_than NULL skips failing the never-sent ones.  Which
 * payouts move is the SQL of _sweep_requeue() and _sweep_unsent()
 * (30_dispatch.sql); the failed ones move their money here, through the
 * lifecycle.
 */
int
WithdrawalSweep(Interval *older_than)
{
	static SPIPlanPtr requeue_plan = NULL;
	static SPIPlanPtr unsent_plan = NULL;
	Oid			requeue_types[2] = {INT4OID, INT4OID};
	Oid			unsent_types[1] = {INTERVALOID};
	Datum		values[2];
	bool		isnull;
	int			moved;
	int			n;
	int			i;
	pg_uuid_t  *ids;

	WithdrawalPrepare(&requeue_plan,
					  "SELECT withdrawal._sweep_requeue($1, $2)", 2, requeue_types);
	values[0] = Int32GetDatum(withdrawal_poll_after_seconds);
	values[1] = Int32GetDatum(withdrawal_park_after);
	WithdrawalExecute(requeue_plan, values, NULL, false, 1, SPI_OK_SELECT);
	moved = DatumGetInt32(WithdrawalSpiGet(0, 1, &isnull));

	/* the worker's scheduled sweep leaves failing to operators */
	if (older_than == NULL)
		return moved;
	WithdrawalPrepare(&unsent_plan,
					  "SELECT withdrawal_id FROM withdrawal._sweep_unsent($1) AS u(withdrawal_id)", 1, unsent_types);
	values[0] = IntervalPGetDatum(older_than);
	WithdrawalExecute(unsent_plan, values, NULL, false, 0, SPI_OK_SELECT);
	n = (int) SPI_processed;
	ids = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	for (i = 0; i < n; i++)
		ids[i] = *DatumGetUUIDP(WithdrawalSpiGet(i, 1, &isnull));
	for (i = 0; i < n; i++)
	{
		WithdrawalTransitionData data;

		memset(&data, 0, sizeof(data));
		data.action = "sweep_unsent";
		data.reason = "not dispatched in time (sweep)";
		data.last_error = "not dispatched in time (sweep)";
		data.invalid_ok = true;
		data.missing_ok = true;
		if (WithdrawalTransition(&ids[i], WITHDRAWAL_FAILED, &data, NULL))
			moved++;
	}
	return moved;
}

/*
 * sweep(older_than interval DEFAULT '4 hours'): ops call that pushes stuck
 * payouts forward; the worker runs it every withdrawal.sweep_interval.
 */
Datum
withdrawal_sweep(PG_FUNCTION_ARGS)
{
	Interval   *older_than;
	int			moved;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must not be null")));
	older_than = PG_GETARG_INTERVAL_P(0);
	if (older_than->time < 0 || older_than->day < 0 || older_than->month < 0 ||
		(older_than->time == 0 && older_than->day == 0 && older_than->month == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must be positive"),
				 errdetail("Payouts queued for less than older_than are left alone; zero would fail every payout not sent yet.")));

	SPI_connect();
	moved = WithdrawalSweep(older_than);
	SPI_finish();
	if (moved > 0)
		WithdrawalWakeWorkersAtCommit();
	PG_RETURN_INT32(moved);
}

/*
 * retry(withdrawal_id): ops call that puts a dead-lettered payout back on
 * the queue with a fresh attempt budget, or resumes a parked one; returns
 * the new status.  The payout is sent with the same idempotency key, and
 * sent_at, the fact that it may have reached the processor, stays.
 */
Datum
withdrawal_retry(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr reset_plan = NULL;
	static SPIPlanPtr unpark_plan = NULL;
	Oid			types[1] = {UUIDOID};
	Datum		values[1];
	pg_uuid_t  *id;
	char	   *status;
	bool		parked;
	bool		isnull;

	id = WithdrawalArgUuid(fcinfo, 0, "withdrawal_id");

	SPI_connect();
	WithdrawalSelectWithdrawal(&lock_plan,
							   "SELECT w.status, o.parked_at IS NOT NULL FROM withdrawal.withdrawal w"
							   "  LEFT JOIN withdrawal.outbox o ON o.withdrawal_id = w.withdrawal_id"
							   " WHERE w.withdrawal_id = $1 FOR NO KEY UPDATE OF w",
							   id, false, false);
	values[0] = UUIDPGetDatum(id);
	status = WithdrawalSpiGetText(0, 1);
	parked = DatumGetBool(WithdrawalSpiGet(0, 2, &isnull));

	if (strcmp(status, "dead") == 0)
	{
		WithdrawalTransitionData data;

		memset(&data, 0, sizeof(data));
		data.action = "retry";
		WithdrawalTransition(id, WITHDRAWAL_QUEUED, &data, NULL);
		WithdrawalPrepare(&reset_plan,
						  "UPDATE withdrawal.withdrawal SET attempts = 0 WHERE withdrawal_id = $1",
						  1, types);
		WithdrawalExecute(reset_plan, values, NULL, false, 0, SPI_OK_UPDATE);
		status = "queued";
	}
	else if (parked)
	{
		WithdrawalPrepare(&unpark_plan,
						  "UPDATE withdrawal.outbox SET parked_at = NULL, park_reason = NULL,"
						  " failures = 0, lease_until = NULL, claimed_by = NULL,"
						  " next_attempt_at = pg_catalog.now()"
						  " WHERE withdrawal_id = $1",
						  1, types);
		WithdrawalExecute(unpark_plan, values, NULL, false, 0, SPI_OK_UPDATE);
		WithdrawalAudit("retry_parked", NULL, id, NULL, status, status, NULL);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_WD_INVALID_TRANSITION),
				 errmsg("only a dead or parked withdrawal can be retried; %s is %s",
						WithdrawalUuidText(id), status)));
	SPI_finish();
	WithdrawalWakeWorkersAtCommit();
	PG_RETURN_TEXT_P(cstring_to_text(status));
}

/* Most payouts one retry_dead() call takes */
#define WITHDRAWAL_RETRY_DEAD_MAX_ROWS	100000

/*
 * The audit detail of a retry_dead() call: its filter and how many payouts
 * it retried.
 */
static Jsonb *
retry_dead_detail(Datum *filter, const char *filter_nulls, int64 retried)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[6] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, INT8OID};
	Datum		values[6];
	char		nulls[6];
	bool		isnull;

	WithdrawalPrepare(&plan,
					  "SELECT pg_catalog.jsonb_build_object('channel', $1, 'error_like', $2,"
					  " 'died_after', $3, 'died_before', $4, 'max_rows', $5, 'retried', $6)",
					  6, types);
	memcpy(values, filter, sizeof(Datum) * 5);
	memcpy(nulls, filter_nulls, 5);
	values[5] = Int64GetDatum(retried);
	nulls[5] = ' ';
	WithdrawalExecute(plan, values, nulls, true, 1, SPI_OK_SELECT);
	return DatumGetJsonbP(WithdrawalSpiGet(0, 1, &isnull));
}

/*
 * retry_dead(channel, error_like, died_after, died_before, dry_run,
 * max_rows): ops call that retries dead payouts in bulk, by a filter:
 * channel, a LIKE pattern on last_error, and when they died (the time of
 * their latest "dead" status event; died_after inclusive, died_before
 * exclusive), earliest death first, at most max_rows.  A dry run (the
 * default) lists them and changes nothing.
 *
 * Each payout goes through retry() itself, so the rules are those of one
 * retry: same idempotency key, sent_at kept, a fresh attempt budget, an
 * audit row "retry" each; one more audit row "retry_dead" records the
 * filter and the count, for every call that is not a dry run.  The rows are locked first, in withdrawal_id order
 * (the lock order of docs/lifecycle.md); one that is no longer dead when
 * its lock is granted (a webhook settled it meanwhile) is listed with
 * retried false and left alone.
 */
Datum
withdrawal_retry_dead(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr find_plan = NULL;
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr channel_plan = NULL;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			find_types[5] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID};
	Oid			lock_types[1] = {UUIDARRAYOID};
	Datum		filter[5];
	char		filter_nulls[5];
	char	   *channel;
	char	   *error_like;
	bool		dry_run;
	int32		max_rows;
	int			n;
	int			i;
	pg_uuid_t  *ids;
	char	  **channels;
	char	  **errors;
	Datum	   *died_at;
	bool	   *died_null;
	bool	   *locked;
	int64		retried = 0;

	/* the arguments, all checked before anything is read */
	channel = WithdrawalArgTextOrNull(fcinfo, 0, "channel", 63);
	error_like = WithdrawalArgTextOrNull(fcinfo, 1, "error_like", WITHDRAWAL_MAX_REASON);
	if (PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dry_run must not be null")));
	dry_run = PG_GETARG_BOOL(4);
	if (PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must not be null")));
	max_rows = PG_GETARG_INT32(5);
	if (max_rows < 1 || max_rows > WITHDRAWAL_RETRY_DEAD_MAX_ROWS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be between 1 and %d", WITHDRAWAL_RETRY_DEAD_MAX_ROWS)));
	if (!PG_ARGISNULL(2) && !PG_ARGISNULL(3) &&
		PG_GETARG_TIMESTAMPTZ(2) >= PG_GETARG_TIMESTAMPTZ(3))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("died_after must be earlier than died_before")));

	memset(filter_nulls, ' ', sizeof(filter_nulls));
	for (i = 0; i < 4; i++)
	{
		filter[i] = PG_GETARG_DATUM(i);
		filter_nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	filter[0] = channel ? CStringGetTextDatum(channel) : (Datum) 0;
	filter[1] = error_like ? CStringGetTextDatum(error_like) : (Datum) 0;
	filter[4] = Int32GetDatum(max_rows);

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();

	/* a channel that does not exist is a typo, not an empty filter */
	if (channel != NULL)
	{
		WithdrawalPrepare(&channel_plan,
						  "SELECT FROM withdrawal.channel WHERE name OPERATOR(pg_catalog.=) $1",
						  1, find_types);
		WithdrawalExecute(channel_plan, filter, NULL, true, 1, SPI_OK_SELECT);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
					 errmsg("unknown channel \"%s\"", channel)));
	}

	WithdrawalPrepareCustom(&find_plan,
							"SELECT w.withdrawal_id, w.channel, w.last_error, d.died_at"
							"  FROM withdrawal.withdrawal w"
							"  LEFT JOIN LATERAL (SELECT pg_catalog.max(e.at) AS died_at"
							"                       FROM withdrawal.status_event e"
							"                      WHERE e.withdrawal_id OPERATOR(pg_catalog.=) w.withdrawal_id"
							"                        AND e.status OPERATOR(pg_catalog.=) 'dead') d ON true"
							" WHERE w.status OPERATOR(pg_catalog.=) 'dead'"
							"   AND ($1 IS NULL OR w.channel OPERATOR(pg_catalog.=) $1)"
							"   AND ($2 IS NULL OR w.last_error OPERATOR(pg_catalog.~~) $2)"
							"   AND ($3 IS NULL OR d.died_at OPERATOR(pg_catalog.>=) $3)"
							"   AND ($4 IS NULL OR d.died_at OPERATOR(pg_catalog.<) $4)"
							" ORDER BY d.died_at NULLS FIRST, w.withdrawal_id"
							" LIMIT $5",
							5, find_types);
	WithdrawalExecute(find_plan, filter, filter_nulls, true, 0, SPI_OK_SELECT);

	n = (int) SPI_processed;
	ids = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	channels = palloc(sizeof(char *) * Max(n, 1));
	errors = palloc(sizeof(char *) * Max(n, 1));
	died_at = palloc(sizeof(Datum) * Max(n, 1));
	died_null = palloc(sizeof(bool) * Max(n, 1));
	locked = palloc0(sizeof(bool) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = *DatumGetUUIDP(WithdrawalSpiGet(i, 1, &isnull));
		channels[i] = WithdrawalSpiGetText(i, 2);
		errors[i] = WithdrawalSpiGetText(i, 3);
		died_at[i] = WithdrawalSpiGet(i, 4, &died_null[i]);
	}

	if (!dry_run)
	{
		Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
		Datum		values[1];
		int			j;

		for (i = 0; i < n; i++)
			elems[i] = UUIDPGetDatum(&ids[i]);

		/*
		 * Lock them all first, in id order; the status is checked again on
		 * the version the lock was granted on.
		 */
		WithdrawalPrepareCustom(&lock_plan,
								"SELECT withdrawal_id FROM withdrawal.withdrawal"
								" WHERE withdrawal_id OPERATOR(pg_catalog.=) ANY ($1)"
								"   AND status OPERATOR(pg_catalog.=) 'dead'"
								" ORDER BY withdrawal_id FOR NO KEY UPDATE",
								1, lock_types);
		values[0] = PointerGetDatum(construct_array(elems, n, UUIDOID, UUID_LEN,
													false, TYPALIGN_CHAR));
		if (n > 0)
			WithdrawalExecute(lock_plan, values, NULL, false, 0, SPI_OK_SELECT);
		for (j = 0; n > 0 && j < (int) SPI_processed; j++)
		{
			bool		isnull;
			pg_uuid_t  *id = DatumGetUUIDP(WithdrawalSpiGet(j, 1, &isnull));

			for (i = 0; i < n; i++)
				if (memcmp(&ids[i], id, UUID_LEN) == 0)
					locked[i] = true;
		}

		/* retry() itself, one payout at a time, under the locks taken */
		for (i = 0; i < n; i++)
		{
			if (!locked[i])
				continue;
			(void) DirectFunctionCall1(withdrawal_retry, UUIDPGetDatum(&ids[i]));
			retried++;
		}
		WithdrawalAudit("retry_dead", NULL, NULL, NULL, NULL, NULL,
						retry_dead_detail(filter, filter_nulls, retried));
	}

	for (i = 0; i < n; i++)
	{
		Datum		values[5];
		bool		nulls[5] = {false, false, errors[i] == NULL, died_null[i], false};

		values[0] = UUIDPGetDatum(&ids[i]);
		values[1] = CStringGetTextDatum(channels[i]);
		values[2] = errors[i] ? CStringGetTextDatum(errors[i]) : (Datum) 0;
		values[3] = died_at[i];
		values[4] = BoolGetDatum(locked[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
