/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The dispatcher background worker: registration, main loop, claims,
 *	  outcomes, and the SQL entry points retry() and sweep().
 *
 * Each worker loops on one WaitEventSet (its latch, postmaster death and
 * the sockets of its transfers; see dispatch.c).  A pass of the loop:
 *
 *	1. records the outcomes of finished payouts in ONE short transaction
 *	   (falling back to one transaction per payout when that fails, so one
 *	   bad row cannot crash-loop the worker);
 *	2. claims due outbox rows in ONE short transaction: FOR UPDATE SKIP
 *	   LOCKED, a lease, status dispatching, attempts + 1, bounded by the
 *	   worker's free capacity and, per channel, by the shared token bucket
 *	   and in-flight cap (shmem.c);
 *	3. hands the claimed payouts to dispatch.c, which puts them on the wire
 *	   outside any transaction;
 *	4. now and then applies due sandbox events, seals the audit chain and
 *	   runs sweep().
 *
 * Error policy: an ERROR while claiming or recording is reported, the
 * transaction aborted and the loop carries on after a short pause; a
 * payout whose outcome cannot be recorded is pushed back with its lease
 * cleared and retried later (same idempotency key, so the processor
 * replays its answer).  Anything else (lost database, FATAL) exits and the
 * postmaster restarts the worker after bgw_restart_time.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "audit.h"
#include "dispatch.h"
#include "lifecycle.h"
#include "processor.h"
#include "shmem.h"
#include "util.h"
#include "withdrawal.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(withdrawal_retry);
PG_FUNCTION_INFO_V1(withdrawal_sweep);

/* Longest sleep when nothing is due: bounds the pick-up of foreign leases */
#define IDLE_WAIT_MS		5000
/* Pause after an unexpected error, so that a failing query does not spin */
#define ERROR_PAUSE_MS		1000
/* Poll interval while the extension is not installed in the database */
#define INSTALL_POLL_MS		2000
/*
 * Audit sealing: every second, at most a slice of rows per pass of the
 * loop (a few milliseconds), so that a backlog does not hold up payouts
 */
#define AUDIT_SEAL_MS		1000
#define AUDIT_SEAL_SLICE	500
/* ... and now and then a look back for rows that committed late */
#define AUDIT_STRAGGLER_SEAL_MS 60000
/* Outcomes wait at most this long to be recorded together with others */
#define RECORD_DELAY_MS		5
#define MAX_ERROR_LEN		1000

/* A channel and its processor, as loaded at the last claim */
typedef struct ChannelConfig
{
	char	   *name;
	double		rate;			/* <= 0: no rate limit */
	int			burst;
	int			max_in_flight;	/* <= 0: no cap */
	char	   *processor;
	char	   *driver;
	char	   *base_url;
	char	   *api_secret;
	int			connect_timeout_ms;
	int			request_timeout_ms;
} ChannelConfig;

static int	worker_index = 0;
static MemoryContext worker_cxt = NULL;
static MemoryContext iter_cxt = NULL;
static MemoryContext channel_cxt = NULL;
static ChannelConfig *channels = NULL;
static int	nchannels = 0;

static TimestampTz next_claim_at = 0;	/* 0: claim at the next pass */
static bool claim_backlog = false;	/* last claim was capped by capacity */
static TimestampTz next_sandbox_at = 0;
static TimestampTz next_seal_at = 0;
static TimestampTz next_straggler_seal_at = 0;
static TimestampTz next_sweep_at = 0;

static int64 stat_sent = 0;
static int64 stat_recorded = 0;

static void record_outcomes(WithdrawalPayout *list);

/* ---------- registration ---------- */

void
WithdrawalWorkerRegister(void)
{
	BackgroundWorker worker;
	int			i;

	for (i = 0; i < withdrawal_workers && i < WITHDRAWAL_MAX_WORKERS; i++)
	{
		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 5;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "withdrawal");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "withdrawal_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "withdrawal worker %d", i);
		snprintf(worker.bgw_type, BGW_MAXLEN, "withdrawal worker");
		worker.bgw_main_arg = Int32GetDatum(i);
		worker.bgw_notify_pid = 0;
		RegisterBackgroundWorker(&worker);
	}
}

/* ---------- transactions ---------- */

static void
begin_tx(const char *label)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	debug_query_string = label;
	pgstat_report_activity(STATE_RUNNING, label);
}

/*
 * Commits; the caller's memory context survives.  Statistics are flushed
 * with force = false: with thousands of short transactions a second,
 * pgstat's own rate limit is what keeps the flush cheap.
 */
