/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Shared memory of the withdrawal extension (shmem.c): the hooks, the
 *	  worker latches for wake-at-commit and the workers' reports.  The
 *	  channels' flow control is flow.h's.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_SHMEM_H
#define WITHDRAWAL_SHMEM_H

#include "datatype/timestamp.h"

#include "withdrawal.h"

/* Room for a worker's state name ("waiting for ALTER EXTENSION UPDATE"...) */
#define WITHDRAWAL_STATE_TEXT_LEN	64

/* Called from _PG_init when preloaded: chains the shmem hooks */
extern void WithdrawalShmemInit(void);

/*
 * Asks that the dispatcher workers be woken when the current transaction
 * commits (nothing happens if it aborts, or when not preloaded).
 */
extern void WithdrawalWakeWorkersAtCommit(void);

/* Sets the latches of the running workers now (a breaker closed: flow.h) */
extern void WithdrawalWakeWorkersNow(void);

/*
 * Records the calling process as dispatcher worker number "worker" (its
 * latch is set by WithdrawalWakeWorkersAtCommit) and arranges for the
 * record and its in-flight counts (flow.c) to be cleared at exit.
 */
extern void WithdrawalShmemAttachWorker(int worker);

/*
 * Whether worker slot "worker" last saw its role (withdrawal_worker) in
 * pg_authid.  A background worker connects once, as one role: a worker
 * that starts before CREATE EXTENSION created the role looks for it
 * without a database connection, notes here that it exists and restarts
 * to connect as it.  Shared memory outlives the worker's process.
 */
extern bool WithdrawalShmemWorkerRoleSeen(int worker);
extern void WithdrawalShmemSetWorkerRoleSeen(int worker, bool seen);

/* ---------- monitoring (monitor.c reads, the workers write) ---------- */

/* What one dispatcher worker slot reports about itself */
typedef struct WithdrawalWorkerStatus
{
	int			pid;			/* 0: not running */
	char		state[WITHDRAWAL_STATE_TEXT_LEN];
	TimestampTz started_at;
	TimestampTz last_loop_at;
	int			in_flight;
	int64		sent;
	int64		recorded;
	int64		failed;
	int64		dead;
	int64		send_errors;
	TimestampTz last_error_at;	/* 0: none */
	char		last_error[WITHDRAWAL_STATUS_TEXT_LEN];
	TimestampTz last_send_error_at;	/* 0: none */
	char		last_send_error[WITHDRAWAL_STATUS_TEXT_LEN];
} WithdrawalWorkerStatus;

/*
 * Copies the reports of worker slots 0 .. max - 1 into out; returns -1
 * when the library is not preloaded.
 */
extern int	WithdrawalShmemWorkers(WithdrawalWorkerStatus *out, int max);

/*
 * Reports of worker slot "worker", written only by the process that runs
 * it.  Begin marks the slot as run by the calling process (cleared at its
 * exit) and zeroes its counters; the last errors are kept across restarts,
 * with their times, so that the error a worker died of stays visible.
 */
extern void WithdrawalShmemWorkerBegin(int worker);
extern void WithdrawalShmemWorkerState(int worker, const char *state);
extern void WithdrawalShmemWorkerProgress(int worker, int in_flight,
										  int64 sent, int64 recorded,
										  int64 failed, int64 dead,
										  int64 send_errors);
extern void WithdrawalShmemWorkerError(int worker, bool send,
									   const char *message);

#endif							/* WITHDRAWAL_SHMEM_H */
