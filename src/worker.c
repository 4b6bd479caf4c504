/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The dispatcher background worker: registration, main loop, claims,
 *	  outcomes, and the SQL entry points retry() and sweep().
 *
 * Each worker loops on one WaitEventSet (its latch, postmaster death and
 * the sockets of its transfers; see dispatch.c).  A pass of the loop:
 *
 *	1. records the outcomes of finished payouts in ONE short transaction
 *	   (falling back to one transaction per payout when that fails);
 *	2. claims due outbox rows in ONE short, durably committed transaction:
 *	   FOR UPDATE SKIP LOCKED, a lease, status dispatching, attempts + 1 and
 *	   sent_at, bounded by the worker's free capacity and, per channel, by
 *	   the channel's share of it, the shared token bucket, the in-flight cap
 *	   and a processor's Retry-After (shmem.c);
 *	3. hands the claimed payouts to dispatch.c, which puts them on the wire
 *	   outside any transaction;
 *	4. now and then applies due sandbox events, seals the audit chain,
 *	   runs sweep() and expires withdrawals left in review too long.
 *
 * Dispatch is bound to the installation (binding.c): in a database whose
 * withdrawal.installation names another database system or database, a
 * restored copy, the worker claims nothing, applies no sandbox event and
 * runs no sweep, so that nothing reaches a processor, and says so once,
 * until resume_dispatch() binds the payouts to it.  Payouts already on
 * the wire when that changes are finished and recorded.
 *
 * Sent means maybe paid.  The claim that sets sent_at is committed with a
 * WAL flush before any request leaves, so no crash can make a payout that
 * may have reached the processor look unsent; every other commit of the
 * worker is asynchronous, because losing one only makes the payout be sent
 * again with the same idempotency key, which the processor answers with its
 * first answer.  A payout is refunded only on the proof of a declined
 * create request or a status query that says failed (lifecycle.c checks).
 *
 * Security: the worker connects as the role withdrawal_worker, never as a
 * superuser, and pins search_path and the settings its statements depend
 * on, so that nothing a database user creates or sets is used by it.
 *
 * Error policy: every transaction runs through run_transaction(), which
 * reports an ERROR, aborts and returns false.  A payout whose outcome
 * cannot be recorded is put back with a backoff; after withdrawal.park_after
 * such failures (or leases lost to a worker's death) it is parked for an
 * operator, so one poison payout cannot crash-loop the worker.  FATAL
 * (lost database...) exits, and the postmaster restarts the worker after
 * bgw_restart_time.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "args.h"
#include "audit.h"
#include "binding.h"
#include "channel.h"
#include "dispatch.h"
#include "indexscan.h"
#include "lifecycle.h"
#include "processor.h"
#include "review.h"
#include "secrets.h"
#include "shmem.h"
#include "spi.h"
#include "withdrawal.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(withdrawal_retry);
PG_FUNCTION_INFO_V1(withdrawal_sweep);

/* Longest sleep when nothing is due: bounds the pick-up of foreign leases */
#define IDLE_WAIT_MS		5000
/* Pause after an unexpected error, so that a failing query does not spin */
#define ERROR_PAUSE_MS		1000
/* Poll interval while the extension (or the worker's role) is missing */
#define INSTALL_POLL_MS		2000
/*
 * Audit sealing: every second, at most a slice of rows per pass of the
 * loop (a few milliseconds), so that a backlog does not hold up payouts
 */
#define AUDIT_SEAL_MS		1000
#define AUDIT_SEAL_SLICE	500
/* ... and now and then a look back for rows that committed late */
#define AUDIT_STRAGGLER_SEAL_MS 60000
/* Outcomes wait at most this long to be recorded together with others */
#define RECORD_DELAY_MS		5
#define MAX_ERROR_LEN		1000
/* A sandbox event that cannot be applied is tried again this much later */
#define SANDBOX_POSTPONE_MS	60000
/* Review expiry: every minute, a bounded batch per transaction */
#define EXPIRE_REVIEWS_MS	60000
#define EXPIRE_REVIEWS_BATCH 1000

/*
 * Settings the worker's statements rely on, pinned over anything a
 * database owner sets with ALTER DATABASE: name resolution, the meaning
 * of the statements, and the guards the triggers enforce.
 * synchronous_commit is off for the worker's own outcomes; claims commit
 * durably (see claim_body).
 */
static const struct
{
	const char *name;
	const char *value;
}			pinned_settings[] =
{
	{"search_path", "pg_catalog, withdrawal, pg_temp"},
	{"synchronous_commit", "off"},
	{"session_replication_role", "origin"},
	{"default_transaction_isolation", "read committed"},
	{"default_transaction_read_only", "off"},
	{"default_transaction_deferrable", "off"},
	{"statement_timeout", "0"},
	{"lock_timeout", "0"},
	{"idle_in_transaction_session_timeout", "0"},
	{"transform_null_equals", "off"},
	{"standard_conforming_strings", "on"},
	{"array_nulls", "on"},
	{"DateStyle", "ISO, YMD"},
	{"IntervalStyle", "postgres"},
	{"TimeZone", "UTC"},
	{"extra_float_digits", "1"},
	{"bytea_output", "hex"},
	{"plan_cache_mode", "auto"},
	{"row_security", "on"},
};

/* A channel and its processor, as loaded at the last claim */
typedef struct ChannelConfig
{
	char	   *name;
	double		rate;			/* <= 0: no rate limit */
	int			burst;
	int			max_in_flight;	/* <= 0: no cluster-wide cap */
	char	   *processor;
	char	   *driver;
	char	   *base_url;
	char	   *api_secret;
	int			connect_timeout_ms;
	int			request_timeout_ms;
	const char *unsendable;		/* why nothing can be sent, or NULL */
} ChannelConfig;

/*
 * What this worker keeps per channel across reloads: its requests on the
 * wire (for the channel's share of the worker) and the last reason the
 * channel could not send (logged when it changes).
 */
typedef struct ChannelState
{
	char		name[NAMEDATALEN];	/* hash key */
	int			in_flight;
	char		unsendable[256];
	bool		shared_noted;	/* unsendable copied to shared memory */
} ChannelState;

static int	worker_index = 0;
static MemoryContext worker_cxt = NULL;
static MemoryContext iter_cxt = NULL;
static MemoryContext channel_cxt = NULL;
static ChannelConfig *channels = NULL;
static int	nchannels = 0;
static HTAB *channel_states = NULL;
static int	network_channels = 0;	/* sendable channels not decided locally */
static int	claim_rotation = 0;

static TimestampTz next_claim_at = 0;	/* 0: claim at the next pass */
static bool claim_backlog = false;	/* last claim was capped by capacity */
static TimestampTz next_sandbox_at = 0;
static TimestampTz next_seal_at = 0;
static TimestampTz next_straggler_seal_at = 0;
static TimestampTz next_sweep_at = 0;
static TimestampTz next_expire_at = 0;
static bool extension_lost = false; /* a transaction failed: is it gone? */
static bool dispatch_state_known = false;	/* dispatch_held is up to date */
static bool dispatch_held = false;	/* bound to another installation */

/*
 * The binding is still the one this database's CREATE EXTENSION wrote, at
 * this time (WithdrawalBinding.fresh_since; 0 otherwise).  A restore that
 * is not one transaction loads rows for a while before the original's
 * binding: an outbox row queued before the installation existed is from
 * such a restore, and is not sent (scan_due).  restore_suspected: one was
 * seen; the sweep waits too.
 */
static TimestampTz binding_fresh_since = 0;
static bool restore_suspected = false;

/* What the worker reports for monitoring (shmem.c, monitor.c) */
static int64 stat_sent = 0;
static int64 stat_recorded = 0;
static int64 stat_failed = 0;
static int64 stat_dead = 0;
static int64 stat_send_errors = 0;

static void record_outcomes(WithdrawalPayout *list);
static int	sweep_internal(Interval *older_than);

/* ---------- registration ---------- */

void
WithdrawalWorkerRegister(void)
{
	BackgroundWorker worker;
	int			i;

	for (i = 0; i < withdrawal_workers && i < WITHDRAWAL_MAX_WORKERS; i++)
	{
		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 5;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "withdrawal");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "withdrawal_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "withdrawal worker %d", i);
		snprintf(worker.bgw_type, BGW_MAXLEN, "withdrawal worker");
		worker.bgw_main_arg = Int32GetDatum(i);
		worker.bgw_notify_pid = 0;
		RegisterBackgroundWorker(&worker);
	}
}

/* ---------- transactions ---------- */

typedef void (*TransactionBody) (void *arg);

/*
 * Runs body(arg) in a transaction of its own with an SPI connection and a
 * snapshot, and commits; durable commits wait for the WAL flush (and
 * synchronous standbys) whatever synchronous_commit the worker runs with.
 * On an ERROR: reports it, aborts, and returns false, with the message in
 * *error (when error is not NULL).  body runs in SPI's procedure context;
 * whatever must outlive the transaction it allocates in a longer-lived
 * context.  The caller's memory context is current again on return.
 */
static bool
run_transaction(const char *label, bool durable, TransactionBody body,
				void *arg, char **error)
{
	MemoryContext caller = CurrentMemoryContext;
	volatile bool ok = false;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		if (durable)
			(void) set_config_option("synchronous_commit", "on", PGC_SUSET,
									 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		debug_query_string = label;
		pgstat_report_activity(STATE_RUNNING, label);

		body(arg);

		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		/* what failed, for monitor_workers: the log alone needs rights */
		WithdrawalShmemWorkerError(worker_index, false,
								   psprintf("%s: %s", label, edata->message));
		if (error)
			*error = pnstrdup(edata->message, MAX_ERROR_LEN);
		FreeErrorData(edata);
		EmitErrorReport();
		AbortOutOfAnyTransaction();
		FlushErrorState();
		extension_lost = true;
	}
	PG_END_TRY();

	MemoryContextSwitchTo(caller);
	debug_query_string = NULL;
	/* pgstat's own rate limit keeps this cheap at thousands of commits/s */
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/* ---------- helpers ---------- */

static TimestampTz
later_ms(long ms)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
}

static void
earliest(TimestampTz *at, TimestampTz candidate)
{
	if (*at == 0 || candidate < *at)
		*at = candidate;
}

static long
backoff_ms(int attempts)
{
	double		ceiling = withdrawal_retry_base_ms * pow(2.0, Min(attempts, 40));

	ceiling = Min(ceiling, (double) withdrawal_retry_cap_ms);
	return (long) (pg_prng_double(&pg_global_prng_state) * ceiling);
}

static char *
clip_error(const char *error)
{
	if (error == NULL)
		return NULL;
	return pnstrdup(error, MAX_ERROR_LEN);
}

