/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  Withdrawal statuses, the documented transitions between them, and the
 *	  money movement and outbox change each transition implies.
 *
 * WithdrawalTransition() is the only code path that changes the status of
 * an existing withdrawal together with its money; the worker's claim and
 * its set-based record of accepted sends, which move no money, are the
 * two statements here that change many at once.  The status_guard trigger
 * refuses undocumented transitions even for statements that bypass it, and
 * the ledger's unique index refuses a second refund, settle or return.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/lifecycle.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "args.h"
#include "audit.h"
#include "ledger.h"
#include "lifecycle.h"
#include "shmem.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_status_guard);
PG_FUNCTION_INFO_V1(withdrawal_transition);
PG_FUNCTION_INFO_V1(withdrawal_status_info);

static const char *const status_names[WITHDRAWAL_STATUS_COUNT] = {
	[WITHDRAWAL_REVIEW] = "review",
	[WITHDRAWAL_QUEUED] = "queued",
	[WITHDRAWAL_DISPATCHING] = "dispatching",
	[WITHDRAWAL_SUBMITTED] = "submitted",
	[WITHDRAWAL_PAID] = "paid",
	[WITHDRAWAL_FAILED] = "failed",
	[WITHDRAWAL_REJECTED] = "rejected",
	[WITHDRAWAL_CANCELED] = "canceled",
	[WITHDRAWAL_RETURNED] = "returned",
	[WITHDRAWAL_DEAD] = "dead",
};

#define S(x) (1 << WITHDRAWAL_##x)

/* The documented transitions: allowed_to[from] is a bit set of targets */
static const int allowed_to[WITHDRAWAL_STATUS_COUNT] = {
	[WITHDRAWAL_REVIEW] = S(QUEUED) | S(REJECTED) | S(CANCELED),
	[WITHDRAWAL_QUEUED] = S(DISPATCHING) | S(CANCELED) | S(REJECTED) | S(FAILED),
	[WITHDRAWAL_DISPATCHING] = S(SUBMITTED) | S(PAID) | S(FAILED) | S(QUEUED) | S(DEAD),
	[WITHDRAWAL_SUBMITTED] = S(PAID) | S(FAILED) | S(QUEUED) | S(DEAD),
	[WITHDRAWAL_PAID] = S(RETURNED),
	[WITHDRAWAL_FAILED] = 0,
	[WITHDRAWAL_REJECTED] = 0,
	[WITHDRAWAL_CANCELED] = 0,
	[WITHDRAWAL_RETURNED] = 0,
	[WITHDRAWAL_DEAD] = S(QUEUED) | S(REJECTED) | S(PAID) | S(FAILED),
};

/* Statuses in which the withdrawal's amount is held in the wallet */
static const int holding = S(REVIEW) | S(QUEUED) | S(DISPATCHING) | S(SUBMITTED) | S(DEAD);

/* Statuses that keep an outbox row */
static const int in_outbox = S(QUEUED) | S(DISPATCHING);

#undef S

const char *
WithdrawalStatusName(WithdrawalStatus status)
{
	Assert(status >= 0 && status < WITHDRAWAL_STATUS_COUNT);
	return status_names[status];
}

int
WithdrawalStatusParse(const char *name)
{
	int			i;

	for (i = 0; i < WITHDRAWAL_STATUS_COUNT; i++)
		if (strcmp(status_names[i], name) == 0)
			return i;
	return -1;
}

bool
WithdrawalTransitionAllowed(WithdrawalStatus from, WithdrawalStatus to)
{
	return (allowed_to[from] & (1 << to)) != 0;
}

static void
raise_invalid_transition(const char *from, const char *to)
{
	ereport(ERROR,
			(errcode(ERRCODE_WD_INVALID_TRANSITION),
			 errmsg("invalid withdrawal status transition from \"%s\" to \"%s\"", from, to)));
}

