/*-------------------------------------------------------------------------
 *
 * webhook.c
 *	  Processor webhooks: the SQL entry points, recording and applying.
 *
 * receive_webhook(processor, headers, body) is called by the application's
 * HTTP endpoint with the raw body and the request headers.  In order:
 *
 *	1. the arguments are checked (body at most 1 MB) and the processor is
 *	   looked up (WD007 when unknown);
 *	2. the signature is verified by the processor's webhook_scheme with the
 *	   secret named by processor.webhook_secret, or during a rotation with
 *	   the one named by webhook_secret_previous until
 *	   webhook_secret_previous_expires_at, before the body is parsed (WD008
 *	   on failure, nothing changed);
 *	3. the body is parsed by PostgreSQL's JSON parser (22023 when it is not
 *	   JSON) and the event is mapped to an action: paid, failed or returned;
 *	4. under a lock on the withdrawal row, the event is recorded in
 *	   withdrawal.webhook_event with INSERT ... ON CONFLICT DO NOTHING on
 *	   (processor, event id): a second delivery is a "duplicate" and changes
 *	   nothing, a concurrent one waits and then finds the first;
 *	5. the transitions are applied through WithdrawalTransition, which posts
 *	   each money movement at most once.
 *
 * Steps 1, 4 and 5 are here.  The signature schemes (2) are in
 * webhook_signature.c; the event's fields (3) and the decision, taken
 * under the row lock of step 4 by the table webhook_steps[action][status],
 * are in webhook_event.c.
 *
 * Events that disagree with the books (amount or currency differs, payment
 * reported for a withdrawal already refunded...) are recorded with a
 * discrepancy code, raise a WARNING and an audit row, and move no money.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/webhook.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "args.h"
#include "audit.h"
#include "json.h"
#include "ledger.h"
#include "lifecycle.h"
#include "secrets.h"
#include "spi.h"
#include "webhook_event.h"
#include "webhook_signature.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_receive_webhook);
PG_FUNCTION_INFO_V1(withdrawal_verify_webhook_signature);

#define MAX_PROCESSOR_NAME 63

/*
 * Sets parameter i to a text value or NULL.
 */
static void
set_text(Datum *values, char *nulls, int i, const char *value)
{
	values[i] = value ? CStringGetTextDatum(value) : (Datum) 0;
	nulls[i] = value ? ' ' : 'n';
}

/*
 * The members of a flat JSON object (WithdrawalDetail) being collected;
 * add_member() leaves out a NULL value unless keep_null.
 */
typedef struct JsonMembers
{
	int			n;
	const char *keys[8];
	const char *values[8];
	uint32		numbers;
} JsonMembers;

static void
add_member(JsonMembers *m, const char *key, const char *value, bool number,
		   bool keep_null)
{
	if (value == NULL && !keep_null)
		return;
	Assert(m->n < lengthof(m->keys));
	if (number)
		m->numbers |= 1U << m->n;
	m->keys[m->n] = key;
	m->values[m->n++] = value;
}

/*
 * The audit detail of a webhook: which event, and the disagreement if any.
 */
static Jsonb *
event_detail(const char *processor, const char *event_id,
			 const char *event_type, const char *discrepancy,
			 const char *amount, const char *currency, int64 part)
{
	JsonMembers m = {0};

	add_member(&m, "processor", processor, false, false);
	add_member(&m, "event_id", event_id, false, false);
	add_member(&m, "event_type", event_type, false, false);
	add_member(&m, "discrepancy", discrepancy, false, false);
	add_member(&m, "event_amount", amount, false, false);
	add_member(&m, "event_currency", currency, false, false);
	/* what the event returned (Stripe's event_amount is a running total) */
	add_member(&m, "partial_return", part > 0 ? psprintf(INT64_FORMAT, part) : NULL,
			   true, false);
	return WithdrawalDetail(m.n, m.keys, m.values, m.numbers);
}


/* The webhook settings of a processor, as verification needs them */
typedef struct WebhookProcessor
{
	char	   *scheme;
	int64		tolerance_s;
	int			nsecrets;		/* 1, or 2 while a rotation lasts */
	const char *secrets[WITHDRAWAL_WEBHOOK_MAX_SECRETS];	/* values */
} WebhookProcessor;

