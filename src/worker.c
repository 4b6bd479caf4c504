/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The dispatcher background worker: registration, the housekeeping
 *	  steps, and the main loop, an explicit scheduler.
 *
 * Each worker loops on one WaitEventSet (its latch, postmaster death and
 * the sockets of its transfers; see dispatch.c).  A pass of the loop:
 *
 *	1. records the outcomes of finished payouts (record.c) when
 *	   record_wanted(): enough of them, nothing else on the wire, or the
 *	   oldest has waited RECORD_DELAY_MS;
 *	2. claims due outbox rows and starts them (claim.c) when
 *	   claim_wanted(): woken, a claim due, or a backlog to refill;
 *	3. runs the timers that are due (the table timers[]): sandbox events,
 *	   the release of freed memory once idle after work, and on worker 0
 *	   only, the audit seal, review expiry and the sweep.
 *
 * The wait before a pass lasts until the earliest of what would make one
 * of the three due, computed by the same functions that decide them
 * (claim_due_at, record_due_at, the timers' due times), so that the loop
 * never sleeps past what it would do nor wakes for nothing.
 *
 * Dispatch is bound to the installation (binding.c): while the payouts are
 * bound to another installation, the worker claims nothing (claim.c) and
 * runs no timer that acts on payouts, so that nothing reaches a
 * processor.  Payouts already on the wire when that changes are finished
 * and recorded.
 *
 * Error policy: every transaction runs through WithdrawalRunTransaction()
 * (workerproc.c), which reports an ERROR, aborts and returns false; after
 * one, the loop checks that the extension is still there.  FATAL (lost
 * database...) exits, and the postmaster restarts the worker after
 * bgw_restart_time.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "args.h"
#include "audit.h"
#include "claim.h"
#include "dispatch.h"
#include "ops.h"
#include "processor.h"
#include "record.h"
#include "review.h"
#include "shmem.h"
#include "spi.h"
#include "withdrawal.h"
#include "worker.h"
#include "workerproc.h"

/*
 * Seconds before the postmaster restarts a worker that exited: payouts
 * wait little, and a lasting failure does not restart it in a tight loop
 */
#define WORKER_RESTART_SECONDS	5
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
/*
 * ... or until this many have gathered, or a quarter of the wire: fewer,
 * larger transactions, without holding back a busy worker's outcomes
 */
#define RECORD_BATCH_MIN	8
#define RECORD_BATCH_SHARE	4
/* A backlog is claimed from again when a quarter of a claim has room */
#define REFILL_SHARE		4
/* A sandbox event that cannot be applied is tried again this much later */
#define SANDBOX_POSTPONE_MS	60000
/* Review expiry: every minute, a bounded batch per transaction */
#define EXPIRE_REVIEWS_MS	60000
#define EXPIRE_REVIEWS_BATCH 1000

/*
 * Freed memory goes back to the kernel once the worker is idle after work,
 * at most this often: glibc keeps in its arenas what a burst of payouts
 * freed (libcurl's, OpenSSL's and the executor's allocations), and a
 * worker's resident memory would otherwise stay at its peak for good
 */
#define RELEASE_MEMORY_MS	1000

/* When the timers of worker.c fall due; 0: not scheduled */
static TimestampTz next_seal_at = 0;
static TimestampTz next_straggler_seal_at = 0;
static TimestampTz next_sweep_at = 0;
static TimestampTz next_expire_at = 0;
static TimestampTz next_release_at = 0;

/* The last release of freed memory, and the payouts handled until then */
static TimestampTz last_release_at = 0;
static int64 released_after_payouts = 0;

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
		worker.bgw_restart_time = WORKER_RESTART_SECONDS;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "withdrawal");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "withdrawal_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "withdrawal worker %d", i);
		snprintf(worker.bgw_type, BGW_MAXLEN, "withdrawal worker");
		worker.bgw_main_arg = Int32GetDatum(i);
		worker.bgw_notify_pid = 0;
		RegisterBackgroundWorker(&worker);
	}
}

/* ---------- housekeeping ---------- */

typedef struct SandboxWork
{
	const pg_uuid_t *only;		/* NULL: any due event */
	const char *error;			/* for sandbox_postpone_body */
	int			applied;
	pg_uuid_t  *due;			/* for sandbox_due_body */
	int			ndue;
} SandboxWork;

