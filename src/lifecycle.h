/*-------------------------------------------------------------------------
 *
 * lifecycle.h
 *	  Withdrawal statuses, the documented transitions between them and the
 *	  money movement and outbox change that each transition implies.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/lifecycle.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_LIFECYCLE_H
#define WITHDRAWAL_LIFECYCLE_H

#include "utils/jsonb.h"
#include "utils/uuid.h"

typedef enum WithdrawalStatus
{
	WITHDRAWAL_REVIEW,
	WITHDRAWAL_QUEUED,
	WITHDRAWAL_DISPATCHING,
	WITHDRAWAL_SUBMITTED,
	WITHDRAWAL_PAID,
	WITHDRAWAL_FAILED,
	WITHDRAWAL_REJECTED,
	WITHDRAWAL_CANCELED,
	WITHDRAWAL_RETURNED,
	WITHDRAWAL_DEAD
} WithdrawalStatus;

#define WITHDRAWAL_STATUS_COUNT (WITHDRAWAL_DEAD + 1)

extern const char *WithdrawalStatusName(WithdrawalStatus status);

/* Returns -1 for an unknown name */
extern int	WithdrawalStatusParse(const char *name);

extern bool WithdrawalTransitionAllowed(WithdrawalStatus from,
										WithdrawalStatus to);

/* Optional parts of a transition; zero-initialise and set what applies */
typedef struct WithdrawalTransitionData
{
	const char *action;			/* audit action, e.g. "cancel"; required */
	const char *actor;			/* NULL: session_user */
	const char *reason;			/* stored in withdrawal.reason when set */
	const char *processor_ref;	/* stored when set */
	const char *last_error;		/* stored when set */
	Jsonb	   *detail;			/* audit detail, may be NULL */
	bool		missing_ok;		/* unknown id: return false, not WD007 */
	bool		invalid_ok;		/* undocumented transition: return false,
								 * not WD005 */
} WithdrawalTransitionData;

/*
 * Moves a withdrawal to status "to" in the caller's transaction and SPI
 * connection: locks the row, checks the transition, posts the money
 * movement it implies (refund into available for failed, rejected and
 * canceled; held to settled for paid; settled back to available for
 * returned), adds or removes the outbox row, updates the withdrawal and
 * appends an audit row.  Returns true when applied; *from receives the
 * previous status when not NULL.
 */
extern bool WithdrawalTransition(const pg_uuid_t *withdrawal_id,
								 WithdrawalStatus to,
								 const WithdrawalTransitionData *data,
								 WithdrawalStatus *from);

#endif							/* WITHDRAWAL_LIFECYCLE_H */
