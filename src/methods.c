/*-------------------------------------------------------------------------
 *
 * methods.c
 *	  Payout methods: add_payout_method(), verify_payout_method() and
 *	  remove_payout_method().
 *
 * A payout method binds a destination to an account and a channel, so that
 * request() can be given {"method_id": ...} instead of a destination: a
 * stolen application session then pays only to destinations the account
 * bound earlier and ops verified (docs/security.md).  request() resolves
 * the method itself (request.c); this file only maintains the registry.
 * Every change appends an audit row in the same statement.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/methods.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "args.h"
#include "indexscan.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_add_payout_method);
PG_FUNCTION_INFO_V1(withdrawal_verify_payout_method);
PG_FUNCTION_INFO_V1(withdrawal_remove_payout_method);

#define MAX_CHANNEL_NAME (NAMEDATALEN - 1)
#define MAX_LABEL 128
#define MAX_DESTINATION 2048	/* bytes of its text form; the table's CHECK */

static void
raise_unknown_method(const pg_uuid_t *id)
{
	ereport(ERROR,
			(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
			 errmsg("unknown payout method %s", WithdrawalUuidText(id))));
}

/*
 * add_payout_method(account_id, channel, destination, label): a pending
 * method.  The same live destination of the account on the channel returns
 * the method it already is (whatever its label and status), so that an
 * application may retry the call; a removed one is bound anew.
 */
Datum
withdrawal_add_payout_method(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr insert_plan = NULL;
	static SPIPlanPtr find_plan = NULL;
	Oid			types[6] = {UUIDOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, NAMEOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	char	   *account_id;
	char	   *channel;
	Jsonb	   *destination;
	char	   *label;
	JsonbValue	k;
	NameData	actor;
	Datum		keys[1];
	pg_uuid_t  *id;
	bool		isnull;
	Datum		result;

	account_id = WithdrawalArgIdentifier(fcinfo, 0, "account_id", WITHDRAWAL_MAX_ACCOUNT_ID);
	channel = WithdrawalArgText(fcinfo, 1, "channel", MAX_CHANNEL_NAME);
	destination = WithdrawalArgObject(fcinfo, 2, "destination");
	label = WithdrawalArgTextOrNull(fcinfo, 3, "label", MAX_LABEL);

	/* request() would read such a destination as a reference to a method */
	k.type = jbvString;
	k.val.string.val = "method_id";
	k.val.string.len = strlen("method_id");
	if (findJsonbValueFromContainer(&destination->root, JB_FOBJECT, &k) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("destination must not have a member method_id")));
	if (strlen(JsonbToCString(NULL, &destination->root, VARSIZE(destination))) > MAX_DESTINATION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("destination is too long"),
				 errdetail("Its JSON text may have at most %d bytes.", MAX_DESTINATION)));

	SPI_connect();
	keys[0] = CStringGetTextDatum(account_id);
	if (!WithdrawalIndexFetch("account", WITHDRAWAL_INDEX_ACCOUNT_PKEY, 1, keys, 0, NULL, NULL, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
				 errmsg("unknown account \"%s\"", account_id),
				 errhint("An account is created by its first credit or by set_account().")));
	keys[0] = CStringGetTextDatum(channel);
	if (!WithdrawalIndexFetch("channel", WITHDRAWAL_INDEX_CHANNEL_PKEY, 1, keys, 0, NULL, NULL, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
				 errmsg("unknown channel \"%s\"", channel)));

	WithdrawalPrepare(&insert_plan,
					  "WITH m AS ("
					  " INSERT INTO withdrawal.payout_method"
					  "  (method_id, account_id, channel, destination, label)"
					  " VALUES ($1, $2, $3, $4, $5)"
					  " ON CONFLICT (account_id, channel, pg_catalog.md5(destination::text))"
					  "  WHERE status OPERATOR(pg_catalog.<>) 'removed' DO NOTHING"
					  " RETURNING method_id),"
					  "a AS ("
					  " INSERT INTO withdrawal.audit_log (actor, action, account_id, after_status, detail)"
					  " SELECT $6, 'method_add', $2, 'pending', pg_catalog.jsonb_build_object("
					  "  'method_id', $1, 'channel', $3, 'destination', $4, 'label', $5) FROM m)"
					  "SELECT count(*) FROM m",
					  6, types);
	id = WithdrawalNewAccountUuid(account_id);
	namestrcpy(&actor, WithdrawalActor());
	values[0] = UUIDPGetDatum(id);
	values[1] = CStringGetTextDatum(account_id);
	values[2] = CStringGetTextDatum(channel);
	values[3] = JsonbPGetDatum(destination);
	values[4] = label ? CStringGetTextDatum(label) : (Datum) 0;
	nulls[4] = label ? ' ' : 'n';
	values[5] = NameGetDatum(&actor);
	WithdrawalExecute(insert_plan, values, nulls, false, 1, SPI_OK_SELECT);
	if (DatumGetInt64(WithdrawalSpiGet(0, 1, &isnull)) == 1)
		result = UUIDPGetDatum(id);
	else
	{
		/*
		 * The destination is bound already, maybe by a concurrent call that
		 * we waited for: this statement's snapshot sees it.
		 */
		WithdrawalPrepare(&find_plan,
						  "SELECT method_id FROM withdrawal.payout_method"
						  " WHERE account_id = $2 AND channel = $3"
						  " AND pg_catalog.md5(destination::text) = pg_catalog.md5($4::text)"
						  " AND status OPERATOR(pg_catalog.<>) 'removed'",
						  6, types);
		WithdrawalExecute(find_plan, values, nulls, false, 1, SPI_OK_SELECT);
		if (SPI_processed != 1)
			elog(ERROR, "payout method conflict without a visible method");
		result = WithdrawalSpiGet(0, 1, &isnull);
	}
	result = SPI_datumTransfer(result, false, UUID_LEN);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * Runs a status change of one payout method: change_sql takes the method
 * id ($1) and the actor ($2), writes its audit row and answers how many
 * methods it changed.  When it changed none, returns the method's status
 * (WD007 when there is no such method); NULL when it changed the method.
 */