static void
commit_tx(void)
{
	MemoryContext old = CurrentMemoryContext;

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(old);
	debug_query_string = NULL;
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Reports the error being handled and returns to a clean state */
static void
recover_from_error(MemoryContext cxt)
{
	MemoryContextSwitchTo(cxt);
	EmitErrorReport();
	AbortOutOfAnyTransaction();
	FlushErrorState();
	MemoryContextSwitchTo(cxt);
	debug_query_string = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* ---------- helpers ---------- */

static TimestampTz
later_ms(long ms)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
}

static void
earliest(TimestampTz *at, TimestampTz candidate)
{
	if (*at == 0 || candidate < *at)
		*at = candidate;
}

/* Is the extension (at a version with our outbox) installed here? */
static bool
extension_installed(void)
{
	bool		installed;

	begin_tx("withdrawal: waiting for CREATE EXTENSION withdrawal");
	if (SPI_execute("SELECT 1 FROM pg_catalog.pg_extension e"
					" JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) e.extnamespace"
					" WHERE e.extname OPERATOR(pg_catalog.=) 'withdrawal'"
					"   AND c.relname OPERATOR(pg_catalog.=) 'sandbox_event'",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up the withdrawal extension");
	installed = SPI_processed > 0;
	commit_tx();
	return installed;
}

/* Loads the channel table (with each channel's processor) */
static void
load_channels(void)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext old;
	int			i;

	WithdrawalPrepare(&plan,
					  "SELECT c.name, c.rate_per_second, c.burst, c.max_in_flight,"
					  "       p.name, p.driver, p.base_url, p.api_secret,"
					  "       p.connect_timeout_ms, p.request_timeout_ms"
					  "  FROM withdrawal.channel c JOIN withdrawal.processor p"
					  "    ON p.name OPERATOR(pg_catalog.=) c.processor",
					  0, NULL);
	WithdrawalExecute(plan, NULL, NULL, true, 0, SPI_OK_SELECT);

	MemoryContextReset(channel_cxt);
	old = MemoryContextSwitchTo(channel_cxt);
	nchannels = (int) SPI_processed;
	channels = palloc0(sizeof(ChannelConfig) * Max(nchannels, 1));
	for (i = 0; i < nchannels; i++)
	{
		ChannelConfig *c = &channels[i];
		bool		isnull;
		Datum		d;

		c->name = WithdrawalSpiGetText(i, 1);
		d = WithdrawalSpiGet(i, 2, &isnull);
		c->rate = isnull ? 0 : DatumGetFloat8(d);
		c->burst = DatumGetInt32(WithdrawalSpiGet(i, 3, &isnull));
		d = WithdrawalSpiGet(i, 4, &isnull);
		c->max_in_flight = isnull ? 0 : DatumGetInt32(d);
		c->processor = WithdrawalSpiGetText(i, 5);
		c->driver = WithdrawalSpiGetText(i, 6);
		c->base_url = WithdrawalSpiGetText(i, 7);
		c->api_secret = WithdrawalSpiGetText(i, 8);
		c->connect_timeout_ms = DatumGetInt32(WithdrawalSpiGet(i, 9, &isnull));
		c->request_timeout_ms = DatumGetInt32(WithdrawalSpiGet(i, 10, &isnull));
	}
	MemoryContextSwitchTo(old);
}

static ChannelConfig *
find_channel(const char *name)
{
	int			i;

	for (i = 0; i < nchannels; i++)
		if (strcmp(channels[i].name, name) == 0)
			return &channels[i];
	return NULL;
}

static bool
flow_controlled(const ChannelConfig *c)
{
	return c->rate > 0 || c->max_in_flight > 0;
}

static char *
copy_or_null(MemoryContext cxt, const char *s)
{
	return s ? MemoryContextStrdup(cxt, s) : NULL;
}

/* ---------- claiming ---------- */

/*
 * Claims up to limit due outbox rows of one channel (channel != NULL) or
 * of every channel not in "exclude", appending payouts to *list.  Returns
 * how many.
 */
static int
claim_rows(int limit, const char *channel, Datum exclude, WithdrawalPayout **list)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[5] = {INT4OID, INT4OID, TEXTOID, TEXTARRAYOID, INT4OID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			n;
	int			i;

	/*
	 * The row locks are taken on both tables, the outbox first as in every
	 * other path, and skipped when busy; a lease already taken by a worker
	 * that committed meanwhile fails the recheck of the locked row.  The
	 * claimed rows are then updated by key ("= ANY (ARRAY(...))"): written
	 * as a join, a plan that guesses the LIMIT wrong hashes both tables.
	 */
	WithdrawalPrepare(&plan,
					  "WITH c AS ("
					  "  SELECT o.withdrawal_id, o.kind FROM withdrawal.outbox o"
					  "    JOIN withdrawal.withdrawal w ON w.withdrawal_id OPERATOR(pg_catalog.=) o.withdrawal_id"
					  "   WHERE o.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
					  "     AND (o.lease_until IS NULL OR o.lease_until OPERATOR(pg_catalog.<) pg_catalog.now())"
					  "     AND CASE WHEN $3 IS NULL THEN o.channel OPERATOR(pg_catalog.<>) ALL ($4)"
					  "              ELSE o.channel OPERATOR(pg_catalog.=) $3 END"
					  "     AND CASE WHEN o.kind OPERATOR(pg_catalog.=) 'send'"
					  "              THEN w.status IN ('queued', 'dispatching')"
					  "              ELSE w.status OPERATOR(pg_catalog.=) 'submitted' END"
					  "   ORDER BY o.next_attempt_at LIMIT $1"
					  "   FOR UPDATE OF o SKIP LOCKED FOR NO KEY UPDATE OF w SKIP LOCKED"
					  "), l AS ("
					  "  UPDATE withdrawal.outbox o"
					  "     SET lease_until = pg_catalog.now() OPERATOR(pg_catalog.+)"
					  "                       pg_catalog.make_interval(secs => $2), claimed_by = $5"
					  "   WHERE o.withdrawal_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT c.withdrawal_id FROM c))"
					  "  RETURNING o.withdrawal_id, o.kind, o.lease_until"
					  ")"
					  " UPDATE withdrawal.withdrawal w"
					  "    SET status = CASE WHEN l.kind OPERATOR(pg_catalog.=) 'send' THEN 'dispatching'"
					  "                      ELSE w.status END,"
					  "        attempts = w.attempts OPERATOR(pg_catalog.+)"
					  "                   CASE WHEN l.kind OPERATOR(pg_catalog.=) 'send' THEN 1 ELSE 0 END,"
					  "        updated_at = pg_catalog.now()"
					  "   FROM l WHERE w.withdrawal_id OPERATOR(pg_catalog.=) l.withdrawal_id"
					  " RETURNING w.withdrawal_id, l.kind, l.lease_until, w.account_id, w.currency,"
					  "   w.amount, w.channel, w.attempts,"
					  "   pg_catalog.jsonb_build_object('id', w.withdrawal_id, 'account_id', w.account_id,"
					  "     'amount', w.amount, 'currency', w.currency, 'channel', w.channel,"
					  "     'destination', w.destination)::text,"
					  "   w.destination OPERATOR(pg_catalog.->>) 'stripe_account'",
					  5, types);
	values[0] = Int32GetDatum(limit);
	values[1] = Int32GetDatum(withdrawal_lease_seconds);
	if (channel)
		values[2] = CStringGetTextDatum(channel);
	else
		nulls[2] = 'n';
	values[3] = exclude;
	values[4] = Int32GetDatum(worker_index);
	WithdrawalExecute(plan, values, nulls, false, 0, SPI_OK_UPDATE_RETURNING);

	n = (int) SPI_processed;
	for (i = 0; i < n; i++)
	{
		MemoryContext cxt = AllocSetContextCreate(worker_cxt, "withdrawal payout",
												  ALLOCSET_SMALL_SIZES);
		WithdrawalPayout *p = MemoryContextAllocZero(cxt, sizeof(WithdrawalPayout));
		MemoryContext old = MemoryContextSwitchTo(cxt);
		ChannelConfig *c;
		bool		isnull;
		char	   *kind;

		p->cxt = cxt;
		p->id = *DatumGetUUIDP(WithdrawalSpiGet(i, 1, &isnull));
		strlcpy(p->id_text, WithdrawalUuidText(&p->id), sizeof(p->id_text));
		kind = WithdrawalSpiGetText(i, 2);
		p->query = strcmp(kind, "query") == 0;
		p->lease_until = DatumGetTimestampTz(WithdrawalSpiGet(i, 3, &isnull));
		p->account_id = WithdrawalSpiGetText(i, 4);
		p->currency = WithdrawalSpiGetText(i, 5);
		p->amount = DatumGetInt64(WithdrawalSpiGet(i, 6, &isnull));
		p->channel = WithdrawalSpiGetText(i, 7);
		p->attempts = DatumGetInt32(WithdrawalSpiGet(i, 8, &isnull));
		p->http_body = WithdrawalSpiGetText(i, 9);
		p->stripe_account = WithdrawalSpiGetText(i, 10);
		MemoryContextSwitchTo(old);

		c = find_channel(p->channel);
		if (c)
		{
			p->processor = copy_or_null(cxt, c->processor);
			p->driver_name = copy_or_null(cxt, c->driver);
			p->base_url = copy_or_null(cxt, c->base_url);
			p->api_secret_name = copy_or_null(cxt, c->api_secret);
			p->connect_timeout_ms = c->connect_timeout_ms;
			p->request_timeout_ms = c->request_timeout_ms;
			p->burst = c->burst;
			p->flow_controlled = flow_controlled(c);
		}
		else
		{
			p->processor = MemoryContextStrdup(cxt, "?");
			WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY, "unknown channel \"%s\"", p->channel);
		}
		p->next = *list;
		*list = p;
	}
	return n;
}

/* The next time a claim can find work, from the outbox and sandbox timers */
static void
plan_next_claim(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	Datum		d;

	WithdrawalPrepare(&plan,
					  "SELECT (SELECT min(next_attempt_at) FROM withdrawal.outbox WHERE lease_until IS NULL),"
					  "       (SELECT min(due_at) FROM withdrawal.sandbox_event)",
					  0, NULL);
	WithdrawalExecute(plan, NULL, NULL, true, 1, SPI_OK_SELECT);
	d = WithdrawalSpiGet(0, 1, &isnull);
	if (!isnull)
		earliest(&next_claim_at, DatumGetTimestampTz(d));
	d = WithdrawalSpiGet(0, 2, &isnull);
	if (!isnull)
		earliest(&next_sandbox_at, DatumGetTimestampTz(d));
}

typedef struct Reservation
{
	const char *channel;
	int			burst;
	int			granted;
	int			claimed;
} Reservation;

/*
 * Claims up to capacity payouts in one transaction and starts them.
 */
static void
claim_and_start(int capacity)
{
	WithdrawalPayout *volatile list = NULL;
	Reservation *volatile res = NULL;
	volatile int nres = 0;
	volatile int total = 0;
	MemoryContext cxt = CurrentMemoryContext;

	next_claim_at = 0;
	claim_backlog = false;

	PG_TRY();
	{
		Datum	   *limited;
		int			nlimited = 0;
		ArrayType  *exclude;
		int			i;
		WithdrawalPayout *l = NULL;

		begin_tx("withdrawal: claiming payouts");
		load_channels();
		res = MemoryContextAllocZero(iter_cxt, sizeof(Reservation) * Max(nchannels, 1));
		limited = palloc(sizeof(Datum) * Max(nchannels, 1));
		for (i = 0; i < nchannels; i++)
			if (flow_controlled(&channels[i]))
				limited[nlimited++] = CStringGetTextDatum(channels[i].name);
		exclude = construct_array(limited, nlimited, TEXTOID, -1, false, TYPALIGN_INT);

		/* channels without flow control first, in one statement */
		total += claim_rows(capacity, NULL, PointerGetDatum(exclude), &l);
		list = l;

		for (i = 0; i < nchannels && total < capacity; i++)
		{
			ChannelConfig *c = &channels[i];
			Reservation *r;
			long		wait_ms;
			int			granted;

			if (!flow_controlled(c))
				continue;
			granted = WithdrawalChannelReserve(c->name, c->rate, c->burst, c->max_in_flight,
											   worker_index, capacity - total, &wait_ms);
			if (wait_ms >= 0)
				earliest(&next_claim_at, later_ms(wait_ms));
			if (granted == 0)
				continue;
			r = &res[nres++];
			r->channel = c->name;
			r->burst = c->burst;
			r->granted = granted;
			r->claimed = claim_rows(granted, c->name, PointerGetDatum(exclude), &l);
			list = l;
			total += r->claimed;
			if (r->claimed == granted)
				claim_backlog = true;
		}
		list = l;

		if (total >= capacity)
			claim_backlog = true;
		else
			plan_next_claim();
		commit_tx();
		if (next_claim_at == 0)
			next_claim_at = later_ms(IDLE_WAIT_MS);
	}
	PG_CATCH();
	{
		WithdrawalPayout *p;
		int			i;

		recover_from_error(cxt);
		for (i = 0; i < nres; i++)
			WithdrawalChannelRelease(res[i].channel, worker_index, res[i].granted, 0, res[i].burst);
		for (p = list; p; p = list)
		{
			list = p->next;
			MemoryContextDelete(p->cxt);
		}
		next_claim_at = later_ms(ERROR_PAUSE_MS);
		return;
	}
	PG_END_TRY();

	/* reservations not used give their tokens back */
	{
		int			i;

		for (i = 0; i < nres; i++)
			if (res[i].granted > res[i].claimed)
				WithdrawalChannelRelease(res[i].channel, worker_index,
										 res[i].granted - res[i].claimed, 0, res[i].burst);
	}

	if (total > 0)
	{
		WithdrawalPayout *p;
		WithdrawalPayout *next;

		pgstat_report_activity(STATE_IDLE, psprintf("withdrawal: sending %d payouts", total));
		for (p = list; p; p = next)
		{
			next = p->next;
			if (p->outcome != WITHDRAWAL_OUTCOME_NONE)
			{
				/* decided at claim time (unknown channel) */
				p->next = NULL;
				record_outcomes(p);
				continue;
			}
			if (WithdrawalDispatchStart(p))
				stat_sent++;
		}
	}
}

/* ---------- outcomes ---------- */

static long
backoff_ms(int attempts)
{
	double		ceiling = withdrawal_retry_base_ms * pow(2.0, Min(attempts, 40));

	ceiling = Min(ceiling, (double) withdrawal_retry_cap_ms);
	return (long) (pg_prng_double(&pg_global_prng_state) * ceiling);
}

static char *
clip_error(const char *error)
{
	if (error == NULL)
		return NULL;
	return pnstrdup(error, MAX_ERROR_LEN);
}

static bool
transition(WithdrawalPayout *p, WithdrawalStatus to, const char *action)
{
	WithdrawalTransitionData data;

	memset(&data, 0, sizeof(data));
	data.action = action;
	data.actor = "withdrawal worker";
	data.missing_ok = true;
	data.invalid_ok = true;
	data.processor_ref = p->processor_ref;
	if (to == WITHDRAWAL_FAILED || to == WITHDRAWAL_DEAD || to == WITHDRAWAL_QUEUED)
		data.last_error = clip_error(p->error);
	if (to == WITHDRAWAL_FAILED)
		data.reason = clip_error(p->error);
	return WithdrawalTransition(&p->id, to, &data, NULL);
}

/*
 * Applies one outcome in the current transaction.  The lease is the claim
 * token: when it is gone (another worker took the payout over after our
 * lease expired, a webhook settled it, ops intervened) the outcome is
 * dropped; the payout's later word comes from whoever holds it now.
 */
static void
apply_outcome(WithdrawalPayout *p)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr unquery_plan = NULL;
	static SPIPlanPtr requeue_plan = NULL;
	static SPIPlanPtr note_plan = NULL;
	Oid			types[2] = {UUIDOID, TIMESTAMPTZOID};
	Oid			requeue_types[2] = {UUIDOID, INT8OID};
	Oid			note_types[2] = {UUIDOID, TEXTOID};
	Datum		values[2];
	long		delay;

	values[0] = UUIDPGetDatum(&p->id);
	values[1] = TimestampTzGetDatum(p->lease_until);

	if (p->query)
	{
		WithdrawalPrepare(&unquery_plan,
						  "DELETE FROM withdrawal.outbox WHERE withdrawal_id OPERATOR(pg_catalog.=) $1"
						  " AND lease_until OPERATOR(pg_catalog.=) $2 AND kind OPERATOR(pg_catalog.=) 'query'",
						  2, types);
		WithdrawalExecute(unquery_plan, values, NULL, false, 0, SPI_OK_DELETE);
		if (SPI_processed == 0)
			return;
		switch (p->outcome)
		{
			case WITHDRAWAL_OUTCOME_PAID:
				transition(p, WITHDRAWAL_PAID, "dispatch_query_paid");
				break;
			case WITHDRAWAL_OUTCOME_FAILED:
				transition(p, WITHDRAWAL_FAILED, "dispatch_query_failed");
				break;
			case WITHDRAWAL_OUTCOME_UNKNOWN:
				/* never received: resend with the same key */
				transition(p, WITHDRAWAL_QUEUED, "dispatch_query_resend");
				break;
			default:
				/* no final word; asked again after withdrawal.poll_after */
				if (p->error)
				{
					WithdrawalPrepare(&note_plan,
									  "UPDATE withdrawal.withdrawal SET last_error = $2"
									  " WHERE withdrawal_id OPERATOR(pg_catalog.=) $1",
									  2, note_types);
					values[1] = CStringGetTextDatum(clip_error(p->error));
					WithdrawalExecute(note_plan, values, NULL, false, 0, SPI_OK_UPDATE);
				}
				break;
		}
		return;
	}

	WithdrawalPrepare(&lock_plan,
					  "SELECT 1 FROM withdrawal.outbox WHERE withdrawal_id OPERATOR(pg_catalog.=) $1"
					  " AND lease_until OPERATOR(pg_catalog.=) $2 FOR UPDATE",
					  2, types);
	WithdrawalExecute(lock_plan, values, NULL, false, 0, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		elog(DEBUG1, "withdrawal %s: lease lost, outcome %s dropped",
			 p->id_text, WithdrawalOutcomeName(p->outcome));
		return;
	}

	switch (p->outcome)
	{
		case WITHDRAWAL_OUTCOME_SUBMITTED:
			if (transition(p, WITHDRAWAL_SUBMITTED, "dispatch_submitted") &&
				strcmp(p->driver_name, "sandbox") == 0)
			{
				WithdrawalSandboxSchedule(p);
				earliest(&next_sandbox_at, later_ms(withdrawal_sandbox_settle_ms));
			}
			break;
		case WITHDRAWAL_OUTCOME_PAID:
			transition(p, WITHDRAWAL_PAID, "dispatch_paid");
			break;
		case WITHDRAWAL_OUTCOME_FAILED:
			transition(p, WITHDRAWAL_FAILED, "dispatch_failed");
			break;
		case WITHDRAWAL_OUTCOME_DEAD:
			transition(p, WITHDRAWAL_DEAD, "dispatch_dead");
			break;
		default:
			if (p->attempts >= withdrawal_max_attempts)
			{
				transition(p, WITHDRAWAL_DEAD, "dispatch_dead");
				break;
			}
			delay = Max(backoff_ms(p->attempts), p->retry_after_ms);
			if (transition(p, WITHDRAWAL_QUEUED, "dispatch_retry"))
			{
				WithdrawalPrepare(&requeue_plan,
								  "UPDATE withdrawal.outbox SET lease_until = NULL, claimed_by = NULL,"
								  " next_attempt_at = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+)"
								  "   pg_catalog.make_interval(secs => $2 / 1000.0)"
								  " WHERE withdrawal_id OPERATOR(pg_catalog.=) $1",
								  2, requeue_types);
				values[1] = Int64GetDatum(delay);
				WithdrawalExecute(requeue_plan, values, NULL, false, 0, SPI_OK_UPDATE);
				earliest(&next_claim_at, later_ms(delay));
			}
			break;
	}
}

