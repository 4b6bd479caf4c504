/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  The append-only audit log and its SHA-256 hash chain.
 *
 * Acting transactions only append rows to withdrawal.audit_log.  A sealer
 * (the dispatcher worker on every loop, or seal_audit()) then links the
 * rows it finds committed, in order, into withdrawal.audit_seal: row_hash =
 * SHA-256 of a canonical encoding of the row, chain_hash = SHA-256(previous
 * chain_hash || row_hash).  Chaining at insert time would make the chain
 * head a lock that every request holds until its commit record is flushed,
 * which serialises all commits.  Sealers take turns on their row of
 * withdrawal.lock_slot (lock.c), which no other role can lock.
 *
 * Rows are sealed in the order the sealer sees them, so a row whose
 * transaction committed late is sealed late.  The worker's routine pass
 * seals the rows above the highest sealed id, a bounded number at a time
 * so that its payouts are not kept waiting; now and then (and in
 * seal_audit()) it looks back a bounded number of ids for such stragglers.
 * Editing a sealed row breaks its row_hash; editing a seal breaks the chain
 * from there on.
 *
 * verify_audit(), audit_head() and verify_audit_anchor() are in
 * audit_verify.c.  verify_audit() only reads: it checks the chain as
 * sealed, so it also runs on a standby and in a read-only transaction.
 * The owner of the tables can still rewrite rows and re-chain them, or
 * cut off the tail of the log, and the chain then verifies; only a chain
 * head kept outside the database shows that.  So every seal that advances the chain publishes
 * its new head, after commit, in a LOG line and a NOTIFY on
 * AUDIT_HEAD_CHANNEL, audit_head() returns it, and verify_audit_anchor()
 * checks that the chain still leads to a head recorded earlier.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/audit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "args.h"
#include "audit.h"
#include "audit_chain.h"
#include "crypto.h"
#include "lock.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_seal_audit);

#define AUDIT_HASH_HEX_LEN (WITHDRAWAL_SHA256_LEN * 2)

/* Where each new chain head is announced, with payload "<seq>:<hex hash>" */
#define AUDIT_HEAD_CHANNEL "withdrawal_audit_head"

/* How far below the last sealed id the routine seal looks for stragglers */
#define AUDIT_STRAGGLER_LOOKBACK 100000

/* Rows above $1 not sealed yet, in audit_id order, at most $2 */
#define AUDIT_STRAGGLER_SQL \
	"SELECT " AUDIT_ROW_COLUMNS " FROM withdrawal.audit_log a " \
	"WHERE a.audit_id > $1 AND NOT EXISTS " \
	"(SELECT FROM withdrawal.audit_seal s WHERE s.audit_id = a.audit_id) " \
	"ORDER BY a.audit_id LIMIT $2"

/* Rows above $1 (the highest sealed id), in audit_id order, at most $2 */
#define AUDIT_FRONTIER_SQL \
	"SELECT " AUDIT_ROW_COLUMNS " FROM withdrawal.audit_log a " \
	"WHERE a.audit_id > $1 ORDER BY a.audit_id LIMIT $2"

/*
 * The head this transaction's last seal reached, to be logged once the
 * seal has committed: a LOG line for a seal that was rolled back would
 * send whoever anchors the chain after a head that never existed.
 */
static int64 pending_head_seq = 0;
static char pending_head_hex[AUDIT_HASH_HEX_LEN + 1];
static SubTransactionId pending_head_subid = InvalidSubTransactionId;
static bool head_callbacks_registered = false;

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
 * whose first AUDIT_NCOLUMNS columns are AUDIT_ROW_COLUMNS.  The text forms
 * are built in "scratch", which is reset: callers hash thousands of rows.  Values are
 * encoded independently of DateStyle, TimeZone and other settings: the
 * timestamp as its integer microseconds, every other value in its type's
 * text form (jsonb canonical).  The text forms are produced here rather
 * than through the output functions: the sealer hashes every row the
 * workload writes, and the generic path was most of its cost.
 */