/*
 * The value of the webhook secret called name (55000 when the secrets file
 * has no such entry, or an empty one).
 */
static const char *
webhook_secret_value(const char *processor, const char *name)
{
	const char *secret = WithdrawalSecretGet(name);

	if (secret == NULL || secret[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("webhook secret \"%s\" of processor \"%s\" is not in withdrawal.secrets_file",
						name, processor)));
	return secret;
}

/*
 * Looks the processor up (WD007 when unknown) and fills in its scheme,
 * tolerance and webhook secrets (55000 when it has none): the current one,
 * and the previous one when a rotation has not expired at time "at".  The
 * previous secret is refused from its expiry on, whatever the processor
 * still signs with.
 */
static void
load_processor(const char *processor, TimestampTz at, WebhookProcessor *wp)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *secret_name;
	char	   *previous_name;
	Datum		expires;
	bool		isnull;

	WithdrawalPrepare(&plan,
					  "SELECT webhook_scheme, webhook_secret,"
					  " pg_catalog.ceil(pg_catalog.date_part('epoch', webhook_tolerance))::bigint,"
					  " webhook_secret_previous, webhook_secret_previous_expires_at"
					  " FROM withdrawal.processor WHERE name OPERATOR(pg_catalog.=) $1",
					  1, types);
	values[0] = CStringGetTextDatum(processor);
	WithdrawalExecute(plan, values, NULL, true, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
				 errmsg("unknown processor \"%s\"", processor)));
	memset(wp, 0, sizeof(*wp));
	wp->scheme = WithdrawalSpiGetText(0, 1);
	secret_name = WithdrawalSpiGetText(0, 2);
	wp->tolerance_s = DatumGetInt64(WithdrawalSpiGet(0, 3, &isnull));
	previous_name = WithdrawalSpiGetText(0, 4);
	expires = WithdrawalSpiGet(0, 5, &isnull);
	if (secret_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("processor \"%s\" has no webhook secret", processor),
				 errhint("Set withdrawal.processor.webhook_secret to the name of a secret in withdrawal.secrets_file.")));
	wp->secrets[wp->nsecrets++] = webhook_secret_value(processor, secret_name);
	/* the table's CHECK makes an expiry part of every previous secret */
	if (previous_name != NULL && !isnull && at < DatumGetTimestampTz(expires))
		wp->secrets[wp->nsecrets++] = webhook_secret_value(processor, previous_name);
}

/*
 * Stores the event; returns false, with the outcome turned into a
 * "duplicate" that reports the withdrawal's current status, when the
 * processor's event id was seen before.
 */
static bool
record_event(const char *processor, WebhookEvent *ev, WebhookOutcome *out)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr duplicate_plan = NULL;
	Oid			types[10] = {TEXTOID, TEXTOID, TEXTOID, UUIDOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		values[10];
	char		nulls[10];
	Datum		id;
	bool		isnull;

	WithdrawalPrepare(&plan,
					  "INSERT INTO withdrawal.webhook_event (processor, event_id, event_type,"
					  " withdrawal_id, result, discrepancy, reason, status_before, status_after, payload)"
					  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
					  " ON CONFLICT (processor, event_id) DO NOTHING",
					  10, types);
	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(processor);
	values[1] = CStringGetTextDatum(ev->id);
	set_text(values, nulls, 2, ev->type);
	values[3] = out->withdrawal_id ? UUIDPGetDatum(out->withdrawal_id) : (Datum) 0;
	nulls[3] = out->withdrawal_id ? ' ' : 'n';
	values[4] = CStringGetTextDatum(out->d.result);
	set_text(values, nulls, 5, out->d.discrepancy);
	set_text(values, nulls, 6, out->d.reason);
	set_text(values, nulls, 7, out->status_after ? WithdrawalStatusName(out->from) : NULL);
	set_text(values, nulls, 8, out->status_after);
	values[9] = JsonbPGetDatum(ev->payload);
	WithdrawalExecute(plan, values, nulls, false, 0, SPI_OK_INSERT);
	if (SPI_processed == 1)
		return true;

	WithdrawalPrepare(&duplicate_plan,
					  "SELECT e.withdrawal_id, w.status FROM withdrawal.webhook_event e"
					  " LEFT JOIN withdrawal.withdrawal w"
					  "  ON w.withdrawal_id OPERATOR(pg_catalog.=) e.withdrawal_id"
					  " WHERE e.processor OPERATOR(pg_catalog.=) $1"
					  " AND e.event_id OPERATOR(pg_catalog.=) $2",
					  2, types);
	WithdrawalExecute(duplicate_plan, values, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "webhook event vanished after a conflict");
	memset(&out->d, 0, sizeof(out->d));
	out->d.result = "duplicate";
	out->status_after = WithdrawalSpiGetText(0, 2);
	out->status_now = NULL;
	id = WithdrawalSpiGet(0, 1, &isnull);
	out->withdrawal_id = isnull ? NULL : DatumGetUUIDP(datumCopy(id, false, UUID_LEN));
	return false;
}

