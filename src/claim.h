/*-------------------------------------------------------------------------
 *
 * claim.h
 *	  The worker's claims (claim.c): channels, shares, the due scan, the
 *	  durable claim and the start of the claimed payouts.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/claim.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_CLAIM_H
#define WITHDRAWAL_CLAIM_H

/*
 * Claims up to capacity payouts in one transaction, committed durably, and
 * starts them (dispatch.c).  Sets MyWithdrawalWorker.next_claim_at (when
 * to claim again) and claim_backlog (the claim was capped).
 */
extern void WithdrawalClaimAndStart(int capacity);

/* Lowers MyWithdrawalWorker.next_sandbox_at to the first sandbox event due */
extern void WithdrawalClaimPlanSandbox(void);

/* Forgets the channels and the binding state (the extension was dropped) */
extern void WithdrawalClaimForget(void);

/*
 * Whether the worker may act on payouts (sandbox events, sweep, review
 * expiry): the last claim found dispatch bound to this installation and
 * no restore under way.  WithdrawalClaimHeld: it found it bound to another.
 */
extern bool WithdrawalClaimPayoutsAllowed(void);
extern bool WithdrawalClaimHeld(void);

#endif							/* WITHDRAWAL_CLAIM_H */
