/*-------------------------------------------------------------------------
 *
 * record.h
 *	  The worker's outcomes (record.c): recording what the processors
 *	  answered, with the fallback to park a payout that cannot be recorded.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/record.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_RECORD_H
#define WITHDRAWAL_RECORD_H

/*
 * Collects every payout dispatch.c has decided and records them together;
 * returns whether there was any.
 */
extern bool WithdrawalRecordDone(void);

#endif							/* WITHDRAWAL_RECORD_H */
