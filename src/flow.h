/*-------------------------------------------------------------------------
 *
 * flow.h
 *	  Flow control of the channels, shared by all dispatcher workers
 *	  (flow.c): token buckets, in-flight caps, Retry-After, breakers.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/flow.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_FLOW_H
#define WITHDRAWAL_FLOW_H

#include "datatype/timestamp.h"
#include "storage/lwlock.h"

#include "withdrawal.h"

/*
 * The shared array of channels: its size, and its creation (from shmem.c's
 * startup hook, under AddinShmemInitLock) with the lock that protects it
 */
extern Size WithdrawalFlowShmemSize(void);
extern void WithdrawalFlowShmemStartup(LWLock *lock);

/*
 * Worker slot "worker" has no request on any channel's wire, and no
 * probe: its process starts or exits
 */
extern void WithdrawalFlowForgetWorker(int worker);

/*
 * Flow control of a channel, shared by all workers.  Reserve grants up to
 * "want" sends, limited by the token bucket (rate <= 0: no rate limit),
 * by max_in_flight summed over all workers (<= 0: no cap), by a 429
 * block and by the channel's circuit breaker; *wait_ms receives when
 * asking again can succeed (-1: no idea).  *probe is set when the grant
 * is the single request a half-open breaker lets through (at most one).
 * Each granted send counts as in flight for "worker" until Release: unsent
 * ones give their token (and a probe) back, done ones only leave the
 * in-flight count.
 */
extern int	WithdrawalChannelReserve(const char *channel, double rate, int burst,
									 int max_in_flight, int worker, int want,
									 long *wait_ms, bool *probe);
extern void WithdrawalChannelRelease(const char *channel, int worker,
									 int unsent, int done, int burst);

/* Honours a 429 Retry-After: no worker sends on the channel for ms */
extern void WithdrawalChannelBlock(const char *channel, long ms, int burst);

/*
 * The circuit breaker of a channel: what one request that was
 * on the wire says about the processor's health.  A transport failure or
 * a 5xx answer is a failure; any other answer (a decline, 409, 429...) a
 * success; NONE for what says nothing (a status query that is not the
 * probe, a payout decided without a request).
 */
typedef enum WithdrawalBreakerVerdict
{
	WITHDRAWAL_BREAKER_NONE,
	WITHDRAWAL_BREAKER_SUCCESS,
	WITHDRAWAL_BREAKER_FAILURE
} WithdrawalBreakerVerdict;

/* States of a breaker, as monitor_channels shows them */
typedef enum WithdrawalBreakerState
{
	WITHDRAWAL_BREAKER_CLOSED = 0,	/* sends flow */
	WITHDRAWAL_BREAKER_OPEN,		/* nothing is sent until breaker_until */
	WITHDRAWAL_BREAKER_HALF_OPEN	/* one probe is let through */
} WithdrawalBreakerState;

/*
 * Counts a verdict against the channel's breaker ("probe": the request
 * was the half-open probe) and logs the change of state it makes, once;
 * "error" is the failure's message, for the log line.  Returns true when
 * the channel has just closed: workers waiting for the probe should be
 * woken (WithdrawalWakeWorkersNow).
 */
extern bool WithdrawalChannelBreakerNote(const char *channel, int worker,
										 WithdrawalBreakerVerdict verdict,
										 bool probe, const char *error,
										 int burst);

/*
 * Why a channel cannot dispatch (NULL: it can), as the last worker to
 * load the channels found it; for monitoring.
 */
extern void WithdrawalChannelNoteUnsendable(const char *channel, const char *why,
											int burst);

/* A copy of one channel's shared flow-control state */
typedef struct WithdrawalChannelStatus
{
	char		name[NAMEDATALEN];
	double		rate;			/* as last reserved with; <= 0: no limit */
	int			burst;
	double		tokens;			/* brought up to date at the copy */
	TimestampTz blocked_until;	/* 0: never blocked */
	int64		throttled;		/* Retry-After pauses since server start */
	int			in_flight;		/* summed over the workers */
	char		unsendable[WITHDRAWAL_STATUS_TEXT_LEN];	/* "": can send */
	WithdrawalBreakerState breaker;
	TimestampTz breaker_until;	/* end of the last open period; 0: never */
	int			breaker_failures;	/* consecutive failures counted */
	int64		breaker_opened; /* times opened since server start */
} WithdrawalChannelStatus;

/*
 * Copies the state of every channel that has a shared slot (at most max)
 * into out; returns how many, or -1 when the library is not preloaded.
 */
extern int	WithdrawalShmemChannels(WithdrawalChannelStatus *out, int max);

#endif							/* WITHDRAWAL_FLOW_H */