/* Does moving from "from" to "to" give the held amount back to the wallet? */
static bool
refunds(int from, int to)
{
	return (to == WITHDRAWAL_FAILED || to == WITHDRAWAL_REJECTED ||
			to == WITHDRAWAL_CANCELED) && (holding & (1 << from));
}

/*
 * Sent means maybe paid (SPEC section 5): once a create request may have
 * reached the processor, the user can no longer cancel, and money goes
 * back to the wallet only with a proof that the processor did not and will
 * not pay.  Both the code paths and the status_guard trigger apply this.
 */
static void
check_sent_refund(const char *id_text, int from, int to, bool sent,
				  const char *refund_proof)
{
	if (!sent || !refunds(from, to))
		return;
	if (to == WITHDRAWAL_CANCELED)
		ereport(ERROR,
				(errcode(ERRCODE_WD_INVALID_TRANSITION),
				 errmsg("withdrawal %s may have reached the processor and can no longer be canceled",
						id_text),
				 errdetail("A payout request for it may have been sent; until the processor's answer is known, the funds stay held."),
				 errhint("It is refunded by itself if the processor declines or fails it.")));
	if (refund_proof == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WD_INVALID_TRANSITION),
				 errmsg("withdrawal %s may have reached the processor and cannot be refunded without proof that it was not paid",
						id_text),
				 errdetail("A payout request for it may have been sent; a timeout, a lost answer or an operator's decision is not proof."),
				 errhint("Once the processor confirms the outcome, two operators record it with withdrawal.resolve().")));
}

