/*-------------------------------------------------------------------------
 *
 * config_seed.c
 *	  config_seed(): the rows CREATE EXTENSION writes keep the changes
 *	  operators make to them across a dump and restore (seed 'default' or
 *	  'changed'); see sql/install/60_restore.sql.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/config_seed.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_index.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "spi.h"

PG_FUNCTION_INFO_V1(withdrawal_config_seed);

/*
 * The table whose seeded row config_seed() is replacing with an inserted
 * row, so that the UPDATE it runs passes its own BEFORE UPDATE check
 */
static Oid	seed_replacing_relid = InvalidOid;

/* The attribute number of the single-column primary key of rel */
static AttrNumber
seed_key_attnum(Relation rel)
{
	Oid			indexoid = RelationGetPrimaryKeyIndex(rel);
	HeapTuple	tuple;
	Form_pg_index index;
	AttrNumber	attnum;

	if (!OidIsValid(indexoid))
		elog(ERROR, "withdrawal_config_seed: table \"%s\" has no primary key",
			 RelationGetRelationName(rel));
	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for index %u", indexoid);
	index = (Form_pg_index) GETSTRUCT(tuple);
	if (index->indnkeyatts != 1)
		elog(ERROR, "withdrawal_config_seed: the primary key of \"%s\" must have one column",
			 RelationGetRelationName(rel));
	attnum = index->indkey.values[0];
	ReleaseSysCache(tuple);
	return attnum;
}

/* The column "seed" of rel */
static AttrNumber
seed_attnum(Relation rel)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), "seed");

	if (attnum <= 0)
		elog(ERROR, "withdrawal_config_seed: table \"%s\" has no column seed",
			 RelationGetRelationName(rel));
	return (AttrNumber) attnum;
}

/* The key of a row, for messages */
static char *
seed_key_text(Relation rel, HeapTuple tuple, AttrNumber keyatt)
{
	char	   *key = SPI_getvalue(tuple, RelationGetDescr(rel), keyatt);

	return key ? key : "NULL";
}

/*
 * Raises 55000 for a change that would remove a seeded row: a restore
 * runs CREATE EXTENSION, which writes the row again, and a dump cannot say
 * that it is gone.
 */
static void
seed_refuse_removal(Relation rel, const char *what, const char *key)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s row \"%s\" of withdrawal.%s: CREATE EXTENSION installed it",
					what, key, RelationGetRelationName(rel)),
			 errdetail("A restore of a dump would install the row again with its default values."),
			 errhint("Change the row instead: disable a channel (enabled = false), tighten a policy; changes are dumped and restored.")));
}

/*
 * Replaces the row of the inserted key when it is still as installed: an
 * UPDATE of every column but the key to the inserted values, the seed
 * state included (a dumped row carries its own; an operator's INSERT,
 * none, makes it 'changed').  Returns whether there was such a row.
 */
static bool
seed_replace(Relation rel, HeapTuple newtuple, AttrNumber keyatt, AttrNumber seedatt)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	StringInfoData sql;
	Oid		   *types = palloc(sizeof(Oid) * tupdesc->natts);
	Datum	   *values = palloc(sizeof(Datum) * tupdesc->natts);
	char	   *nulls = palloc(tupdesc->natts);
	int			n = 0;
	int			i;
	bool		isnull;
	bool		replaced = false;
	StringInfoData targets;
	StringInfoData sources;

	initStringInfo(&targets);
	initStringInfo(&sources);
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (att->attisdropped || att->attgenerated || att->attnum == keyatt)
			continue;
		types[n] = att->atttypid;
		values[n] = heap_getattr(newtuple, att->attnum, tupdesc, &isnull);
		/* the key stays a seeded one, whatever the INSERT said */
		if (isnull && att->attnum == seedatt)
		{
			values[n] = CStringGetTextDatum("changed");
			isnull = false;
		}
		nulls[n] = isnull ? 'n' : ' ';
		appendStringInfo(&targets, "%s%s", n > 0 ? ", " : "",
						 quote_identifier(NameStr(att->attname)));
		appendStringInfo(&sources, "%s$%d", n > 0 ? ", " : "", n + 1);
		n++;
	}
	types[n] = TupleDescAttr(tupdesc, keyatt - 1)->atttypid;
	values[n] = heap_getattr(newtuple, keyatt, tupdesc, &isnull);
	nulls[n] = isnull ? 'n' : ' ';
	if (isnull)
		return false;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "UPDATE %s.%s SET (%s) = ROW(%s) WHERE %s OPERATOR(pg_catalog.=) $%d"
					 " AND seed OPERATOR(pg_catalog.=) 'default'",
					 quote_identifier(get_namespace_name(RelationGetNamespace(rel))),
					 quote_identifier(RelationGetRelationName(rel)),
					 targets.data, sources.data,
					 quote_identifier(NameStr(TupleDescAttr(tupdesc, keyatt - 1)->attname)),
					 n + 1);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	seed_replacing_relid = RelationGetRelid(rel);
	PG_TRY();
	{
		if (SPI_execute_with_args(sql.data, n + 1, types, values, nulls, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not replace a seeded row of withdrawal.%s",
				 RelationGetRelationName(rel));
		replaced = SPI_processed > 0;
	}
	PG_FINALLY();
	{
		seed_replacing_relid = InvalidOid;
	}
	PG_END_TRY();
	SPI_finish();
	return replaced;
}