static char *
copy_or_null(MemoryContext cxt, const char *s)
{
	return s ? MemoryContextStrdup(cxt, s) : NULL;
}

/* ---------- the extension and the worker's identity ---------- */

typedef enum ExtensionState
{
	EXTENSION_MISSING,
	EXTENSION_OTHER_VERSION,
	EXTENSION_READY
} ExtensionState;

typedef struct ExtensionCheck
{
	ExtensionState state;
	char	   *version;
} ExtensionCheck;

static void
extension_check_body(void *arg)
{
	ExtensionCheck *check = (ExtensionCheck *) arg;

	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension"
					" WHERE extname OPERATOR(pg_catalog.=) 'withdrawal'",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up the withdrawal extension");
	if (SPI_processed == 0)
		check->state = EXTENSION_MISSING;
	else
	{
		check->version = MemoryContextStrdup(iter_cxt, WithdrawalSpiGetText(0, 1));
		check->state = strcmp(check->version, WITHDRAWAL_VERSION) == 0 ?
			EXTENSION_READY : EXTENSION_OTHER_VERSION;
	}
}

/*
 * One poll of a worker waiting for CREATE EXTENSION (its role, its tables):
 * said in pg_stat_activity, woken by its latch, signals and reloads
 * handled.
 */
static void
wait_for_install(void)
{
	pgstat_report_activity(STATE_IDLE, "withdrawal: waiting for CREATE EXTENSION withdrawal");
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 INSTALL_POLL_MS, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * Waits, quietly and without crash-looping, until the extension is
 * installed in the worker's database at the library's version.  A
 * database at another version is waiting for ALTER EXTENSION UPDATE: the
 * worker's statements are written for this version's tables.
 */
static void
wait_for_extension(void)
{
	bool		logged_version = false;

	for (;;)
	{
		ExtensionCheck check = {EXTENSION_MISSING, NULL};

		if (run_transaction("withdrawal: waiting for CREATE EXTENSION withdrawal", false,
							extension_check_body, &check, NULL) &&
			check.state == EXTENSION_READY)
			break;
		WithdrawalShmemWorkerState(worker_index,
								   check.state == EXTENSION_OTHER_VERSION ?
								   "waiting for ALTER EXTENSION UPDATE" :
								   "waiting for CREATE EXTENSION");
		if (check.state == EXTENSION_OTHER_VERSION && !logged_version)
		{
			ereport(LOG,
					(errmsg("withdrawal worker %d waits for ALTER EXTENSION withdrawal UPDATE in database \"%s\"",
							worker_index, withdrawal_database),
					 errdetail("The database has version %s of the extension and the library is version %s.",
							   check.version, WITHDRAWAL_VERSION)));
			logged_version = true;
		}
		wait_for_install();
		MemoryContextReset(iter_cxt);
	}
	extension_lost = false;
	WithdrawalShmemWorkerState(worker_index, "dispatching");
}

/*
 * After a failed transaction: is the extension still there?  When it was
 * dropped (or replaced by another version), everything on the wire is
 * abandoned and the worker waits for it again, without logging an ERROR
 * at every pass.
 */
static void
recheck_extension(void)
{
	ExtensionCheck check = {EXTENSION_MISSING, NULL};

	extension_lost = false;
	if (run_transaction("withdrawal: checking the extension", false,
						extension_check_body, &check, NULL) &&
		check.state == EXTENSION_READY)
		return;
	ereport(LOG,
			(errmsg("withdrawal worker %d stops dispatching: the extension is no longer installed at version %s in database \"%s\"",
					worker_index, WITHDRAWAL_VERSION, withdrawal_database)));
	WithdrawalDispatchAbandonAll();
	hash_destroy(channel_states);
	channel_states = NULL;
	dispatch_state_known = false;
	wait_for_extension();
}

/*
 * Can the worker connect: does its role exist, with LOGIN, and does
 * withdrawal.database exist and accept connections?  Needs a transaction,
 * not a database.  Each obstacle is said once: connecting regardless would
 * end in a FATAL and a restart every bgw_restart_time, for as long as the
 * obstacle lasts.
 */
static bool
worker_can_connect(void)
{
	static bool warned_role = false;
	static bool warned_database = false;
	HeapTuple	tuple;
	bool		role_usable = false;
	bool		database_exists;
	bool		database_usable = false;
	Relation	database_rel;
	ScanKeyData key;
	SysScanDesc scan;

	StartTransactionCommand();
	tuple = SearchSysCache1(AUTHNAME, CStringGetDatum(WITHDRAWAL_WORKER_ROLE));
	if (HeapTupleIsValid(tuple))
	{
		role_usable = ((Form_pg_authid) GETSTRUCT(tuple))->rolcanlogin;
		ReleaseSysCache(tuple);
		if (!role_usable && !warned_role)
		{
			ereport(WARNING,
					(errmsg("withdrawal worker %d cannot connect: role \"%s\" has NOLOGIN",
							worker_index, WITHDRAWAL_WORKER_ROLE),
					 errhint("ALTER ROLE %s LOGIN; it needs no password.", WITHDRAWAL_WORKER_ROLE)));
			warned_role = true;
		}
	}

	/*
	 * get_database_oid() would insist on pg_database's name index, whose
	 * relcache entry a process without a database may not be able to build;
	 * scan as InitPostgres itself does.
	 */
	database_rel = table_open(DatabaseRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_database_datname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(withdrawal_database));
	scan = systable_beginscan(database_rel, DatabaseNameIndexId, criticalSharedRelcachesBuilt,
							  NULL, 1, &key);
	tuple = systable_getnext(scan);
	database_exists = HeapTupleIsValid(tuple);
	if (database_exists)
		database_usable = ((Form_pg_database) GETSTRUCT(tuple))->datallowconn;
	systable_endscan(scan);
	table_close(database_rel, AccessShareLock);
	if (!database_usable && !warned_database)
	{
		ereport(WARNING,
				(errmsg("withdrawal worker %d waits for database \"%s\": it %s",
						worker_index, withdrawal_database,
						database_exists ? "does not allow connections" : "does not exist"),
				 errhint("Create the database and CREATE EXTENSION withdrawal in it, or set withdrawal.database to the database that has the extension and restart the server.")));
		warned_database = true;
	}
	CommitTransactionCommand();
	return role_usable && database_usable;
}

/*
 * Connects to withdrawal.database as withdrawal_worker.  That role is
 * created by CREATE EXTENSION, which may come after the server starts,
 * and a background worker connects only once: until the role has been
 * seen, the worker attaches to no database (shared catalogs only, where
 * no user code can run), waits for the role and for the database, notes it
 * in shared memory and exits to be restarted, now to connect as the role.
 * Should the connection fail all the same (the database dropped meanwhile),
 * the flag is clear again and the next start waits without a database.
 */
static void
connect_as_worker_role(void)
{
	if (!WithdrawalShmemWorkerRoleSeen(worker_index))
	{
		BackgroundWorkerInitializeConnection(NULL, NULL, 0);
		pgstat_report_appname("withdrawal");
		WithdrawalShmemWorkerState(worker_index, "waiting for its role and database");
		while (!worker_can_connect())
		{
			wait_for_install();
			WithdrawalShmemWorkerState(worker_index, "waiting for its role and database");
		}
		WithdrawalShmemSetWorkerRoleSeen(worker_index, true);
		ereport(LOG,
				(errmsg("withdrawal worker %d restarts to connect as role \"%s\"",
						worker_index, WITHDRAWAL_WORKER_ROLE)));
		proc_exit(1);
	}

	/* should the role be gone, the next start looks for it again */
	WithdrawalShmemSetWorkerRoleSeen(worker_index, false);
	BackgroundWorkerInitializeConnection(withdrawal_database, WITHDRAWAL_WORKER_ROLE, 0);
	WithdrawalShmemSetWorkerRoleSeen(worker_index, true);
	if (superuser())
		ereport(WARNING,
				(errmsg("role \"%s\" is a superuser", WITHDRAWAL_WORKER_ROLE),
				 errdetail("The dispatcher workers should run with exactly the rights CREATE EXTENSION grants them."),
				 errhint("ALTER ROLE %s NOSUPERUSER;", WITHDRAWAL_WORKER_ROLE)));
}

/* Pins the settings the worker's statements rely on (see pinned_settings) */
static void
pin_settings(void)
{
	int			i;

	for (i = 0; i < lengthof(pinned_settings); i++)
		SetConfigOption(pinned_settings[i].name, pinned_settings[i].value,
						PGC_SUSET, PGC_S_OVERRIDE);
}

/* ---------- channels ---------- */

static ChannelState *
channel_state(const char *name)
{
	char		key[NAMEDATALEN];
	bool		found;
	ChannelState *state;

	if (channel_states == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(ChannelState);
		ctl.hcxt = worker_cxt;
		channel_states = hash_create("withdrawal worker channels", 16, &ctl,
									 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	memset(key, 0, sizeof(key));
	strlcpy(key, name, NAMEDATALEN);
	state = hash_search(channel_states, key, HASH_ENTER, &found);
	if (!found)
	{
		state->in_flight = 0;
		state->unsendable[0] = '\0';
		state->shared_noted = false;
	}
	return state;
}

/*
 * Why a channel cannot send anything now, or NULL: checked before a claim,
 * so that its payouts stay queued (and unsent) instead of being claimed,
 * marked sent and failed by the transport.
 */
static const char *
channel_unsendable(const ChannelConfig *c)
{
	const WithdrawalDriver *driver = WithdrawalDriverFind(c->driver);
	char	   *why;

	if (driver == NULL)
		return psprintf("processor \"%s\" has unknown driver \"%s\"", c->processor, c->driver);
	if (driver->decide != NULL)
		return NULL;
	if (c->base_url == NULL)
		return psprintf("processor \"%s\" has no base_url", c->processor);
	if (!WithdrawalUrlAllowed(c->base_url, &why))
		return why;
	if (c->api_secret && WithdrawalSecretGet(c->api_secret) == NULL)
		return psprintf("api secret \"%s\" of processor \"%s\" is not in withdrawal.secrets_file",
						c->api_secret, c->processor);
	return NULL;
}

/*
 * Logs a channel's ability to send when it changes, and shows it in
 * shared memory for monitor_channels (also at the first look after a
 * start: the shared copy may date from a previous worker).
 */
static void
note_sendable(const ChannelConfig *c)
{
	ChannelState *state = channel_state(c->name);
	const char *why = c->unsendable ? c->unsendable : "";
	bool		changed = strncmp(state->unsendable, why, sizeof(state->unsendable) - 1) != 0;

	if (changed || !state->shared_noted)
	{
		WithdrawalChannelNoteUnsendable(c->name, c->unsendable, c->burst);
		state->shared_noted = true;
	}
	if (!changed)
		return;
	if (c->unsendable)
		ereport(WARNING,
				(errmsg("withdrawal channel \"%s\" cannot dispatch: %s", c->name, c->unsendable),
				 errdetail("Its payouts stay queued and are not sent until this is fixed.")));
	else
		ereport(LOG,
				(errmsg("withdrawal channel \"%s\" can dispatch again", c->name)));
	strlcpy(state->unsendable, why, sizeof(state->unsendable));
}

/* Loads the enabled channels (with each channel's processor) */
static void
load_channels(void)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext old;
	int			i;

	WithdrawalPrepare(&plan,
					  "SELECT c.name, c.rate_per_second, c.burst, c.max_in_flight,"
					  "       p.name, p.driver, p.base_url, p.api_secret,"
					  "       p.connect_timeout_ms, p.request_timeout_ms"
					  "  FROM withdrawal.channel c JOIN withdrawal.processor p"
					  "    ON p.name = c.processor"
					  " WHERE c.enabled",
					  0, NULL);
	WithdrawalExecute(plan, NULL, NULL, true, 0, SPI_OK_SELECT);

	MemoryContextReset(channel_cxt);
	old = MemoryContextSwitchTo(channel_cxt);
	nchannels = (int) SPI_processed;
	channels = palloc0(sizeof(ChannelConfig) * Max(nchannels, 1));
	for (i = 0; i < nchannels; i++)
	{
		ChannelConfig *c = &channels[i];
		bool		isnull;
		Datum		d;

		c->name = WithdrawalSpiGetText(i, 1);
		d = WithdrawalSpiGet(i, 2, &isnull);
		c->rate = isnull ? 0 : DatumGetFloat8(d);
		c->burst = DatumGetInt32(WithdrawalSpiGet(i, 3, &isnull));
		d = WithdrawalSpiGet(i, 4, &isnull);
		c->max_in_flight = isnull ? 0 : DatumGetInt32(d);
		c->processor = WithdrawalSpiGetText(i, 5);
		c->driver = WithdrawalSpiGetText(i, 6);
		c->base_url = WithdrawalSpiGetText(i, 7);
		c->api_secret = WithdrawalSpiGetText(i, 8);
		c->connect_timeout_ms = DatumGetInt32(WithdrawalSpiGet(i, 9, &isnull));
		c->request_timeout_ms = DatumGetInt32(WithdrawalSpiGet(i, 10, &isnull));
		c->unsendable = channel_unsendable(c);
	}
	MemoryContextSwitchTo(old);
	network_channels = 0;
	for (i = 0; i < nchannels; i++)
	{
		const WithdrawalDriver *driver = WithdrawalDriverFind(channels[i].driver);

		/*
		 * A daily cap lowered below what the channel accepted today holds
		 * its payouts until the channel's next day (policy.c).  Read after
		 * the loop above: it may reload the policy cache through SPI.
		 */
		if (channels[i].unsendable == NULL)
		{
			old = MemoryContextSwitchTo(channel_cxt);
			channels[i].unsendable = WithdrawalChannelCapHold(channels[i].name);
			MemoryContextSwitchTo(old);
		}
		note_sendable(&channels[i]);
		if (channels[i].unsendable == NULL && driver != NULL && driver->decide == NULL)
			network_channels++;
	}
}

/*
 * The most requests one channel may have on this worker's wire: its share,
 * when there is another channel whose processor it could starve (one that
 * sends over the network); all of the wire when it is the only one.
 */
static int
channel_share_cap(void)
{
	if (network_channels <= 1)
		return withdrawal_max_in_flight;
	return Max(1, withdrawal_max_in_flight * withdrawal_channel_share / 100);
}

/* ---------- claiming ---------- */

/* A channel's part of a claim: how many rows it may give, how many it gave */
typedef struct ChannelClaim
{
	ChannelConfig *channel;
	int			granted;		/* reserved in shared memory */
	int			claimed;
	bool		probe;			/* the grant is a half-open breaker's probe */
} ChannelClaim;

typedef struct ClaimWork
{
	int			capacity;
	ChannelClaim *claims;
	int			nclaims;
	WithdrawalPayout *list;
	int			total;
} ClaimWork;

/* Columns of withdrawal.outbox that the due scan reads */
/*
 * A payout queued before this installation was created: a restore that has
 * not yet loaded the original's binding (withdrawal.installation).  Said
 * once per worker; nothing old is sent, and the sweep waits, until the
 * binding is loaded (dispatch is then held) or resumed.
 */
static void
note_restore_suspected(void)
{
	if (restore_suspected)
		return;
	restore_suspected = true;
	ereport(WARNING,
			(errmsg("withdrawal worker %d does not send payouts queued before this installation was created",
					worker_index),
			 errdetail("The extension was created in database \"%s\" after they were queued: they come from a restore that has not loaded the original's binding yet."
					   "  They are sent only once dispatch is resumed here.",
					   withdrawal_database),
			 errhint("Restore with --single-transaction, or with withdrawal.workers = 0; if this copy is the one that should pay, run SELECT withdrawal.resume_dispatch('reason') in it.")));
}

typedef struct OutboxColumns
{
	AttrNumber	withdrawal_id;
	AttrNumber	next_attempt_at;
	AttrNumber	lease_until;
	AttrNumber	parked_at;
	AttrNumber	enqueued_at;
} OutboxColumns;

/*
 * Finds, without the planner, the due rows of one channel and kind:
 * a scan of the index outbox_due, which keeps each channel's sends and
 * status queries in next_attempt_at order, for rows that are neither
 * leased nor parked, up to "want" of them, into ids.  Also lowers
 * *next_at to the time the first row that is not due yet falls due.
 *
 * Planned SQL does this badly on a new installation: without statistics,
 * "channel = $1" looks like it matches a single row, and the planner
 * sorts the whole queue at every claim.  The rows found are only
 * candidates: the claim statement locks them, skipping those another
 * worker took meanwhile, and checks them again.
 */
static int
scan_due(const char *channel, const char *kind, TimestampTz now, int want,
		 Datum *ids, TimestampTz *next_at)
{
	static OutboxColumns col;
	Relation	rel;
	Relation	index;
	ScanKeyData keys[3];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snapshot;
	int			n = 0;

	rel = table_open(WithdrawalRelationOid("outbox"), AccessShareLock);
	index = index_open(WithdrawalRelationOid("outbox_due"), AccessShareLock);
	if (col.withdrawal_id == 0)
	{
		TupleDesc	tupdesc = RelationGetDescr(rel);

		col.withdrawal_id = SPI_fnumber(tupdesc, "withdrawal_id");
		col.next_attempt_at = SPI_fnumber(tupdesc, "next_attempt_at");
		col.lease_until = SPI_fnumber(tupdesc, "lease_until");
		col.parked_at = SPI_fnumber(tupdesc, "parked_at");
		col.enqueued_at = SPI_fnumber(tupdesc, "enqueued_at");
	}
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ, CStringGetTextDatum(channel));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[1], F_TEXTEQ, CStringGetTextDatum(kind));

	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, snapshot, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	while (n < want && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		TimestampTz due;

		(void) slot_getattr(slot, col.parked_at, &isnull);
		if (!isnull)
			continue;
		due = DatumGetTimestampTz(slot_getattr(slot, col.next_attempt_at, &isnull));
		if (due > now)
		{
			/* the rest of this channel and kind is due later still */
			if (*next_at == 0 || due < *next_at)
				*next_at = due;
			break;
		}
		{
			Datum		lease = slot_getattr(slot, col.lease_until, &isnull);

			if (!isnull && DatumGetTimestampTz(lease) >= now)
				continue;		/* on the wire */
		}
		if (binding_fresh_since != 0 &&
			DatumGetTimestampTz(slot_getattr(slot, col.enqueued_at, &isnull)) < binding_fresh_since)
		{
			note_restore_suspected();
			continue;			/* older than this installation */
		}
		ids[n++] = datumCopy(slot_getattr(slot, col.withdrawal_id, &isnull), false, UUID_LEN);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return n;
}

/*
 * Claims up to "limit" of the candidate rows, in their order: locks both
 * rows (skipping those another worker holds), checks them again, leases the
 * outbox row, and moves a send to dispatching with attempts + 1 and
 * sent_at, the durable fact that it may reach the processor.  Every table
 * is reached by key; the plan is made for each claim, with the number of
 * candidates known, so that no plan kept from when the tables were empty
 * can hash or scan a whole table.  Appends the claimed payouts to w->list;
 * returns how many.
 */
static int
claim_candidates(ClaimWork *w, ChannelClaim *cc, Datum *ids, int nids, int limit)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {UUIDARRAYOID, INT4OID, INT4OID, INT4OID};
	Datum		values[4];
	ChannelConfig *c = cc->channel;
	int			i;
	int			n;

	WithdrawalPrepareCustom(&plan,
							"WITH c AS ("
							"  SELECT o.withdrawal_id FROM withdrawal.outbox o"
							"    JOIN withdrawal.withdrawal w ON w.withdrawal_id = o.withdrawal_id"
							"   WHERE o.withdrawal_id = ANY ($1)"
							"     AND o.next_attempt_at <= pg_catalog.now()"
							"     AND (o.lease_until IS NULL OR o.lease_until < pg_catalog.now())"
							"     AND o.parked_at IS NULL"
							"     AND CASE WHEN o.kind = 'send' THEN w.status IN ('queued', 'dispatching')"
							"              ELSE w.status IN ('submitted', 'dead') END"
							"   ORDER BY pg_catalog.array_position($1, o.withdrawal_id) LIMIT $2"
							"   FOR UPDATE OF o SKIP LOCKED FOR NO KEY UPDATE OF w SKIP LOCKED"
							"), l AS ("
							"  UPDATE withdrawal.outbox o"
							"     SET lease_until = pg_catalog.now() + pg_catalog.make_interval(secs => $3), claimed_by = $4"
							"   WHERE o.withdrawal_id = ANY (ARRAY(SELECT withdrawal_id FROM c))"
							"  RETURNING o.withdrawal_id, o.kind, o.lease_until, o.busy_answers"
							")"
							" UPDATE withdrawal.withdrawal w"
							"    SET status = CASE WHEN l.kind = 'send' THEN 'dispatching' ELSE w.status END,"
							"        attempts = w.attempts + CASE WHEN l.kind = 'send' THEN 1 ELSE 0 END,"
							"        sent_at = CASE WHEN l.kind = 'send' THEN coalesce(w.sent_at, pg_catalog.now())"
							"                  ELSE w.sent_at END,"
							"        updated_at = pg_catalog.now()"
							"   FROM l WHERE w.withdrawal_id = l.withdrawal_id"
							"    AND w.withdrawal_id = ANY (ARRAY(SELECT withdrawal_id FROM l))"
							" RETURNING w.withdrawal_id, l.kind, l.lease_until, w.account_id, w.currency,"
							"   w.amount, w.attempts,"
							"   pg_catalog.jsonb_build_object('id', w.withdrawal_id, 'account_id', w.account_id,"
							"     'amount', w.amount, 'currency', w.currency, 'channel', w.channel,"
							"     'destination', w.destination)::text,"
							"   w.destination ->> 'stripe_account', w.processor_ref, l.busy_answers",
							4, types);
	values[0] = PointerGetDatum(construct_array(ids, nids, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	values[1] = Int32GetDatum(limit);
	values[2] = Int32GetDatum(withdrawal_lease_seconds);
	values[3] = Int32GetDatum(worker_index);
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_UPDATE_RETURNING);

	n = (int) SPI_processed;
	for (i = 0; i < n; i++)
	{
		MemoryContext cxt = AllocSetContextCreate(worker_cxt, "withdrawal payout",
												  ALLOCSET_SMALL_SIZES);
		WithdrawalPayout *p = MemoryContextAllocZero(cxt, sizeof(WithdrawalPayout));
		MemoryContext old = MemoryContextSwitchTo(cxt);
		bool		isnull;

		p->cxt = cxt;
		p->id = *DatumGetUUIDP(WithdrawalSpiGet(i, 1, &isnull));
		strlcpy(p->id_text, WithdrawalUuidText(&p->id), sizeof(p->id_text));
		p->query = strcmp(WithdrawalSpiGetText(i, 2), "query") == 0;
		p->lease_until = DatumGetTimestampTz(WithdrawalSpiGet(i, 3, &isnull));
		p->account_id = WithdrawalSpiGetText(i, 4);
		p->currency = WithdrawalSpiGetText(i, 5);
		p->amount = DatumGetInt64(WithdrawalSpiGet(i, 6, &isnull));
		p->attempts = DatumGetInt32(WithdrawalSpiGet(i, 7, &isnull));
		p->http_body = WithdrawalSpiGetText(i, 8);
		p->stripe_account = WithdrawalSpiGetText(i, 9);
		p->known_ref = WithdrawalSpiGetText(i, 10);
		p->busy_answers = DatumGetInt32(WithdrawalSpiGet(i, 11, &isnull));
		p->channel = pstrdup(c->name);
		p->processor = copy_or_null(cxt, c->processor);
		p->driver_name = copy_or_null(cxt, c->driver);
		p->base_url = copy_or_null(cxt, c->base_url);
		p->api_secret_name = copy_or_null(cxt, c->api_secret);
		p->connect_timeout_ms = c->connect_timeout_ms;
		p->request_timeout_ms = c->request_timeout_ms;
		p->burst = c->burst;
		p->reserved = true;
		p->breaker_probe = cc->probe;
		MemoryContextSwitchTo(old);
		p->next = w->list;
		w->list = p;
	}
	cc->claimed += n;
	return n;
}

/*
 * Claims for one channel: its sends first, then its status queries, up to
 * what the channel was granted and the capacity left.  Candidates are
 * found generously (another worker may be locking the first ones) and
 * claimed in their order.
 */
static void
claim_channel(ClaimWork *w, ChannelClaim *cc, TimestampTz now)
{
	static const char *const kinds[] = {"send", "query"};
	int			k;

	for (k = 0; k < lengthof(kinds); k++)
	{
		int			want = Min(cc->granted - cc->claimed, w->capacity - w->total);
		int			room = Min(want * (withdrawal_workers + 1), 1000);
		Datum	   *ids;
		int			nids;

		if (want <= 0)
			return;
		ids = palloc(sizeof(Datum) * room);
		nids = scan_due(cc->channel->name, kinds[k], now, room, ids, &next_claim_at);
		if (nids > 0)
			w->total += claim_candidates(w, cc, ids, nids, want);
	}
}

/* When the first sandbox event falls due */
static void
plan_next_sandbox(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	Datum		d;

	WithdrawalPrepare(&plan, "SELECT min(due_at) FROM withdrawal.sandbox_event", 0, NULL);
	WithdrawalExecute(plan, NULL, NULL, true, 1, SPI_OK_SELECT);
	d = WithdrawalSpiGet(0, 1, &isnull);
	if (!isnull)
		earliest(&next_sandbox_at, DatumGetTimestampTz(d));
}

/*
 * Whether dispatch is held because the payouts are bound to another
 * installation (binding.c), from the copy of the binding that this
 * backend keeps until withdrawal.installation changes.  Worker 0 logs the
 * state when it starts held and whenever it changes, once.
 */
static bool
binding_holds_dispatch(void)
{
	WithdrawalBinding b;
	int			level = worker_index == 0 ? WARNING : DEBUG1;

	if (!WithdrawalBindingCheck(&b) && dispatch_state_known)
		return dispatch_held;
	binding_fresh_since = b.held ? 0 : b.fresh_since;
	if (!binding_fresh_since)
		restore_suspected = false;
	if (dispatch_state_known && b.held == dispatch_held)
		return dispatch_held;

	if (b.held && !b.found)
		ereport(level,
				(errmsg("withdrawal workers hold dispatch in database \"%s\": the payouts are bound to no installation",
						withdrawal_database),
				 errdetail("withdrawal.installation has no row.  Nothing is sent to any processor until dispatch is resumed."),
				 errhint("If this database is the one that should pay, run SELECT withdrawal.resume_dispatch('reason') in it.")));
	else if (b.held)
		ereport(level,
				(errmsg("withdrawal workers hold dispatch in database \"%s\": its payouts are bound to another installation",
						withdrawal_database),
				 errdetail("The payouts are bound to database \"%s\" (OID %u) of database system " INT64_FORMAT
						   "; this is database OID %u of database system " INT64_FORMAT
						   ", a restored or copied database.  Nothing is sent to any processor until dispatch is resumed.",
						   b.bound_database_name, b.bound_database_oid, b.bound_system_identifier,
						   b.database_oid, b.system_identifier),
				 errhint("If this copy is the one that should pay, run SELECT withdrawal.resume_dispatch('reason') in it.")));
	else if (dispatch_state_known)
		ereport(worker_index == 0 ? LOG : DEBUG1,
				(errmsg("withdrawal workers resume dispatch in database \"%s\": its payouts are bound to this installation",
						withdrawal_database)));
	dispatch_held = b.held;
	dispatch_state_known = true;
	return dispatch_held;
}

/*
 * The claim transaction: loads the channels, asks each sendable channel's
 * shared state how many requests it may start (its share of this worker,
 * its cluster-wide cap, its token bucket, a Retry-After pause), and claims.
 * Channels take turns at being first, so that none is always served last.
 * Then finds when to claim next (the first row not due yet, the first
 * sandbox event).
 */
static void
claim_body(void *arg)
{
	ClaimWork  *w = (ClaimWork *) arg;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int			i;

	/* a restored copy claims nothing until resumed */
	if (binding_holds_dispatch())
		return;
	load_channels();
	w->claims = MemoryContextAllocZero(iter_cxt, sizeof(ChannelClaim) * Max(nchannels, 1));
	claim_rotation = nchannels > 0 ? (claim_rotation + 1) % nchannels : 0;
	for (i = 0; i < nchannels && w->total < w->capacity; i++)
	{
		ChannelConfig *c = &channels[(i + claim_rotation) % nchannels];
		ChannelClaim *cc = &w->claims[w->nclaims];
		int			headroom;
		long		wait_ms;

		if (c->unsendable)
			continue;
		headroom = channel_share_cap() - channel_state(c->name)->in_flight;
		if (headroom <= 0)
			continue;
		cc->channel = c;
		cc->granted = WithdrawalChannelReserve(c->name, c->rate, c->burst, c->max_in_flight,
											   worker_index, Min(headroom, w->capacity - w->total),
											   &wait_ms, &cc->probe);
		if (wait_ms >= 0)
			earliest(&next_claim_at, later_ms(wait_ms));
		if (cc->granted == 0)
			continue;
		w->nclaims++;
		claim_channel(w, cc, now);
		/* a channel that gave all it was granted may have more waiting */
		if (cc->claimed == cc->granted)
			claim_backlog = true;
	}
	if (w->total >= w->capacity)
		claim_backlog = true;
	plan_next_sandbox();
}

/* Gives back what the claim reserved and did not use */
static void
release_unclaimed(ClaimWork *w)
{
	int			i;

	for (i = 0; i < w->nclaims; i++)
		if (w->claims[i].granted > w->claims[i].claimed)
			WithdrawalChannelRelease(w->claims[i].channel->name, worker_index,
									 w->claims[i].granted - w->claims[i].claimed, 0,
									 w->claims[i].channel->burst);
}

/*
 * Claims up to capacity payouts in one transaction, committed durably, and
 * starts them.  Nothing leaves the machine before that commit.
 */
static void
claim_and_start(int capacity)
{
	ClaimWork	w;
	WithdrawalPayout *p;
	WithdrawalPayout *next;

	memset(&w, 0, sizeof(w));
	w.capacity = capacity;
	next_claim_at = 0;
	claim_backlog = false;

	if (!run_transaction("withdrawal: claiming payouts", true, claim_body, &w, NULL))
	{
		/* nothing was claimed: the rolled-back claim marked nothing sent */
		for (p = w.list; p; p = next)
		{
			next = p->next;
			MemoryContextDelete(p->cxt);
		}
		w.list = NULL;
		for (int i = 0; i < w.nclaims; i++)
			w.claims[i].claimed = 0;
		release_unclaimed(&w);
		next_claim_at = later_ms(ERROR_PAUSE_MS);
		return;
	}
	release_unclaimed(&w);
	if (next_claim_at == 0)
		next_claim_at = later_ms(IDLE_WAIT_MS);

	if (w.total > 0)
		pgstat_report_activity(STATE_IDLE, psprintf("withdrawal: sending %d payouts", w.total));
	for (p = w.list; p; p = next)
	{
		next = p->next;
		if (WithdrawalDispatchStart(p))
		{
			channel_state(p->channel)->in_flight++;
			stat_sent++;
		}
	}
}

/* ---------- outcomes ---------- */

/*
 * The data of a status change the worker makes.  The actor is the session
 * user, i.e. the worker's own role, which no other login can be.
 */
static void
transition_data(WithdrawalTransitionData *data, const WithdrawalPayout *p,
				const char *action)
{
	memset(data, 0, sizeof(*data));
	data->action = action;
	data->missing_ok = true;
	data->invalid_ok = true;
	data->processor_ref = p->processor_ref;
	data->last_error = clip_error(p->error);
}

static bool
transition(WithdrawalPayout *p, WithdrawalStatus to, const char *action)
{
	WithdrawalTransitionData data;

	transition_data(&data, p, action);
	return WithdrawalTransition(&p->id, to, &data, NULL);
}

/* Failed with proof: the only refund the worker makes */
static bool
transition_failed(WithdrawalPayout *p, const char *proof, const char *action)
{
	WithdrawalTransitionData data;

	transition_data(&data, p, action);
	data.reason = clip_error(p->error);
	data.refund_proof = proof;
	return WithdrawalTransition(&p->id, WITHDRAWAL_FAILED, &data, NULL);
}

/* Notes an answer (or a failure) that changes nothing else in last_error */
static void
note_error(const pg_uuid_t *id, const char *error)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {UUIDOID, TEXTOID};
	Datum		values[2];

	if (error == NULL)
		return;
	WithdrawalPrepare(&plan,
					  "UPDATE withdrawal.withdrawal SET last_error = $2 WHERE withdrawal_id = $1",
					  2, types);
	values[0] = UUIDPGetDatum(id);
	values[1] = CStringGetTextDatum(clip_error(error));
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_UPDATE);
}

