/*-------------------------------------------------------------------------
 *
 * config.h
 *	  The triggers of the ops-editable configuration tables (config.c).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/config.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_CONFIG_H
#define WITHDRAWAL_CONFIG_H

/*
 * Called with true just before, and false just after, a statement of
 * block() or unblock() writes withdrawal.blocklist: those functions audit
 * their changes themselves, so config_audit() writes no second row for
 * them.  An error in between is cleared at the (sub)transaction's abort.
 */
extern void WithdrawalConfigApiWrite(bool on);

#endif							/* WITHDRAWAL_CONFIG_H */
