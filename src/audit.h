/*-------------------------------------------------------------------------
 *
 * audit.h
 *	  The append-only, hash-chained audit log.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/audit.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_AUDIT_H
#define WITHDRAWAL_AUDIT_H

#include "utils/jsonb.h"
#include "utils/uuid.h"

/*
 * Appends an audit row in the caller's transaction and SPI connection.
 * actor NULL means session_user.  Any of withdrawal_id, account_id,
 * before_status, after_status and detail may be NULL.
 */
extern void WithdrawalAudit(const char *action, const char *actor,
							const pg_uuid_t *withdrawal_id,
							const char *account_id,
							const char *before_status,
							const char *after_status,
							Jsonb *detail);

/*
 * Links unsealed audit rows into the hash chain, at most "limit" (0: no
 * limit); returns how many were sealed.  "stragglers" also looks back
 * below the highest sealed id for rows whose transactions committed late,
 * which costs an anti-join over that range.  Without "wait", returns 0 at
 * once when another sealer is at work.  A seal that advances the chain
 * notifies channel withdrawal_audit_head and, once committed, logs the new
 * head.  Runs in the caller's transaction and SPI connection.
 */
extern int64 WithdrawalAuditSeal(bool wait, bool stragglers, int64 limit);

#endif							/* WITHDRAWAL_AUDIT_H */