void
WithdrawalAuditRowHash(int row, MemoryContext scratch, unsigned char *out)
{
	static const Oid column_types[AUDIT_NCOLUMNS] = {
		INT8OID, TIMESTAMPTZOID, NAMEOID, TEXTOID, UUIDOID,
		TEXTOID, TEXTOID, TEXTOID, JSONBOID
	};
	MemoryContext old = MemoryContextSwitchTo(scratch);
	StringInfoData buf;
	int			col;

	initStringInfo(&buf);
	for (col = 1; col <= AUDIT_NCOLUMNS; col++)
	{
		bool		isnull;
		Datum		d = WithdrawalSpiGet(row, col, &isnull);
		char	   *value = NULL;

		if (TupleDescAttr(SPI_tuptable->tupdesc, col - 1)->atttypid != column_types[col - 1])
			elog(ERROR, "audit row column %d has an unexpected type", col);
		if (!isnull)
		{
			switch (column_types[col - 1])
			{
				case INT8OID:
				case TIMESTAMPTZOID:
					value = psprintf(INT64_FORMAT, DatumGetInt64(d));
					break;
				case NAMEOID:
					value = NameStr(*DatumGetName(d));
					break;
				case UUIDOID:
					value = WithdrawalUuidText(DatumGetUUIDP(d));
					break;
				case JSONBOID:
					{
						Jsonb	   *jb = DatumGetJsonbP(d);

						value = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
						break;
					}
				default:
					value = TextDatumGetCString(d);
					break;
			}
		}
		append_field(&buf, value);
	}
	WithdrawalSha256(buf.data, buf.len, out);
	MemoryContextSwitchTo(old);
	MemoryContextReset(scratch);
}

/*
 * The chain hash after prev: SHA-256(prev || row_hash).
 */
void
WithdrawalAuditChainHash(const unsigned char *prev, const unsigned char *row_hash,
						 unsigned char *out)
{
	unsigned char both[WITHDRAWAL_SHA256_LEN * 2];

	memcpy(both, prev, WITHDRAWAL_SHA256_LEN);
	memcpy(both + WITHDRAWAL_SHA256_LEN, row_hash, WITHDRAWAL_SHA256_LEN);
	WithdrawalSha256(both, sizeof(both), out);
}

/*
 * A hash as a bytea datum, palloc'd.
 */
Datum
WithdrawalAuditHashToBytea(const unsigned char *hash)
{
	bytea	   *b = palloc(VARHDRSZ + WITHDRAWAL_SHA256_LEN);

	SET_VARSIZE(b, VARHDRSZ + WITHDRAWAL_SHA256_LEN);
	memcpy(VARDATA(b), hash, WITHDRAWAL_SHA256_LEN);
	return PointerGetDatum(b);
}

/*
 * Copies a bytea hash column into out; false when it is NULL or not a hash.
 */
bool
WithdrawalAuditSpiGetHash(int row, int col, unsigned char *out)
{
	bool		isnull;
	Datum		d = WithdrawalSpiGet(row, col, &isnull);
	bytea	   *b;

	if (isnull)
		return false;
	b = DatumGetByteaPP(d);
	if (VARSIZE_ANY_EXHDR(b) != WITHDRAWAL_SHA256_LEN)
		return false;
	memcpy(out, VARDATA_ANY(b), WITHDRAWAL_SHA256_LEN);
	return true;
}

