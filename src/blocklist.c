/*-------------------------------------------------------------------------
 *
 * blocklist.c
 *	  The blocklist: destination tokens, exact lookups, the per-backend
 *	  cache of IP networks, and block()/unblock().
 *
 * The screen (policy.c) asks which kinds of entry a request must be
 * looked up against before it takes its counter locks, and looks them up
 * after, with the snapshot it takes then.  Hits are recorded as rejected
 * (reason blocklist:<list>); no money moves.
 *
 * The blocklist is not cached (it may be large): exact kinds are primary
 * key lookups, IP entries a search of a sorted copy of the IP entries (or
 * a GiST containment search when there are too many).  Which kinds of
 * entry exist is cached too, so that an empty blocklist costs nothing.
 * Both copies follow the invalidation scheme of cache.h.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/blocklist.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "args.h"
#include "audit.h"
#include "blocklist.h"
#include "cache.h"
#include "config_audit.h"
#include "indexscan.h"
#include "json.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_block);
PG_FUNCTION_INFO_V1(withdrawal_unblock);

#define BLOCKLIST_MAX_VALUE 256
#define BLOCKLIST_MAX_LIST_NAME 63

/* Kinds of blocklist entry, in the order hits are reported */
enum
{
	BLOCK_ACCOUNT,
	BLOCK_DESTINATION,
	BLOCK_DEVICE,
	BLOCK_IP,
	BLOCK_KINDS
};
StaticAssertDecl(BLOCK_KINDS == WITHDRAWAL_BLOCK_KINDS, "blocklist kinds");
static const char *const block_kind_names[BLOCK_KINDS] = {"account", "destination", "device", "ip"};

/* Which blocklist kinds have entries */
static WithdrawalCache kinds_cache = WITHDRAWAL_CACHE("blocklist");
static bool block_kind_present[BLOCK_KINDS];

/*
 * Loads which kinds of blocklist entry exist, in the caller's SPI
 * connection.
 */
static void
ensure_block_kinds(void)
{
	static SPIPlanPtr plan = NULL;
	uint64		begin;
	int			k;

	if (WithdrawalCacheValid(&kinds_cache))
		return;
	begin = WithdrawalCacheLoadBegin(&kinds_cache);

	WithdrawalPrepare(&plan,
					  "SELECT EXISTS (SELECT FROM withdrawal.blocklist WHERE kind = 'account'),"
					  " EXISTS (SELECT FROM withdrawal.blocklist WHERE kind = 'destination'),"
					  " EXISTS (SELECT FROM withdrawal.blocklist WHERE kind = 'device'),"
					  " EXISTS (SELECT FROM withdrawal.blocklist WHERE kind = 'ip')",
					  0, NULL);
	WithdrawalExecute(plan, NULL, NULL, true, 1, SPI_OK_SELECT);
	for (k = 0; k < BLOCK_KINDS; k++)
	{
		bool		isnull;

		block_kind_present[k] = DatumGetBool(WithdrawalSpiGet(0, k + 1, &isnull));
	}
	WithdrawalCacheLoadEnd(&kinds_cache, begin);
}

/*
 * Top-level string and number members of the destination: the tokens that
 * destination blocklist entries match (a List of C strings).
 */
static List *
destination_tokens(Jsonb *destination)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken r;
	List	   *tokens = NIL;

	if (!JB_ROOT_IS_OBJECT(destination) || JB_ROOT_COUNT(destination) == 0)
		return NIL;
	it = JsonbIteratorInit(&destination->root);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *s = NULL;

		if (r != WJB_VALUE)
			continue;
		if (v.type == jbvString)
			s = pnstrdup(v.val.string.val, v.val.string.len);
		else if (v.type == jbvNumeric)
			s = DatumGetCString(DirectFunctionCall1(numeric_out,
													NumericGetDatum(v.val.numeric)));
		if (s != NULL && s[0] != '\0' && strlen(s) <= BLOCKLIST_MAX_VALUE)
			tokens = lappend(tokens, s);
	}
	return tokens;
}


/*
 * The first (by name) unexpired list holding (kind, value), or NULL:
 * a primary-key range scan of the blocklist.
 */
