/*-------------------------------------------------------------------------
 *
 * config.c
 *	  Checks of the ops-editable configuration rows (policy, channel,
 *	  processor) when they are written, and the two triggers many tables
 *	  share.
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
 * config_seed.c keeps the seeded rows across a dump and restore, and
 * config_audit.c audits every change of these rows.
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

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "shmem.h"
#include "spi.h"
#include "url.h"

PG_FUNCTION_INFO_V1(withdrawal_config_check);
PG_FUNCTION_INFO_V1(withdrawal_append_only);
PG_FUNCTION_INFO_V1(withdrawal_config_changed);

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
