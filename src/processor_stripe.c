/*-------------------------------------------------------------------------
 *
 * processor_stripe.c
 *	  The stripe processor driver (form-encoded transfers).
 *
 * POST {base_url}/v1/transfers, form-encoded: amount, currency (lower
 * case), destination (the connected account in destination.stripe_account),
 * metadata[withdrawal_id] and transfer_group, with the withdrawal id as
 * Idempotency-Key and a pinned Stripe-Version.  A transfer is final when
 * created, so 200 means paid.
 *
 * The status query never creates anything: GET /v1/transfers/{id} when the
 * transfer's id is known, else GET /v1/transfers?transfer_group={withdrawal
 * id}, which lists the transfers of this withdrawal (none: the processor
 * has no record).
 *
 * Errors carry {"error": {"type", "code", "message"}} and the header
 * Stripe-Should-Retry.  Decline table: HTTP 400 or 402 with type
 * invalid_request_error or card_error and a code of decline_codes below,
 * and no "Stripe-Should-Retry: true": Stripe created nothing, so the
 * payout is failed and refunded.  Everything else keeps the funds held:
 *	409, or code idempotency_key_in_use: an earlier request with this key is
 *		still running: asked again with the same key; not an attempt
 *	type idempotency_error: the key exists with other parameters, so a
 *		transfer may exist: dead-lettered for an operator
 *	401, 403, 404 (on a create), 429, 5xx, unknown codes, malformed answers:
 *		retried with the same key, dead-lettered after max_attempts, or at
 *		once when Stripe says "Stripe-Should-Retry: false"
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/processor_stripe.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "json.h"
#include "processor.h"

/* The API version the requests and the answers' shapes are written for */
#define STRIPE_API_VERSION	"2024-06-20"

/*
 * Transfers a status query lists from a transfer group: one is the
 * answer, and a second is all it takes to see that there is more than one
 */
#define GROUP_LIST_LIMIT	"3"

/* How much of Stripe's own text last_error keeps: a type or code, a message */
#define CLIP_CODE			100
#define CLIP_MESSAGE		200

/* Error codes that decline a transfer for good; sorted */
static const char *const decline_codes[] = {
	"account_closed",
	"account_invalid",
	"amount_too_large",
	"amount_too_small",
	"balance_insufficient",
	"bank_account_declined",
	"bank_account_unusable",
	"bank_account_unverified",
	"insufficient_funds",
	"parameter_invalid_empty",
	"parameter_invalid_integer",
	"parameter_invalid_string_blank",
	"parameter_invalid_string_empty",
	"parameter_missing",
	"parameter_unknown",
	"parameters_exclusive",
	"payouts_not_allowed",
	"transfers_not_allowed",
};

/* Appends name=value, form-encoded */
static void
append_form(StringInfo buf, const char *name, const char *value)
{
	appendStringInfo(buf, "%s%s=%s", buf->len > 0 ? "&" : "",
					 WithdrawalProcessorEscape(name), WithdrawalProcessorEscape(value));
}

static void
stripe_build(WithdrawalPayout *p, WithdrawalHttpRequest *req)
{
	StringInfoData body;
	char	   *currency = pstrdup(p->currency);
	char	   *account;
	char	   *c;

	req->extra_header = "Stripe-Version: " STRIPE_API_VERSION;
	if (p->query)
	{
		char	   *escaped = WithdrawalProcessorEscape(p->known_ref ? p->known_ref : p->id_text);

		req->method = "GET";
		req->url = p->known_ref ?
			WithdrawalProcessorUrl(p, psprintf("/v1/transfers/%s", escaped)) :
			WithdrawalProcessorUrl(p, psprintf("/v1/transfers?transfer_group=%s&limit=" GROUP_LIST_LIMIT,
											   escaped));
		return;
	}

	if ((account = WithdrawalDestinationField(p, "stripe_account")) == NULL)
		return;
	for (c = currency; *c; c++)
		*c = pg_ascii_tolower((unsigned char) *c);

	initStringInfo(&body);
	append_form(&body, "amount", psprintf(INT64_FORMAT, p->amount));
	append_form(&body, "currency", currency);
	append_form(&body, "destination", account);
	append_form(&body, "metadata[withdrawal_id]", p->id_text);
	append_form(&body, "transfer_group", p->id_text);

	req->method = "POST";
	req->url = WithdrawalProcessorUrl(p, "/v1/transfers");
	req->body = body.data;
	req->content_type = "application/x-www-form-urlencoded";
}

