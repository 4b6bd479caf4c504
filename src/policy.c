/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  Risk policy and channel rules applied to withdrawal requests, the
 *	  blocklist, and the per-backend caches of the policy and channel tables.
 *
 * Channel checks (WD007 unknown, WD004 disabled, outside the opening window
 * or not yet released to the account) run before the policy screen.  The
 * screen then applies, in this order:
 *
 *	 1. min_amount / max_amount						WD003
 *	 2. blocklist (account, destination, device, IP)	recorded as rejected,
 *													reason blocklist:<list>
 *	 3. KYC level at or above kyc_threshold			WD003
 *	 4. daily count and amount per account and		WD003
 *		currency, in the policy's time zone
 *	 5. velocity per account, device and IP over	WD003
 *		the sliding velocity_window
 *	 6. review_threshold							review (funds held)
 *
 * Frozen accounts are refused by request() itself (WD006) before any of
 * this, from the row it has already read.
 *
 * Counters are index range scans bounded by the window (the account's
 * withdrawals since the start of its policy day or of the velocity window,
 * whichever is earlier; the device's and the IP's within the velocity
 * window), all in one statement together with the blocklist lookup, so a
 * request's cost depends on recent activity, never on the whole history.
 * Before counting, transaction-scoped advisory locks on the account, the
 * device and the IP (only for the limits that are configured) serialise
 * concurrent requests that share them, and the counting statement takes a
 * fresh snapshot after the locks, so two concurrent requests cannot both
 * take the last slot of a limit.
 *
 * The policy and channel tables are small and read on every request, so
 * each backend keeps a copy, loaded whole on first use and dropped when the
 * config_changed trigger invalidates the table (see util.c).  The blocklist
 * may be large and is not cached; only which kinds of entry exist is, so
 * that an empty blocklist costs nothing.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/policy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/inet.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "audit.h"
#include "policy.h"
#include "review.h"
#include "util.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_channel_open_at);
PG_FUNCTION_INFO_V1(withdrawal_channel_released);
PG_FUNCTION_INFO_V1(withdrawal_policy_day_start);
PG_FUNCTION_INFO_V1(withdrawal_block);
PG_FUNCTION_INFO_V1(withdrawal_unblock);

#define POLICY_KEY_LEN 4		/* "USD" or "*" */
#define CHANNEL_KEY_LEN NAMEDATALEN
#define BLOCKLIST_MAX_VALUE 256
#define BLOCKLIST_MAX_LIST_NAME 63

/* Advisory lock classes of the counters: "WDPA", "WDPD", "WDPI" */
#define POLICY_LOCK_ACCOUNT		0x57445041
#define POLICY_LOCK_DEVICE		0x57445044
#define POLICY_LOCK_IP			0x57445049

/* Statuses whose money did not stay out: not counted by daily limits */
#define NOT_COUNTED_STATUSES "('rejected', 'canceled', 'failed', 'returned')"

typedef struct WithdrawalPolicyEntry
{
	char		currency[POLICY_KEY_LEN];	/* hash key */
	int64		min_amount;
	int64		max_amount;		/* -1: none (likewise below) */
	int64		daily_amount_limit;
	int64		daily_count_limit;
	Interval	velocity_window;
	int64		velocity_account_limit;
	int64		velocity_device_limit;
	int64		velocity_ip_limit;
	int64		review_threshold;
	int64		kyc_threshold;
	int32		kyc_level_required;
	int64		four_eyes_threshold;
	char	   *timezone;
} WithdrawalPolicyEntry;

typedef struct WithdrawalChannelEntry
{
	char		name[CHANNEL_KEY_LEN];	/* hash key */
	bool		enabled;
	bool		has_window;
	TimeADT		open_from;		/* microseconds since local midnight */
	TimeADT		open_until;
	char	   *timezone;
	int32		release_percent;
} WithdrawalChannelEntry;

/* Kinds of blocklist entry, in the order hits are reported */
enum
{
	BLOCK_ACCOUNT,
	BLOCK_DESTINATION,
	BLOCK_DEVICE,
	BLOCK_IP,
	BLOCK_KINDS
};
static const char *const block_kind_names[BLOCK_KINDS] = {"account", "destination", "device", "ip"};

