/*-------------------------------------------------------------------------
 *
 * workerproc.h
 *	  What every part of a dispatcher worker process shares (workerproc.c):
 *	  its state, its transaction bracket, its start-up.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/workerproc.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_WORKERPROC_H
#define WITHDRAWAL_WORKERPROC_H

#include "datatype/timestamp.h"
#include "utils/palloc.h"

/* Longest sleep when nothing is due: bounds the pick-up of foreign leases */
#define WITHDRAWAL_IDLE_WAIT_MS		5000
/* Pause after an unexpected error, so that a failing query does not spin */
#define WITHDRAWAL_ERROR_PAUSE_MS	1000

/*
 * The state of this worker process that its claiming (claim.c), its
 * recording (record.c) and its loop (worker.c) share.  Only the worker's
 * own process has one.
 */
typedef struct WithdrawalWorkerProc
{
	int			index;			/* withdrawal.workers slot: 0 is the leader */
	MemoryContext cxt;			/* lives as long as the process */
	MemoryContext iter_cxt;		/* reset at every pass of the loop */
	TimestampTz next_claim_at;	/* when to claim again; 0 while claiming */
	bool		claim_backlog;	/* the last claim was capped by capacity */
	TimestampTz next_sandbox_at;	/* first sandbox event due; 0: none */
	bool		extension_lost; /* a transaction failed: is it gone? */
	/* what the worker reports for monitoring (shmem.c, monitor.c) */
	int64		sent;
	int64		recorded;
	int64		failed;
	int64		dead;
	int64		send_errors;
} WithdrawalWorkerProc;

extern WithdrawalWorkerProc MyWithdrawalWorker;

/*
 * Runs body(arg) in a transaction of its own with an SPI connection and a
 * snapshot, and commits (durably when asked).  On an ERROR: reports it,
 * aborts, sets extension_lost and returns false, with the message in
 * *error when error is not NULL.  The one transaction bracket of the
 * worker; see workerproc.c.
 */
typedef void (*WithdrawalTxBody) (void *arg);
extern bool WithdrawalRunTransaction(const char *label, bool durable,
									 WithdrawalTxBody body, void *arg,
									 char **error);

/* Now plus ms */
extern TimestampTz WithdrawalLaterMs(long ms);

/* Lowers *at to candidate; 0 is unset in both */
extern void WithdrawalEarliest(TimestampTz *at, TimestampTz candidate);

/* A copy of an error message clipped to what a row keeps; NULL stays NULL */
extern char *WithdrawalClipError(const char *error);

/*
 * Start-up of worker slot "index": connects to withdrawal.database as
 * withdrawal_worker (waiting for both, restarting once to connect as the
 * role), pins the settings the worker's statements rely on and creates
 * the worker's memory contexts.  Returns in the iteration context.
 */
extern void WithdrawalWorkerStart(int index);

/*
 * Waits, without crash-looping, until the extension is installed at the
 * library's version; clears extension_lost.  WithdrawalExtensionReady
 * checks once (false: missing, another version, or the check failed).
 */
extern void WithdrawalWaitForExtension(void);
extern bool WithdrawalExtensionReady(void);

#endif							/* WITHDRAWAL_WORKERPROC_H */
