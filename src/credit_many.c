/*-------------------------------------------------------------------------
 *
 * credit_many.c
 *	  credit_many(): credit() for many items in one statement, idempotent
 *	  per item, for reward campaigns that credit at hundreds of thousands
 *	  per second.
 *
 * Each item is its own ledger transaction, written by the same rules as
 * credit() (ledger.c): the same key and parameters replay it, the same key
 * with other parameters is WD002 for that item, an unknown currency or an
 * overflowing balance is refused.  The result says, per item, whether it
 * was new or replayed.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/credit_many.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"

#include "args.h"
#include "cache.h"
#include "ledger.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_credit_many);

/* A balance that would overflow is refused in the terms of the API */
static const int overflow_error[] = {ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE};

/* The most items credit_many() takes in one call */
#define CREDIT_MANY_MAX_ITEMS 100000

/*
 * credit_many()'s write statement: credit() for every item at once.
 *
 * The first item of each (account, key) is written, in key order, so that
 * two batches sharing keys wait for each other in the same order instead
 * of deadlocking; each credit is its own ledger transaction, so that its
 * key replays it alone.  Wallets are added to once each, with the sum of
 * their new credits, in (account, currency) order for the same reason; the
 * running balance of each entry is the wallet's new balance less the
 * credits posted after it (the wallet's new balance, less its new credits,
 * plus those up to this one).  The overflow check is credit()'s.  Returns
 * the item and running balance of each credit written.
 */
static const char *const credit_many_sql =
"WITH i AS ("
" SELECT * FROM ROWS FROM (unnest($1::text[]), unnest($2::text[]), unnest($3::int8[]),"
"  unnest($4::text[]), unnest($5::text[]), unnest($6::jsonb[]), unnest($7::uuid[]))"
"  WITH ORDINALITY AS i(account_id, currency, amount, idempotency_key, reference, metadata,"
"   transfer_id, item)),"
"c AS ("
" INSERT INTO withdrawal.credit"
"  (transfer_id, idempotency_key, account_id, currency, amount, reference, metadata, txn_id)"
" SELECT f.transfer_id, f.idempotency_key, f.account_id, f.currency, f.amount, f.reference,"
"  f.metadata, pg_catalog.nextval('withdrawal.ledger_txn_seq')"
" FROM (SELECT DISTINCT ON (account_id, idempotency_key) * FROM i"
"       ORDER BY account_id, idempotency_key, item) f"
" ORDER BY f.account_id, f.idempotency_key"
" ON CONFLICT (account_id, idempotency_key) DO NOTHING"
" RETURNING transfer_id, account_id, currency, amount, txn_id),"
"a AS ("
" INSERT INTO withdrawal.account (account_id)"
" SELECT account_id FROM c GROUP BY account_id ORDER BY account_id COLLATE \"C\""
" ON CONFLICT (account_id) DO NOTHING),"
"w AS ("
" INSERT INTO withdrawal.wallet AS w (account_id, currency, available)"
" SELECT account_id, currency, pg_catalog.sum(amount)::int8 FROM c"
" GROUP BY account_id, currency ORDER BY account_id COLLATE \"C\", currency COLLATE \"C\""
" ON CONFLICT (account_id, currency) DO UPDATE"
"  SET available = w.available + excluded.available, updated_at = pg_catalog.now()"
"  WHERE w.available + excluded.available + w.held + w.paid_out > 0"
" RETURNING wallet_id, account_id, currency, available),"
"e AS ("
" SELECT c.transfer_id, c.txn_id, c.currency, c.amount, w.wallet_id,"
"  (w.available - pg_catalog.sum(c.amount) OVER (PARTITION BY w.wallet_id)"
"   + pg_catalog.sum(c.amount) OVER (PARTITION BY w.wallet_id ORDER BY c.txn_id))::int8"
"   AS balance_after"
" FROM c JOIN w ON w.account_id = c.account_id AND w.currency = c.currency),"
"l AS ("
" INSERT INTO withdrawal.ledger_entry"
"  (txn_id, leg, kind, wallet_id, currency, bucket, amount, balance_after, credit_id)"
" SELECT e.txn_id, v.leg, 'credit', e.wallet_id, e.currency, v.bucket, v.amount,"
"  CASE v.leg WHEN 2 THEN e.balance_after END, e.transfer_id"
" FROM e, LATERAL (VALUES (1::int2, 'funding', -e.amount), (2::int2, 'available', e.amount))"
"  v(leg, bucket, amount))"
"SELECT i.item::int4, e.balance_after FROM e JOIN i ON i.transfer_id = e.transfer_id";

/*
 * credit_many()'s look-up of the items it did not write, in a new snapshot:
 * their keys were already used, by an earlier item of the call or by
 * another transaction (committed now, if it made the write statement
 * wait).  Each replays the credit under its key or is a mismatch.
 */
