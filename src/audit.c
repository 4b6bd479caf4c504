/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  The append-only audit log and its SHA-256 hash chain.
 *
 * Acting transactions only append rows to withdrawal.audit_log.  A sealer
 * (the dispatcher worker on every loop, seal_audit(), and verify_audit()
 * before it checks) then links the rows it finds committed, in order, into
 * withdrawal.audit_seal: row_hash = SHA-256 of a canonical encoding of the
 * row, chain_hash = SHA-256(previous chain_hash || row_hash).  Chaining at
 * insert time would make the chain head a lock that every request holds
 * until its commit record is flushed, which serialises all commits.
 *
 * Rows are sealed in the order the sealer sees them, so a row whose
 * transaction committed late is sealed late; the routine seal looks back a
 * bounded number of ids for such stragglers and verify_audit() seals all
 * of them.  Editing a sealed row breaks its row_hash; editing a seal breaks
 * the chain from there on.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/audit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "audit.h"
#include "util.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_seal_audit);
PG_FUNCTION_INFO_V1(withdrawal_verify_audit);

#define AUDIT_HASH_LEN 32

/* Advisory lock that serialises sealers: class "WDAU", object 1 */
#define AUDIT_SEAL_LOCK_CLASS	0x57444155
#define AUDIT_SEAL_LOCK_OBJECT	1

/* How far below the last sealed id the routine seal looks for stragglers */
#define AUDIT_STRAGGLER_LOOKBACK 100000

/* Rows sealed or verified per SPI round trip */
#define AUDIT_BATCH 10000

/* Columns of the audit row, in the order of AUDIT_ROW_COLUMNS */
#define AUDIT_ROW_COLUMNS \
	"a.audit_id, a.logged_at, a.actor, a.action, a.withdrawal_id, " \
	"a.account_id, a.before_status, a.after_status, a.detail"
#define AUDIT_NCOLUMNS 9

static void sha256(const unsigned char *data, size_t len, unsigned char *out);

void
WithdrawalAudit(const char *action, const char *actor,
				const pg_uuid_t *withdrawal_id, const char *account_id,
				const char *before_status, const char *after_status,
				Jsonb *detail)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[7] = {NAMEOID, TEXTOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	NameData	actor_name;

	WithdrawalPrepare(&plan,
					  "INSERT INTO withdrawal.audit_log "
					  "(actor, action, withdrawal_id, account_id, before_status, after_status, detail) "
					  "VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, '{}'))",
					  7, types);

	namestrcpy(&actor_name, actor ? actor : WithdrawalActor());
	values[0] = NameGetDatum(&actor_name);
	values[1] = CStringGetTextDatum(action);
	values[2] = UUIDPGetDatum(withdrawal_id);
	nulls[2] = withdrawal_id ? ' ' : 'n';
	values[3] = account_id ? CStringGetTextDatum(account_id) : (Datum) 0;
	nulls[3] = account_id ? ' ' : 'n';
	values[4] = before_status ? CStringGetTextDatum(before_status) : (Datum) 0;
	nulls[4] = before_status ? ' ' : 'n';
	values[5] = after_status ? CStringGetTextDatum(after_status) : (Datum) 0;
	nulls[5] = after_status ? ' ' : 'n';
	values[6] = JsonbPGetDatum(detail);
	nulls[6] = detail ? ' ' : 'n';

	WithdrawalExecute(plan, values, nulls, false, 0, SPI_OK_INSERT);
}

static void
sha256(const unsigned char *data, size_t len, unsigned char *out)
{
	unsigned int outlen = 0;

	if (EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) != 1 ||
		outlen != AUDIT_HASH_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute SHA-256 digest")));
}

/*
 * Appends one field to the canonical encoding: "N;" for NULL, otherwise
 * "<length>:<bytes>;", so that no choice of field contents can make two
 * different rows encode alike.
 */
static void
append_field(StringInfo buf, const char *value)
{
	if (value == NULL)
		appendStringInfoString(buf, "N;");
	else
	{
		appendStringInfo(buf, "%zu:", strlen(value));
		appendStringInfoString(buf, value);
		appendStringInfoChar(buf, ';');
	}
}

/*
 * SHA-256 of the canonical encoding of audit row "row" of SPI_tuptable,
 * whose first AUDIT_NCOLUMNS columns are AUDIT_ROW_COLUMNS.  Values are
 * encoded independently of DateStyle, TimeZone and other settings: the
 * timestamp as its integer microseconds, jsonb in its canonical text form.
 */
