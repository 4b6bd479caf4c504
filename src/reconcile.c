/*-------------------------------------------------------------------------
 *
 * reconcile.c
 *	  Reconciliation of the ledger against processor settlement reports.
 *
 * import_settlement(processor, report) parses a CSV report with
 * PostgreSQL's own COPY parser (BeginCopyFrom over an in-memory data
 * source, FORMAT csv, HEADER match), so quoting, embedded newlines and the
 * header check behave exactly as COPY ... FROM would, without a file or
 * superuser rights.  Every row is validated before anything is written,
 * and the rows go in with one INSERT: a bad row is 22023 naming its line,
 * and nothing is loaded.
 *
 * reconcile(processor, period_start, period_end) is one set-based
 * statement: the payouts the ledger settled in the period (by the time of
 * their "settle" movement) FULL OUTER JOIN the processor's settlement rows
 * of the period (grouped per withdrawal), each pair classified once; the
 * discrepancies are inserted into recon_item and returned.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/reconcile.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/copy.h"
#include "commands/copyfrom_internal.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "args.h"
#include "cache.h"
#include "reconcile.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_import_settlement);
PG_FUNCTION_INFO_V1(withdrawal_reconcile);
PG_FUNCTION_INFO_V1(withdrawal_reconcile_since);

#define MAX_PROCESSOR_NAME 63
#define MAX_PROCESSOR_REF 255
#define REPORT_COLUMNS 6

/* The in-memory report that the COPY data source callback reads */
static const char *report_data = NULL;
static size_t report_len = 0;
static size_t report_pos = 0;

/*
 * COPY data source: hands out the report in pieces.
 */
static int
report_read(void *outbuf, int minread, int maxread)
{
	size_t		n = Min((size_t) maxread, report_len - report_pos);

	memcpy(outbuf, report_data + report_pos, n);
	report_pos += n;
	return (int) n;
}

/*
 * Raises WD007 unless the processor exists.
 */
static void
require_processor(const char *processor, bool lock)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr lock_plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(processor);
	if (lock)
	{
		/* one run per processor at a time: periods must not overlap */
		WithdrawalPrepare(&lock_plan,
						  "SELECT 1 FROM withdrawal.processor WHERE name OPERATOR(pg_catalog.=) $1"
						  " FOR NO KEY UPDATE",
						  1, types);
		WithdrawalExecute(lock_plan, values, NULL, false, 1, SPI_OK_SELECT);
	}
	else
	{
		WithdrawalPrepare(&plan,
						  "SELECT 1 FROM withdrawal.processor WHERE name OPERATOR(pg_catalog.=) $1",
						  1, types);
		WithdrawalExecute(plan, values, NULL, true, 1, SPI_OK_SELECT);
	}
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
				 errmsg("unknown processor \"%s\"", processor)));
}

/*
 * Raises 22023 for a bad field of the report.
 */
static void
pg_attribute_noreturn()
bad_row(uint64 line, const char *fmt, const char *arg)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid settlement report line " UINT64_FORMAT ": %s", line,
					psprintf(fmt, arg))));
}

typedef struct ReportArrays
{
	ArrayBuildState *ref;
	ArrayBuildState *wid;
	ArrayBuildState *amount;
	ArrayBuildState *currency;
	ArrayBuildState *status;
	ArrayBuildState *settled_at;
	uint64		rows;
} ReportArrays;

/*
 * Validates one row of raw CSV fields and appends it to the arrays.  Type
 * input functions may raise their own data exceptions; the caller turns
 * those into 22023 with the line number.
 */