/*
 * Puts a send back on the queue after delay_ms: the same key is used
 * again.  An "in progress" answer is not an attempt: it is counted apart.
 */
static void
requeue(WithdrawalPayout *p, long delay_ms, bool busy)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {UUIDOID, INT8OID, INT4OID};
	Datum		values[3];
	WithdrawalTransitionData data;

	transition_data(&data, p, busy ? "dispatch_busy" : "dispatch_retry");
	data.uncount_attempt = busy;
	if (!WithdrawalTransition(&p->id, WITHDRAWAL_QUEUED, &data, NULL))
		return;
	WithdrawalPrepare(&plan,
					  "UPDATE withdrawal.outbox SET lease_until = NULL, claimed_by = NULL,"
					  " busy_answers = busy_answers + $3,"
					  " next_attempt_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $2 / 1000.0)"
					  " WHERE withdrawal_id = $1",
					  3, types);
	values[0] = UUIDPGetDatum(&p->id);
	values[1] = Int64GetDatum(delay_ms);
	values[2] = Int32GetDatum(busy ? 1 : 0);
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_UPDATE);
	earliest(&next_claim_at, later_ms(delay_ms));
}

/* The answer to a status query, whose outbox row this worker leases */
static void
apply_query_outcome(WithdrawalPayout *p)
{
	static SPIPlanPtr unquery_plan = NULL;
	Oid			types[2] = {UUIDOID, TIMESTAMPTZOID};
	Datum		values[2];
	bool		dead;

	values[0] = UUIDPGetDatum(&p->id);
	values[1] = TimestampTzGetDatum(p->lease_until);
	WithdrawalPrepare(&unquery_plan,
					  "DELETE FROM withdrawal.outbox WHERE withdrawal_id = $1"
					  " AND lease_until = $2 AND kind = 'query'"
					  " RETURNING (SELECT status FROM withdrawal.withdrawal w"
					  "             WHERE w.withdrawal_id = $1)",
					  2, types);
	WithdrawalExecute(unquery_plan, values, NULL, false, 0, SPI_OK_DELETE_RETURNING);
	if (SPI_processed == 0)
		return;
	dead = strcmp(WithdrawalSpiGetText(0, 1), "dead") == 0;

	switch (p->outcome)
	{
		case WITHDRAWAL_OUTCOME_PAID:
			transition(p, WITHDRAWAL_PAID, "dispatch_query_paid");
			break;
		case WITHDRAWAL_OUTCOME_FAILED:
			if (transition_failed(p, "processor_status", "dispatch_query_failed"))
				p->ended = "failed";
			break;
		case WITHDRAWAL_OUTCOME_UNKNOWN:

			/*
			 * No record is not proof of anything: a submitted payout is sent
			 * again with the same key; a dead one waits for an operator's
			 * retry().
			 */
			if (!dead)
			{
				transition(p, WITHDRAWAL_QUEUED, "dispatch_query_resend");
				break;
			}
			/* FALLTHROUGH */
		default:

			/*
			 * No final word; asked again after withdrawal.poll_after.  A dead
			 * payout keeps the reason it died for.
			 */
			if (dead)
				elog(DEBUG1, "withdrawal %s (dead): status query answered %s: %s",
					 p->id_text, WithdrawalOutcomeName(p->outcome), p->error ? p->error : "");
			else
				note_error(&p->id, p->error);
			break;
	}
}

