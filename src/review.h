/*-------------------------------------------------------------------------
 *
 * review.h
 *	  Manual review (approve with four-eyes, reject, expiry) and the small
 *	  JSON builder its audit rows share with the policy module.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/review.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_REVIEW_H
#define WITHDRAWAL_REVIEW_H

#include "utils/jsonb.h"

/*
 * Builds a flat JSON object of n members for audit details.  Member i is
 * a JSON number when bit i of numbers is set, else a string; a NULL value
 * becomes JSON null.
 */
extern Jsonb *WithdrawalDetail(int n, const char *const *keys,
							   const char *const *values, uint32 numbers);

/*
 * Rejects and refunds, each with an audit row, the withdrawals in review
 * whose policy's review_expires_after has passed since they were
 * requested, at most limit of them (0: all); returns how many.  In the
 * caller's transaction and SPI connection.
 */
extern int	WithdrawalExpireReviews(int limit);

#endif							/* WITHDRAWAL_REVIEW_H */
