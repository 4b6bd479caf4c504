/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  Risk policy and channel rules applied to withdrawal requests, the
 *	  blocklist, and the per-backend caches of the policy and channel tables.
 *
 * Channel checks (WD007 unknown, WD004 disabled, outside the opening window,
 * not yet released to the account, or capped and in another currency or
 * over the day's cap) run before the policy screen.  The screen then
 * applies, in this order:
 *
 *	 1. min_amount / max_amount						WD003
 *	 2. blocklist (account, destination, device, IP)	recorded as rejected,
 *													reason blocklist:<list>
 *	 3. KYC level at or above kyc_threshold			WD003
 *	 4. daily count and amount per account and		WD003
 *		currency, in the policy's time zone
 *	 5. velocity per account, device and IP over	WD003
 *		the sliding velocity_window
 *	 6. review_threshold or four_eyes_threshold		review (funds held)
 *
 * Frozen accounts are refused by request() itself (WD006) before any of
 * this, from the row it has already read.
 *
 * Counters are btree range scans bounded by the window, run directly
 * (systable_beginscan, no planner or executor): the account's withdrawals
 * in the currency since the start of its policy day or of the velocity
 * window, whichever is earlier (withdrawal_account_created); the device's
 * and the IP's within the velocity window (withdrawal_device_created,
 * withdrawal_ip_created).  A request's cost thus depends on recent
 * activity, never on the whole history.  Before counting, row locks on
 * the hash buckets of the account, the device and the IP in
 * withdrawal.lock_slot (only for the limits that are configured; see
 * lock.c) serialise concurrent requests that share them, and the counts
 * use a fresh snapshot taken after the locks, so two concurrent requests
 * cannot both take the last slot of a limit (under READ COMMITTED,
 * request()'s isolation level).
 *
 * The blocklist is not cached (it may be large): exact kinds are primary
 * key lookups, IP entries a GiST containment search.  Only which kinds of
 * entry exist is cached, so that an empty blocklist costs nothing.
 *
 * Daily caps of channels are a counter row per channel and channel day
 * (withdrawal.channel_usage) rather than a count: a channel's day may hold
 * a hundred thousand withdrawals.  request() takes a slot last, after its
 * write, under the row's lock (WithdrawalChannelTakeCap); the worker holds
 * a channel whose cap was lowered below the day's count
 * (WithdrawalChannelCapHold).
 *
 * The policy and channel tables are small and read on every request, so
 * each backend keeps a copy, loaded whole on first use and dropped when the
 * config_changed trigger invalidates the table (see util.c).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/policy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include <openssl/evp.h>

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/inet.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "audit.h"
#include "config.h"
#include "json.h"
#include "lock.h"
#include "policy.h"
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
	bool		free_destinations;
	bool		has_cooling_off;
	Interval	method_cooling_off;
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
	int64		daily_count_cap;	/* -1: none (likewise below) */
	int64		daily_amount_cap;
	char	   *cap_currency;	/* set exactly when a cap is */
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

static void check_destination(const WithdrawalPolicyEntry *p,
							  const WithdrawalRequestData *req, TimestampTz now);

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
					  " kyc_threshold, kyc_level_required, four_eyes_threshold, timezone,"
					  " free_destinations, method_cooling_off"
					  " FROM withdrawal.policy",
					  0, NULL);
	WithdrawalExecute(policy_plan, NULL, NULL, true, 0, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *currency = WithdrawalSpiGetText(i, 1);
		WithdrawalPolicyEntry *e;
		bool		isnull;
		Datum		d;

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
		e->free_destinations = DatumGetBool(WithdrawalSpiGet(i, 15, &isnull));
		d = WithdrawalSpiGet(i, 16, &isnull);
		e->has_cooling_off = !isnull;
		if (!isnull)
			e->method_cooling_off = *DatumGetIntervalP(d);
	}

	WithdrawalPrepare(&channel_plan,
					  "SELECT name, enabled, open_from, open_until, timezone, release_percent,"
					  " daily_count_cap, daily_amount_cap, cap_currency"
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
		e->daily_count_cap = nullable_int4(i, 7);
		e->daily_amount_cap = nullable_int8(i, 8);
		d = WithdrawalSpiGet(i, 9, &isnull);
		e->cap_currency = isnull ? NULL : MemoryContextStrdup(cxt, TextDatumGetCString(d));
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

/* ---------- daily caps of channels ---------- */

static bool
channel_capped(const WithdrawalChannelEntry *c)
{
	return c->cap_currency != NULL &&
		(c->daily_count_cap >= 0 || c->daily_amount_cap >= 0);
}

/*
 * The channel day that contains instant at: its date in the channel's time
 * zone, the one its opening window uses, so that a bank's nightly
 * allocation and its opening hours share one clock.
 */
static DateADT
channel_day(const WithdrawalChannelEntry *c, TimestampTz at)
{
	Datum		local = DirectFunctionCall2(timestamptz_zone,
											CStringGetTextDatum(c->timezone),
											TimestampTzGetDatum(at));

	return DatumGetDateADT(DirectFunctionCall1(timestamp_date, local));
}

/* A date as YYYY-MM-DD, whatever the session's DateStyle */
static char *
format_date(DateADT d)
{
	struct pg_tm tm;
	char		buf[MAXDATELEN + 1];

	j2date(d + POSTGRES_EPOCH_JDATE, &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
	EncodeDateOnly(&tm, USE_ISO_DATES, buf);
	return pstrdup(buf);
}

/*
 * What the channel accepted on day (withdrawal.channel_usage); false when
 * nothing yet.  A primary-key fetch with a fresh snapshot.
 */
static bool
channel_usage(const WithdrawalChannelEntry *c, DateADT day, int64 *requests, int64 *amount)
{
	static const char *const columns[] = {"requests", "amount"};
	Datum		keys[2];
	Datum		values[2];
	bool		nulls[2];

	keys[0] = CStringGetTextDatum(c->name);
	keys[1] = DateADTGetDatum(day);
	if (!WithdrawalIndexFetch("channel_usage", "channel_usage_pkey", 2, keys,
							  lengthof(columns), columns, values, nulls))
	{
		*requests = 0;
		*amount = 0;
		return false;
	}
	*requests = DatumGetInt64(values[0]);
	*amount = DatumGetInt64(values[1]);
	return true;
}

/*
 * Whether one more withdrawal of amount fits the caps after requests and
 * used were accepted (overflow-safe: the caps are at least 1).
 */
static bool
cap_fits(const WithdrawalChannelEntry *c, int64 requests, int64 used, int64 amount)
{
	if (c->daily_count_cap >= 0 && requests >= c->daily_count_cap)
		return false;
	if (c->daily_amount_cap >= 0 && used > c->daily_amount_cap - amount)
		return false;
	return true;
}

static void
raise_cap_reached(const WithdrawalRequestData *req, const WithdrawalChannelEntry *c,
				  DateADT day, int64 requests, int64 used)
{
	bool		by_count = c->daily_count_cap >= 0 && requests >= c->daily_count_cap;

	ereport(ERROR,
			(errcode(ERRCODE_WD_WITHDRAWALS_CLOSED),
			 errmsg("withdrawals through channel \"%s\" are closed for the day: its daily %s cap is reached",
					req->channel, by_count ? "count" : "amount"),
			 by_count ?
			 errdetail("The channel accepts " INT64_FORMAT " withdrawals a day and accepted " INT64_FORMAT " on %s (time zone %s).",
					   c->daily_count_cap, requests, format_date(day), c->timezone) :
			 errdetail("The channel accepts " INT64_FORMAT " %s a day and accepted " INT64_FORMAT " on %s (time zone %s); this withdrawal is " INT64_FORMAT ".",
					   c->daily_amount_cap, c->cap_currency, used, format_date(day),
					   c->timezone, req->amount),
			 errhint("The channel opens again at midnight, time zone %s.", c->timezone)));
}

/* A capped channel pays only its cap_currency */
static void
check_cap_currency(const WithdrawalRequestData *req, const WithdrawalChannelEntry *c)
{
	if (strcmp(req->currency, c->cap_currency) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WD_WITHDRAWALS_CLOSED),
				 errmsg("withdrawals in %s through channel \"%s\" are closed", req->currency, req->channel),
				 errdetail("The channel has a daily cap and pays only %s.", c->cap_currency)));
}

