/*-------------------------------------------------------------------------
 *
 * withdrawal.c
 *	  Module entry point: PG_MODULE_MAGIC, _PG_init and the GUCs.
 *
 * The SQL API works whether or not the library is preloaded; the
 * dispatcher workers and the shared state they use exist only when it is
 * in shared_preload_libraries (worker_spi style), so that pg_regress can
 * test the SQL surface on an ordinary cluster.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/withdrawal.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "shmem.h"
#include "withdrawal.h"
#include "worker.h"

PG_MODULE_MAGIC;

char	   *withdrawal_database = NULL;
int			withdrawal_workers = 1;
int			withdrawal_batch_size = 100;
int			withdrawal_max_in_flight = 64;
int			withdrawal_http_timeout_ms = 10000;
int			withdrawal_max_attempts = 8;
int			withdrawal_retry_base_ms = 1000;
int			withdrawal_retry_cap_ms = 300000;
int			withdrawal_lease_seconds = 120;
int			withdrawal_poll_after_seconds = 300;
int			withdrawal_sweep_interval_seconds = 60;
int			withdrawal_sandbox_settle_ms = 500;
int			withdrawal_channel_share = 50;
int			withdrawal_park_after = 3;
int			withdrawal_max_busy_answers = 50;
int			withdrawal_retry_after_cap_ms = 300000;
int			withdrawal_breaker_failures = 5;
int			withdrawal_breaker_open_ms = 30000;
int			withdrawal_breaker_max_open_ms = 600000;
char	   *withdrawal_secrets_file = NULL;
char	   *withdrawal_ca_file = NULL;
bool		withdrawal_allow_insecure_loopback = false;
bool		withdrawal_notify_status = false;

bool		withdrawal_preloaded = false;

void		_PG_init(void);

/*
 * Module load callback
 */
void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	withdrawal_preloaded = process_shared_preload_libraries_in_progress;

	DefineCustomIntVariable("withdrawal.batch_size",
							"Outbox rows a worker claims per transaction.",
							NULL,
							&withdrawal_batch_size,
							100, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.max_in_flight",
							"Requests a worker keeps on the wire at once.",
							NULL,
							&withdrawal_max_in_flight,
							64, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.http_timeout",
							"Upper bound on one processor HTTP request.",
							"A processor's own request_timeout_ms applies when smaller.",
							&withdrawal_http_timeout_ms,
							10000, 100, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.max_attempts",
							"Dispatch attempts before a payout is dead-lettered.",
							NULL,
							&withdrawal_max_attempts,
							8, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.retry_base",
							"Base delay of the exponential retry backoff.",
							NULL,
							&withdrawal_retry_base_ms,
							1000, 1, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.retry_cap",
							"Largest delay of the exponential retry backoff.",
							NULL,
							&withdrawal_retry_cap_ms,
							300000, 1, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.lease",
							"How long a claimed payout stays leased to a worker.",
							"A payout whose lease expires is re-sent with the same idempotency key.",
							&withdrawal_lease_seconds,
							120, 1, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.poll_after",
							"Age after which a submitted payout's status is queried.",
							NULL,
							&withdrawal_poll_after_seconds,
							300, 1, 604800,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.sweep_interval",
							"Interval between the worker's runs of sweep().",
							NULL,
							&withdrawal_sweep_interval_seconds,
							60, 1, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.sandbox_settle_delay",
							"Delay after which the sandbox driver settles a payout.",
							NULL,
							&withdrawal_sandbox_settle_ms,
							500, 0, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.channel_share",
							"Share of a worker's withdrawal.max_in_flight one channel may use, in percent.",
							"Applies when two or more channels send over the network; a channel's own max_in_flight applies as well.  Keeps a hung processor from taking every slot.",
							&withdrawal_channel_share,
							50, 1, 100,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.park_after",
							"Failures to record a payout's outcome before it is parked.",
							"Lost leases of a worker that died count too.  A parked payout waits for retry().",
							&withdrawal_park_after,
							3, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.max_busy_answers",
							"\"Request in progress\" answers before a payout is dead-lettered.",
							"They do not count against withdrawal.max_attempts.",
							&withdrawal_max_busy_answers,
							50, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.retry_after_cap",
							"Longest pause a processor's Retry-After can impose on a channel.",
							NULL,
							&withdrawal_retry_after_cap_ms,
							300000, 0, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.breaker_failures",
							"Consecutive transport failures or 5xx answers that open a channel's circuit breaker.",
							"While the breaker is open nothing is sent on the channel; its payouts stay queued.  Zero disables the breaker.",
							&withdrawal_breaker_failures,
							5, 0, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.breaker_open_time",
							"How long an opened circuit breaker keeps a channel from sending before one probe is let through.",
							"Each failed probe doubles it, up to withdrawal.breaker_max_open_time.",
							&withdrawal_breaker_open_ms,
							30000, 10, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.breaker_max_open_time",
							"Longest a circuit breaker stays open after failed probes.",
							NULL,
							&withdrawal_breaker_max_open_ms,
							600000, 10, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("withdrawal.secrets_file",
							   "File holding processor API keys and webhook secrets.",
							   "Must be owned by the server user with mode 0600 or stricter.",
							   &withdrawal_secrets_file,
							   NULL,
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("withdrawal.ca_file",
							   "CA bundle used to verify processors' TLS certificates.",
							   "Empty means the system default.",
							   &withdrawal_ca_file,
							   NULL,
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("withdrawal.allow_insecure_loopback",
							 "Allows plain http:// to loopback processors (tests and demos).",
							 NULL,
							 &withdrawal_allow_insecure_loopback,
							 false,
							 PGC_SIGHUP,
							 GUC_SUPERUSER_ONLY,
							 NULL, NULL, NULL);

	/*
	 * Superuser-only, so that no session can keep its own status changes
	 * from the listeners; off by default for its cost at commit
	 * (src/events.c, docs/operations.md).
	 */
	DefineCustomBoolVariable("withdrawal.notify_status",
							 "Sends a NOTIFY on channel withdrawal_status for each status change of a withdrawal.",
							 "The payload is the withdrawal id and the new status. The status_event table is written either way.",
							 &withdrawal_notify_status,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	/*
	 * Settings of the workers themselves can only be set at server start and
	 * mean something only when the library is preloaded.  They are defined
	 * in every process all the same: a session that loads the library for
	 * the SQL API would otherwise find them as placeholders under the
	 * reserved prefix and warn, in every session, about a setting left in
	 * postgresql.conf after the library was taken out of
	 * shared_preload_libraries.  A PGC_POSTMASTER setting cannot be defined
	 * after startup, so there they are PGC_SIGHUP, which no session can SET.
	 */
	DefineCustomStringVariable("withdrawal.database",
							   "Database in which the dispatcher workers run.",
							   NULL,
							   &withdrawal_database,
							   "postgres",
							   withdrawal_preloaded ? PGC_POSTMASTER : PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("withdrawal.workers",
							"Number of dispatcher background workers.",
							"Zero disables dispatching.",
							&withdrawal_workers,
							1, 0, 32,
							withdrawal_preloaded ? PGC_POSTMASTER : PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("withdrawal");

	if (!withdrawal_preloaded)
		return;

	WithdrawalShmemInit();
	WithdrawalWorkerRegister();
}
