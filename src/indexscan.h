/*-------------------------------------------------------------------------
 *
 * indexscan.h
 *	  Direct index reads of the extension's tables, without planner or
 *	  executor, the relation-OID cache they use, and the names of the
 *	  indexes the C code opens (indexscan.c).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/indexscan.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_INDEXSCAN_H
#define WITHDRAWAL_INDEXSCAN_H

#include "access/genam.h"
#include "access/stratnum.h"
#include "utils/rel.h"
#include "utils/snapshot.h"

/*
 * The indexes the C code opens by name.  The constraints behind them are
 * named explicitly in sql/install/ (CONSTRAINT <name>), so that renaming
 * one is a visible change of both places, never a run-time failure of
 * request().  The plain indexes are created under these names there too.
 */
#define WITHDRAWAL_INDEX_ACCOUNT_PKEY		"account_pkey"
#define WITHDRAWAL_INDEX_BLOCKLIST_PKEY		"blocklist_pkey"
#define WITHDRAWAL_INDEX_CHANNEL_PKEY		"channel_pkey"
#define WITHDRAWAL_INDEX_CHANNEL_USAGE_PKEY	"channel_usage_pkey"
#define WITHDRAWAL_INDEX_CREDIT_KEY			"credit_account_id_idempotency_key_key"
#define WITHDRAWAL_INDEX_LEDGER_ENTRY_PKEY	"ledger_entry_pkey"
#define WITHDRAWAL_INDEX_LOCK_SLOT_PKEY		"lock_slot_pkey"
#define WITHDRAWAL_INDEX_OUTBOX_DUE			"outbox_due"
#define WITHDRAWAL_INDEX_PAYOUT_METHOD_PKEY	"payout_method_pkey"
#define WITHDRAWAL_INDEX_WALLET_KEY			"wallet_account_id_currency_key"
#define WITHDRAWAL_INDEX_WITHDRAWAL_KEY		"withdrawal_account_id_idempotency_key_key"
#define WITHDRAWAL_INDEX_ACCOUNT_CREATED	"withdrawal_account_created"
#define WITHDRAWAL_INDEX_DEVICE_CREATED		"withdrawal_device_created"
#define WITHDRAWAL_INDEX_IP_CREATED			"withdrawal_ip_created"

/*
 * The OID of a relation (table or index) of schema withdrawal, cached per
 * backend until a relcache invalidation names it.
 */
extern Oid	WithdrawalRelationOid(const char *relname);

/*
 * A btree scan of a table of schema withdrawal through one of its indexes,
 * with one condition (strategies[i], values[i]) on each of the first nkeys
 * index columns, each with the index's own operator family and collation.
 * Both relations are opened with AccessShareLock, kept to the end of the
 * transaction.  With snapshot InvalidSnapshot, the scan registers a fresh
 * one taken after those locks (what a READ COMMITTED statement would see)
 * and WithdrawalIndexScanClose unregisters it.
 */
typedef struct WithdrawalIndexScan
{
	Relation	rel;
	Relation	index;
	SysScanDesc scan;
	Snapshot	own_snapshot;	/* registered by the scan, or NULL */
	ScanKeyData keys[INDEX_MAX_KEYS];
} WithdrawalIndexScan;

extern void WithdrawalIndexScanOpen(WithdrawalIndexScan *s, const char *relname,
									const char *indexname, int nkeys,
									const StrategyNumber *strategies,
									const Datum *values, Snapshot snapshot);
extern void WithdrawalIndexScanClose(WithdrawalIndexScan *s);

/* The attribute number of a column of rel; an error when there is none */
extern AttrNumber WithdrawalColumnNumber(Relation rel, const char *name);

/* Whether a text datum equals the C string s, byte for byte */
extern bool WithdrawalTextDatumIs(Datum d, const char *s);

/*
 * Looks up at most one row of relation relname through its unique index
 * indexname, with the index's own collation, equality on the first nkeys
 * columns, and a fresh snapshot (what a READ COMMITTED statement would
 * see).  On a hit, copies the named columns into values/nulls (in the
 * current memory context) and returns true.  For the hot path, where an
 * executor start for a three-row read costs more than the read.
 */
extern bool WithdrawalIndexFetch(const char *relname, const char *indexname,
								 int nkeys, const Datum *keys,
								 int ncolumns, const char *const *columns,
								 Datum *values, bool *nulls);

#endif							/* WITHDRAWAL_INDEXSCAN_H */
