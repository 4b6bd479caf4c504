/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  Risk policy and channel rules applied to withdrawal requests, and the
 *	  per-backend caches of the policy and channel tables.
 *
 * Both tables are small and read on every request, so each backend keeps a
 * copy, loaded whole on first use and dropped when the config_changed
 * trigger invalidates the table (see util.c).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/policy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "policy.h"
#include "util.h"
#include "withdrawal.h"

#define POLICY_KEY_LEN 4		/* "USD" or "*" */
#define CHANNEL_KEY_LEN NAMEDATALEN

typedef struct WithdrawalPolicyEntry
{
	char		currency[POLICY_KEY_LEN];	/* hash key */
	int64		min_amount;
	int64		max_amount;		/* -1: none */
	int64		review_threshold;	/* -1: none */
	int64		four_eyes_threshold;	/* -1: none */
} WithdrawalPolicyEntry;

typedef struct WithdrawalChannelEntry
{
	char		name[CHANNEL_KEY_LEN];	/* hash key */
	bool		enabled;
} WithdrawalChannelEntry;

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

/*
 * Loads both tables.  Runs in the caller's SPI connection.
 */
static void
load_caches(void)
{
	static SPIPlanPtr policy_plan = NULL;
	static SPIPlanPtr channel_plan = NULL;
	HASHCTL		ctl;
	uint64		i;

	WithdrawalConfigCacheInit();
	if (policy_cxt == NULL)
		policy_cxt = AllocSetContextCreate(CacheMemoryContext,
										   "withdrawal policy cache",
										   ALLOCSET_SMALL_SIZES);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = POLICY_KEY_LEN;
	ctl.entrysize = sizeof(WithdrawalPolicyEntry);
	ctl.hcxt = policy_cxt;
	policy_cache = hash_create("withdrawal policy", 16, &ctl,
							   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	ctl.keysize = CHANNEL_KEY_LEN;
	ctl.entrysize = sizeof(WithdrawalChannelEntry);
	channel_cache = hash_create("withdrawal channels", 16, &ctl,
								HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	WithdrawalPrepare(&policy_plan,
					  "SELECT currency, min_amount, max_amount, review_threshold, four_eyes_threshold"
					  " FROM withdrawal.policy",
					  0, NULL);
	WithdrawalExecute(policy_plan, NULL, NULL, true, 0, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *currency = WithdrawalSpiGetText(i, 1);
		WithdrawalPolicyEntry *e;

		e = hash_search(policy_cache, currency, HASH_ENTER, NULL);
		e->min_amount = nullable_int8(i, 2);
		e->max_amount = nullable_int8(i, 3);
		e->review_threshold = nullable_int8(i, 4);
		e->four_eyes_threshold = nullable_int8(i, 5);
	}

	WithdrawalPrepare(&channel_plan,
					  "SELECT name, enabled FROM withdrawal.channel", 0, NULL);
	WithdrawalExecute(channel_plan, NULL, NULL, true, 0, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *name = WithdrawalSpiGetText(i, 1);
		WithdrawalChannelEntry *e;
		bool		isnull;

		if (strlen(name) >= CHANNEL_KEY_LEN)
			continue;			/* the table's CHECK makes this impossible */
		e = hash_search(channel_cache, name, HASH_ENTER, NULL);
		e->enabled = DatumGetBool(WithdrawalSpiGet(i, 2, &isnull));
	}
}

void
WithdrawalPolicyInvalidate(void)
{
	if (policy_cxt)
		MemoryContextReset(policy_cxt);
	policy_cache = NULL;
	channel_cache = NULL;
}

/*
 * The policy row of a currency, falling back to the '*' row; NULL when
 * there is neither (then no limits apply).
 */
static WithdrawalPolicyEntry *
policy_for(const char *currency)
{
	WithdrawalPolicyEntry *e;

	if (policy_cache == NULL)
		load_caches();
	e = hash_search(policy_cache, currency, HASH_FIND, NULL);
	if (e == NULL)
		e = hash_search(policy_cache, "*", HASH_FIND, NULL);
	return e;
}

void
WithdrawalChannelCheck(const WithdrawalRequestData *req)
{
	WithdrawalChannelEntry *e = NULL;

	if (channel_cache == NULL)
		load_caches();
	if (strlen(req->channel) < CHANNEL_KEY_LEN)
		e = hash_search(channel_cache, req->channel, HASH_FIND, NULL);
	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
				 errmsg("unknown channel \"%s\"", req->channel),
				 errhint("Channels are listed in withdrawal.channel.")));
	if (!e->enabled)
		ereport(ERROR,
				(errcode(ERRCODE_WD_WITHDRAWALS_CLOSED),
				 errmsg("withdrawals through channel \"%s\" are closed", req->channel),
				 errdetail("The channel is disabled.")));
}

void
WithdrawalPolicyScreen(const WithdrawalRequestData *req,
					   WithdrawalRiskDecision *decision)
{
	WithdrawalPolicyEntry *p = policy_for(req->currency);

	decision->outcome = WITHDRAWAL_RISK_ACCEPT;
	decision->reason = NULL;
	if (p == NULL)
		return;

	if (req->amount < p->min_amount)
		ereport(ERROR,
				(errcode(ERRCODE_WD_POLICY_VIOLATION),
				 errmsg("amount " INT64_FORMAT " is below the minimum withdrawal of " INT64_FORMAT " %s",
						req->amount, p->min_amount, req->currency)));
	if (p->max_amount >= 0 && req->amount > p->max_amount)
		ereport(ERROR,
				(errcode(ERRCODE_WD_POLICY_VIOLATION),
				 errmsg("amount " INT64_FORMAT " is above the maximum withdrawal of " INT64_FORMAT " %s",
						req->amount, p->max_amount, req->currency)));
	if (p->review_threshold >= 0 && req->amount >= p->review_threshold)
	{
		decision->outcome = WITHDRAWAL_RISK_REVIEW;
		decision->reason = pstrdup("review_threshold");
	}
}

int64
WithdrawalFourEyesThreshold(const char *currency)
{
	WithdrawalPolicyEntry *p = policy_for(currency);

	return p ? p->four_eyes_threshold : -1;
}
