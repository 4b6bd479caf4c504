/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Argument validation, SPI plumbing, UUIDs and the small triggers that
 *	  several tables share (append-only, configuration changed).
 *
 * Every SQL entry point validates its arguments here so that bad input is
 * refused with 22023 before anything is read or written, with a message
 * that names the argument.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/util.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/table.h"
#include "datatype/timestamp.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "commands/trigger.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"

#include "policy.h"
#include "shmem.h"
#include "util.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_append_only);
PG_FUNCTION_INFO_V1(withdrawal_config_changed);

/* Known currency codes, sorted, loaded on first use */
static char (*currency_codes)[4] = NULL;
static int	currency_count = 0;
static bool config_callback_registered = false;

/*
 * OIDs of the configuration tables, looked up once in a transaction so that
 * the invalidation callback, which must not touch the catalogs, can match
 * them.
 */
static const char *const config_tables[] = {"currency", "policy", "channel", "processor"};
static Oid	config_table_oids[lengthof(config_tables)];

/* Relation OIDs looked up by name, see WithdrawalRelationOid */
#define RELATION_CACHE_SIZE 24
static struct
{
	char		name[NAMEDATALEN];
	Oid			oid;
}			relation_cache[RELATION_CACHE_SIZE];

/*
 * Whether this backend found the extension's SQL objects at the library's
 * version; forgotten at every relcache invalidation, which ALTER EXTENSION
 * UPDATE sends for the tables it changes.
 */
static bool schema_version_checked = false;

static void config_relcache_callback(Datum arg, Oid relid);

/*
 * Raises 22023 for a NULL argument.
 */
static void
require_not_null(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", argname)));
}

/* See util.h */
char *
WithdrawalCheckText(text *t, const char *argname, int maxbytes)
{
	int			len = VARSIZE_ANY_EXHDR(t);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname)));
	if (len > maxbytes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", argname),
				 errdetail("The value has %d bytes; at most %d are allowed.",
						   len, maxbytes)));
	return text_to_cstring(t);
}

static char *
text_arg(FunctionCallInfo fcinfo, int argno, const char *argname, int maxbytes)
{
	return WithdrawalCheckText(PG_GETARG_TEXT_PP(argno), argname, maxbytes);
}

char *
WithdrawalArgText(FunctionCallInfo fcinfo, int argno, const char *argname,
				  int maxbytes)
{
	require_not_null(fcinfo, argno, argname);
	return text_arg(fcinfo, argno, argname, maxbytes);
}

char *
WithdrawalArgTextOrNull(FunctionCallInfo fcinfo, int argno,
						const char *argname, int maxbytes)
{
	if (PG_ARGISNULL(argno))
		return NULL;
	return text_arg(fcinfo, argno, argname, maxbytes);
}

/*
 * True for the code points an identifier must not contain: C0 controls,
 * DEL, C1 controls, and the Unicode bidirectional formatting characters
 * (ALM, LRM, RLM, the embeddings and overrides LRE..RLO, the isolates
 * LRI..PDI).  Identifiers are echoed in error messages, the audit log and
 * the server log, where a newline forges a line and a right-to-left
 * override makes one id display as another.
 */
static bool
forbidden_code_point(pg_wchar c)
{
	return c < 0x20 || (c >= 0x7F && c <= 0x9F) ||
		c == 0x061C || c == 0x200E || c == 0x200F ||
		(c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069);
}

/*
 * Refuses an identifier holding a forbidden code point (see util.h).  The
 * value is decoded as Unicode whatever the database encoding, except
 * SQL_ASCII, where only ASCII has a meaning.
 */