/* The highest audit_id sealed so far, 0 when none */
static int64
audit_max_sealed_id(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	Datum		d;

	WithdrawalPrepare(&plan, "SELECT max(audit_id) FROM withdrawal.audit_seal", 0, NULL);
	WithdrawalExecute(plan, NULL, NULL, false, 1, SPI_OK_SELECT);
	d = WithdrawalSpiGet(0, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/* The chain's head: the last seal's seq and chain hash (zeros when none) */
static int64
audit_chain_head(unsigned char *prev)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	int64		seq;

	WithdrawalPrepare(&plan,
					  "SELECT seq, chain_hash FROM withdrawal.audit_seal ORDER BY seq DESC LIMIT 1",
					  0, NULL);
	WithdrawalExecute(plan, NULL, NULL, false, 1, SPI_OK_SELECT);
	memset(prev, 0, WITHDRAWAL_SHA256_LEN);
	if (SPI_processed == 0)
		return 0;
	seq = DatumGetInt64(WithdrawalSpiGet(0, 1, &isnull));
	if (!WithdrawalAuditSpiGetHash(0, 2, prev))
		elog(ERROR, "audit seal " INT64_FORMAT " has no valid chain hash", seq);
	return seq;
}

/*
 * Seals the rows of SPI_tuptable (AUDIT_ROW_COLUMNS, in audit_id order)
 * after the chain head (*seq, prev) with one INSERT, and advances the head.
 */
static void
audit_seal_tuptable(int64 *seq, unsigned char *prev)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {INT8ARRAYOID, INT8ARRAYOID, BYTEAARRAYOID, BYTEAARRAYOID};
	uint64		n = SPI_processed;
	Datum	   *seqs = palloc(sizeof(Datum) * n);
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *row_hashes = palloc(sizeof(Datum) * n);
	Datum	   *chain_hashes = palloc(sizeof(Datum) * n);
	Datum		values[4];
	uint64		i;
	MemoryContext row_cxt = AllocSetContextCreate(CurrentMemoryContext,
												  "withdrawal audit row",
												  ALLOCSET_DEFAULT_SIZES);

	for (i = 0; i < n; i++)
	{
		unsigned char row_hash[WITHDRAWAL_SHA256_LEN];
		bool		isnull;

		WithdrawalAuditRowHash(i, row_cxt, row_hash);
		WithdrawalAuditChainHash(prev, row_hash, prev);
		seqs[i] = Int64GetDatum(++(*seq));
		ids[i] = WithdrawalSpiGet(i, 1, &isnull);
		row_hashes[i] = WithdrawalAuditHashToBytea(row_hash);
		chain_hashes[i] = WithdrawalAuditHashToBytea(prev);
	}
	MemoryContextDelete(row_cxt);
	values[0] = PointerGetDatum(construct_array(seqs, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(row_hashes, n, BYTEAOID, -1, false, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_array(chain_hashes, n, BYTEAOID, -1, false, TYPALIGN_INT));

	WithdrawalPrepare(&plan,
					  "INSERT INTO withdrawal.audit_seal (seq, audit_id, row_hash, chain_hash)"
					  " SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
					  "                          pg_catalog.unnest($3), pg_catalog.unnest($4))",
					  4, types);
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_INSERT);
}

/*
 * Seals up to "limit" rows found by "pending" (AUDIT_ROW_COLUMNS of
 * unsealed rows above $1 in audit_id order, at most $2), starting above
 * "floor"; returns how many.
 */
static int64
audit_seal_pass(SPIPlanPtr pending, int64 floor, int64 limit,
				int64 *seq, unsigned char *prev)
{
	int64		sealed = 0;

	while (sealed < limit)
	{
		Datum		args[2];
		uint64		nrows;
		bool		isnull;

		args[0] = Int64GetDatum(floor);
		args[1] = Int32GetDatum((int32) Min(limit - sealed, AUDIT_BATCH));
		WithdrawalExecute(pending, args, NULL, false, 0, SPI_OK_SELECT);
		nrows = SPI_processed;
		if (nrows == 0)
			break;
		floor = DatumGetInt64(WithdrawalSpiGet(nrows - 1, 1, &isnull));
		audit_seal_tuptable(seq, prev);
		sealed += nrows;
		if (nrows < AUDIT_BATCH)
			break;
	}
	return sealed;
}

/*
 * Hex of a hash, for the LOG line and the NOTIFY payload; out has room for
 * AUDIT_HASH_HEX_LEN + 1 bytes.
 */
static void
hash_to_hex(const unsigned char *hash, char *out)
{
	hex_encode((const char *) hash, WITHDRAWAL_SHA256_LEN, out);
	out[AUDIT_HASH_HEX_LEN] = '\0';
}

/*
 * Logs the head the transaction's seals reached, once they are committed;
 * forgets it when they are not.
 */
static void
audit_head_xact_callback(XactEvent event, void *arg)
{
	if (pending_head_seq == 0)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			ereport(LOG,
					(errmsg("withdrawal audit chain head: seq " INT64_FORMAT ", chain hash %s",
							pending_head_seq, pending_head_hex),
					 errhidestmt(true)));
			pending_head_seq = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			pending_head_seq = 0;
			break;
		default:
			break;
	}
}

/*
 * A seal made in a subtransaction that aborts is gone: forget its head.
 * (A head sealed earlier in the transaction is then not logged either, a
 * rare case that the NOTIFY, which PostgreSQL tracks per subtransaction,
 * still covers.)
 */
static void
audit_head_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && pending_head_seq != 0 &&
		pending_head_subid >= mySubid)
		pending_head_seq = 0;
}

/*
 * Announces the head a seal reached: a NOTIFY now (PostgreSQL delivers it
 * at commit, and drops it on rollback), and a LOG line after commit.
 */