bool
WithdrawalTransition(const pg_uuid_t *withdrawal_id, WithdrawalStatus to,
					 const WithdrawalTransitionData *data,
					 WithdrawalStatus *from_out)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr update_plan = NULL;
	static SPIPlanPtr enqueue_plan = NULL;
	static SPIPlanPtr dequeue_plan = NULL;
	Oid			update_types[7] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID};
	Oid			enqueue_types[2] = {UUIDOID, TEXTOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	char	   *from_name;
	char	   *account_id;
	char	   *currency;
	char	   *channel;
	int64		amount;
	int64		returned;
	int			from;
	bool		sent;
	bool		isnull;

	Assert(data != NULL && data->action != NULL);

	if (!WithdrawalSelectWithdrawal(&lock_plan,
									"SELECT status, account_id, currency, amount, channel,"
									" sent_at IS NOT NULL, returned_amount"
									" FROM withdrawal.withdrawal WHERE withdrawal_id = $1"
									" FOR NO KEY UPDATE",
									withdrawal_id, false, data->missing_ok))
		return false;
	from_name = WithdrawalSpiGetText(0, 1);
	account_id = WithdrawalSpiGetText(0, 2);
	currency = WithdrawalSpiGetText(0, 3);
	amount = DatumGetInt64(WithdrawalSpiGet(0, 4, &isnull));
	channel = WithdrawalSpiGetText(0, 5);
	sent = DatumGetBool(WithdrawalSpiGet(0, 6, &isnull));
	returned = DatumGetInt64(WithdrawalSpiGet(0, 7, &isnull));
	from = WithdrawalStatusParse(from_name);
	if (from < 0)
		elog(ERROR, "withdrawal has unknown status \"%s\"", from_name);
	if (from_out)
		*from_out = (WithdrawalStatus) from;

	if (!WithdrawalTransitionAllowed(from, to))
	{
		if (data->invalid_ok)
			return false;
		raise_invalid_transition(from_name, WithdrawalStatusName(to));
	}

	check_sent_refund(WithdrawalUuidText(withdrawal_id), from, to, sent,
					  data->refund_proof);

	/* The money movement the transition implies, posted at most once. */
	if (to == WITHDRAWAL_PAID)
		WithdrawalPostMovement(WITHDRAWAL_MOVE_SETTLE, withdrawal_id,
							   account_id, currency, amount);
	else if (to == WITHDRAWAL_RETURNED)
	{
		/*
		 * What partial returns gave back is in the wallet already: the
		 * return is of the rest, and the once-only index still makes the
		 * whole return happen at most once.
		 */
		if (returned >= amount)
			elog(ERROR, "withdrawal returned in parts has nothing left to return");
		WithdrawalPostMovement(WITHDRAWAL_MOVE_RETURN, withdrawal_id,
							   account_id, currency, amount - returned);
	}
	else if (refunds(from, to))
		WithdrawalPostMovement(WITHDRAWAL_MOVE_REFUND, withdrawal_id,
							   account_id, currency, amount);

	/* The outbox holds exactly the payouts that still need dispatching. */
	values[0] = UUIDPGetDatum(withdrawal_id);
	if ((in_outbox & (1 << to)) && !(in_outbox & (1 << from)))
	{
		/*
		 * A dead payout may have a status query queued (sweep()): the send
		 * replaces it, with a fresh row.
		 */
		WithdrawalPrepare(&enqueue_plan,
						  "INSERT INTO withdrawal.outbox (withdrawal_id, channel) VALUES ($1, $2)"
						  " ON CONFLICT (withdrawal_id) DO UPDATE SET channel = excluded.channel,"
						  "  kind = 'send', next_attempt_at = excluded.next_attempt_at,"
						  "  enqueued_at = excluded.enqueued_at, lease_until = NULL, claimed_by = NULL,"
						  "  failures = 0, busy_answers = 0, parked_at = NULL, park_reason = NULL",
						  2, enqueue_types);
		values[1] = CStringGetTextDatum(channel);
		WithdrawalExecute(enqueue_plan, values, NULL, false, 0, SPI_OK_INSERT);
		WithdrawalWakeWorkersAtCommit();
	}
	else if (!(in_outbox & (1 << to)) && (in_outbox & (1 << from)))
	{
		WithdrawalPrepare(&dequeue_plan,
						  "DELETE FROM withdrawal.outbox WHERE withdrawal_id = $1",
						  1, update_types);
		WithdrawalExecute(dequeue_plan, values, NULL, false, 0, SPI_OK_DELETE);
	}

	WithdrawalPrepare(&update_plan,
					  "UPDATE withdrawal.withdrawal SET status = $2,"
					  " reason = coalesce($3, reason), processor_ref = coalesce($4, processor_ref),"
					  " last_error = coalesce($5, last_error),"
					  " refund_proof = coalesce($6, refund_proof), attempts = attempts - $7,"
					  " returned_amount = CASE WHEN $2 OPERATOR(pg_catalog.=) 'returned'"
					  "  THEN amount ELSE returned_amount END,"
					  " updated_at = pg_catalog.now()"
					  " WHERE withdrawal_id = $1",
					  7, update_types);
	values[1] = CStringGetTextDatum(WithdrawalStatusName(to));
	values[2] = data->reason ? CStringGetTextDatum(data->reason) : (Datum) 0;
	nulls[2] = data->reason ? ' ' : 'n';
	values[3] = data->processor_ref ? CStringGetTextDatum(data->processor_ref) : (Datum) 0;
	nulls[3] = data->processor_ref ? ' ' : 'n';
	values[4] = data->last_error ? CStringGetTextDatum(data->last_error) : (Datum) 0;
	nulls[4] = data->last_error ? ' ' : 'n';
	values[5] = data->refund_proof && refunds(from, to) ?
		CStringGetTextDatum(data->refund_proof) : (Datum) 0;
	nulls[5] = values[5] ? ' ' : 'n';
	values[6] = Int32GetDatum(data->uncount_attempt ? 1 : 0);
	WithdrawalExecute(update_plan, values, nulls, false, 0, SPI_OK_UPDATE);

	WithdrawalAudit(data->action, data->actor, withdrawal_id, account_id,
					from_name, WithdrawalStatusName(to), data->detail);
	return true;
}

int
WithdrawalWalletOrder(const char *account_a, const char *currency_a,
					  const char *account_b, const char *currency_b)
{
	int			c = strcmp(account_a, account_b);

	return c != 0 ? c : strcmp(currency_a, currency_b);
}