void
WithdrawalCheckIdentifier(const char *value, const char *argname)
{
	int			encoding = GetDatabaseEncoding();
	const unsigned char *p;
	const unsigned char *end;
	pg_wchar	bad = 0;
	bool		found = false;

	/* SQL_ASCII gives no meaning to bytes above 0x7F: check ASCII only */
	if (encoding == PG_SQL_ASCII)
	{
		for (p = (const unsigned char *) value; *p != '\0' && !found; p++)
			if (*p < 0x80 && forbidden_code_point(*p))
			{
				found = true;
				bad = *p;
			}
	}
	else
	{
		p = (const unsigned char *) pg_server_to_any(value, strlen(value), PG_UTF8);
		end = p + strlen((const char *) p);
		while (p < end && !found)
		{
			pg_wchar	c = utf8_to_unicode(p);

			if (forbidden_code_point(c))
			{
				found = true;
				bad = c;
			}
			p += pg_utf_mblen(p);
		}
	}
	if (found)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not contain control or bidirectional formatting characters",
						argname),
				 errdetail("The value contains U+%04X.", (unsigned int) bad)));
}

/*
 * See util.h.  The blocklist, the per-IP velocity limit and unblock()
 * compare addresses, so each must have exactly one spelling: a host with a
 * mask ("203.0.113.9/0" is inet 203.0.113.9 with a zero-bit mask, which no
 * /24 entry contains and which counts apart from 203.0.113.9) is refused
 * where a host is wanted, and an IPv4-mapped IPv6 value (::ffff:203.0.113.9,
 * how a dual-stack socket reports an IPv4 client) is the IPv4 one, since
 * inet never contains a value of the other family.  inet_in raises 22P02 on
 * garbage; the contract says 22023 for bad input, so the error is mapped.
 */
char *
WithdrawalCanonicalIp(const char *value, bool host_only, const char *argname)
{
	static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	MemoryContext cxt = CurrentMemoryContext;
	inet	   *addr;
	unsigned char *a;

	PG_TRY();
	{
		addr = DatumGetInetPP(DirectFunctionCall1(inet_in, CStringGetDatum(value)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not an IP address%s: \"%s\"", argname,
						host_only ? "" : " or network", value)));
	}
	PG_END_TRY();

	if (host_only && ip_bits(addr) != ip_maxbits(addr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a host address: \"%s\"", argname, value),
				 errdetail("A network mask other than /%d is not allowed.", ip_maxbits(addr))));
	a = ip_addr(addr);
	if (ip_family(addr) == PGSQL_AF_INET6 && ip_bits(addr) >= 96 &&
		memcmp(a, v4mapped, sizeof(v4mapped)) == 0)
	{
		if (ip_bits(addr) == 128)
			return psprintf("%u.%u.%u.%u", a[12], a[13], a[14], a[15]);
		return psprintf("%u.%u.%u.%u/%d", a[12], a[13], a[14], a[15], ip_bits(addr) - 96);
	}
	return DatumGetCString(DirectFunctionCall1(inet_out, InetPGetDatum(addr)));
}

/*
 * A text argument that is an account id or an idempotency key.
 */
char *
WithdrawalArgIdentifier(FunctionCallInfo fcinfo, int argno,
						const char *argname, int maxbytes)
{
	char	   *value = WithdrawalArgText(fcinfo, argno, argname, maxbytes);

	WithdrawalCheckIdentifier(value, argname);
	return value;
}

void
WithdrawalCheckAmount(int64 amount, const char *argname)
{
	if (amount <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", argname),
				 errdetail("Amounts are in minor units of the currency; got " INT64_FORMAT ".",
						   amount)));
}

int64
WithdrawalArgAmount(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	require_not_null(fcinfo, argno, argname);
	WithdrawalCheckAmount(PG_GETARG_INT64(argno), argname);
	return PG_GETARG_INT64(argno);
}

void
WithdrawalCheckObject(Jsonb *jb, const char *argname)
{
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", argname)));
	if (VARSIZE(jb) > WITHDRAWAL_MAX_JSON)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too large", argname),
				 errdetail("At most %d bytes of JSON are allowed.", WITHDRAWAL_MAX_JSON)));
}

Jsonb *
WithdrawalArgObject(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	Jsonb	   *jb;

	require_not_null(fcinfo, argno, argname);
	jb = PG_GETARG_JSONB_P(argno);
	WithdrawalCheckObject(jb, argname);
	return jb;
}