static char *
blocklist_exact(const char *kind, const char *value, TimestampTz now, Snapshot snapshot)
{
	StrategyNumber strategies[2] = {BTEqualStrategyNumber, BTEqualStrategyNumber};
	Datum		values[2];
	WithdrawalIndexScan s;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	AttrNumber	a_list,
				a_expires;
	char	   *best = NULL;

	values[0] = CStringGetTextDatum(kind);
	values[1] = CStringGetTextDatum(value);
	WithdrawalIndexScanOpen(&s, "blocklist", WITHDRAWAL_INDEX_BLOCKLIST_PKEY, 2,
							strategies, values, snapshot);
	tupdesc = RelationGetDescr(s.rel);
	a_list = WithdrawalColumnNumber(s.rel, "list_name");
	a_expires = WithdrawalColumnNumber(s.rel, "expires_at");
	while (HeapTupleIsValid(tuple = systable_getnext(s.scan)))
	{
		bool		isnull;
		Datum		expires = heap_getattr(tuple, a_expires, tupdesc, &isnull);
		char	   *list;

		if (!isnull && DatumGetTimestampTz(expires) <= now)
			continue;
		list = TextDatumGetCString(heap_getattr(tuple, a_list, tupdesc, &isnull));
		if (best == NULL || strcmp(list, best) < 0)
			best = list;
	}
	WithdrawalIndexScanClose(&s);
	return best;
}


/*
 * IP entries of the blocklist, cached per backend as networks sorted by
 * (family, prefix length, masked address, list name), and reloaded with
 * the blocklist kinds when the blocklist changes (nets_cache).  A lookup masks the
 * request's address to each prefix length present and binary-searches:
 * microseconds, where the GiST search through SPI took a good part of a
 * request.  Lists longer than BLOCKED_NETS_MAX are searched through SPI.
 */
#define BLOCKED_NETS_MAX 200000

typedef struct BlockedNet
{
	unsigned char family;
	unsigned char bits;
	unsigned char addr[16];		/* masked to bits */
	bool		expires;
	TimestampTz expires_at;
	char	   *list_name;
} BlockedNet;

static MemoryContext nets_cxt = NULL;
static BlockedNet *blocked_nets = NULL;
static int	blocked_net_count = 0;
static bool blocked_nets_too_many = false;
static WithdrawalCache nets_cache = WITHDRAWAL_CACHE("blocklist");

static void
mask_address(unsigned char *addr, int maxbytes, int bits)
{
	int			i;

	for (i = 0; i < maxbytes; i++)
	{
		int			keep = bits - i * 8;

		if (keep >= 8)
			continue;
		addr[i] &= keep <= 0 ? 0 : (unsigned char) (0xFF << (8 - keep));
	}
}

static int
blocked_net_cmp(const void *a, const void *b)
{
	const BlockedNet *x = a;
	const BlockedNet *y = b;
	int			c;

	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	if (x->bits != y->bits)
		return x->bits < y->bits ? -1 : 1;
	c = memcmp(x->addr, y->addr, sizeof(x->addr));
	if (c != 0)
		return c;
	return strcmp(x->list_name, y->list_name);
}

/*
 * Loads the IP entries (in the caller's SPI connection).
 */