static void
audit_publish_head(int64 seq, const unsigned char *chain)
{
	char		hex[AUDIT_HASH_HEX_LEN + 1];

	if (!head_callbacks_registered)
	{
		RegisterXactCallback(audit_head_xact_callback, NULL);
		RegisterSubXactCallback(audit_head_subxact_callback, NULL);
		head_callbacks_registered = true;
	}
	hash_to_hex(chain, hex);
	Async_Notify(AUDIT_HEAD_CHANNEL, psprintf(INT64_FORMAT ":%s", seq, hex));
	pending_head_seq = seq;
	memcpy(pending_head_hex, hex, sizeof(hex));
	pending_head_subid = GetCurrentSubTransactionId();
}

/* The plan of AUDIT_FRONTIER_SQL, kept: the routine seal runs every second */
static SPIPlanPtr
audit_frontier_plan(void)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8OID, INT4OID};

	return WithdrawalPrepare(&plan, AUDIT_FRONTIER_SQL, 2, types);
}

/*
 * Whether a seal with this straggler floor (see audit_seal) would find any
 * row, looked up without the sealers' lock.  Locking a row costs a
 * transaction id and a WAL record, which an idle worker should not spend
 * every second to find nothing; the sealer looks again under the lock.
 */
static bool
audit_pending(int64 straggler_floor)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		args[2];

	args[1] = Int32GetDatum(1);
	if (straggler_floor >= 0)
	{
		args[0] = Int64GetDatum(straggler_floor);
		WithdrawalExecuteFreshPlan(AUDIT_STRAGGLER_SQL, 2, types, args, NULL, SPI_OK_SELECT);
	}
	else
	{
		args[0] = Int64GetDatum(audit_max_sealed_id());
		WithdrawalExecute(audit_frontier_plan(), args, NULL, false, 0, SPI_OK_SELECT);
	}
	return SPI_processed > 0;
}

/*
 * Seals unsealed rows, at most "limit": first, unless straggler_floor is
 * negative, every unsealed row above it (an anti-join over that range:
 * rows that committed after higher ids were sealed); then the rows above
 * the highest sealed id (an index range scan, the routine case).  Returns
 * how many, and publishes the new head if there were any.
 */
static int64
audit_seal(int64 straggler_floor, int64 limit)
{
	Oid			types[2] = {INT8OID, INT4OID};
	unsigned char prev[WITHDRAWAL_SHA256_LEN];
	int64		seq;
	int64		sealed = 0;

	seq = audit_chain_head(prev);
	if (straggler_floor >= 0)
	{
		/*
		 * Rare, and an anti-join over the look back range: planned for the
		 * tables as they are now rather than kept
		 */
		SPIPlanPtr	straggler_plan = SPI_prepare(AUDIT_STRAGGLER_SQL, 2, types);

		if (straggler_plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		sealed = audit_seal_pass(straggler_plan, straggler_floor, limit, &seq, prev);
		SPI_freeplan(straggler_plan);
	}
	if (sealed < limit)
		sealed += audit_seal_pass(audit_frontier_plan(), audit_max_sealed_id(),
								  limit - sealed, &seq, prev);
	if (sealed > 0)
		audit_publish_head(seq, prev);
	return sealed;
}

/* The straggler floor of a seal that looks back, or -1 for one that does not */
static int64
audit_straggler_floor(bool stragglers)
{
	return stragglers ? Max(audit_max_sealed_id() - AUDIT_STRAGGLER_LOOKBACK, 0) : -1;
}

int64
WithdrawalAuditSeal(bool wait, bool stragglers, int64 limit)
{
	if (!audit_pending(audit_straggler_floor(stragglers)))
		return 0;
	if (!WithdrawalLockSlot(WITHDRAWAL_LOCK_AUDIT_SEAL, wait))
	{
		ereport(DEBUG1,
				(errmsg_internal("withdrawal audit sealing skipped: another sealer is at work")));
		return 0;
	}
	return audit_seal(audit_straggler_floor(stragglers),
					  limit <= 0 ? PG_INT64_MAX : limit);
}

/*
 * seal_audit(): seals what the routine seal would.
 */
Datum
withdrawal_seal_audit(PG_FUNCTION_ARGS)
{
	int64		sealed;

	SPI_connect();
	sealed = WithdrawalAuditSeal(true, true, 0);
	SPI_finish();
	PG_RETURN_INT64(sealed);
}
