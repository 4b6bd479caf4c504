/*-------------------------------------------------------------------------
 *
 * processor.h
 *	  The small internal interface behind which processor drivers live.
 *
 * A driver turns a claimed payout into an HTTP request (building its own
 * body from the payout's generic fields and destination) and an HTTP
 * response into an outcome (network drivers), or decides the outcome by
 * itself (the sandbox).  What generic code must treat differently is a
 * flag of the driver, never a test of its name.  Drivers do no I/O:
 * dispatch.c sends, worker.c records; only the sandbox keeps a table, for
 * its delayed settlements.
 *
 * The registry (processor.c) is one array; withdrawal.drivers() lists it,
 * and the regress test "dispatch" compares it with the CHECK list of
 * withdrawal.processor.driver.  docs/processors.md says how to add one.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/processor.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_PROCESSOR_H
#define WITHDRAWAL_PROCESSOR_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"
#include "utils/palloc.h"
#include "utils/uuid.h"

/*
 * What an attempt taught us; worker.c maps it onto the lifecycle.  Sent
 * means maybe paid: only FAILED (a create request declined by the
 * processor, which then created nothing, or a status query answered
 * "failed") proves that the processor did not and will not pay, so only
 * FAILED refunds.  Each driver documents which answers are FAILED; any
 * answer it does not know is RETRY.
 */
typedef enum WithdrawalOutcome
{
	WITHDRAWAL_OUTCOME_NONE,	/* not decided yet */
	WITHDRAWAL_OUTCOME_SUBMITTED,	/* accepted; the final word comes later */
	WITHDRAWAL_OUTCOME_PAID,	/* paid */
	WITHDRAWAL_OUTCOME_FAILED,	/* proof of no payout: fail and refund */
	WITHDRAWAL_OUTCOME_RETRY,	/* unknown or transient: resend later,
								 * same key */
	WITHDRAWAL_OUTCOME_DEAD,	/* outcome unknown and resending will not
								 * help: held for an operator */
	WITHDRAWAL_OUTCOME_PENDING, /* status query: no final word yet */
	WITHDRAWAL_OUTCOME_UNKNOWN, /* status query: the processor has no
								 * record; resend with the same key */
	WITHDRAWAL_OUTCOME_IN_PROGRESS	/* the processor is still handling an
									 * earlier request with this key: ask
									 * again, same key; not an attempt */
} WithdrawalOutcome;

extern const char *WithdrawalOutcomeName(WithdrawalOutcome outcome);

/* One claimed payout; everything lives in its own memory context */
typedef struct WithdrawalPayout
{
	MemoryContext cxt;
	pg_uuid_t	id;
	char		id_text[40];	/* canonical text form: the idempotency key */
	char	   *account_id;
	char	   *currency;
	int64		amount;
	char	   *channel;
	Jsonb	   *destination;	/* the request's destination object, copied
								 * into cxt; each driver reads its own keys */
	int			attempts;		/* including this one */
	int			busy_answers;	/* "in progress" answers so far */
	bool		query;			/* a status query rather than a send */
	TimestampTz lease_until;	/* our claim token */
	char	   *known_ref;		/* processor_ref stored before the claim */

	/* the channel's processor, copied at claim time */
	char	   *processor;
	char	   *driver_name;
	char	   *base_url;
	char	   *api_secret_name;
	int			connect_timeout_ms;
	int			request_timeout_ms;
	int			burst;			/* of the channel, for the shared bucket */
	bool		reserved;		/* counted in the channel's shared in-flight
								 * numbers until its outcome is known */
	bool		breaker_probe;	/* the one request of a half-open circuit
								 * breaker (shmem.c) */

	/* the result */
	WithdrawalOutcome outcome;
	char	   *processor_ref;
	char	   *error;			/* last_error; never contains a secret */
	long		retry_after_ms; /* 429 or 503 Retry-After, capped, or 0 */
	int			should_retry;	/* Stripe-Should-Retry: 1 true, 0 false, -1
								 * absent */
	const char *ended;			/* set by worker.c: "failed" or "dead" when
								 * recording the outcome made it so */
	long		http_status;	/* of the answer; 0 when there was none */
	bool		transport_failed;	/* no answer: refused, reset, timed out */

	/* transport state, owned by dispatch.c */
	bool		on_wire;		/* a request was started */
	void	   *transfer;
	struct WithdrawalPayout *next;
} WithdrawalPayout;