/*
 * Applies one outcome in the current transaction, the withdrawal's row
 * already locked (record_body).  The lease is the claim token: when it is
 * gone (another worker took the payout over after our lease expired, a
 * webhook settled it, ops intervened) the outcome is dropped; the payout's
 * later word comes from whoever holds it now.
 */
static void
apply_outcome(WithdrawalPayout *p)
{
	static SPIPlanPtr lock_plan = NULL;
	Oid			types[2] = {UUIDOID, TIMESTAMPTZOID};
	Datum		values[2];

	if (p->query)
	{
		apply_query_outcome(p);
		return;
	}

	values[0] = UUIDPGetDatum(&p->id);
	values[1] = TimestampTzGetDatum(p->lease_until);
	WithdrawalPrepare(&lock_plan,
					  "SELECT 1 FROM withdrawal.outbox WHERE withdrawal_id = $1"
					  " AND lease_until = $2 FOR UPDATE",
					  2, types);
	WithdrawalExecute(lock_plan, values, NULL, false, 0, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		elog(DEBUG1, "withdrawal %s: lease lost, outcome %s dropped",
			 p->id_text, WithdrawalOutcomeName(p->outcome));
		return;
	}

	switch (p->outcome)
	{
		case WITHDRAWAL_OUTCOME_SUBMITTED:
			if (transition(p, WITHDRAWAL_SUBMITTED, "dispatch_submitted") &&
				strcmp(p->driver_name, "sandbox") == 0)
			{
				WithdrawalSandboxSchedule(p);
				earliest(&next_sandbox_at, later_ms(withdrawal_sandbox_settle_ms));
			}
			break;
		case WITHDRAWAL_OUTCOME_PAID:
			transition(p, WITHDRAWAL_PAID, "dispatch_paid");
			break;
		case WITHDRAWAL_OUTCOME_FAILED:
			if (transition_failed(p, "declined", "dispatch_failed"))
				p->ended = "failed";
			break;
		case WITHDRAWAL_OUTCOME_DEAD:
			if (transition(p, WITHDRAWAL_DEAD, "dispatch_dead"))
				p->ended = "dead";
			break;
		case WITHDRAWAL_OUTCOME_IN_PROGRESS:
			if (p->busy_answers + 1 >= withdrawal_max_busy_answers)
			{
				WithdrawalTransitionData data;

				transition_data(&data, p, "dispatch_dead");
				data.uncount_attempt = true;
				data.last_error = psprintf("%s (%d times; held for an operator)",
										   clip_error(p->error), p->busy_answers + 1);
				if (WithdrawalTransition(&p->id, WITHDRAWAL_DEAD, &data, NULL))
					p->ended = "dead";
			}
			else
				requeue(p, Max(backoff_ms(Min(p->busy_answers, 4)), p->retry_after_ms), true);
			break;
		default:
			if (p->attempts >= withdrawal_max_attempts)
			{
				if (transition(p, WITHDRAWAL_DEAD, "dispatch_dead"))
					p->ended = "dead";
			}
			else
				requeue(p, Max(backoff_ms(p->attempts), p->retry_after_ms), false);
			break;
	}
}