/*
 * Applies the decided transitions, or reports the disagreement: an audit
 * row and a WARNING, no money moved.
 */
static void
apply_outcome(const char *processor, WebhookEvent *ev, WebhookOutcome *out)
{
	Jsonb	   *detail;
	bool		show;
	int			i;

	if (out->d.nsteps == 0 && out->d.discrepancy == NULL && out->d.partial == 0)
		return;
	/* the event's amount tells a disagreement, or how much came back */
	show = out->d.discrepancy != NULL || out->d.partial > 0;
	detail = event_detail(processor, ev->id, ev->type, out->d.discrepancy,
						  show ? ev->amount : NULL, show ? ev->currency : NULL,
						  out->d.partial);
	for (i = 0; i < out->d.nsteps; i++)
	{
		WithdrawalTransitionData data;

		memset(&data, 0, sizeof(data));
		data.action = "webhook";
		data.processor_ref = ev->processor_ref;
		/* a signed event saying failed is the processor's proof */
		data.refund_proof = "webhook";
		data.detail = detail;
		WithdrawalTransition(out->withdrawal_id, out->d.steps[i], &data, NULL);
	}
	if (out->d.partial > 0)
	{
		WithdrawalPostPartialReturn(out->withdrawal_id, out->d.partial);
		WithdrawalAudit("webhook_partial_return", NULL, out->withdrawal_id, NULL,
						"paid", "paid", detail);
	}
	if (out->d.discrepancy != NULL)
	{
		WithdrawalAudit("webhook_discrepancy", NULL, out->withdrawal_id, NULL,
						WithdrawalStatusName(out->from), WithdrawalStatusName(out->from),
						detail);
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("webhook event \"%s\" of processor \"%s\" disagrees with the books: %s",
						ev->id, processor, out->d.discrepancy),
				 errdetail("Withdrawal %s is %s; the event was recorded in withdrawal.webhook_event and not applied, and no money moved.",
						   WithdrawalUuidText(out->withdrawal_id), WithdrawalStatusName(out->from)),
				 errhint("Investigate with the processor; withdrawal.reconcile() reports it as well.")));
	}
}

/*
 * The answer: {"result", "withdrawal_id", "status", "event_id"} and, when
 * set, "reason" and "discrepancy".
 */
static Datum
outcome_json(WebhookEvent *ev, WebhookOutcome *out)
{
	JsonMembers m = {0};

	add_member(&m, "result", out->d.result, false, true);
	add_member(&m, "withdrawal_id",
			   out->withdrawal_id ? WithdrawalUuidText(out->withdrawal_id) : NULL,
			   false, true);
	add_member(&m, "status", out->status_after ? out->status_after : out->status_now,
			   false, true);
	add_member(&m, "event_id", ev->id, false, true);
	add_member(&m, "reason", out->d.reason, false, false);
	add_member(&m, "discrepancy", out->d.discrepancy, false, false);
	/* out of the SPI memory context that SPI_finish() is about to free */
	return SPI_datumTransfer(JsonbPGetDatum(WithdrawalDetail(m.n, m.keys, m.values,
															 m.numbers)),
							 false, -1);
}