static char *
change_method_status(SPIPlanPtr *plan, const char *change_sql, pg_uuid_t *id)
{
	static SPIPlanPtr status_plan = NULL;
	Oid			types[2] = {UUIDOID, NAMEOID};
	Datum		values[2];
	NameData	actor;
	bool		isnull;

	WithdrawalPrepare(plan, change_sql, 2, types);
	namestrcpy(&actor, WithdrawalActor());
	values[0] = UUIDPGetDatum(id);
	values[1] = NameGetDatum(&actor);
	WithdrawalExecute(*plan, values, NULL, false, 1, SPI_OK_SELECT);
	if (DatumGetInt64(WithdrawalSpiGet(0, 1, &isnull)) > 0)
		return NULL;

	WithdrawalPrepare(&status_plan,
					  "SELECT status FROM withdrawal.payout_method WHERE method_id = $1",
					  1, types);
	WithdrawalExecute(status_plan, values, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		raise_unknown_method(id);
	return WithdrawalSpiGetText(0, 1);
}

/*
 * verify_payout_method(method_id): ops only (docs/security.md: whoever can
 * verify can pay anywhere, so not the role a stolen session speaks
 * through).  Verifying a verified method changes nothing; a removed one
 * is WD005.  Returns the status.
 */
Datum
withdrawal_verify_payout_method(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	pg_uuid_t  *id;
	char	   *status;

	id = WithdrawalArgUuid(fcinfo, 0, "method_id");
	SPI_connect();
	status = change_method_status(&plan,
								  "WITH m AS ("
								  " UPDATE withdrawal.payout_method"
								  " SET status = 'verified', verified_at = pg_catalog.now()"
								  " WHERE method_id = $1 AND status = 'pending'"
								  " RETURNING account_id, channel),"
								  "a AS ("
								  " INSERT INTO withdrawal.audit_log"
								  "  (actor, action, account_id, before_status, after_status, detail)"
								  " SELECT $2, 'method_verify', account_id, 'pending', 'verified',"
								  "  pg_catalog.jsonb_build_object('method_id', $1, 'channel', channel) FROM m)"
								  "SELECT count(*) FROM m",
								  id);
	if (status != NULL && strcmp(status, "verified") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WD_INVALID_TRANSITION),
				 errmsg("payout method %s is %s", WithdrawalUuidText(id), status),
				 errdetail("Only a pending payout method can be verified."),
				 errhint("Add the destination again with add_payout_method().")));
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text("verified"));
}

/*
 * remove_payout_method(method_id): by the application (a user removing a
 * method, or reacting to a notification of one it did not add) or ops.
 * Removing is final: the row stays for the withdrawals and audit rows that
 * name it.  Removing a removed method changes nothing.
 */
Datum
withdrawal_remove_payout_method(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	pg_uuid_t  *id;

	id = WithdrawalArgUuid(fcinfo, 0, "method_id");
	SPI_connect();
	(void) change_method_status(&plan,
								"WITH o AS ("
								" SELECT method_id, status FROM withdrawal.payout_method"
								" WHERE method_id = $1 AND status OPERATOR(pg_catalog.<>) 'removed'"
								" FOR UPDATE),"
								"m AS ("
								" UPDATE withdrawal.payout_method p"
								" SET status = 'removed', removed_at = pg_catalog.now()"
								" FROM o WHERE p.method_id = o.method_id AND p.status OPERATOR(pg_catalog.<>) 'removed'"
								" RETURNING p.account_id, p.channel, o.status AS before),"
								"a AS ("
								" INSERT INTO withdrawal.audit_log"
								"  (actor, action, account_id, before_status, after_status, detail)"
								" SELECT $2, 'method_remove', account_id, before, 'removed',"
								"  pg_catalog.jsonb_build_object('method_id', $1, 'channel', channel) FROM m)"
								"SELECT count(*) FROM m",
								id);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text("removed"));
}