/* A set-based outcome applies to p: a plain send accepted by a network driver */
static bool
submitted_in_bulk(const WithdrawalPayout *p)
{
	return p->outcome == WITHDRAWAL_OUTCOME_SUBMITTED && !p->query &&
		strcmp(p->driver_name, "sandbox") != 0;
}

/*
 * Records every accepted send of the list in one statement: the outbox row
 * (still leased by us) leaves, the withdrawal becomes submitted with its
 * processor reference, and an audit row is appended; no money moves, so
 * this is the transition lifecycle.c would make, done set-based for
 * throughput.  The status_guard trigger still checks every row.  The
 * status test is a function call, not an operator, so that it cannot use
 * withdrawal_open: that index's 'dispatching' range holds an entry for
 * every payout recently claimed, and the planner, which expects none,
 * would scan it instead of looking the batch up by key.
 */
static void
apply_submitted_bulk(WithdrawalPayout *list)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {UUIDARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID};
	Datum		values[3];
	Datum	   *ids;
	Datum	   *leases;
	Datum	   *refs;
	bool	   *ref_nulls;
	int			dims[1];
	int			lbs[1] = {1};
	int			n = 0;
	WithdrawalPayout *p;

	for (p = list; p; p = p->next)
		if (submitted_in_bulk(p))
			n++;
	if (n == 0)
		return;
	ids = palloc(sizeof(Datum) * n);
	leases = palloc(sizeof(Datum) * n);
	refs = palloc(sizeof(Datum) * n);
	ref_nulls = palloc(sizeof(bool) * n);
	n = 0;
	for (p = list; p; p = p->next)
	{
		if (!submitted_in_bulk(p))
			continue;
		ids[n] = UUIDPGetDatum(&p->id);
		leases[n] = TimestampTzGetDatum(p->lease_until);
		ref_nulls[n] = p->processor_ref == NULL;
		refs[n] = p->processor_ref ? CStringGetTextDatum(p->processor_ref) : (Datum) 0;
		n++;
	}
	dims[0] = n;

	WithdrawalPrepareCustom(&plan,
					  "WITH r AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
					  "                                    pg_catalog.unnest($3)) AS r(id, lease, ref)"
					  "            ORDER BY id),"
					  " o AS (DELETE FROM withdrawal.outbox o USING r"
					  "        WHERE o.withdrawal_id = r.id"
					  "          AND o.lease_until = r.lease"
					  "          AND o.kind = 'send'"
					  "       RETURNING r.id, r.ref),"
					  " w AS (UPDATE withdrawal.withdrawal w SET status = 'submitted',"
					  "        processor_ref = coalesce(o.ref, w.processor_ref), updated_at = pg_catalog.now()"
					  "         FROM o WHERE w.withdrawal_id = o.id"
					  "          AND pg_catalog.texteq(w.status, 'dispatching')"
					  "       RETURNING w.withdrawal_id, w.account_id, w.processor_ref)"
					  " INSERT INTO withdrawal.audit_log"
					  "   (actor, action, withdrawal_id, account_id, before_status, after_status, detail)"
					  " SELECT pg_catalog.session_user(), 'dispatch_submitted', w.withdrawal_id, w.account_id,"
					  "        'dispatching', 'submitted',"
					  "        pg_catalog.jsonb_build_object('processor_ref', w.processor_ref)"
					  "   FROM w",
					  3, types);
	values[0] = PointerGetDatum(construct_md_array(ids, NULL, 1, dims, lbs, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	values[1] = PointerGetDatum(construct_md_array(leases, NULL, 1, dims, lbs, TIMESTAMPTZOID, sizeof(TimestampTz), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_md_array(refs, ref_nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_INSERT);
}

/*
 * Records a list of outcomes: locks every withdrawal of the list first (in
 * id order, see WithdrawalLockWithdrawals), then applies the accepted
 * sends set-based and the others one by one, in wallet order.
 */
static void
record_body(void *arg)
{
	WithdrawalPayout *list = (WithdrawalPayout *) arg;
	WithdrawalPayout *p;
	pg_uuid_t  *ids;
	int			n = 0;

	for (p = list; p; p = p->next)
		n++;
	ids = palloc(sizeof(pg_uuid_t) * n);
	n = 0;
	for (p = list; p; p = p->next)
		ids[n++] = p->id;
	WithdrawalLockWithdrawals(ids, n);

	apply_submitted_bulk(list);
	for (p = list; p; p = p->next)
		if (!submitted_in_bulk(p))
			apply_outcome(p);
}

typedef struct Failure
{
	WithdrawalPayout *payout;
	const char *error;
	bool		with_last_error;	/* also note it on the withdrawal */
	long		delay_ms;		/* until it is sent again */
	bool		parked;			/* result */
} Failure;

/*
 * Counts a failure to record p's outcome: its lease is cleared and it is
 * sent again (same key) after a backoff, or, at withdrawal.park_after, it
 * is parked for an operator with the reason.
 */
static void
failure_body(void *arg)
{
	static SPIPlanPtr plan = NULL;
	Failure    *f = (Failure *) arg;
	WithdrawalPayout *p = f->payout;
	Oid			types[5] = {UUIDOID, TIMESTAMPTZOID, INT8OID, TEXTOID, INT4OID};
	Datum		values[5];
	bool		isnull;

	WithdrawalPrepare(&plan,
					  "UPDATE withdrawal.outbox SET lease_until = NULL, claimed_by = NULL,"
					  "  failures = failures + 1,"
					  "  next_attempt_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $3 / 1000.0),"
					  "  parked_at = CASE WHEN failures + 1 >= $5 THEN pg_catalog.now() END,"
					  "  park_reason = CASE WHEN failures + 1 >= $5 THEN $4 END"
					  " WHERE withdrawal_id = $1 AND lease_until = $2"
					  " RETURNING parked_at IS NOT NULL",
					  5, types);
	values[0] = UUIDPGetDatum(&p->id);
	values[1] = TimestampTzGetDatum(p->lease_until);
	values[2] = Int64GetDatum(f->delay_ms);
	values[3] = CStringGetTextDatum(f->error);
	values[4] = Int32GetDatum(withdrawal_park_after);
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_UPDATE_RETURNING);
	f->parked = SPI_processed > 0 && DatumGetBool(WithdrawalSpiGet(0, 1, &isnull));
	if (f->with_last_error && SPI_processed > 0)
		note_error(&p->id, f->error);
}

/*
 * A payout whose outcome could not be recorded.  The outbox row is all
 * that must change, so it is tried with the withdrawal's last_error and,
 * should that fail too (the withdrawal's row may be what fails), without.
 */
static void
record_failure(WithdrawalPayout *p, const char *error)
{
	Failure		f;

	memset(&f, 0, sizeof(f));
	f.payout = p;
	f.error = psprintf("could not record outcome %s: %s",
					   WithdrawalOutcomeName(p->outcome), clip_error(error));
	f.with_last_error = true;
	f.delay_ms = Max(backoff_ms(p->attempts), 1000L);
	if (!run_transaction("withdrawal: noting a failed outcome", false, failure_body, &f, NULL))
	{
		f.with_last_error = false;
		if (!run_transaction("withdrawal: noting a failed outcome", false, failure_body, &f, NULL))
			return;				/* the lease expires; sweep() counts it */
	}

	/*
	 * Claim again when it falls due, as requeue() does: the next claim may
	 * otherwise wait for a far one, such as another channel's Retry-After.
	 */
	if (!f.parked)
		earliest(&next_claim_at, later_ms(f.delay_ms));
	if (f.parked)
		ereport(WARNING,
				(errmsg("withdrawal worker %d parked payout %s", worker_index, p->id_text),
				 errdetail("%s", f.error),
				 errhint("See withdrawal.parked_payouts; withdrawal.retry() resumes it.")));
}

static void
free_payouts(WithdrawalPayout *list)
{
	WithdrawalPayout *p;
	WithdrawalPayout *next;

	for (p = list; p; p = next)
	{
		next = p->next;
		MemoryContextDelete(p->cxt);
	}
}

/* Wallet lock order: by account, then by withdrawal */
static int
payout_cmp(const void *a, const void *b)
{
	const WithdrawalPayout *pa = *(WithdrawalPayout *const *) a;
	const WithdrawalPayout *pb = *(WithdrawalPayout *const *) b;
	int			c = strcmp(pa->account_id, pb->account_id);

	return c != 0 ? c : strcmp(pa->id_text, pb->id_text);
}

/* Sorts a list into wallet lock order */
static WithdrawalPayout *
sort_payouts(WithdrawalPayout *list)
{
	WithdrawalPayout **arr;
	WithdrawalPayout *p;
	int			n = 0;
	int			i;

	for (p = list; p; p = p->next)
		n++;
	if (n < 2)
		return list;
	arr = palloc(sizeof(WithdrawalPayout *) * n);
	for (i = 0, p = list; p; p = p->next)
		arr[i++] = p;
	qsort(arr, n, sizeof(WithdrawalPayout *), payout_cmp);
	for (i = 0; i < n - 1; i++)
		arr[i]->next = arr[i + 1];
	arr[n - 1]->next = NULL;
	list = arr[0];
	pfree(arr);
	return list;
}

/*
 * Says, once its transaction has committed, that a payout failed (and was
 * refunded) or went dead: one LOG line each, with the id, the channel and
 * the reason, for whoever watches the server log.
 */
static void
report_ended(const WithdrawalPayout *p)
{
	const char *reason = p->error ? p->error : "no reason given";

	if (p->ended == NULL)
		return;
	if (strcmp(p->ended, "failed") == 0)
	{
		stat_failed++;
		ereport(LOG,
				(errmsg("withdrawal %s on channel \"%s\" failed and was refunded: %s",
						p->id_text, p->channel, reason)));
	}
	else
	{
		stat_dead++;
		ereport(LOG,
				(errmsg("withdrawal %s on channel \"%s\" is dead, its funds held for an operator: %s",
						p->id_text, p->channel, reason)));
	}
}

/* An attempt that did not get through: the processor or the network failed */
static void
note_send_error(const WithdrawalPayout *p)
{
	if (p->outcome != WITHDRAWAL_OUTCOME_RETRY && p->outcome != WITHDRAWAL_OUTCOME_DEAD)
		return;
	stat_send_errors++;
	WithdrawalShmemWorkerError(worker_index, true,
							   psprintf("channel \"%s\": %s", p->channel,
										p->error ? p->error : WithdrawalOutcomeName(p->outcome)));
}

/*
 * What a finished request says about its processor, for the channel's
 * circuit breaker: no answer (refused, reset, timed out) or a 5xx is a
 * failure, any other answer a success (a decline, "in progress" or a 429
 * shows a processor that answers; a 429 has its own pause).  Status
 * queries do not open the breaker, so that a processor whose status
 * endpoint fails keeps paying; a query sent as the half-open probe
 * decides like any probe.  A payout decided without a request says
 * nothing.
 */
static WithdrawalBreakerVerdict
breaker_verdict(const WithdrawalPayout *p)
{
	if (!p->on_wire || (p->query && !p->breaker_probe))
		return WITHDRAWAL_BREAKER_NONE;
	if (p->transport_failed || p->http_status >= 500)
		return WITHDRAWAL_BREAKER_FAILURE;
	return WITHDRAWAL_BREAKER_SUCCESS;
}

/*
 * Records a list of decided payouts: all in one transaction, or, when that
 * fails, each in its own, counting a failure against the ones that fail
 * again.
 */
static void
record_outcomes(WithdrawalPayout *list)
{
	WithdrawalPayout *p;
	WithdrawalPayout *next;

	if (list == NULL)
		return;
	list = sort_payouts(list);

	/* their sends are over: leave the channels' in-flight counts */
	for (p = list; p; p = p->next)
	{
		note_send_error(p);
		if (!p->reserved)
			continue;
		/* before the release: no other send is granted in between */
		WithdrawalChannelBreakerNote(p->channel, worker_index, breaker_verdict(p),
									 p->breaker_probe, p->error, p->burst);
		WithdrawalChannelRelease(p->channel, worker_index, 0, 1, p->burst);
		if (p->retry_after_ms > 0)
			WithdrawalChannelBlock(p->channel, p->retry_after_ms, p->burst);
		if (p->on_wire)
			channel_state(p->channel)->in_flight--;
		p->reserved = false;
	}

	if (!run_transaction("withdrawal: recording outcomes", false, record_body, list, NULL))
	{
		/* what the rolled-back transaction did is undone */
		for (p = list; p; p = p->next)
			p->ended = NULL;
		for (p = list; p; p = next)
		{
			char	   *error = NULL;

			next = p->next;
			p->next = NULL;
			if (!run_transaction("withdrawal: recording an outcome", false,
								 record_body, p, &error))
			{
				p->ended = NULL;
				record_failure(p, error);
			}
			p->next = next;
		}
	}
	for (p = list; p; p = p->next)
	{
		stat_recorded++;
		report_ended(p);
	}
	free_payouts(list);
}

/* Collects every decided payout and records them together */
static bool
record_done(void)
{
	WithdrawalPayout *head = NULL;
	WithdrawalPayout *tail = NULL;
	WithdrawalPayout *p;

	while ((p = WithdrawalDispatchNextDone()) != NULL)
	{
		if (tail)
			tail->next = p;
		else
			head = p;
		tail = p;
	}
	if (head == NULL)
		return false;
	record_outcomes(head);
	return true;
}

/* ---------- housekeeping ---------- */

typedef struct SandboxWork
{
	const pg_uuid_t *only;		/* NULL: any due event */
	const char *error;			/* for sandbox_postpone_body */
	int			applied;
	pg_uuid_t  *due;			/* for sandbox_due_body */
	int			ndue;
} SandboxWork;

static void
sandbox_apply_body(void *arg)
{
	SandboxWork *s = (SandboxWork *) arg;

	s->applied = WithdrawalSandboxApplyDue(withdrawal_batch_size, s->only);
	if (s->only == NULL && s->applied < withdrawal_batch_size)
		plan_next_sandbox();
}

static void
sandbox_due_body(void *arg)
{
	SandboxWork *s = (SandboxWork *) arg;

	s->ndue = WithdrawalSandboxDue(withdrawal_batch_size, iter_cxt, &s->due);
}

static void
sandbox_postpone_body(void *arg)
{
	SandboxWork *s = (SandboxWork *) arg;

	WithdrawalSandboxPostpone(s->only, s->error, SANDBOX_POSTPONE_MS);
}

/*
 * Applies due sandbox events, a batch at a time; when a batch fails, one
 * withdrawal at a time, and a withdrawal whose events cannot be applied
 * is postponed, so that it holds up no other.
 */
static void
apply_sandbox_events(void)
{
	SandboxWork s;
	int			i;

	memset(&s, 0, sizeof(s));
	next_sandbox_at = 0;
	if (run_transaction("withdrawal: applying sandbox events", false,
						sandbox_apply_body, &s, NULL))
	{
		if (s.applied >= withdrawal_batch_size)
			next_sandbox_at = GetCurrentTimestamp();
		return;
	}
	if (!run_transaction("withdrawal: listing sandbox events", false,
						 sandbox_due_body, &s, NULL))
	{
		next_sandbox_at = later_ms(ERROR_PAUSE_MS);
		return;
	}
	for (i = 0; i < s.ndue; i++)
	{
		SandboxWork one;
		char	   *error = NULL;

		memset(&one, 0, sizeof(one));
		one.only = &s.due[i];
		if (run_transaction("withdrawal: applying a sandbox event", false,
							sandbox_apply_body, &one, &error))
			continue;
		one.error = error;
		if (run_transaction("withdrawal: postponing a sandbox event", false,
							sandbox_postpone_body, &one, NULL))
			ereport(WARNING,
					(errmsg("withdrawal worker %d postponed the sandbox events of withdrawal %s",
							worker_index, WithdrawalUuidText(&s.due[i])),
					 errdetail("%s", error)));
	}
	next_sandbox_at = GetCurrentTimestamp();
}

static void
seal_body(void *arg)
{
	bool		stragglers = *(bool *) arg;

	/* a backlog is sealed a slice per loop, between payouts */
	if (WithdrawalAuditSeal(false, stragglers, AUDIT_SEAL_SLICE) >= AUDIT_SEAL_SLICE)
		next_seal_at = GetCurrentTimestamp();
}

static void
sweep_body(void *arg)
{
	*(int *) arg = sweep_internal(NULL);
}

static void
expire_reviews_body(void *arg)
{
	*(int *) arg = WithdrawalExpireReviews(EXPIRE_REVIEWS_BATCH);
}

/*
 * Rejects and refunds the withdrawals left in review longer than their
 * policy allows (review.c), a batch a minute, or at the next pass while
 * a backlog lasts.
 */
static void
expire_reviews(void)
{
	int			n = 0;

	next_expire_at = later_ms(EXPIRE_REVIEWS_MS);
	if (!run_transaction("withdrawal: expiring reviews", false, expire_reviews_body, &n, NULL) ||
		n == 0)
		return;
	ereport(LOG,
			(errmsg("withdrawal worker rejected %d withdrawals whose review expired", n)));
	if (n >= EXPIRE_REVIEWS_BATCH)
		next_expire_at = GetCurrentTimestamp();
}

/*
 * Whether the worker may act on payouts: not while dispatch is held, nor
 * before the first claim has found out (binding_holds_dispatch).
 */
static bool
payouts_allowed(void)
{
	return dispatch_state_known && !dispatch_held && !restore_suspected;
}

static void
housekeeping(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		payouts = payouts_allowed();

	if (payouts && next_sandbox_at != 0 && next_sandbox_at <= now)
		apply_sandbox_events();

	/* the chain and the sweep are one worker's job */
	if (worker_index != 0)
		return;

	if (now >= next_seal_at)
	{
		bool		stragglers = now >= next_straggler_seal_at;

		next_seal_at = later_ms(AUDIT_SEAL_MS);
		if (stragglers)
			next_straggler_seal_at = later_ms(AUDIT_STRAGGLER_SEAL_MS);
		(void) run_transaction("withdrawal: sealing the audit log", false,
							   seal_body, &stragglers, NULL);
	}

	if (payouts && now >= next_expire_at)
		expire_reviews();

	if (payouts && now >= next_sweep_at)
	{
		int			n = 0;

		next_sweep_at = later_ms(withdrawal_sweep_interval_seconds * 1000L);
		if (run_transaction("withdrawal: sweeping", false, sweep_body, &n, NULL) && n > 0)
		{
			ereport(LOG,
					(errmsg("withdrawal worker swept %d stuck payouts", n)));
			next_claim_at = GetCurrentTimestamp();
		}
	}
}

/*
 * The leases this worker slot held when its previous process died: the
 * payouts may have reached the processor, so they are sent again with the
 * same key, but after a backoff, and each loss counts as a failure, so that
 * a payout that kills the worker is parked instead of killing it again.
 */
static void
release_leases_body(void *arg)
{
	Oid			types[4] = {INT4OID, INT4OID, INT4OID, INT4OID};
	Datum		values[4];

	values[0] = Int32GetDatum(worker_index);
	values[1] = Int32GetDatum(withdrawal_retry_base_ms);
	values[2] = Int32GetDatum(withdrawal_retry_cap_ms);
	values[3] = Int32GetDatum(withdrawal_park_after);
	WithdrawalExecuteOnce("UPDATE withdrawal.outbox SET lease_until = NULL, claimed_by = NULL,"
						  " failures = failures + 1,"
						  " next_attempt_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs =>"
						  "   pg_catalog.random() * LEAST($3::float8, $2 * pg_catalog.power(2, failures)) / 1000.0),"
						  " parked_at = CASE WHEN failures + 1 >= $4 THEN pg_catalog.now() END,"
						  " park_reason = CASE WHEN failures + 1 >= $4"
						  "   THEN 'a worker died ' || (failures + 1) || ' times while this payout was on the wire' END"
						  " WHERE claimed_by = $1 AND lease_until IS NOT NULL",
						  4, types, values, NULL, SPI_OK_UPDATE);
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("withdrawal worker %d re-queued %llu payouts claimed before it restarted",
						worker_index, (unsigned long long) SPI_processed)));
}

