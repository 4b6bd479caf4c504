/*-------------------------------------------------------------------------
 *
 * cache.c
 *	  The invalidation scheme of the per-backend configuration caches, and
 *	  the currency list.
 *
 * One relcache callback serves every registered cache: it matches the
 * invalidated relation against each cache's tables and bumps that cache's
 * counter (see cache.h).  The module knows no cache but its own (the
 * currency list): the owners of the others (channel.c, blocklist.c)
 * register theirs here.  The config_changed trigger (config.c) sends the
 * invalidations at commit of every change of a configuration table.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/cache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "args.h"
#include "cache.h"
#include "spi.h"

/* Registered caches; a handful per backend, each registered once */
#define MAX_CACHES 16
static WithdrawalCache *caches[MAX_CACHES];
static int	ncaches = 0;
static bool callback_registered = false;

/* The currency list: known codes, sorted */
static WithdrawalCache currency_cache = WITHDRAWAL_CACHE("currency");
static char (*currency_codes)[4] = NULL;
static int	currency_count = 0;

/*
 * A relcache invalidation of a cached table (or a full reset) makes its
 * caches stale.  Touches no catalog and frees nothing: it may run in the
 * middle of a load.
 */
static void
cache_relcache_callback(Datum arg, Oid relid)
{
	int			i;
	int			t;

	for (i = 0; i < ncaches; i++)
	{
		WithdrawalCache *cache = caches[i];
		bool		ours = !OidIsValid(relid);

		for (t = 0; t < WITHDRAWAL_CACHE_MAX_TABLES && !ours; t++)
			ours = cache->tables[t] != NULL && relid == cache->table_oids[t];
		if (ours)
			cache->inval_count++;
	}
}

bool
WithdrawalCacheValid(const WithdrawalCache *cache)
{
	return cache->loaded && cache->loaded_at == cache->inval_count;
}

uint64
WithdrawalCacheLoadBegin(WithdrawalCache *cache)
{
	uint64		begin = cache->inval_count;
	Oid			nsp;
	int			t;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(cache_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	if (!cache->registered)
	{
		if (ncaches >= MAX_CACHES)
			elog(ERROR, "too many withdrawal caches");
		caches[ncaches++] = cache;
		cache->registered = true;
	}
	nsp = get_namespace_oid("withdrawal", false);
	for (t = 0; t < WITHDRAWAL_CACHE_MAX_TABLES; t++)
		cache->table_oids[t] = cache->tables[t] == NULL ? InvalidOid :
			get_relname_relid(cache->tables[t], nsp);
	return begin;
}

void
WithdrawalCacheLoadEnd(WithdrawalCache *cache, uint64 begin)
{
	cache->loaded = true;
	cache->loaded_at = begin;
}

/*
 * Loads the sorted list of currency codes, in the caller's SPI connection.
 */
static void
load_currencies(void)
{
	static SPIPlanPtr plan = NULL;
	uint64		begin = WithdrawalCacheLoadBegin(&currency_cache);
	MemoryContext oldcxt;
	int			i;

	WithdrawalPrepare(&plan,
					  "SELECT code FROM withdrawal.currency ORDER BY code COLLATE \"C\"",
					  0, NULL);
	WithdrawalExecute(plan, NULL, NULL, true, 0, SPI_OK_SELECT);

	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	if (currency_codes)
		pfree(currency_codes);
	currency_codes = palloc0(sizeof(*currency_codes) * Max(SPI_processed, 1));
	MemoryContextSwitchTo(oldcxt);
	for (i = 0; i < SPI_processed; i++)
		strlcpy(currency_codes[i], WithdrawalSpiGetText(i, 1), 4);
	currency_count = SPI_processed;
	WithdrawalCacheLoadEnd(&currency_cache, begin);
}

static int
currency_cmp(const void *a, const void *b)
{
	return strcmp((const char *) a, (const char *) b);
}

bool
WithdrawalCurrencyKnown(const char *code)
{
	if (!WithdrawalCacheValid(&currency_cache))
		load_currencies();
	return bsearch(code, currency_codes, currency_count,
				   sizeof(*currency_codes), currency_cmp) != NULL;
}

/*
 * Refuses a code that is not a known upper-case ISO 4217 code.  Requires an
 * SPI connection (the list is loaded on first use).
 */
void
WithdrawalCheckCurrency(const char *code)
{
	WithdrawalCheckCurrencyCode(code);
	if (!WithdrawalCurrencyKnown(code))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown currency \"%s\"", code),
				 errhint("Currencies are listed in withdrawal.currency.")));
}

/*
 * Returns the currency argument (see WithdrawalCheckCurrency).
 */
char *
WithdrawalArgCurrency(FunctionCallInfo fcinfo, int argno)
{
	char	   *code = WithdrawalArgText(fcinfo, argno, "currency", 3);

	WithdrawalCheckCurrency(code);
	return code;
}
