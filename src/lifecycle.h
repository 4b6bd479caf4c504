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

#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
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
	const char *refund_proof;	/* why a payout that may have been sent can
								 * be refunded (see withdrawal.refund_proof);
								 * without it such a refund is WD005 */
	bool		uncount_attempt;	/* the attempt claimed for this payout
									 * does not count against max_attempts */
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
 *
 * Sent means maybe paid: once sent_at is set, a refund needs
 * data->refund_proof and cancel is refused, both with WD005, even with
 * invalid_ok.
 */
extern bool WithdrawalTransition(const pg_uuid_t *withdrawal_id,
								 WithdrawalStatus to,
								 const WithdrawalTransitionData *data,
								 WithdrawalStatus *from);

/*
 * Locks the rows of n withdrawals in id order, in the caller's transaction
 * and SPI connection.  The lock order of the extension: a transaction that
 * changes several withdrawals locks all their rows first, in id order,
 * then outbox rows, then wallets in account order (account_id, then
 * currency, in byte order: WithdrawalWalletOrder() in C, COLLATE "C" in
 * SQL); one that changes a single withdrawal locks it first.  With one
 * order everywhere no two transactions can deadlock.
 */
extern void WithdrawalLockWithdrawals(const pg_uuid_t *ids, int n);

/*
 * Compares two wallets in account order, for qsort() comparators of C code
 * that moves the money of several wallets in one transaction.
 */
extern int	WithdrawalWalletOrder(const char *account_a, const char *currency_a,
								  const char *account_b, const char *currency_b);

/*
 * The worker's two set-based transitions, which move no money and so are
 * made in one statement each for throughput; the status_guard trigger
 * still checks every row.
 *
 * WithdrawalClaimPayouts claims up to "limit" of the ids (their order is
 * the claim's) whose outbox row is due: locks both rows, skipping those
 * another worker holds, leases the outbox row to worker "worker_index" for
 * lease_seconds, and moves a send to dispatching with attempts + 1 and
 * sent_at (a status query keeps its status).  SPI_tuptable then holds the
 * claimed rows: withdrawal_id, kind, lease_until, account_id, currency,
 * amount, attempts, destination, processor_ref, busy_answers.
 *
 * WithdrawalSubmitPayouts moves n accepted sends from dispatching to
 * submitted with their processor references (NULL keeps the one stored),
 * removes their outbox rows if still leased with the lease given, and
 * appends a dispatch_submitted audit row for each.
 */
extern uint64 WithdrawalClaimPayouts(Datum *ids, int nids, int limit,
									 int lease_seconds, int worker_index);
extern void WithdrawalSubmitPayouts(const pg_uuid_t *ids,
									const TimestampTz *leases,
									char *const *refs, int n);

#endif							/* WITHDRAWAL_LIFECYCLE_H */
