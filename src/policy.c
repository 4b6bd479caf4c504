/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  The risk policy applied to withdrawal requests: the screen and the
 *	  counters it reads.
 *
 * Channel checks (channel.c) run before the screen.  The screen then
 * applies, in this order:
 *
 *	 0. payout methods: free destinations, cooling-off	WD003
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
 * this, from the row it has already read.  The policy rows come from
 * channel.c's cache, the blocklist lookups from blocklist.c.
 *
 * Counters are btree range scans bounded by the window, run directly
 * (indexscan.c, no planner or executor): the account's withdrawals
 * in the currency since the start of its policy day or of the velocity
 * window, whichever is earlier (withdrawal_account_created); the device's
 * and the IP's within the velocity window (withdrawal_device_created,
 * withdrawal_ip_created).  A request's cost thus depends on recent
 * activity, never on the whole history.  Before counting, row locks on
 * the hash buckets of the account, the device and the IP in
 * withdrawal.lock_slot (only for the limits that are configured; see
 * lock.c) serialise concurrent requests that share them, and the counts
 * (and the blocklist lookups) use a fresh snapshot taken after the locks,
 * so two concurrent requests cannot both take the last slot of a limit
 * (under READ COMMITTED, request()'s isolation level).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/policy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/int.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "args.h"
#include "blocklist.h"
#include "cache.h"
#include "channel.h"
#include "indexscan.h"
#include "json.h"
#include "lock.h"
#include "policy.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_policy_day_start);

/* What the screen has to look up for one request, and over which windows */
typedef struct ScreenPlan
{
	WithdrawalBlockPlan block;
	bool		any_block;		/* some blocklist lookup to do */
	bool		count_daily;	/* daily limits configured */
	bool		count_account;	/* ... velocity per account */
	bool		count_device;	/* ... per device, and the request has one */
	bool		count_ip;		/* ... per IP, and the request has one */
	TimestampTz now;
	TimestampTz day_start;		/* of the policy day */
	TimestampTz velocity_start; /* of the velocity window */
	TimestampTz scan_from;		/* the earlier of the two the account needs */
} ScreenPlan;

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
 * The account's withdrawals in its currency since plan->scan_from: one
 * range scan of withdrawal_account_created, bounded by the earlier of the
 * policy day's start and the velocity window's start.  Withdrawals whose
 * money came back (rejected, canceled, failed, returned) do not count
 * towards the daily limits; every withdrawal counts towards velocity.
 */
static void
count_account_withdrawals(const ScreenPlan *plan, const WithdrawalRequestData *req,
						  Snapshot snapshot, ScreenCounts *counts)
{
	StrategyNumber strategies[2] = {BTEqualStrategyNumber, BTGreaterEqualStrategyNumber};
	Datum		values[2];
	WithdrawalIndexScan s;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	AttrNumber	a_created,
				a_currency,
				a_status,
				a_amount;

	values[0] = CStringGetTextDatum(req->account_id);
	values[1] = TimestampTzGetDatum(plan->scan_from);
	WithdrawalIndexScanOpen(&s, "withdrawal", WITHDRAWAL_INDEX_ACCOUNT_CREATED, 2,
							strategies, values, snapshot);
	tupdesc = RelationGetDescr(s.rel);
	a_created = WithdrawalColumnNumber(s.rel, "created_at");
	a_currency = WithdrawalColumnNumber(s.rel, "currency");
	a_status = WithdrawalColumnNumber(s.rel, "status");
	a_amount = WithdrawalColumnNumber(s.rel, "amount");
	while (HeapTupleIsValid(tuple = systable_getnext(s.scan)))
	{
		bool		isnull;
		TimestampTz created;
		Datum		status;

		if (!WithdrawalTextDatumIs(heap_getattr(tuple, a_currency, tupdesc, &isnull),
								   req->currency))
			continue;
		created = DatumGetTimestampTz(heap_getattr(tuple, a_created, tupdesc, &isnull));
		if (created > plan->velocity_start)
			counts->account_recent++;
		if (created < plan->day_start)
			continue;
		status = heap_getattr(tuple, a_status, tupdesc, &isnull);
		if (WithdrawalTextDatumIs(status, "rejected") || WithdrawalTextDatumIs(status, "canceled") ||
			WithdrawalTextDatumIs(status, "failed") || WithdrawalTextDatumIs(status, "returned"))
			continue;
		counts->day_count++;
		if (pg_add_s64_overflow(counts->day_amount,
								DatumGetInt64(heap_getattr(tuple, a_amount, tupdesc, &isnull)),
								&counts->day_amount))
			counts->day_amount = PG_INT64_MAX;
	}
	WithdrawalIndexScanClose(&s);
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
	WithdrawalIndexScan s;
	int64		n = 0;

	values[0] = value;
	values[1] = TimestampTzGetDatum(since);
	WithdrawalIndexScanOpen(&s, "withdrawal", indexname, 2, strategies, values, snapshot);
	while (HeapTupleIsValid(systable_getnext(s.scan)))
		n++;
	WithdrawalIndexScanClose(&s);
	return n;
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

/* 1. Amount bounds */
static void
check_amount(const WithdrawalPolicyEntry *p, const WithdrawalRequestData *req)
{
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
}

/*
 * What has to be looked up: the blocklist kinds that exist and that the
 * request has a value for, and the counters of the limits that are
 * configured.  False when nothing is, so that a request under a policy
 * without counted limits takes no lock and no snapshot.
 */
static bool
plan_screen(const WithdrawalPolicyEntry *p, const WithdrawalRequestData *req,
			TimestampTz now, ScreenPlan *plan)
{
	plan->now = now;
	plan->day_start = now;
	plan->velocity_start = now;
	plan->scan_from = now;
	plan->any_block = WithdrawalBlocklistPlan(req, &plan->block);
	plan->count_daily = p != NULL && (p->daily_amount_limit >= 0 || p->daily_count_limit >= 0);
	plan->count_account = p != NULL && p->velocity_account_limit >= 0;
	plan->count_device = p != NULL && p->velocity_device_limit >= 0 && req->device_id != NULL;
	plan->count_ip = p != NULL && p->velocity_ip_limit >= 0 && req->ip != NULL;
	return plan->any_block || plan->count_daily || plan->count_account ||
		plan->count_device || plan->count_ip;
}

/* Serialise the requests that share a counter, in a fixed order */
static void
take_counter_locks(const ScreenPlan *plan, const WithdrawalRequestData *req)
{
	int32		lock_bases[WITHDRAWAL_LOCK_MAX_BUCKETS];
	const char *lock_values[WITHDRAWAL_LOCK_MAX_BUCKETS];
	int			nlocks = 0;

	if (plan->count_daily || plan->count_account)
	{
		lock_bases[nlocks] = WITHDRAWAL_LOCK_ACCOUNT;
		lock_values[nlocks++] = req->account_id;
	}
	if (plan->count_device)
	{
		lock_bases[nlocks] = WITHDRAWAL_LOCK_DEVICE;
		lock_values[nlocks++] = req->device_id;
	}
	if (plan->count_ip)
	{
		lock_bases[nlocks] = WITHDRAWAL_LOCK_IP;
		lock_values[nlocks++] = req->ip;
	}
	WithdrawalLockBuckets(nlocks, lock_bases, lock_values);
}

/* The windows the counters scan: the policy day and the velocity window */
static void
set_windows(const WithdrawalPolicyEntry *p, ScreenPlan *plan)
{
	if (plan->count_daily)
		plan->day_start = policy_day_start(p, plan->now);
	if (plan->count_account || plan->count_device || plan->count_ip)
		plan->velocity_start = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
																	   TimestampTzGetDatum(plan->now),
																	   IntervalPGetDatum(&p->velocity_window)));
	if (plan->count_daily)
		plan->scan_from = plan->day_start;
	if (plan->count_account && plan->velocity_start < plan->scan_from)
		plan->scan_from = plan->velocity_start;
}

