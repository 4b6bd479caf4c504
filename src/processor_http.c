/*-------------------------------------------------------------------------
 *
 * processor_http.c
 *	  The generic http processor driver (JSON protocol).
 *
 * POST {base_url}/payouts with the JSON body built at claim time (the same
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

#include "dispatch.h"
#include "processor.h"

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

/* base_url without a trailing slash, then path */
static char *
join_url(const char *base, const char *path)
{
	size_t		len = strlen(base);

	while (len > 0 && base[len - 1] == '/')
		len--;
	return psprintf("%.*s%s", (int) len, base, path);
}

static void
http_build(WithdrawalPayout *p, WithdrawalHttpRequest *req)
{
	if (p->query)
	{
		req->method = "GET";
		req->url = join_url(p->base_url, psprintf("/payouts/%s", p->id_text));
		return;
	}
	req->method = "POST";
	req->url = join_url(p->base_url, "/payouts");
	req->body = p->http_body;
	req->content_type = "application/json";
}

/* Shortens untrusted text before it goes into last_error */
static char *
clip(const char *s)
{
	if (s == NULL)
		return pstrdup("");
	return pnstrdup(s, 200);
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
	.decide = NULL,
	.build = http_build,
	.classify = http_classify,
};
