/*-------------------------------------------------------------------------
 *
 * util.h
 *	  Argument validation and SPI helpers shared by the SQL entry points.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/util.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_UTIL_H
#define WITHDRAWAL_UTIL_H

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/*
 * Argument checks.  Each raises 22023 (invalid_parameter_value) naming the
 * argument when the value is NULL, empty or too long, and returns the value
 * as a palloc'd C string (or the detoasted datum).
 */
extern char *WithdrawalArgText(FunctionCallInfo fcinfo, int argno,
							   const char *argname, int maxbytes);
extern char *WithdrawalArgTextOrNull(FunctionCallInfo fcinfo, int argno,
									 const char *argname, int maxbytes);
/*
 * An account id or idempotency key: like WithdrawalArgText, and 22023 when
 * the value holds a control character (C0, DEL, C1) or a Unicode
 * bidirectional formatting character.  WithdrawalCheckIdentifier applies
 * the same check to a value that is not a text argument of its own.
 */
extern char *WithdrawalArgIdentifier(FunctionCallInfo fcinfo, int argno,
									 const char *argname, int maxbytes);
extern void WithdrawalCheckIdentifier(const char *value, const char *argname);

/*
 * The one spelling of an IP address (host_only) or of an address or network
 * (a blocklist entry), as inet_out prints it; an IPv4-mapped IPv6 value is
 * the IPv4 one it maps.  Garbage, and a network where host_only, are 22023
 * errors naming argname.
 */
extern char *WithdrawalCanonicalIp(const char *value, bool host_only,
								   const char *argname);
extern int64 WithdrawalArgAmount(FunctionCallInfo fcinfo, int argno,
								 const char *argname);
extern Jsonb *WithdrawalArgObject(FunctionCallInfo fcinfo, int argno,
								  const char *argname);
extern pg_uuid_t *WithdrawalArgUuid(FunctionCallInfo fcinfo, int argno,
									const char *argname);
extern char *WithdrawalArgCurrency(FunctionCallInfo fcinfo, int argno);

/*
 * The checks of the Arg functions above on a value that is not an argument
 * of its own (an element of an array argument): 22023 naming argname.
 * WithdrawalCheckText returns the value as a C string; the currency check
 * requires an SPI connection.
 */
extern char *WithdrawalCheckText(text *t, const char *argname, int maxbytes);
extern void WithdrawalCheckAmount(int64 amount, const char *argname);
extern void WithdrawalCheckObject(Jsonb *jb, const char *argname);
extern void WithdrawalCheckCurrency(const char *code);

/* true when code is a known ISO 4217 code (cached per backend) */
extern bool WithdrawalCurrencyKnown(const char *code);

/* The text form of a UUID, for messages */
extern char *WithdrawalUuidText(const pg_uuid_t *id);

/* Raises WD007 for a withdrawal id that does not exist */
extern void WithdrawalRaiseUnknownWithdrawal(const pg_uuid_t *id) pg_attribute_noreturn();

/* A fresh random (version 4) UUID */
extern pg_uuid_t *WithdrawalNewUuid(void);

/* A fresh random UUID carrying the account's logical partition (sharding) */
extern pg_uuid_t *WithdrawalNewAccountUuid(const char *account_id);

/*
 * Prepared statements kept for the life of the backend.  *plan is set on
 * first use; the plan cache re-plans after DDL.
 */
extern SPIPlanPtr WithdrawalPrepare(SPIPlanPtr *plan, const char *sql,
									int nargs, Oid *argtypes);

/*
 * Like WithdrawalPrepare, for statements that act on a set of rows given by
 * key (an array parameter): planned at every execution, with the array's
 * length and the tables' sizes as they are then.  A generic plan made
 * while a table was empty would scan or hash the whole table for ever.
 */
extern SPIPlanPtr WithdrawalPrepareCustom(SPIPlanPtr *plan, const char *sql,
										  int nargs, Oid *argtypes);

/*
 * Plans and executes a statement once, raising unless the result code is
 * expected: for rare statements (the sweep, the audit look back) over
 * tables whose size swings.  A kept plan could date from when a table was
 * nearly empty and join it as if it still were, for a whole statement.
 */
extern void WithdrawalExecuteOnce(const char *sql, int nargs, Oid *argtypes,
								  Datum *values, const char *nulls, int expected);

/*
 * SPI_execute_plan that raises unless the result code is expected.
 * read_only must be false in volatile functions: only then does each
 * statement take a fresh snapshot and see what concurrent transactions
 * committed while we waited for a lock (an idempotency key, a row).
 */
extern void WithdrawalExecute(SPIPlanPtr plan, Datum *values, const char *nulls,
							  bool read_only, long count, int expected);

/*
 * Like WithdrawalExecute, but an error whose SQLSTATE is in codes is
 * swallowed and its SQLSTATE returned (0 when the plan ran).  The caller
 * must then raise an ERROR of its own at once: the transaction is in no
 * state to continue.  This lets a low-level error (check violation,
 * overflow) be reported in the terms of the API.
 */
extern int	WithdrawalExecuteMapped(SPIPlanPtr plan, Datum *values,
									const char *nulls, long count,
									int expected, const int *codes,
									int ncodes);

/* Accessors for the first row of SPI_tuptable */
extern Datum WithdrawalSpiGet(int row, int col, bool *isnull);
extern char *WithdrawalSpiGetText(int row, int col);

/* The session user's name, for audit and approvals */
extern char *WithdrawalActor(void);

/*
 * The OID of a relation (table or index) of schema withdrawal, cached per
 * backend until a relcache invalidation names it.
 */
extern Oid	WithdrawalRelationOid(const char *relname);


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

/* Forget cached configuration (currency list and the policy cache) */
extern void WithdrawalConfigCacheInit(void);

#endif							/* WITHDRAWAL_UTIL_H */
