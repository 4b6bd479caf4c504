/*-------------------------------------------------------------------------
 *
 * config.c
 *	  Checks of the ops-editable configuration rows (policy, channel,
 *	  processor) when they are written, the seeded rows that a restore
 *	  replaces, and the audit rows of every change.
 *
 * Operators edit these tables directly, so their values are checked by a
 * BEFORE INSERT OR UPDATE trigger rather than by an API function.  A value
 * that only fails later fails where nobody is looking: a policy time zone
 * PostgreSQL does not know fails every request of the currency, a NaN rate
 * (NaN > 0 is true in PostgreSQL, so the CHECK lets it through) silently
 * means "no limit", a base_url the dispatcher refuses sends every
 * payout of the processor to "dead"; a negative reconciliation tolerance
 * has no meaning.  Each is refused with 22023 instead.
 *
 * The trigger checks columns by name, so one function serves every table
 * that has them.  On UPDATE only the columns that change are checked: an
 * operator must always be able to disable a channel whose row an older
 * version let through.
 *
 * config_seed() keeps the changes operators make to the rows CREATE
 * EXTENSION writes (seed 'default' or 'changed') across a dump and
 * restore: see sql/install/60_restore.sql.
 *
 * config_audit() writes an audit row for every change of a configuration
 * row, with the row before and after: see sql/install/62_config_audit.sql.
 *
 * Two small triggers that many tables share live here too: append_only()
 * (the ledger, the audit log...) and config_changed(), which makes every
 * backend drop its cached copy of a configuration table (cache.c).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/config.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "pgtime.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/portal.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "audit.h"
#include "config.h"
#include "shmem.h"
#include "spi.h"
#include "url.h"

PG_FUNCTION_INFO_V1(withdrawal_config_check);
PG_FUNCTION_INFO_V1(withdrawal_config_seed);
PG_FUNCTION_INFO_V1(withdrawal_config_audit);
PG_FUNCTION_INFO_V1(withdrawal_append_only);
PG_FUNCTION_INFO_V1(withdrawal_config_changed);

/*
 * The table whose seeded row config_seed() is replacing with an inserted
 * row, so that the UPDATE it runs passes its own BEFORE UPDATE check
 */
static Oid	seed_replacing_relid = InvalidOid;

/* A statement of block() or unblock() is writing (WithdrawalConfigApiWrite) */
static bool api_write = false;
static bool api_write_callbacks = false;

/*
 * The new value of column name when the row is inserted or the column is
 * changed, or false when there is nothing to check (no such column, NULL,
 * unchanged).
 */
static bool
written_value(TriggerData *trigdata, const char *name, Datum *value)
{
	Relation	rel = trigdata->tg_relation;
	TupleDesc	tupdesc = RelationGetDescr(rel);
	HeapTuple	newtuple;
	Form_pg_attribute att;
	int			attnum = SPI_fnumber(tupdesc, name);
	bool		isnull;

	if (attnum <= 0)
		return false;
	att = TupleDescAttr(tupdesc, attnum - 1);
	newtuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	*value = heap_getattr(newtuple, attnum, tupdesc, &isnull);
	if (isnull)
		return false;
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		bool		oldnull;
		Datum		old = heap_getattr(trigdata->tg_trigtuple, attnum, tupdesc, &oldnull);

		if (!oldnull && datumIsEqual(old, *value, att->attbyval, att->attlen))
			return false;
	}
	return true;
}

/*
 * A time zone must be one that PostgreSQL's time zone lookup finds, as SET
 * timezone requires: the policy and channel checks pass it to
 * timezone(text, timestamptz) and date_trunc(), which use the same lookup.
 */
static void
check_timezone(const char *table, const char *tzname)
{
	pg_tz	   *tz = pg_tzset(tzname);

	if (tz == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time zone \"%s\" of withdrawal.%s is not recognized", tzname, table),
				 errhint("Use a name listed in pg_catalog.pg_timezone_names, such as \"Asia/Shanghai\" or \"UTC\".")));
	if (!pg_tz_acceptable(tz))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time zone \"%s\" of withdrawal.%s is not valid", tzname, table),
				 errdetail("PostgreSQL does not support leap seconds.")));
}

