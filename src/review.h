/*-------------------------------------------------------------------------
 *
 * review.h
 *	  Manual review (approve with four-eyes, reject) and the small JSON
 *	  builder its audit rows share with the policy module.
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

#endif							/* WITHDRAWAL_REVIEW_H */
