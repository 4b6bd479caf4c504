/*-------------------------------------------------------------------------
 *
 * ledger.c
 *	  The double-entry ledger: credits, balances and the money movements of
 *	  withdrawals.  (The integrity checks of the books, check_invariants(),
 *	  are SQL: sql/install/15_invariants.sql.)
 *
 * Every movement is one ledger transaction of two entries that sum to
 * zero, written in the same statement as the update of the wallet row that
 * caches the balances, so the cache cannot drift from the ledger.  House
 * accounts (funding, clearing, settled) are sums of entries and never a
 * row that every transaction locks.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/ledger.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"

#include "args.h"
#include "audit.h"
#include "cache.h"
#include "indexscan.h"
#include "ledger.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_credit);
PG_FUNCTION_INFO_V1(withdrawal_balance);
PG_FUNCTION_INFO_V1(withdrawal_set_account);
PG_FUNCTION_INFO_V1(withdrawal_check_invariants);

/* Source and destination bucket of each movement, indexed by kind */
static const struct
{
	const char *name;
	const char *from;
	const char *to;
}			movements[] =
{
	[WITHDRAWAL_MOVE_CREDIT] = {"credit", "funding", "available"},
	[WITHDRAWAL_MOVE_DEBIT] = {"debit", "available", "held"},
	[WITHDRAWAL_MOVE_REFUND] = {"refund", "held", "available"},
	[WITHDRAWAL_MOVE_SETTLE] = {"settle", "held", "settled"},
	[WITHDRAWAL_MOVE_RETURN] = {"return", "settled", "available"},
	[WITHDRAWAL_MOVE_PARTIAL_RETURN] = {"partial_return", "settled", "available"},
};

/* Errors of the wallet update reported in the terms of the API */
static const int mapped_errors[] = {ERRCODE_CHECK_VIOLATION, ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE};

/*
 * WD007 for a wallet that does not exist; see ledger.h.
 */
void
WithdrawalRaiseUnknownWallet(const char *account_id, const char *currency)
{
	ereport(ERROR,
			(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
			 errmsg("unknown wallet of account \"%s\" in %s", account_id, currency)));
	pg_unreachable();
}

/*
 * The overflow error of every wallet update; see ledger.h.
 */
void
WithdrawalRaiseOverflow(const char *account_id, const char *currency)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("balance of account \"%s\" in %s would overflow", account_id, currency),
			 errdetail("Balances are bigint minor units; available, held and paid out together must not exceed "
					   INT64_FORMAT ".", PG_INT64_MAX)));
	pg_unreachable();
}

/*
 * Adds delta to the wallet's cached balance of a bucket; the house
 * bucket "funding" is not cached on the wallet.
 */
static void
bucket_delta(const char *bucket, int64 delta, int64 *available, int64 *held,
			 int64 *paid_out)
{
	if (strcmp(bucket, "available") == 0)
		*available = delta;
	else if (strcmp(bucket, "held") == 0)
		*held = delta;
	else if (strcmp(bucket, "settled") == 0)
		*paid_out = delta;
}