static void
load_blocked_nets(void)
{
	static SPIPlanPtr plan = NULL;
	uint64		begin = WithdrawalCacheLoadBegin(&nets_cache);
	MemoryContext cxt;
	MemoryContext scratch;
	MemoryContext old;
	BlockedNet *nets;
	uint64		i;

	WithdrawalPrepare(&plan,
					  "SELECT net, list_name, expires_at FROM withdrawal.blocklist"
					  " WHERE kind = 'ip' LIMIT " CppAsString2(BLOCKED_NETS_MAX) " + 1",
					  0, NULL);
	WithdrawalExecute(plan, NULL, NULL, true, 0, SPI_OK_SELECT);

	cxt = AllocSetContextCreate(CurrentMemoryContext, "withdrawal blocked networks",
								ALLOCSET_DEFAULT_SIZES);
	/* per-row garbage goes to a scratch context, not the SPI procedure's */
	scratch = AllocSetContextCreate(CurrentMemoryContext, "withdrawal scratch",
									ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(scratch);
	nets = MemoryContextAllocZero(cxt, sizeof(BlockedNet) * (SPI_processed + 1));
	for (i = 0; i < SPI_processed && SPI_processed <= BLOCKED_NETS_MAX; i++)
	{
		bool		isnull;
		inet	   *net = DatumGetInetPP(WithdrawalSpiGet(i, 1, &isnull));
		Datum		expires = WithdrawalSpiGet(i, 3, &isnull);

		nets[i].family = ip_family(net);
		nets[i].bits = ip_bits(net);
		memcpy(nets[i].addr, ip_addr(net), ip_addrsize(net));
		mask_address(nets[i].addr, ip_addrsize(net), ip_bits(net));
		nets[i].expires = !isnull;
		nets[i].expires_at = isnull ? 0 : DatumGetTimestampTz(expires);
		nets[i].list_name = MemoryContextStrdup(cxt, WithdrawalSpiGetText(i, 2));
	}
	blocked_nets_too_many = SPI_processed > BLOCKED_NETS_MAX;
	blocked_net_count = blocked_nets_too_many ? 0 : (int) SPI_processed;
	MemoryContextSwitchTo(old);
	MemoryContextDelete(scratch);
	SPI_freetuptable(SPI_tuptable);
	qsort(nets, blocked_net_count, sizeof(BlockedNet), blocked_net_cmp);

	MemoryContextSetParent(cxt, CacheMemoryContext);
	if (nets_cxt)
		MemoryContextDelete(nets_cxt);
	nets_cxt = cxt;
	blocked_nets = nets;
	WithdrawalCacheLoadEnd(&nets_cache, begin);
}

/*
 * The first (by name) unexpired list with an address or network that
 * contains ip (inet's >>=), or NULL.
 */
static char *
blocklist_ip(const char *ip, TimestampTz now)
{
	inet	   *addr = DatumGetInetPP(DirectFunctionCall1(inet_in, CStringGetDatum(ip)));
	char	   *best = NULL;
	int			bits;

	if (!WithdrawalCacheValid(&nets_cache))
		load_blocked_nets();
	if (blocked_nets_too_many)
	{
		static SPIPlanPtr plan = NULL;
		Oid			types[2] = {TEXTOID, TIMESTAMPTZOID};
		Datum		values[2];
		bool		isnull;

		WithdrawalPrepare(&plan,
						  "SELECT list_name FROM withdrawal.blocklist"
						  " WHERE kind = 'ip' AND net >>= $1::inet"
						  "   AND (expires_at IS NULL OR expires_at > $2)"
						  " ORDER BY list_name LIMIT 1",
						  2, types);
		values[0] = CStringGetTextDatum(ip);
		values[1] = TimestampTzGetDatum(now);
		WithdrawalExecute(plan, values, NULL, false, 1, SPI_OK_SELECT);
		return SPI_processed == 0 ? NULL : TextDatumGetCString(WithdrawalSpiGet(0, 1, &isnull));
	}

	/* every prefix length up to the address's own */
	for (bits = 0; bits <= ip_bits(addr); bits++)
	{
		BlockedNet	key;
		int			lo = 0,
					hi = blocked_net_count;

		memset(&key, 0, sizeof(key));
		key.family = ip_family(addr);
		key.bits = bits;
		memcpy(key.addr, ip_addr(addr), ip_addrsize(addr));
		mask_address(key.addr, ip_addrsize(addr), bits);
		key.list_name = "";
		/* the first entry >= key */
		while (lo < hi)
		{
			int			mid = lo + (hi - lo) / 2;

			if (blocked_net_cmp(&blocked_nets[mid], &key) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; lo < blocked_net_count; lo++)
		{
			BlockedNet *n = &blocked_nets[lo];

			if (n->family != key.family || n->bits != key.bits ||
				memcmp(n->addr, key.addr, sizeof(key.addr)) != 0)
				break;
			if (n->expires && n->expires_at <= now)
				continue;
			if (best == NULL || strcmp(n->list_name, best) < 0)
				best = pstrdup(n->list_name);
			break;				/* later entries of this network sort after */
		}
	}
	return best;
}

/* See blocklist.h */
bool
WithdrawalBlocklistPlan(const WithdrawalRequestData *req, WithdrawalBlockPlan *plan)
{
	bool		any = false;
	int			k;

	ensure_block_kinds();
	plan->tokens = NIL;
	plan->lookup[BLOCK_ACCOUNT] = block_kind_present[BLOCK_ACCOUNT];
	if (block_kind_present[BLOCK_DESTINATION])
		plan->tokens = destination_tokens(req->destination);
	plan->lookup[BLOCK_DESTINATION] = plan->tokens != NIL;
	plan->lookup[BLOCK_DEVICE] = block_kind_present[BLOCK_DEVICE] && req->device_id != NULL;
	plan->lookup[BLOCK_IP] = block_kind_present[BLOCK_IP] && req->ip != NULL;
	for (k = 0; k < BLOCK_KINDS; k++)
		any |= plan->lookup[k];
	return any;
}

/* See blocklist.h */
char *
WithdrawalBlocklistMatch(const WithdrawalRequestData *req, const WithdrawalBlockPlan *plan,
						 TimestampTz now, Snapshot snapshot)
{
	char	   *list = NULL;

	if (plan->lookup[BLOCK_ACCOUNT])
		list = blocklist_exact("account", req->account_id, now, snapshot);
	if (list == NULL && plan->lookup[BLOCK_DESTINATION])
	{
		ListCell   *lc;
		char	   *best = NULL;

		foreach(lc, plan->tokens)
		{
			char	   *hit = blocklist_exact("destination", lfirst(lc), now, snapshot);

			if (hit != NULL && (best == NULL || strcmp(hit, best) < 0))
				best = hit;
		}
		list = best;
	}
	if (list == NULL && plan->lookup[BLOCK_DEVICE])
		list = blocklist_exact("device", req->device_id, now, snapshot);
	if (list == NULL && plan->lookup[BLOCK_IP])
		list = blocklist_ip(req->ip, now);
	return list;
}

/*
 * The kind argument of block() and unblock().
 */
static const char *
block_kind_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *kind = WithdrawalArgText(fcinfo, argno, "kind", 32);
	int			k;

	for (k = 0; k < BLOCK_KINDS; k++)
		if (strcmp(kind, block_kind_names[k]) == 0)
			return block_kind_names[k];
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown blocklist kind \"%s\"", kind),
			 errhint("Kinds are account, destination, device and ip.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * The list_name argument: a lower-case identifier, like the table's CHECK.
 */
static char *
list_name_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *name = WithdrawalArgText(fcinfo, argno, "list_name", BLOCKLIST_MAX_LIST_NAME);
	const char *c;

	for (c = name; *c; c++)
	{
		bool		ok = (*c >= 'a' && *c <= 'z') ||
			(c != name && ((*c >= '0' && *c <= '9') || *c == '_' || *c == '.' || *c == '-'));

		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid list_name \"%s\"", name),
					 errdetail("A list name starts with a lower-case letter followed by lower-case letters, digits, \"_\", \".\" or \"-\".")));
	}
	return name;
}