pg_uuid_t *
WithdrawalArgUuid(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	require_not_null(fcinfo, argno, argname);
	return PG_GETARG_UUID_P(argno);
}

/*
 * Loads the sorted list of currency codes.
 */
static void
load_currencies(void)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext oldcxt;
	int			i;

	WithdrawalConfigCacheInit();
	WithdrawalPrepare(&plan,
					  "SELECT code FROM withdrawal.currency ORDER BY code COLLATE \"C\"",
					  0, NULL);
	WithdrawalExecute(plan, NULL, NULL, true, 0, SPI_OK_SELECT);

	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	if (currency_codes)
		pfree(currency_codes);
	currency_codes = palloc0(sizeof(*currency_codes) * Max(SPI_processed, 1));
	MemoryContextSwitchTo(oldcxt);
	for (i = 0; i < SPI_processed; i++)
		strlcpy(currency_codes[i], WithdrawalSpiGetText(i, 1), 4);
	currency_count = SPI_processed;
}

static int
currency_cmp(const void *a, const void *b)
{
	return strcmp((const char *) a, (const char *) b);
}

bool
WithdrawalCurrencyKnown(const char *code)
{
	if (currency_codes == NULL)
		load_currencies();
	return bsearch(code, currency_codes, currency_count,
				   sizeof(*currency_codes), currency_cmp) != NULL;
}

/*
 * Refuses a code that is not a known upper-case ISO 4217 code.  Requires an
 * SPI connection (the list is loaded on first use).
 */
void
WithdrawalCheckCurrency(const char *code)
{
	if (strlen(code) != 3 ||
		code[0] < 'A' || code[0] > 'Z' ||
		code[1] < 'A' || code[1] > 'Z' ||
		code[2] < 'A' || code[2] > 'Z')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid currency code \"%s\"", code),
				 errhint("Use an upper-case ISO 4217 alphabetic code such as \"USD\".")));
	if (!WithdrawalCurrencyKnown(code))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown currency \"%s\"", code),
				 errhint("Currencies are listed in withdrawal.currency.")));
}

/*
 * Returns the currency argument (see WithdrawalCheckCurrency).
 */
char *
WithdrawalArgCurrency(FunctionCallInfo fcinfo, int argno)
{
	char	   *code = WithdrawalArgText(fcinfo, argno, "currency", 3);

	WithdrawalCheckCurrency(code);
	return code;
}

char *
WithdrawalUuidText(const pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

void
WithdrawalRaiseUnknownWithdrawal(const pg_uuid_t *id)
{
	ereport(ERROR,
			(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
			 errmsg("unknown withdrawal %s", WithdrawalUuidText(id))));
	pg_unreachable();
}

pg_uuid_t *
WithdrawalNewUuid(void)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	if (!pg_strong_random(uuid->data, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
	/* RFC 4122 version 4, variant 1 */
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x40;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;
	return uuid;
}

/*
 * A fresh random UUID whose first byte is the account's logical partition:
 * the first byte of SHA-256 of the account id in UTF-8.  A sharded
 * deployment's router (router/withdrawal_router.sql) sends a call keyed by
 * such an id straight to the shard that holds the account, without asking
 * every shard; on one server the byte is merely not random.  The UUID stays
 * a valid version 4 one with 114 random bits.
 */
pg_uuid_t *
WithdrawalNewAccountUuid(const char *account_id)
{
	pg_uuid_t  *uuid = WithdrawalNewUuid();
	const char *utf8 = pg_server_to_any(account_id, strlen(account_id), PG_UTF8);
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) utf8, strlen(utf8)) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute a SHA-256 digest: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	uuid->data[0] = digest[0];
	return uuid;
}

/*
 * The library's statements are written for the tables of its own version:
 * between the installation of a new library and ALTER EXTENSION UPDATE,
 * every call stops here with a clear error instead of failing somewhere
 * on a missing column.
 */