int64
WithdrawalPostMovement(WithdrawalMovement kind, const pg_uuid_t *withdrawal_id,
					   const char *account_id, const char *currency,
					   int64 amount)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[10] = {TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID,
	INT8OID, TEXTOID, TEXTOID, TEXTOID, UUIDOID};
	Datum		values[10];
	int64		available = 0,
				held = 0,
				paid_out = 0;
	bool		isnull;

	Assert(kind != WITHDRAWAL_MOVE_CREDIT);
	Assert(amount > 0);

	/*
	 * The wallet update and the two entries are one statement: the wallet
	 * row lock orders concurrent movements of the wallet, the CHECKs on the
	 * wallet refuse a negative balance, and ledger_entry_once refuses a
	 * second movement of the same kind for the withdrawal.
	 */
	WithdrawalPrepare(&plan,
					  "WITH w AS ("
					  " UPDATE withdrawal.wallet SET available = available + $3,"
					  "  held = held + $4, paid_out = paid_out + $5, updated_at = pg_catalog.now()"
					  " WHERE account_id = $1 AND currency = $2"
					  " RETURNING wallet_id, available, held, paid_out,"
					  "  pg_catalog.nextval('withdrawal.ledger_txn_seq') AS txn_id)"
					  "INSERT INTO withdrawal.ledger_entry"
					  " (txn_id, leg, kind, wallet_id, currency, bucket, amount, balance_after, withdrawal_id)"
					  " SELECT w.txn_id, v.leg, $7, w.wallet_id, $2, v.bucket, v.amount,"
					  "  CASE v.bucket WHEN 'available' THEN w.available WHEN 'held' THEN w.held"
					  "   WHEN 'settled' THEN w.paid_out END, $10"
					  " FROM w, (VALUES (1::int2, $8, -$6), (2::int2, $9, $6)) v(leg, bucket, amount)"
					  " RETURNING txn_id",
					  10, types);

	bucket_delta(movements[kind].from, -amount, &available, &held, &paid_out);
	bucket_delta(movements[kind].to, amount, &available, &held, &paid_out);

	values[0] = CStringGetTextDatum(account_id);
	values[1] = CStringGetTextDatum(currency);
	values[2] = Int64GetDatum(available);
	values[3] = Int64GetDatum(held);
	values[4] = Int64GetDatum(paid_out);
	values[5] = Int64GetDatum(amount);
	values[6] = CStringGetTextDatum(movements[kind].name);
	values[7] = CStringGetTextDatum(movements[kind].from);
	values[8] = CStringGetTextDatum(movements[kind].to);
	values[9] = UUIDPGetDatum(withdrawal_id);

	switch (WithdrawalExecuteMapped(plan, values, NULL, 0, SPI_OK_INSERT_RETURNING,
									mapped_errors, lengthof(mapped_errors)))
	{
		case 0:
			break;
		case ERRCODE_CHECK_VIOLATION:
			ereport(ERROR,
					(errcode(ERRCODE_WD_INSUFFICIENT_FUNDS),
					 errmsg("insufficient funds for %s of " INT64_FORMAT " %s",
							movements[kind].name, amount, currency),
					 errdetail("The %s balance of account \"%s\" is smaller than the amount.",
							   movements[kind].from, account_id)));
			break;
		default:
			WithdrawalRaiseOverflow(account_id, currency);
	}

	if (SPI_processed != 2)
		WithdrawalRaiseUnknownWallet(account_id, currency);
	return DatumGetInt64(WithdrawalSpiGet(0, 1, &isnull));
}

int64
WithdrawalPostPartialReturn(const pg_uuid_t *withdrawal_id, int64 amount)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {UUIDOID, INT8OID};
	Datum		values[2];

	Assert(amount > 0);

	/*
	 * The part is added to returned_amount (its CHECK refuses a sum past
	 * the amount, whoever writes it) before the money moves, in the same
	 * transaction.  The WHERE refuses a part that is not strictly less than
	 * what is left: the part that completes the return is the transition
	 * to returned, the once-only "return".
	 */
	WithdrawalPrepare(&plan,
					  "UPDATE withdrawal.withdrawal SET returned_amount = returned_amount + $2,"
					  " updated_at = pg_catalog.now()"
					  " WHERE withdrawal_id = $1 AND status = 'paid'"
					  "  AND returned_amount + $2 < amount"
					  " RETURNING account_id, currency",
					  2, types);
	values[0] = UUIDPGetDatum(withdrawal_id);
	values[1] = Int64GetDatum(amount);
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_UPDATE_RETURNING);
	/* the caller decided under the row lock; anything else is a bug */
	if (SPI_processed != 1)
		elog(ERROR, "partial return of withdrawal %s does not fit its status or amount",
			 WithdrawalUuidText(withdrawal_id));
	return WithdrawalPostMovement(WITHDRAWAL_MOVE_PARTIAL_RETURN, withdrawal_id,
								  WithdrawalSpiGetText(0, 1), WithdrawalSpiGetText(0, 2),
								  amount);
}

/*
 * WD002 for a credit whose key the account used with other parameters.
 */