/*
 * The caps part of the channel check: a capped channel pays only its
 * cap_currency, and refuses at once a request that no longer fits what it
 * accepted today.  This read takes no lock: WithdrawalChannelTakeCap()
 * decides, under the counter's row lock; this only makes the usual case
 * fail before anything is written, in the documented order (WD004 before
 * the policy, before WD001).
 */
static void
check_channel_caps(const WithdrawalRequestData *req, const WithdrawalChannelEntry *c)
{
	DateADT		day;
	int64		requests;
	int64		used;

	if (!channel_capped(c))
		return;
	check_cap_currency(req, c);
	day = channel_day(c, GetCurrentTransactionStartTimestamp());
	if (channel_usage(c, day, &requests, &used) && !cap_fits(c, requests, used, req->amount))
		raise_cap_reached(req, c, day, requests, used);
	if (!cap_fits(c, 0, 0, req->amount))
		raise_cap_reached(req, c, day, 0, 0);
}

void
WithdrawalChannelTakeCap(const WithdrawalRequestData *req)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[5] = {TEXTOID, DATEOID, INT8OID, INT4OID, INT8OID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	WithdrawalChannelEntry *c = channel_for(req->channel);
	DateADT		day;

	if (!channel_capped(c))
		return;

	/*
	 * Again: the cache is reloaded when the channel row changed since the
	 * channel check (a lock taken since processes invalidations).
	 */
	check_cap_currency(req, c);
	day = channel_day(c, GetCurrentTransactionStartTimestamp());

	/*
	 * The conflict arm locks the counter and updates it only when the
	 * withdrawal fits; when it does not, no row comes back.  A first
	 * withdrawal of the day fits the count cap (at least 1), and its amount
	 * was checked by the channel check against the same cached caps.
	 */
	WithdrawalPrepare(&plan,
					  "INSERT INTO withdrawal.channel_usage AS u (channel, day, requests, amount)"
					  " VALUES ($1, $2, 1, $3)"
					  " ON CONFLICT (channel, day) DO UPDATE"
					  "   SET requests = u.requests + 1, amount = u.amount + excluded.amount"
					  " WHERE ($4 IS NULL OR u.requests < $4)"
					  "   AND ($5 IS NULL OR u.amount <= $5 - excluded.amount)"
					  " RETURNING u.requests",
					  5, types);
	values[0] = CStringGetTextDatum(c->name);
	values[1] = DateADTGetDatum(day);
	values[2] = Int64GetDatum(req->amount);
	values[3] = Int32GetDatum((int32) c->daily_count_cap);
	nulls[3] = c->daily_count_cap >= 0 ? ' ' : 'n';
	values[4] = Int64GetDatum(c->daily_amount_cap);
	nulls[4] = c->daily_amount_cap >= 0 ? ' ' : 'n';
	WithdrawalExecute(plan, values, nulls, false, 1, SPI_OK_INSERT_RETURNING);
	if (SPI_processed == 0 ||
		(c->daily_amount_cap >= 0 && req->amount > c->daily_amount_cap))
	{
		int64		requests;
		int64		used;

		/* the row is ours to read now: we hold its lock */
		CommandCounterIncrement();
		(void) channel_usage(c, day, &requests, &used);
		raise_cap_reached(req, c, day, requests, used);
	}
}