static void
check_schema_version(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *version = NULL;

	if (schema_version_checked)
		return;
	WithdrawalConfigCacheInit();
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("withdrawal"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (version != NULL && strcmp(version, WITHDRAWAL_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"withdrawal\" is at version %s in this database, but its library is version %s",
						version, WITHDRAWAL_VERSION),
				 errhint("Run ALTER EXTENSION withdrawal UPDATE.")));
	schema_version_checked = true;
}

/* A plan kept for the life of the backend, prepared with cursor options */
static SPIPlanPtr
prepare_kept(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
			 int cursor_options)
{
	check_schema_version();
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

		if (p == NULL)
			elog(ERROR, "SPI_prepare_cursor failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}

SPIPlanPtr
WithdrawalPrepare(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	return prepare_kept(plan, sql, nargs, argtypes, 0);
}

SPIPlanPtr
WithdrawalPrepareCustom(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	return prepare_kept(plan, sql, nargs, argtypes, CURSOR_OPT_CUSTOM_PLAN);
}

void
WithdrawalExecute(SPIPlanPtr plan, Datum *values, const char *nulls,
				  bool read_only, long count, int expected)
{
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, count);

	if (rc != expected)
		elog(ERROR, "SPI_execute_plan returned %s, expected %s",
			 SPI_result_code_string(rc), SPI_result_code_string(expected));
}

void
WithdrawalExecuteOnce(const char *sql, int nargs, Oid *argtypes,
					  Datum *values, const char *nulls, int expected)
{
	int			rc;

	check_schema_version();
	rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "SPI_execute_with_args returned %s, expected %s",
			 SPI_result_code_string(rc), SPI_result_code_string(expected));
}

int
WithdrawalExecuteMapped(SPIPlanPtr plan, Datum *values, const char *nulls,
						long count, int expected, const int *codes, int ncodes)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int caught = 0;

	PG_TRY();
	{
		WithdrawalExecute(plan, values, nulls, false, count, expected);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			i;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		for (i = 0; i < ncodes; i++)
			if (edata->sqlerrcode == codes[i])
				caught = codes[i];
		if (caught == 0)
			PG_RE_THROW();
		FlushErrorState();
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return caught;
}

Datum
WithdrawalSpiGet(int row, int col, bool *isnull)
{
	Assert(row < SPI_processed);
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						 col, isnull);
}

