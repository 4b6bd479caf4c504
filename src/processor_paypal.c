/*-------------------------------------------------------------------------
 *
 * processor_paypal.c
 *	  The paypal processor driver (PayPal Payouts, one item per batch).
 *
 * POST {base_url}/v1/payments/payouts with PayPal-Request-Id: {withdrawal
 * id} (PayPal keeps request ids 30 days and answers a resend with the
 * first answer) and a batch of one item, in jsonb's canonical text (the
 * same bytes on every attempt):
 *
 *	{"items": [{"amount": {"value": V, "currency": C},
 *				"receiver": destination.paypal_email, "recipient_type": "EMAIL",
 *				"sender_item_id": id}],
 *	 "sender_batch_header": {"recipient_type": "EMAIL", "sender_batch_id": id}}
 *
 * V is the amount in major units ("12.34", "1234" for JPY).  The amounts
 * of withdrawal.currency are in ISO 4217 minor units; a currency PayPal
 * does not pay, or counts with other decimals than ISO (HUF, TWD), is not
 * sent: held for an operator, like a destination without paypal_email
 * (destination->>'paypal_email').
 * processor.api_secret names a PayPal access token.
 *
 * Answers (the answer's batch_header.batch_status, and the transaction
 * status of its one item when the answer lists it):
 *	2xx, item SUCCESS: paid (payout_batch_id is the processor reference)
 *	2xx, item FAILED or batch DENIED: PayPal's final word that nothing was
 *		paid: failed and refunded
 *	2xx, batch PENDING, PROCESSING or SUCCESS, the item (if listed) NEW,
 *		PENDING, UNCLAIMED or ONHOLD: submitted (a create), pending (a
 *		status query)
 *	4xx with "name" INSUFFICIENT_FUNDS or VALIDATION_ERROR (not 401, 403,
 *		404, 408, 409, 429): declined, PayPal created nothing: failed and
 *		refunded
 *	400 USER_BUSINESS_ERROR: for instance a sender_batch_id used before
 *		with other parameters, so a payout may exist: held for an operator
 *	409: a request with this id is still being processed: asked again
 *	anything else: retried with the same id, then dead with the funds held
 *
 * The status query is GET {base_url}/v1/payments/payouts/{payout_batch_id}.
 * PayPal finds a batch by nothing else, so a payout whose id never came
 * back is not queried: it keeps waiting for an operator (or a webhook).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/processor_paypal.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/jsonb.h"

#include "json.h"
#include "processor.h"

/* How much of PayPal's own text last_error keeps: a name, a message */
#define CLIP_NAME			100
#define CLIP_MESSAGE		200

/* Names of errors with which PayPal declines a batch for good; sorted */
static const char *const decline_names[] = {
	"INSUFFICIENT_FUNDS",
	"VALIDATION_ERROR",
};

/* Item statuses of a payout PayPal has not finished with; sorted */
static const char *const waiting_items[] = {
	"NEW",
	"ONHOLD",
	"PENDING",
	"UNCLAIMED",
};

/*
 * The currencies PayPal pays out, with the decimals PayPal and ISO 4217
 * both count them with; sorted.  HUF and TWD are missing on purpose:
 * PayPal counts them without decimals, ISO with two.
 */
typedef struct PaypalCurrency
{
	const char *code;
	int			decimals;
} PaypalCurrency;

static const PaypalCurrency currencies[] = {
	{"AUD", 2}, {"BRL", 2}, {"CAD", 2}, {"CHF", 2}, {"CNY", 2}, {"CZK", 2},
	{"DKK", 2}, {"EUR", 2}, {"GBP", 2}, {"HKD", 2}, {"ILS", 2}, {"JPY", 0},
	{"MXN", 2}, {"MYR", 2}, {"NOK", 2}, {"NZD", 2}, {"PHP", 2}, {"PLN", 2},
	{"SEK", 2}, {"SGD", 2}, {"THB", 2}, {"USD", 2},
};

/* The decimals of currency, or -1 when it is not sent to PayPal */
static int
currency_decimals(const char *currency)
{
	int			i;

	for (i = 0; i < (int) lengthof(currencies); i++)
		if (strcmp(currencies[i].code, currency) == 0)
			return currencies[i].decimals;
	return -1;
}

/* amount (minor units, positive) in major units with decimals digits */
static char *
major_units(int64 amount, int decimals)
{
	int64		scale = 1;
	int			i;

	for (i = 0; i < decimals; i++)
		scale *= 10;
	if (decimals == 0)
		return psprintf(INT64_FORMAT, amount);
	return psprintf(INT64_FORMAT ".%0*d", amount / scale, decimals, (int) (amount % scale));
}

