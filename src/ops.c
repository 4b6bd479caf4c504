/*-------------------------------------------------------------------------
 *
 * ops.c
 *	  The operators' SQL entry points of dispatch: sweep(), which the
 *	  worker also runs on a schedule, and retry().
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

/*
 * Pushes stuck payouts forward; runs in the caller's transaction and SPI
 * connection (the worker's, or sweep()'s).  Returns how many payouts it
 * moved.  older_than NULL skips failing the never-sent ones.  Rows someone
 * else holds are skipped (they are being worked on), so that the sweep
 * neither waits on a worker nor takes locks out of the extension's order.
 */
int
WithdrawalSweep(Interval *older_than)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Oid			age_types[1] = {INTERVALOID};
	Datum		values[2];
	int			moved = 0;
	int			n;
	int			i;
	pg_uuid_t  *ids;

	/*
	 * Every statement is planned when it runs: the sweep is rare, and a kept
	 * plan could join today's tables as they were when they were empty.
	 */

	/*
	 * dispatching with an expired lease: its worker died or stalled; resend
	 * now, same key, counting the loss (see worker.c, release_leases)
	 */
	values[0] = Int32GetDatum(withdrawal_park_after);
	WithdrawalExecuteOnce("UPDATE withdrawal.outbox SET lease_until = NULL, claimed_by = NULL,"
						  " next_attempt_at = pg_catalog.now(), failures = failures + 1,"
						  " parked_at = CASE WHEN failures + 1 >= $1 THEN pg_catalog.now() END,"
						  " park_reason = CASE WHEN failures + 1 >= $1"
						  "   THEN 'its lease expired ' || (failures + 1) || ' times' END"
						  " WHERE withdrawal_id IN (SELECT withdrawal_id FROM withdrawal.outbox"
						  "   WHERE lease_until < pg_catalog.now() FOR UPDATE SKIP LOCKED)",
						  1, types, values, NULL, SPI_OK_UPDATE);
	moved += (int) SPI_processed;

	/* outbox rows whose withdrawal needs no dispatch any more */
	WithdrawalExecuteOnce("DELETE FROM withdrawal.outbox WHERE withdrawal_id IN ("
						  " SELECT o.withdrawal_id FROM withdrawal.outbox o"
						  "   JOIN withdrawal.withdrawal w ON w.withdrawal_id = o.withdrawal_id"
						  "  WHERE o.lease_until IS NULL"
						  "    AND NOT CASE WHEN o.kind = 'send'"
						  "                 THEN w.status IN ('queued', 'dispatching')"
						  "                 ELSE w.status IN ('submitted', 'dead') END"
						  "    FOR UPDATE OF o SKIP LOCKED)",
						  0, NULL, NULL, NULL, SPI_OK_DELETE);

	/* queued or dispatching without an outbox row: back on the queue */
	WithdrawalExecuteOnce("INSERT INTO withdrawal.outbox (withdrawal_id, channel)"
						  " SELECT w.withdrawal_id, w.channel FROM withdrawal.withdrawal w"
						  "  WHERE w.status IN ('queued', 'dispatching')"
						  "    AND NOT EXISTS (SELECT FROM withdrawal.outbox o"
						  "                     WHERE o.withdrawal_id = w.withdrawal_id)"
						  " ON CONFLICT DO NOTHING",
						  0, NULL, NULL, NULL, SPI_OK_INSERT);
	moved += (int) SPI_processed;

	/*
	 * submitted with no final word after poll_after, and dead ones that may
	 * have been sent: ask the processor.  Only its answer (or an operator's
	 * two-person resolution) settles or refunds them.
	 */
	values[0] = Int32GetDatum(withdrawal_poll_after_seconds);
	WithdrawalExecuteOnce("INSERT INTO withdrawal.outbox (withdrawal_id, channel, kind)"
						  " SELECT w.withdrawal_id, w.channel, 'query' FROM withdrawal.withdrawal w"
						  "  WHERE (w.status = 'submitted' OR (w.status = 'dead' AND w.sent_at IS NOT NULL))"
						  "    AND w.updated_at < (pg_catalog.now() - pg_catalog.make_interval(secs => $1))"
						  " ON CONFLICT DO NOTHING",
						  1, types, values, NULL, SPI_OK_INSERT);
	moved += (int) SPI_processed;

	/*
	 * queued longer than older_than and never sent: nothing reached a
	 * processor, so failing and refunding is safe.  Both rows are locked,
	 * so no worker claims it meanwhile.  The worker's scheduled sweep passes
	 * NULL and leaves this to operators.
	 */
	if (older_than == NULL)
		return moved;
	values[0] = IntervalPGetDatum(older_than);
	WithdrawalExecuteOnce("SELECT w.withdrawal_id FROM withdrawal.outbox o"
						  "  JOIN withdrawal.withdrawal w ON w.withdrawal_id = o.withdrawal_id"
						  " WHERE w.status = 'queued' AND w.sent_at IS NULL"
						  "   AND o.lease_until IS NULL AND o.kind = 'send'"
						  "   AND w.created_at < (pg_catalog.now() - $1)"
						  " ORDER BY w.withdrawal_id"
						  " FOR UPDATE OF o SKIP LOCKED FOR NO KEY UPDATE OF w SKIP LOCKED",
						  1, age_types, values, NULL, SPI_OK_SELECT);
	n = (int) SPI_processed;
	ids = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = *DatumGetUUIDP(WithdrawalSpiGet(i, 1, &isnull));
	}
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
	WithdrawalPrepare(&lock_plan,
					  "SELECT w.status, o.parked_at IS NOT NULL FROM withdrawal.withdrawal w"
					  "  LEFT JOIN withdrawal.outbox o ON o.withdrawal_id = w.withdrawal_id"
					  " WHERE w.withdrawal_id = $1 FOR NO KEY UPDATE OF w",
					  1, types);
	values[0] = UUIDPGetDatum(id);
	WithdrawalExecute(lock_plan, values, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		WithdrawalRaiseUnknownWithdrawal(id);
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