/*
 * Policy and channel caches.  Invalidation only bumps a counter (it may
 * arrive while a load is running SPI); the next use reloads.
 */
static MemoryContext policy_cxt = NULL;
static HTAB *policy_cache = NULL;
static HTAB *channel_cache = NULL;
static uint64 policy_inval_count = 0;
static uint64 policy_loaded_at = 0;
static bool policy_loaded = false;

/* Which blocklist kinds have entries, with the same scheme */
static bool block_kind_present[BLOCK_KINDS];
static uint64 block_inval_count = 0;
static uint64 block_loaded_at = 0;
static bool block_loaded = false;
static bool block_callback_registered = false;
static Oid	blocklist_oid = InvalidOid;

static int64
nullable_int8(int row, int col)
{
	bool		isnull;
	Datum		d = WithdrawalSpiGet(row, col, &isnull);

	return isnull ? -1 : DatumGetInt64(d);
}

static int64
nullable_int4(int row, int col)
{
	bool		isnull;
	Datum		d = WithdrawalSpiGet(row, col, &isnull);

	return isnull ? -1 : (int64) DatumGetInt32(d);
}

/*
 * Loads both tables into a new context, in the caller's SPI connection.
 * The new context hangs off the current (transaction) context until the
 * load has succeeded, so an error part-way leaks nothing.
 */
static void
load_caches(void)
{
	static SPIPlanPtr policy_plan = NULL;
	static SPIPlanPtr channel_plan = NULL;
	MemoryContext cxt;
	HASHCTL		ctl;
	HTAB	   *policies;
	HTAB	   *channels;
	uint64		i;
	uint64		inval_before = policy_inval_count;

	WithdrawalConfigCacheInit();
	cxt = AllocSetContextCreate(CurrentMemoryContext, "withdrawal policy cache",
								ALLOCSET_SMALL_SIZES);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = POLICY_KEY_LEN;
	ctl.entrysize = sizeof(WithdrawalPolicyEntry);
	ctl.hcxt = cxt;
	policies = hash_create("withdrawal policy", 16, &ctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	ctl.keysize = CHANNEL_KEY_LEN;
	ctl.entrysize = sizeof(WithdrawalChannelEntry);
	channels = hash_create("withdrawal channels", 16, &ctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	WithdrawalPrepare(&policy_plan,
					  "SELECT currency, min_amount, max_amount, daily_amount_limit,"
					  " daily_count_limit, velocity_window, velocity_account_limit,"
					  " velocity_device_limit, velocity_ip_limit, review_threshold,"
					  " kyc_threshold, kyc_level_required, four_eyes_threshold, timezone"
					  " FROM withdrawal.policy",
					  0, NULL);
	WithdrawalExecute(policy_plan, NULL, NULL, true, 0, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *currency = WithdrawalSpiGetText(i, 1);
		WithdrawalPolicyEntry *e;
		bool		isnull;

		if (strlen(currency) >= POLICY_KEY_LEN)
			continue;			/* the table's CHECK makes this impossible */
		e = hash_search(policies, currency, HASH_ENTER, NULL);
		e->min_amount = nullable_int8(i, 2);
		e->max_amount = nullable_int8(i, 3);
		e->daily_amount_limit = nullable_int8(i, 4);
		e->daily_count_limit = nullable_int4(i, 5);
		e->velocity_window = *DatumGetIntervalP(WithdrawalSpiGet(i, 6, &isnull));
		e->velocity_account_limit = nullable_int4(i, 7);
		e->velocity_device_limit = nullable_int4(i, 8);
		e->velocity_ip_limit = nullable_int4(i, 9);
		e->review_threshold = nullable_int8(i, 10);
		e->kyc_threshold = nullable_int8(i, 11);
		e->kyc_level_required = (int32) nullable_int4(i, 12);
		e->four_eyes_threshold = nullable_int8(i, 13);
		e->timezone = MemoryContextStrdup(cxt, WithdrawalSpiGetText(i, 14));
	}

	WithdrawalPrepare(&channel_plan,
					  "SELECT name, enabled, open_from, open_until, timezone, release_percent"
					  " FROM withdrawal.channel",
					  0, NULL);
	WithdrawalExecute(channel_plan, NULL, NULL, true, 0, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *name = WithdrawalSpiGetText(i, 1);
		WithdrawalChannelEntry *e;
		bool		isnull;
		Datum		d;

		if (strlen(name) >= CHANNEL_KEY_LEN)
			continue;			/* the table's CHECK makes this impossible */
		e = hash_search(channels, name, HASH_ENTER, NULL);
		e->enabled = DatumGetBool(WithdrawalSpiGet(i, 2, &isnull));
		d = WithdrawalSpiGet(i, 3, &isnull);
		e->has_window = !isnull;
		e->open_from = isnull ? 0 : DatumGetTimeADT(d);
		d = WithdrawalSpiGet(i, 4, &isnull);
		e->open_until = isnull ? 0 : DatumGetTimeADT(d);
		e->timezone = MemoryContextStrdup(cxt, WithdrawalSpiGetText(i, 5));
		e->release_percent = DatumGetInt32(WithdrawalSpiGet(i, 6, &isnull));
	}

	MemoryContextSetParent(cxt, CacheMemoryContext);
	if (policy_cxt)
		MemoryContextDelete(policy_cxt);
	policy_cxt = cxt;
	policy_cache = policies;
	channel_cache = channels;
	policy_loaded = true;
	policy_loaded_at = inval_before;
}

/*
 * Makes sure the caches reflect the tables as of an invalidation-free load.
 * An invalidation that arrived during the load makes the next call reload.
 */
static void
ensure_caches(void)
{
	if (!policy_loaded || policy_loaded_at != policy_inval_count)
		load_caches();
}

void
WithdrawalPolicyInvalidate(void)
{
	policy_inval_count++;
}

/*
 * Relcache callback for the blocklist (registered here: util.c watches
 * the configuration tables only).
 */
static void
blocklist_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == blocklist_oid)
		block_inval_count++;
}

