/*-------------------------------------------------------------------------
 *
 * statement.c
 *	  Account statements: a wallet's ledger movements, page by page.
 *
 * The application reads a statement through statement() alone; its role
 * has no SELECT on the ledger.  The function names one wallet and returns
 * only that wallet's entries, so a caller cannot see another account's
 * movements by any choice of arguments.
 *
 * Pages are keyed by txn_id (keyset pagination): the caller passes the
 * last txn_id it received.  A page holds whole ledger transactions, never
 * part of one, so that "after the last txn_id seen" neither repeats nor
 * skips an entry.  Movements of a wallet take their txn_id under its row
 * lock and so commit in txn_id order; a credit takes its txn_id before
 * that lock, so a credit racing another movement of the wallet can commit
 * below a txn_id a reader was already shown (docs/api.md says what an
 * application can do about it).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/statement.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "args.h"
#include "cache.h"
#include "ledger.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_statement);

#define STATEMENT_MAX_PAGE		1000
#define STATEMENT_COLUMNS		9

/*
 * statement(account_id, currency, after_txn_id, page_size): the wallet's
 * own entries (available, held, settled; not the house "funding" leg) of
 * its next page_size ledger transactions after after_txn_id, in txn_id
 * and leg order, with the current status of the withdrawal they concern.
 */
Datum
withdrawal_statement(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr wallet_plan = NULL;
	static SPIPlanPtr page_plan = NULL;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			wallet_types[2] = {TEXTOID, TEXTOID};
	Oid			page_types[3] = {INT8OID, INT8OID, INT4OID};
	Datum		values[3];
	char	   *account_id;
	char	   *currency;
	int64		after_txn_id;
	int32		page_size;
	bool		isnull;
	uint64		row;

	account_id = WithdrawalArgIdentifier(fcinfo, 0, "account_id", WITHDRAWAL_MAX_ACCOUNT_ID);
	/* txn_id comes from a sequence starting at 1: NULL means from the start */
	after_txn_id = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2);
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("page_size must not be null")));
	page_size = PG_GETARG_INT32(3);
	if (page_size < 1 || page_size > STATEMENT_MAX_PAGE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("page_size must be between 1 and %d", STATEMENT_MAX_PAGE),
				 errdetail("Got %d.", page_size)));

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	currency = WithdrawalArgCurrency(fcinfo, 1);

	WithdrawalPrepare(&wallet_plan,
					  "SELECT wallet_id FROM withdrawal.wallet"
					  " WHERE account_id = $1 AND currency = $2",
					  2, wallet_types);
	values[0] = CStringGetTextDatum(account_id);
	values[1] = CStringGetTextDatum(currency);
	WithdrawalExecute(wallet_plan, values, NULL, true, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		WithdrawalRaiseUnknownWallet(account_id, currency);
	values[0] = WithdrawalSpiGet(0, 1, &isnull);

	/*
	 * The page is chosen on ledger_entry_wallet (wallet_id, txn_id) WHERE
	 * leg = 2, one entry per transaction: a range scan from after_txn_id
	 * that stops after page_size transactions, whatever the length of the
	 * wallet's history.  The entries are then fetched by primary key.
	 * wallet_id is tested on the entries too, so that only this wallet's
	 * rows can come out even if a transaction ever had legs of several
	 * wallets.
	 */
	WithdrawalPrepare(&page_plan,
					  "WITH page AS ("
					  " SELECT txn_id FROM withdrawal.ledger_entry"
					  "  WHERE wallet_id = $1 AND txn_id > $2 AND leg = 2"
					  "  ORDER BY txn_id LIMIT $3)"
					  "SELECT e.txn_id, e.kind::text, e.bucket::text, e.amount::int8,"
					  "       e.balance_after, e.withdrawal_id, e.credit_id,"
					  "       w.status::text, e.created_at"
					  "  FROM page JOIN withdrawal.ledger_entry e USING (txn_id)"
					  "  LEFT JOIN withdrawal.withdrawal w ON w.withdrawal_id = e.withdrawal_id"
					  " WHERE e.wallet_id = $1 AND e.bucket <> 'funding'"
					  " ORDER BY e.txn_id, e.leg",
					  3, page_types);
	values[1] = Int64GetDatum(after_txn_id);
	values[2] = Int32GetDatum(page_size);
	WithdrawalExecute(page_plan, values, NULL, true, 0, SPI_OK_SELECT);

	for (row = 0; row < SPI_processed; row++)
	{
		Datum		out[STATEMENT_COLUMNS];
		bool		nulls[STATEMENT_COLUMNS];
		int			col;

		for (col = 0; col < STATEMENT_COLUMNS; col++)
			out[col] = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
									 col + 1, &nulls[col]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