/* A set-based outcome applies to p: a plain send accepted by a network driver */
static bool
submitted_in_bulk(const WithdrawalPayout *p)
{
	return p->outcome == WITHDRAWAL_OUTCOME_SUBMITTED && !p->query &&
		strcmp(p->driver_name, "sandbox") != 0;
}

/*
 * Records every accepted send of the list in one statement: the outbox row
 * (still leased by us) leaves, the withdrawal becomes submitted with its
 * processor reference, and an audit row is appended; no money moves, so
 * this is the transition lifecycle.c would make, done set-based for
 * throughput.  The status_guard trigger still checks every row.  The
 * status test is a function call, not an operator, so that it cannot use
 * withdrawal_open: that index's 'dispatching' range holds an entry for
 * every payout recently claimed, and the planner, which expects none,
 * would scan it instead of looking the batch up by key.
 */
static void
apply_submitted_bulk(WithdrawalPayout *list)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {UUIDARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID};
	Datum		values[3];
	Datum	   *ids;
	Datum	   *leases;
	Datum	   *refs;
	bool	   *ref_nulls;
	int			dims[1];
	int			lbs[1] = {1};
	int			n = 0;
	WithdrawalPayout *p;

	for (p = list; p; p = p->next)
		if (submitted_in_bulk(p))
			n++;
	if (n == 0)
		return;
	ids = palloc(sizeof(Datum) * n);
	leases = palloc(sizeof(Datum) * n);
	refs = palloc(sizeof(Datum) * n);
	ref_nulls = palloc(sizeof(bool) * n);
	n = 0;
	for (p = list; p; p = p->next)
	{
		if (!submitted_in_bulk(p))
			continue;
		ids[n] = UUIDPGetDatum(&p->id);
		leases[n] = TimestampTzGetDatum(p->lease_until);
		ref_nulls[n] = p->processor_ref == NULL;
		refs[n] = p->processor_ref ? CStringGetTextDatum(pnstrdup(p->processor_ref, 255)) : (Datum) 0;
		n++;
	}
	dims[0] = n;

	WithdrawalPrepare(&plan,
					  "WITH r AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
					  "                                    pg_catalog.unnest($3)) AS r(id, lease, ref)"
					  "            ORDER BY id),"
					  " o AS (DELETE FROM withdrawal.outbox o USING r"
					  "        WHERE o.withdrawal_id OPERATOR(pg_catalog.=) r.id"
					  "          AND o.lease_until OPERATOR(pg_catalog.=) r.lease"
					  "          AND o.kind OPERATOR(pg_catalog.=) 'send'"
					  "       RETURNING r.id, r.ref),"
					  " w AS (UPDATE withdrawal.withdrawal w SET status = 'submitted',"
					  "        processor_ref = coalesce(o.ref, w.processor_ref), updated_at = pg_catalog.now()"
					  "         FROM o WHERE w.withdrawal_id OPERATOR(pg_catalog.=) o.id"
					  "          AND pg_catalog.texteq(w.status, 'dispatching')"
					  "       RETURNING w.withdrawal_id, w.account_id, w.processor_ref)"
					  " INSERT INTO withdrawal.audit_log"
					  "   (actor, action, withdrawal_id, account_id, before_status, after_status, detail)"
					  " SELECT 'withdrawal worker', 'dispatch_submitted', w.withdrawal_id, w.account_id,"
					  "        'dispatching', 'submitted',"
					  "        pg_catalog.jsonb_build_object('processor_ref', w.processor_ref)"
					  "   FROM w",
					  3, types);
	values[0] = PointerGetDatum(construct_md_array(ids, NULL, 1, dims, lbs, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	values[1] = PointerGetDatum(construct_md_array(leases, NULL, 1, dims, lbs, TIMESTAMPTZOID, sizeof(TimestampTz), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_md_array(refs, ref_nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_INSERT);
}

/*
 * A payout whose outcome could not be recorded: its lease is cleared and
 * it is retried after the backoff, with the error kept.  Its own
 * transaction; failures here are only logged.
 */
static void
quarantine(WithdrawalPayout *p, const char *error)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {UUIDOID, TIMESTAMPTZOID, INT8OID, TEXTOID};
	Datum		values[4];
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		begin_tx("withdrawal: quarantining a payout");
		WithdrawalPrepare(&plan,
						  "WITH o AS (UPDATE withdrawal.outbox SET lease_until = NULL, claimed_by = NULL,"
						  "  next_attempt_at = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+)"
						  "    pg_catalog.make_interval(secs => $3 / 1000.0)"
						  "  WHERE withdrawal_id OPERATOR(pg_catalog.=) $1 AND lease_until OPERATOR(pg_catalog.=) $2"
						  "  RETURNING withdrawal_id)"
						  " UPDATE withdrawal.withdrawal w SET last_error = $4 FROM o"
						  "  WHERE w.withdrawal_id OPERATOR(pg_catalog.=) o.withdrawal_id",
						  4, types);
		values[0] = UUIDPGetDatum(&p->id);
		values[1] = TimestampTzGetDatum(p->lease_until);
		values[2] = Int64GetDatum(Max(backoff_ms(p->attempts), 1000L));
		values[3] = CStringGetTextDatum(psprintf("could not record outcome %s: %s",
												 WithdrawalOutcomeName(p->outcome),
												 clip_error(error)));
		WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_UPDATE);
		commit_tx();
	}
	PG_CATCH();
	{
		recover_from_error(cxt);
	}
	PG_END_TRY();
}

