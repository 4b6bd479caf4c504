/*-------------------------------------------------------------------------
 *
 * request.c
 *	  Withdrawal requests: request(), cancel() and get().
 *
 * request() does everything in the caller's transaction with three index
 * lookups (the idempotency key, the account and its wallet; a fourth, the
 * payout method, only when the destination names one) and one write
 * statement that inserts the withdrawal, debits the wallet, posts the
 * ledger entries, queues the outbox row and appends the audit row.  The
 * write starts with INSERT ... ON CONFLICT DO NOTHING on the idempotency
 * key and every other part depends on that insert, so a concurrent call
 * with the same key waits for the first to commit and then changes
 * nothing; it then replays the first call's result.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/request.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "args.h"
#include "cache.h"
#include "channel.h"
#include "events.h"
#include "indexscan.h"
#include "ledger.h"
#include "lifecycle.h"
#include "policy.h"
#include "shmem.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_request);
PG_FUNCTION_INFO_V1(withdrawal_cancel);
PG_FUNCTION_INFO_V1(withdrawal_get);

#define MAX_DEVICE_ID 128
#define MAX_CHANNEL_NAME (NAMEDATALEN - 1)

/* What request() reads before it decides */
typedef struct PreRead
{
	bool		key_found;		/* the idempotency key is taken */
	bool		same_parameters;	/* ... by a request with our parameters */
	Datum		withdrawal_id;
	char	   *status;
	bool		account_found;
	bool		frozen;
	int32		kyc_level;
	bool		wallet_found;
} PreRead;

/*
 * Returns the string member "key" of a JSON object, or NULL when absent or
 * JSON null; any other type, or a string longer than maxbytes, is 22023.
 */
static char *
context_string(Jsonb *context, const char *key, int maxbytes)
{
	JsonbValue	k;
	JsonbValue *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&context->root, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("context.%s must be a JSON string", key)));
	if (v->val.string.len == 0 || v->val.string.len > maxbytes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("context.%s must have 1 to %d bytes", key, maxbytes)));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * Returns context.ip in canonical form (see WithdrawalCanonicalIp), or NULL.
 */
static char *
context_ip(Jsonb *context)
{
	char	   *ip = context_string(context, "ip", 64);

	return ip ? WithdrawalCanonicalIp(ip, true, "context.ip") : NULL;
}

/*
 * Returns the payout method a destination names, or NULL for a free
 * destination.  A destination naming a method has the one member
 * method_id, a UUID in its canonical text form; one that mixes it with
 * other members is 22023 rather than a free destination that happens to
 * carry a method id.  A member lookup in the binary object: free
 * destinations pay nothing else for payout methods.
 */
static pg_uuid_t *
destination_method(Jsonb *destination)
{
	JsonbValue	k;
	JsonbValue *v;
	char	   *text;
	int			i;

	k.type = jbvString;
	k.val.string.val = "method_id";
	k.val.string.len = strlen("method_id");
	v = findJsonbValueFromContainer(&destination->root, JB_FOBJECT, &k);
	if (v == NULL)
		return NULL;
	if (JB_ROOT_COUNT(destination) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("destination.method_id must be the only member of destination"),
				 errdetail("A request pays either to a payout method or to a destination of its own.")));
	if (v->type != jbvString || v->val.string.len != UUID_LEN * 2 + 4)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("destination.method_id must be a UUID as a JSON string")));
	text = pnstrdup(v->val.string.val, v->val.string.len);
	/* uuid_in() takes other spellings too, and fails with 22P02 */
	for (i = 0; text[i]; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? text[i] != '-' : !isxdigit((unsigned char) text[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("destination.method_id must be a UUID as a JSON string")));
	return DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(text)));
}

/*
 * Replaces a method id by the method's destination, with one fetch through
 * the primary key.  Another account's or channel's method, and a removed
 * one, are unknown alike (WD007), so that a caller learns nothing about
 * methods that are not the account's; a pending one breaks the rule that
 * ops verify a method before it is paid to (WD003).
 */
static void
resolve_method(WithdrawalRequestData *req)
{
	static const char *const columns[] = {
		"account_id", "channel", "destination", "status", "verified_at"
	};
	Datum		values[lengthof(columns)];
	bool		nulls[lengthof(columns)];
	Datum		key = UUIDPGetDatum(req->method_id);
	char	   *status = NULL;

	if (WithdrawalIndexFetch("payout_method", WITHDRAWAL_INDEX_PAYOUT_METHOD_PKEY, 1, &key,
							 lengthof(columns), columns, values, nulls))
		status = TextDatumGetCString(values[3]);
	if (status == NULL ||
		strcmp(status, "removed") == 0 ||
		strcmp(TextDatumGetCString(values[0]), req->account_id) != 0 ||
		strcmp(TextDatumGetCString(values[1]), req->channel) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
				 errmsg("unknown payout method %s", WithdrawalUuidText(req->method_id)),
				 errdetail("A request names a payout method of its own account and channel that was not removed.")));
	if (strcmp(status, "verified") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WD_POLICY_VIOLATION),
				 errmsg("payout method %s is not verified", WithdrawalUuidText(req->method_id)),
				 errhint("Ops verify a payout method with verify_payout_method().")));
	req->destination = DatumGetJsonbP(values[2]);
	req->method_verified_at = DatumGetTimestampTz(values[4]);
}

