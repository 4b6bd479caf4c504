/*-------------------------------------------------------------------------
 *
 * policy.h
 *	  Risk policy and channel rules applied to withdrawal requests, and the
 *	  per-backend caches of policy and channel rows.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/policy.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_POLICY_H
#define WITHDRAWAL_POLICY_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

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

typedef enum WithdrawalRiskOutcome
{
	WITHDRAWAL_RISK_ACCEPT,		/* queue for payout */
	WITHDRAWAL_RISK_REVIEW,		/* hold for manual review */
	WITHDRAWAL_RISK_REJECT		/* record as rejected; no money moves */
} WithdrawalRiskOutcome;

typedef struct WithdrawalRiskDecision
{
	WithdrawalRiskOutcome outcome;
	char	   *reason;			/* machine-readable, e.g. "review_threshold" */
} WithdrawalRiskDecision;

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

/*
 * Applies the hard limits (WD003) and returns the risk outcome.  Runs in
 * the caller's transaction and SPI connection, before the debit.
 */
extern void WithdrawalPolicyScreen(const WithdrawalRequestData *req,
								   WithdrawalRiskDecision *decision);

/* Four-eyes threshold for a currency, or -1 when there is none */
extern int64 WithdrawalFourEyesThreshold(const char *currency);

/* Drops the cached rows; called when configuration tables change */
extern void WithdrawalPolicyInvalidate(void);

#endif							/* WITHDRAWAL_POLICY_H */