char *
WithdrawalChannelCapHold(const char *channel)
{
	WithdrawalChannelEntry *c = NULL;
	TimestampTz now = GetCurrentTimestamp();
	DateADT		day;
	int64		requests;
	int64		used;

	ensure_caches();
	if (strlen(channel) < CHANNEL_KEY_LEN)
		c = hash_search(channel_cache, channel, HASH_FIND, NULL);
	if (c == NULL || !channel_capped(c))
		return NULL;
	day = channel_day(c, now);
	if (!channel_usage(c, day, &requests, &used))
		return NULL;
	if (c->daily_count_cap >= 0 && requests > c->daily_count_cap)
		return psprintf("its daily count cap (" INT64_FORMAT ") is below the " INT64_FORMAT
						" withdrawals it accepted on %s; its payouts wait for the next day (time zone %s)",
						c->daily_count_cap, requests, format_date(day), c->timezone);
	if (c->daily_amount_cap >= 0 && used > c->daily_amount_cap)
		return psprintf("its daily amount cap (" INT64_FORMAT " %s) is below the " INT64_FORMAT
						" it accepted on %s; its payouts wait for the next day (time zone %s)",
						c->daily_amount_cap, c->cap_currency, used, format_date(day), c->timezone);
	return NULL;
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
	check_channel_caps(req, c);
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
 * Starts a btree scan of a table of schema withdrawal through one of its
 * indexes, with one condition (strategy, value) on each of the first nkeys
 * index columns.  No planner, no executor: these run on every request.
 */
static SysScanDesc
begin_index_scan(Relation rel, Relation index, int nkeys,
				 const StrategyNumber *strategies, const Datum *values,
				 Snapshot snapshot, ScanKeyData *keys)
{
	int			i;

	for (i = 0; i < nkeys; i++)
	{
		Oid			type = index->rd_opcintype[i];
		Oid			op = get_opfamily_member(index->rd_opfamily[i], type, type,
											 strategies[i]);

		if (!OidIsValid(op))
			elog(ERROR, "no operator of strategy %d for index %s",
				 strategies[i], RelationGetRelationName(index));
		/* systable_beginscan takes heap attribute numbers */
		ScanKeyEntryInitialize(&keys[i], 0, index->rd_index->indkey.values[i],
							   strategies[i], InvalidOid, index->rd_indcollation[i],
							   get_opcode(op), values[i]);
	}
	return systable_beginscan(rel, RelationGetRelid(index), true, snapshot,
							  nkeys, keys);
}

static AttrNumber
column_number(Relation rel, const char *name)
{
	int			attno = SPI_fnumber(RelationGetDescr(rel), name);

	if (attno <= 0)
		elog(ERROR, "column %s.%s does not exist", RelationGetRelationName(rel), name);
	return (AttrNumber) attno;
}

static bool
text_datum_is(Datum d, const char *s)
{
	text	   *t = DatumGetTextPP(d);
	size_t		len = VARSIZE_ANY_EXHDR(t);

	return len == strlen(s) && memcmp(VARDATA_ANY(t), s, len) == 0;
}

/* What the counters found */
typedef struct ScreenCounts
{
	int64		day_count;		/* this account and currency, today */
	int64		day_amount;
	int64		account_recent; /* this account and currency, in the window */
	int64		device_recent;	/* this device, in the window */
	int64		ip_recent;		/* this IP, in the window */
} ScreenCounts;

/*
 * The account's withdrawals in its currency since scan_from: one range
 * scan of withdrawal_account_created, bounded by the earlier of the policy
 * day's start and the velocity window's start.  Withdrawals whose money
 * came back (rejected, canceled, failed, returned) do not count towards
 * the daily limits; every withdrawal counts towards velocity.
 */
static void
count_account_withdrawals(const char *account_id, const char *currency, TimestampTz scan_from,
			  TimestampTz day_start, TimestampTz velocity_start,
			  Snapshot snapshot, ScreenCounts *counts)
{
	StrategyNumber strategies[2] = {BTEqualStrategyNumber, BTGreaterEqualStrategyNumber};
	Datum		values[2];
	ScanKeyData keys[2];
	Relation	rel;
	Relation	index;
	SysScanDesc scan;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	AttrNumber	a_created,
				a_currency,
				a_status,
				a_amount;

	rel = table_open(WithdrawalRelationOid("withdrawal"), AccessShareLock);
	index = index_open(WithdrawalRelationOid("withdrawal_account_created"), AccessShareLock);
	tupdesc = RelationGetDescr(rel);
	a_created = column_number(rel, "created_at");
	a_currency = column_number(rel, "currency");
	a_status = column_number(rel, "status");
	a_amount = column_number(rel, "amount");
	values[0] = CStringGetTextDatum(account_id);
	values[1] = TimestampTzGetDatum(scan_from);
	scan = begin_index_scan(rel, index, 2, strategies, values, snapshot, keys);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		bool		isnull;
		TimestampTz created;
		Datum		status;

		if (!text_datum_is(heap_getattr(tuple, a_currency, tupdesc, &isnull), currency))
			continue;
		created = DatumGetTimestampTz(heap_getattr(tuple, a_created, tupdesc, &isnull));
		if (created > velocity_start)
			counts->account_recent++;
		if (created < day_start)
			continue;
		status = heap_getattr(tuple, a_status, tupdesc, &isnull);
		if (text_datum_is(status, "rejected") || text_datum_is(status, "canceled") ||
			text_datum_is(status, "failed") || text_datum_is(status, "returned"))
			continue;
		counts->day_count++;
		if (pg_add_s64_overflow(counts->day_amount,
								DatumGetInt64(heap_getattr(tuple, a_amount, tupdesc, &isnull)),
								&counts->day_amount))
			counts->day_amount = PG_INT64_MAX;
	}
	systable_endscan(scan);
	index_close(index, NoLock);
	table_close(rel, NoLock);
}