char *
WithdrawalSpiGetText(int row, int col)
{
	Assert(row < SPI_processed);
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

char *
WithdrawalActor(void)
{
	return GetUserNameFromId(GetSessionUserId(), false);
}

Oid
WithdrawalRelationOid(const char *relname)
{
	Oid			oid;
	int			i;

	for (i = 0; i < RELATION_CACHE_SIZE && relation_cache[i].name[0] != '\0'; i++)
		if (strcmp(relation_cache[i].name, relname) == 0 &&
			OidIsValid(relation_cache[i].oid))
			return relation_cache[i].oid;

	WithdrawalConfigCacheInit();
	oid = get_relname_relid(relname, get_namespace_oid("withdrawal", false));
	if (!OidIsValid(oid))
		elog(ERROR, "relation withdrawal.%s does not exist", relname);
	for (i = 0; i < RELATION_CACHE_SIZE; i++)
		if (relation_cache[i].name[0] == '\0' ||
			strcmp(relation_cache[i].name, relname) == 0)
		{
			strlcpy(relation_cache[i].name, relname, NAMEDATALEN);
			relation_cache[i].oid = oid;
			break;
		}
	return oid;
}

bool
WithdrawalIndexFetch(const char *relname, const char *indexname, int nkeys,
					 const Datum *keys, int ncolumns,
					 const char *const *columns, Datum *values, bool *nulls)
{
	Relation	rel;
	Relation	index;
	ScanKeyData scankeys[INDEX_MAX_KEYS];
	SysScanDesc scan;
	Snapshot	snapshot;
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	int			i;

	Assert(nkeys <= INDEX_MAX_KEYS);
	check_schema_version();
	rel = table_open(WithdrawalRelationOid(relname), AccessShareLock);
	index = index_open(WithdrawalRelationOid(indexname), AccessShareLock);
	for (i = 0; i < nkeys; i++)
	{
		Oid			opfamily = index->rd_opfamily[i];
		Oid			type = index->rd_opcintype[i];
		Oid			eqop = get_opfamily_member(opfamily, type, type,
											   BTEqualStrategyNumber);

		/* systable_beginscan takes heap attribute numbers */
		ScanKeyEntryInitialize(&scankeys[i], 0, index->rd_index->indkey.values[i],
							   BTEqualStrategyNumber,
							   InvalidOid, index->rd_indcollation[i],
							   get_opcode(eqop), keys[i]);
	}
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	scan = systable_beginscan(rel, RelationGetRelid(index), true, snapshot,
							  nkeys, scankeys);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		tupdesc = RelationGetDescr(rel);
		for (i = 0; i < ncolumns; i++)
		{
			int			attnum = SPI_fnumber(tupdesc, columns[i]);
			Form_pg_attribute att;

			if (attnum <= 0)
				elog(ERROR, "column %s.%s does not exist", relname, columns[i]);
			att = TupleDescAttr(tupdesc, attnum - 1);
			values[i] = heap_getattr(tuple, attnum, tupdesc, &nulls[i]);
			if (!nulls[i])
				values[i] = datumCopy(values[i], att->attbyval, att->attlen);
		}
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return HeapTupleIsValid(tuple);
}

/*
 * Called before (re)loading any cached configuration: registers, once per
 * backend, the callback that drops the caches when config_changed()
 * invalidates a table, and refreshes the table OIDs it matches (they change
 * when the extension is dropped and created again; dropping the old tables
 * invalidated them, which flushed the caches).
 */
void
WithdrawalConfigCacheInit(void)
{
	Oid			nsp;
	int			i;

	nsp = get_namespace_oid("withdrawal", false);
	for (i = 0; i < lengthof(config_tables); i++)
		config_table_oids[i] = get_relname_relid(config_tables[i], nsp);
	if (!config_callback_registered)
	{
		CacheRegisterRelcacheCallback(config_relcache_callback, (Datum) 0);
		config_callback_registered = true;
	}
}

/*
 * A relcache invalidation of a configuration table (or a full reset) drops
 * the caches; they are cheap to reload and configuration changes are rare.
 */
static void
config_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	schema_version_checked = false;

	for (i = 0; i < RELATION_CACHE_SIZE; i++)
		if (!OidIsValid(relid) || relation_cache[i].oid == relid)
			relation_cache[i].oid = InvalidOid;

	if (OidIsValid(relid))
	{
		bool		ours = false;

		for (i = 0; i < lengthof(config_tables); i++)
			ours |= (relid == config_table_oids[i]);
		if (!ours)
			return;
	}
	if (currency_codes)
	{
		pfree(currency_codes);
		currency_codes = NULL;
		currency_count = 0;
	}
	WithdrawalPolicyInvalidate();
}

/*
 * Trigger: refuses UPDATE, DELETE and TRUNCATE on append-only tables.
 */
Datum
withdrawal_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "withdrawal_append_only: not called by trigger manager");

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("table \"%s\" is append-only",
					RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("Rows of this table are never updated or deleted; corrections are new rows.")));
	PG_RETURN_NULL();
}

/*
 * Trigger: a configuration table changed, so every backend must drop its
 * cached copy.  The relcache invalidation is sent at commit and reaches all
 * backends, including the dispatcher workers.
 */
Datum
withdrawal_config_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "withdrawal_config_changed: not called by trigger manager");

	CacheInvalidateRelcache(trigdata->tg_relation);
	/* a channel enabled or repaired may have payouts waiting: claim now */
	WithdrawalWakeWorkersAtCommit();
	return PointerGetDatum(NULL);
}
