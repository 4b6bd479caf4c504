/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory: worker latches for wake-at-commit, channel token buckets.
 *
 * One fixed-size WithdrawalSharedState holds, per dispatcher worker, the
 * pgprocno of the process that runs it (so that a committing backend can
 * set its latch) and, per channel, a token bucket and the number of
 * requests each worker has on the wire.  Channels are found by name in a
 * fixed array; a channel that does not fit is served without a shared
 * rate limit and a warning is logged once per process.
 *
 * Each channel also has a circuit breaker: a run of
 * withdrawal.breaker_failures requests that failed in transport or were
 * answered 5xx opens it, and no worker is granted a send on the channel
 * for withdrawal.breaker_open_time; then it is half-open and grants one
 * request, the probe, to one worker; the probe's answer closes it, or its
 * failure opens it again for twice as long (up to
 * withdrawal.breaker_max_open_time).  Its payouts stay queued meanwhile:
 * a channel that grants nothing is not claimed from, so nothing is marked
 * sent, failed or refunded because of the breaker.
 *
 * Everything is protected by one named LWLock; the critical sections are
 * a few arithmetic operations long.  The exception is what each worker
 * reports about itself for monitoring (monitor.c): one writer per slot,
 * written at every pass of its loop, so each slot has a spinlock of its
 * own and a reader never makes a worker wait behind the channels' lock.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "shmem.h"
#include "withdrawal.h"

typedef struct WithdrawalChannelSlot
{
	bool		used;
	char		name[NAMEDATALEN];
	double		tokens;			/* current bucket content */
	TimestampTz refilled_at;	/* when tokens was last brought up to date */
	TimestampTz blocked_until;	/* 429 Retry-After: no sends before this */
	int			in_flight[WITHDRAWAL_MAX_WORKERS];	/* per worker */
	/* for monitoring only */
	double		rate;			/* as last reserved with */
	int			burst;
	int64		throttled;		/* Retry-After pauses */
	char		unsendable[WITHDRAWAL_STATUS_TEXT_LEN];
	/* the circuit breaker */
	WithdrawalBreakerState breaker;
	int			breaker_failures;	/* consecutive failures */
	TimestampTz breaker_until;	/* open: nothing is granted before this */
	int			breaker_open_ms;	/* length of the last open period */
	bool		probe_out;		/* half-open: the probe is granted */
	int			probe_worker;	/* ... to this worker */
	TimestampTz probe_at;		/* ... at this time */
	int64		breaker_opened; /* times opened, for monitoring */
} WithdrawalChannelSlot;

/* A change of a breaker's state, logged once the lock is released */
typedef enum BreakerEvent
{
	BREAKER_EVENT_NONE,
	BREAKER_EVENT_OPENED,
	BREAKER_EVENT_REOPENED,
	BREAKER_EVENT_HALF_OPEN,
	BREAKER_EVENT_CLOSED,
	BREAKER_EVENT_DISABLED
} BreakerEvent;

/* A worker's own report; written by that worker only (see header) */
typedef struct WithdrawalWorkerSlot
{
	slock_t		mutex;
	WithdrawalWorkerStatus status;
} WithdrawalWorkerSlot;

typedef struct WithdrawalSharedState
{
	LWLock	   *lock;
	int			worker_procno[WITHDRAWAL_MAX_WORKERS];	/* -1: not running */
	int			worker_pid[WITHDRAWAL_MAX_WORKERS];
	bool		worker_role_seen[WITHDRAWAL_MAX_WORKERS];	/* see worker.c */
	WithdrawalChannelSlot channels[WITHDRAWAL_MAX_CHANNELS];
	WithdrawalWorkerSlot workers[WITHDRAWAL_MAX_WORKERS];
} WithdrawalSharedState;

static WithdrawalSharedState *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Backend-local state of wake-at-commit */
static bool wake_callback_registered = false;
static bool wake_pending = false;

static Size
shared_size(void)
{
	return MAXALIGN(sizeof(WithdrawalSharedState));
}

/*
 * shmem_request_hook: reserves the shared state and its lock
 */
static void
withdrawal_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(shared_size());
	RequestNamedLWLockTranche("withdrawal", 1);
}

/*
 * shmem_startup_hook: attaches to (and on first use initialises) the state
 */
