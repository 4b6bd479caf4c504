/*-------------------------------------------------------------------------
 *
 * reconcile.c
 *	  Import of processor settlement reports, for reconciliation.
 *
 * import_settlement(processor, report) parses a CSV report with
 * PostgreSQL's own COPY parser (BeginCopyFrom over an in-memory data
 * source, FORMAT csv, HEADER match), so quoting, embedded newlines and the
 * header check behave exactly as COPY ... FROM would, without a file or
 * superuser rights.  Every row is validated before anything is written,
 * and the rows go in with one INSERT: a bad row is 22023 naming its line,
 * and nothing is loaded.
 *
 * reconcile() itself, one set-based statement that auditors should be
 * able to read from psql, is PL/pgSQL in sql/install/50_reconcile.sql;
 * only the import, which needs COPY's parser, is C.
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
#include "commands/copy.h"
#include "commands/copyfrom_internal.h"
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
require_processor(const char *processor)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(processor);
	WithdrawalPrepare(&plan,
					  "SELECT 1 FROM withdrawal.processor WHERE name OPERATOR(pg_catalog.=) $1",
					  1, types);
	WithdrawalExecute(plan, values, NULL, true, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
				 errmsg("unknown processor \"%s\"", processor)));
}

/* Raises 22023 for a bad field of the report: a printf-style message */
#define bad_row(line, ...) \
	ereport(ERROR, \
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE), \
			 errmsg("invalid settlement report line " UINT64_FORMAT ": %s", (line), \
					psprintf(__VA_ARGS__))))

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
		bad_row(line, "expected 6 fields, got %d", nfields);
	if (ref == NULL || strlen(ref) == 0 || strlen(ref) > MAX_PROCESSOR_REF)
		bad_row(line, "processor_ref must have 1 to 255 bytes");
	a->ref = accumArrayResult(a->ref, CStringGetTextDatum(ref), false, TEXTOID, cxt);

	if (wid == NULL || wid[0] == '\0')
		a->wid = accumArrayResult(a->wid, (Datum) 0, true, UUIDOID, cxt);
	else
	{
		d = DirectFunctionCall1(uuid_in, CStringGetDatum(wid));
		a->wid = accumArrayResult(a->wid, d, false, UUIDOID, cxt);
	}

	if (amount == NULL)
		bad_row(line, "amount is missing");
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
		bad_row(line, "settled_at is missing");
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
			bad_row(line, "a line \"\\.\" (the end-of-data marker of COPY) is not allowed in a report");
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
	require_processor(processor);

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
 * The C entry points of reconcile() in version 1.0.0.  Its install script,
 * which never changes once released, names them, and CREATE EXTENSION
 * withdrawal VERSION '1.0.0' (the first step of every upgrade) fails when
 * the library lacks a symbol it names.  The upgrade to 1.1.0 replaces both
 * functions with PL/pgSQL; until then they refuse, as every other function
 * of an older schema does.
 */
static void
pg_attribute_noreturn()
refuse_old_schema(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("extension \"withdrawal\" in this database is older than its library, version %s",
					WITHDRAWAL_VERSION),
			 errhint("Run ALTER EXTENSION withdrawal UPDATE.")));
}

Datum
withdrawal_reconcile(PG_FUNCTION_ARGS)
{
	refuse_old_schema();
}

Datum
withdrawal_reconcile_since(PG_FUNCTION_ARGS)
{
	refuse_old_schema();
}