static void
add_row(ReportArrays *a, char **fields, int nfields, uint64 line)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *ref = fields[0];
	char	   *wid = fields[1];
	char	   *amount = fields[2];
	char	   *currency = fields[3];
	char	   *status = fields[4];
	char	   *settled_at = fields[5];
	Datum		d;

	if (nfields != REPORT_COLUMNS)
		bad_row(line, "expected 6 fields, got %s", psprintf("%d", nfields));
	if (ref == NULL || strlen(ref) == 0 || strlen(ref) > MAX_PROCESSOR_REF)
		bad_row(line, "processor_ref must have 1 to 255 bytes%s", "");
	a->ref = accumArrayResult(a->ref, CStringGetTextDatum(ref), false, TEXTOID, cxt);

	if (wid == NULL || wid[0] == '\0')
		a->wid = accumArrayResult(a->wid, (Datum) 0, true, UUIDOID, cxt);
	else
	{
		d = DirectFunctionCall1(uuid_in, CStringGetDatum(wid));
		a->wid = accumArrayResult(a->wid, d, false, UUIDOID, cxt);
	}

	if (amount == NULL)
		bad_row(line, "amount is missing%s", "");
	d = DirectFunctionCall1(int8in, CStringGetDatum(amount));
	if (DatumGetInt64(d) <= 0)
		bad_row(line, "amount must be a positive number of minor units, got %s", amount);
	a->amount = accumArrayResult(a->amount, d, false, INT8OID, cxt);

	if (currency == NULL || strlen(currency) != 3 || !WithdrawalCurrencyKnown(currency))
		bad_row(line, "unknown currency \"%s\"", currency ? currency : "");
	a->currency = accumArrayResult(a->currency, CStringGetTextDatum(currency), false, TEXTOID, cxt);

	if (status == NULL ||
		(strcmp(status, "paid") != 0 && strcmp(status, "failed") != 0 &&
		 strcmp(status, "returned") != 0))
		bad_row(line, "status must be paid, failed or returned, got \"%s\"", status ? status : "");
	a->status = accumArrayResult(a->status, CStringGetTextDatum(status), false, TEXTOID, cxt);

	if (settled_at == NULL)
		bad_row(line, "settled_at is missing%s", "");
	d = DirectFunctionCall3(timestamptz_in, CStringGetDatum(settled_at),
							ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	if (TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(d)))
		bad_row(line, "settled_at must be finite, got \"%s\"", settled_at);
	a->settled_at = accumArrayResult(a->settled_at, d, false, TIMESTAMPTZOID, cxt);
	a->rows++;
}

/*
 * Parses the whole report into arrays with the COPY machinery.
 */
static void
parse_report(const char *report, size_t len, ReportArrays *a)
{
	MemoryContext cxt = CurrentMemoryContext;
	Relation	rel;
	CopyFromState cstate;
	List	   *attnames = NIL;
	List	   *options = NIL;
	ParseState *pstate;
	volatile uint64 line = 0;
	ErrorData  *volatile edata = NULL;
	static const char *const columns[REPORT_COLUMNS] = {
		"processor_ref", "withdrawal_id", "amount", "currency", "status", "settled_at"
	};
	int			i;

	for (i = 0; i < REPORT_COLUMNS; i++)
		attnames = lappend(attnames, makeString(pstrdup(columns[i])));
	options = lappend(options, makeDefElem("format", (Node *) makeString("csv"), -1));
	options = lappend(options, makeDefElem("header", (Node *) makeString("match"), -1));
	options = lappend(options, makeDefElem("encoding",
										   (Node *) makeString(pstrdup(GetDatabaseEncodingName())), -1));

	rel = table_open(get_relname_relid("settlement", get_namespace_oid("withdrawal", false)),
					 RowExclusiveLock);
	pstate = make_parsestate(NULL);
	report_data = report;
	report_len = len;
	report_pos = 0;
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, report_read, attnames, options);

	PG_TRY();
	{
		char	  **fields;
		int			nfields;

		while (NextCopyFromRawFields(cstate, &fields, &nfields))
		{
			line = cstate->cur_lineno;
			add_row(a, fields, nfields, line);
		}
		line = cstate->cur_lineno;

		/*
		 * COPY stops at a line that is only "\." (its end-of-data marker)
		 * and ignores the rest: a report cut short there would load its
		 * first rows only, silently.
		 */
		if (!cstate->input_reached_eof || INPUT_BUF_BYTES(cstate) > 0 ||
			report_pos < report_len)
			bad_row(line, "a line \"\\.\" (the end-of-data marker of COPY) is not allowed in a report%s", "");
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_INVALID_PARAMETER_VALUE ||
			ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		line = cstate->cur_lineno;
	}
	PG_END_TRY();

	if (edata != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid settlement report line " UINT64_FORMAT ": %s",
						line, edata->message)));
	if (line == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("settlement report is empty"),
				 errhint("The first line must be the header processor_ref,withdrawal_id,amount,currency,status,settled_at.")));

	EndCopyFrom(cstate);
	free_parsestate(pstate);
	table_close(rel, NoLock);
	report_data = NULL;
}

/*
 * import_settlement(processor text, report text) returns bigint
 */
