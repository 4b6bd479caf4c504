/*-------------------------------------------------------------------------
 *
 * withdrawal.h
 *	  Shared declarations of the withdrawal extension: GUC variables and the
 *	  SQLSTATEs of the product contract.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/withdrawal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_H
#define WITHDRAWAL_H

#include "utils/errcodes.h"

/* SQLSTATEs of SPEC section 3 */
#define ERRCODE_WD_INSUFFICIENT_FUNDS		MAKE_SQLSTATE('W','D','0','0','1')
#define ERRCODE_WD_IDEMPOTENCY_MISMATCH		MAKE_SQLSTATE('W','D','0','0','2')
#define ERRCODE_WD_POLICY_VIOLATION			MAKE_SQLSTATE('W','D','0','0','3')
#define ERRCODE_WD_WITHDRAWALS_CLOSED		MAKE_SQLSTATE('W','D','0','0','4')
#define ERRCODE_WD_INVALID_TRANSITION		MAKE_SQLSTATE('W','D','0','0','5')
#define ERRCODE_WD_ACCOUNT_FROZEN			MAKE_SQLSTATE('W','D','0','0','6')
#define ERRCODE_WD_UNKNOWN_OBJECT			MAKE_SQLSTATE('W','D','0','0','7')
#define ERRCODE_WD_SIGNATURE_INVALID		MAKE_SQLSTATE('W','D','0','0','8')

/* Bounds on text arguments, in bytes */
#define WITHDRAWAL_MAX_ACCOUNT_ID	64
#define WITHDRAWAL_MAX_KEY			255
#define WITHDRAWAL_MAX_REASON		1024
#define WITHDRAWAL_MAX_JSON			16384
#define WITHDRAWAL_MAX_PROCESSOR_REF	255

/* Fixed sizes of the shared state (shmem.c, flow.c) */
#define WITHDRAWAL_MAX_WORKERS		32	/* the maximum of withdrawal.workers */
#define WITHDRAWAL_MAX_CHANNELS		64	/* channels with a shared bucket */
#define WITHDRAWAL_STATUS_TEXT_LEN	256 /* messages kept for monitoring */

/* The role the dispatcher workers connect as */
#define WITHDRAWAL_WORKER_ROLE		"withdrawal_worker"

/* GUCs, defined in withdrawal.c */
extern char *withdrawal_database;
extern int	withdrawal_workers;
extern int	withdrawal_batch_size;
extern int	withdrawal_max_in_flight;
extern int	withdrawal_http_timeout_ms;
extern int	withdrawal_max_attempts;
extern int	withdrawal_retry_base_ms;
extern int	withdrawal_retry_cap_ms;
extern int	withdrawal_lease_seconds;
extern int	withdrawal_poll_after_seconds;
extern int	withdrawal_sweep_interval_seconds;
extern int	withdrawal_sandbox_settle_ms;
extern int	withdrawal_channel_share;
extern int	withdrawal_park_after;
extern int	withdrawal_max_busy_answers;
extern int	withdrawal_retry_after_cap_ms;
extern int	withdrawal_breaker_failures;
extern int	withdrawal_breaker_open_ms;
extern int	withdrawal_breaker_max_open_ms;
extern char *withdrawal_secrets_file;
extern char *withdrawal_ca_file;
extern bool withdrawal_allow_insecure_loopback;
extern bool withdrawal_notify_status;

/* true when loaded through shared_preload_libraries */
extern bool withdrawal_preloaded;

#endif							/* WITHDRAWAL_H */