static void
free_payouts(WithdrawalPayout *list)
{
	WithdrawalPayout *p;
	WithdrawalPayout *next;

	for (p = list; p; p = next)
	{
		next = p->next;
		MemoryContextDelete(p->cxt);
	}
}

/* Wallet lock order: by account, then by withdrawal */
static int
payout_cmp(const void *a, const void *b)
{
	const WithdrawalPayout *pa = *(WithdrawalPayout *const *) a;
	const WithdrawalPayout *pb = *(WithdrawalPayout *const *) b;
	int			c = strcmp(pa->account_id, pb->account_id);

	return c != 0 ? c : strcmp(pa->id_text, pb->id_text);
}

/*
 * Sorts a list so that every worker locks wallets (and withdrawals) in the
 * same order: batches of several workers then wait for each other instead
 * of deadlocking.
 */
static WithdrawalPayout *
sort_payouts(WithdrawalPayout *list)
{
	WithdrawalPayout **arr;
	WithdrawalPayout *p;
	int			n = 0;
	int			i;

	for (p = list; p; p = p->next)
		n++;
	if (n < 2)
		return list;
	arr = palloc(sizeof(WithdrawalPayout *) * n);
	for (i = 0, p = list; p; p = p->next)
		arr[i++] = p;
	qsort(arr, n, sizeof(WithdrawalPayout *), payout_cmp);
	for (i = 0; i < n - 1; i++)
		arr[i]->next = arr[i + 1];
	arr[n - 1]->next = NULL;
	list = arr[0];
	pfree(arr);
	return list;
}