Datum
withdrawal_import_settlement(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[7] = {TEXTOID, TEXTARRAYOID, UUIDARRAYOID, INT8ARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		values[7];
	char	   *processor;
	text	   *report;
	ReportArrays a;
	uint64		inserted;

	processor = WithdrawalArgText(fcinfo, 0, "processor", MAX_PROCESSOR_NAME);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("report must not be null")));
	report = PG_GETARG_TEXT_PP(1);

	SPI_connect();
	require_processor(processor, false);

	memset(&a, 0, sizeof(a));
	parse_report(VARDATA_ANY(report), VARSIZE_ANY_EXHDR(report), &a);
	if (a.rows == 0)
	{
		SPI_finish();
		PG_RETURN_INT64(0);
	}

	WithdrawalPrepare(&plan,
					  "INSERT INTO withdrawal.settlement (processor, processor_ref, withdrawal_id,"
					  " amount, currency, status, settled_at)"
					  " SELECT $1, r, w, a, c, s, t"
					  " FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4),"
					  "  pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7)) AS u(r, w, a, c, s, t)"
					  " ON CONFLICT (processor, processor_ref, status) DO NOTHING",
					  7, types);
	values[0] = CStringGetTextDatum(processor);
	values[1] = makeArrayResult(a.ref, CurrentMemoryContext);
	values[2] = makeArrayResult(a.wid, CurrentMemoryContext);
	values[3] = makeArrayResult(a.amount, CurrentMemoryContext);
	values[4] = makeArrayResult(a.currency, CurrentMemoryContext);
	values[5] = makeArrayResult(a.status, CurrentMemoryContext);
	values[6] = makeArrayResult(a.settled_at, CurrentMemoryContext);
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_INSERT);
	inserted = SPI_processed;
	SPI_finish();
	PG_RETURN_INT64((int64) inserted);
}

/*
 * The reconciliation statement.  $1 processor, $2/$3 the period, $4 run id.
 *
 * l: payouts of the processor whose settle movement falls in the period.
 * p: the processor's rows of the period, one per withdrawal (rows without
 *    a withdrawal id stay one per processor_ref); status is the furthest
 *    the processor reports (returned > paid > failed); paid_rows counts
 *    distinct paid transfers.
 * A row of p without a partner in l is checked against the withdrawal
 * itself (o): the ledger may have settled it in another period, or not at
 * all.  A row of l without a partner in p is only missing at the
 * processor when no report of the processor mentions it (x).  Both
 * lookups are gated on the missing partner (a one-time filter per row;
 * OFFSET 0 keeps the planner from turning o into a second scan of every
 * withdrawal), so matched pairs, nearly all of them, cost nothing more.
 * One kind per withdrawal, the most serious first.
 */