static void
pg_attribute_noreturn()
raise_credit_mismatch(const char *key)
{
	ereport(ERROR,
			(errcode(ERRCODE_WD_IDEMPOTENCY_MISMATCH),
			 errmsg("idempotency key \"%s\" was already used for a different credit", key),
			 errdetail("Currency, amount, reference and metadata must match the first credit of the account with this key."),
			 errhint("Use a new idempotency key for a new credit.")));
	pg_unreachable();
}

/*
 * Returns (transfer_id, available, replayed) as a composite datum, copied
 * out of the SPI memory context that SPI_finish() is about to free.
 */
static Datum
credit_result(FunctionCallInfo fcinfo, Datum transfer_id, Datum available,
			  bool replayed)
{
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = transfer_id;
	values[1] = available;
	values[2] = BoolGetDatum(replayed);
	return SPI_datumTransfer(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)),
							 false, -1);
}

/*
 * A credit's parameters, as given or as first recorded under its key.
 */
typedef struct CreditParams
{
	const char *account_id;
	const char *currency;
	int64		amount;
	const char *reference;		/* NULL: none */
	Jsonb	   *metadata;
} CreditParams;

/*
 * Looks the account's key up through the credit table's unique index and,
 * when found, sets *result to the replay of the first credit: its
 * transfer id and the available balance its ledger entry left, or WD002
 * when the parameters differ.  Direct index fetches, like request()'s:
 * a kept plan made while the tables were empty (a VACUUM ANALYZE after the
 * install) would scan them whole at every call of a bulk load.
 */
static bool
credit_find(FunctionCallInfo fcinfo, const char *key, const CreditParams *given,
			Datum *result)
{
	static const char *const credit_columns[] = {
		"transfer_id", "currency", "amount", "reference", "metadata", "txn_id"
	};
	static const char *const entry_columns[] = {"balance_after"};
	Datum		values[lengthof(credit_columns)];
	bool		nulls[lengthof(credit_columns)];
	Datum		available;
	bool		available_null;
	Datum		keys[2];
	bool		same;

	keys[0] = CStringGetTextDatum(given->account_id);
	keys[1] = CStringGetTextDatum(key);
	if (!WithdrawalIndexFetch("credit", WITHDRAWAL_INDEX_CREDIT_KEY, 2, keys,
							  lengthof(credit_columns), credit_columns, values, nulls))
		return false;

	same = strcmp(TextDatumGetCString(values[1]), given->currency) == 0 &&
		DatumGetInt64(values[2]) == given->amount &&
		(nulls[3] ? given->reference == NULL :
		 given->reference != NULL &&
		 strcmp(TextDatumGetCString(values[3]), given->reference) == 0) &&
		DatumGetBool(DirectFunctionCall2(jsonb_eq, values[4],
										 JsonbPGetDatum(given->metadata)));
	if (!same)
		raise_credit_mismatch(key);

	/* leg 2 of the credit's ledger transaction is the wallet's own */
	keys[0] = values[5];
	keys[1] = Int16GetDatum(2);
	if (!WithdrawalIndexFetch("ledger_entry", WITHDRAWAL_INDEX_LEDGER_ENTRY_PKEY, 2, keys,
							  1, entry_columns, &available, &available_null) ||
		available_null)
		elog(ERROR, "credit %s has no ledger entry for its wallet",
			 WithdrawalUuidText(DatumGetUUIDP(values[0])));
	*result = credit_result(fcinfo, values[0], available, true);
	return true;
}

/*
 * credit()'s write statement.  The DO UPDATE's WHERE is true
 * whenever it can be computed: it is there for the int8 arithmetic, which
 * raises 22003 when the wallet's three buckets would no longer add up to a
 * bigint; the wallet row lock makes that check and the update one step.
 */