static void
withdrawal_shmem_startup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("withdrawal", shared_size(), &found);
	if (!found)
	{
		memset(shared, 0, shared_size());
		shared->lock = &(GetNamedLWLockTranche("withdrawal"))->lock;
		for (i = 0; i < WITHDRAWAL_MAX_WORKERS; i++)
		{
			shared->worker_procno[i] = -1;
			SpinLockInit(&shared->workers[i].mutex);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

void
WithdrawalShmemInit(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = withdrawal_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = withdrawal_shmem_startup;
}

/*
 * on_shmem_exit callback of a worker: forgets its latch and its requests
 * in flight, so that a restarted worker does not inherit phantom ones
 */
static void
worker_detach(int code, Datum arg)
{
	int			worker = DatumGetInt32(arg);
	int			i;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->worker_procno[worker] = -1;
	shared->worker_pid[worker] = 0;
	for (i = 0; i < WITHDRAWAL_MAX_CHANNELS; i++)
	{
		WithdrawalChannelSlot *slot = &shared->channels[i];

		slot->in_flight[worker] = 0;
		/* a probe that dies with its worker is let through again */
		if (slot->probe_out && slot->probe_worker == worker)
			slot->probe_out = false;
	}
	LWLockRelease(shared->lock);
}

void
WithdrawalShmemAttachWorker(int worker)
{
	int			i;

	Assert(worker >= 0 && worker < WITHDRAWAL_MAX_WORKERS);
	if (shared == NULL)
		elog(ERROR, "withdrawal shared memory is not initialised");
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->worker_procno[worker] = MyProc->pgprocno;
	shared->worker_pid[worker] = MyProcPid;
	for (i = 0; i < WITHDRAWAL_MAX_CHANNELS; i++)
		shared->channels[i].in_flight[worker] = 0;
	LWLockRelease(shared->lock);
	on_shmem_exit(worker_detach, Int32GetDatum(worker));
}

/*
 * Sets the latch of every running worker
 */
static void
wake_workers(void)
{
	int			procnos[WITHDRAWAL_MAX_WORKERS];
	int			n = 0;
	int			i;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (i = 0; i < WITHDRAWAL_MAX_WORKERS; i++)
		if (shared->worker_procno[i] >= 0)
			procnos[n++] = shared->worker_procno[i];
	LWLockRelease(shared->lock);

	for (i = 0; i < n; i++)
		SetLatch(&ProcGlobal->allProcs[procnos[i]].procLatch);
}

/*
 * Transaction callback, registered once per backend: wakes the workers
 * when a transaction that queued work commits
 */
static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending)
			{
				wake_pending = false;
				wake_workers();
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_pending = false;
			break;
		default:
			break;
	}
}

void
WithdrawalWakeWorkersAtCommit(void)
{
	if (!withdrawal_preloaded || shared == NULL)
		return;
	if (!wake_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		wake_callback_registered = true;
	}
	wake_pending = true;
}

void
WithdrawalWakeWorkersNow(void)
{
	wake_workers();
}

/*
 * Finds or creates the slot of a channel; call with the lock held
 * exclusively.  Returns NULL when every slot is taken.
 */
static WithdrawalChannelSlot *
channel_slot(const char *name, double burst)
{
	int			i;
	WithdrawalChannelSlot *free_slot = NULL;

	for (i = 0; i < WITHDRAWAL_MAX_CHANNELS; i++)
	{
		WithdrawalChannelSlot *slot = &shared->channels[i];

		if (slot->used && strcmp(slot->name, name) == 0)
			return slot;
		if (!slot->used && free_slot == NULL)
			free_slot = slot;
	}
	if (free_slot)
	{
		memset(free_slot, 0, sizeof(*free_slot));
		free_slot->used = true;
		strlcpy(free_slot->name, name, NAMEDATALEN);
		free_slot->tokens = burst;
		free_slot->refilled_at = GetCurrentTimestamp();
		free_slot->burst = (int) burst;
	}
	return free_slot;
}

/* ---------- the circuit breaker ---------- */

/*
 * Opens a slot's breaker for its next open period: withdrawal.breaker_open_time
 * the first time, twice the last one after a failed probe, at most
 * withdrawal.breaker_max_open_time.  Call with the lock held exclusively.
 */
