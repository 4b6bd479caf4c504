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

/*
 * Drops every payout on the wire and every decided one, unrecorded: for a
 * worker whose extension was dropped.  Their outcomes are not needed: the
 * rows they would be recorded in are gone.
 */
extern void WithdrawalDispatchAbandonAll(void);

/* true when url may be used: https, or http to loopback when allowed */
extern bool WithdrawalUrlAllowed(const char *url, char **why);

/*
 * JSON helpers built on PostgreSQL's JSON parser: a malformed document
 * gives NULL (never an ERROR); a missing key or a non-scalar gives NULL.
 */
extern Jsonb *WithdrawalJsonParse(const char *text, size_t len);
extern char *WithdrawalJsonGetText(Jsonb *jb, const char *key);
extern char *WithdrawalJsonGetPath(Jsonb *jb, const char *key1, const char *key2);

/* Length of the array jb->key, or -1 when it is not an array */
extern int	WithdrawalJsonArrayLength(Jsonb *jb, const char *key);

/* The scalar field of the object jb->key[index], as text, or NULL */
extern char *WithdrawalJsonArrayGetText(Jsonb *jb, const char *key, int index,
										const char *field);

/* true when code is in list, a sorted array of n strings (NULL: false) */
extern bool WithdrawalCodeListed(const char *code, const char *const *list, int n);

#endif							/* WITHDRAWAL_DISPATCH_H */