/*
 * Withdrawals (any account or currency) with key = value created after
 * since, through the index (key, created_at).
 */
static int64
count_recent(const char *indexname, Datum value, TimestampTz since, Snapshot snapshot)
{
	StrategyNumber strategies[2] = {BTEqualStrategyNumber, BTGreaterStrategyNumber};
	Datum		values[2];
	ScanKeyData keys[2];
	Relation	rel;
	Relation	index;
	SysScanDesc scan;
	int64		n = 0;

	rel = table_open(WithdrawalRelationOid("withdrawal"), AccessShareLock);
	index = index_open(WithdrawalRelationOid(indexname), AccessShareLock);
	values[0] = value;
	values[1] = TimestampTzGetDatum(since);
	scan = begin_index_scan(rel, index, 2, strategies, values, snapshot, keys);
	while (HeapTupleIsValid(systable_getnext(scan)))
		n++;
	systable_endscan(scan);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return n;
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
	ScanKeyData keys[2];
	Relation	rel;
	Relation	index;
	SysScanDesc scan;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	AttrNumber	a_list,
				a_expires;
	char	   *best = NULL;

	rel = table_open(WithdrawalRelationOid("blocklist"), AccessShareLock);
	index = index_open(WithdrawalRelationOid("blocklist_pkey"), AccessShareLock);
	tupdesc = RelationGetDescr(rel);
	a_list = column_number(rel, "list_name");
	a_expires = column_number(rel, "expires_at");
	values[0] = CStringGetTextDatum(kind);
	values[1] = CStringGetTextDatum(value);
	scan = begin_index_scan(rel, index, 2, strategies, values, snapshot, keys);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
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
	systable_endscan(scan);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return best;
}

