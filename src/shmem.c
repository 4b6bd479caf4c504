/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory: the hooks, worker latches for wake-at-commit, and what
 *	  each worker reports about itself.
 *
 * One fixed-size WithdrawalSharedState holds, per dispatcher worker, the
 * pgprocno of the process that runs it (so that a committing backend can
 * set its latch), whether it has seen its role, and its report.  The
 * channels' flow control (token buckets, in-flight counts, breakers) is
 * flow.c's, in a segment of its own created by this file's startup hook
 * and protected by this file's lock.
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

#include "flow.h"
#include "shmem.h"
#include "withdrawal.h"

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
	bool		worker_role_seen[WITHDRAWAL_MAX_WORKERS];	/* see workerproc.c */
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
	RequestAddinShmemSpace(WithdrawalFlowShmemSize());
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
	WithdrawalFlowShmemStartup(shared->lock);
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

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->worker_procno[worker] = -1;
	LWLockRelease(shared->lock);
	WithdrawalFlowForgetWorker(worker);
}

void
WithdrawalShmemAttachWorker(int worker)
{
	Assert(worker >= 0 && worker < WITHDRAWAL_MAX_WORKERS);
	if (shared == NULL)
		elog(ERROR, "withdrawal shared memory is not initialised");
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->worker_procno[worker] = MyProc->pgprocno;
	LWLockRelease(shared->lock);
	WithdrawalFlowForgetWorker(worker);
	on_shmem_exit(worker_detach, Int32GetDatum(worker));
}

/*
 * Sets the latch of every running worker
 */
void
WithdrawalWakeWorkersNow(void)
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
				WithdrawalWakeWorkersNow();
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
