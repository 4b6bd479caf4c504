/*-------------------------------------------------------------------------
 *
 * cache.h
 *	  Per-backend caches of configuration tables: the one invalidation
 *	  scheme they all use, and the currency list (cache.c).
 *
 * A cache owner declares a WithdrawalCache naming the tables its copy is
 * made of, and loads through it:
 *
 *		static WithdrawalCache my_cache = WITHDRAWAL_CACHE("policy", "channel");
 *
 *		if (!WithdrawalCacheValid(&my_cache))
 *		{
 *			uint64		begin = WithdrawalCacheLoadBegin(&my_cache);
 *
 *			... read the tables (SPI), replace the copy ...
 *			WithdrawalCacheLoadEnd(&my_cache, begin);
 *		}
 *
 * A relcache invalidation of one of the tables (or a full reset) only
 * bumps the cache's counter; it never frees anything, because it may
 * arrive while a load is running SPI.  A load is valid when no
 * invalidation arrived since it began; one that arrived during the load
 * makes the next use load again.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/cache.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_CACHE_H
#define WITHDRAWAL_CACHE_H

#include "fmgr.h"

#define WITHDRAWAL_CACHE_MAX_TABLES 4

typedef struct WithdrawalCache
{
	/* tables of schema withdrawal the copy is made of; unused slots NULL */
	const char *tables[WITHDRAWAL_CACHE_MAX_TABLES];

	/* the rest is cache.c's */
	Oid			table_oids[WITHDRAWAL_CACHE_MAX_TABLES];
	uint64		inval_count;	/* bumped by the relcache callback */
	uint64		loaded_at;		/* inval_count when the valid load began */
	bool		loaded;
	bool		registered;
} WithdrawalCache;

/* A static initialiser naming the tables */
#define WITHDRAWAL_CACHE(...) {{__VA_ARGS__}}

/* Whether the copy reflects the tables as of an invalidation-free load */
extern bool WithdrawalCacheValid(const WithdrawalCache *cache);

/*
 * Starts a load, in a transaction: registers the cache with the callback
 * (once per backend) and looks up its tables' OIDs again (they change when
 * the extension is dropped and created again; dropping the old tables
 * invalidated them).  Returns the token to pass to WithdrawalCacheLoadEnd.
 */
extern uint64 WithdrawalCacheLoadBegin(WithdrawalCache *cache);

/* Marks the cache loaded as of the load that began with begin */
extern void WithdrawalCacheLoadEnd(WithdrawalCache *cache, uint64 begin);

/*
 * The known ISO 4217 codes (withdrawal.currency), cached with the scheme
 * above.  WithdrawalCurrencyKnown and WithdrawalCheckCurrency need an SPI
 * connection (the list is loaded on first use).
 */
extern bool WithdrawalCurrencyKnown(const char *code);

/*
 * Refuses (22023) a code that is not a known upper-case ISO 4217 code.
 */
extern void WithdrawalCheckCurrency(const char *code);

/* Returns the currency argument, checked as WithdrawalCheckCurrency does */
extern char *WithdrawalArgCurrency(FunctionCallInfo fcinfo, int argno);

#endif							/* WITHDRAWAL_CACHE_H */