/*
 * IP entries of the blocklist, cached per backend as networks sorted by
 * (family, prefix length, masked address, list name), and reloaded with
 * the blocklist kinds when the blocklist changes.  A lookup masks the
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
static bool blocked_nets_loaded = false;
static uint64 blocked_nets_loaded_at = 0;

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
	uint64		inval_before = block_inval_count;
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
	blocked_nets_loaded = true;
	blocked_nets_loaded_at = inval_before;
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

	if (!blocked_nets_loaded || blocked_nets_loaded_at != block_inval_count)
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
 * Review: at or above review_threshold the funds are held for ops.  So are
 * they at or above four_eyes_threshold, whatever review_threshold says: a
 * payout that needs two approvers must never skip review because the
 * review threshold was set higher or left off.
 */
static void
check_review(const WithdrawalPolicyEntry *p, const WithdrawalRequestData *req,
			 WithdrawalRiskDecision *decision)
{
	if (p == NULL)
		return;
	if (p->review_threshold >= 0 && req->amount >= p->review_threshold)
	{
		decision->outcome = WITHDRAWAL_RISK_REVIEW;
		decision->reason = pstrdup("review_threshold");
	}
	else if (p->four_eyes_threshold >= 0 && req->amount >= p->four_eyes_threshold)
	{
		decision->outcome = WITHDRAWAL_RISK_REVIEW;
		decision->reason = pstrdup("four_eyes_threshold");
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

void
WithdrawalPolicyScreen(const WithdrawalRequestData *req,
					   WithdrawalRiskDecision *decision)
{
	WithdrawalPolicyEntry *p = policy_for(req->currency);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz day_start = now;
	TimestampTz velocity_start = now;
	TimestampTz scan_from = now;
	List	   *tokens = NIL;
	bool		block[BLOCK_KINDS];
	bool		count_daily,
				count_account,
				count_device,
				count_ip,
				any_block;
	ScreenCounts counts;
	int32		lock_bases[WITHDRAWAL_LOCK_MAX_BUCKETS];
	const char *lock_values[WITHDRAWAL_LOCK_MAX_BUCKETS];
	int			nlocks;
	Snapshot	snapshot;
	char	   *list = NULL;
	int64		total;
	int			k;

	decision->outcome = WITHDRAWAL_RISK_ACCEPT;
	decision->reason = NULL;

	/* 0. Payout methods (docs/security.md) */
	check_destination(p, req, now);

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
	block[BLOCK_DESTINATION] = tokens != NIL;
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
	nlocks = 0;
	if (count_daily || count_account)
	{
		lock_bases[nlocks] = WITHDRAWAL_LOCK_ACCOUNT;
		lock_values[nlocks++] = req->account_id;
	}
	if (count_device)
	{
		lock_bases[nlocks] = WITHDRAWAL_LOCK_DEVICE;
		lock_values[nlocks++] = req->device_id;
	}
	if (count_ip)
	{
		lock_bases[nlocks] = WITHDRAWAL_LOCK_IP;
		lock_values[nlocks++] = req->ip;
	}
	WithdrawalLockBuckets(nlocks, lock_bases, lock_values);

	if (count_daily)
		day_start = policy_day_start(p, now);
	if (count_account || count_device || count_ip)
		velocity_start = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
																 TimestampTzGetDatum(now),
																 IntervalPGetDatum(&p->velocity_window)));
	if (count_daily)
		scan_from = day_start;
	if (count_account && velocity_start < scan_from)
		scan_from = velocity_start;

	/*
	 * A fresh snapshot taken after the locks, that also sees what earlier
	 * commands of this transaction (earlier requests) wrote.
	 */
	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());

	/* 2. Blocklist: recorded as rejected, no money moves */
	if (block[BLOCK_ACCOUNT])
		list = blocklist_exact("account", req->account_id, now, snapshot);
	if (list == NULL && block[BLOCK_DESTINATION])
	{
		ListCell   *lc;
		char	   *best = NULL;

		foreach(lc, tokens)
		{
			char	   *hit = blocklist_exact("destination", lfirst(lc), now, snapshot);

			if (hit != NULL && (best == NULL || strcmp(hit, best) < 0))
				best = hit;
		}
		list = best;
	}
	if (list == NULL && block[BLOCK_DEVICE])
		list = blocklist_exact("device", req->device_id, now, snapshot);
	if (list == NULL && block[BLOCK_IP])
		list = blocklist_ip(req->ip, now);
	if (list != NULL)
	{
		UnregisterSnapshot(snapshot);
		decision->outcome = WITHDRAWAL_RISK_REJECT;
		decision->reason = psprintf("blocklist:%s", list);
		return;
	}

	/* 3. KYC (after the blocklist on purpose: listed requests are recorded) */
	check_kyc(p, req);

	memset(&counts, 0, sizeof(counts));
	if (count_daily || count_account)
		count_account_withdrawals(req->account_id, req->currency, scan_from, day_start,
								  velocity_start, snapshot, &counts);
	if (count_device)
		counts.device_recent = count_recent("withdrawal_device_created",
											CStringGetTextDatum(req->device_id),
											velocity_start, snapshot);
	if (count_ip)
		counts.ip_recent = count_recent("withdrawal_ip_created",
										DirectFunctionCall1(inet_in, CStringGetDatum(req->ip)),
										velocity_start, snapshot);
	UnregisterSnapshot(snapshot);

	/* 4. Daily limits */
	if (count_daily && p->daily_count_limit >= 0 && counts.day_count >= p->daily_count_limit)
		raise_limit("daily count", counts.day_count, p->daily_count_limit,
					"Withdrawals today");
	if (count_daily && p->daily_amount_limit >= 0 &&
		(pg_add_s64_overflow(counts.day_amount, req->amount, &total) ||
		 total > p->daily_amount_limit))
		raise_limit("daily amount", counts.day_amount, p->daily_amount_limit,
					"Amount withdrawn today");

	/* 5. Velocity */
	if (count_account && counts.account_recent >= p->velocity_account_limit)
		raise_limit("account velocity", counts.account_recent, p->velocity_account_limit,
					"Withdrawals by this account in the velocity window");
	if (count_device && counts.device_recent >= p->velocity_device_limit)
		raise_limit("device velocity", counts.device_recent, p->velocity_device_limit,
					"Withdrawals from this device in the velocity window");
	if (count_ip && counts.ip_recent >= p->velocity_ip_limit)
		raise_limit("IP velocity", counts.ip_recent, p->velocity_ip_limit,
					"Withdrawals from this IP address in the velocity window");

	/* 6. Manual review */
	check_review(p, req, decision);
}

