/*-------------------------------------------------------------------------
 *
 * dispatch.h
 *	  HTTP dispatch through the libcurl multi interface, driven from the
 *	  worker's latch loop, and the JSON helpers the drivers share.
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
#include "utils/jsonb.h"

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

/* true when url may be used: https, or http to loopback when allowed */
extern bool WithdrawalUrlAllowed(const char *url, char **why);

/*
 * JSON helpers built on PostgreSQL's JSON parser: a malformed document
 * gives NULL (never an ERROR); a missing key or a non-scalar gives NULL.
 */
extern Jsonb *WithdrawalJsonParse(const char *text, size_t len);
extern char *WithdrawalJsonGetText(Jsonb *jb, const char *key);
extern char *WithdrawalJsonGetPath(Jsonb *jb, const char *key1, const char *key2);

#endif							/* WITHDRAWAL_DISPATCH_H */