/* request()'s write statement (see withdrawal_request) */
static const char *const write_sql =
"WITH w AS ("
" INSERT INTO withdrawal.withdrawal (withdrawal_id, idempotency_key, account_id,"
"  currency, amount, channel, destination, context, device_id, ip, status, reason,"
"  requested_by, method_id)"
" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::inet, $11, $12, $13, $15)"
" ON CONFLICT (account_id, idempotency_key) DO NOTHING"
" RETURNING withdrawal_id),"
"d AS ("
" UPDATE withdrawal.wallet SET available = available - $5, held = held + $5,"
"  updated_at = pg_catalog.now()"
" WHERE account_id = $3 AND currency = $4 AND available >= $5 AND $14"
"  AND EXISTS (SELECT FROM w)"
" RETURNING wallet_id, available, held,"
"  pg_catalog.nextval('withdrawal.ledger_txn_seq') AS txn_id),"
"l AS ("
" INSERT INTO withdrawal.ledger_entry"
"  (txn_id, leg, kind, wallet_id, currency, bucket, amount, balance_after, withdrawal_id)"
" SELECT d.txn_id, v.leg, 'debit', d.wallet_id, $4, v.bucket, v.amount,"
"  CASE v.leg WHEN 1 THEN d.available ELSE d.held END, $1"
" FROM d, (VALUES (1::int2, 'available', -$5), (2::int2, 'held', $5)) v(leg, bucket, amount)),"
"o AS ("
" INSERT INTO withdrawal.outbox (withdrawal_id, channel)"
" SELECT $1, $6 FROM d WHERE $11 = 'queued'),"
"e AS ("
" INSERT INTO withdrawal.status_event (withdrawal_id, status) SELECT $1, $11 FROM w),"
"a AS ("
" INSERT INTO withdrawal.audit_log (actor, action, withdrawal_id, account_id,"
"  after_status, detail)"
" SELECT $13, 'request', $1, $3, $11, pg_catalog.jsonb_build_object("
"  'amount', $5, 'currency', $4, 'channel', $6, 'reason', $12)"
"  OPERATOR(pg_catalog.||) CASE WHEN $15 IS NULL THEN '{}'::jsonb"
"   ELSE pg_catalog.jsonb_build_object('method_id', $15) END FROM w)"
"SELECT (SELECT count(*) FROM w), (SELECT count(*) FROM d)";

/*
 * Returns (withdrawal_id, status, replayed), copied into the caller's
 * memory context: callers return it after SPI_finish(), which frees the
 * SPI procedure context where it is built.
 */
static Datum
request_result(FunctionCallInfo fcinfo, Datum id, const char *status, bool replayed)
{
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = id;
	values[1] = CStringGetTextDatum(status);
	values[2] = BoolGetDatum(replayed);
	return SPI_datumTransfer(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)),
							 false, -1);
}

/*
 * Reads the idempotency key (the account's own: keys are scoped per
 * account, so another account cannot squat on a key), the account and the
 * wallet through their unique indexes.  A fresh snapshot each time, so
 * that after waiting on a concurrent insert of the same key we see it
 * committed.
 */
