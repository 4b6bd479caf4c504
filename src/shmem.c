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
 * Everything is protected by one named LWLock; the critical sections are
 * a few arithmetic operations long.
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
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
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
} WithdrawalChannelSlot;

typedef struct WithdrawalSharedState
{
	LWLock	   *lock;
	int			worker_procno[WITHDRAWAL_MAX_WORKERS];	/* -1: not running */
	int			worker_pid[WITHDRAWAL_MAX_WORKERS];
	bool		worker_role_seen[WITHDRAWAL_MAX_WORKERS];	/* see worker.c */
	WithdrawalChannelSlot channels[WITHDRAWAL_MAX_CHANNELS];
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
			shared->worker_procno[i] = -1;
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
		shared->channels[i].in_flight[worker] = 0;
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
	}
	return free_slot;
}

int
WithdrawalChannelReserve(const char *channel, double rate, int burst,
						 int max_in_flight, int worker, int want,
						 long *wait_ms)
{
	WithdrawalChannelSlot *slot;
	TimestampTz now = GetCurrentTimestamp();
	int			granted = want;
	int			i;

	*wait_ms = -1;
	if (shared == NULL || want <= 0)
		return Max(want, 0);

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = channel_slot(channel, burst);
	if (slot == NULL)
	{
		LWLockRelease(shared->lock);
		return want;
	}

	if (slot->blocked_until > now)
	{
		*wait_ms = (long) ((slot->blocked_until - now) / 1000) + 1;
		LWLockRelease(shared->lock);
		return 0;
	}

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

	slot->in_flight[worker] += granted;
	LWLockRelease(shared->lock);
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