static void
sandbox_apply_body(void *arg)
{
	SandboxWork *s = (SandboxWork *) arg;

	s->applied = WithdrawalSandboxApplyDue(withdrawal_batch_size, s->only);
	if (s->only == NULL && s->applied < withdrawal_batch_size)
		WithdrawalClaimPlanSandbox();
}

static void
sandbox_due_body(void *arg)
{
	SandboxWork *s = (SandboxWork *) arg;

	s->ndue = WithdrawalSandboxDue(withdrawal_batch_size, MyWithdrawalWorker.iter_cxt, &s->due);
}

static void
sandbox_postpone_body(void *arg)
{
	SandboxWork *s = (SandboxWork *) arg;

	WithdrawalSandboxPostpone(s->only, s->error, SANDBOX_POSTPONE_MS);
}

/*
 * Applies due sandbox events, a batch at a time; when a batch fails, one
 * withdrawal at a time, and a withdrawal whose events cannot be applied
 * is postponed, so that it holds up no other.
 */
static void
step_sandbox_events(TimestampTz now)
{
	SandboxWork s;
	int			i;

	memset(&s, 0, sizeof(s));
	MyWithdrawalWorker.next_sandbox_at = 0;
	if (WithdrawalRunTransaction("withdrawal: applying sandbox events", false,
								 sandbox_apply_body, &s, NULL))
	{
		if (s.applied >= withdrawal_batch_size)
			MyWithdrawalWorker.next_sandbox_at = GetCurrentTimestamp();
		return;
	}
	if (!WithdrawalRunTransaction("withdrawal: listing sandbox events", false,
								  sandbox_due_body, &s, NULL))
	{
		MyWithdrawalWorker.next_sandbox_at = WithdrawalLaterMs(WITHDRAWAL_ERROR_PAUSE_MS);
		return;
	}
	for (i = 0; i < s.ndue; i++)
	{
		SandboxWork one;
		char	   *error = NULL;

		memset(&one, 0, sizeof(one));
		one.only = &s.due[i];
		if (WithdrawalRunTransaction("withdrawal: applying a sandbox event", false,
									 sandbox_apply_body, &one, &error))
			continue;
		one.error = error;
		if (WithdrawalRunTransaction("withdrawal: postponing a sandbox event", false,
									 sandbox_postpone_body, &one, NULL))
			ereport(WARNING,
					(errmsg("withdrawal worker %d postponed the sandbox events of withdrawal %s",
							MyWithdrawalWorker.index, WithdrawalUuidText(&s.due[i])),
					 errdetail("%s", error)));
	}
	MyWithdrawalWorker.next_sandbox_at = GetCurrentTimestamp();
}

static void
seal_body(void *arg)
{
	bool		stragglers = *(bool *) arg;

	/* a backlog is sealed a slice per loop, between payouts */
	if (WithdrawalAuditSeal(false, stragglers, AUDIT_SEAL_SLICE) >= AUDIT_SEAL_SLICE)
		next_seal_at = GetCurrentTimestamp();
}

static void
sweep_body(void *arg)
{
	*(int *) arg = WithdrawalSweep(NULL);
}

static void
expire_reviews_body(void *arg)
{
	*(int *) arg = WithdrawalExpireReviews(EXPIRE_REVIEWS_BATCH);
}

/*
 * Rejects and refunds the withdrawals left in review longer than their
 * policy allows (review.c), a batch a minute, or at the next pass while
 * a backlog lasts.
 */
static void
step_expire_reviews(TimestampTz now)
{
	int			n = 0;

	next_expire_at = WithdrawalLaterMs(EXPIRE_REVIEWS_MS);
	if (!WithdrawalRunTransaction("withdrawal: expiring reviews", false,
								  expire_reviews_body, &n, NULL) ||
		n == 0)
		return;
	ereport(LOG,
			(errmsg("withdrawal worker rejected %d withdrawals whose review expired", n)));
	if (n >= EXPIRE_REVIEWS_BATCH)
		next_expire_at = GetCurrentTimestamp();
}