/*
 * The reads made under the counter locks, with one fresh snapshot taken
 * after them that also sees what earlier commands of this transaction
 * (earlier requests) wrote: the blocklist first (step 2); when no list
 * matches, the counters.  Returns the matching list, or NULL.
 */
static char *
read_after_locks(const ScreenPlan *plan, const WithdrawalRequestData *req,
				 ScreenCounts *counts)
{
	Snapshot	snapshot;
	char	   *list;

	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	list = WithdrawalBlocklistMatch(req, &plan->block, plan->now, snapshot);
	if (list == NULL)
	{
		if (plan->count_daily || plan->count_account)
			count_account_withdrawals(plan, req, snapshot, counts);
		if (plan->count_device)
			counts->device_recent = count_recent(WITHDRAWAL_INDEX_DEVICE_CREATED,
												 CStringGetTextDatum(req->device_id),
												 plan->velocity_start, snapshot);
		if (plan->count_ip)
			counts->ip_recent = count_recent(WITHDRAWAL_INDEX_IP_CREATED,
											 DirectFunctionCall1(inet_in, CStringGetDatum(req->ip)),
											 plan->velocity_start, snapshot);
	}
	UnregisterSnapshot(snapshot);
	return list;
}

/* 4. Daily limits and 5. velocity, against what the counters found */
static void
apply_limits(const WithdrawalPolicyEntry *p, const ScreenPlan *plan,
			 const ScreenCounts *counts, const WithdrawalRequestData *req)
{
	int64		total;

	if (plan->count_daily && p->daily_count_limit >= 0 && counts->day_count >= p->daily_count_limit)
		raise_limit("daily count", counts->day_count, p->daily_count_limit,
					"Withdrawals today");
	if (plan->count_daily && p->daily_amount_limit >= 0 &&
		(pg_add_s64_overflow(counts->day_amount, req->amount, &total) ||
		 total > p->daily_amount_limit))
		raise_limit("daily amount", counts->day_amount, p->daily_amount_limit,
					"Amount withdrawn today");

	if (plan->count_account && counts->account_recent >= p->velocity_account_limit)
		raise_limit("account velocity", counts->account_recent, p->velocity_account_limit,
					"Withdrawals by this account in the velocity window");
	if (plan->count_device && counts->device_recent >= p->velocity_device_limit)
		raise_limit("device velocity", counts->device_recent, p->velocity_device_limit,
					"Withdrawals from this device in the velocity window");
	if (plan->count_ip && counts->ip_recent >= p->velocity_ip_limit)
		raise_limit("IP velocity", counts->ip_recent, p->velocity_ip_limit,
					"Withdrawals from this IP address in the velocity window");
}