static const char *const reconcile_sql =
"WITH l AS ("
"  SELECT w.withdrawal_id, w.amount, w.currency, w.status::text AS status, w.processor_ref"
"    FROM withdrawal.ledger_entry e"
"    JOIN withdrawal.withdrawal w ON w.withdrawal_id OPERATOR(pg_catalog.=) e.withdrawal_id"
"    JOIN withdrawal.channel c ON c.name OPERATOR(pg_catalog.=) w.channel"
"   WHERE e.kind OPERATOR(pg_catalog.=) 'settle' AND e.leg OPERATOR(pg_catalog.=) 1"
"     AND e.created_at OPERATOR(pg_catalog.>=) $2 AND e.created_at OPERATOR(pg_catalog.<) $3"
"     AND c.processor OPERATOR(pg_catalog.=) $1"
"), p AS ("
"  SELECT s.withdrawal_id, pg_catalog.min(s.processor_ref COLLATE \"C\") AS processor_ref,"
"         pg_catalog.min(s.amount::bigint) AS amount, pg_catalog.max(s.amount::bigint) AS max_amount,"
"         pg_catalog.min(s.currency COLLATE \"C\") AS currency,"
"         pg_catalog.max(s.currency COLLATE \"C\") AS max_currency,"
"         CASE WHEN pg_catalog.bool_or(s.status OPERATOR(pg_catalog.=) 'returned') THEN 'returned'"
"              WHEN pg_catalog.bool_or(s.status OPERATOR(pg_catalog.=) 'paid') THEN 'paid'"
"              ELSE 'failed' END AS status,"
"         pg_catalog.count(*) FILTER (WHERE s.status OPERATOR(pg_catalog.=) 'paid') AS paid_rows"
"    FROM withdrawal.settlement s"
"   WHERE s.processor OPERATOR(pg_catalog.=) $1"
"     AND s.settled_at OPERATOR(pg_catalog.>=) $2 AND s.settled_at OPERATOR(pg_catalog.<) $3"
"   GROUP BY s.withdrawal_id, CASE WHEN s.withdrawal_id IS NULL THEN s.processor_ref END"
"), j AS ("
"  SELECT coalesce(l.withdrawal_id, p.withdrawal_id) AS withdrawal_id,"
"         coalesce(p.processor_ref, l.processor_ref) AS processor_ref,"
"         coalesce(l.amount, o.amount) AS ledger_amount,"
"         p.amount AS processor_amount, p.max_amount,"
"         coalesce(l.currency, o.currency) AS ledger_currency,"
"         p.currency AS processor_currency, p.max_currency,"
"         coalesce(l.status, o.status) AS ledger_status,"
"         p.status AS processor_status, p.paid_rows,"
"         p.processor_ref IS NULL AS no_p,"
"         l.withdrawal_id IS NULL AND o.status IS NULL AS no_l,"
"         x.found IS NOT NULL AS reported_elsewhere"
"    FROM l FULL JOIN p ON p.withdrawal_id OPERATOR(pg_catalog.=) l.withdrawal_id"
"    LEFT JOIN LATERAL ("
"      SELECT w.amount::bigint AS amount, w.currency, w.status::text AS status"
"        FROM withdrawal.withdrawal w"
"       WHERE l.withdrawal_id IS NULL AND w.withdrawal_id OPERATOR(pg_catalog.=) p.withdrawal_id"
"      OFFSET 0) o ON true"
"    LEFT JOIN LATERAL ("
"      SELECT 1 AS found FROM withdrawal.settlement s2"
"       WHERE p.processor_ref IS NULL AND s2.withdrawal_id OPERATOR(pg_catalog.=) l.withdrawal_id"
"         AND s2.processor OPERATOR(pg_catalog.=) $1"
"         AND s2.status OPERATOR(pg_catalog.<>) 'failed' LIMIT 1) x ON true"
"), k AS ("
"  SELECT j.*, CASE"
"     WHEN no_p THEN CASE WHEN reported_elsewhere THEN NULL ELSE 'missing_at_processor' END"
"     WHEN no_l THEN 'missing_in_ledger'"
"     WHEN paid_rows OPERATOR(pg_catalog.>) 1 THEN 'duplicate_at_processor'"
"     WHEN ledger_currency OPERATOR(pg_catalog.<>) processor_currency"
"       OR processor_currency OPERATOR(pg_catalog.<>) max_currency THEN 'currency_mismatch'"
"     WHEN ledger_amount OPERATOR(pg_catalog.<>) processor_amount"
"       OR processor_amount OPERATOR(pg_catalog.<>) max_amount THEN 'amount_mismatch'"
"     WHEN ledger_status OPERATOR(pg_catalog.<>) processor_status THEN 'status_mismatch'"
"   END AS kind"
"    FROM j"
")"
" INSERT INTO withdrawal.recon_item (run_id, kind, withdrawal_id, processor_ref, ledger_amount,"
"   processor_amount, ledger_currency, processor_currency, ledger_status, processor_status)"
" SELECT $4, kind, withdrawal_id, processor_ref, ledger_amount, processor_amount,"
"   ledger_currency, processor_currency, ledger_status, processor_status"
"   FROM k WHERE kind IS NOT NULL"
" RETURNING run_id, kind, withdrawal_id, processor_ref, ledger_amount, processor_amount,"
"   ledger_status, processor_status";

