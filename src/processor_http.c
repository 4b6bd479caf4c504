/*-------------------------------------------------------------------------
 *
 * processor_http.c
 *	  The generic http processor driver (JSON protocol).
 *
 * POST {base_url}/payouts with the JSON body {"id", "account_id", "amount",
 * "currency", "channel", "destination"} (jsonb's canonical text: the same
 * bytes on every attempt, so the processor's idempotency check can compare
 * bodies), and GET {base_url}/payouts/{id} for status queries.  Answers:
 *
 *	2xx  {"id": ref, "status": "pending" | "paid" | "failed", "failure_code"}
 *		 "failed" is the processor's final word: failed and refunded
 *	4xx  {"error": {"code", "message"}} with a code of decline_codes below
 *		 (not 401, 403, 404, 407, 408, 409 or 429): the processor declined
 *		 the payout and created nothing: failed and refunded
 *	404  on a status query: the processor has no record; resent with the
 *		 same key, never refunded.  On a create: not a decline (retried)
 *	409  a request with this key is still being processed: asked again
 *		 with the same key; not an attempt
 *	422 idempotency_mismatch: the key is known with another body, so the
 *		 payout may exist: dead-lettered for an operator, never refunded
 *	anything else (401, 403, 429, 5xx, unknown 4xx codes, malformed
 *		 answers, transport errors): retried with the same key, then
 *		 dead-lettered with the funds held
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/processor_http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "json.h"
#include "processor.h"

/* How much of the processor's own text (codes, messages) last_error keeps */
#define CLIP_BYTES			200

/*
 * The error codes with which a processor speaking this protocol declines a
 * payout for good.  Sorted; a code missing here is never a decline.
 */
static const char *const decline_codes[] = {
	"account_closed",
	"account_frozen",
	"amount_invalid",
	"currency_unsupported",
	"destination_invalid",
	"insufficient_funds",
	"invalid_json",
	"invalid_request",
	"limit_exceeded",
	"recipient_blocked",
};

/*
 * The create body, byte for byte what jsonb_build_object() of the same
 * members prints (the claim built it so in SQL before): the bytes depend
 * only on the withdrawal, never on the attempt.
 */
static char *
http_body(const WithdrawalPayout *p)
{
	JsonbParseState *state = NULL;
	JsonbValue	v;
	Jsonb	   *jb;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	WithdrawalJsonPushString(&state, "id", p->id_text);
	WithdrawalJsonPushString(&state, "account_id", p->account_id);
	WithdrawalJsonPushKey(&state, "amount");
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(p->amount);
	pushJsonbValue(&state, WJB_VALUE, &v);
	WithdrawalJsonPushString(&state, "currency", p->currency);
	WithdrawalJsonPushString(&state, "channel", p->channel);
	WithdrawalJsonPushKey(&state, "destination");
	if (p->destination == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &p->destination->root;
		v.val.binary.len = VARSIZE(p->destination);
	}
	pushJsonbValue(&state, WJB_VALUE, &v);
	jb = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

static void
http_build(WithdrawalPayout *p, WithdrawalHttpRequest *req)
{
	if (p->query)
	{
		req->method = "GET";
		req->url = WithdrawalProcessorUrl(p, psprintf("/payouts/%s", p->id_text));
		return;
	}
	req->method = "POST";
	req->url = WithdrawalProcessorUrl(p, "/payouts");
	req->body = http_body(p);
	req->content_type = "application/json";
}

/* Shortens untrusted text before it goes into last_error */
static char *
clip(const char *s)
{
	if (s == NULL)
		return pstrdup("");
	return pnstrdup(s, CLIP_BYTES);
}

static void
http_classify(WithdrawalPayout *p, long status, const char *body, size_t len)
{
	Jsonb	   *jb = WithdrawalJsonParse(body, len);
	char	   *code;

	if (status >= 200 && status < 300)
	{
		char	   *state = WithdrawalJsonGetText(jb, "status");
		char	   *ref = WithdrawalJsonGetText(jb, "id");

		if (jb == NULL || state == NULL)
		{
			WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
								   "malformed response (HTTP %ld)", status);
			return;
		}
		p->processor_ref = ref;
		if (strcmp(state, "pending") == 0)
			WithdrawalPayoutResult(p, p->query ? WITHDRAWAL_OUTCOME_PENDING :
								   WITHDRAWAL_OUTCOME_SUBMITTED, NULL);
		else if (strcmp(state, "paid") == 0)
			WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_PAID, NULL);
		else if (strcmp(state, "failed") == 0)
			WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_FAILED, "processor failed the payout: %s",
								   clip(WithdrawalJsonGetText(jb, "failure_code")));
		else
			WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
								   "unknown payout status \"%s\"", clip(state));
		return;
	}

	code = WithdrawalJsonGetPath(jb, "error", "code");
	if (status == 404 && p->query)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_UNKNOWN,
							   "processor has no record of the payout; it is sent again with the same key");
	else if (status == 409)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_IN_PROGRESS,
							   "HTTP 409: the processor is still processing a request with this idempotency key; asking again with the same key");
	else if (status == 422 && code && strcmp(code, "idempotency_mismatch") == 0)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_DEAD,
							   "HTTP 422: idempotency_mismatch (the processor knows this key with another body; the payout may exist)");
	else if (status >= 400 && status < 500 && status != 401 && status != 403 &&
			 status != 404 && status != 407 && status != 408 && status != 429 &&
			 WithdrawalCodeListed(code, decline_codes, lengthof(decline_codes)))
	{
		char	   *message = WithdrawalJsonGetPath(jb, "error", "message");

		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_FAILED, "HTTP %ld: %s%s%s", status,
							   clip(code), message ? ": " : "", message ? clip(message) : "");
	}
	else
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY, "HTTP %ld%s%s%s", status,
							   code ? ": " : "", code ? clip(code) : "",
							   status >= 400 && status < 500 && status != 429 ?
							   " (not a documented decline; the payout may exist)" : "");
}

const WithdrawalDriver withdrawal_http_driver = {
	.name = "http",
	.settles_by_itself = false,
	.bulk_submit = true,
	.decide = NULL,
	.build = http_build,
	.classify = http_classify,
};