/*
 * Records a list of decided payouts: all in one transaction, or, when that
 * fails, each in its own, quarantining the ones that fail again.
 */
static void
record_sorted(WithdrawalPayout *list)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = false;
	WithdrawalPayout *p;

	/* their sends are over: leave the channels' in-flight counts */
	for (p = list; p; p = p->next)
		if (p->flow_controlled)
		{
			WithdrawalChannelRelease(p->channel, worker_index, 0, 1, p->burst);
			if (p->retry_after_ms > 0)
				WithdrawalChannelBlock(p->channel, p->retry_after_ms, p->burst);
			p->flow_controlled = false;
		}

	PG_TRY();
	{
		begin_tx("withdrawal: recording outcomes");
		apply_submitted_bulk(list);
		for (p = list; p; p = p->next)
			if (!submitted_in_bulk(p))
				apply_outcome(p);
		commit_tx();
		ok = true;
	}
	PG_CATCH();
	{
		recover_from_error(cxt);
	}
	PG_END_TRY();

	if (!ok)
	{
		for (p = list; p; p = p->next)
		{
			WithdrawalPayout *volatile vp = p;

			PG_TRY();
			{
				begin_tx("withdrawal: recording an outcome");
				apply_outcome(vp);
				commit_tx();
			}
			PG_CATCH();
			{
				ErrorData  *edata;

				MemoryContextSwitchTo(cxt);
				edata = CopyErrorData();
				recover_from_error(cxt);
				quarantine(vp, edata->message);
				FreeErrorData(edata);
			}
			PG_END_TRY();
		}
	}
	for (p = list; p; p = p->next)
		stat_recorded++;
	free_payouts(list);
}

