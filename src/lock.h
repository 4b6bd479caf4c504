/*-------------------------------------------------------------------------
 *
 * lock.h
 *	  Row locks on withdrawal.lock_slot, which only the extension takes.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/lock.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_LOCK_H
#define WITHDRAWAL_LOCK_H

/*
 * The rows of withdrawal.lock_slot (sql/install/00_core.sql and
 * 25_policy.sql create them): one for the audit sealers, and
 * WITHDRAWAL_LOCK_BUCKETS hash buckets from each counter base.
 */
#define WITHDRAWAL_LOCK_AUDIT_SEAL		0
#define WITHDRAWAL_LOCK_ACCOUNT			(1 << 16)
#define WITHDRAWAL_LOCK_DEVICE			(2 << 16)
#define WITHDRAWAL_LOCK_IP				(3 << 16)
#define WITHDRAWAL_LOCK_BUCKETS			4096

/*
 * Locks row slot_id of withdrawal.lock_slot until the end of the
 * transaction (or of the subtransaction, if that aborts).  With "wait",
 * waits for another holder; without, returns false at once when the row
 * is held.  Raises in a read-only transaction.
 */
extern bool WithdrawalLockSlot(int32 slot_id, bool wait);

/*
 * Locks, in order and waiting as needed, the bucket of each values[i]
 * among the counter buckets from bases[i]; at most
 * WITHDRAWAL_LOCK_MAX_BUCKETS at a time.
 */
#define WITHDRAWAL_LOCK_MAX_BUCKETS		3
extern void WithdrawalLockBuckets(int n, const int32 *bases,
								  const char *const *values);

#endif							/* WITHDRAWAL_LOCK_H */