void
WithdrawalLockWithdrawals(const pg_uuid_t *ids, int n)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {UUIDARRAYOID};
	Datum		values[1];
	Datum	   *elems;
	int			i;

	if (n == 0)
		return;
	elems = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
		elems[i] = UUIDPGetDatum(&ids[i]);
	WithdrawalPrepareCustom(&plan,
							"SELECT 1 FROM withdrawal.withdrawal WHERE withdrawal_id = ANY ($1)"
					  " ORDER BY withdrawal_id FOR NO KEY UPDATE",
					  1, types);
	values[0] = PointerGetDatum(construct_array(elems, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_SELECT);
	pfree(elems);
}

/*
 * Every table is reached by key; the plan is made for each claim, with the
 * number of candidates known, so that no plan kept from when the tables
 * were empty can hash or scan a whole table.
 */
uint64
WithdrawalClaimPayouts(Datum *ids, int nids, int limit, int lease_seconds,
					   int worker_index)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {UUIDARRAYOID, INT4OID, INT4OID, INT4OID};
	Datum		values[4];

	WithdrawalPrepareCustom(&plan,
							"WITH c AS ("
							"  SELECT o.withdrawal_id FROM withdrawal.outbox o"
							"    JOIN withdrawal.withdrawal w ON w.withdrawal_id = o.withdrawal_id"
							"   WHERE o.withdrawal_id = ANY ($1)"
							"     AND o.next_attempt_at <= pg_catalog.now()"
							"     AND (o.lease_until IS NULL OR o.lease_until < pg_catalog.now())"
							"     AND o.parked_at IS NULL"
							"     AND CASE WHEN o.kind = 'send' THEN w.status IN ('queued', 'dispatching')"
							"              ELSE w.status IN ('submitted', 'dead') END"
							"   ORDER BY pg_catalog.array_position($1, o.withdrawal_id) LIMIT $2"
							"   FOR UPDATE OF o SKIP LOCKED FOR NO KEY UPDATE OF w SKIP LOCKED"
							"), l AS ("
							"  UPDATE withdrawal.outbox o"
							"     SET lease_until = pg_catalog.now() + pg_catalog.make_interval(secs => $3), claimed_by = $4"
							"   WHERE o.withdrawal_id = ANY (ARRAY(SELECT withdrawal_id FROM c))"
							"  RETURNING o.withdrawal_id, o.kind, o.lease_until, o.busy_answers"
							")"
							" UPDATE withdrawal.withdrawal w"
							"    SET status = CASE WHEN l.kind = 'send' THEN 'dispatching' ELSE w.status END,"
							"        attempts = w.attempts + CASE WHEN l.kind = 'send' THEN 1 ELSE 0 END,"
							"        sent_at = CASE WHEN l.kind = 'send' THEN coalesce(w.sent_at, pg_catalog.now())"
							"                  ELSE w.sent_at END,"
							"        updated_at = pg_catalog.now()"
							"   FROM l WHERE w.withdrawal_id = l.withdrawal_id"
							"    AND w.withdrawal_id = ANY (ARRAY(SELECT withdrawal_id FROM l))"
							" RETURNING w.withdrawal_id, l.kind, l.lease_until, w.account_id, w.currency,"
							"   w.amount, w.attempts, w.destination, w.processor_ref, l.busy_answers",
							4, types);
	values[0] = PointerGetDatum(construct_array(ids, nids, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	values[1] = Int32GetDatum(limit);
	values[2] = Int32GetDatum(lease_seconds);
	values[3] = Int32GetDatum(worker_index);
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_UPDATE_RETURNING);
	return SPI_processed;
}

/*
 * The status test is a function call, not an operator, so that it cannot
 * use withdrawal_open: that index's 'dispatching' range holds an entry for
 * every payout recently claimed, and the planner, which expects none,
 * would scan it instead of looking the batch up by key.
 */
