/*-------------------------------------------------------------------------
 *
 * reconcile.c
 *	  Reconciliation of the ledger against processor settlement reports.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/reconcile.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

/* import_settlement and reconcile land here. */