static const char *const credit_sql =
"WITH c AS ("
" INSERT INTO withdrawal.credit"
"  (transfer_id, idempotency_key, account_id, currency, amount, reference, metadata, txn_id)"
" VALUES ($1, $2, $3, $4, $5, $6, $7, pg_catalog.nextval('withdrawal.ledger_txn_seq'))"
" ON CONFLICT (account_id, idempotency_key) DO NOTHING"
" RETURNING txn_id),"
"a AS ("
" INSERT INTO withdrawal.account (account_id) SELECT $3 FROM c"
" ON CONFLICT (account_id) DO NOTHING),"
"w AS ("
" INSERT INTO withdrawal.wallet AS w (account_id, currency, available) SELECT $3, $4, $5 FROM c"
" ON CONFLICT (account_id, currency) DO UPDATE"
"  SET available = w.available + excluded.available, updated_at = pg_catalog.now()"
"  WHERE w.available + excluded.available + w.held + w.paid_out > 0"
" RETURNING wallet_id, available),"
"l AS ("
" INSERT INTO withdrawal.ledger_entry"
"  (txn_id, leg, kind, wallet_id, currency, bucket, amount, balance_after, credit_id)"
" SELECT c.txn_id, v.leg, 'credit', w.wallet_id, $4, v.bucket, v.amount,"
"  CASE v.bucket WHEN 'available' THEN w.available END, $1"
" FROM c, w, (VALUES (1::int2, 'funding', -$5), (2::int2, 'available', $5)) v(leg, bucket, amount))"
"SELECT w.available FROM w";

/*
 * credit(account_id, currency, amount, idempotency_key, reference, metadata)
 *
 * Like request(), the write starts with INSERT ... ON CONFLICT DO NOTHING on
 * the idempotency key and every other part depends on it: a concurrent
 * call with the same key waits for the first to commit, changes nothing,
 * and replays.  No lock is taken per key, so a transaction may credit any
 * number of rewards.  Keys are scoped per account, like request()'s.
 *
 * A credit that would make available + held + paid_out exceed bigint is
 * refused (22003): money only moves between those three buckets
 * afterwards, so no later debit, settlement or return can overflow.
 */
Datum
withdrawal_credit(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr post_plan = NULL;
	Oid			post_types[7] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID, JSONBOID};
	CreditParams given;
	char	   *key;
	pg_uuid_t  *transfer_id;
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Datum		result;
	bool		isnull;

	given.account_id = WithdrawalArgIdentifier(fcinfo, 0, "account_id", WITHDRAWAL_MAX_ACCOUNT_ID);
	given.amount = WithdrawalArgAmount(fcinfo, 2, "amount");
	key = WithdrawalArgIdentifier(fcinfo, 3, "idempotency_key", WITHDRAWAL_MAX_KEY);
	given.reference = WithdrawalArgTextOrNull(fcinfo, 4, "reference", WITHDRAWAL_MAX_REASON);
	given.metadata = WithdrawalArgObject(fcinfo, 5, "metadata");

	SPI_connect();
	given.currency = WithdrawalArgCurrency(fcinfo, 1);

	if (credit_find(fcinfo, key, &given, &result))
	{
		SPI_finish();
		PG_RETURN_DATUM(result);
	}

	/*
	 * One statement (credit_sql): record the credit under its key, create
	 * the account and wallet on first use, add to the wallet unless the
	 * buckets would overflow, and post the ledger transaction.  When the key
	 * was taken meanwhile, nothing but the key check happens.
	 */
	WithdrawalPrepare(&post_plan, credit_sql, 7, post_types);

	transfer_id = WithdrawalNewUuid();
	values[0] = UUIDPGetDatum(transfer_id);
	values[1] = CStringGetTextDatum(key);
	values[2] = CStringGetTextDatum(given.account_id);
	values[3] = CStringGetTextDatum(given.currency);
	values[4] = Int64GetDatum(given.amount);
	values[5] = given.reference ? CStringGetTextDatum(given.reference) : (Datum) 0;
	nulls[5] = given.reference ? ' ' : 'n';
	values[6] = JsonbPGetDatum(given.metadata);
	if (WithdrawalExecuteMapped(post_plan, values, nulls, 0, SPI_OK_SELECT,
								&mapped_errors[1], 1) != 0)
		WithdrawalRaiseOverflow(given.account_id, given.currency);

	if (SPI_processed == 0)
	{
		/* the key was committed by a concurrent call; this statement sees it */
		if (!credit_find(fcinfo, key, &given, &result))
			elog(ERROR, "credit key conflict without a visible credit");
		SPI_finish();
		PG_RETURN_DATUM(result);
	}
	result = credit_result(fcinfo, UUIDPGetDatum(transfer_id),
						   WithdrawalSpiGet(0, 1, &isnull), false);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * balance(account_id, currency): WD007 for a wallet that does not exist.
 */