void
WithdrawalSubmitPayouts(const pg_uuid_t *ids, const TimestampTz *leases,
						char *const *refs, int n)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {UUIDARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID};
	Datum		values[3];
	Datum	   *id_elems;
	Datum	   *lease_elems;
	Datum	   *ref_elems;
	bool	   *ref_nulls;
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	if (n == 0)
		return;
	id_elems = palloc(sizeof(Datum) * n);
	lease_elems = palloc(sizeof(Datum) * n);
	ref_elems = palloc(sizeof(Datum) * n);
	ref_nulls = palloc(sizeof(bool) * n);
	for (i = 0; i < n; i++)
	{
		id_elems[i] = UUIDPGetDatum(&ids[i]);
		lease_elems[i] = TimestampTzGetDatum(leases[i]);
		ref_nulls[i] = refs[i] == NULL;
		ref_elems[i] = refs[i] ? CStringGetTextDatum(refs[i]) : (Datum) 0;
	}
	WithdrawalPrepareCustom(&plan,
					  "WITH r AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
					  "                                    pg_catalog.unnest($3)) AS r(id, lease, ref)"
					  "            ORDER BY id),"
					  " o AS (DELETE FROM withdrawal.outbox o USING r"
					  "        WHERE o.withdrawal_id = r.id"
					  "          AND o.lease_until = r.lease"
					  "          AND o.kind = 'send'"
					  "       RETURNING r.id, r.ref),"
					  " w AS (UPDATE withdrawal.withdrawal w SET status = 'submitted',"
					  "        processor_ref = coalesce(o.ref, w.processor_ref), updated_at = pg_catalog.now()"
					  "         FROM o WHERE w.withdrawal_id = o.id"
					  "          AND pg_catalog.texteq(w.status, 'dispatching')"
					  "       RETURNING w.withdrawal_id, w.account_id, w.processor_ref)"
					  " INSERT INTO withdrawal.audit_log"
					  "   (actor, action, withdrawal_id, account_id, before_status, after_status, detail)"
					  " SELECT pg_catalog.session_user(), 'dispatch_submitted', w.withdrawal_id, w.account_id,"
					  "        'dispatching', 'submitted',"
					  "        pg_catalog.jsonb_build_object('processor_ref', w.processor_ref)"
					  "   FROM w",
					  3, types);
	values[0] = PointerGetDatum(construct_array(id_elems, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	values[1] = PointerGetDatum(construct_array(lease_elems, n, TIMESTAMPTZOID, sizeof(TimestampTz),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_md_array(ref_elems, ref_nulls, 1, dims, lbs, TEXTOID, -1,
												   false, TYPALIGN_INT));
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_INSERT);
}

/*
 * Trigger on withdrawal.withdrawal: refuses undocumented status changes,
 * changes to sent_at and refunds of sent payouts without proof, whoever
 * makes them.
 */
Datum
withdrawal_status_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	tupdesc;
	int			attnum;
	bool		isnull;
	char	   *from;
	char	   *to;
	int			from_status;
	int			to_status;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "withdrawal_status_guard: must be fired for each row on update");

	tupdesc = RelationGetDescr(trigdata->tg_relation);
	attnum = SPI_fnumber(tupdesc, "status");
	if (attnum <= 0)
		elog(ERROR, "withdrawal_status_guard: table has no status column");
	from = TextDatumGetCString(heap_getattr(trigdata->tg_trigtuple, attnum, tupdesc, &isnull));
	to = TextDatumGetCString(heap_getattr(trigdata->tg_newtuple, attnum, tupdesc, &isnull));
	from_status = WithdrawalStatusParse(from);
	to_status = WithdrawalStatusParse(to);
	if (from_status < 0 || to_status < 0 ||
		(from_status != to_status && !WithdrawalTransitionAllowed(from_status, to_status)))
		raise_invalid_transition(from, to);

	/* Older versions' tables have no sent_at: nothing more to check. */
	attnum = SPI_fnumber(tupdesc, "sent_at");
	if (attnum > 0)
	{
		bool		old_sent_null;
		bool		new_sent_null;
		Datum		old_sent = heap_getattr(trigdata->tg_trigtuple, attnum, tupdesc, &old_sent_null);
		Datum		new_sent = heap_getattr(trigdata->tg_newtuple, attnum, tupdesc, &new_sent_null);
		int			proof_attnum = SPI_fnumber(tupdesc, "refund_proof");
		char	   *proof = NULL;

		if (!old_sent_null &&
			(new_sent_null || DatumGetTimestampTz(old_sent) != DatumGetTimestampTz(new_sent)))
			ereport(ERROR,
					(errcode(ERRCODE_WD_INVALID_TRANSITION),
					 errmsg("sent_at of a withdrawal cannot be cleared or changed"),
					 errdetail("Once a payout may have reached the processor, that fact is kept.")));
		if (proof_attnum > 0)
		{
			Datum		d = heap_getattr(trigdata->tg_newtuple, proof_attnum, tupdesc, &isnull);

			if (!isnull)
				proof = TextDatumGetCString(d);
		}
		if (from_status != to_status)
			check_sent_refund(SPI_getvalue(trigdata->tg_newtuple, tupdesc,
										   SPI_fnumber(tupdesc, "withdrawal_id")),
							  from_status, to_status, !old_sent_null, proof);
	}

	return PointerGetDatum(trigdata->tg_newtuple);
}

