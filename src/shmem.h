/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Shared memory of the withdrawal extension: worker latches for
 *	  wake-at-commit and the per-channel token buckets.
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

/* Fixed sizes of the shared state */
#define WITHDRAWAL_MAX_WORKERS		32	/* the maximum of withdrawal.workers */
#define WITHDRAWAL_MAX_CHANNELS		64	/* channels with a shared bucket */
#define WITHDRAWAL_STATUS_TEXT_LEN	256 /* messages kept for monitoring */

/* Called from _PG_init when preloaded: chains the shmem hooks */
extern void WithdrawalShmemInit(void);

/*
 * Asks that the dispatcher workers be woken when the current transaction
 * commits (nothing happens if it aborts, or when not preloaded).
 */
extern void WithdrawalWakeWorkersAtCommit(void);

/* Sets the latches of the running workers now */
extern void WithdrawalWakeWorkersNow(void);

/*
 * Records the calling process as dispatcher worker number "worker" (its
 * latch is set by WithdrawalWakeWorkersAtCommit) and arranges for the
 * record and its in-flight counts to be cleared at exit.
 */
extern void WithdrawalShmemAttachWorker(int worker);

/*
 * Flow control of a channel, shared by all workers.  Reserve grants up to
 * "want" sends, limited by the token bucket (rate <= 0: no rate limit),
 * by max_in_flight summed over all workers (<= 0: no cap), by a 429
 * block and by the channel's circuit breaker; *wait_ms receives when
 * asking again can succeed (-1: no idea).  *probe is set when the grant
 * is the single request a half-open breaker lets through (at most one).
 * Each granted send counts as in flight for "worker" until Release: unsent
 * ones give their token (and a probe) back, done ones only leave the
 * in-flight count.
 */
extern int	WithdrawalChannelReserve(const char *channel, double rate, int burst,
									 int max_in_flight, int worker, int want,
									 long *wait_ms, bool *probe);
extern void WithdrawalChannelRelease(const char *channel, int worker,
									 int unsent, int done, int burst);

/* Honours a 429 Retry-After: no worker sends on the channel for ms */
extern void WithdrawalChannelBlock(const char *channel, long ms, int burst);

/*
 * The circuit breaker of a channel (shmem.c): what one request that was
 * on the wire says about the processor's health.  A transport failure or
 * a 5xx answer is a failure; any other answer (a decline, 409, 429...) a
 * success; NONE for what says nothing (a status query that is not the
 * probe, a payout decided without a request).
 */
typedef enum WithdrawalBreakerVerdict
{
	WITHDRAWAL_BREAKER_NONE,
	WITHDRAWAL_BREAKER_SUCCESS,
	WITHDRAWAL_BREAKER_FAILURE
} WithdrawalBreakerVerdict;

/* States of a breaker, as monitor_channels shows them */
typedef enum WithdrawalBreakerState
{
	WITHDRAWAL_BREAKER_CLOSED = 0,	/* sends flow */
	WITHDRAWAL_BREAKER_OPEN,		/* nothing is sent until breaker_until */
	WITHDRAWAL_BREAKER_HALF_OPEN	/* one probe is let through */
} WithdrawalBreakerState;

/*
 * Counts a verdict against the channel's breaker ("probe": the request
 * was the half-open probe) and logs the change of state it makes, once;
 * "error" is the failure's message, for the log line.
 */
extern void WithdrawalChannelBreakerNote(const char *channel, int worker,
										 WithdrawalBreakerVerdict verdict,
										 bool probe, const char *error,
										 int burst);

/*
 * Whether worker slot "worker" last saw its role (withdrawal_worker) in
 * pg_authid.  A background worker connects once, as one role: a worker
 * that starts before CREATE EXTENSION created the role looks for it
 * without a database connection, notes here that it exists and restarts
 * to connect as it.  Shared memory outlives the worker's process.
 */
extern bool WithdrawalShmemWorkerRoleSeen(int worker);
extern void WithdrawalShmemSetWorkerRoleSeen(int worker, bool seen);

/*
 * Why a channel cannot dispatch (NULL: it can), as the last worker to
 * load the channels found it; for monitoring.
 */
extern void WithdrawalChannelNoteUnsendable(const char *channel, const char *why,
											int burst);

/* ---------- monitoring (monitor.c reads, worker.c writes) ---------- */

/* A copy of one channel's shared flow-control state */
typedef struct WithdrawalChannelStatus
{
	char		name[NAMEDATALEN];
	double		rate;			/* as last reserved with; <= 0: no limit */
	int			burst;
	double		tokens;			/* brought up to date at the copy */
	TimestampTz blocked_until;	/* 0: never blocked */
	int64		throttled;		/* Retry-After pauses since server start */
	int			in_flight;		/* summed over the workers */
	char		unsendable[WITHDRAWAL_STATUS_TEXT_LEN];	/* "": can send */
	WithdrawalBreakerState breaker;
	TimestampTz breaker_until;	/* end of the last open period; 0: never */
	int			breaker_failures;	/* consecutive failures counted */
	int64		breaker_opened; /* times opened since server start */
} WithdrawalChannelStatus;

/* What one dispatcher worker slot reports about itself */
typedef struct WithdrawalWorkerStatus
{
	int			pid;			/* 0: not running */
	char		state[64];
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
 * Copies the state of every channel that has a shared slot (at most max)
 * into out; returns how many, or -1 when the library is not preloaded.
 */
extern int	WithdrawalShmemChannels(WithdrawalChannelStatus *out, int max);

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