Datum
withdrawal_balance(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	TupleDesc	tupdesc;
	Datum		result[3];
	bool		nulls[3] = {false, false, false};
	char	   *account_id;
	char	   *currency;
	int			i;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	account_id = WithdrawalArgIdentifier(fcinfo, 0, "account_id", WITHDRAWAL_MAX_ACCOUNT_ID);

	SPI_connect();
	currency = WithdrawalArgCurrency(fcinfo, 1);
	WithdrawalPrepare(&plan,
					  "SELECT available, held, paid_out FROM withdrawal.wallet"
					  " WHERE account_id = $1 AND currency = $2",
					  2, types);
	values[0] = CStringGetTextDatum(account_id);
	values[1] = CStringGetTextDatum(currency);
	WithdrawalExecute(plan, values, NULL, true, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		WithdrawalRaiseUnknownWallet(account_id, currency);
	for (i = 0; i < 3; i++)
		result[i] = WithdrawalSpiGet(0, i + 1, &nulls[i]);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), result, nulls)));
}

/*
 * set_account(account_id, kyc_level, frozen): creates the account when
 * needed, so that KYC can be recorded before the first credit; NULL leaves
 * a field unchanged.  Audited with the values before and after.
 */
Datum
withdrawal_set_account(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {TEXTOID, INT4OID, BOOLOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	char	   *account_id;
	Jsonb	   *detail;
	bool		isnull;

	account_id = WithdrawalArgIdentifier(fcinfo, 0, "account_id", WITHDRAWAL_MAX_ACCOUNT_ID);
	if (!PG_ARGISNULL(1) && PG_GETARG_INT32(1) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("kyc_level must not be negative")));

	SPI_connect();
	WithdrawalPrepare(&plan,
					  "WITH old AS (SELECT kyc_level, frozen FROM withdrawal.account"
					  "  WHERE account_id = $1 FOR UPDATE),"
					  "new AS ("
					  " INSERT INTO withdrawal.account AS a (account_id, kyc_level, frozen)"
					  " VALUES ($1, coalesce($2, 0), coalesce($3, false))"
					  " ON CONFLICT (account_id) DO UPDATE"
					  "  SET kyc_level = coalesce($2, a.kyc_level), frozen = coalesce($3, a.frozen),"
					  "      updated_at = pg_catalog.now()"
					  " RETURNING kyc_level, frozen)"
					  "SELECT pg_catalog.jsonb_build_object("
					  " 'before', (SELECT pg_catalog.to_jsonb(old) FROM old),"
					  " 'after', (SELECT pg_catalog.to_jsonb(new) FROM new))",
					  3, types);
	values[0] = CStringGetTextDatum(account_id);
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	WithdrawalExecute(plan, values, nulls, false, 0, SPI_OK_SELECT);
	detail = DatumGetJsonbP(WithdrawalSpiGet(0, 1, &isnull));
	WithdrawalAudit("set_account", NULL, NULL, account_id, NULL, NULL, detail);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * check_invariants() is SQL from 1.1.0 on (sql/install/15_invariants.sql).
 * The symbol stays because 1.0.0's install script declares the function in
 * C and CREATE FUNCTION looks the symbol up; only a database not updated
 * yet calls it, and gets the version check's 55000.
 */
Datum
withdrawal_check_invariants(PG_FUNCTION_ARGS)
{
	SPI_connect();
	/* raises 55000 when the database's extension version differs */
	WithdrawalExecuteFreshPlan("SELECT", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	SPI_finish();
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("withdrawal.check_invariants() is an SQL function in this version of the extension"),
			 errhint("Run ALTER EXTENSION withdrawal UPDATE.")));
	return (Datum) 0;			/* keep the compiler quiet */
}