/*
 * The leases this worker slot held when its previous process died: the
 * payouts may have reached the processor, so they are sent again with the
 * same key, but after a backoff, and each loss counts as a failure, so that
 * a payout that kills the worker is parked instead of killing it again.
 */
static void
release_leases(void *arg)
{
	Oid			types[4] = {INT4OID, INT4OID, INT4OID, INT4OID};
	Datum		values[4];

	values[0] = Int32GetDatum(MyWithdrawalWorker.index);
	values[1] = Int32GetDatum(withdrawal_retry_base_ms);
	values[2] = Int32GetDatum(withdrawal_retry_cap_ms);
	values[3] = Int32GetDatum(withdrawal_park_after);
	WithdrawalExecuteFreshPlan("UPDATE withdrawal.outbox SET lease_until = NULL, claimed_by = NULL,"
						  " failures = failures + 1,"
						  " next_attempt_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs =>"
						  "   pg_catalog.random() * LEAST($3::float8, $2 * pg_catalog.power(2, failures)) / 1000.0),"
						  " parked_at = CASE WHEN failures + 1 >= $4 THEN pg_catalog.now() END,"
						  " park_reason = CASE WHEN failures + 1 >= $4"
						  "   THEN 'a worker died ' || (failures + 1) || ' times while this payout was on the wire' END"
						  " WHERE claimed_by = $1 AND lease_until IS NOT NULL",
						  4, types, values, NULL, SPI_OK_UPDATE);
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("withdrawal worker %d re-queued %llu payouts claimed before it restarted",
						MyWithdrawalWorker.index, (unsigned long long) SPI_processed)));
}

/* The audit seal, with now and then a look back for late rows */
static void
step_seal(TimestampTz now)
{
	bool		stragglers = now >= next_straggler_seal_at;

	next_seal_at = WithdrawalLaterMs(AUDIT_SEAL_MS);
	if (stragglers)
		next_straggler_seal_at = WithdrawalLaterMs(AUDIT_STRAGGLER_SEAL_MS);
	(void) WithdrawalRunTransaction("withdrawal: sealing the audit log", false,
									seal_body, &stragglers, NULL);
}

/* The scheduled sweep (ops.c), which leaves the never-sent payouts alone */
static void
step_sweep(TimestampTz now)
{
	int			n = 0;

	next_sweep_at = WithdrawalLaterMs(withdrawal_sweep_interval_seconds * 1000L);
	if (WithdrawalRunTransaction("withdrawal: sweeping", false, sweep_body, &n, NULL) && n > 0)
	{
		ereport(LOG,
				(errmsg("withdrawal worker swept %d stuck payouts", n)));
		MyWithdrawalWorker.next_claim_at = GetCurrentTimestamp();
	}
}

/* Hands the memory freed since the last release back to the kernel */
static void
step_release_memory(TimestampTz now)
{
	next_release_at = 0;
	last_release_at = now;
	released_after_payouts = MyWithdrawalWorker.sent + MyWithdrawalWorker.recorded;
#ifdef __GLIBC__
	(void) malloc_trim(0);
#endif
}

/*
 * After a failed transaction: is the extension still there?  When it was
 * dropped (or replaced by another version), everything on the wire is
 * abandoned and the worker waits for it again, without logging an ERROR
 * at every pass.
 */
static void
recheck_extension(void)
{
	MyWithdrawalWorker.extension_lost = false;
	if (WithdrawalExtensionReady())
		return;
	ereport(LOG,
			(errmsg("withdrawal worker %d stops dispatching: the extension is no longer installed at version %s in database \"%s\"",
					MyWithdrawalWorker.index, WITHDRAWAL_VERSION, withdrawal_database)));
	WithdrawalDispatchAbandonAll();
	WithdrawalClaimForget();
	WithdrawalWaitForExtension();
}

/* ---------- the scheduler ---------- */

/*
 * A housekeeping step and when it is due next.  Each step sets its own
 * next due time, and runs its transactions through
 * WithdrawalRunTransaction.
 */
typedef struct WorkerTimer
{
	const char *label;
	TimestampTz *due;			/* 0: not scheduled */
	void		(*step) (TimestampTz now);
	bool		leader_only;	/* worker 0's job: one chain, one sweep */
	bool		payouts;		/* acts on payouts: not while dispatch is held */
} WorkerTimer;

