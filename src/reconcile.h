/*-------------------------------------------------------------------------
 *
 * reconcile.h
 *	  Reconciliation of the ledger against processor settlement reports.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/reconcile.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_RECONCILE_H
#define WITHDRAWAL_RECONCILE_H

#include "datatype/timestamp.h"
#include "executor/spi.h"

/* The channel on which a run that found discrepancies notifies */
#define WITHDRAWAL_RECON_CHANNEL "withdrawal_recon"

/*
 * Compares the payouts the ledger settled in [period_start, period_end)
 * with the processor's settlement rows of that period, in the caller's
 * transaction and SPI connection.  Records the run and its items and
 * returns the run id; *items receives the items (columns run_id, kind,
 * withdrawal_id, processor_ref, ledger_amount, processor_amount,
 * ledger_status, processor_status), valid until SPI_finish, and *nitems
 * their number.  Notifies WITHDRAWAL_RECON_CHANNEL at commit when it found
 * discrepancies.
 */
extern int64 WithdrawalReconcile(const char *processor,
								 TimestampTz period_start,
								 TimestampTz period_end,
								 SPITupleTable **items, uint64 *nitems);

#endif							/* WITHDRAWAL_RECONCILE_H */