/*
 * The stored spelling of a blocklist value: the canonical address or
 * network for kind ip, so that "::ffff:203.0.113.0/120" blocks the IPv4
 * clients it names and unblock() finds an entry whichever spelling it is
 * given; account and device values are identifiers.
 */
static char *
blocklist_value(const char *kind, char *value)
{
	if (strcmp(kind, "ip") == 0)
		return WithdrawalCanonicalIp(value, false, "blocklist value");
	if (strcmp(kind, "account") == 0 || strcmp(kind, "device") == 0)
		WithdrawalCheckIdentifier(value, "value");
	return value;
}

/*
 * The expires_at argument of block(): NULL (the entry never expires) or a
 * finite instant after now().  An entry that is already expired when
 * written would block nothing while looking as if it did, and "infinity"
 * would be a second spelling of NULL, which every reader of the table
 * would then have to know about.
 */
static void
check_block_expiry(FunctionCallInfo fcinfo, int argno)
{
	TimestampTz expires;

	if (PG_ARGISNULL(argno))
		return;
	expires = PG_GETARG_TIMESTAMPTZ(argno);
	if (TIMESTAMP_IS_NOEND(expires))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expires_at must be finite"),
				 errhint("Use NULL for an entry that never expires.")));
	if (expires <= GetCurrentTransactionStartTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expires_at must be in the future"),
				 errdetail("An entry that has already expired blocks nothing.")));
}

