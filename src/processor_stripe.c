/*-------------------------------------------------------------------------
 *
 * processor_stripe.c
 *	  The stripe processor driver (form-encoded transfers).
 *
 * POST {base_url}/v1/transfers, form-encoded: amount, currency (lower
 * case), destination (the connected account in destination.stripe_account),
 * metadata[withdrawal_id] and transfer_group, with the withdrawal id as
 * Idempotency-Key.  A transfer is final when created, so 200 means paid.
 * Stripe replays the first result of a key for 24 hours, so the status
 * query is the same request again.  Errors carry
 * {"error": {"type", "code", "message"}}: 400, 402, 403 and 404 are
 * definitive (failed and refunded) except idempotency_error, which means
 * the key exists with other parameters (dead-lettered, never refunded);
 * 401 (our key), 409, 429 and 5xx are retried.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/processor_stripe.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "lib/stringinfo.h"

#include "dispatch.h"
#include "processor.h"

/* Appends name=value, form-encoded by libcurl */
static void
append_form(StringInfo buf, const char *name, const char *value)
{
	char	   *n = curl_easy_escape(NULL, name, 0);
	char	   *v = curl_easy_escape(NULL, value, 0);

	if (n == NULL || v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory encoding a processor request")));
	appendStringInfo(buf, "%s%s=%s", buf->len > 0 ? "&" : "", n, v);
	curl_free(n);
	curl_free(v);
}

static void
stripe_build(WithdrawalPayout *p, WithdrawalHttpRequest *req)
{
	StringInfoData body;
	char	   *currency = pstrdup(p->currency);
	char	   *c;
	size_t		len = strlen(p->base_url);

	if (p->stripe_account == NULL || p->stripe_account[0] == '\0')
	{
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_FAILED,
							   "destination has no stripe_account");
		return;
	}
	for (c = currency; *c; c++)
		*c = pg_ascii_tolower((unsigned char) *c);

	initStringInfo(&body);
	append_form(&body, "amount", psprintf(INT64_FORMAT, p->amount));
	append_form(&body, "currency", currency);
	append_form(&body, "destination", p->stripe_account);
	append_form(&body, "metadata[withdrawal_id]", p->id_text);
	append_form(&body, "transfer_group", p->id_text);

	while (len > 0 && p->base_url[len - 1] == '/')
		len--;
	req->method = "POST";
	req->url = psprintf("%.*s/v1/transfers", (int) len, p->base_url);
	req->body = body.data;
	req->content_type = "application/x-www-form-urlencoded";
}

static void
stripe_classify(WithdrawalPayout *p, long status, const char *body, size_t len)
{
	Jsonb	   *jb = WithdrawalJsonParse(body, len);
	char	   *type;
	char	   *code;
	char	   *message;

	if (status >= 200 && status < 300)
	{
		char	   *id = WithdrawalJsonGetText(jb, "id");
		char	   *object = WithdrawalJsonGetText(jb, "object");

		if (id == NULL || object == NULL || strcmp(object, "transfer") != 0)
		{
			WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
								   "malformed response (HTTP %ld)", status);
			return;
		}
		p->processor_ref = id;
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_PAID, NULL);
		return;
	}

	type = WithdrawalJsonGetPath(jb, "error", "type");
	code = WithdrawalJsonGetPath(jb, "error", "code");
	message = WithdrawalJsonGetPath(jb, "error", "message");
	if (type && strcmp(type, "idempotency_error") == 0)
	{
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_DEAD,
							   "HTTP %ld: idempotency_error (the key exists with other parameters)",
							   status);
		return;
	}
	if (status == 400 || status == 402 || status == 403 || status == 404)
	{
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_FAILED, "HTTP %ld: %s%s%.200s", status,
							   code ? pnstrdup(code, 100) : (type ? pnstrdup(type, 100) : "rejected"),
							   message ? ": " : "", message ? message : "");
		return;
	}
	WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY, "HTTP %ld%s%.100s", status,
						   type ? ": " : "", type ? type : "");
}

const WithdrawalDriver withdrawal_stripe_driver = {
	.name = "stripe",
	.decide = NULL,
	.build = stripe_build,
	.classify = stripe_classify,
};
