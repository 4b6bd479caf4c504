/*-------------------------------------------------------------------------
 *
 * dispatch.h
 *	  HTTP dispatch through the libcurl multi interface, driven from the
 *	  worker's latch loop.  The drivers and their registry are behind
 *	  processor.h; the URL policy is in url.h.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/dispatch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_DISPATCH_H
#define WITHDRAWAL_DISPATCH_H

#include "datatype/timestamp.h"

#include "processor.h"

/* Sets up libcurl; frees it at process exit */
extern void WithdrawalDispatchInit(void);

/*
 * Starts p on the wire, or decides its outcome at once (sandbox driver,
 * refused URL, missing secret...).  Returns true when p is in flight; a
 * payout decided at once is returned by WithdrawalDispatchNextDone.
 */
extern bool WithdrawalDispatchStart(WithdrawalPayout *p);

/*
 * Waits up to timeout_ms for the latch, the transfers' sockets or the
 * transfers' own timers, and advances the transfers.  Exits on postmaster
 * death.  Returns true when the latch was set (the caller resets it).
 */
extern bool WithdrawalDispatchWait(long timeout_ms);

/* A payout whose outcome is decided, or NULL; the caller owns it */
extern WithdrawalPayout *WithdrawalDispatchNextDone(void);

/* How many decided payouts wait to be recorded, and since when */
extern int	WithdrawalDispatchDoneCount(TimestampTz *since);

/* Payouts on the wire */
extern int	WithdrawalDispatchInFlight(void);

/*
 * Drops every payout on the wire and every decided one, unrecorded: for a
 * worker whose extension was dropped.  Their outcomes are not needed: the
 * rows they would be recorded in are gone.
 */
extern void WithdrawalDispatchAbandonAll(void);

#endif							/* WITHDRAWAL_DISPATCH_H */