static const WorkerTimer timers[] = {
	{"applying sandbox events", &MyWithdrawalWorker.next_sandbox_at, step_sandbox_events, false, true},
	{"sealing the audit log", &next_seal_at, step_seal, true, false},
	{"expiring reviews", &next_expire_at, step_expire_reviews, true, true},
	{"sweeping", &next_sweep_at, step_sweep, true, true},
	{"releasing freed memory", &next_release_at, step_release_memory, false, false},
};

/* When timer t is due on this worker now; 0: not scheduled here */
static TimestampTz
timer_due_at(const WorkerTimer *t)
{
	if (t->leader_only && MyWithdrawalWorker.index != 0)
		return 0;
	if (t->payouts && !WithdrawalClaimPayoutsAllowed())
		return 0;
	return *t->due;
}

static void
run_due_timers(TimestampTz now)
{
	int			i;

	for (i = 0; i < lengthof(timers); i++)
	{
		TimestampTz due = timer_due_at(&timers[i]);

		if (due == 0 || due > now)
			continue;
		elog(DEBUG2, "withdrawal worker %d: %s", MyWithdrawalWorker.index, timers[i].label);
		timers[i].step(now);
	}
}

/* How many payouts a claim may start now */
static int
claim_capacity(void)
{
	return Min(withdrawal_max_in_flight - WithdrawalDispatchInFlight(),
			   withdrawal_batch_size);
}

/* Enough room on the wire to be worth a claim while a backlog waits */
static bool
refill_due(void)
{
	return withdrawal_max_in_flight - WithdrawalDispatchInFlight() >=
		Max(1, Min(withdrawal_max_in_flight, withdrawal_batch_size) / REFILL_SHARE);
}

/*
 * When a claim falls due without an event; 0: only an event (the latch,
 * recorded outcomes) can make one due.  A backlog is claimed from at once
 * only when nothing is on the wire; otherwise the next outcomes wake the
 * loop, and the claim follows their recording (claim_wanted): a channel
 * at its share of the wire has nothing to claim before that, and must not
 * make the loop spin.  Nor does a due claim while the wire is full.
 */
static TimestampTz
claim_due_at(TimestampTz now)
{
	if (claim_capacity() <= 0)
		return 0;
	if (MyWithdrawalWorker.claim_backlog && WithdrawalDispatchInFlight() == 0)
		return now;
	return MyWithdrawalWorker.next_claim_at;
}

/* Whether to claim in this pass: the one claim decision of the loop */
static bool
claim_wanted(TimestampTz now, bool latch_set, bool recorded)
{
	TimestampTz due = claim_due_at(now);

	if (claim_capacity() <= 0)
		return false;
	return latch_set || (due != 0 && due <= now) ||
		(MyWithdrawalWorker.claim_backlog && recorded && refill_due());
}

/* Outcomes worth a transaction of their own */
static int
record_threshold(void)
{
	return Max(RECORD_BATCH_MIN, withdrawal_max_in_flight / RECORD_BATCH_SHARE);
}

/*
 * When the decided outcomes fall due for recording; 0: there are none.
 * They are recorded in batches: when enough have gathered, when nothing
 * else is on the wire, or when the oldest has waited RECORD_DELAY_MS.
 * Fewer, larger transactions.
 */
static TimestampTz
record_due_at(TimestampTz now)
{
	TimestampTz since;
	int			ndone = WithdrawalDispatchDoneCount(&since);

	if (ndone == 0)
		return 0;
	if (ndone >= record_threshold() || WithdrawalDispatchInFlight() == 0)
		return now;
	return TimestampTzPlusMilliseconds(since, RECORD_DELAY_MS);
}

/* Whether to record in this pass: the one record decision of the loop */
static bool
record_wanted(TimestampTz now)
{
	TimestampTz due = record_due_at(now);

	return due != 0 && due <= now;
}

