/*-------------------------------------------------------------------------
 *
 * config.c
 *	  Checks of the ops-editable configuration rows (policy, channel,
 *	  processor) when they are written.
 *
 * Operators edit these tables directly, so their values are checked by a
 * BEFORE INSERT OR UPDATE trigger rather than by an API function.  A value
 * that only fails later fails where nobody is looking: a policy time zone
 * PostgreSQL does not know fails every request of the currency, a NaN rate
 * (NaN > 0 is true in PostgreSQL, so the CHECK lets it through) silently
 * means "no limit", and a base_url the dispatcher refuses sends every
 * payout of the processor to "dead".  Each is refused with 22023 instead.
 *
 * The trigger checks columns by name, so one function serves every table
 * that has them.  On UPDATE only the columns that change are checked: an
 * operator must always be able to disable a channel whose row an older
 * version let through.
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
#include "commands/trigger.h"
#include "executor/spi.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/rel.h"

#include "dispatch.h"

PG_FUNCTION_INFO_V1(withdrawal_config_check);

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