/*
 * block(kind, value, list_name, note, expires_at): adds an entry (true), or
 * updates the note and expiry of an existing one (false).  Audited.
 */
Datum
withdrawal_block(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, NAMEOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	const char *kind = block_kind_arg(fcinfo, 0);
	char	   *value = WithdrawalArgText(fcinfo, 1, "value", BLOCKLIST_MAX_VALUE);
	char	   *list_name = list_name_arg(fcinfo, 2);
	char	   *note = WithdrawalArgTextOrNull(fcinfo, 3, "note", WITHDRAWAL_MAX_REASON);
	char	   *expires = NULL;
	char	   *actor = WithdrawalActor();
	NameData	actor_name;
	bool		inserted;
	bool		isnull;
	const char *keys[5] = {"kind", "value", "list_name", "note", "expires_at"};
	const char *detail[5];

	value = blocklist_value(kind, value);
	check_block_expiry(fcinfo, 4);
	if (!PG_ARGISNULL(4))
		expires = DatumGetCString(DirectFunctionCall1(timestamptz_out, PG_GETARG_DATUM(4)));

	SPI_connect();
	WithdrawalPrepare(&plan,
					  "INSERT INTO withdrawal.blocklist (kind, value, list_name, note, expires_at, added_by)"
					  " VALUES ($1, $2, $3, $4, $5, $6)"
					  " ON CONFLICT (kind, value, list_name)"
					  " DO UPDATE SET note = EXCLUDED.note, expires_at = EXCLUDED.expires_at"
					  " RETURNING xmax = 0",
					  6, types);
	namestrcpy(&actor_name, actor);
	values[0] = CStringGetTextDatum(kind);
	values[1] = CStringGetTextDatum(value);
	values[2] = CStringGetTextDatum(list_name);
	values[3] = note ? CStringGetTextDatum(note) : (Datum) 0;
	nulls[3] = note ? ' ' : 'n';
	values[4] = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	nulls[4] = PG_ARGISNULL(4) ? 'n' : ' ';
	values[5] = NameGetDatum(&actor_name);
	/* audited below, not by the table's trigger */
	WithdrawalConfigApiWrite(true);
	WithdrawalExecute(plan, values, nulls, false, 0, SPI_OK_INSERT_RETURNING);
	WithdrawalConfigApiWrite(false);
	inserted = DatumGetBool(WithdrawalSpiGet(0, 1, &isnull));

	detail[0] = kind;
	detail[1] = value;
	detail[2] = list_name;
	detail[3] = note;
	detail[4] = expires;
	WithdrawalAudit(inserted ? "block" : "block_update", actor, NULL,
					strcmp(kind, "account") == 0 ? value : NULL, NULL, NULL,
					WithdrawalDetail(5, keys, detail, 0));
	SPI_finish();
	PG_RETURN_BOOL(inserted);
}

/*
 * unblock(kind, value, list_name): removes an entry; false when there was
 * none.  Audited when it removes one.
 */
Datum
withdrawal_unblock(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	const char *kind = block_kind_arg(fcinfo, 0);
	char	   *value = WithdrawalArgText(fcinfo, 1, "value", BLOCKLIST_MAX_VALUE);
	char	   *list_name = list_name_arg(fcinfo, 2);
	const char *keys[3] = {"kind", "value", "list_name"};
	const char *detail[3];
	bool		removed;

	value = blocklist_value(kind, value);
	SPI_connect();
	WithdrawalPrepare(&plan,
					  "DELETE FROM withdrawal.blocklist WHERE kind = $1 AND value = $2 AND list_name = $3",
					  3, types);
	values[0] = CStringGetTextDatum(kind);
	values[1] = CStringGetTextDatum(value);
	values[2] = CStringGetTextDatum(list_name);
	WithdrawalConfigApiWrite(true);
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_DELETE);
	WithdrawalConfigApiWrite(false);
	removed = SPI_processed > 0;
	if (removed)
	{
		detail[0] = kind;
		detail[1] = value;
		detail[2] = list_name;
		WithdrawalAudit("unblock", NULL, NULL,
						strcmp(kind, "account") == 0 ? value : NULL, NULL, NULL,
						WithdrawalDetail(3, keys, detail, 0));
	}
	SPI_finish();
	PG_RETURN_BOOL(removed);
}