/* How long the loop may sleep: until the first of its decisions falls due */
static long
wait_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz wake_at = 0;
	int			i;

	WithdrawalEarliest(&wake_at, claim_due_at(now));
	WithdrawalEarliest(&wake_at, record_due_at(now));
	for (i = 0; i < lengthof(timers); i++)
		WithdrawalEarliest(&wake_at, timer_due_at(&timers[i]));
	if (wake_at == 0)
		return WITHDRAWAL_IDLE_WAIT_MS;
	if (wake_at <= now)
		return 0;
	return Min((long) ((wake_at - now + 999) / 1000), (long) WITHDRAWAL_IDLE_WAIT_MS);
}

/* Nothing on the wire and no backlog to claim from */
static bool
worker_idle(void)
{
	return WithdrawalDispatchInFlight() == 0 && !MyWithdrawalWorker.claim_backlog;
}

/* What the pass leaves for pg_stat_activity and monitor_workers */
static void
report_progress(void)
{
	WithdrawalWorkerProc *w = &MyWithdrawalWorker;

	if (worker_idle())
		pgstat_report_activity(STATE_IDLE, WithdrawalClaimHeld() ?
							   "withdrawal: dispatch held: the payouts are bound to another installation" : NULL);
	WithdrawalShmemWorkerProgress(w->index, WithdrawalDispatchInFlight(),
								  w->sent, w->recorded, w->failed, w->dead, w->send_errors);
	elog(DEBUG2, "withdrawal worker %d: " INT64_FORMAT " sent, " INT64_FORMAT " recorded, %d in flight",
		 w->index, w->sent, w->recorded, WithdrawalDispatchInFlight());
}

/*
 * Schedules the release of freed memory when the worker has gone idle
 * after handling payouts, and unschedules it when work came first.  Only
 * glibc has malloc_trim(); elsewhere nothing is scheduled.
 */
static void
schedule_memory_release(TimestampTz now)
{
#ifdef __GLIBC__
	WithdrawalWorkerProc *w = &MyWithdrawalWorker;

	if (!worker_idle() || record_due_at(now) != 0 ||
		w->sent + w->recorded == released_after_payouts)
		next_release_at = 0;
	else if (next_release_at == 0)
		next_release_at = Max(now, TimestampTzPlusMilliseconds(last_release_at, RELEASE_MEMORY_MS));
#endif
}

/* ---------- main ---------- */

void
withdrawal_worker_main(Datum main_arg)
{
	int			index = DatumGetInt32(main_arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	WithdrawalShmemWorkerBegin(index);
	WithdrawalWorkerStart(index);
	WithdrawalShmemAttachWorker(index);
	WithdrawalDispatchInit();

	ereport(LOG,
			(errmsg("withdrawal worker %d started in database \"%s\" as role \"%s\"",
					index, withdrawal_database, WITHDRAWAL_WORKER_ROLE)));

	WithdrawalWaitForExtension();
	(void) WithdrawalRunTransaction("withdrawal: releasing leases of a previous run", false,
									release_leases, NULL, NULL);
	MyWithdrawalWorker.next_sandbox_at = GetCurrentTimestamp();
	MyWithdrawalWorker.next_claim_at = GetCurrentTimestamp();
	next_seal_at = GetCurrentTimestamp();
	next_expire_at = GetCurrentTimestamp();
	/* the first sweep waits a full interval: claims go first after downtime */
	next_sweep_at = WithdrawalLaterMs(withdrawal_sweep_interval_seconds * 1000L);

	for (;;)
	{
		bool		latch_set;
		bool		recorded = false;

		if (MyWithdrawalWorker.extension_lost)
			recheck_extension();

		latch_set = WithdrawalDispatchWait(wait_ms());
		if (latch_set)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			ereport(LOG,
					(errmsg("withdrawal worker %d reloaded its configuration", index)));
			MyWithdrawalWorker.next_claim_at = GetCurrentTimestamp();
		}
		MemoryContextReset(MyWithdrawalWorker.iter_cxt);

		if (record_wanted(GetCurrentTimestamp()))
			recorded = WithdrawalRecordDone();
		if (claim_wanted(GetCurrentTimestamp(), latch_set, recorded))
		{
			WithdrawalClaimAndStart(claim_capacity());
			/* sandbox payouts (and refused ones) are decided at once */
			(void) WithdrawalRecordDone();
		}
		run_due_timers(GetCurrentTimestamp());
		schedule_memory_release(GetCurrentTimestamp());
		report_progress();
	}
}