/*
 * Whether an interval is longer than 100 years as PostgreSQL compares
 * intervals (1200 months of 30 days): the bound of the intervals that are
 * added to a timestamp on every use, which must not leave its range.
 */
static bool
longer_than_100_years(const Interval *span)
{
	double		days = span->month * (double) DAYS_PER_MONTH + span->day +
		(double) span->time / USECS_PER_DAY;

	return days > 100 * MONTHS_PER_YEAR * DAYS_PER_MONTH;
}

/*
 * review_expires_after must be positive in each of its fields: a mix such
 * as '1 day -25 hours' compares as positive with PostgreSQL's 30-day
 * months and 24-hour days, yet would expire a withdrawal before it was
 * made in some time zones.  At most 100 years, so that created_at plus it
 * cannot leave the timestamp range (PostgreSQL 15 has no infinite
 * interval: NULL is "never").
 */
static void
check_review_expiry(const char *table, const Interval *span)
{
	if (span->month < 0 || span->day < 0 || span->time < 0 ||
		(span->month == 0 && span->day == 0 && span->time == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("review_expires_after of withdrawal.%s must be positive", table),
				 errdetail("Each of its months, days and time must be zero or more, and one of them more than zero."),
				 errhint("Use NULL for withdrawals in review that never expire.")));
	if (longer_than_100_years(span))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("review_expires_after of withdrawal.%s must be at most 100 years", table),
				 errhint("Use NULL for withdrawals in review that never expire.")));
}

/*
 * method_cooling_off: like review_expires_after (each field zero or more,
 * at most 100 years), but zero is allowed, and means none, as NULL does.
 * request() adds it to a method's verified_at, where a mixed sign would
 * shorten it in some time zones and an overflow would fail every request
 * by method id.
 */
static void
check_cooling_off(const char *table, const Interval *span)
{
	if (span->month < 0 || span->day < 0 || span->time < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("method_cooling_off of withdrawal.%s must not be negative", table),
				 errdetail("Each of its months, days and time must be zero or more."),
				 errhint("Use NULL for no cooling-off.")));
	if (longer_than_100_years(span))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("method_cooling_off of withdrawal.%s must be at most 100 years", table)));
}

/* A daily cap of a channel: NULL (none) or at least 1 */
static void
check_cap(TriggerData *trigdata, const char *table, const char *name, bool int8)
{
	Datum		value;

	if (written_value(trigdata, name, &value) &&
		(int8 ? DatumGetInt64(value) : (int64) DatumGetInt32(value)) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s of withdrawal.%s must be positive", name, table),
				 errhint("Use NULL for a channel without this cap; disable the channel to close it.")));
}

/*
 * The daily caps of a channel and its cap_currency go together: an amount
 * cap in minor units needs its currency, and a channel with caps pays only
 * that currency.  The currency must be one withdrawal.currency knows (the
 * foreign key would say 23503; bad configuration is 22023 here).
 */
static void
check_caps(TriggerData *trigdata, const char *table)
{
	TupleDesc	tupdesc = RelationGetDescr(trigdata->tg_relation);
	HeapTuple	newtuple;
	int			a_count = SPI_fnumber(tupdesc, "daily_count_cap");
	int			a_amount = SPI_fnumber(tupdesc, "daily_amount_cap");
	int			a_currency = SPI_fnumber(tupdesc, "cap_currency");
	bool		count_null;
	bool		amount_null;
	bool		currency_null;
	Datum		value;

	if (a_count <= 0 || a_amount <= 0 || a_currency <= 0)
		return;
	check_cap(trigdata, table, "daily_count_cap", false);
	check_cap(trigdata, table, "daily_amount_cap", true);

	newtuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	(void) heap_getattr(newtuple, a_count, tupdesc, &count_null);
	(void) heap_getattr(newtuple, a_amount, tupdesc, &amount_null);
	(void) heap_getattr(newtuple, a_currency, tupdesc, &currency_null);
	if (currency_null && !(count_null && amount_null))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a channel with a daily cap needs cap_currency"),
				 errdetail("A capped channel pays one currency: its amount cap is in that currency's minor units."),
				 errhint("Set cap_currency together with daily_count_cap or daily_amount_cap.")));
	if (!currency_null && count_null && amount_null)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cap_currency of withdrawal.%s is set without a daily cap", table),
				 errdetail("cap_currency only says which currency a capped channel pays."),
				 errhint("Set it to NULL together with the caps.")));

	if (written_value(trigdata, "cap_currency", &value))
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1];
		bool		known;

		values[0] = value;
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute_with_args("SELECT FROM withdrawal.currency WHERE code OPERATOR(pg_catalog.=) $1",
								  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not look up a currency");
		known = SPI_processed > 0;
		SPI_finish();
		if (!known)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown cap_currency \"%s\" of withdrawal.%s",
							TextDatumGetCString(value), table),
					 errhint("Currencies are listed in withdrawal.currency.")));
	}
}