/*
 * transition(withdrawal_id, to_status, reason): owner-only entry point to
 * WithdrawalTransition, for operators' repairs and for tests.
 */
Datum
withdrawal_transition(PG_FUNCTION_ARGS)
{
	WithdrawalTransitionData data;
	pg_uuid_t  *id;
	char	   *to_name;
	char	   *reason;
	int			to;
	WithdrawalStatus from;

	id = WithdrawalArgUuid(fcinfo, 0, "withdrawal_id");
	to_name = WithdrawalArgText(fcinfo, 1, "to_status", 32);
	reason = WithdrawalArgTextOrNull(fcinfo, 2, "reason", WITHDRAWAL_MAX_REASON);
	to = WithdrawalStatusParse(to_name);
	if (to < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown withdrawal status \"%s\"", to_name)));

	memset(&data, 0, sizeof(data));
	data.action = "transition";
	data.reason = reason;
	SPI_connect();
	WithdrawalTransition(id, (WithdrawalStatus) to, &data, &from);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(WithdrawalStatusName(from)));
}

/*
 * status_info(): the status sets of this file, for SQL.
 *
 * The tables above are the one source of which statuses hold funds, keep an
 * outbox row and lead where.  SQL that needs a set reads it from here; the
 * few places that cannot call a function (the status domain's CHECK, the
 * predicate of the partial index withdrawal_open) are compared with it by
 * the core regression test, so a new status cannot be added to one and
 * forgotten in another.
 */
Datum
withdrawal_status_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			from;

	InitMaterializedSRF(fcinfo, 0);
	for (from = 0; from < WITHDRAWAL_STATUS_COUNT; from++)
	{
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};
		Datum		next[WITHDRAWAL_STATUS_COUNT];
		int			nnext = 0;
		int			to;

		for (to = 0; to < WITHDRAWAL_STATUS_COUNT; to++)
			if (WithdrawalTransitionAllowed(from, to))
				next[nnext++] = CStringGetTextDatum(status_names[to]);
		values[0] = CStringGetTextDatum(status_names[from]);
		values[1] = Int32GetDatum(from + 1);
		values[2] = BoolGetDatum((holding & (1 << from)) != 0);
		values[3] = BoolGetDatum((in_outbox & (1 << from)) != 0);
		values[4] = BoolGetDatum(allowed_to[from] == 0);
		values[5] = PointerGetDatum(construct_array(next, nnext, TEXTOID, -1, false,
													TYPALIGN_INT));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
