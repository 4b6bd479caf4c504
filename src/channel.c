/*-------------------------------------------------------------------------
 *
 * channel.c
 *	  The per-backend copies of the policy and channel tables, and the
 *	  channel rules applied to withdrawal requests.
 *
 * Channel checks (WD007 unknown, WD004 disabled, outside the opening window,
 * not yet released to the account, or capped and in another currency or
 * over the day's cap) run before the policy screen (policy.c).
 *
 * The policy and channel tables are small and read on every request, so
 * each backend keeps a copy, loaded whole on first use and reloaded after
 * the config_changed trigger invalidates a table (the scheme of cache.h).
 *
 * Daily caps of channels are a counter row per channel and channel day
 * (withdrawal.channel_usage) rather than a count: a channel's day may hold
 * a hundred thousand withdrawals.  request() takes a slot last, after its
 * write, under the row's lock (WithdrawalChannelTakeCap); the worker holds
 * a channel whose cap was lowered below the day's count
 * (WithdrawalChannelCapHold).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/channel.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "args.h"
#include "cache.h"
#include "channel.h"
#include "crypto.h"
#include "indexscan.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_channel_open_at);
PG_FUNCTION_INFO_V1(withdrawal_channel_released);

#define CHANNEL_KEY_LEN NAMEDATALEN

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

/* The policy and channel copies, loaded together */
static WithdrawalCache config_cache = WITHDRAWAL_CACHE("policy", "channel");
static MemoryContext policy_cxt = NULL;
static HTAB *policy_cache = NULL;
static HTAB *channel_cache = NULL;

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
	uint64		begin = WithdrawalCacheLoadBegin(&config_cache);

	cxt = AllocSetContextCreate(CurrentMemoryContext, "withdrawal policy cache",
								ALLOCSET_SMALL_SIZES);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = WITHDRAWAL_POLICY_KEY_LEN;
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

		if (strlen(currency) >= WITHDRAWAL_POLICY_KEY_LEN)
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
	WithdrawalCacheLoadEnd(&config_cache, begin);
}

/*
 * Makes sure the caches reflect the tables as of an invalidation-free load.
 * An invalidation that arrived during the load makes the next call reload.
 */
static void
ensure_caches(void)
{
	if (!WithdrawalCacheValid(&config_cache))
		load_caches();
}

/* See channel.h */
const WithdrawalPolicyEntry *
WithdrawalPolicyFor(const char *currency)
{
	WithdrawalPolicyEntry *e = NULL;

	ensure_caches();
	if (strlen(currency) < WITHDRAWAL_POLICY_KEY_LEN)
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
	uint8		md[WITHDRAWAL_SHA256_LEN];
	uint64		v = 0;
	int			i;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s:%s", channel, account_id);
	WithdrawalSha256(buf.data, buf.len, md);
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
	if (!WithdrawalIndexFetch("channel_usage", WITHDRAWAL_INDEX_CHANNEL_USAGE_PKEY, 2, keys,
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
 * channel_open_at(channel, at): the window check request() applies, at a
 * given instant (so that tests and operators need no wall clock).
 */
Datum
withdrawal_channel_open_at(PG_FUNCTION_ARGS)
{
	char	   *name = WithdrawalArgText(fcinfo, 0, "channel", CHANNEL_KEY_LEN - 1);
	TimestampTz at = WithdrawalArgTimestampTz(fcinfo, 1, "at");
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
