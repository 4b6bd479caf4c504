/*-------------------------------------------------------------------------
 *
 * processor_sandbox.c
 *	  The sandbox processor driver: no network, settles by itself.
 *
 * Like a processor's test mode, the sandbox accepts every payout and pays
 * it withdrawal.sandbox_settle_delay later, with two documented magic
 * amounts (by their last two digits, in minor units):
 *
 *	..13  declined at once: failed, and the wallet is refunded
 *	..42  paid, then returned by the bank the same delay later
 *
 * The delayed events are rows of withdrawal.sandbox_event that the worker
 * applies when they fall due (no sleeping anywhere); they are logged
 * tables, so a crash loses no settlement.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/processor_sandbox.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "lifecycle.h"
#include "processor.h"
#include "spi.h"
#include "withdrawal.h"

/* The magic amounts are told by their last two digits: amount modulo 100 */
#define SANDBOX_MODULUS		100
#define SANDBOX_DECLINE		13
#define SANDBOX_RETURN		42

static void
sandbox_decide(WithdrawalPayout *p)
{
	MemoryContext old = MemoryContextSwitchTo(p->cxt);

	if (p->amount % SANDBOX_MODULUS == SANDBOX_DECLINE)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_FAILED,
							   "sandbox: declined (amounts ending in 13 always are)");
	else if (p->query)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_PAID, NULL);
	else
	{
		p->processor_ref = psprintf("sandbox_%s", p->id_text);
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_SUBMITTED, NULL);
	}
	MemoryContextSwitchTo(old);
}

const WithdrawalDriver withdrawal_sandbox_driver = {
	.name = "sandbox",
	.settles_by_itself = true,
	.bulk_submit = false,
	.decide = sandbox_decide,
	.build = NULL,
	.classify = NULL,
};

/* Schedules an event, in the caller's transaction and SPI connection */
static void
schedule(const pg_uuid_t *id, const char *event)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {UUIDOID, TEXTOID, INT4OID};
	Datum		values[3];

	WithdrawalPrepare(&plan,
					  "INSERT INTO withdrawal.sandbox_event (withdrawal_id, event, due_at)"
					  " VALUES ($1, $2, pg_catalog.clock_timestamp()"
					  " + pg_catalog.make_interval(secs => $3 / 1000.0))"
					  " ON CONFLICT DO NOTHING",
					  3, types);
	values[0] = UUIDPGetDatum(id);
	values[1] = CStringGetTextDatum(event);
	values[2] = Int32GetDatum(withdrawal_sandbox_settle_ms);
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_INSERT);
}

void
WithdrawalSandboxSchedule(const WithdrawalPayout *p)
{
	schedule(&p->id, "paid");
}

/* A due event, sorted by account so that workers lock wallets in order */
typedef struct SandboxEvent
{
	pg_uuid_t	id;
	char	   *event;
	char	   *account_id;
	char	   *currency;
	int64		amount;
} SandboxEvent;

static int
event_cmp(const void *a, const void *b)
{
	const SandboxEvent *ea = (const SandboxEvent *) a;
	const SandboxEvent *eb = (const SandboxEvent *) b;
	int			c = WithdrawalWalletOrder(ea->account_id, ea->currency,
										  eb->account_id, eb->currency);

	return c != 0 ? c : memcmp(ea->id.data, eb->id.data, UUID_LEN);
}

/*
 * Applies up to limit due events (of withdrawal "only" when not NULL):
 * takes them off the table, locks their withdrawals in id order, then
 * applies them in wallet order (see WithdrawalLockWithdrawals).
 */