static void
breaker_open(WithdrawalChannelSlot *slot, TimestampTz now, bool again)
{
	int64		ms = withdrawal_breaker_open_ms;

	if (again && slot->breaker_open_ms > 0)
		ms = Max((int64) slot->breaker_open_ms * 2, ms);
	ms = Min(ms, (int64) Max(withdrawal_breaker_max_open_ms, withdrawal_breaker_open_ms));
	slot->breaker = WITHDRAWAL_BREAKER_OPEN;
	slot->breaker_open_ms = (int) ms;
	slot->breaker_until = TimestampTzPlusMilliseconds(now, ms);
	slot->probe_out = false;
	slot->breaker_opened++;
}

/* Closes a slot's breaker; call with the lock held exclusively */
static void
breaker_close(WithdrawalChannelSlot *slot)
{
	slot->breaker = WITHDRAWAL_BREAKER_CLOSED;
	slot->breaker_failures = 0;
	slot->breaker_open_ms = 0;
	slot->probe_out = false;
}

/*
 * Logs a change of a breaker's state, once: only the process that made
 * the change under the lock logs it, after releasing the lock.
 */
static void
breaker_log(BreakerEvent event, const char *channel, int failures,
			int open_ms, const char *error)
{
	switch (event)
	{
		case BREAKER_EVENT_NONE:
			break;
		case BREAKER_EVENT_OPENED:
			ereport(LOG,
					(errmsg("withdrawal channel \"%s\" circuit breaker opened after %d consecutive failures",
							channel, failures),
					 errdetail("Nothing is sent on the channel for %d ms; its payouts stay queued.  Last failure: %s",
							   open_ms, error ? error : "unknown")));
			break;
		case BREAKER_EVENT_REOPENED:
			ereport(LOG,
					(errmsg("withdrawal channel \"%s\" circuit breaker opened again: the probe failed",
							channel),
					 errdetail("Nothing is sent on the channel for %d ms; its payouts stay queued.  Last failure: %s",
							   open_ms, error ? error : "unknown")));
			break;
		case BREAKER_EVENT_HALF_OPEN:
			ereport(LOG,
					(errmsg("withdrawal channel \"%s\" circuit breaker half-open: sending one probe",
							channel)));
			break;
		case BREAKER_EVENT_CLOSED:
			ereport(LOG,
					(errmsg("withdrawal channel \"%s\" circuit breaker closed: the probe was answered",
							channel)));
			break;
		case BREAKER_EVENT_DISABLED:
			ereport(LOG,
					(errmsg("withdrawal channel \"%s\" circuit breaker closed: withdrawal.breaker_failures is 0",
							channel)));
			break;
	}
}

/*
 * The breaker's part of a reservation, with the lock held: whether the
 * channel may send at all now, and whether the one request it may send is
 * the half-open probe.  Moves an open breaker whose time is up to
 * half-open.  Returns false (and sets *wait_ms when known) when nothing
 * may be sent.
 */
static bool
breaker_admits(WithdrawalChannelSlot *slot, TimestampTz now, long *wait_ms,
			   bool *half_open, BreakerEvent *event)
{
	*half_open = false;
	if (withdrawal_breaker_failures <= 0)
	{
		if (slot->breaker != WITHDRAWAL_BREAKER_CLOSED)
			*event = BREAKER_EVENT_DISABLED;
		breaker_close(slot);
		return true;
	}
	if (slot->breaker == WITHDRAWAL_BREAKER_OPEN)
	{
		if (slot->breaker_until > now)
		{
			*wait_ms = (long) ((slot->breaker_until - now) / 1000) + 1;
			return false;
		}
		slot->breaker = WITHDRAWAL_BREAKER_HALF_OPEN;
		slot->probe_out = false;
		*event = BREAKER_EVENT_HALF_OPEN;
	}
	if (slot->breaker == WITHDRAWAL_BREAKER_HALF_OPEN)
	{
		/*
		 * One probe at a time.  A probe whose outcome never comes back (its
		 * payouts abandoned with a dropped extension) is given up after a
		 * lease, as its payout would be.
		 */
		if (slot->probe_out &&
			!TimestampDifferenceExceeds(slot->probe_at, now, withdrawal_lease_seconds * 1000))
			return false;
		slot->probe_out = false;
		*half_open = true;
	}
	return true;
}