static void
record_outcomes(WithdrawalPayout *list)
{
	if (list != NULL)
		record_sorted(sort_payouts(list));
}

/* Collects every decided payout and records them together */
static bool
record_done(void)
{
	WithdrawalPayout *head = NULL;
	WithdrawalPayout *tail = NULL;
	WithdrawalPayout *p;

	while ((p = WithdrawalDispatchNextDone()) != NULL)
	{
		if (tail)
			tail->next = p;
		else
			head = p;
		tail = p;
	}
	if (head == NULL)
		return false;
	record_outcomes(head);
	return true;
}

/* ---------- housekeeping ---------- */

static int	sweep_internal(Interval *older_than);

static void
housekeeping(void)
{
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext cxt = CurrentMemoryContext;

	if (next_sandbox_at != 0 && next_sandbox_at <= now)
	{
		PG_TRY();
		{
			int			n;

			next_sandbox_at = 0;
			begin_tx("withdrawal: applying sandbox events");
			n = WithdrawalSandboxApplyDue(withdrawal_batch_size);
			if (n >= withdrawal_batch_size)
				next_sandbox_at = now;
			else
				plan_next_claim();
			commit_tx();
		}
		PG_CATCH();
		{
			recover_from_error(cxt);
			next_sandbox_at = later_ms(ERROR_PAUSE_MS);
		}
		PG_END_TRY();
	}

	/* the chain and the sweep are one worker's job */
	if (worker_index != 0)
		return;

	if (now >= next_seal_at)
	{
		bool		stragglers = now >= next_straggler_seal_at;

		next_seal_at = later_ms(AUDIT_SEAL_MS);
		if (stragglers)
			next_straggler_seal_at = later_ms(AUDIT_STRAGGLER_SEAL_MS);
		PG_TRY();
		{
			begin_tx("withdrawal: sealing the audit log");
			/* a backlog is sealed a slice per loop, between payouts */
			if (WithdrawalAuditSeal(false, stragglers, AUDIT_SEAL_SLICE) >= AUDIT_SEAL_SLICE)
				next_seal_at = now;
			commit_tx();
		}
		PG_CATCH();
		{
			recover_from_error(cxt);
		}
		PG_END_TRY();
	}

	if (now >= next_sweep_at)
	{
		next_sweep_at = later_ms(withdrawal_sweep_interval_seconds * 1000L);
		PG_TRY();
		{
			int			n;

			begin_tx("withdrawal: sweeping");
			n = sweep_internal(NULL);
			commit_tx();
			if (n > 0)
			{
				ereport(LOG,
						(errmsg("withdrawal worker swept %d stuck payouts", n)));
				next_claim_at = GetCurrentTimestamp();
			}
		}
		PG_CATCH();
		{
			recover_from_error(cxt);
		}
		PG_END_TRY();
	}
}