int
WithdrawalSandboxApplyDue(int limit, const pg_uuid_t *only)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT4OID, UUIDOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	SandboxEvent *ev;
	pg_uuid_t  *ids;
	int			n;
	int			i;

	WithdrawalPrepare(&plan,
					  "DELETE FROM withdrawal.sandbox_event e"
					  " USING (SELECT withdrawal_id, event FROM withdrawal.sandbox_event"
					  "         WHERE due_at <= pg_catalog.clock_timestamp()"
					  "           AND ($2 IS NULL OR withdrawal_id = $2)"
					  "         ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) d"
					  "  LEFT JOIN withdrawal.withdrawal w ON w.withdrawal_id = d.withdrawal_id"
					  " WHERE e.withdrawal_id = d.withdrawal_id AND e.event = d.event"
					  " RETURNING e.withdrawal_id, e.event, w.amount, w.account_id, w.currency",
					  2, types);
	values[0] = Int32GetDatum(limit);
	values[1] = only ? UUIDPGetDatum(only) : (Datum) 0;
	nulls[1] = only ? ' ' : 'n';
	WithdrawalExecute(plan, values, nulls, false, 0, SPI_OK_DELETE_RETURNING);

	n = (int) SPI_processed;
	if (n == 0)
		return 0;
	ev = palloc(sizeof(SandboxEvent) * n);
	ids = palloc(sizeof(pg_uuid_t) * n);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		d;

		ev[i].id = *DatumGetUUIDP(WithdrawalSpiGet(i, 1, &isnull));
		ev[i].event = WithdrawalSpiGetText(i, 2);
		d = WithdrawalSpiGet(i, 3, &isnull);
		ev[i].amount = isnull ? 0 : DatumGetInt64(d);
		ev[i].account_id = WithdrawalSpiGetText(i, 4);
		if (ev[i].account_id == NULL)
			ev[i].account_id = "";
		ev[i].currency = WithdrawalSpiGetText(i, 5);
		if (ev[i].currency == NULL)
			ev[i].currency = "";
		ids[i] = ev[i].id;
	}
	WithdrawalLockWithdrawals(ids, n);
	qsort(ev, n, sizeof(SandboxEvent), event_cmp);

	for (i = 0; i < n; i++)
	{
		WithdrawalTransitionData data;
		bool		paid = strcmp(ev[i].event, "paid") == 0;

		memset(&data, 0, sizeof(data));
		data.action = paid ? "sandbox_paid" : "sandbox_returned";
		data.missing_ok = true;
		data.invalid_ok = true;
		if (!paid)
			data.reason = "sandbox: returned by the bank (amounts ending in 42 always are)";
		if (WithdrawalTransition(&ev[i].id, paid ? WITHDRAWAL_PAID : WITHDRAWAL_RETURNED,
								 &data, NULL) &&
			paid && ev[i].amount % SANDBOX_MODULUS == SANDBOX_RETURN)
			schedule(&ev[i].id, "returned");
	}
	return n;
}

int
WithdrawalSandboxDue(int limit, MemoryContext cxt, pg_uuid_t **ids)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	int			n;
	int			i;

	WithdrawalPrepare(&plan,
					  "SELECT DISTINCT withdrawal_id FROM (SELECT withdrawal_id FROM withdrawal.sandbox_event"
					  "  WHERE due_at <= pg_catalog.clock_timestamp() ORDER BY due_at LIMIT $1) d",
					  1, types);
	values[0] = Int32GetDatum(limit);
	WithdrawalExecute(plan, values, NULL, true, 0, SPI_OK_SELECT);
	n = (int) SPI_processed;
	*ids = MemoryContextAlloc(cxt, sizeof(pg_uuid_t) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		(*ids)[i] = *DatumGetUUIDP(WithdrawalSpiGet(i, 1, &isnull));
	}
	return n;
}

void
WithdrawalSandboxPostpone(const pg_uuid_t *id, const char *error, int delay_ms)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {UUIDOID, TEXTOID, INT4OID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	WithdrawalPrepare(&plan,
					  "UPDATE withdrawal.sandbox_event SET attempts = attempts + 1, last_error = $2,"
					  " due_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $3 / 1000.0)"
					  " WHERE withdrawal_id = $1 AND due_at <= pg_catalog.clock_timestamp()",
					  3, types);
	values[0] = UUIDPGetDatum(id);
	values[1] = error ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[1] = error ? ' ' : 'n';
	values[2] = Int32GetDatum(delay_ms);
	WithdrawalExecute(plan, values, nulls, false, 0, SPI_OK_UPDATE);
}
