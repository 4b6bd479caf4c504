/*-------------------------------------------------------------------------
 *
 * processor_http.c
 *	  The generic http processor driver (JSON protocol).
 *
 * POST {base_url}/payouts with the JSON body built at claim time (the same
 * bytes on every attempt, so the processor's idempotency check can compare
 * bodies), and GET {base_url}/payouts/{id} for status queries.  Responses:
 *
 *	2xx  {"id": ref, "status": "pending" | "paid" | "failed", "failure_code"}
 *	404  on a status query: never received, safe to resend with the same key
 *	409, 429, 5xx, anything malformed: retry later
 *	422 idempotency_mismatch: the key is known with another body, so the
 *		 payout may exist: dead-lettered for an operator, never refunded
 *	401: our credentials are wrong, not the payout: retry (and dead-letter)
 *	other 4xx {"error": {"code", "message"}}: definitive, failed and refunded
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

	if (status == 404 && p->query)
	{
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_UNKNOWN,
							   "processor has no record of the payout");
		return;
	}

	if (status == 409 || status == 429 || status == 408 || status == 401 ||
		status >= 500 || status < 200 || (status >= 300 && status < 400))
	{
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY, "HTTP %ld%s%s", status,
							   jb ? ": " : "",
							   jb ? clip(WithdrawalJsonGetPath(jb, "error", "code")) : "");
		return;
	}

	/* a definitive rejection */
	{
		char	   *code = WithdrawalJsonGetPath(jb, "error", "code");
		char	   *message = WithdrawalJsonGetPath(jb, "error", "message");

		if (code && strcmp(code, "idempotency_mismatch") == 0)
		{
			WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_DEAD,
								   "HTTP %ld: idempotency_mismatch (the processor knows this key with another body)",
								   status);
			return;
		}
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_FAILED, "HTTP %ld: %s%s%s", status,
							   code ? clip(code) : "rejected",
							   message ? ": " : "", message ? clip(message) : "");
	}
}

const WithdrawalDriver withdrawal_http_driver = {
	.name = "http",
	.decide = NULL,
	.build = http_build,
	.classify = http_classify,
};