/* ---------- main ---------- */

/* Outcomes worth a transaction of their own */
static int
record_batch(void)
{
	return Max(8, withdrawal_max_in_flight / 4);
}

/* Enough room on the wire to be worth a claim while a backlog waits */
static bool
refill_due(void)
{
	return withdrawal_max_in_flight - WithdrawalDispatchInFlight() >=
		Max(1, Min(withdrawal_max_in_flight, withdrawal_batch_size) / 4);
}

void
withdrawal_worker_main(Datum main_arg)
{
	worker_index = DatumGetInt32(main_arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	WithdrawalShmemWorkerBegin(worker_index);
	connect_as_worker_role();
	pgstat_report_appname("withdrawal");
	pin_settings();

	worker_cxt = AllocSetContextCreate(TopMemoryContext, "withdrawal worker",
									   ALLOCSET_DEFAULT_SIZES);
	iter_cxt = AllocSetContextCreate(worker_cxt, "withdrawal worker iteration",
									 ALLOCSET_DEFAULT_SIZES);
	channel_cxt = AllocSetContextCreate(worker_cxt, "withdrawal channels",
										ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(iter_cxt);

	WithdrawalShmemAttachWorker(worker_index);
	WithdrawalDispatchInit();

	ereport(LOG,
			(errmsg("withdrawal worker %d started in database \"%s\" as role \"%s\"",
					worker_index, withdrawal_database, WITHDRAWAL_WORKER_ROLE)));

	wait_for_extension();
	(void) run_transaction("withdrawal: releasing leases of a previous run", false,
						   release_leases_body, NULL, NULL);
	next_sandbox_at = GetCurrentTimestamp();
	next_claim_at = GetCurrentTimestamp();
	next_seal_at = GetCurrentTimestamp();
	/* the first sweep waits a full interval: claims go first after downtime */
	next_sweep_at = later_ms(withdrawal_sweep_interval_seconds * 1000L);

	for (;;)
	{
		long		timeout_ms = IDLE_WAIT_MS;
		TimestampTz now = GetCurrentTimestamp();
		TimestampTz wake_at = next_claim_at;
		TimestampTz since;
		int			capacity;
		int			ndone;
		bool		latch_set;
		bool		recorded;

		if (extension_lost)
			recheck_extension();

		/* while dispatch is held, only claims (which check it) and seals */
		if (next_sandbox_at != 0 && payouts_allowed())
			earliest(&wake_at, next_sandbox_at);
		if (worker_index == 0)
		{
			earliest(&wake_at, next_seal_at);
			if (payouts_allowed())
				earliest(&wake_at, next_sweep_at);
		}
		if (WithdrawalDispatchDoneCount(&since) > 0)
			earliest(&wake_at, TimestampTzPlusMilliseconds(since, RECORD_DELAY_MS));
		/*
		 * A backlog is claimed from at once only when nothing is on the
		 * wire; otherwise the next outcomes wake the loop, and the claim
		 * follows their recording (a channel at its share of the wire has
		 * nothing to claim before that, and must not make the loop spin).
		 */
		if (claim_backlog && WithdrawalDispatchInFlight() == 0)
			timeout_ms = 0;
		else if (wake_at != 0)
			timeout_ms = wake_at <= now ? 0 :
				Min((long) ((wake_at - now + 999) / 1000), (long) IDLE_WAIT_MS);

		latch_set = WithdrawalDispatchWait(timeout_ms);
		if (latch_set)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			ereport(LOG,
					(errmsg("withdrawal worker %d reloaded its configuration", worker_index)));
			next_claim_at = GetCurrentTimestamp();
		}
		MemoryContextReset(iter_cxt);

		/*
		 * Outcomes are recorded in batches: when enough have gathered, when
		 * nothing else is on the wire, or when the oldest has waited
		 * RECORD_DELAY_MS.  Fewer, larger transactions.
		 */
		ndone = WithdrawalDispatchDoneCount(&since);
		now = GetCurrentTimestamp();
		recorded = false;
		if (ndone > 0 &&
			(ndone >= record_batch() || WithdrawalDispatchInFlight() == 0 ||
			 TimestampDifferenceExceeds(since, now, RECORD_DELAY_MS - 1)))
			recorded = record_done();

		now = GetCurrentTimestamp();
		capacity = withdrawal_max_in_flight - WithdrawalDispatchInFlight();
		capacity = Min(capacity, withdrawal_batch_size);
		if (capacity > 0 &&
			(latch_set || (next_claim_at != 0 && next_claim_at <= now) ||
			 (claim_backlog && recorded && (WithdrawalDispatchInFlight() == 0 || refill_due())) ||
			 (claim_backlog && WithdrawalDispatchInFlight() == 0)))
		{
			claim_and_start(capacity);
			/* sandbox payouts (and refused ones) are decided at once */
			record_done();
		}
		housekeeping();

		if (WithdrawalDispatchInFlight() == 0 && !claim_backlog)
			pgstat_report_activity(STATE_IDLE, dispatch_held ?
								   "withdrawal: dispatch held: the payouts are bound to another installation" : NULL);
		WithdrawalShmemWorkerProgress(worker_index, WithdrawalDispatchInFlight(),
									  stat_sent, stat_recorded, stat_failed,
									  stat_dead, stat_send_errors);
		elog(DEBUG2, "withdrawal worker %d: " INT64_FORMAT " sent, " INT64_FORMAT " recorded, %d in flight",
			 worker_index, stat_sent, stat_recorded, WithdrawalDispatchInFlight());
	}
}

/* ---------- SQL: retry() and sweep() ---------- */

/*
 * Pushes stuck payouts forward; runs in the caller's transaction and SPI
 * connection.  Returns how many payouts it moved.  older_than NULL skips
 * failing the never-sent ones.  Rows someone else holds are skipped (they
 * are being worked on), so that the sweep neither waits on a worker nor
 * takes locks out of the extension's order.
 */
static int
sweep_internal(Interval *older_than)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Oid			age_types[1] = {INTERVALOID};
	Datum		values[2];
	int			moved = 0;
	int			n;
	int			i;
	pg_uuid_t  *ids;

	/*
	 * Every statement is planned when it runs: the sweep is rare, and a kept
	 * plan could join today's tables as they were when they were empty.
	 */

	/*
	 * dispatching with an expired lease: its worker died or stalled; resend
	 * now, same key, counting the loss (see release_leases_body)
	 */
	values[0] = Int32GetDatum(withdrawal_park_after);
	WithdrawalExecuteOnce("UPDATE withdrawal.outbox SET lease_until = NULL, claimed_by = NULL,"
						  " next_attempt_at = pg_catalog.now(), failures = failures + 1,"
						  " parked_at = CASE WHEN failures + 1 >= $1 THEN pg_catalog.now() END,"
						  " park_reason = CASE WHEN failures + 1 >= $1"
						  "   THEN 'its lease expired ' || (failures + 1) || ' times' END"
						  " WHERE withdrawal_id IN (SELECT withdrawal_id FROM withdrawal.outbox"
						  "   WHERE lease_until < pg_catalog.now() FOR UPDATE SKIP LOCKED)",
						  1, types, values, NULL, SPI_OK_UPDATE);
	moved += (int) SPI_processed;

	/* outbox rows whose withdrawal needs no dispatch any more */
	WithdrawalExecuteOnce("DELETE FROM withdrawal.outbox WHERE withdrawal_id IN ("
						  " SELECT o.withdrawal_id FROM withdrawal.outbox o"
						  "   JOIN withdrawal.withdrawal w ON w.withdrawal_id = o.withdrawal_id"
						  "  WHERE o.lease_until IS NULL"
						  "    AND NOT CASE WHEN o.kind = 'send'"
						  "                 THEN w.status IN ('queued', 'dispatching')"
						  "                 ELSE w.status IN ('submitted', 'dead') END"
						  "    FOR UPDATE OF o SKIP LOCKED)",
						  0, NULL, NULL, NULL, SPI_OK_DELETE);

	/* queued or dispatching without an outbox row: back on the queue */
	WithdrawalExecuteOnce("INSERT INTO withdrawal.outbox (withdrawal_id, channel)"
						  " SELECT w.withdrawal_id, w.channel FROM withdrawal.withdrawal w"
						  "  WHERE w.status IN ('queued', 'dispatching')"
						  "    AND NOT EXISTS (SELECT FROM withdrawal.outbox o"
						  "                     WHERE o.withdrawal_id = w.withdrawal_id)"
						  " ON CONFLICT DO NOTHING",
						  0, NULL, NULL, NULL, SPI_OK_INSERT);
	moved += (int) SPI_processed;

	/*
	 * submitted with no final word after poll_after, and dead ones that may
	 * have been sent: ask the processor.  Only its answer (or an operator's
	 * two-person resolution) settles or refunds them.
	 */
	values[0] = Int32GetDatum(withdrawal_poll_after_seconds);
	WithdrawalExecuteOnce("INSERT INTO withdrawal.outbox (withdrawal_id, channel, kind)"
						  " SELECT w.withdrawal_id, w.channel, 'query' FROM withdrawal.withdrawal w"
						  "  WHERE (w.status = 'submitted' OR (w.status = 'dead' AND w.sent_at IS NOT NULL))"
						  "    AND w.updated_at < (pg_catalog.now() - pg_catalog.make_interval(secs => $1))"
						  " ON CONFLICT DO NOTHING",
						  1, types, values, NULL, SPI_OK_INSERT);
	moved += (int) SPI_processed;

	/*
	 * queued longer than older_than and never sent: nothing reached a
	 * processor, so failing and refunding is safe.  Both rows are locked,
	 * so no worker claims it meanwhile.  The worker's scheduled sweep passes
	 * NULL and leaves this to operators.
	 */
	if (older_than == NULL)
		return moved;
	values[0] = IntervalPGetDatum(older_than);
	WithdrawalExecuteOnce("SELECT w.withdrawal_id FROM withdrawal.outbox o"
						  "  JOIN withdrawal.withdrawal w ON w.withdrawal_id = o.withdrawal_id"
						  " WHERE w.status = 'queued' AND w.sent_at IS NULL"
						  "   AND o.lease_until IS NULL AND o.kind = 'send'"
						  "   AND w.created_at < (pg_catalog.now() - $1)"
						  " ORDER BY w.withdrawal_id"
						  " FOR UPDATE OF o SKIP LOCKED FOR NO KEY UPDATE OF w SKIP LOCKED",
						  1, age_types, values, NULL, SPI_OK_SELECT);
	n = (int) SPI_processed;
	ids = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = *DatumGetUUIDP(WithdrawalSpiGet(i, 1, &isnull));
	}
	for (i = 0; i < n; i++)
	{
		WithdrawalTransitionData data;

		memset(&data, 0, sizeof(data));
		data.action = "sweep_unsent";
		data.reason = "not dispatched in time (sweep)";
		data.last_error = "not dispatched in time (sweep)";
		data.invalid_ok = true;
		data.missing_ok = true;
		if (WithdrawalTransition(&ids[i], WITHDRAWAL_FAILED, &data, NULL))
			moved++;
	}
	return moved;
}

