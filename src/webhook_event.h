/*-------------------------------------------------------------------------
 *
 * webhook_event.h
 *	  Processor webhooks: what a verified event says, and what it does to
 *	  its withdrawal (the decision, under the withdrawal's row lock).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/webhook_event.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_WEBHOOK_EVENT_H
#define WITHDRAWAL_WEBHOOK_EVENT_H

#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "lifecycle.h"

/* Largest webhook body accepted, in bytes (processors send a few kB) */
#define WITHDRAWAL_WEBHOOK_MAX_BODY		(1024 * 1024)

/* Transitions an event may take a withdrawal through, at most */
#define WITHDRAWAL_WEBHOOK_MAX_STEPS	3

/* What an event asks for */
typedef enum WebhookAction
{
	ACTION_NONE,				/* an event type we do not act on */
	ACTION_PAID,
	ACTION_FAILED,
	ACTION_RETURNED
} WebhookAction;

#define WEBHOOK_ACTION_COUNT (ACTION_RETURNED + 1)

/* The decision taken for an event, under the withdrawal's row lock */
typedef struct WebhookDecision
{
	const char *result;			/* "applied" or "ignored" */
	const char *reason;			/* why ignored, or NULL */
	const char *discrepancy;	/* disagreement with the books, or NULL */
	int			nsteps;			/* transitions to apply, in order */
	WithdrawalStatus steps[WITHDRAWAL_WEBHOOK_MAX_STEPS];
	int64		partial;		/* then a partial return of this much, or 0 */
} WebhookDecision;

/* A verified event, as extracted from its body */
typedef struct WebhookEvent
{
	char	   *id;				/* event id: body "id", or webhook-id */
	char	   *type;
	WebhookAction action;
	bool		reversal;		/* Stripe's transfer.reversed */
	char	   *withdrawal_id;	/* as given; may be anything */
	char	   *processor_ref;
	char	   *amount_type;	/* jsonb_typeof of the amount, or NULL */
	char	   *amount;			/* the amount as written in the body */
	char	   *currency;
	Jsonb	   *payload;
} WebhookEvent;

/* What the event finds and does to the withdrawal */
typedef struct WebhookOutcome
{
	WebhookDecision d;
	pg_uuid_t  *withdrawal_id;	/* NULL when unknown */
	WithdrawalStatus from;
	const char *status_after;	/* stored and answered, NULL when ignored */
	const char *status_now;		/* answered when ignored */
} WebhookOutcome;

/*
 * Parses the (verified) body, bodylen bytes, as a JSON object with
 * PostgreSQL's jsonb input; any fault of the text is 22023.
 */
extern Jsonb *WithdrawalWebhookParseBody(const char *body, int bodylen);

/*
 * Fills in *ev from the parsed payload (and the body's text, for the
 * amount as written), in the shape of the scheme (stripe or not); the
 * event id is webhook_id when not NULL (Standard Webhooks), else the
 * body's "id".  Raises 22023 when the event has no usable id.  Runs in
 * the caller's SPI connection.
 */
extern void WithdrawalWebhookExtractEvent(Jsonb *payload, const char *body,
										  bool stripe, char *webhook_id,
										  WebhookEvent *ev);

/*
 * Locks the event's withdrawal (FOR NO KEY UPDATE) and decides what the
 * event does to it, from processor "processor".  Changes nothing.  Runs in
 * the caller's SPI connection.
 */
extern void WithdrawalWebhookDecide(const char *processor, WebhookEvent *ev,
									WebhookOutcome *out);

#endif							/* WITHDRAWAL_WEBHOOK_EVENT_H */