/*
 * Loads which kinds of blocklist entry exist, in the caller's SPI
 * connection.
 */
static void
ensure_block_kinds(void)
{
	static SPIPlanPtr plan = NULL;
	uint64		inval_before;
	int			k;

	if (block_loaded && block_loaded_at == block_inval_count)
		return;
	if (!block_callback_registered)
	{
		CacheRegisterRelcacheCallback(blocklist_relcache_callback, (Datum) 0);
		block_callback_registered = true;
	}
	inval_before = block_inval_count;
	blocklist_oid = get_relname_relid("blocklist", get_namespace_oid("withdrawal", false));

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
	block_loaded = true;
	block_loaded_at = inval_before;
}

/*
 * The policy row of a currency, falling back to the '*' row; NULL when
 * there is neither (then no limits apply).
 */
static WithdrawalPolicyEntry *
policy_for(const char *currency)
{
	WithdrawalPolicyEntry *e = NULL;

	ensure_caches();
	if (strlen(currency) < POLICY_KEY_LEN)
		e = hash_search(policy_cache, currency, HASH_FIND, NULL);
	if (e == NULL)
		e = hash_search(policy_cache, "*", HASH_FIND, NULL);
	return e;
}

/*
 * The channel row; WD007 when unknown.
 */
static WithdrawalChannelEntry *
channel_for(const char *name)
{
	WithdrawalChannelEntry *e = NULL;

	ensure_caches();
	if (strlen(name) < CHANNEL_KEY_LEN)
		e = hash_search(channel_cache, name, HASH_FIND, NULL);
	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
				 errmsg("unknown channel \"%s\"", name),
				 errhint("Channels are listed in withdrawal.channel.")));
	return e;
}

/*
 * Time of day (microseconds since local midnight) of instant at in time
 * zone tz.
 */
static TimeADT
local_time_of_day(const char *tz, TimestampTz at)
{
	Timestamp	local;
	int64		tod;

	local = DatumGetTimestamp(DirectFunctionCall2(timestamptz_zone,
												  CStringGetTextDatum(tz),
												  TimestampTzGetDatum(at)));
	tod = local % USECS_PER_DAY;
	if (tod < 0)
		tod += USECS_PER_DAY;
	return (TimeADT) tod;
}