/*
 * The amount tolerances of reconcile() on a processor: NULL would be a
 * 23502 from the NOT NULL constraint, and a negative or out-of-range value
 * a 23514; bad configuration is 22023 here, as for every other column.
 * An absolute tolerance is in minor units (0: exact); a relative one is in
 * basis points of the ledger amount, at most 10000 (100%).
 */
static void
check_tolerances(TriggerData *trigdata, const char *table)
{
	TupleDesc	tupdesc = RelationGetDescr(trigdata->tg_relation);
	HeapTuple	newtuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	int			a_abs = SPI_fnumber(tupdesc, "recon_tolerance_abs");
	int			a_bps = SPI_fnumber(tupdesc, "recon_tolerance_bps");
	bool		abs_null;
	bool		bps_null;
	Datum		value;

	if (a_abs <= 0 || a_bps <= 0)
		return;
	(void) heap_getattr(newtuple, a_abs, tupdesc, &abs_null);
	(void) heap_getattr(newtuple, a_bps, tupdesc, &bps_null);
	if (abs_null || bps_null)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s of withdrawal.%s must not be null", abs_null ?
						"recon_tolerance_abs" : "recon_tolerance_bps", table),
				 errhint("Use 0 for exact reconciliation.")));
	if (written_value(trigdata, "recon_tolerance_abs", &value) &&
		DatumGetInt64(value) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("recon_tolerance_abs of withdrawal.%s must not be negative", table),
				 errhint("It is a number of minor units; use 0 for exact reconciliation.")));
	if (written_value(trigdata, "recon_tolerance_bps", &value) &&
		(DatumGetInt32(value) < 0 || DatumGetInt32(value) > 10000))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("recon_tolerance_bps of withdrawal.%s must be between 0 and 10000", table),
				 errhint("It is in basis points of the ledger amount: 25 is 0.25%%; use 0 for exact reconciliation.")));
}

/*
 * trigger config_check(): BEFORE INSERT OR UPDATE FOR EACH ROW on policy,
 * channel and processor.
 */
Datum
withdrawal_config_check(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *table;
	Datum		value;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		  TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		elog(ERROR, "withdrawal_config_check: must be fired before insert or update, for each row");
	table = RelationGetRelationName(trigdata->tg_relation);

	if (written_value(trigdata, "timezone", &value))
		check_timezone(table, TextDatumGetCString(value));

	/* NaN > 0 is true in PostgreSQL: the table's CHECK lets NaN through */
	if (written_value(trigdata, "rate_per_second", &value) &&
		!(DatumGetFloat8(value) > 0 && !isinf(DatumGetFloat8(value))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rate_per_second of withdrawal.%s must be a positive finite number", table),
				 errhint("Use NULL for a channel without a rate limit.")));

	if (written_value(trigdata, "review_expires_after", &value))
		check_review_expiry(table, DatumGetIntervalP(value));
	if (written_value(trigdata, "method_cooling_off", &value))
		check_cooling_off(table, DatumGetIntervalP(value));
	check_caps(trigdata, table);
	check_tolerances(trigdata, table);

	if (written_value(trigdata, "base_url", &value))
	{
		char	   *url = TextDatumGetCString(value);
		char	   *why;

		if (!WithdrawalUrlAllowed(url, &why))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid base_url \"%s\" of withdrawal.%s", url, table),
					 errdetail("The dispatcher would refuse it: %s.", why),
					 errhint("Use an https URL, or an http URL of a loopback host while withdrawal.allow_insecure_loopback is on.")));
	}

	return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
						   trigdata->tg_newtuple : trigdata->tg_trigtuple);
}