/*
 * The body argument, at most WITHDRAWAL_WEBHOOK_MAX_BODY bytes, as a C
 * string and its length.
 */
static char *
body_arg(FunctionCallInfo fcinfo, int argno, int *bodylen)
{
	text	   *body_text;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("body must not be null")));
	body_text = PG_GETARG_TEXT_PP(argno);
	*bodylen = VARSIZE_ANY_EXHDR(body_text);
	if (*bodylen > WITHDRAWAL_WEBHOOK_MAX_BODY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("body is too long"),
				 errdetail("The body has %d bytes; at most %d are allowed.",
						   *bodylen, WITHDRAWAL_WEBHOOK_MAX_BODY)));
	return text_to_cstring(body_text);
}

/*
 * receive_webhook(processor text, headers jsonb, body text) returns jsonb
 */
Datum
withdrawal_receive_webhook(PG_FUNCTION_ARGS)
{
	char	   *processor;
	Jsonb	   *headers;
	char	   *body;
	int			bodylen;
	TimestampTz now;
	WebhookProcessor wp;
	char	   *webhook_id;
	WebhookEvent ev;
	WebhookOutcome out;
	Datum		result;

	/* 1. arguments and the processor */
	processor = WithdrawalArgText(fcinfo, 0, "processor", MAX_PROCESSOR_NAME);
	headers = WithdrawalArgObject(fcinfo, 1, "headers");
	body = body_arg(fcinfo, 2, &bodylen);

	SPI_connect();
	now = GetCurrentTimestamp();
	load_processor(processor, now, &wp);

	/* 2. the signature, before anything of the body is parsed */
	WithdrawalWebhookVerify(wp.scheme, wp.secrets, wp.nsecrets, headers, body,
							bodylen, (int64) timestamptz_to_time_t(now),
							wp.tolerance_s, &webhook_id);

	/* 3. the event */
	WithdrawalWebhookExtractEvent(WithdrawalWebhookParseBody(body, bodylen), body,
								  strcmp(wp.scheme, "stripe") == 0, webhook_id, &ev);

	/* 4. decide under the withdrawal's row lock; keep it, or a duplicate */
	WithdrawalWebhookDecide(processor, &ev, &out);
	if (record_event(processor, &ev, &out))
		apply_outcome(processor, &ev, &out);	/* 5. apply */

	result = outcome_json(&ev, &out);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * verify_webhook_signature(processor text, headers jsonb, body text,
 * at timestamptz DEFAULT NULL) returns text
 *
 * Verifies a webhook as receive_webhook() would have at time "at" (NULL:
 * now), both the timestamp tolerance and the expiry of a previous secret,
 * and answers which secret matched: "current" or "previous".  It parses,
 * stores and applies nothing, so a time in the past lets operators and
 * tests check a recorded delivery (or a published test vector) without
 * letting anyone replay it: receive_webhook() always judges by the clock.
 * Granted to withdrawal_ops only: it is an oracle for signatures.
 */
Datum
withdrawal_verify_webhook_signature(PG_FUNCTION_ARGS)
{
	char	   *processor;
	Jsonb	   *headers;
	char	   *body;
	int			bodylen;
	TimestampTz at;
	WebhookProcessor wp;
	char	   *webhook_id;
	int			matched;

	processor = WithdrawalArgText(fcinfo, 0, "processor", MAX_PROCESSOR_NAME);
	headers = WithdrawalArgObject(fcinfo, 1, "headers");
	body = body_arg(fcinfo, 2, &bodylen);
	at = PG_ARGISNULL(3) ? GetCurrentTimestamp() : PG_GETARG_TIMESTAMPTZ(3);
	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at must be a finite time")));

	SPI_connect();
	load_processor(processor, at, &wp);
	matched = WithdrawalWebhookVerify(wp.scheme, wp.secrets, wp.nsecrets,
									  headers, body, bodylen,
									  (int64) timestamptz_to_time_t(at),
									  wp.tolerance_s, &webhook_id);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(matched == 0 ? "current" : "previous"));
}