static void
pre_read(const char *key, const WithdrawalRequestData *req, PreRead *pr)
{
	static const char *const withdrawal_columns[] = {
		"withdrawal_id", "status", "account_id", "currency", "amount", "channel", "destination",
		"method_id"
	};
	static const char *const account_columns[] = {"frozen", "kyc_level"};
	Datum		values[lengthof(withdrawal_columns)];
	bool		nulls[lengthof(withdrawal_columns)];
	Datum		keys[2];

	memset(pr, 0, sizeof(*pr));

	keys[0] = CStringGetTextDatum(req->account_id);
	keys[1] = CStringGetTextDatum(key);
	pr->key_found = WithdrawalIndexFetch("withdrawal", WITHDRAWAL_INDEX_WITHDRAWAL_KEY, 2, keys,
										 lengthof(withdrawal_columns),
										 withdrawal_columns, values, nulls);
	if (pr->key_found)
	{
		pr->withdrawal_id = values[0];
		pr->status = TextDatumGetCString(values[1]);
		pr->same_parameters =
			strcmp(TextDatumGetCString(values[2]), req->account_id) == 0 &&
			strcmp(TextDatumGetCString(values[3]), req->currency) == 0 &&
			DatumGetInt64(values[4]) == req->amount &&
			strcmp(TextDatumGetCString(values[5]), req->channel) == 0;

		/*
		 * A request by method id stored the method's destination as it was
		 * then: the method id is what it passed, and what is compared.
		 */
		if (!pr->same_parameters)
			;
		else if (req->method_id != NULL)
			pr->same_parameters = !nulls[7] &&
				memcmp(DatumGetUUIDP(values[7]), req->method_id, UUID_LEN) == 0;
		else
			pr->same_parameters = nulls[7] &&
				DatumGetBool(DirectFunctionCall2(jsonb_eq, values[6],
												 JsonbPGetDatum(req->destination)));
		return;
	}

	keys[0] = CStringGetTextDatum(req->account_id);
	pr->account_found = WithdrawalIndexFetch("account", WITHDRAWAL_INDEX_ACCOUNT_PKEY, 1, keys,
											 lengthof(account_columns), account_columns,
											 values, nulls);
	if (!pr->account_found)
		return;
	pr->frozen = DatumGetBool(values[0]);
	pr->kyc_level = DatumGetInt32(values[1]);

	keys[1] = CStringGetTextDatum(req->currency);
	pr->wallet_found = WithdrawalIndexFetch("wallet", WITHDRAWAL_INDEX_WALLET_KEY, 2, keys,
											0, NULL, values, nulls);
}

/*
 * When the key is taken: the replay result, or WD002.
 */
static Datum
replay(FunctionCallInfo fcinfo, const char *key, const PreRead *pr)
{
	if (!pr->same_parameters)
		ereport(ERROR,
				(errcode(ERRCODE_WD_IDEMPOTENCY_MISMATCH),
				 errmsg("idempotency key \"%s\" was already used for a different withdrawal", key),
				 errdetail("Currency, amount, channel and destination must match the first request of the account with this key."),
				 errhint("Use a new idempotency key for a new withdrawal.")));
	return request_result(fcinfo, pr->withdrawal_id, pr->status, true);
}

/*
 * request(account_id, currency, amount, channel, destination,
 *		   idempotency_key, context)
 */