/* ---------- seeded rows ---------- */

/* The attribute number of the single-column primary key of rel */
static AttrNumber
seed_key_attnum(Relation rel)
{
	Oid			indexoid = RelationGetPrimaryKeyIndex(rel);
	HeapTuple	tuple;
	Form_pg_index index;
	AttrNumber	attnum;

	if (!OidIsValid(indexoid))
		elog(ERROR, "withdrawal_config_seed: table \"%s\" has no primary key",
			 RelationGetRelationName(rel));
	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for index %u", indexoid);
	index = (Form_pg_index) GETSTRUCT(tuple);
	if (index->indnkeyatts != 1)
		elog(ERROR, "withdrawal_config_seed: the primary key of \"%s\" must have one column",
			 RelationGetRelationName(rel));
	attnum = index->indkey.values[0];
	ReleaseSysCache(tuple);
	return attnum;
}

/* The column "seed" of rel */
static AttrNumber
seed_attnum(Relation rel)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), "seed");

	if (attnum <= 0)
		elog(ERROR, "withdrawal_config_seed: table \"%s\" has no column seed",
			 RelationGetRelationName(rel));
	return (AttrNumber) attnum;
}

/* The key of a row, for messages */
static char *
seed_key_text(Relation rel, HeapTuple tuple, AttrNumber keyatt)
{
	char	   *key = SPI_getvalue(tuple, RelationGetDescr(rel), keyatt);

	return key ? key : "NULL";
}

/*
 * Raises 55000 for a change that would remove a seeded row: a restore
 * runs CREATE EXTENSION, which writes the row again, and a dump cannot say
 * that it is gone.
 */
static void
seed_refuse_removal(Relation rel, const char *what, const char *key)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s row \"%s\" of withdrawal.%s: CREATE EXTENSION installed it",
					what, key, RelationGetRelationName(rel)),
			 errdetail("A restore of a dump would install the row again with its default values."),
			 errhint("Change the row instead: disable a channel (enabled = false), tighten a policy; changes are dumped and restored.")));
}

/*
 * Replaces the row of the inserted key when it is still as installed: an
 * UPDATE of every column but the key to the inserted values, the seed
 * state included (a dumped row carries its own; an operator's INSERT,
 * none, makes it 'changed').  Returns whether there was such a row.
 */
static bool
seed_replace(Relation rel, HeapTuple newtuple, AttrNumber keyatt, AttrNumber seedatt)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	StringInfoData sql;
	Oid		   *types = palloc(sizeof(Oid) * tupdesc->natts);
	Datum	   *values = palloc(sizeof(Datum) * tupdesc->natts);
	char	   *nulls = palloc(tupdesc->natts);
	int			n = 0;
	int			i;
	bool		isnull;
	bool		replaced = false;
	StringInfoData targets;
	StringInfoData sources;

	initStringInfo(&targets);
	initStringInfo(&sources);
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (att->attisdropped || att->attgenerated || att->attnum == keyatt)
			continue;
		types[n] = att->atttypid;
		values[n] = heap_getattr(newtuple, att->attnum, tupdesc, &isnull);
		/* the key stays a seeded one, whatever the INSERT said */
		if (isnull && att->attnum == seedatt)
		{
			values[n] = CStringGetTextDatum("changed");
			isnull = false;
		}
		nulls[n] = isnull ? 'n' : ' ';
		appendStringInfo(&targets, "%s%s", n > 0 ? ", " : "",
						 quote_identifier(NameStr(att->attname)));
		appendStringInfo(&sources, "%s$%d", n > 0 ? ", " : "", n + 1);
		n++;
	}
	types[n] = TupleDescAttr(tupdesc, keyatt - 1)->atttypid;
	values[n] = heap_getattr(newtuple, keyatt, tupdesc, &isnull);
	nulls[n] = isnull ? 'n' : ' ';
	if (isnull)
		return false;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "UPDATE %s.%s SET (%s) = ROW(%s) WHERE %s OPERATOR(pg_catalog.=) $%d"
					 " AND seed OPERATOR(pg_catalog.=) 'default'",
					 quote_identifier(get_namespace_name(RelationGetNamespace(rel))),
					 quote_identifier(RelationGetRelationName(rel)),
					 targets.data, sources.data,
					 quote_identifier(NameStr(TupleDescAttr(tupdesc, keyatt - 1)->attname)),
					 n + 1);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	seed_replacing_relid = RelationGetRelid(rel);
	PG_TRY();
	{
		if (SPI_execute_with_args(sql.data, n + 1, types, values, nulls, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not replace a seeded row of withdrawal.%s",
				 RelationGetRelationName(rel));
		replaced = SPI_processed > 0;
	}
	PG_FINALLY();
	{
		seed_replacing_relid = InvalidOid;
	}
	PG_END_TRY();
	SPI_finish();
	return replaced;
}