static void
audit_row_hash(int row, unsigned char *out)
{
	StringInfoData buf;
	bool		isnull;
	Datum		d;
	int			col;

	initStringInfo(&buf);
	for (col = 1; col <= AUDIT_NCOLUMNS; col++)
	{
		d = WithdrawalSpiGet(row, col, &isnull);
		if (isnull)
			append_field(&buf, NULL);
		else if (col == 2)
			append_field(&buf, psprintf(INT64_FORMAT, DatumGetTimestampTz(d)));
		else
			append_field(&buf, WithdrawalSpiGetText(row, col));
	}
	sha256((unsigned char *) buf.data, buf.len, out);
	pfree(buf.data);
}

static void
chain_hash(const unsigned char *prev, const unsigned char *row_hash,
		   unsigned char *out)
{
	unsigned char both[AUDIT_HASH_LEN * 2];

	memcpy(both, prev, AUDIT_HASH_LEN);
	memcpy(both + AUDIT_HASH_LEN, row_hash, AUDIT_HASH_LEN);
	sha256(both, sizeof(both), out);
}

static bytea *
hash_to_bytea(const unsigned char *hash)
{
	bytea	   *b = palloc(VARHDRSZ + AUDIT_HASH_LEN);

	SET_VARSIZE(b, VARHDRSZ + AUDIT_HASH_LEN);
	memcpy(VARDATA(b), hash, AUDIT_HASH_LEN);
	return b;
}

/*
 * Copies a bytea hash column into out; false when it is NULL or not a hash.
 */
static bool
spi_get_hash(int row, int col, unsigned char *out)
{
	bool		isnull;
	Datum		d = WithdrawalSpiGet(row, col, &isnull);
	bytea	   *b;

	if (isnull)
		return false;
	b = DatumGetByteaPP(d);
	if (VARSIZE_ANY_EXHDR(b) != AUDIT_HASH_LEN)
		return false;
	memcpy(out, VARDATA_ANY(b), AUDIT_HASH_LEN);
	return true;
}

/*
 * Seals unsealed rows with audit_id above "floor"; returns how many.
 */
static int64
audit_seal_from(int64 floor)
{
	static SPIPlanPtr last_plan = NULL;
	static SPIPlanPtr pending_plan = NULL;
	static SPIPlanPtr insert_plan = NULL;
	Oid			pending_types[2] = {INT8OID, INT4OID};
	Oid			insert_types[4] = {INT8OID, INT8OID, BYTEAOID, BYTEAOID};
	unsigned char prev[AUDIT_HASH_LEN];
	int64		seq = 0;
	int64		sealed = 0;

	DirectFunctionCall2(pg_advisory_xact_lock_int4,
						Int32GetDatum(AUDIT_SEAL_LOCK_CLASS),
						Int32GetDatum(AUDIT_SEAL_LOCK_OBJECT));

	WithdrawalPrepare(&last_plan,
					  "SELECT seq, chain_hash FROM withdrawal.audit_seal ORDER BY seq DESC LIMIT 1",
					  0, NULL);
	WithdrawalPrepare(&pending_plan,
					  "SELECT " AUDIT_ROW_COLUMNS " FROM withdrawal.audit_log a "
					  "WHERE a.audit_id > $1 AND NOT EXISTS "
					  "(SELECT FROM withdrawal.audit_seal s WHERE s.audit_id = a.audit_id) "
					  "ORDER BY a.audit_id LIMIT $2",
					  2, pending_types);
	WithdrawalPrepare(&insert_plan,
					  "INSERT INTO withdrawal.audit_seal (seq, audit_id, row_hash, chain_hash) "
					  "VALUES ($1, $2, $3, $4)",
					  4, insert_types);

	WithdrawalExecute(last_plan, NULL, NULL, false, 1, SPI_OK_SELECT);
	memset(prev, 0, sizeof(prev));
	if (SPI_processed == 1)
	{
		bool		isnull;

		seq = DatumGetInt64(WithdrawalSpiGet(0, 1, &isnull));
		if (!spi_get_hash(0, 2, prev))
			elog(ERROR, "audit seal " INT64_FORMAT " has no valid chain hash", seq);
	}

	for (;;)
	{
		Datum		args[2] = {Int64GetDatum(floor), Int32GetDatum(AUDIT_BATCH)};
		SPITupleTable *rows;
		uint64		nrows;
		uint64		i;

		WithdrawalExecute(pending_plan, args, NULL, false, 0, SPI_OK_SELECT);
		rows = SPI_tuptable;
		nrows = SPI_processed;
		if (nrows == 0)
			break;

		for (i = 0; i < nrows; i++)
		{
			unsigned char row_hash[AUDIT_HASH_LEN];
			unsigned char chain[AUDIT_HASH_LEN];
			Datum		vals[4];
			bool		isnull;
			int64		audit_id;

			SPI_tuptable = rows;
			SPI_processed = nrows;
			audit_id = DatumGetInt64(WithdrawalSpiGet(i, 1, &isnull));
			audit_row_hash(i, row_hash);
			chain_hash(prev, row_hash, chain);

			vals[0] = Int64GetDatum(++seq);
			vals[1] = Int64GetDatum(audit_id);
			vals[2] = PointerGetDatum(hash_to_bytea(row_hash));
			vals[3] = PointerGetDatum(hash_to_bytea(chain));
			WithdrawalExecute(insert_plan, vals, NULL, false, 0, SPI_OK_INSERT);

			memcpy(prev, chain, AUDIT_HASH_LEN);
			floor = audit_id;
			sealed++;
		}
		SPI_freetuptable(rows);
		if (nrows < AUDIT_BATCH)
			break;
	}
	return sealed;
}

