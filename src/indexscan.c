/*-------------------------------------------------------------------------
 *
 * indexscan.c
 *	  Direct index reads of the extension's tables (systable_beginscan, no
 *	  planner or executor) and the cache of relation OIDs they open.
 *
 * The one spelling of a "direct scan": the hot-path fetches of request()
 * and credit(), the policy counters and the exact blocklist lookups all
 * build their scan keys here, from the index's own operator families and
 * collations.  The callers hold the snapshot rules (see policy.c).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/indexscan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "indexscan.h"
#include "spi.h"

/* Relation OIDs looked up by name, see WithdrawalRelationOid */
#define RELATION_CACHE_SIZE 24
static struct
{
	char		name[NAMEDATALEN];
	Oid			oid;
}			relation_cache[RELATION_CACHE_SIZE];
static bool relation_callback_registered = false;

/*
 * Forgets the OID of a relation that was invalidated (all of them at a
 * full reset): it changes when the extension is dropped and created again.
 * A leaf below cache.c, so it registers with PostgreSQL's registry itself.
 */
static void
relation_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	for (i = 0; i < RELATION_CACHE_SIZE; i++)
		if (!OidIsValid(relid) || relation_cache[i].oid == relid)
			relation_cache[i].oid = InvalidOid;
}

Oid
WithdrawalRelationOid(const char *relname)
{
	Oid			oid;
	int			i;

	for (i = 0; i < RELATION_CACHE_SIZE && relation_cache[i].name[0] != '\0'; i++)
		if (strcmp(relation_cache[i].name, relname) == 0 &&
			OidIsValid(relation_cache[i].oid))
			return relation_cache[i].oid;

	if (!relation_callback_registered)
	{
		CacheRegisterRelcacheCallback(relation_relcache_callback, (Datum) 0);
		relation_callback_registered = true;
	}
	oid = get_relname_relid(relname, get_namespace_oid("withdrawal", false));
	if (!OidIsValid(oid))
		elog(ERROR, "relation withdrawal.%s does not exist", relname);
	for (i = 0; i < RELATION_CACHE_SIZE; i++)
		if (relation_cache[i].name[0] == '\0' ||
			strcmp(relation_cache[i].name, relname) == 0)
		{
			strlcpy(relation_cache[i].name, relname, NAMEDATALEN);
			relation_cache[i].oid = oid;
			break;
		}
	return oid;
}

/* See indexscan.h.  No planner, no executor: these run on every request. */
void
WithdrawalIndexScanOpen(WithdrawalIndexScan *s, const char *relname,
						const char *indexname, int nkeys,
						const StrategyNumber *strategies, const Datum *values,
						Snapshot snapshot)
{
	int			i;

	Assert(nkeys <= INDEX_MAX_KEYS);
	s->rel = table_open(WithdrawalRelationOid(relname), AccessShareLock);
	s->index = index_open(WithdrawalRelationOid(indexname), AccessShareLock);
	s->own_snapshot = NULL;
	if (snapshot == InvalidSnapshot)
		snapshot = s->own_snapshot = RegisterSnapshot(GetTransactionSnapshot());
	for (i = 0; i < nkeys; i++)
	{
		Oid			type = s->index->rd_opcintype[i];
		Oid			op = get_opfamily_member(s->index->rd_opfamily[i], type, type,
											 strategies[i]);

		if (!OidIsValid(op))
			elog(ERROR, "no operator of strategy %d for index %s",
				 strategies[i], RelationGetRelationName(s->index));
		/* systable_beginscan takes heap attribute numbers */
		ScanKeyEntryInitialize(&s->keys[i], 0, s->index->rd_index->indkey.values[i],
							   strategies[i], InvalidOid, s->index->rd_indcollation[i],
							   get_opcode(op), values[i]);
	}
	s->scan = systable_beginscan(s->rel, RelationGetRelid(s->index), true, snapshot,
								 nkeys, s->keys);
}

void
WithdrawalIndexScanClose(WithdrawalIndexScan *s)
{
	systable_endscan(s->scan);
	if (s->own_snapshot != NULL)
		UnregisterSnapshot(s->own_snapshot);
	index_close(s->index, NoLock);
	table_close(s->rel, NoLock);
}

AttrNumber
WithdrawalColumnNumber(Relation rel, const char *name)
{
	int			attno = SPI_fnumber(RelationGetDescr(rel), name);

	if (attno <= 0)
		elog(ERROR, "column %s.%s does not exist", RelationGetRelationName(rel), name);
	return (AttrNumber) attno;
}

bool
WithdrawalTextDatumIs(Datum d, const char *s)
{
	text	   *t = DatumGetTextPP(d);
	size_t		len = VARSIZE_ANY_EXHDR(t);

	return len == strlen(s) && memcmp(VARDATA_ANY(t), s, len) == 0;
}

bool
WithdrawalIndexFetch(const char *relname, const char *indexname, int nkeys,
					 const Datum *keys, int ncolumns,
					 const char *const *columns, Datum *values, bool *nulls)
{
	StrategyNumber strategies[INDEX_MAX_KEYS];
	WithdrawalIndexScan s;
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	int			i;

	Assert(nkeys <= INDEX_MAX_KEYS);
	WithdrawalCheckSchemaVersion();
	for (i = 0; i < nkeys; i++)
		strategies[i] = BTEqualStrategyNumber;
	WithdrawalIndexScanOpen(&s, relname, indexname, nkeys, strategies, keys,
							InvalidSnapshot);
	tuple = systable_getnext(s.scan);
	if (HeapTupleIsValid(tuple))
	{
		tupdesc = RelationGetDescr(s.rel);
		for (i = 0; i < ncolumns; i++)
		{
			AttrNumber	attnum = WithdrawalColumnNumber(s.rel, columns[i]);
			Form_pg_attribute att = TupleDescAttr(tupdesc, attnum - 1);

			values[i] = heap_getattr(tuple, attnum, tupdesc, &nulls[i]);
			if (!nulls[i])
				values[i] = datumCopy(values[i], att->attbyval, att->attlen);
		}
	}
	WithdrawalIndexScanClose(&s);
	return HeapTupleIsValid(tuple);
}
