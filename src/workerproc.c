/*-------------------------------------------------------------------------
 *
 * workerproc.c
 *	  What every part of a dispatcher worker process shares: its start-up
 *	  (role, database, pinned settings, waiting for the extension), its
 *	  state, and the one transaction bracket all its work runs in.
 *
 * The worker is split by job: claim.c claims payouts and starts them,
 * record.c records their outcomes, worker.c schedules both and the
 * housekeeping in its loop.  They share this file's MyWithdrawalWorker.
 *
 * Security: the worker connects as the role withdrawal_worker, never as a
 * superuser, and pins search_path and the settings its statements depend
 * on, so that nothing a database user creates or sets is used by it.
 * Its statements may therefore leave operators unqualified.
 *
 * Error policy: every transaction runs through WithdrawalRunTransaction(),
 * which reports an ERROR, aborts and returns false (the autovacuum
 * pattern); the callers decide what a failure means for their payouts.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/workerproc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "shmem.h"
#include "spi.h"
#include "withdrawal.h"
#include "workerproc.h"

/* Poll interval while the extension (or the worker's role) is missing */
#define INSTALL_POLL_MS		2000
/* Longest error message kept on a row or reported */
#define MAX_ERROR_LEN		1000

WithdrawalWorkerProc MyWithdrawalWorker;

/*
 * Settings the worker's statements rely on, pinned over anything a
 * database owner sets with ALTER DATABASE: name resolution, the meaning
 * of the statements, and the guards the triggers enforce.
 * synchronous_commit is off for the worker's own outcomes; claims commit
 * durably (claim.c).
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

/* ---------- transactions ---------- */

/*
 * Runs body(arg) in a transaction of its own with an SPI connection and a
 * snapshot, and commits; durable commits wait for the WAL flush (and
 * synchronous standbys) whatever synchronous_commit the worker runs with.
 * On an ERROR: reports it, aborts, and returns false, with the message in
 * *error (when error is not NULL).  body runs in SPI's procedure context;
 * whatever must outlive the transaction it allocates in a longer-lived
 * context.  The caller's memory context is current again on return.
 */
bool
WithdrawalRunTransaction(const char *label, bool durable, WithdrawalTxBody body,
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
		WithdrawalShmemWorkerError(MyWithdrawalWorker.index, false,
								   psprintf("%s: %s", label, edata->message));
		if (error)
			*error = pnstrdup(edata->message, MAX_ERROR_LEN);
		FreeErrorData(edata);
		EmitErrorReport();
		AbortOutOfAnyTransaction();
		FlushErrorState();
		MyWithdrawalWorker.extension_lost = true;
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

TimestampTz
WithdrawalLaterMs(long ms)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
}

void
WithdrawalEarliest(TimestampTz *at, TimestampTz candidate)
{
	if (candidate != 0 && (*at == 0 || candidate < *at))
		*at = candidate;
}

char *
WithdrawalClipError(const char *error)
{
	if (error == NULL)
		return NULL;
	return pnstrdup(error, MAX_ERROR_LEN);
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
					" WHERE extname = 'withdrawal'",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up the withdrawal extension");
	if (SPI_processed == 0)
		check->state = EXTENSION_MISSING;
	else
	{
		check->version = MemoryContextStrdup(MyWithdrawalWorker.iter_cxt, WithdrawalSpiGetText(0, 1));
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
void
WithdrawalWaitForExtension(void)
{
	bool		logged_version = false;

	for (;;)
	{
		ExtensionCheck check = {EXTENSION_MISSING, NULL};

		if (WithdrawalRunTransaction("withdrawal: waiting for CREATE EXTENSION withdrawal", false,
									 extension_check_body, &check, NULL) &&
			check.state == EXTENSION_READY)
			break;
		WithdrawalShmemWorkerState(MyWithdrawalWorker.index,
								   check.state == EXTENSION_OTHER_VERSION ?
								   "waiting for ALTER EXTENSION UPDATE" :
								   "waiting for CREATE EXTENSION");
		if (check.state == EXTENSION_OTHER_VERSION && !logged_version)
		{
			ereport(LOG,
					(errmsg("withdrawal worker %d waits for ALTER EXTENSION withdrawal UPDATE in database \"%s\"",
							MyWithdrawalWorker.index, withdrawal_database),
					 errdetail("The database has version %s of the extension and the library is version %s.",
							   check.version, WITHDRAWAL_VERSION)));
			logged_version = true;
		}
		wait_for_install();
		MemoryContextReset(MyWithdrawalWorker.iter_cxt);
	}
	MyWithdrawalWorker.extension_lost = false;
	WithdrawalShmemWorkerState(MyWithdrawalWorker.index, "dispatching");
}

/* One look at the extension: installed at the library's version? */
bool
WithdrawalExtensionReady(void)
{
	ExtensionCheck check = {EXTENSION_MISSING, NULL};

	return WithdrawalRunTransaction("withdrawal: checking the extension", false,
									extension_check_body, &check, NULL) &&
		check.state == EXTENSION_READY;
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
							MyWithdrawalWorker.index, WITHDRAWAL_WORKER_ROLE),
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
						MyWithdrawalWorker.index, withdrawal_database,
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
	if (!WithdrawalShmemWorkerRoleSeen(MyWithdrawalWorker.index))
	{
		BackgroundWorkerInitializeConnection(NULL, NULL, 0);
		pgstat_report_appname("withdrawal");
		WithdrawalShmemWorkerState(MyWithdrawalWorker.index, "waiting for its role and database");
		while (!worker_can_connect())
		{
			wait_for_install();
			WithdrawalShmemWorkerState(MyWithdrawalWorker.index, "waiting for its role and database");
		}
		WithdrawalShmemSetWorkerRoleSeen(MyWithdrawalWorker.index, true);
		ereport(LOG,
				(errmsg("withdrawal worker %d restarts to connect as role \"%s\"",
						MyWithdrawalWorker.index, WITHDRAWAL_WORKER_ROLE)));
		proc_exit(1);
	}

	/* should the role be gone, the next start looks for it again */
	WithdrawalShmemSetWorkerRoleSeen(MyWithdrawalWorker.index, false);
	BackgroundWorkerInitializeConnection(withdrawal_database, WITHDRAWAL_WORKER_ROLE, 0);
	WithdrawalShmemSetWorkerRoleSeen(MyWithdrawalWorker.index, true);
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

void
WithdrawalWorkerStart(int index)
{
	memset(&MyWithdrawalWorker, 0, sizeof(MyWithdrawalWorker));
	MyWithdrawalWorker.index = index;

	connect_as_worker_role();
	pgstat_report_appname("withdrawal");
	pin_settings();

	MyWithdrawalWorker.cxt = AllocSetContextCreate(TopMemoryContext, "withdrawal worker",
												   ALLOCSET_DEFAULT_SIZES);
	MyWithdrawalWorker.iter_cxt = AllocSetContextCreate(MyWithdrawalWorker.cxt,
														"withdrawal worker iteration",
														ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(MyWithdrawalWorker.iter_cxt);
}
