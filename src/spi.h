/*-------------------------------------------------------------------------
 *
 * spi.h
 *	  SPI plumbing: kept plans, execution with checked result codes, and
 *	  accessors of the result (spi.c).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/spi.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_SPI_H
#define WITHDRAWAL_SPI_H

#include "executor/spi.h"
#include "utils/uuid.h"

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
extern void WithdrawalExecuteFreshPlan(const char *sql, int nargs, Oid *argtypes,
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

/*
 * Runs a kept statement (prepared on first use) whose one parameter, $1,
 * is a withdrawal id, and answers whether it returned a row: the lookup,
 * usually with a row lock, that starts every call on one withdrawal.
 * Without a row it raises WD007 unless missing_ok.  The row is in
 * SPI_tuptable.
 */
extern bool WithdrawalSelectWithdrawal(SPIPlanPtr *plan, const char *sql,
									   const pg_uuid_t *id, bool read_only,
									   bool missing_ok);

/* Accessors for the first row of SPI_tuptable */
extern Datum WithdrawalSpiGet(int row, int col, bool *isnull);
extern char *WithdrawalSpiGetText(int row, int col);

/*
 * Raises 55000 when the extension's SQL objects in this database are not
 * at the library's version (between the installation of a new library
 * and ALTER EXTENSION UPDATE).  Checked once per backend until the next
 * relcache invalidation; called before every statement and direct scan.
 */
extern void WithdrawalCheckSchemaVersion(void);

#endif							/* WITHDRAWAL_SPI_H */