/*
 * sweep(older_than interval DEFAULT '4 hours'): ops call that pushes stuck
 * payouts forward; the worker runs it every withdrawal.sweep_interval.
 */
Datum
withdrawal_sweep(PG_FUNCTION_ARGS)
{
	Interval   *older_than;
	int			moved;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must not be null")));
	older_than = PG_GETARG_INTERVAL_P(0);
	if (older_than->time < 0 || older_than->day < 0 || older_than->month < 0 ||
		(older_than->time == 0 && older_than->day == 0 && older_than->month == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must be positive"),
				 errdetail("Payouts queued for less than older_than are left alone; zero would fail every payout not sent yet.")));

	SPI_connect();
	moved = sweep_internal(older_than);
	SPI_finish();
	if (moved > 0)
		WithdrawalWakeWorkersAtCommit();
	PG_RETURN_INT32(moved);
}

/*
 * retry(withdrawal_id): ops call that puts a dead-lettered payout back on
 * the queue with a fresh attempt budget, or resumes a parked one; returns
 * the new status.  The payout is sent with the same idempotency key, and
 * sent_at, the fact that it may have reached the processor, stays.
 */
Datum
withdrawal_retry(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr reset_plan = NULL;
	static SPIPlanPtr unpark_plan = NULL;
	Oid			types[1] = {UUIDOID};
	Datum		values[1];
	pg_uuid_t  *id;
	char	   *status;
	bool		parked;
	bool		isnull;

	id = WithdrawalArgUuid(fcinfo, 0, "withdrawal_id");

	SPI_connect();
	WithdrawalPrepare(&lock_plan,
					  "SELECT w.status, o.parked_at IS NOT NULL FROM withdrawal.withdrawal w"
					  "  LEFT JOIN withdrawal.outbox o ON o.withdrawal_id = w.withdrawal_id"
					  " WHERE w.withdrawal_id = $1 FOR NO KEY UPDATE OF w",
					  1, types);
	values[0] = UUIDPGetDatum(id);
	WithdrawalExecute(lock_plan, values, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		WithdrawalRaiseUnknownWithdrawal(id);
	status = WithdrawalSpiGetText(0, 1);
	parked = DatumGetBool(WithdrawalSpiGet(0, 2, &isnull));

	if (strcmp(status, "dead") == 0)
	{
		WithdrawalTransitionData data;

		memset(&data, 0, sizeof(data));
		data.action = "retry";
		WithdrawalTransition(id, WITHDRAWAL_QUEUED, &data, NULL);
		WithdrawalPrepare(&reset_plan,
						  "UPDATE withdrawal.withdrawal SET attempts = 0 WHERE withdrawal_id = $1",
						  1, types);
		WithdrawalExecute(reset_plan, values, NULL, false, 0, SPI_OK_UPDATE);
		status = "queued";
	}
	else if (parked)
	{
		WithdrawalPrepare(&unpark_plan,
						  "UPDATE withdrawal.outbox SET parked_at = NULL, park_reason = NULL,"
						  " failures = 0, lease_until = NULL, claimed_by = NULL,"
						  " next_attempt_at = pg_catalog.now()"
						  " WHERE withdrawal_id = $1",
						  1, types);
		WithdrawalExecute(unpark_plan, values, NULL, false, 0, SPI_OK_UPDATE);
		WithdrawalAudit("retry_parked", NULL, id, NULL, status, status, NULL);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_WD_INVALID_TRANSITION),
				 errmsg("only a dead or parked withdrawal can be retried; %s is %s",
						WithdrawalUuidText(id), status)));
	SPI_finish();
	WithdrawalWakeWorkersAtCommit();
	PG_RETURN_TEXT_P(cstring_to_text(status));
}
