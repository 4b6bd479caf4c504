/*-------------------------------------------------------------------------
 *
 * audit_verify.c
 *	  Checking the audit chain: verify_audit(), audit_head() and
 *	  verify_audit_anchor().
 *
 * All three only read, so they run on a standby and in a read-only
 * transaction.  verify_audit() recomputes every sealed row hash and the
 * chain as sealed; since the owner of the tables could rewrite rows and
 * re-chain them, audit_head() hands out the chain head to be kept outside
 * the database, and verify_audit_anchor() checks that the chain still
 * leads to a head recorded earlier.  Sealing is audit.c's.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/audit_verify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "audit_chain.h"
#include "crypto.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(withdrawal_verify_audit);
PG_FUNCTION_INFO_V1(withdrawal_audit_head);
PG_FUNCTION_INFO_V1(withdrawal_verify_audit_anchor);

/*
 * Recomputes the chain in seal order up to seal "last_seq": each row hash
 * from its row, each chain hash from the one before.  Returns the audit_id
 * of the first seal that does not match (a deleted row shows as its seal's
 * audit_id), or -1 when all do.  Sets *checked to the number of seals
 * looked at, and *head_seq and head to the last seal that matched (0 and
 * zeros for none).  Reads only, in one snapshot: what is sealed is what is
 * checked.  Runs in the caller's SPI connection.
 */
static int64
audit_walk(int64 last_seq, int64 *checked, int64 *head_seq, unsigned char *head)
{
	Oid			types[1] = {INT8OID};
	Datum		args[1];
	Portal		portal;
	int64		first_bad = -1;
	MemoryContext row_cxt;

	row_cxt = AllocSetContextCreate(CurrentMemoryContext, "withdrawal audit row",
									ALLOCSET_DEFAULT_SIZES);
	args[0] = Int64GetDatum(last_seq);
	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT " AUDIT_ROW_COLUMNS ", s.audit_id, s.row_hash, s.chain_hash, s.seq "
									   "FROM withdrawal.audit_seal s "
									   "LEFT JOIN withdrawal.audit_log a ON a.audit_id = s.audit_id "
									   "WHERE s.seq <= $1 ORDER BY s.seq",
									   1, types, args, NULL, true, 0);
	*checked = 0;
	*head_seq = 0;
	memset(head, 0, WITHDRAWAL_SHA256_LEN);
	while (first_bad < 0)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, AUDIT_BATCH);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed && first_bad < 0; i++)
		{
			unsigned char row_hash[WITHDRAWAL_SHA256_LEN];
			unsigned char stored_row[WITHDRAWAL_SHA256_LEN];
			unsigned char stored_chain[WITHDRAWAL_SHA256_LEN];
			unsigned char chain[WITHDRAWAL_SHA256_LEN];
			bool		row_missing;
			bool		isnull;
			int64		seal_audit_id;
			int64		seq;

			seal_audit_id = DatumGetInt64(WithdrawalSpiGet(i, AUDIT_NCOLUMNS + 1, &isnull));
			seq = DatumGetInt64(WithdrawalSpiGet(i, AUDIT_NCOLUMNS + 4, &isnull));
			(void) WithdrawalSpiGet(i, 1, &row_missing);
			(*checked)++;

			if (row_missing ||
				seq != *head_seq + 1 ||
				!WithdrawalAuditSpiGetHash(i, AUDIT_NCOLUMNS + 2, stored_row) ||
				!WithdrawalAuditSpiGetHash(i, AUDIT_NCOLUMNS + 3, stored_chain))
			{
				first_bad = seal_audit_id;
				break;
			}
			WithdrawalAuditRowHash(i, row_cxt, row_hash);
			WithdrawalAuditChainHash(head, stored_row, chain);
			if (!WithdrawalTimingSafeEqual(row_hash, stored_row, WITHDRAWAL_SHA256_LEN) ||
				!WithdrawalTimingSafeEqual(chain, stored_chain, WITHDRAWAL_SHA256_LEN))
			{
				first_bad = seal_audit_id;
				break;
			}
			memcpy(head, chain, WITHDRAWAL_SHA256_LEN);
			*head_seq = seq;
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	MemoryContextDelete(row_cxt);
	return first_bad;
}