/*
 * An UPDATE by anyone but seed_replace(): refuses a changed key or seed
 * state of a seeded row, and marks a seeded row whose values change as
 * 'changed'.  Returns the row to store.
 */
static HeapTuple
seed_update(Relation rel, HeapTuple oldtuple, HeapTuple newtuple,
			AttrNumber keyatt, AttrNumber seedatt)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	bool		oldnull;
	bool		newnull;
	Datum		oldseed = heap_getattr(oldtuple, seedatt, tupdesc, &oldnull);
	Datum		newseed = heap_getattr(newtuple, seedatt, tupdesc, &newnull);
	bool		changed = false;
	int			i;

	if (oldnull != newnull ||
		(!oldnull && !datum_image_eq(oldseed, newseed, false, -1)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("column seed of withdrawal.%s is maintained by the extension",
						RelationGetRelationName(rel)),
				 errdetail("It says whether CREATE EXTENSION installed the row and whether it was changed since.")));
	if (oldnull)
		return newtuple;

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		Datum		a;
		Datum		b;
		bool		anull;
		bool		bnull;

		if (att->attisdropped || att->attnum == seedatt)
			continue;
		a = heap_getattr(oldtuple, att->attnum, tupdesc, &anull);
		b = heap_getattr(newtuple, att->attnum, tupdesc, &bnull);
		if (anull == bnull && (anull || datum_image_eq(a, b, att->attbyval, att->attlen)))
			continue;
		if (att->attnum == keyatt)
			seed_refuse_removal(rel, "change the key of", seed_key_text(rel, oldtuple, keyatt));
		changed = true;
	}
	if (changed && strcmp(TextDatumGetCString(oldseed), "changed") != 0)
	{
		int			cols[1];
		Datum		vals[1];
		bool		isnull[1] = {false};

		cols[0] = seedatt;
		vals[0] = CStringGetTextDatum("changed");
		return heap_modify_tuple_by_cols(newtuple, tupdesc, 1, cols, vals, isnull);
	}
	return newtuple;
}

/*
 * trigger config_seed(): BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW,
 * and BEFORE TRUNCATE FOR EACH STATEMENT, on the configuration tables
 * that CREATE EXTENSION seeds (a single-column primary key and a column
 * seed).  See sql/install/60_restore.sql for why.
 */
Datum
withdrawal_config_seed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	AttrNumber	keyatt;
	AttrNumber	seedatt;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		elog(ERROR, "withdrawal_config_seed: must be fired before the change");
	rel = trigdata->tg_relation;

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot truncate withdrawal.%s: CREATE EXTENSION installed some of its rows",
						RelationGetRelationName(rel)),
				 errdetail("A restore of a dump would install those rows again with their default values."),
				 errhint("DELETE the rows that were added instead.")));
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "withdrawal_config_seed: must be fired for each row");

	keyatt = seed_key_attnum(rel);
	seedatt = seed_attnum(rel);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		if (seed_replace(rel, trigdata->tg_trigtuple, keyatt, seedatt))
			return PointerGetDatum(NULL);
		return PointerGetDatum(trigdata->tg_trigtuple);
	}
	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		(void) heap_getattr(trigdata->tg_trigtuple, seedatt, RelationGetDescr(rel), &isnull);
		if (!isnull)
			seed_refuse_removal(rel, "delete", seed_key_text(rel, trigdata->tg_trigtuple, keyatt));
		return PointerGetDatum(trigdata->tg_trigtuple);
	}
	/* UPDATE: the replacement of a seeded row carries the dumped state */
	if (RelationGetRelid(rel) == seed_replacing_relid)
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(seed_update(rel, trigdata->tg_trigtuple, trigdata->tg_newtuple,
									   keyatt, seedatt));
}
