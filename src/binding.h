/*-------------------------------------------------------------------------
 *
 * binding.h
 *	  The binding of dispatch to an installation (database system and
 *	  database), which keeps a restored copy from paying.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/binding.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_BINDING_H
#define WITHDRAWAL_BINDING_H

#include "datatype/timestamp.h"

/* The row of withdrawal.installation and the installation we run in */
typedef struct WithdrawalBinding
{
	bool		found;			/* false: no row, dispatch is held */
	int64		bound_system_identifier;
	Oid			bound_database_oid;
	char		bound_database_name[NAMEDATALEN];
	int64		system_identifier;
	Oid			database_oid;
	bool		held;			/* the two differ: send nothing */

	/*
	 * While the row is the one this database's CREATE EXTENSION wrote (never
	 * restored over, never resumed): when it was written.  A payout queued
	 * before it can only come from a restore that has not loaded the
	 * original's binding yet, and is not sent (see scan_due in claim.c).
	 * 0 otherwise.
	 */
	TimestampTz fresh_since;
} WithdrawalBinding;

/*
 * The binding as of the latest change of withdrawal.installation this
 * backend has seen: re-read (in the caller's transaction and SPI
 * connection) only after a relcache invalidation of the table, which its
 * config_changed trigger sends at every change.  Returns true when it was
 * re-read.
 */
extern bool WithdrawalBindingCheck(WithdrawalBinding *binding);

#endif							/* WITHDRAWAL_BINDING_H */
