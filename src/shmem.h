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

/* Fixed sizes of the shared state */
#define WITHDRAWAL_MAX_WORKERS		32	/* the maximum of withdrawal.workers */
#define WITHDRAWAL_MAX_CHANNELS		64	/* channels with a shared bucket */

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
 * by max_in_flight summed over all workers (<= 0: no cap) and by a 429
 * block; *wait_ms receives when asking again can succeed (-1: no idea).
 * Each granted send counts as in flight for "worker" until Release: unsent
 * ones give their token back, done ones only leave the in-flight count.
 */
extern int	WithdrawalChannelReserve(const char *channel, double rate, int burst,
									 int max_in_flight, int worker, int want,
									 long *wait_ms);
extern void WithdrawalChannelRelease(const char *channel, int worker,
									 int unsent, int done, int burst);

/* Honours a 429 Retry-After: no worker sends on the channel for ms */
extern void WithdrawalChannelBlock(const char *channel, long ms, int burst);

/*
 * Whether worker slot "worker" last saw its role (withdrawal_worker) in
 * pg_authid.  A background worker connects once, as one role: a worker
 * that starts before CREATE EXTENSION created the role looks for it
 * without a database connection, notes here that it exists and restarts
 * to connect as it.  Shared memory outlives the worker's process.
 */
extern bool WithdrawalShmemWorkerRoleSeen(int worker);
extern void WithdrawalShmemSetWorkerRoleSeen(int worker, bool seen);

#endif							/* WITHDRAWAL_SHMEM_H */