/*
 * Whether the channel's opening window contains instant at.  The window is
 * [open_from, open_until) in local wall-clock time; open_until before
 * open_from crosses midnight; equal bounds are an empty window ('24:00' is
 * a valid open_until for "until the end of the day").
 */
static bool
channel_window_open(const WithdrawalChannelEntry *c, TimestampTz at)
{
	TimeADT		tod;

	if (!c->has_window)
		return true;
	if (TIMESTAMP_NOT_FINITE(at))
		return false;
	tod = local_time_of_day(c->timezone, at);
	if (c->open_from < c->open_until)
		return c->open_from <= tod && tod < c->open_until;
	if (c->open_from > c->open_until)
		return tod >= c->open_from || tod < c->open_until;
	return false;
}

/*
 * Staged-release bucket 0..99 of an account on a channel: the first 8 bytes
 * of SHA-256("<channel>:<account_id>") as a big-endian integer, modulo 100.
 * SHA-256 is the same on every platform and version (PostgreSQL's
 * hash_bytes is not: it depends on endianness), and salting with the
 * channel name gives each channel its own early cohort.  Raising
 * release_percent only ever adds accounts.
 */
static int
release_bucket(const char *channel, const char *account_id)
{
	StringInfoData buf;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	uint64		v = 0;
	int			i;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s:%s", channel, account_id);
	if (EVP_Digest(buf.data, buf.len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 8)
		elog(ERROR, "SHA-256 digest failed");
	for (i = 0; i < 8; i++)
		v = (v << 8) | md[i];
	pfree(buf.data);
	return (int) (v % 100);
}

static bool
channel_released(const WithdrawalChannelEntry *c, const char *account_id)
{
	if (c->release_percent >= 100)
		return true;
	if (c->release_percent <= 0)
		return false;
	return release_bucket(c->name, account_id) < c->release_percent;
}

static char *
format_time_of_day(TimeADT t)
{
	return DatumGetCString(DirectFunctionCall1(time_out, TimeADTGetDatum(t)));
}

void
WithdrawalChannelCheck(const WithdrawalRequestData *req)
{
	WithdrawalChannelEntry *c = channel_for(req->channel);

	if (!c->enabled)
		ereport(ERROR,
				(errcode(ERRCODE_WD_WITHDRAWALS_CLOSED),
				 errmsg("withdrawals through channel \"%s\" are closed", req->channel),
				 errdetail("The channel is disabled.")));
	if (!channel_window_open(c, GetCurrentTransactionStartTimestamp()))
		ereport(ERROR,
				(errcode(ERRCODE_WD_WITHDRAWALS_CLOSED),
				 errmsg("withdrawals through channel \"%s\" are closed at this time", req->channel),
				 errdetail("The channel is open from %s until %s, time zone %s.",
						   format_time_of_day(c->open_from),
						   format_time_of_day(c->open_until), c->timezone)));
	if (!channel_released(c, req->account_id))
		ereport(ERROR,
				(errcode(ERRCODE_WD_WITHDRAWALS_CLOSED),
				 errmsg("withdrawals through channel \"%s\" are not open to account \"%s\" yet",
						req->channel, req->account_id),
				 errdetail("The channel is being released to %d%% of accounts.",
						   c->release_percent)));
}

/*
 * The start of the policy day that contains at, in the policy's time zone.
 */
static TimestampTz
policy_day_start(const WithdrawalPolicyEntry *p, TimestampTz at)
{
	return DatumGetTimestampTz(DirectFunctionCall3(timestamptz_trunc_zone,
												   CStringGetTextDatum("day"),
												   TimestampTzGetDatum(at),
												   CStringGetTextDatum(p ? p->timezone : "UTC")));
}

/*
 * Top-level string and number members of the destination: the tokens that
 * destination blocklist entries match.  Returns NULL when there are none.
 */
static ArrayType *
destination_tokens(Jsonb *destination)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken r;
	Datum	   *tokens;
	int			n = 0;
	int			max;

	if (!JB_ROOT_IS_OBJECT(destination))
		return NULL;
	max = JB_ROOT_COUNT(destination);
	if (max == 0)
		return NULL;
	tokens = palloc(sizeof(Datum) * max);
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
		if (s != NULL && s[0] != '\0' && strlen(s) <= BLOCKLIST_MAX_VALUE && n < max)
			tokens[n++] = CStringGetTextDatum(s);
	}
	if (n == 0)
		return NULL;
	return construct_array(tokens, n, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * Transaction-scoped advisory lock on (class, hash of value).  A hash
 * collision only makes two unrelated requests wait for each other.
 */
static void
lock_counter(int32 lock_class, const char *value)
{
	uint32		h = hash_bytes((const unsigned char *) value, strlen(value));

	DirectFunctionCall2(pg_advisory_xact_lock_int4,
						Int32GetDatum(lock_class), Int32GetDatum((int32) h));
}

/* Parameters and result columns of the screening statement */
#define SCREEN_NARGS 16
enum
{
	SCREEN_BLOCKED_BY = 1,
	SCREEN_DAY_COUNT,
	SCREEN_DAY_AMOUNT,
	SCREEN_ACCOUNT_RECENT,
	SCREEN_DEVICE_RECENT,
	SCREEN_IP_RECENT
};

/*
 * KYC: at or above kyc_threshold the account needs kyc_level_required.
 * A hard error (WD003), not a review: the user can fix it by completing
 * verification, and ops could not approve an unverified identity anyway.
 */
static void
check_kyc(const WithdrawalPolicyEntry *p, const WithdrawalRequestData *req)
{
	if (p != NULL && p->kyc_threshold >= 0 && req->amount >= p->kyc_threshold &&
		req->kyc_level < p->kyc_level_required)
		ereport(ERROR,
				(errcode(ERRCODE_WD_POLICY_VIOLATION),
				 errmsg("withdrawals of " INT64_FORMAT " %s or more require KYC level %d",
						p->kyc_threshold, req->currency, p->kyc_level_required),
				 errdetail("Account \"%s\" has KYC level %d.", req->account_id, req->kyc_level),
				 errhint("Complete identity verification, or withdraw less than " INT64_FORMAT ".",
						 p->kyc_threshold)));
}

/*
 * Review: at or above review_threshold the funds are held for ops.
 */
static void
check_review(const WithdrawalPolicyEntry *p, const WithdrawalRequestData *req,
			 WithdrawalRiskDecision *decision)
{
	if (p != NULL && p->review_threshold >= 0 && req->amount >= p->review_threshold)
	{
		decision->outcome = WITHDRAWAL_RISK_REVIEW;
		decision->reason = pstrdup("review_threshold");
	}
}

static void
raise_limit(const char *what, int64 used,
			int64 limit, const char *scope)
{
	ereport(ERROR,
			(errcode(ERRCODE_WD_POLICY_VIOLATION),
			 errmsg("withdrawal exceeds the %s limit", what),
			 errdetail("%s: " INT64_FORMAT " already, limit " INT64_FORMAT ".", scope, used, limit),
			 errhint("Try again later.")));
}

/*
 * Like WithdrawalPrepare, but the plan is always generic.  The screening
 * statement gates each part on a boolean parameter; a custom plan would
 * prune the parts that are off and so always look cheaper than the generic
 * one, and the plan cache would then re-plan it on every request.  In the
 * generic plan the gates are one-time filters, checked before anything is
 * read.
 */
static SPIPlanPtr
prepare_generic(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (p == NULL)
			elog(ERROR, "SPI_prepare_cursor failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}

void
WithdrawalPolicyScreen(const WithdrawalRequestData *req,
					   WithdrawalRiskDecision *decision)
{
	static SPIPlanPtr screen_plan = NULL;
	Oid			types[SCREEN_NARGS] = {
		BOOLOID, TEXTOID, BOOLOID, TEXTARRAYOID, BOOLOID, TEXTOID, BOOLOID, TEXTOID,
		BOOLOID, BOOLOID, BOOLOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		TEXTOID, TIMESTAMPTZOID
	};
	Datum		values[SCREEN_NARGS];
	char		nulls[SCREEN_NARGS];
	WithdrawalPolicyEntry *p = policy_for(req->currency);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz day_start = now;
	TimestampTz velocity_start = now;
	TimestampTz scan_from = now;
	ArrayType  *tokens = NULL;
	bool		block[BLOCK_KINDS];
	bool		count_daily,
				count_account,
				count_device,
				count_ip,
				any_block;
	bool		isnull;
	Datum		d;
	int64		day_count,
				day_amount,
				recent,
				total;
	int			k;

	decision->outcome = WITHDRAWAL_RISK_ACCEPT;
	decision->reason = NULL;

	/* 1. Amount bounds */
	if (p != NULL && req->amount < p->min_amount)
		ereport(ERROR,
				(errcode(ERRCODE_WD_POLICY_VIOLATION),
				 errmsg("amount " INT64_FORMAT " is below the minimum withdrawal of " INT64_FORMAT " %s",
						req->amount, p->min_amount, req->currency),
				 errdetail("The policy of %s sets min_amount.", req->currency)));
	if (p != NULL && p->max_amount >= 0 && req->amount > p->max_amount)
		ereport(ERROR,
				(errcode(ERRCODE_WD_POLICY_VIOLATION),
				 errmsg("amount " INT64_FORMAT " is above the maximum withdrawal of " INT64_FORMAT " %s",
						req->amount, p->max_amount, req->currency),
				 errdetail("The policy of %s sets max_amount.", req->currency)));

	/* What has to be looked up */
	ensure_block_kinds();
	block[BLOCK_ACCOUNT] = block_kind_present[BLOCK_ACCOUNT];
	if (block_kind_present[BLOCK_DESTINATION])
		tokens = destination_tokens(req->destination);
	block[BLOCK_DESTINATION] = tokens != NULL;
	block[BLOCK_DEVICE] = block_kind_present[BLOCK_DEVICE] && req->device_id != NULL;
	block[BLOCK_IP] = block_kind_present[BLOCK_IP] && req->ip != NULL;
	any_block = false;
	for (k = 0; k < BLOCK_KINDS; k++)
		any_block |= block[k];

	count_daily = p != NULL && (p->daily_amount_limit >= 0 || p->daily_count_limit >= 0);
	count_account = p != NULL && p->velocity_account_limit >= 0;
	count_device = p != NULL && p->velocity_device_limit >= 0 && req->device_id != NULL;
	count_ip = p != NULL && p->velocity_ip_limit >= 0 && req->ip != NULL;

	if (!any_block && !count_daily && !count_account && !count_device && !count_ip)
	{
		check_kyc(p, req);
		check_review(p, req, decision);
		return;
	}

	/* Serialise the requests that share a counter, in a fixed order */
	if (count_daily || count_account)
		lock_counter(POLICY_LOCK_ACCOUNT, req->account_id);
	if (count_device)
		lock_counter(POLICY_LOCK_DEVICE, req->device_id);
	if (count_ip)
		lock_counter(POLICY_LOCK_IP, req->ip);

	if (count_daily)
		day_start = policy_day_start(p, now);
	if (count_account || count_device || count_ip)
		velocity_start = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
																 TimestampTzGetDatum(now),
																 IntervalPGetDatum(&p->velocity_window)));
	scan_from = now;
	if (count_daily)
		scan_from = day_start;
	if (count_account && velocity_start < scan_from)
		scan_from = velocity_start;

	prepare_generic(&screen_plan,
					  "SELECT"
					  " (SELECT b.list_name FROM ("
					  "   SELECT 1 AS pri, l.list_name FROM withdrawal.blocklist l"
					  "    WHERE $1 AND l.kind = 'account' AND l.value = $2"
					  "      AND (l.expires_at IS NULL OR l.expires_at > $13)"
					  "   UNION ALL"
					  "   SELECT 2, l.list_name FROM withdrawal.blocklist l"
					  "    WHERE $3 AND l.kind = 'destination' AND l.value = ANY ($4)"
					  "      AND (l.expires_at IS NULL OR l.expires_at > $13)"
					  "   UNION ALL"
					  "   SELECT 3, l.list_name FROM withdrawal.blocklist l"
					  "    WHERE $5 AND l.kind = 'device' AND l.value = $6"
					  "      AND (l.expires_at IS NULL OR l.expires_at > $13)"
					  "   UNION ALL"
					  "   SELECT 4, l.list_name FROM withdrawal.blocklist l"
					  "    WHERE $7 AND l.kind = 'ip' AND l.net >>= $8::inet"
					  "      AND (l.expires_at IS NULL OR l.expires_at > $13)"
					  "  ) b ORDER BY b.pri, b.list_name LIMIT 1),"
					  " acc.day_count, acc.day_amount, acc.recent,"
					  " (SELECT count(*) FROM withdrawal.withdrawal dv"
					  "   WHERE $9 AND dv.device_id = $6 AND dv.created_at > $12),"
					  " (SELECT count(*) FROM withdrawal.withdrawal ip"
					  "   WHERE $10 AND ip.ip = $8::inet AND ip.created_at > $12)"
					  " FROM (SELECT"
					  "   count(*) FILTER (WHERE c.created_at >= $14 AND c.currency = $15"
					  "     AND c.status NOT IN " NOT_COUNTED_STATUSES ") AS day_count,"
					  "   coalesce(sum(c.amount) FILTER (WHERE c.created_at >= $14 AND c.currency = $15"
					  "     AND c.status NOT IN " NOT_COUNTED_STATUSES "), 0)::int8 AS day_amount,"
					  "   count(*) FILTER (WHERE c.created_at > $12) AS recent"
					  "  FROM withdrawal.withdrawal c"
					  "  WHERE $11 AND c.account_id = $2 AND c.created_at >= $16) acc",
					  SCREEN_NARGS, types);

	memset(nulls, ' ', sizeof(nulls));
	values[0] = BoolGetDatum(block[BLOCK_ACCOUNT]);
	values[1] = CStringGetTextDatum(req->account_id);
	values[2] = BoolGetDatum(block[BLOCK_DESTINATION]);
	values[3] = tokens ? PointerGetDatum(tokens) : (Datum) 0;
	nulls[3] = tokens ? ' ' : 'n';
	values[4] = BoolGetDatum(block[BLOCK_DEVICE]);
	values[5] = req->device_id ? CStringGetTextDatum(req->device_id) : (Datum) 0;
	nulls[5] = req->device_id ? ' ' : 'n';
	values[6] = BoolGetDatum(block[BLOCK_IP]);
	values[7] = req->ip ? CStringGetTextDatum(req->ip) : (Datum) 0;
	nulls[7] = req->ip ? ' ' : 'n';
	values[8] = BoolGetDatum(count_device);
	values[9] = BoolGetDatum(count_ip);
	values[10] = BoolGetDatum(count_daily || count_account);
	values[11] = TimestampTzGetDatum(velocity_start);
	values[12] = TimestampTzGetDatum(now);
	values[13] = TimestampTzGetDatum(day_start);
	values[14] = CStringGetTextDatum(req->currency);
	values[15] = TimestampTzGetDatum(scan_from);
	WithdrawalExecute(screen_plan, values, nulls, false, 1, SPI_OK_SELECT);

	/* 2. Blocklist: recorded as rejected, no money moves */
	d = WithdrawalSpiGet(0, SCREEN_BLOCKED_BY, &isnull);
	if (!isnull)
	{
		decision->outcome = WITHDRAWAL_RISK_REJECT;
		decision->reason = psprintf("blocklist:%s", TextDatumGetCString(d));
		return;
	}

	day_count = DatumGetInt64(WithdrawalSpiGet(0, SCREEN_DAY_COUNT, &isnull));
	day_amount = DatumGetInt64(WithdrawalSpiGet(0, SCREEN_DAY_AMOUNT, &isnull));

	/* 3. KYC (after the blocklist on purpose: listed requests are recorded) */
	check_kyc(p, req);

	/* 4. Daily limits */
	if (count_daily && p->daily_count_limit >= 0 && day_count >= p->daily_count_limit)
		raise_limit("daily count", day_count, p->daily_count_limit,
					"Withdrawals today");
	if (count_daily && p->daily_amount_limit >= 0 &&
		(pg_add_s64_overflow(day_amount, req->amount, &total) ||
		 total > p->daily_amount_limit))
		raise_limit("daily amount", day_amount, p->daily_amount_limit,
					"Amount withdrawn today");

	/* 5. Velocity */
	if (count_account)
	{
		recent = DatumGetInt64(WithdrawalSpiGet(0, SCREEN_ACCOUNT_RECENT, &isnull));
		if (recent >= p->velocity_account_limit)
			raise_limit("account velocity", recent, p->velocity_account_limit,
						"Withdrawals by this account in the velocity window");
	}
	if (count_device)
	{
		recent = DatumGetInt64(WithdrawalSpiGet(0, SCREEN_DEVICE_RECENT, &isnull));
		if (recent >= p->velocity_device_limit)
			raise_limit("device velocity", recent, p->velocity_device_limit,
						"Withdrawals from this device in the velocity window");
	}
	if (count_ip)
	{
		recent = DatumGetInt64(WithdrawalSpiGet(0, SCREEN_IP_RECENT, &isnull));
		if (recent >= p->velocity_ip_limit)
			raise_limit("IP velocity", recent, p->velocity_ip_limit,
						"Withdrawals from this IP address in the velocity window");
	}
	check_review(p, req, decision);
}

int64
WithdrawalFourEyesThreshold(const char *currency)
{
	WithdrawalPolicyEntry *p = policy_for(currency);

	return p ? p->four_eyes_threshold : -1;
}

/*
 * Raises 22023 for a NULL timestamptz argument and returns it.
 */
static TimestampTz
timestamptz_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", argname)));
	return PG_GETARG_TIMESTAMPTZ(argno);
}