int64
WithdrawalAuditSeal(void)
{
	static SPIPlanPtr max_plan = NULL;
	bool		isnull;
	int64		floor = 0;
	Datum		d;

	WithdrawalPrepare(&max_plan,
					  "SELECT max(audit_id) FROM withdrawal.audit_seal", 0, NULL);
	WithdrawalExecute(max_plan, NULL, NULL, false, 1, SPI_OK_SELECT);
	d = WithdrawalSpiGet(0, 1, &isnull);
	if (!isnull)
		floor = Max(DatumGetInt64(d) - AUDIT_STRAGGLER_LOOKBACK, 0);
	return audit_seal_from(floor);
}

/*
 * seal_audit(): seals what the routine seal would.
 */
Datum
withdrawal_seal_audit(PG_FUNCTION_ARGS)
{
	int64		sealed;

	SPI_connect();
	sealed = WithdrawalAuditSeal();
	SPI_finish();
	PG_RETURN_INT64(sealed);
}

/*
 * verify_audit(): seals every pending row, then recomputes each row hash
 * and the chain in seal order.  Reports the first audit_id whose row or
 * seal does not match (a deleted row shows as its seal's audit_id).
 */
Datum
withdrawal_verify_audit(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Portal		portal;
	unsigned char prev[AUDIT_HASH_LEN];
	int64		checked = 0;
	int64		first_bad = -1;
	int64		expected_seq = 0;
	Datum		result[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	SPI_connect();
	audit_seal_from(0);

	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT " AUDIT_ROW_COLUMNS ", s.audit_id, s.row_hash, s.chain_hash, s.seq "
									   "FROM withdrawal.audit_seal s "
									   "LEFT JOIN withdrawal.audit_log a ON a.audit_id = s.audit_id "
									   "ORDER BY s.seq",
									   0, NULL, NULL, NULL, false, 0);
	memset(prev, 0, sizeof(prev));
	while (first_bad < 0)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, AUDIT_BATCH);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed && first_bad < 0; i++)
		{
			unsigned char row_hash[AUDIT_HASH_LEN];
			unsigned char stored_row[AUDIT_HASH_LEN];
			unsigned char stored_chain[AUDIT_HASH_LEN];
			unsigned char chain[AUDIT_HASH_LEN];
			bool		row_missing;
			bool		isnull;
			int64		seal_audit_id;
			int64		seq;

			seal_audit_id = DatumGetInt64(WithdrawalSpiGet(i, AUDIT_NCOLUMNS + 1, &isnull));
			seq = DatumGetInt64(WithdrawalSpiGet(i, AUDIT_NCOLUMNS + 4, &isnull));
			(void) WithdrawalSpiGet(i, 1, &row_missing);
			checked++;

			if (row_missing ||
				seq != ++expected_seq ||
				!spi_get_hash(i, AUDIT_NCOLUMNS + 2, stored_row) ||
				!spi_get_hash(i, AUDIT_NCOLUMNS + 3, stored_chain))
			{
				first_bad = seal_audit_id;
				break;
			}
			audit_row_hash(i, row_hash);
			chain_hash(prev, stored_row, chain);
			if (CRYPTO_memcmp(row_hash, stored_row, AUDIT_HASH_LEN) != 0 ||
				CRYPTO_memcmp(chain, stored_chain, AUDIT_HASH_LEN) != 0)
			{
				first_bad = seal_audit_id;
				break;
			}
			memcpy(prev, chain, AUDIT_HASH_LEN);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_finish();

	result[0] = BoolGetDatum(first_bad < 0);
	result[1] = Int64GetDatum(checked);
	result[2] = Int64GetDatum(first_bad);
	nulls[2] = first_bad < 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, result, nulls)));
}
