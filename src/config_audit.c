/*-------------------------------------------------------------------------
 *
 * config_audit.c
 *	  config_audit(): an audit row for every change of a configuration row,
 *	  with the row before and after (sql/install/62_config_audit.sql), and
 *	  the flag block() and unblock() set so that their own writes are
 *	  audited once, by them.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/config_audit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "audit.h"
#include "config_audit.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(withdrawal_config_audit);

/* A statement of block() or unblock() is writing (WithdrawalConfigApiWrite) */
static bool api_write = false;
static bool api_write_callbacks = false;

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
		WithdrawalExecuteFreshPlan(psprintf("SELECT pg_catalog.jsonb_build_object('table', $1::text, 'rows', count(*))"
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
		WithdrawalExecuteFreshPlan("WITH i AS ("
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
