/*-------------------------------------------------------------------------
 *
 * policy.h
 *	  The risk policy applied to withdrawal requests: the screen and the
 *	  four-eyes threshold (policy.c).
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

#include "channel.h"

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
 * Applies the hard limits (WD003) and returns the risk outcome.  Runs in
 * the caller's transaction and SPI connection, after the channel check
 * (channel.h) and before the debit.
 */
extern void WithdrawalPolicyScreen(const WithdrawalRequestData *req,
								   WithdrawalRiskDecision *decision);

/* Four-eyes threshold for a currency, or -1 when there is none */
extern int64 WithdrawalFourEyesThreshold(const char *currency);

#endif							/* WITHDRAWAL_POLICY_H */