void
WithdrawalChannelBreakerNote(const char *channel, int worker,
							 WithdrawalBreakerVerdict verdict, bool probe,
							 const char *error, int burst)
{
	WithdrawalChannelSlot *slot;
	TimestampTz now = GetCurrentTimestamp();
	BreakerEvent event = BREAKER_EVENT_NONE;
	int			failures = 0;
	int			open_ms = 0;

	if (shared == NULL || (verdict == WITHDRAWAL_BREAKER_NONE && !probe))
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = channel_slot(channel, burst);
	if (slot == NULL)
	{
		LWLockRelease(shared->lock);
		return;
	}
	if (withdrawal_breaker_failures <= 0)
	{
		if (slot->breaker != WITHDRAWAL_BREAKER_CLOSED)
			event = BREAKER_EVENT_DISABLED;
		breaker_close(slot);
	}
	else
	{
		switch (slot->breaker)
		{
			case WITHDRAWAL_BREAKER_CLOSED:
				if (verdict == WITHDRAWAL_BREAKER_SUCCESS)
					slot->breaker_failures = 0;
				else if (verdict == WITHDRAWAL_BREAKER_FAILURE &&
						 ++slot->breaker_failures >= withdrawal_breaker_failures)
				{
					breaker_open(slot, now, false);
					event = BREAKER_EVENT_OPENED;
				}
				break;
			case WITHDRAWAL_BREAKER_OPEN:

				/*
				 * Requests that were on the wire when it opened: they neither
				 * close it (the probe does) nor keep it open longer.
				 */
				break;
			case WITHDRAWAL_BREAKER_HALF_OPEN:
				if (!probe || !slot->probe_out || slot->probe_worker != worker)
					break;
				slot->probe_out = false;
				if (verdict == WITHDRAWAL_BREAKER_SUCCESS)
				{
					breaker_close(slot);
					event = BREAKER_EVENT_CLOSED;
				}
				else if (verdict == WITHDRAWAL_BREAKER_FAILURE)
				{
					slot->breaker_failures++;
					breaker_open(slot, now, true);
					event = BREAKER_EVENT_REOPENED;
				}
				/* a probe that sent nothing: the next claim sends another */
				break;
		}
	}
	failures = slot->breaker_failures;
	open_ms = slot->breaker_open_ms;
	LWLockRelease(shared->lock);

	breaker_log(event, channel, failures, open_ms, error);
	/* the other workers may be waiting for the probe: the channel is open */
	if (event == BREAKER_EVENT_CLOSED || event == BREAKER_EVENT_DISABLED)
		wake_workers();
}

/* ---------- flow control ---------- */

int
WithdrawalChannelReserve(const char *channel, double rate, int burst,
						 int max_in_flight, int worker, int want,
						 long *wait_ms, bool *probe)
{
	WithdrawalChannelSlot *slot;
	TimestampTz now = GetCurrentTimestamp();
	BreakerEvent event = BREAKER_EVENT_NONE;
	bool		half_open;
	int			granted = want;
	int			i;

	*wait_ms = -1;
	*probe = false;
	if (shared == NULL || want <= 0)
		return Max(want, 0);

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = channel_slot(channel, burst);
	if (slot == NULL)
	{
		LWLockRelease(shared->lock);
		return want;
	}

	slot->rate = rate;
	slot->burst = burst;
	if (slot->blocked_until > now)
	{
		*wait_ms = (long) ((slot->blocked_until - now) / 1000) + 1;
		LWLockRelease(shared->lock);
		return 0;
	}
	if (!breaker_admits(slot, now, wait_ms, &half_open, &event))
	{
		LWLockRelease(shared->lock);
		breaker_log(event, channel, 0, 0, NULL);
		return 0;
	}
	if (half_open)
		granted = Min(granted, 1);

	if (max_in_flight > 0)
	{
		int			total = 0;

		for (i = 0; i < WITHDRAWAL_MAX_WORKERS; i++)
			total += slot->in_flight[i];
		granted = Min(granted, Max(max_in_flight - total, 0));
	}

	if (rate > 0)
	{
		double		elapsed = (double) (now - slot->refilled_at) / 1000000.0;

		slot->tokens = Min((double) burst, slot->tokens + Max(elapsed, 0) * rate);
		slot->refilled_at = now;
		granted = Min(granted, (int) floor(slot->tokens));
		slot->tokens -= granted;
		if (granted < want)
		{
			double		missing = 1.0 - (slot->tokens - floor(slot->tokens));

			*wait_ms = (long) ceil(missing / rate * 1000.0);
		}
	}
	else
		slot->tokens = burst;

	if (half_open && granted > 0)
	{
		slot->probe_out = true;
		slot->probe_worker = worker;
		slot->probe_at = now;
		*probe = true;
	}
	slot->in_flight[worker] += granted;
	LWLockRelease(shared->lock);
	breaker_log(event, channel, 0, 0, NULL);
	return granted;
}

