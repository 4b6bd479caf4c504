/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The dispatcher background worker: registration, main loop, claims.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "storage/ipc.h"

#include "worker.h"

/* Placeholder until the dispatcher lands: no worker is registered. */
void
WithdrawalWorkerRegister(void)
{
}

void
withdrawal_worker_main(Datum main_arg)
{
	proc_exit(0);
}
