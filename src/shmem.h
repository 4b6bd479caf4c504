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

/* Called from _PG_init when preloaded: chains the shmem hooks */
extern void WithdrawalShmemInit(void);

/*
 * Asks that the dispatcher workers be woken when the current transaction
 * commits (nothing happens if it aborts, or when not preloaded).
 */
extern void WithdrawalWakeWorkersAtCommit(void);

#endif							/* WITHDRAWAL_SHMEM_H */