/*
 * An UPDATE by anyone but seed_replace(): refuses a changed key or seed
 * state of a seeded row, and marks a seeded row whose values change as
 * 'changed'.  Returns the row to store.
 */
static HeapTuple
seed_update(Relation rel, HeapTuple oldtuple, HeapTuple newtuple,
			AttrNumber keyatt, AttrNumber seedatt)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	bool		oldnull;
	bool		newnull;
	Datum		oldseed = heap_getattr(oldtuple, seedatt, tupdesc, &oldnull);
	Datum		newseed = heap_getattr(newtuple, seedatt, tupdesc, &newnull);
	bool		changed = false;
	int			i;

	if (oldnull != newnull ||
		(!oldnull && !datum_image_eq(oldseed, newseed, false, -1)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("column seed of withdrawal.%s is maintained by the extension",
						RelationGetRelationName(rel)),
				 errdetail("It says whether CREATE EXTENSION installed the row and whether it was changed since.")));
	if (oldnull)
		return newtuple;

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		Datum		a;
		Datum		b;
		bool		anull;
		bool		bnull;

		if (att->attisdropped || att->attnum == seedatt)
			continue;
		a = heap_getattr(oldtuple, att->attnum, tupdesc, &anull);
		b = heap_getattr(newtuple, att->attnum, tupdesc, &bnull);
		if (anull == bnull && (anull || datum_image_eq(a, b, att->attbyval, att->attlen)))
			continue;
		if (att->attnum == keyatt)
			seed_refuse_removal(rel, "change the key of", seed_key_text(rel, oldtuple, keyatt));
		changed = true;
	}
	if (changed && strcmp(TextDatumGetCString(oldseed), "changed") != 0)
	{
		int			cols[1];
		Datum		vals[1];
		bool		isnull[1] = {false};

		cols[0] = seedatt;
		vals[0] = CStringGetTextDatum("changed");
		return heap_modify_tuple_by_cols(newtuple, tupdesc, 1, cols, vals, isnull);
	}
	return newtuple;
}

/*
 * trigger config_seed(): BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW,
 * and BEFORE TRUNCATE FOR EACH STATEMENT, on the configuration tables
 * that CREATE EXTENSION seeds (a single-column primary key and a column
 * seed).  See sql/install/60_restore.sql for why.
 */
Datum
withdrawal_config_seed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	AttrNumber	keyatt;
	AttrNumber	seedatt;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		elog(ERROR, "withdrawal_config_seed: must be fired before the change");
	rel = trigdata->tg_relation;

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot truncate withdrawal.%s: CREATE EXTENSION installed some of its rows",
						RelationGetRelationName(rel)),
				 errdetail("A restore of a dump would install those rows again with their default values."),
				 errhint("DELETE the rows that were added instead.")));
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "withdrawal_config_seed: must be fired for each row");

	keyatt = seed_key_attnum(rel);
	seedatt = seed_attnum(rel);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		if (seed_replace(rel, trigdata->tg_trigtuple, keyatt, seedatt))
			return PointerGetDatum(NULL);
		return PointerGetDatum(trigdata->tg_trigtuple);
	}
	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		(void) heap_getattr(trigdata->tg_trigtuple, seedatt, RelationGetDescr(rel), &isnull);
		if (!isnull)
			seed_refuse_removal(rel, "delete", seed_key_text(rel, trigdata->tg_trigtuple, keyatt));
		return PointerGetDatum(trigdata->tg_trigtuple);
	}
	/* UPDATE: the replacement of a seeded row carries the dumped state */
	if (RelationGetRelid(rel) == seed_replacing_relid)
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(seed_update(rel, trigdata->tg_trigtuple, trigdata->tg_newtuple,
									   keyatt, seedatt));
}

