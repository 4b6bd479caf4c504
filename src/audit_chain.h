/*-------------------------------------------------------------------------
 *
 * audit_chain.h
 *	  The audit chain's hashing, shared by the sealer (audit.c) and the
 *	  verifiers (audit_verify.c) only: how a row is read and hashed, and
 *	  how a seal's chain hash follows from the one before.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/audit_chain.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_AUDIT_CHAIN_H
#define WITHDRAWAL_AUDIT_CHAIN_H

#include "utils/palloc.h"

/* Rows sealed or verified per SPI round trip */
#define AUDIT_BATCH 10000

/* Columns of the audit row, in the order of AUDIT_ROW_COLUMNS */
#define AUDIT_ROW_COLUMNS \
	"a.audit_id, a.logged_at, a.actor, a.action, a.withdrawal_id, " \
	"a.account_id, a.before_status, a.after_status, a.detail"
#define AUDIT_NCOLUMNS 9

/*
 * SHA-256 of the canonical encoding of audit row "row" of SPI_tuptable,
 * whose first AUDIT_NCOLUMNS columns are AUDIT_ROW_COLUMNS; text forms are
 * built in "scratch", which is reset.
 */
extern void WithdrawalAuditRowHash(int row, MemoryContext scratch,
								   unsigned char *out);

/* The chain hash after prev: SHA-256(prev || row_hash); out may be prev */
extern void WithdrawalAuditChainHash(const unsigned char *prev,
									 const unsigned char *row_hash,
									 unsigned char *out);

/* A hash as a palloc'd bytea datum */
extern Datum WithdrawalAuditHashToBytea(const unsigned char *hash);

/*
 * Copies the bytea hash in column col of row "row" of SPI_tuptable into
 * out; false when it is NULL or not WITHDRAWAL_SHA256_LEN bytes long.
 */
extern bool WithdrawalAuditSpiGetHash(int row, int col, unsigned char *out);

#endif							/* WITHDRAWAL_AUDIT_CHAIN_H */