Datum
withdrawal_request(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr write_plan = NULL;
	static const int overflow = ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE;
	Oid			types[15] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID,
		JSONBOID, JSONBOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, NAMEOID, BOOLOID, UUIDOID};
	Datum		values[15];
	char		nulls[15];
	WithdrawalRequestData req;
	WithdrawalRiskDecision decision;
	PreRead		pr;
	const char *status;
	char	   *key;
	pg_uuid_t  *id;
	NameData	actor;
	bool		isnull;
	bool		debit;
	Datum		result;

	memset(&req, 0, sizeof(req));
	req.account_id = WithdrawalArgIdentifier(fcinfo, 0, "account_id", WITHDRAWAL_MAX_ACCOUNT_ID);
	req.amount = WithdrawalArgAmount(fcinfo, 2, "amount");
	req.channel = WithdrawalArgText(fcinfo, 3, "channel", MAX_CHANNEL_NAME);
	req.destination = WithdrawalArgObject(fcinfo, 4, "destination");
	req.method_id = destination_method(req.destination);
	key = WithdrawalArgIdentifier(fcinfo, 5, "idempotency_key", WITHDRAWAL_MAX_KEY);
	req.context = WithdrawalArgObject(fcinfo, 6, "context");
	req.device_id = context_string(req.context, "device_id", MAX_DEVICE_ID);
	if (req.device_id)
		WithdrawalCheckIdentifier(req.device_id, "context.device_id");
	req.ip = context_ip(req.context);

	SPI_connect();
	req.currency = WithdrawalArgCurrency(fcinfo, 1);

	pre_read(key, &req, &pr);
	if (pr.key_found)
	{
		result = replay(fcinfo, key, &pr);
		SPI_finish();
		PG_RETURN_DATUM(result);
	}
	if (!pr.wallet_found)
		ereport(ERROR,
				(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
				 errmsg("unknown wallet of account \"%s\" in %s", req.account_id, req.currency),
				 errhint("A wallet is created by its first credit.")));
	if (pr.frozen)
		ereport(ERROR,
				(errcode(ERRCODE_WD_ACCOUNT_FROZEN),
				 errmsg("account \"%s\" is frozen", req.account_id)));
	req.kyc_level = pr.kyc_level;
	if (req.method_id != NULL)
		resolve_method(&req);

	WithdrawalChannelCheck(&req);
	WithdrawalPolicyScreen(&req, &decision);
	switch (decision.outcome)
	{
		case WITHDRAWAL_RISK_ACCEPT:
			status = "queued";
			debit = true;
			break;
		case WITHDRAWAL_RISK_REVIEW:
			status = "review";
			debit = true;
			break;
		case WITHDRAWAL_RISK_REJECT:
		default:
			status = "rejected";
			debit = false;
			break;
	}

	/*
	 * ON CONFLICT names the key's unique index (a target-less ON CONFLICT
	 * would probe the primary key too, a few percent of the request's CPU).
	 */
	WithdrawalPrepare(&write_plan, write_sql, 15, types);

	id = WithdrawalNewAccountUuid(req.account_id);
	namestrcpy(&actor, WithdrawalActor());
	memset(nulls, ' ', sizeof(nulls));
	values[0] = UUIDPGetDatum(id);
	values[1] = CStringGetTextDatum(key);
	values[2] = CStringGetTextDatum(req.account_id);
	values[3] = CStringGetTextDatum(req.currency);
	values[4] = Int64GetDatum(req.amount);
	values[5] = CStringGetTextDatum(req.channel);
	values[6] = JsonbPGetDatum(req.destination);
	values[7] = JsonbPGetDatum(req.context);
	values[8] = req.device_id ? CStringGetTextDatum(req.device_id) : (Datum) 0;
	nulls[8] = req.device_id ? ' ' : 'n';
	values[9] = req.ip ? CStringGetTextDatum(req.ip) : (Datum) 0;
	nulls[9] = req.ip ? ' ' : 'n';
	values[10] = CStringGetTextDatum(status);
	values[11] = decision.reason ? CStringGetTextDatum(decision.reason) : (Datum) 0;
	nulls[11] = decision.reason ? ' ' : 'n';
	values[12] = NameGetDatum(&actor);
	values[13] = BoolGetDatum(debit);
	values[14] = req.method_id ? UUIDPGetDatum(req.method_id) : (Datum) 0;
	nulls[14] = req.method_id ? ' ' : 'n';

	/*
	 * credit() keeps a wallet's buckets within bigint together, so the debit
	 * cannot overflow held; a wallet written by an older version might, and
	 * its error must not show the client this statement.
	 */
	if (WithdrawalExecuteMapped(write_plan, values, nulls, 1, SPI_OK_SELECT,
								&overflow, 1) != 0)
		WithdrawalRaiseOverflow(req.account_id, req.currency);

	if (DatumGetInt64(WithdrawalSpiGet(0, 1, &isnull)) == 0)
	{
		/*
		 * A concurrent request with the same key committed between our read
		 * and our insert; this statement sees it.
		 */
		pre_read(key, &req, &pr);
		if (!pr.key_found)
			elog(ERROR, "idempotency key conflict without a visible withdrawal");
		result = replay(fcinfo, key, &pr);
		SPI_finish();
		PG_RETURN_DATUM(result);
	}
	if (debit && DatumGetInt64(WithdrawalSpiGet(0, 2, &isnull)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WD_INSUFFICIENT_FUNDS),
				 errmsg("insufficient funds"),
				 errdetail("The available balance of account \"%s\" in %s is less than " INT64_FORMAT ".",
						   req.account_id, req.currency, req.amount)));

	/*
	 * Last, so that a request that replays or fails for funds takes no
	 * slot, and the counter's row lock is held as briefly as the caller's
	 * transaction allows.
	 */
	if (debit)
		WithdrawalChannelTakeCap(&req);

	WithdrawalStatusNotify(id, status);
	if (strcmp(status, "queued") == 0)
		WithdrawalWakeWorkersAtCommit();
	result = request_result(fcinfo, UUIDPGetDatum(id), status, false);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * cancel(withdrawal_id, reason): the user withdraws a request that has not
 * been dispatched (review or queued); the funds are refunded.
 */
Datum
withdrawal_cancel(PG_FUNCTION_ARGS)
{
	WithdrawalTransitionData data;
	pg_uuid_t  *id;

	id = WithdrawalArgUuid(fcinfo, 0, "withdrawal_id");
	memset(&data, 0, sizeof(data));
	data.reason = WithdrawalArgTextOrNull(fcinfo, 1, "reason", WITHDRAWAL_MAX_REASON);
	data.action = "cancel";

	SPI_connect();
	WithdrawalTransition(id, WITHDRAWAL_CANCELED, &data, NULL);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text("canceled"));
}

/*
 * get(withdrawal_id): the row of the withdrawals view; WD007 when unknown.
 */
Datum
withdrawal_get(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	pg_uuid_t  *id;
	Datum		result;

	id = WithdrawalArgUuid(fcinfo, 0, "withdrawal_id");
	SPI_connect();
	WithdrawalSelectWithdrawal(&plan,
							   "SELECT * FROM withdrawal.withdrawals WHERE withdrawal_id = $1",
							   id, true, false);
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();
	PG_RETURN_DATUM(result);
}
