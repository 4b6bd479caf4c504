/*-------------------------------------------------------------------------
 *
 * channel.h
 *	  The per-backend copies of the policy and channel tables, and the
 *	  channel rules applied to withdrawal requests: opening window, staged
 *	  release, daily caps (channel.c).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/channel.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_CHANNEL_H
#define WITHDRAWAL_CHANNEL_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#define WITHDRAWAL_POLICY_KEY_LEN 4 /* "USD" or "*" */

/* What request() knows when it asks for a decision */
typedef struct WithdrawalRequestData
{
	const char *account_id;
	const char *currency;
	int64		amount;
	const char *channel;
	Jsonb	   *destination;
	Jsonb	   *context;
	const char *device_id;		/* context.device_id, or NULL */
	const char *ip;				/* context.ip, validated, or NULL */
	int			kyc_level;		/* of the account */
	const pg_uuid_t *method_id;	/* the payout method named, or NULL */
	TimestampTz method_verified_at; /* ... and when it was verified */
} WithdrawalRequestData;

/* A row of withdrawal.policy, as cached */
typedef struct WithdrawalPolicyEntry
{
	char		currency[WITHDRAWAL_POLICY_KEY_LEN];	/* hash key */
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

/*
 * The policy row of a currency, falling back to the '*' row; NULL when
 * there is neither (then no limits apply).  In the caller's SPI connection
 * (the cache may be reloaded); valid until the next call of this module.
 */
extern const WithdrawalPolicyEntry *WithdrawalPolicyFor(const char *currency);

/*
 * Checks the channel (unknown: WD007; disabled, outside its window, not
 * yet released to this account, or capped and in another currency or
 * already over today's cap: WD004).  Runs before the debit.
 */
extern void WithdrawalChannelCheck(const WithdrawalRequestData *req);

/*
 * Counts an accepted withdrawal against its channel's daily caps
 * (withdrawal.channel_usage), after request() has written it: WD004 when
 * it no longer fits, which rolls the request back.  Locks the channel's
 * counter row of the day until the end of the transaction.  Nothing for a
 * channel without caps.
 */
extern void WithdrawalChannelTakeCap(const WithdrawalRequestData *req);

/*
 * Why the worker must not claim the channel's payouts today, or NULL: a
 * daily cap lowered below what the channel already accepted today.  In
 * the caller's transaction and SPI connection.
 */
extern char *WithdrawalChannelCapHold(const char *channel);

#endif							/* WITHDRAWAL_CHANNEL_H */