/* A transfer object: paid, with its id as the reference */
static bool
take_transfer(WithdrawalPayout *p, char *object, char *id)
{
	if (id == NULL || object == NULL || strcmp(object, "transfer") != 0)
		return false;
	p->processor_ref = id;
	WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_PAID, NULL);
	return true;
}

/* The answer to a status query (a transfer, or the list of a group) */
static void
classify_query(WithdrawalPayout *p, long status, Jsonb *jb)
{
	char	   *object = WithdrawalJsonGetText(jb, "object");
	int			n;

	if (status < 200 || status >= 300)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY, "status query: HTTP %ld", status);
	else if (take_transfer(p, object, WithdrawalJsonGetText(jb, "id")))
		return;
	else if (object == NULL || strcmp(object, "list") != 0 ||
			 (n = WithdrawalJsonArrayLength(jb, "data")) < 0)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
							   "status query: malformed response (HTTP %ld)", status);
	else if (n == 0)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_UNKNOWN,
							   "processor has no transfer in this withdrawal's transfer group; it is sent again with the same key");
	else if (n > 1)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_DEAD,
							   "processor lists %d transfers in this withdrawal's transfer group", n);
	else if (!take_transfer(p, WithdrawalJsonArrayGetText(jb, "data", 0, "object"),
							WithdrawalJsonArrayGetText(jb, "data", 0, "id")))
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
							   "status query: malformed transfer in the list (HTTP %ld)", status);
}

static void
stripe_classify(WithdrawalPayout *p, long status, const char *body, size_t len)
{
	Jsonb	   *jb = WithdrawalJsonParse(body, len);
	char	   *type;
	char	   *code;
	char	   *message;

	if (p->query)
	{
		classify_query(p, status, jb);
		return;
	}
	if (status >= 200 && status < 300)
	{
		if (!take_transfer(p, WithdrawalJsonGetText(jb, "object"), WithdrawalJsonGetText(jb, "id")))
			WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
								   "malformed response (HTTP %ld)", status);
		return;
	}

	type = WithdrawalJsonGetPath(jb, "error", "type");
	code = WithdrawalJsonGetPath(jb, "error", "code");
	message = WithdrawalJsonGetPath(jb, "error", "message");
	if (status == 409 || (code && strcmp(code, "idempotency_key_in_use") == 0))
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_IN_PROGRESS,
							   "HTTP %ld%s%.*s: Stripe is still processing a request with this idempotency key; asking again with the same key",
							   status, code ? ": " : "", CLIP_CODE, code ? code : "");
	else if (type && strcmp(type, "idempotency_error") == 0)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_DEAD,
							   "HTTP %ld: idempotency_error%s%.*s (the key exists with other parameters; a transfer may exist)",
							   status, code ? " " : "", CLIP_CODE, code ? code : "");
	else if ((status == 400 || status == 402) && p->should_retry != 1 &&
			 type && (strcmp(type, "invalid_request_error") == 0 || strcmp(type, "card_error") == 0) &&
			 WithdrawalCodeListed(code, decline_codes, lengthof(decline_codes)))
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_FAILED, "HTTP %ld: %.*s%s%.*s", status,
							   CLIP_CODE, code, message ? ": " : "", CLIP_MESSAGE, message ? message : "");
	else if (p->should_retry == 0)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_DEAD,
							   "HTTP %ld%s%.*s%s%.*s: Stripe-Should-Retry is false and this is not a documented decline; held for an operator",
							   status, type ? ": " : "", CLIP_CODE, type ? type : "",
							   code ? " " : "", CLIP_CODE, code ? code : "");
	else
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY, "HTTP %ld%s%.*s%s%.*s", status,
							   type ? ": " : "", CLIP_CODE, type ? type : "",
							   code ? " " : "", CLIP_CODE, code ? code : "");
}

const WithdrawalDriver withdrawal_stripe_driver = {
	.name = "stripe",
	.settles_by_itself = false,
	.bulk_submit = true,
	.decide = NULL,
	.build = stripe_build,
	.classify = stripe_classify,
};
