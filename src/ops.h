/*-------------------------------------------------------------------------
 *
 * ops.h
 *	  The operators' SQL entry points of dispatch (ops.c): sweep(), retry().
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/ops.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_OPS_H
#define WITHDRAWAL_OPS_H

#include "datatype/timestamp.h"

/*
 * The sweep: pushes stuck payouts forward in the current transaction and
 * SPI connection; returns how many it moved.  older_than NULL (the
 * worker's scheduled sweep) leaves the never-sent ones alone; otherwise
 * those queued longer than older_than are failed and refunded.
 */
extern int	WithdrawalSweep(Interval *older_than);

#endif							/* WITHDRAWAL_OPS_H */