static const char *const credit_many_replay_sql =
"SELECT i.item, c.transfer_id, e.balance_after,"
" c.currency = i.currency AND c.amount = i.amount"
"  AND c.reference IS NOT DISTINCT FROM i.reference AND c.metadata = i.metadata"
" FROM ROWS FROM (unnest($1::int4[]), unnest($2::text[]), unnest($3::text[]), unnest($4::int8[]),"
"  unnest($5::text[]), unnest($6::text[]), unnest($7::jsonb[]))"
"  AS i(item, account_id, currency, amount, idempotency_key, reference, metadata)"
" JOIN withdrawal.credit c"
"  ON c.account_id = i.account_id AND c.idempotency_key = i.idempotency_key"
" JOIN withdrawal.ledger_entry e ON e.txn_id = c.txn_id AND e.leg = 2";

/*
 * Deconstructs a one-dimensional array argument of the expected length
 * (-1: any).  An optional array may be NULL: all its elements are.
 * Returns the length.
 */
static int
credit_many_array(FunctionCallInfo fcinfo, int argno, const char *argname,
				  Oid elemtype, int expected, bool optional,
				  Datum **elems, bool **nulls)
{
	ArrayType  *array;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			n;

	if (PG_ARGISNULL(argno))
	{
		if (!optional)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not be null", argname)));
		*elems = palloc0(sizeof(Datum) * Max(expected, 1));
		*nulls = palloc(sizeof(bool) * Max(expected, 1));
		memset(*nulls, true, sizeof(bool) * Max(expected, 1));
		return expected;
	}
	array = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", argname)));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(array, elemtype, typlen, typbyval, typalign, elems, nulls, &n);
	if (expected >= 0 && n != expected)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s has %d elements, account_ids has %d", argname, n, expected),
				 errhint("Give one element per item in every array.")));
	return n;
}

/* Names the item being checked in the errors of credit_many() */
static void
credit_many_error_context(void *arg)
{
	errcontext("item %d of credit_many()", *(int *) arg + 1);
}

/* 22023 for a NULL element of an array that must not have any */
static void
credit_many_require(bool isnull, const char *argname, int item)
{
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s[%d] must not be null", argname, item)));
}

/* What credit_many() returns for an item */
typedef struct CreditManyResult
{
	const char *result;			/* new, replayed, mismatched; NULL: not yet known */
	Datum		transfer_id;	/* 0: none */
	Datum		available;
} CreditManyResult;

/*
 * The first n items as the six array parameters $1..$6 of credit_many()'s
 * statements (account, currency, amount, key, reference, metadata).
 */
