/*-------------------------------------------------------------------------
 *
 * binding.c
 *	  The binding of dispatch to an installation: dispatch_binding(),
 *	  resume_dispatch() and the workers' check.
 *
 * pg_dump saves the payouts waiting in the outbox together with the
 * processors' URLs and secret names, so a copy restored elsewhere (a
 * staging cluster, another database of the same cluster) whose workers
 * serve it would send them again to the production processor.  CREATE
 * EXTENSION therefore records in withdrawal.installation which
 * installation may dispatch: the database system identifier
 * (pg_control_system()) and the database OID.  The row is dumped, and a
 * restore loads it over the one its own CREATE EXTENSION wrote
 * (config_seed(), config.c), so a copy finds the original's binding.  Its
 * workers then hold dispatch: they claim nothing, so no create request and
 * no status query leaves, until an operator who means the copy to pay
 * calls resume_dispatch() there, which binds the payouts to the copy and
 * appends an audit row.  request() and the rest of the API keep working:
 * payouts queue up.
 *
 * A physical standby has the primary's system identifier and database
 * OIDs, so failover holds nothing.  The database name is recorded for
 * people and not compared: renaming a database does not copy it.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/binding.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "args.h"
#include "audit.h"
#include "binding.h"
#include "cache.h"
#include "json.h"
#include "shmem.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_dispatch_binding);
PG_FUNCTION_INFO_V1(withdrawal_resume_dispatch);

/*
 * This backend's copy of the binding, valid until withdrawal.installation
 * changes (or a full reset): the scheme of cache.h
 */
static WithdrawalBinding cached_binding;
static WithdrawalCache binding_cache = WITHDRAWAL_CACHE("installation");

/*
 * Reads withdrawal.installation, locking its row when for_update, and
 * fills binding with it and with the installation we run in.  Also
 * returns the row's bound_at and bound_by when asked.
 */
static void
binding_read(WithdrawalBinding *binding, bool for_update,
			 TimestampTz *bound_at, char **bound_by)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr lock_plan = NULL;
	bool		isnull;

	memset(binding, 0, sizeof(*binding));
	binding->system_identifier = (int64) GetSystemIdentifier();
	binding->database_oid = MyDatabaseId;

	/* the row, locked when rebinding; the seed test is fresh_since's */
#define BINDING_SELECT \
	"SELECT system_identifier, database_oid, database_name, bound_at, bound_by," \
	" seed IS NOT DISTINCT FROM 'default' FROM withdrawal.installation"
	if (for_update)
	{
		WithdrawalPrepare(&lock_plan, BINDING_SELECT " FOR UPDATE", 0, NULL);
		WithdrawalExecute(lock_plan, NULL, NULL, false, 0, SPI_OK_SELECT);
	}
	else
	{
		WithdrawalPrepare(&plan, BINDING_SELECT, 0, NULL);
		WithdrawalExecute(plan, NULL, NULL, true, 0, SPI_OK_SELECT);
	}
#undef BINDING_SELECT
	if (SPI_processed == 1)
	{
		binding->found = true;
		binding->bound_system_identifier = DatumGetInt64(WithdrawalSpiGet(0, 1, &isnull));
		binding->bound_database_oid = DatumGetObjectId(WithdrawalSpiGet(0, 2, &isnull));
		strlcpy(binding->bound_database_name,
				NameStr(*DatumGetName(WithdrawalSpiGet(0, 3, &isnull))), NAMEDATALEN);
		if (bound_at)
			*bound_at = DatumGetTimestampTz(WithdrawalSpiGet(0, 4, &isnull));
		if (bound_by)
			*bound_by = pstrdup(NameStr(*DatumGetName(WithdrawalSpiGet(0, 5, &isnull))));
		if (DatumGetBool(WithdrawalSpiGet(0, 6, &isnull)))
			binding->fresh_since = DatumGetTimestampTz(WithdrawalSpiGet(0, 4, &isnull));
	}
	binding->held = !binding->found ||
		binding->bound_system_identifier != binding->system_identifier ||
		binding->bound_database_oid != binding->database_oid;
}

bool
WithdrawalBindingCheck(WithdrawalBinding *binding)
{
	uint64		begin;

	if (WithdrawalCacheValid(&binding_cache))
	{
		*binding = cached_binding;
		return false;
	}
	/*
	 * An invalidation that arrives during the read makes the next check
	 * read again; an error leaves the copy invalid.
	 */
	begin = WithdrawalCacheLoadBegin(&binding_cache);
	binding_read(&cached_binding, false, NULL, NULL);
	WithdrawalCacheLoadEnd(&binding_cache, begin);
	*binding = cached_binding;
	return true;
}

/*
 * Whether payouts were queued before "since", the creation of a binding
 * never restored over nor resumed: the workers do not send those (see
 * WithdrawalBinding.fresh_since), so resume_dispatch() has something to
 * resume.  A rare operator's call: the outbox is scanned.
 */
static bool
queued_before(TimestampTz since)
{
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		values[1];

	if (since == 0)
		return false;
	values[0] = TimestampTzGetDatum(since);
	WithdrawalExecuteFreshPlan("SELECT FROM withdrawal.outbox WHERE enqueued_at < $1 LIMIT 1",
						  1, types, values, NULL, SPI_OK_SELECT);
	return SPI_processed > 0;
}