/*
 * channel_open_at(channel, at): the window check request() applies, at a
 * given instant (so that tests and operators need no wall clock).
 */
Datum
withdrawal_channel_open_at(PG_FUNCTION_ARGS)
{
	char	   *name = WithdrawalArgText(fcinfo, 0, "channel", CHANNEL_KEY_LEN - 1);
	TimestampTz at = timestamptz_arg(fcinfo, 1, "at");
	bool		open;

	SPI_connect();
	open = channel_window_open(channel_for(name), at);
	SPI_finish();
	PG_RETURN_BOOL(open);
}

/*
 * channel_released(channel, account_id): the staged-release check.
 */
Datum
withdrawal_channel_released(PG_FUNCTION_ARGS)
{
	char	   *name = WithdrawalArgText(fcinfo, 0, "channel", CHANNEL_KEY_LEN - 1);
	char	   *account_id = WithdrawalArgText(fcinfo, 1, "account_id", WITHDRAWAL_MAX_ACCOUNT_ID);
	bool		released;

	SPI_connect();
	released = channel_released(channel_for(name), account_id);
	SPI_finish();
	PG_RETURN_BOOL(released);
}

/*
 * policy_day_start(currency, at): where daily limits start counting.
 */
Datum
withdrawal_policy_day_start(PG_FUNCTION_ARGS)
{
	TimestampTz at = timestamptz_arg(fcinfo, 1, "at");
	char	   *currency;
	TimestampTz start;

	SPI_connect();
	currency = WithdrawalArgCurrency(fcinfo, 0);
	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at must be finite")));
	start = policy_day_start(policy_for(currency), at);
	SPI_finish();
	PG_RETURN_TIMESTAMPTZ(start);
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
 * An ip entry must parse as inet (an address or a network).
 */
static void
check_ip_value(const char *value)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		(void) DirectFunctionCall1(inet_in, CStringGetDatum(value));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("blocklist value is not an IP address or network: \"%s\"", value)));
	}
	PG_END_TRY();
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

	if (strcmp(kind, "ip") == 0)
		check_ip_value(value);
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
	WithdrawalExecute(plan, values, nulls, false, 0, SPI_OK_INSERT_RETURNING);
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

	SPI_connect();
	WithdrawalPrepare(&plan,
					  "DELETE FROM withdrawal.blocklist WHERE kind = $1 AND value = $2 AND list_name = $3",
					  3, types);
	values[0] = CStringGetTextDatum(kind);
	values[1] = CStringGetTextDatum(value);
	values[2] = CStringGetTextDatum(list_name);
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_DELETE);
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
