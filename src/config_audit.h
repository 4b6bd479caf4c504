/*-------------------------------------------------------------------------
 *
 * config_audit.h
 *	  The audit of changes to the ops-editable configuration tables (config_audit.c).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/config_audit.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_CONFIG_AUDIT_H
#define WITHDRAWAL_CONFIG_AUDIT_H

/*
 * Called with true just before, and false just after, a statement of
 * block() or unblock() writes withdrawal.blocklist: those functions audit
 * their changes themselves, so config_audit() writes no second row for
 * them.  An error in between is cleared at the (sub)transaction's abort.
 */
extern void WithdrawalConfigApiWrite(bool on);

#endif							/* WITHDRAWAL_CONFIG_AUDIT_H */