/*
 * dispatch_binding(): the installation the payouts are bound to, the
 * current one, and whether the workers hold dispatch because they differ.
 */
Datum
withdrawal_dispatch_binding(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	bool		held;
	WithdrawalBinding binding;
	TimestampTz bound_at = 0;
	char	   *bound_by = NULL;
	char	   *database_name;
	Datum		values[9];
	bool		nulls[9];
	NameData	bound_name;
	NameData	bound_by_name;
	NameData	current_name;
	HeapTuple	tuple;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	SPI_connect();
	binding_read(&binding, false, &bound_at, &bound_by);
	held = binding.held || queued_before(binding.fresh_since);
	SPI_finish();

	memset(nulls, !binding.found, sizeof(nulls));
	values[0] = BoolGetDatum(held);
	nulls[0] = false;
	values[1] = Int64GetDatum(binding.bound_system_identifier);
	values[2] = ObjectIdGetDatum(binding.bound_database_oid);
	namestrcpy(&bound_name, binding.bound_database_name);
	values[3] = NameGetDatum(&bound_name);
	values[4] = TimestampTzGetDatum(bound_at);
	namestrcpy(&bound_by_name, bound_by ? bound_by : "");
	values[5] = NameGetDatum(&bound_by_name);
	values[6] = Int64GetDatum(binding.system_identifier);
	values[7] = ObjectIdGetDatum(binding.database_oid);
	database_name = get_database_name(MyDatabaseId);
	namestrcpy(&current_name, database_name ? database_name : "");
	values[8] = NameGetDatum(&current_name);
	nulls[6] = nulls[7] = nulls[8] = false;

	tuple = heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

/*
 * resume_dispatch(reason): binds the payouts to this installation, so
 * that its workers dispatch them, after an operator has made sure that
 * this copy is the one that should pay (the original no longer runs, or
 * was itself the one restored).  Returns false, and changes nothing, when
 * dispatch was not held.  Appends an audit row with the reason and both
 * identities, and wakes the workers.  EXECUTE is granted to
 * withdrawal_ops only.
 */
Datum
withdrawal_resume_dispatch(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr update_plan = NULL;
	static SPIPlanPtr insert_plan = NULL;
	char	   *reason = WithdrawalArgText(fcinfo, 0, "reason", WITHDRAWAL_MAX_REASON);
	char	   *actor = WithdrawalActor();
	char	   *database_name = get_database_name(MyDatabaseId);
	Oid			types[4] = {INT8OID, OIDOID, NAMEOID, NAMEOID};
	Datum		values[4];
	NameData	dbname;
	NameData	actor_name;
	WithdrawalBinding binding;
	const char *keys[7] = {"reason", "bound_system_identifier", "bound_database_oid",
		"bound_database_name", "system_identifier", "database_oid", "database_name"};
	const char *detail[7];

	if (database_name == NULL)
		elog(ERROR, "cache lookup failed for database %u", MyDatabaseId);

	SPI_connect();
	binding_read(&binding, true, NULL, NULL);
	if (!binding.held && !queued_before(binding.fresh_since))
	{
		SPI_finish();
		PG_RETURN_BOOL(false);
	}

	values[0] = Int64GetDatum(binding.system_identifier);
	values[1] = ObjectIdGetDatum(binding.database_oid);
	namestrcpy(&dbname, database_name);
	values[2] = NameGetDatum(&dbname);
	namestrcpy(&actor_name, actor);
	values[3] = NameGetDatum(&actor_name);
	if (binding.found)
	{
		WithdrawalPrepare(&update_plan,
						  "UPDATE withdrawal.installation SET system_identifier = $1, database_oid = $2,"
						  " database_name = $3, bound_at = pg_catalog.now(), bound_by = $4",
						  4, types);
		WithdrawalExecute(update_plan, values, NULL, false, 0, SPI_OK_UPDATE);
	}
	else
	{
		WithdrawalPrepare(&insert_plan,
						  "INSERT INTO withdrawal.installation"
						  " (system_identifier, database_oid, database_name, bound_by, seed)"
						  " VALUES ($1, $2, $3, $4, 'changed')",
						  4, types);
		WithdrawalExecute(insert_plan, values, NULL, false, 0, SPI_OK_INSERT);
	}

	detail[0] = reason;
	detail[1] = binding.found ? psprintf(INT64_FORMAT, binding.bound_system_identifier) : NULL;
	detail[2] = binding.found ? psprintf("%u", binding.bound_database_oid) : NULL;
	detail[3] = binding.found ? binding.bound_database_name : NULL;
	detail[4] = psprintf(INT64_FORMAT, binding.system_identifier);
	detail[5] = psprintf("%u", binding.database_oid);
	detail[6] = database_name;
	WithdrawalAudit("resume_dispatch", actor, NULL, NULL, NULL, NULL,
					WithdrawalDetail(7, keys, detail, 0));
	SPI_finish();

	WithdrawalWakeWorkersAtCommit();
	PG_RETURN_BOOL(true);
}
