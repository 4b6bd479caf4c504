/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory: worker latches for wake-at-commit, channel token buckets.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "shmem.h"

/* Placeholder until the dispatcher lands: nothing is shared yet. */
void
WithdrawalShmemInit(void)
{
}

void
WithdrawalWakeWorkersAtCommit(void)
{
}