/*
 * verify_audit(): recomputes every row hash and the chain, as sealed, and
 * reports the first audit_id whose row or seal does not match.  Seals
 * nothing (sealing is the worker's and seal_audit()'s job), so that it
 * runs on a standby and in a read-only transaction.
 */
Datum
withdrawal_verify_audit(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	unsigned char head[WITHDRAWAL_SHA256_LEN];
	int64		checked;
	int64		head_seq;
	int64		first_bad;
	Datum		result[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	SPI_connect();
	first_bad = audit_walk(PG_INT64_MAX, &checked, &head_seq, head);
	SPI_finish();

	result[0] = BoolGetDatum(first_bad < 0);
	result[1] = Int64GetDatum(checked);
	result[2] = Int64GetDatum(first_bad);
	nulls[2] = first_bad < 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, result, nulls)));
}

/*
 * audit_head(): the latest seal, for whoever anchors the chain outside the
 * database.  Before the first seal: seq 0 and the 32 zero bytes the chain
 * starts from, with no audit_id or sealed_at.
 */
Datum
withdrawal_audit_head(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	Datum		result[4];
	bool		nulls[4] = {false, true, false, true};
	unsigned char zeros[WITHDRAWAL_SHA256_LEN];
	int			col;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	SPI_connect();
	WithdrawalExecuteFreshPlan("SELECT seq, audit_id, chain_hash, sealed_at FROM withdrawal.audit_seal "
						  "ORDER BY seq DESC LIMIT 1",
						  0, NULL, NULL, NULL, SPI_OK_SELECT);
	memset(zeros, 0, sizeof(zeros));
	result[0] = Int64GetDatum(0);
	result[2] = WithdrawalAuditHashToBytea(zeros);
	if (SPI_processed > 0)
		for (col = 0; col < 4; col++)
			result[col] = WithdrawalSpiGet(0, col + 1, &nulls[col]);
	/* formed, and the values copied, outside SPI's memory */
	MemoryContextSwitchTo(caller_cxt);
	tuple = heap_form_tuple(tupdesc, result, nulls);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

/*
 * verify_audit_anchor(seq, chain_hash): true when the chain, recomputed
 * from the rows as they are now, still reaches chain_hash at seal seq,
 * as audit_head() reported it when it was anchored.  Rewritten and
 * re-chained rows at or below seq, or a tail cut off below it, make it
 * false, even where verify_audit() finds the chain consistent.
 */
Datum
withdrawal_verify_audit_anchor(PG_FUNCTION_ARGS)
{
	int64		seq;
	bytea	   *anchor;
	unsigned char head[WITHDRAWAL_SHA256_LEN];
	int64		checked;
	int64		head_seq;
	int64		first_bad;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("seq must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chain_hash must not be null")));
	seq = PG_GETARG_INT64(0);
	anchor = PG_GETARG_BYTEA_PP(1);
	if (seq < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("seq must not be negative")));
	if (VARSIZE_ANY_EXHDR(anchor) != WITHDRAWAL_SHA256_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chain_hash must be %d bytes long", WITHDRAWAL_SHA256_LEN),
				 errdetail("A chain hash is a SHA-256 digest, as audit_head() returns it.")));

	SPI_connect();
	first_bad = audit_walk(seq, &checked, &head_seq, head);
	SPI_finish();

	PG_RETURN_BOOL(first_bad < 0 && head_seq == seq &&
				   WithdrawalTimingSafeEqual(head, VARDATA_ANY(anchor), WITHDRAWAL_SHA256_LEN));
}