/* ---------- audit ---------- */

/* Forgets a block()/unblock() write that an error interrupted */
static void
api_write_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		api_write = false;
}

static void
api_write_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		api_write = false;
}

void
WithdrawalConfigApiWrite(bool on)
{
	if (!api_write_callbacks)
	{
		RegisterXactCallback(api_write_xact_callback, NULL);
		RegisterSubXactCallback(api_write_subxact_callback, NULL);
		api_write_callbacks = true;
	}
	api_write = on;
}

/*
 * Whether the statement that fires the trigger is a COPY FROM.  A restore
 * (pg_restore, or psql running a plain dump) loads the configuration
 * tables with COPY, after loading or before loading the audit log itself:
 * audit rows written then would repeat changes that the restored log
 * already holds, and, numbered by an identity sequence that the restore
 * sets only after the data, would collide with the restored rows and fail
 * the restore.
 */
static bool
loading_by_copy(void)
{
	return ActivePortal != NULL && ActivePortal->commandTag == CMDTAG_COPY;
}

/*
 * trigger config_audit(): AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW
 * on the configuration tables (and BEFORE TRUNCATE FOR EACH STATEMENT on
 * withdrawal.blocklist, whose rows CREATE EXTENSION does not seed).
 * Appends one audit row per change: action config_insert, config_update,
 * config_delete or config_truncate, actor session_user, and detail
 * {"table", "before", "after", "changed"} with the row as to_jsonb() gives
 * it.  The tables hold no secret (processor rows name theirs); a
 * base_url's user information is replaced all the same, since the audit
 * log is readable by withdrawal_auditor, who cannot read the processors.
 * An UPDATE that changes nothing writes nothing.  Writes of block() and
 * unblock(), which audit themselves, and loads by COPY (restores) are not
 * audited.  SECURITY DEFINER: a role granted a write on a configuration
 * table need not be able to write the audit log.
 */