int64
WithdrawalFourEyesThreshold(const char *currency)
{
	WithdrawalPolicyEntry *p = policy_for(currency);

	return p ? p->four_eyes_threshold : -1;
}

/*
 * A policy may refuse free destinations (anything but a payout method),
 * and may keep a newly verified method unusable for a cooling-off period:
 * the time an account holder has to notice the notification of a method
 * added from a stolen session, and remove it.  Both WD003, like the other
 * limits of the policy: the channel is open, this request breaks a rule.
 */
static void
check_destination(const WithdrawalPolicyEntry *p, const WithdrawalRequestData *req,
				  TimestampTz now)
{
	TimestampTz usable_from;

	if (p == NULL)
		return;
	if (req->method_id == NULL)
	{
		if (!p->free_destinations)
			ereport(ERROR,
					(errcode(ERRCODE_WD_POLICY_VIOLATION),
					 errmsg("withdrawals in %s must be paid to a payout method", req->currency),
					 errdetail("The policy of %s sets free_destinations to false.", req->currency),
					 errhint("Pass destination as {\"method_id\": \"...\"}, a method added with add_payout_method() and verified.")));
		return;
	}
	if (!p->has_cooling_off)
		return;
	usable_from = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														  TimestampTzGetDatum(req->method_verified_at),
														  IntervalPGetDatum(&p->method_cooling_off)));
	if (now < usable_from)
		ereport(ERROR,
				(errcode(ERRCODE_WD_POLICY_VIOLATION),
				 errmsg("payout method %s is in its cooling-off period",
						WithdrawalUuidText(req->method_id)),
				 errdetail("The policy of %s sets method_cooling_off; the method can be paid to from %s.",
						   req->currency, timestamptz_to_str(usable_from)),
				 errhint("Try again after that time.")));
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
	char	   *account_id = WithdrawalArgIdentifier(fcinfo, 1, "account_id", WITHDRAWAL_MAX_ACCOUNT_ID);
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