static void
credit_many_arrays(Datum *values, int n, Datum *accounts, Datum *currencies,
				   Datum *amounts, Datum *keys, Datum *references,
				   bool *references_null, Datum *metadata)
{
	int			one = 1;

	values[0] = PointerGetDatum(construct_array(accounts, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(currencies, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(amounts, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[3] = PointerGetDatum(construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[4] = PointerGetDatum(construct_md_array(references, references_null, 1, &n, &one,
												   TEXTOID, -1, false, TYPALIGN_INT));
	values[5] = PointerGetDatum(construct_array(metadata, n, JSONBOID, -1, false, TYPALIGN_INT));
}

/*
 * credit_many(account_ids, currencies, amounts, idempotency_keys,
 * references, metadata): credit() for many items in two statements,
 * returning (item, transfer_id, available, result) per item, in order,
 * where result is new, replayed or mismatched.  A mismatch, which credit()
 * raises as WD002, is reported and changes nothing, so that one bad item
 * does not stop a campaign's load; any bad input stops the whole call
 * before anything is written, and so does an overflow (22003).
 */
Datum
withdrawal_credit_many(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr write_plan = NULL;
	static SPIPlanPtr replay_plan = NULL;
	Oid			types[7] = {TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, JSONBARRAYOID, UUIDARRAYOID};
	Oid			replay_types[7] = {INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID};
	CreditManyResult *results;
	int			replays;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *accounts,
			   *currencies,
			   *amounts,
			   *keys,
			   *references,
			   *metadata;
	bool	   *accounts_null,
			   *currencies_null,
			   *amounts_null,
			   *keys_null,
			   *references_null,
			   *metadata_null;
	Datum	   *transfer_ids;
	Datum		values[7];
	Datum		empty_object;
	ErrorContextCallback item_context;
	int			n;
	int			i;
	uint64		row;

	n = credit_many_array(fcinfo, 0, "account_ids", TEXTOID, -1, false, &accounts, &accounts_null);
	if (n > CREDIT_MANY_MAX_ITEMS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("credit_many() takes at most %d items, got %d", CREDIT_MANY_MAX_ITEMS, n),
				 errhint("Split the load into several calls; each item's key makes a retry safe.")));
	credit_many_array(fcinfo, 1, "currencies", TEXTOID, n, false, &currencies, &currencies_null);
	credit_many_array(fcinfo, 2, "amounts", INT8OID, n, false, &amounts, &amounts_null);
	credit_many_array(fcinfo, 3, "idempotency_keys", TEXTOID, n, false, &keys, &keys_null);
	credit_many_array(fcinfo, 4, "references", TEXTOID, n, true, &references, &references_null);
	credit_many_array(fcinfo, 5, "metadata", JSONBOID, n, true, &metadata, &metadata_null);

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();

	/* every item is checked as credit() checks its arguments */
	empty_object = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	transfer_ids = palloc(sizeof(Datum) * Max(n, 1));
	item_context.callback = credit_many_error_context;
	item_context.arg = &i;
	item_context.previous = error_context_stack;
	error_context_stack = &item_context;
	for (i = 0; i < n; i++)
	{
		credit_many_require(accounts_null[i], "account_ids", i + 1);
		WithdrawalCheckIdentifier(WithdrawalCheckText(DatumGetTextPP(accounts[i]), "account_id",
													  WITHDRAWAL_MAX_ACCOUNT_ID),
								  "account_id");
		credit_many_require(currencies_null[i], "currencies", i + 1);
		WithdrawalCheckCurrency(WithdrawalCheckText(DatumGetTextPP(currencies[i]), "currency", 3));
		credit_many_require(amounts_null[i], "amounts", i + 1);
		WithdrawalCheckAmount(DatumGetInt64(amounts[i]), "amount");
		credit_many_require(keys_null[i], "idempotency_keys", i + 1);
		WithdrawalCheckIdentifier(WithdrawalCheckText(DatumGetTextPP(keys[i]), "idempotency_key",
													  WITHDRAWAL_MAX_KEY),
								  "idempotency_key");
		if (!references_null[i])
			(void) WithdrawalCheckText(DatumGetTextPP(references[i]), "reference",
									   WITHDRAWAL_MAX_REASON);
		if (metadata_null[i])
		{
			metadata[i] = empty_object;
			metadata_null[i] = false;
		}
		else
			WithdrawalCheckObject(DatumGetJsonbP(metadata[i]), "metadata");
		transfer_ids[i] = UUIDPGetDatum(WithdrawalNewUuid());
	}
	error_context_stack = item_context.previous;

	credit_many_arrays(values, n, accounts, currencies, amounts, keys,
					   references, references_null, metadata);
	values[6] = PointerGetDatum(construct_array(transfer_ids, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));

	WithdrawalPrepare(&write_plan, credit_many_sql, 7, types);
	if (WithdrawalExecuteMapped(write_plan, values, NULL, 0, SPI_OK_SELECT,
								overflow_error, lengthof(overflow_error)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("the credits would make the balance of a wallet overflow"),
				 errdetail("Balances are bigint minor units; available, held and paid out together must not exceed "
						   INT64_FORMAT ". Nothing was credited.", PG_INT64_MAX)));

	/* the items written: new, with the transfer id made for them */
	results = palloc0(sizeof(CreditManyResult) * Max(n, 1));
	for (row = 0; row < SPI_processed; row++)
	{
		bool		isnull;
		int			item = DatumGetInt32(WithdrawalSpiGet(row, 1, &isnull)) - 1;

		results[item].result = "new";
		results[item].transfer_id = transfer_ids[item];
		results[item].available = WithdrawalSpiGet(row, 2, &isnull);
	}

	/* the others replay or mismatch a credit made before */
	replays = n - (int) SPI_processed;
	if (replays > 0)
	{
		Datum		replay_values[7];
		Datum	   *items = palloc(sizeof(Datum) * replays);
		int			r = 0;

		for (i = 0; i < n; i++)
			if (results[i].result == NULL)
			{
				items[r] = Int32GetDatum(i + 1);
				accounts[r] = accounts[i];
				currencies[r] = currencies[i];
				amounts[r] = amounts[i];
				keys[r] = keys[i];
				references[r] = references[i];
				references_null[r] = references_null[i];
				metadata[r] = metadata[i];
				r++;
			}
		replay_values[0] = PointerGetDatum(construct_array(items, replays, INT4OID, 4, true, TYPALIGN_INT));
		credit_many_arrays(replay_values + 1, replays, accounts, currencies, amounts, keys,
						   references, references_null, metadata);
		WithdrawalPrepare(&replay_plan, credit_many_replay_sql, 7, replay_types);
		WithdrawalExecute(replay_plan, replay_values, NULL, false, 0, SPI_OK_SELECT);
		for (row = 0; row < SPI_processed; row++)
		{
			bool		isnull;
			int			item = DatumGetInt32(WithdrawalSpiGet(row, 1, &isnull)) - 1;

			if (DatumGetBool(WithdrawalSpiGet(row, 4, &isnull)))
			{
				results[item].result = "replayed";
				results[item].transfer_id = WithdrawalSpiGet(row, 2, &isnull);
				results[item].available = WithdrawalSpiGet(row, 3, &isnull);
			}
			else
				results[item].result = "mismatched";
		}
	}

	for (i = 0; i < n; i++)
	{
		Datum		out[4];
		bool		out_null[4] = {false, false, false, false};

		if (results[i].result == NULL)
			elog(ERROR, "credit_many() found no credit for item %d", i + 1);
		out[0] = Int32GetDatum(i + 1);
		out[1] = results[i].transfer_id;
		out[2] = results[i].available;
		out[3] = CStringGetTextDatum(results[i].result);
		out_null[1] = out_null[2] = (results[i].transfer_id == (Datum) 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, out_null);
	}
	SPI_finish();
	return (Datum) 0;
}
