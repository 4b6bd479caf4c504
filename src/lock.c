/*-------------------------------------------------------------------------
 *
 * lock.c
 *	  Row locks on withdrawal.lock_slot: the locks that serialise the audit
 *	  sealers and the requests that share a policy counter.
 *
 * These used to be advisory locks, but an advisory lock is anybody's: any
 * login role, with no rights on anything, could take the sealers' key or
 * the hash of an account, a device or an IP and so stall seal_audit(),
 * verify_audit() or request() for those values for as long as it kept its
 * session.  Locking a row of a table takes the UPDATE privilege on it, and
 * on lock_slot no role but the owner has any privilege, so these locks can
 * only be taken by the extension's own code.
 *
 * The rows are fixed: one for the sealers and WITHDRAWAL_LOCK_BUCKETS hash
 * buckets per counter kind.  A collision only makes two unrelated requests
 * wait for each other.  They are locked here as SELECT ... FOR NO KEY
 * UPDATE would lock them, through the table access method: without a
 * planner and executor start for each (a request takes up to three), and
 * without checking the privileges of the role the code runs as, so the
 * worker's role needs no right on the table either.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/lock.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "indexscan.h"
#include "lock.h"

/*
 * Locks rows slot_ids[0..n-1] of lock_slot, in that order, sharing one
 * open of the table and its index, one snapshot and one index scan: a
 * request takes up to three, and each open and scan start costs about as
 * much as the lock itself.  Each row is found through the primary key with
 * a fresh snapshot, then locked where the executor would lock it for
 * SELECT ... FOR NO KEY UPDATE (see the file header for why not through
 * SQL).  Without "wait", stops and returns false at the first row another
 * transaction holds.
 */
static bool
lock_slots(int n, const int32 *slot_ids, bool wait)
{
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	Snapshot	snapshot;
	TupleTableSlot *slot;
	uint8		flags = TUPLE_LOCK_FLAG_LOCK_UPDATE_IN_PROGRESS;
	bool		locked = true;
	int			i;

	/* a row lock is a write: refused where SELECT FOR NO KEY UPDATE is */
	PreventCommandIfReadOnly("SELECT FOR NO KEY UPDATE");

	/* as the executor locks rows: the latest version, unless that breaks RR */
	if (!IsolationUsesXactSnapshot())
		flags |= TUPLE_LOCK_FLAG_FIND_LAST_VERSION;

	rel = table_open(WithdrawalRelationOid("lock_slot"), RowShareLock);
	index = index_open(WithdrawalRelationOid(WITHDRAWAL_INDEX_LOCK_SLOT_PKEY), AccessShareLock);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, snapshot, 1, 0);
	for (i = 0; i < n && locked; i++)
	{
		ScanKeyData key;
		ItemPointerData tid;
		TM_FailureData tmfd;
		TM_Result	result;

		/* lock_slot_pkey's only column, slot_id */
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT4EQ,
					Int32GetDatum(slot_ids[i]));
		index_rescan(scan, &key, 1, NULL, 0);
		if (!index_getnext_slot(scan, ForwardScanDirection, slot))
			elog(ERROR, "row %d of withdrawal.lock_slot is missing", slot_ids[i]);
		tid = slot->tts_tid;
		result = table_tuple_lock(rel, &tid, snapshot, slot, GetCurrentCommandId(true),
								  LockTupleNoKeyExclusive,
								  wait ? LockWaitBlock : LockWaitSkip, flags, &tmfd);
		switch (result)
		{
			case TM_Ok:
				break;
			case TM_WouldBlock:
				locked = false;
				break;
			case TM_Updated:
			case TM_Deleted:
				if (IsolationUsesXactSnapshot())
					ereport(ERROR,
							(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
							 errmsg("could not serialize access due to concurrent update")));
				elog(ERROR, "row %d of withdrawal.lock_slot was deleted", slot_ids[i]);
				break;
			default:
				elog(ERROR, "unexpected result %d locking row %d of withdrawal.lock_slot",
					 (int) result, slot_ids[i]);
				break;
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return locked;
}

bool
WithdrawalLockSlot(int32 slot_id, bool wait)
{
	return lock_slots(1, &slot_id, wait);
}

/*
 * hash_bytes, as the advisory locks used, is stable within a server:
 * every backend maps a value to the same bucket, which is all it takes.
 */
void
WithdrawalLockBuckets(int n, const int32 *bases, const char *const *values)
{
	int32		slot_ids[WITHDRAWAL_LOCK_MAX_BUCKETS];
	int			i;

	Assert(n <= WITHDRAWAL_LOCK_MAX_BUCKETS);
	for (i = 0; i < n; i++)
	{
		uint32		h = hash_bytes((const unsigned char *) values[i], strlen(values[i]));

		slot_ids[i] = bases[i] + (int32) (h % WITHDRAWAL_LOCK_BUCKETS);
	}
	if (n > 0)
		lock_slots(n, slot_ids, true);
}