/* Releases the leases this worker slot held before a restart */
static void
release_own_leases(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		Oid			types[1] = {INT4OID};
		Datum		values[1];

		begin_tx("withdrawal: releasing leases of a previous run");
		values[0] = Int32GetDatum(worker_index);
		WithdrawalExecuteOnce("UPDATE withdrawal.outbox SET lease_until = NULL, claimed_by = NULL,"
							  " next_attempt_at = pg_catalog.now()"
							  " WHERE claimed_by OPERATOR(pg_catalog.=) $1 AND lease_until IS NOT NULL",
							  1, types, values, NULL, SPI_OK_UPDATE);
		if (SPI_processed > 0)
			ereport(LOG,
					(errmsg("withdrawal worker %d re-queued %llu payouts claimed before it restarted",
							worker_index, (unsigned long long) SPI_processed)));
		commit_tx();
	}
	PG_CATCH();
	{
		recover_from_error(cxt);
	}
	PG_END_TRY();
}

/* ---------- main ---------- */

/* Outcomes worth a transaction of their own */
static int
record_batch(void)
{
	return Max(8, withdrawal_max_in_flight / 4);
}

/* Enough room on the wire to be worth a claim while a backlog waits */
static bool
refill_due(void)
{
	return withdrawal_max_in_flight - WithdrawalDispatchInFlight() >=
		Max(1, Min(withdrawal_max_in_flight, withdrawal_batch_size) / 4);
}

void
withdrawal_worker_main(Datum main_arg)
{
	worker_index = DatumGetInt32(main_arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(withdrawal_database, NULL, 0);
	pgstat_report_appname("withdrawal");

	/*
	 * The worker's own commits need not wait for the WAL flush: a claim or
	 * an outcome lost in a crash leaves the payout dispatching or queued,
	 * and it is sent again with the same idempotency key, which the
	 * processor answers with its first answer.  What applications commit
	 * (request(), webhooks) keeps the server's setting.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	worker_cxt = AllocSetContextCreate(TopMemoryContext, "withdrawal worker",
									   ALLOCSET_DEFAULT_SIZES);
	iter_cxt = AllocSetContextCreate(worker_cxt, "withdrawal worker iteration",
									 ALLOCSET_DEFAULT_SIZES);
	channel_cxt = AllocSetContextCreate(worker_cxt, "withdrawal channels",
										ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(iter_cxt);

	WithdrawalShmemAttachWorker(worker_index);
	WithdrawalDispatchInit();

	ereport(LOG,
			(errmsg("withdrawal worker %d started in database \"%s\"",
					worker_index, withdrawal_database)));

	/* Wait, without crash-looping, until the extension is installed. */
	for (;;)
	{
		bool		installed = false;

		PG_TRY();
		{
			installed = extension_installed();
		}
		PG_CATCH();
		{
			recover_from_error(iter_cxt);
		}
		PG_END_TRY();
		if (installed)
			break;
		pgstat_report_activity(STATE_IDLE, "withdrawal: waiting for CREATE EXTENSION withdrawal");
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 INSTALL_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(iter_cxt);
	}

	release_own_leases();
	next_sandbox_at = GetCurrentTimestamp();
	next_claim_at = GetCurrentTimestamp();
	next_seal_at = GetCurrentTimestamp();
	/* the first sweep waits a full interval: claims go first after downtime */
	next_sweep_at = later_ms(withdrawal_sweep_interval_seconds * 1000L);

	for (;;)
	{
		long		timeout_ms = IDLE_WAIT_MS;
		TimestampTz now = GetCurrentTimestamp();
		TimestampTz wake_at = next_claim_at;
		int			capacity;
		bool		latch_set;
		bool		recorded;

		if (next_sandbox_at != 0)
			earliest(&wake_at, next_sandbox_at);
		if (worker_index == 0)
		{
			earliest(&wake_at, next_seal_at);
			earliest(&wake_at, next_sweep_at);
		}
		{
			TimestampTz since;

			if (WithdrawalDispatchDoneCount(&since) > 0)
				earliest(&wake_at, TimestampTzPlusMilliseconds(since, RECORD_DELAY_MS));
		}
		if (claim_backlog && WithdrawalDispatchInFlight() < withdrawal_max_in_flight &&
			(WithdrawalDispatchInFlight() == 0 || refill_due()))
			timeout_ms = 0;
		else if (wake_at != 0)
			timeout_ms = wake_at <= now ? 0 :
				Min((long) ((wake_at - now + 999) / 1000), (long) IDLE_WAIT_MS);

		latch_set = WithdrawalDispatchWait(timeout_ms);
		if (latch_set)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			ereport(LOG,
					(errmsg("withdrawal worker %d reloaded its configuration", worker_index)));
			next_claim_at = GetCurrentTimestamp();
		}
		MemoryContextReset(iter_cxt);

		/*
		 * Outcomes are recorded in batches: when enough have gathered, when
		 * nothing else is on the wire, or when the oldest has waited
		 * RECORD_DELAY_MS.  Fewer, larger transactions.
		 */
		{
			TimestampTz since;
			int			ndone = WithdrawalDispatchDoneCount(&since);

			now = GetCurrentTimestamp();
			recorded = false;
			if (ndone > 0 &&
				(ndone >= record_batch() || WithdrawalDispatchInFlight() == 0 ||
				 TimestampDifferenceExceeds(since, now, RECORD_DELAY_MS - 1)))
				recorded = record_done();
		}

		now = GetCurrentTimestamp();
		capacity = withdrawal_max_in_flight - WithdrawalDispatchInFlight();
		capacity = Min(capacity, withdrawal_batch_size);
		if (capacity > 0 &&
			(latch_set || (next_claim_at != 0 && next_claim_at <= now) ||
			 (claim_backlog && recorded && (WithdrawalDispatchInFlight() == 0 || refill_due())) ||
			 (claim_backlog && WithdrawalDispatchInFlight() == 0)))
		{
			claim_and_start(capacity);
			/* sandbox payouts (and refused ones) are decided at once */
			record_done();
		}
		housekeeping();

		if (WithdrawalDispatchInFlight() == 0 && !claim_backlog)
			pgstat_report_activity(STATE_IDLE, NULL);
		elog(DEBUG2, "withdrawal worker %d: " INT64_FORMAT " sent, " INT64_FORMAT " recorded, %d in flight",
			 worker_index, stat_sent, stat_recorded, WithdrawalDispatchInFlight());
	}
}