Datum
withdrawal_config_audit(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	tupdesc;
	const char *table;
	const char *action;
	HeapTuple	before = NULL;
	HeapTuple	after = NULL;
	Oid			types[3];
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		isnull;
	Jsonb	   *detail;
	char	   *account_id = NULL;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "withdrawal_config_audit: must be called as a trigger");
	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	table = RelationGetRelationName(rel);

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event))
			elog(ERROR, "withdrawal_config_audit: must be fired before truncate");
		action = "config_truncate";
	}
	else
	{
		if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
			elog(ERROR, "withdrawal_config_audit: must be fired after the change, for each row");
		if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		{
			action = "config_insert";
			after = trigdata->tg_trigtuple;
		}
		else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		{
			action = "config_update";
			before = trigdata->tg_trigtuple;
			after = trigdata->tg_newtuple;
		}
		else
		{
			action = "config_delete";
			before = trigdata->tg_trigtuple;
		}
	}

	if (loading_by_copy() ||
		(api_write && strcmp(table, "blocklist") == 0))
		return PointerGetDatum(NULL);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		/* the rows as they leave: how many, not each (a list may be long) */
		types[0] = TEXTOID;
		values[0] = CStringGetTextDatum(table);
		WithdrawalExecuteOnce(psprintf("SELECT pg_catalog.jsonb_build_object('table', $1::text, 'rows', count(*))"
									   "  FROM %s.%s",
									   quote_identifier(get_namespace_name(RelationGetNamespace(rel))),
									   quote_identifier(table)),
							  1, types, values, NULL, SPI_OK_SELECT);
	}
	else
	{
		/*
		 * The images and what changed, in one statement.  The row type of
		 * the table is that of the trigger's tuples.
		 */
		types[0] = TEXTOID;
		types[1] = types[2] = tupdesc->tdtypeid;
		values[0] = CStringGetTextDatum(table);
		values[1] = before ? heap_copy_tuple_as_datum(before, tupdesc) : (Datum) 0;
		nulls[1] = before ? ' ' : 'n';
		values[2] = after ? heap_copy_tuple_as_datum(after, tupdesc) : (Datum) 0;
		nulls[2] = after ? ' ' : 'n';
		WithdrawalExecuteOnce("WITH i AS ("
							  "  SELECT pg_catalog.to_jsonb($2) AS b, pg_catalog.to_jsonb($3) AS a),"
							  " r AS ("
							  "  SELECT CASE WHEN i.b OPERATOR(pg_catalog.->>) 'base_url'"
							  "                   OPERATOR(pg_catalog.~) '^[^:/]+://[^/@]*@'"
							  "              THEN pg_catalog.jsonb_set(i.b, '{base_url}', pg_catalog.to_jsonb("
							  "                     pg_catalog.regexp_replace(i.b OPERATOR(pg_catalog.->>) 'base_url',"
							  "                       '^([^:/]+://)[^/@]*@', E'\\\\1[redacted]@')))"
							  "              ELSE i.b END AS b,"
							  "         CASE WHEN i.a OPERATOR(pg_catalog.->>) 'base_url'"
							  "                   OPERATOR(pg_catalog.~) '^[^:/]+://[^/@]*@'"
							  "              THEN pg_catalog.jsonb_set(i.a, '{base_url}', pg_catalog.to_jsonb("
							  "                     pg_catalog.regexp_replace(i.a OPERATOR(pg_catalog.->>) 'base_url',"
							  "                       '^([^:/]+://)[^/@]*@', E'\\\\1[redacted]@')))"
							  "              ELSE i.a END AS a"
							  "    FROM i)"
							  " SELECT pg_catalog.jsonb_build_object('table', $1::text, 'before', r.b, 'after', r.a)"
							  "        || CASE WHEN r.b IS NULL OR r.a IS NULL THEN '{}'::jsonb"
							  "                ELSE pg_catalog.jsonb_build_object('changed',"
							  "                       (SELECT pg_catalog.jsonb_agg(k.key ORDER BY k.key)"
							  "                          FROM pg_catalog.jsonb_each(r.a) k"
							  "                         WHERE k.value IS DISTINCT FROM r.b OPERATOR(pg_catalog.->) k.key))"
							  "           END,"
							  "        r.b IS NOT DISTINCT FROM r.a"
							  "   FROM r",
							  3, types, values, nulls, SPI_OK_SELECT);
		/* an UPDATE that changes nothing: no audit row */
		if (DatumGetBool(WithdrawalSpiGet(0, 2, &isnull)))
		{
			SPI_finish();
			return PointerGetDatum(NULL);
		}
		/* an account listed is the account the row concerns, as block() says */
		if (strcmp(table, "blocklist") == 0)
		{
			HeapTuple	row = after ? after : before;
			char	   *kind = SPI_getvalue(row, tupdesc, SPI_fnumber(tupdesc, "kind"));

			if (kind && strcmp(kind, "account") == 0)
				account_id = SPI_getvalue(row, tupdesc, SPI_fnumber(tupdesc, "value"));
		}
	}
	detail = DatumGetJsonbPCopy(WithdrawalSpiGet(0, 1, &isnull));
	WithdrawalAudit(action, NULL, NULL, account_id, NULL, NULL, detail);
	SPI_finish();
	return PointerGetDatum(NULL);
}


/*
 * Trigger: refuses UPDATE, DELETE and TRUNCATE on append-only tables.
 */
Datum
withdrawal_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "withdrawal_append_only: not called by trigger manager");

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("table \"%s\" is append-only",
					RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("Rows of this table are never updated or deleted; corrections are new rows.")));
	PG_RETURN_NULL();
}

/*
 * Trigger: a configuration table changed, so every backend must drop its
 * cached copy.  The relcache invalidation is sent at commit and reaches all
 * backends, including the dispatcher workers.
 */
Datum
withdrawal_config_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "withdrawal_config_changed: not called by trigger manager");

	CacheInvalidateRelcache(trigdata->tg_relation);
	/* a channel enabled or repaired may have payouts waiting: claim now */
	WithdrawalWakeWorkersAtCommit();
	return PointerGetDatum(NULL);
}