void
WithdrawalChannelRelease(const char *channel, int worker, int unsent,
						 int done, int burst)
{
	WithdrawalChannelSlot *slot;

	if (shared == NULL || (unsent <= 0 && done <= 0))
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = channel_slot(channel, burst);
	if (slot)
	{
		slot->in_flight[worker] = Max(slot->in_flight[worker] - unsent - done, 0);
		slot->tokens = Min((double) burst, slot->tokens + unsent);
		/* a probe granted and not claimed: the next claim may take it */
		if (unsent > 0 && slot->breaker == WITHDRAWAL_BREAKER_HALF_OPEN &&
			slot->probe_out && slot->probe_worker == worker)
			slot->probe_out = false;
	}
	LWLockRelease(shared->lock);
}

void
WithdrawalChannelBlock(const char *channel, long ms, int burst)
{
	WithdrawalChannelSlot *slot;
	TimestampTz until;

	if (shared == NULL || ms <= 0)
		return;
	until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = channel_slot(channel, burst);
	if (slot && slot->blocked_until < until)
		slot->blocked_until = until;
	if (slot)
		slot->throttled++;
	LWLockRelease(shared->lock);
}

bool
WithdrawalShmemWorkerRoleSeen(int worker)
{
	bool		seen;

	Assert(worker >= 0 && worker < WITHDRAWAL_MAX_WORKERS);
	if (shared == NULL)
		return false;
	LWLockAcquire(shared->lock, LW_SHARED);
	seen = shared->worker_role_seen[worker];
	LWLockRelease(shared->lock);
	return seen;
}

void
WithdrawalShmemSetWorkerRoleSeen(int worker, bool seen)
{
	Assert(worker >= 0 && worker < WITHDRAWAL_MAX_WORKERS);
	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->worker_role_seen[worker] = seen;
	LWLockRelease(shared->lock);
}

void
WithdrawalChannelNoteUnsendable(const char *channel, const char *why, int burst)
{
	WithdrawalChannelSlot *slot;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = channel_slot(channel, burst);
	if (slot)
		strlcpy(slot->unsendable, why ? why : "", sizeof(slot->unsendable));
	LWLockRelease(shared->lock);
}

/* ---------- monitoring ---------- */

int
WithdrawalShmemChannels(WithdrawalChannelStatus *out, int max)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;
	int			i;

	if (shared == NULL)
		return -1;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (i = 0; i < WITHDRAWAL_MAX_CHANNELS && n < max; i++)
	{
		WithdrawalChannelSlot *slot = &shared->channels[i];
		WithdrawalChannelStatus *st = &out[n];
		int			w;

		if (!slot->used)
			continue;
		memset(st, 0, sizeof(*st));
		strlcpy(st->name, slot->name, sizeof(st->name));
		st->rate = slot->rate;
		st->burst = slot->burst;
		st->tokens = slot->tokens;
		/* the bucket as the next reservation would find it */
		if (slot->rate > 0)
		{
			double		elapsed = (double) (now - slot->refilled_at) / 1000000.0;

			st->tokens = Min((double) slot->burst,
							 slot->tokens + Max(elapsed, 0) * slot->rate);
		}
		st->blocked_until = slot->blocked_until;
		st->throttled = slot->throttled;
		for (w = 0; w < WITHDRAWAL_MAX_WORKERS; w++)
			st->in_flight += slot->in_flight[w];
		strlcpy(st->unsendable, slot->unsendable, sizeof(st->unsendable));
		st->breaker = slot->breaker;
		st->breaker_until = slot->breaker_until;
		st->breaker_failures = slot->breaker_failures;
		st->breaker_opened = slot->breaker_opened;
		n++;
	}
	LWLockRelease(shared->lock);
	return n;
}

