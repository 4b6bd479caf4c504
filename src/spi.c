/*-------------------------------------------------------------------------
 *
 * spi.c
 *	  SPI plumbing shared by every module that runs SQL: kept plans,
 *	  execution with checked result codes, SQLSTATE mapping, result
 *	  accessors, and the check that the schema is at the library's version.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/spi.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/rel.h"

#include "args.h"
#include "spi.h"

/*
 * Whether this backend found the extension's SQL objects at the library's
 * version; forgotten at every relcache invalidation, which ALTER EXTENSION
 * UPDATE sends for the tables it changes.  A leaf below cache.c, so it
 * registers its own callback with PostgreSQL's.
 */
static bool schema_version_checked = false;
static bool schema_callback_registered = false;

static void
schema_relcache_callback(Datum arg, Oid relid)
{
	schema_version_checked = false;
}

/*
 * See spi.h.  The library's statements are written for the tables of its
 * own version: between the installation of a new library and ALTER
 * EXTENSION UPDATE, every call stops here with a clear error instead of
 * failing somewhere on a missing column.
 */
void
WithdrawalCheckSchemaVersion(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *version = NULL;

	if (schema_version_checked)
		return;
	if (!schema_callback_registered)
	{
		CacheRegisterRelcacheCallback(schema_relcache_callback, (Datum) 0);
		schema_callback_registered = true;
	}
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("withdrawal"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (version != NULL && strcmp(version, WITHDRAWAL_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"withdrawal\" is at version %s in this database, but its library is version %s",
						version, WITHDRAWAL_VERSION),
				 errhint("Run ALTER EXTENSION withdrawal UPDATE.")));
	schema_version_checked = true;
}

/* A plan kept for the life of the backend, prepared with cursor options */
static SPIPlanPtr
prepare_kept(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
			 int cursor_options)
{
	WithdrawalCheckSchemaVersion();
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

		if (p == NULL)
			elog(ERROR, "SPI_prepare_cursor failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}

SPIPlanPtr
WithdrawalPrepare(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	return prepare_kept(plan, sql, nargs, argtypes, 0);
}

SPIPlanPtr
WithdrawalPrepareCustom(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	return prepare_kept(plan, sql, nargs, argtypes, CURSOR_OPT_CUSTOM_PLAN);
}

void
WithdrawalExecute(SPIPlanPtr plan, Datum *values, const char *nulls,
				  bool read_only, long count, int expected)
{
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, count);

	if (rc != expected)
		elog(ERROR, "SPI_execute_plan returned %s, expected %s",
			 SPI_result_code_string(rc), SPI_result_code_string(expected));
}

void
WithdrawalExecuteFreshPlan(const char *sql, int nargs, Oid *argtypes,
					  Datum *values, const char *nulls, int expected)
{
	int			rc;

	WithdrawalCheckSchemaVersion();
	rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "SPI_execute_with_args returned %s, expected %s",
			 SPI_result_code_string(rc), SPI_result_code_string(expected));
}

int
WithdrawalExecuteMapped(SPIPlanPtr plan, Datum *values, const char *nulls,
						long count, int expected, const int *codes, int ncodes)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int caught = 0;

	PG_TRY();
	{
		WithdrawalExecute(plan, values, nulls, false, count, expected);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			i;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		for (i = 0; i < ncodes; i++)
			if (edata->sqlerrcode == codes[i])
				caught = codes[i];
		if (caught == 0)
			PG_RE_THROW();
		FlushErrorState();
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return caught;
}

/* See spi.h */
bool
WithdrawalSelectWithdrawal(SPIPlanPtr *plan, const char *sql,
						   const pg_uuid_t *id, bool read_only, bool missing_ok)
{
	Oid			types[1] = {UUIDOID};
	Datum		values[1];

	WithdrawalPrepare(plan, sql, 1, types);
	values[0] = UUIDPGetDatum(id);
	WithdrawalExecute(*plan, values, NULL, read_only, 1, SPI_OK_SELECT);
	if (SPI_processed > 0)
		return true;
	if (!missing_ok)
		WithdrawalRaiseUnknownWithdrawal(id);
	return false;
}

Datum
WithdrawalSpiGet(int row, int col, bool *isnull)
{
	Assert(row < SPI_processed);
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						 col, isnull);
}

char *
WithdrawalSpiGetText(int row, int col)
{
	Assert(row < SPI_processed);
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}