/*
 * The screen: the numbered steps of the file header, one call each.
 */
void
WithdrawalPolicyScreen(const WithdrawalRequestData *req,
					   WithdrawalRiskDecision *decision)
{
	const WithdrawalPolicyEntry *p = WithdrawalPolicyFor(req->currency);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	ScreenPlan	plan;
	ScreenCounts counts;

	decision->outcome = WITHDRAWAL_RISK_ACCEPT;
	decision->reason = NULL;
	memset(&counts, 0, sizeof(counts));

	/* 0. Payout methods (docs/security.md) */
	check_destination(p, req, now);

	/* 1. Amount bounds */
	check_amount(p, req);

	if (plan_screen(p, req, now, &plan))
	{
		char	   *list;

		take_counter_locks(&plan, req);
		set_windows(p, &plan);

		/* 2. Blocklist: recorded as rejected, no money moves */
		list = read_after_locks(&plan, req, &counts);
		if (list != NULL)
		{
			decision->outcome = WITHDRAWAL_RISK_REJECT;
			decision->reason = psprintf("blocklist:%s", list);
			return;
		}
	}

	/*
	 * 3. KYC (after the blocklist on purpose: listed requests are
	 * recorded).  The counts were read already, under the same snapshot as
	 * the blocklist; KYC does not depend on them and still comes before
	 * the limits that do.
	 */
	check_kyc(p, req);

	/* 4. Daily limits, 5. velocity */
	apply_limits(p, &plan, &counts, req);

	/* 6. Manual review */
	check_review(p, req, decision);
}

int64
WithdrawalFourEyesThreshold(const char *currency)
{
	const WithdrawalPolicyEntry *p = WithdrawalPolicyFor(currency);

	return p ? p->four_eyes_threshold : -1;
}

/*
 * policy_day_start(currency, at): where daily limits start counting.
 */
Datum
withdrawal_policy_day_start(PG_FUNCTION_ARGS)
{
	TimestampTz at = WithdrawalArgTimestampTz(fcinfo, 1, "at");
	char	   *currency;
	TimestampTz start;

	SPI_connect();
	currency = WithdrawalArgCurrency(fcinfo, 0);
	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at must be finite")));
	start = policy_day_start(WithdrawalPolicyFor(currency), at);
	SPI_finish();
	PG_RETURN_TIMESTAMPTZ(start);
}