/* An HTTP request a network driver asks dispatch.c to send */
typedef struct WithdrawalHttpRequest
{
	const char *method;			/* "GET" or "POST" */
	char	   *url;
	char	   *body;			/* NULL for GET */
	const char *content_type;
	const char *extra_header;	/* one more "Name: value" line, or NULL */
} WithdrawalHttpRequest;

typedef struct WithdrawalDriver
{
	const char *name;			/* as in withdrawal.processor.driver */

	/*
	 * What generic code does differently for this driver's payouts:
	 *
	 * settles_by_itself: a send it accepts (SUBMITTED) is settled later by
	 * the extension itself, through the sandbox's delayed events
	 * (WithdrawalSandboxSchedule), not by a webhook or a status query.
	 *
	 * bulk_submit: an accepted send needs nothing but the status change,
	 * so the worker may record many of them in one set-based statement.
	 * Never with settles_by_itself, which needs per-payout work.
	 */
	bool		settles_by_itself;
	bool		bulk_submit;

	/*
	 * No network: decides p->outcome at once (the sandbox).  NULL for
	 * network drivers, which need a base_url (withdrawal.processor CHECK).
	 */
	void		(*decide) (WithdrawalPayout *p);

	/*
	 * Fills req for p (p->query: a status query, which every network driver
	 * must answer), in p->cxt; the body, if any, is built here from p's
	 * fields, the same bytes on every attempt.  May instead decide
	 * p->outcome (for example DEAD for a destination the processor cannot
	 * pay), in which case nothing is sent.
	 */
	void		(*build) (WithdrawalPayout *p, WithdrawalHttpRequest *req);

	/* Classifies a complete HTTP response into p->outcome */
	void		(*classify) (WithdrawalPayout *p, long status,
							 const char *body, size_t len);
} WithdrawalDriver;

/*
 * The sandbox's delayed events (settlement, return), kept in
 * withdrawal.sandbox_event.  Both run in the caller's transaction and SPI
 * connection; ApplyDue applies up to limit due events and returns how many.
 */
extern void WithdrawalSandboxSchedule(const WithdrawalPayout *p);
extern int	WithdrawalSandboxApplyDue(int limit, const pg_uuid_t *only);

/*
 * For applying events one withdrawal at a time after a batch failed: the
 * withdrawals with due events (at most limit, allocated in cxt), and the
 * postponement of one withdrawal's events, by delay_ms, with the error.
 */
extern int	WithdrawalSandboxDue(int limit, MemoryContext cxt, pg_uuid_t **ids);
extern void WithdrawalSandboxPostpone(const pg_uuid_t *id, const char *error,
									  int delay_ms);

/* The driver called name, or NULL */
extern const WithdrawalDriver *WithdrawalDriverFind(const char *name);

/* Sets p->outcome and p->error (formatted in p->cxt) */
extern void WithdrawalPayoutResult(WithdrawalPayout *p, WithdrawalOutcome outcome,
								   const char *fmt,...) pg_attribute_printf(3, 4);

/* Helpers for drivers: p->base_url without its trailing slashes, then path */
extern char *WithdrawalProcessorUrl(const WithdrawalPayout *p, const char *path);

/* s escaped for a URL or a form, palloc'd */
extern char *WithdrawalProcessorEscape(const char *s);

/*
 * destination->>key of p; when it is missing or empty, decides p DEAD (held
 * for an operator, never a decline: an earlier attempt may have been sent
 * through another configuration) and returns NULL
 */
extern char *WithdrawalDestinationField(WithdrawalPayout *p, const char *key);

/* true when code is in list, a sorted array of n strings (NULL: false) */
extern bool WithdrawalCodeListed(const char *code, const char *const *list, int n);

#endif							/* WITHDRAWAL_PROCESSOR_H */