int64
WithdrawalReconcile(const char *processor, TimestampTz period_start,
					TimestampTz period_end, SPITupleTable **items,
					uint64 *nitems)
{
	static SPIPlanPtr run_plan = NULL;
	static SPIPlanPtr items_plan = NULL;
	static SPIPlanPtr finish_plan = NULL;
	Oid			run_types[3] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Oid			items_types[4] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID};
	Oid			finish_types[2] = {INT8OID, INT8OID};
	Datum		values[4];
	bool		isnull;
	int64		run_id;

	WithdrawalPrepare(&run_plan,
					  "INSERT INTO withdrawal.recon_run (processor, period_start, period_end)"
					  " VALUES ($1, $2, $3) RETURNING run_id",
					  3, run_types);
	values[0] = CStringGetTextDatum(processor);
	values[1] = TimestampTzGetDatum(period_start);
	values[2] = TimestampTzGetDatum(period_end);
	WithdrawalExecute(run_plan, values, NULL, false, 1, SPI_OK_INSERT_RETURNING);
	run_id = DatumGetInt64(WithdrawalSpiGet(0, 1, &isnull));

	WithdrawalPrepare(&items_plan, reconcile_sql, 4, items_types);
	values[3] = Int64GetDatum(run_id);
	WithdrawalExecute(items_plan, values, NULL, false, 0, SPI_OK_INSERT_RETURNING);
	*items = SPI_tuptable;
	*nitems = SPI_processed;

	WithdrawalPrepare(&finish_plan,
					  "UPDATE withdrawal.recon_run SET discrepancies = $2,"
					  " finished_at = pg_catalog.clock_timestamp() WHERE run_id OPERATOR(pg_catalog.=) $1",
					  2, finish_types);
	values[0] = Int64GetDatum(run_id);
	values[1] = Int64GetDatum((int64) *nitems);
	WithdrawalExecute(finish_plan, values, NULL, false, 0, SPI_OK_UPDATE);

	if (*nitems > 0)
		Async_Notify(WITHDRAWAL_RECON_CHANNEL,
					 psprintf("{\"run_id\": " INT64_FORMAT ", \"processor\": \"%s\", \"discrepancies\": " UINT64_FORMAT "}",
							  run_id, processor, *nitems));
	return run_id;
}

/*
 * Runs a reconciliation and returns its items as the function's result set.
 */
static void
reconcile_and_return(FunctionCallInfo fcinfo, const char *processor,
					 bool since_last, TimestampTz period_start,
					 TimestampTz period_end)
{
	static SPIPlanPtr last_plan = NULL;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			types[1] = {TEXTOID};
	SPITupleTable *items;
	uint64		nitems;
	uint64		i;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	require_processor(processor, true);
	if (since_last)
	{
		Datum		values[1];
		bool		isnull;

		WithdrawalPrepare(&last_plan,
						  "SELECT pg_catalog.max(period_end) FROM withdrawal.recon_run"
						  " WHERE processor OPERATOR(pg_catalog.=) $1",
						  1, types);
		values[0] = CStringGetTextDatum(processor);
		WithdrawalExecute(last_plan, values, NULL, false, 1, SPI_OK_SELECT);
		period_start = DatumGetTimestampTz(WithdrawalSpiGet(0, 1, &isnull));
		if (isnull)
			TIMESTAMP_NOBEGIN(period_start);
		period_end = GetCurrentTransactionStartTimestamp();
		if (period_end <= period_start)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("processor \"%s\" was already reconciled until now", processor)));
	}

	WithdrawalReconcile(processor, period_start, period_end, &items, &nitems);
	for (i = 0; i < nitems; i++)
	{
		Datum		values[8];
		bool		nulls[8];
		int			col;

		for (col = 0; col < 8; col++)
			values[col] = SPI_getbinval(items->vals[i], items->tupdesc, col + 1, &nulls[col]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
}

/*
 * reconcile(processor text, period_start timestamptz, period_end timestamptz)
 */
Datum
withdrawal_reconcile(PG_FUNCTION_ARGS)
{
	char	   *processor;
	TimestampTz period_start;
	TimestampTz period_end;

	processor = WithdrawalArgText(fcinfo, 0, "processor", MAX_PROCESSOR_NAME);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("period_start and period_end must not be null")));
	period_start = PG_GETARG_TIMESTAMPTZ(1);
	period_end = PG_GETARG_TIMESTAMPTZ(2);
	if (TIMESTAMP_NOT_FINITE(period_start) || TIMESTAMP_NOT_FINITE(period_end))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("period_start and period_end must be finite")));
	if (period_start >= period_end)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("period_start must be before period_end")));

	/*
	 * reconcile(processor) continues from the latest period_end: a period
	 * that ends in the future would make it fail until then, and the
	 * settlements still to come in that period would never be reconciled.
	 */
	if (period_end > GetCurrentTransactionStartTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("period_end must not be in the future"),
				 errdetail("A run covers settlements up to its period_end, and the next reconcile(processor) starts there.")));
	reconcile_and_return(fcinfo, processor, false, period_start, period_end);
	return (Datum) 0;
}

/*
 * reconcile(processor text): from the end of the last recorded run to now
 */
Datum
withdrawal_reconcile_since(PG_FUNCTION_ARGS)
{
	char	   *processor;

	processor = WithdrawalArgText(fcinfo, 0, "processor", MAX_PROCESSOR_NAME);
	reconcile_and_return(fcinfo, processor, true, 0, 0);
	return (Datum) 0;
}
