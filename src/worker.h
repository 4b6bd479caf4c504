/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The dispatcher background worker (worker.c): registration and main.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_WORKER_H
#define WITHDRAWAL_WORKER_H

#include "fmgr.h"

/* Called from _PG_init when preloaded: registers withdrawal.workers workers */
extern void WithdrawalWorkerRegister(void);

extern PGDLLEXPORT void withdrawal_worker_main(Datum main_arg) pg_attribute_noreturn();

#endif							/* WITHDRAWAL_WORKER_H */
