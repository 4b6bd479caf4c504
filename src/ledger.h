/*-------------------------------------------------------------------------
 *
 * ledger.h
 *	  The double-entry ledger and the wallet balances that cache it.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/ledger.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_LEDGER_H
#define WITHDRAWAL_LEDGER_H

#include "utils/uuid.h"

/*
 * Money movements.  Each is one ledger transaction of two entries of the
 * same wallet and currency:
 *
 *	credit	funding   -> available	(a reward is paid in)
 *	debit	available -> held		(a withdrawal is requested)
 *	refund	held      -> available	(failed, rejected or canceled)
 *	settle	held      -> settled	(paid; the wallet's paid_out grows)
 *	return	settled   -> available	(returned after payment)
 *	partial_return settled -> available (part of a paid payout returned)
 *
 * debit, refund, settle and return happen at most once per withdrawal; the
 * unique index ledger_entry_once enforces it.  partial_return may happen
 * several times; withdrawal.returned_amount bounds their sum by the amount.
 */
typedef enum WithdrawalMovement
{
	WITHDRAWAL_MOVE_CREDIT,
	WITHDRAWAL_MOVE_DEBIT,
	WITHDRAWAL_MOVE_REFUND,
	WITHDRAWAL_MOVE_SETTLE,
	WITHDRAWAL_MOVE_RETURN,
	WITHDRAWAL_MOVE_PARTIAL_RETURN
} WithdrawalMovement;

/*
 * Posts a movement for a withdrawal in the caller's transaction and SPI
 * connection, updating the wallet row; returns the ledger txn_id.  Raises
 * WD001 when the source balance is short (which for refund, settle and
 * return means the books are inconsistent) and 23505 when the movement was
 * already posted for this withdrawal.
 */
extern int64 WithdrawalPostMovement(WithdrawalMovement kind,
									const pg_uuid_t *withdrawal_id,
									const char *account_id,
									const char *currency,
									int64 amount);

/*
 * Posts a partial return of a paid withdrawal (locked by the caller) and
 * adds it to withdrawal.returned_amount; returns the ledger txn_id.  The part must leave something of the amount paid: the
 * last part is the transition to returned.
 */
extern int64 WithdrawalPostPartialReturn(const pg_uuid_t *withdrawal_id,
										 int64 amount);

/* Raises WD007 for the wallet of an account and currency that has none */
extern void WithdrawalRaiseUnknownWallet(const char *account_id,
										 const char *currency) pg_attribute_noreturn();

/*
 * Raises 22003 for a movement that would take a balance of the wallet
 * past bigint, in the terms of the API: no internal statement in the
 * message or its context.
 */
extern void WithdrawalRaiseOverflow(const char *account_id,
									const char *currency) pg_attribute_noreturn();

#endif							/* WITHDRAWAL_LEDGER_H */