/* ---------- SQL: retry() and sweep() ---------- */

/*
 * Pushes stuck payouts forward; runs in the caller's transaction and SPI
 * connection.  Returns how many payouts it moved.  older_than NULL skips
 * failing the never-sent ones.
 */
static int
sweep_internal(Interval *older_than)
{
	Oid			poll_types[1] = {INT4OID};
	Oid			age_types[1] = {INTERVALOID};
	Datum		values[1];
	int			moved = 0;
	int			n;
	int			i;
	pg_uuid_t  *ids;

	/*
	 * Every statement is planned when it runs: the sweep is rare, and a kept
	 * plan could join today's tables as they were when they were empty.
	 */

	/* dispatching with an expired lease: resend now, same key */
	WithdrawalExecuteOnce("UPDATE withdrawal.outbox SET lease_until = NULL, claimed_by = NULL,"
						  " next_attempt_at = pg_catalog.now()"
						  " WHERE lease_until OPERATOR(pg_catalog.<) pg_catalog.now()",
						  0, NULL, NULL, NULL, SPI_OK_UPDATE);
	moved += (int) SPI_processed;

	/* outbox rows whose withdrawal needs no dispatch any more */
	WithdrawalExecuteOnce("DELETE FROM withdrawal.outbox o USING withdrawal.withdrawal w"
						  " WHERE w.withdrawal_id OPERATOR(pg_catalog.=) o.withdrawal_id"
						  "   AND o.lease_until IS NULL"
						  "   AND NOT CASE WHEN o.kind OPERATOR(pg_catalog.=) 'send'"
						  "                THEN w.status IN ('queued', 'dispatching')"
						  "                ELSE w.status OPERATOR(pg_catalog.=) 'submitted' END",
						  0, NULL, NULL, NULL, SPI_OK_DELETE);

	/* queued or dispatching without an outbox row: back on the queue */
	WithdrawalExecuteOnce("INSERT INTO withdrawal.outbox (withdrawal_id, channel)"
						  " SELECT w.withdrawal_id, w.channel FROM withdrawal.withdrawal w"
						  "  WHERE w.status IN ('queued', 'dispatching')"
						  "    AND NOT EXISTS (SELECT FROM withdrawal.outbox o"
						  "                     WHERE o.withdrawal_id OPERATOR(pg_catalog.=) w.withdrawal_id)"
						  " ON CONFLICT DO NOTHING",
						  0, NULL, NULL, NULL, SPI_OK_INSERT);
	moved += (int) SPI_processed;

	/* submitted with no final word after poll_after: ask the processor */
	values[0] = Int32GetDatum(withdrawal_poll_after_seconds);
	WithdrawalExecuteOnce("INSERT INTO withdrawal.outbox (withdrawal_id, channel, kind)"
						  " SELECT w.withdrawal_id, w.channel, 'query' FROM withdrawal.withdrawal w"
						  "  WHERE w.status OPERATOR(pg_catalog.=) 'submitted'"
						  "    AND w.updated_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-)"
						  "        pg_catalog.make_interval(secs => $1))"
						  " ON CONFLICT DO NOTHING",
						  1, poll_types, values, NULL, SPI_OK_INSERT);
	moved += (int) SPI_processed;

	/*
	 * queued longer than older_than and never sent (no attempt was ever
	 * claimed): nothing reached a processor, so failing and refunding is
	 * safe.  Both rows are locked, so no worker claims it meanwhile.  The
	 * worker's scheduled sweep passes NULL and leaves this to operators.
	 */
	if (older_than == NULL)
		return moved;
	values[0] = IntervalPGetDatum(older_than);
	WithdrawalExecuteOnce("SELECT w.withdrawal_id FROM withdrawal.outbox o"
						  "  JOIN withdrawal.withdrawal w ON w.withdrawal_id OPERATOR(pg_catalog.=) o.withdrawal_id"
						  " WHERE w.status OPERATOR(pg_catalog.=) 'queued' AND w.attempts OPERATOR(pg_catalog.=) 0"
						  "   AND o.lease_until IS NULL AND o.kind OPERATOR(pg_catalog.=) 'send'"
						  "   AND w.created_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
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
	if (older_than->time < 0 || older_than->day < 0 || older_than->month < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must not be negative")));

	SPI_connect();
	moved = sweep_internal(older_than);
	SPI_finish();
	if (moved > 0)
		WithdrawalWakeWorkersAtCommit();
	PG_RETURN_INT32(moved);
}

/*
 * retry(withdrawal_id): ops call that puts a dead-lettered payout back on
 * the queue with a fresh attempt budget; returns the new status.
 */
Datum
withdrawal_retry(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr reset_plan = NULL;
	Oid			types[1] = {UUIDOID};
	Datum		values[1];
	pg_uuid_t  *id;
	char	   *status;
	WithdrawalTransitionData data;

	id = WithdrawalArgUuid(fcinfo, 0, "withdrawal_id");

	SPI_connect();
	WithdrawalPrepare(&lock_plan,
					  "SELECT status FROM withdrawal.withdrawal"
					  " WHERE withdrawal_id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
					  1, types);
	values[0] = UUIDPGetDatum(id);
	WithdrawalExecute(lock_plan, values, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		WithdrawalRaiseUnknownWithdrawal(id);
	status = WithdrawalSpiGetText(0, 1);
	if (strcmp(status, "dead") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WD_INVALID_TRANSITION),
				 errmsg("only a dead withdrawal can be retried; %s is %s", WithdrawalUuidText(id), status)));

	memset(&data, 0, sizeof(data));
	data.action = "retry";
	WithdrawalTransition(id, WITHDRAWAL_QUEUED, &data, NULL);

	WithdrawalPrepare(&reset_plan,
					  "UPDATE withdrawal.withdrawal SET attempts = 0"
					  " WHERE withdrawal_id OPERATOR(pg_catalog.=) $1",
					  1, types);
	WithdrawalExecute(reset_plan, values, NULL, false, 0, SPI_OK_UPDATE);
	SPI_finish();

	PG_RETURN_TEXT_P(cstring_to_text("queued"));
}