/* The create body: see the top of the file */
static char *
paypal_body(const WithdrawalPayout *p, const char *receiver, const char *value)
{
	JsonbParseState *state = NULL;
	Jsonb	   *jb;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	WithdrawalJsonPushKey(&state, "items");
	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	WithdrawalJsonPushKey(&state, "amount");
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	WithdrawalJsonPushString(&state, "currency", p->currency);
	WithdrawalJsonPushString(&state, "value", value);
	pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	WithdrawalJsonPushString(&state, "receiver", receiver);
	WithdrawalJsonPushString(&state, "recipient_type", "EMAIL");
	WithdrawalJsonPushString(&state, "sender_item_id", p->id_text);
	pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	WithdrawalJsonPushKey(&state, "sender_batch_header");
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	WithdrawalJsonPushString(&state, "recipient_type", "EMAIL");
	WithdrawalJsonPushString(&state, "sender_batch_id", p->id_text);
	pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	jb = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

static void
paypal_build(WithdrawalPayout *p, WithdrawalHttpRequest *req)
{
	char	   *receiver;
	int			decimals;

	req->extra_header = psprintf("PayPal-Request-Id: %s", p->id_text);
	if (p->query)
	{
		if (p->known_ref == NULL)
		{
			WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
								   "status query: PayPal finds a payout only by its payout_batch_id, which never came back; nothing was asked");
			return;
		}
		req->method = "GET";
		req->url = WithdrawalProcessorUrl(p, psprintf("/v1/payments/payouts/%s",
													  WithdrawalProcessorEscape(p->known_ref)));
		return;
	}

	if ((receiver = WithdrawalDestinationField(p, "paypal_email")) == NULL)
		return;
	decimals = currency_decimals(p->currency);
	if (decimals < 0)
	{
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_DEAD,
							   "currency %s is not paid through PayPal by this driver; nothing was sent in this attempt",
							   p->currency);
		return;
	}
	req->method = "POST";
	req->url = WithdrawalProcessorUrl(p, "/v1/payments/payouts");
	req->body = paypal_body(p, receiver, major_units(p->amount, decimals));
	req->content_type = "application/json";
}

/* Maps a 2xx answer's batch and item status onto p's outcome */
static void
classify_batch(WithdrawalPayout *p, long status, Jsonb *jb)
{
	char	   *batch = WithdrawalJsonGetPath(jb, "batch_header", "batch_status");
	char	   *ref = WithdrawalJsonGetPath(jb, "batch_header", "payout_batch_id");
	char	   *item = WithdrawalJsonArrayGetText(jb, "items", 0, "transaction_status");

	if (batch == NULL || ref == NULL)
	{
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
							   "malformed response (HTTP %ld)", status);
		return;
	}
	p->processor_ref = ref;
	if (item && strcmp(item, "SUCCESS") == 0)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_PAID, NULL);
	else if ((item && strcmp(item, "FAILED") == 0) || strcmp(batch, "DENIED") == 0)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_FAILED,
							   "PayPal failed the payout: batch %.*s, item %.*s",
							   CLIP_NAME, batch, CLIP_NAME, item ? item : "(none)");
	else if (item && !WithdrawalCodeListed(item, waiting_items, lengthof(waiting_items)))
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
							   "item status \"%.*s\" (batch %.*s) is not a final word this driver knows",
							   CLIP_NAME, item, CLIP_NAME, batch);
	else if (strcmp(batch, "PENDING") == 0 || strcmp(batch, "PROCESSING") == 0 ||
			 strcmp(batch, "SUCCESS") == 0)
		WithdrawalPayoutResult(p, p->query ? WITHDRAWAL_OUTCOME_PENDING :
							   WITHDRAWAL_OUTCOME_SUBMITTED, NULL);
	else
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
							   "unknown batch status \"%.*s\" (item %.*s)",
							   CLIP_NAME, batch, CLIP_NAME, item ? item : "(none)");
}

static void
paypal_classify(WithdrawalPayout *p, long status, const char *body, size_t len)
{
	Jsonb	   *jb = WithdrawalJsonParse(body, len);
	char	   *name;
	char	   *message;

	if (status >= 200 && status < 300)
	{
		classify_batch(p, status, jb);
		return;
	}
	name = WithdrawalJsonGetText(jb, "name");
	message = WithdrawalJsonGetText(jb, "message");
	if (status == 409)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_IN_PROGRESS,
							   "HTTP 409: PayPal is still processing a request with this PayPal-Request-Id; asking again with the same id");
	else if (!p->query && name && strcmp(name, "USER_BUSINESS_ERROR") == 0)
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_DEAD,
							   "HTTP %ld: USER_BUSINESS_ERROR: %.*s (a payout may exist)",
							   status, CLIP_MESSAGE, message ? message : "");
	else if (!p->query && status >= 400 && status < 500 && status != 401 && status != 403 &&
			 status != 404 && status != 408 && status != 429 &&
			 WithdrawalCodeListed(name, decline_names, lengthof(decline_names)))
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_FAILED, "HTTP %ld: %.*s%s%.*s", status,
							   CLIP_NAME, name, message ? ": " : "",
							   CLIP_MESSAGE, message ? message : "");
	else
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY, "%sHTTP %ld%s%.*s",
							   p->query ? "status query: " : "", status,
							   name ? ": " : "", CLIP_NAME, name ? name : "");
}

const WithdrawalDriver withdrawal_paypal_driver = {
	.name = "paypal",
	.settles_by_itself = false,
	.bulk_submit = true,
	.decide = NULL,
	.build = paypal_build,
	.classify = paypal_classify,
};
