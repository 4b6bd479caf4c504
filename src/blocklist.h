/*-------------------------------------------------------------------------
 *
 * blocklist.h
 *	  The blocklist: which entries a request must be looked up against,
 *	  the lookups, and block()/unblock() (blocklist.c).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/blocklist.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_BLOCKLIST_H
#define WITHDRAWAL_BLOCKLIST_H

#include "nodes/pg_list.h"
#include "utils/snapshot.h"

#include "channel.h"

/* Kinds of blocklist entry, in the order hits are reported */
#define WITHDRAWAL_BLOCK_KINDS 4

/* What WithdrawalBlocklistMatch has to look up for one request */
typedef struct WithdrawalBlockPlan
{
	bool		lookup[WITHDRAWAL_BLOCK_KINDS];	/* per kind, see blocklist.c */
	List	   *tokens;			/* destination tokens (C strings) */
} WithdrawalBlockPlan;

/*
 * Fills plan with the kinds of entry that exist and that the request has a
 * value for; false when there is nothing to look up (an empty blocklist
 * costs nothing).  In the caller's SPI connection.
 */
extern bool WithdrawalBlocklistPlan(const WithdrawalRequestData *req,
									WithdrawalBlockPlan *plan);

/*
 * The first (by name) unexpired list holding an entry that matches the
 * request, or NULL: account, then destination tokens, device, and the IP
 * (contained in a listed address or network).  Reads with snapshot, which
 * the caller takes after its counter locks.
 */
extern char *WithdrawalBlocklistMatch(const WithdrawalRequestData *req,
									  const WithdrawalBlockPlan *plan,
									  TimestampTz now, Snapshot snapshot);

#endif							/* WITHDRAWAL_BLOCKLIST_H */