int
WithdrawalShmemWorkers(WithdrawalWorkerStatus *out, int max)
{
	int			i;

	if (shared == NULL)
		return -1;
	for (i = 0; i < max && i < WITHDRAWAL_MAX_WORKERS; i++)
	{
		WithdrawalWorkerSlot *slot = &shared->workers[i];

		SpinLockAcquire(&slot->mutex);
		memcpy(&out[i], &slot->status, sizeof(WithdrawalWorkerStatus));
		SpinLockRelease(&slot->mutex);
	}
	return i;
}

/* on_shmem_exit callback of a worker: its slot is no longer run */
static void
worker_status_exit(int code, Datum arg)
{
	WithdrawalWorkerSlot *slot = &shared->workers[DatumGetInt32(arg)];

	SpinLockAcquire(&slot->mutex);
	slot->status.pid = 0;
	slot->status.in_flight = 0;
	strlcpy(slot->status.state, "stopped", sizeof(slot->status.state));
	SpinLockRelease(&slot->mutex);
}

void
WithdrawalShmemWorkerBegin(int worker)
{
	WithdrawalWorkerSlot *slot;
	TimestampTz now = GetCurrentTimestamp();

	Assert(worker >= 0 && worker < WITHDRAWAL_MAX_WORKERS);
	if (shared == NULL)
		return;
	slot = &shared->workers[worker];
	SpinLockAcquire(&slot->mutex);
	slot->status.pid = MyProcPid;
	strlcpy(slot->status.state, "starting", sizeof(slot->status.state));
	slot->status.started_at = now;
	slot->status.last_loop_at = now;
	slot->status.in_flight = 0;
	slot->status.sent = 0;
	slot->status.recorded = 0;
	slot->status.failed = 0;
	slot->status.dead = 0;
	slot->status.send_errors = 0;
	SpinLockRelease(&slot->mutex);
	on_shmem_exit(worker_status_exit, Int32GetDatum(worker));
}

void
WithdrawalShmemWorkerState(int worker, const char *state)
{
	WithdrawalWorkerSlot *slot;
	TimestampTz now = GetCurrentTimestamp();

	if (shared == NULL)
		return;
	slot = &shared->workers[worker];
	SpinLockAcquire(&slot->mutex);
	strlcpy(slot->status.state, state, sizeof(slot->status.state));
	slot->status.last_loop_at = now;
	SpinLockRelease(&slot->mutex);
}

void
WithdrawalShmemWorkerProgress(int worker, int in_flight, int64 sent,
							  int64 recorded, int64 failed, int64 dead,
							  int64 send_errors)
{
	WithdrawalWorkerSlot *slot;
	TimestampTz now = GetCurrentTimestamp();

	if (shared == NULL)
		return;
	slot = &shared->workers[worker];
	SpinLockAcquire(&slot->mutex);
	slot->status.last_loop_at = now;
	slot->status.in_flight = in_flight;
	slot->status.sent = sent;
	slot->status.recorded = recorded;
	slot->status.failed = failed;
	slot->status.dead = dead;
	slot->status.send_errors = send_errors;
	SpinLockRelease(&slot->mutex);
}

void
WithdrawalShmemWorkerError(int worker, bool send, const char *message)
{
	WithdrawalWorkerSlot *slot;
	TimestampTz now = GetCurrentTimestamp();
	char		copy[WITHDRAWAL_STATUS_TEXT_LEN];

	if (shared == NULL || message == NULL)
		return;
	/* clipped outside the spinlock, on a character boundary */
	strlcpy(copy, message, pg_mbcliplen(message, strlen(message), sizeof(copy) - 1) + 1);
	slot = &shared->workers[worker];
	SpinLockAcquire(&slot->mutex);
	if (send)
	{
		strlcpy(slot->status.last_send_error, copy, sizeof(slot->status.last_send_error));
		slot->status.last_send_error_at = now;
	}
	else
	{
		strlcpy(slot->status.last_error, copy, sizeof(slot->status.last_error));
		slot->status.last_error_at = now;
	}
	SpinLockRelease(&slot->mutex);
}
