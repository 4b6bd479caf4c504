/*-------------------------------------------------------------------------
 *
 * review.h
 *	  Manual review (approve with four-eyes, reject, expiry).
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

/*
 * Rejects and refunds, each with an audit row, the withdrawals in review
 * whose policy's review_expires_after has passed since they were
 * requested, at most limit of them (0: all); returns how many.  In the
 * caller's transaction and SPI connection.
 */
extern int	WithdrawalExpireReviews(int limit);

#endif							/* WITHDRAWAL_REVIEW_H */
