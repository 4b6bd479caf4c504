/*-------------------------------------------------------------------------
 *
 * webhook.c
 *	  Processor webhooks: signature verification, deduplication, settlement.
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

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "catalog/pg_type.h"
#include "common/base64.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "args.h"
#include "audit.h"
#include "ledger.h"
#include "lifecycle.h"
#include "secrets.h"
#include "spi.h"
#include "webhook.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_receive_webhook);
PG_FUNCTION_INFO_V1(withdrawal_verify_webhook_signature);

#define SHA256_LEN 32
#define MAX_EVENT_ID 255
#define MAX_PROCESSOR_NAME 63

/* Length of the base64 text of a SHA-256 HMAC, padding included */
#define SHA256_B64_LEN 44

/* What an event asks for */
typedef enum WebhookAction
{
	ACTION_NONE,				/* an event type we do not act on */
	ACTION_PAID,
	ACTION_FAILED,
	ACTION_RETURNED
} WebhookAction;

/*
 * Event types per scheme (docs/webhooks.md, "Events").
 *
 * Stripe: the stripe driver creates transfers to connected accounts
 * (/v1/transfers), which are final when created, so transfer.created is
 * the proof that the money left (paid) and transfer.reversed that it came
 * back: returned once amount_reversed, which Stripe keeps as the running
 * total of the reversals, covers the whole amount, a partial return of the
 * increase before that (decide_locked).  transfer.paid and transfer.failed exist only
 * for webhook endpoints on API versions before 2017-04-06 (when transfers
 * still had a status); there they mean what they say, so they are still
 * applied.  payout.* events concern payouts from a Stripe balance to a bank
 * account; they apply when the payout's metadata names a withdrawal
 * (payout.canceled: the money never left, like payout.failed).
 *
 * The http driver's protocol and Standard Webhooks: payout.paid,
 * payout.failed and payout.returned with data.payout_id = withdrawal id.
 */
typedef struct WebhookEventType
{
	bool		stripe;
	const char *type;
	WebhookAction action;
	bool		reversal;		/* amount_reversed must cover the amount */
} WebhookEventType;

static const WebhookEventType event_types[] = {
	{true, "transfer.created", ACTION_PAID, false},
	{true, "transfer.reversed", ACTION_RETURNED, true},
	{true, "transfer.paid", ACTION_PAID, false},
	{true, "transfer.failed", ACTION_FAILED, false},
	{true, "payout.paid", ACTION_PAID, false},
	{true, "payout.failed", ACTION_FAILED, false},
	{true, "payout.canceled", ACTION_FAILED, false},
	{false, "payout.paid", ACTION_PAID, false},
	{false, "payout.failed", ACTION_FAILED, false},
	{false, "payout.returned", ACTION_RETURNED, false},
};

/* The decision taken for an event, under the withdrawal's row lock */
typedef struct WebhookDecision
{
	const char *result;			/* "applied" or "ignored" */
	const char *reason;			/* why ignored, or NULL */
	const char *discrepancy;	/* disagreement with the books, or NULL */
	int			nsteps;			/* transitions to apply, in order */
	WithdrawalStatus steps[3];
	int64		partial;		/* then a partial return of this much, or 0 */
} WebhookDecision;

static EVP_MAC *hmac_algorithm = NULL;

/*
 * HMAC-SHA256, with OpenSSL's EVP_MAC, of the content every scheme signs:
 * the prefixes (ids, timestamps), each followed by ".", then the body.
 */
static void
hmac_sha256(const unsigned char *key, size_t keylen,
			const char *const *prefixes, int nprefixes,
			const char *body, size_t bodylen, unsigned char *out)
{
	static char digest[] = "SHA256";
	EVP_MAC_CTX *ctx;
	OSSL_PARAM	params[2];
	size_t		outlen = 0;
	bool		ok;
	int			i;

	if (hmac_algorithm == NULL)
	{
		hmac_algorithm = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
		if (hmac_algorithm == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not load the HMAC implementation of OpenSSL")));
	}
	ctx = EVP_MAC_CTX_new(hmac_algorithm);
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	ok = EVP_MAC_init(ctx, key, keylen, params) == 1;
	for (i = 0; ok && i < nprefixes; i++)
		ok = EVP_MAC_update(ctx, (const unsigned char *) prefixes[i], strlen(prefixes[i])) == 1 &&
			EVP_MAC_update(ctx, (const unsigned char *) ".", 1) == 1;
	ok = ok && EVP_MAC_update(ctx, (const unsigned char *) body, bodylen) == 1;
	ok = ok && EVP_MAC_final(ctx, out, &outlen, SHA256_LEN) == 1 &&
		outlen == SHA256_LEN;
	EVP_MAC_CTX_free(ctx);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute an HMAC-SHA256 signature")));
}

/*
 * Raises WD008.  The message says what was wrong with the request, never
 * anything about the expected signature or the secret.
 */
static void
pg_attribute_noreturn()
refuse(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_WD_SIGNATURE_INVALID),
			 errmsg("webhook signature invalid: %s", what)));
}

/*
 * Returns the value of header name (compared case-insensitively) as a C
 * string, or NULL when absent.  A header given twice under different
 * spellings, a value that is not a JSON string, or one longer than
 * WITHDRAWAL_WEBHOOK_MAX_HEADER is refused: a signature header must be
 * unambiguous.
 */
static char *
header_value(Jsonb *headers, const char *name)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	size_t		namelen = strlen(name);
	char	   *found = NULL;
	bool		match = false;

	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			match = (v.val.string.len == namelen &&
					 pg_strncasecmp(v.val.string.val, name, namelen) == 0);
		else if (tok == WJB_VALUE && match)
		{
			if (found != NULL)
				refuse(psprintf("header \"%s\" is given more than once", name));
			if (v.type != jbvString)
				refuse(psprintf("header \"%s\" is not a string", name));
			if (v.val.string.len > WITHDRAWAL_WEBHOOK_MAX_HEADER)
				refuse(psprintf("header \"%s\" is too long", name));
			found = pnstrdup(v.val.string.val, v.val.string.len);
			match = false;
		}
	}
	return found;
}

static char *
required_header(Jsonb *headers, const char *name)
{
	char	   *value = header_value(headers, name);

	if (value == NULL)
		refuse(psprintf("header \"%s\" is missing", name));
	return value;
}

/*
 * Parses a Unix timestamp in seconds: decimal digits only, at most 12.
 */
static int64
parse_timestamp(const char *s, const char *what)
{
	size_t		len = strlen(s);
	size_t		i;

	if (len == 0 || len > 12)
		refuse(psprintf("%s is not a Unix timestamp", what));
	for (i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			refuse(psprintf("%s is not a Unix timestamp", what));
	return (int64) strtoll(s, NULL, 10);
}

static void
check_tolerance(int64 timestamp, int64 now_unix, int64 tolerance_s)
{
	if (timestamp < now_unix - tolerance_s || timestamp > now_unix + tolerance_s)
		refuse("timestamp outside tolerance");
}

/*
 * Constant-time comparison of our lower-case hex HMAC with a candidate.
 */
static bool
hex_signature_matches(const unsigned char *mac, const char *candidate, size_t len)
{
	char		expected[SHA256_LEN * 2 + 1];

	hex_encode((const char *) mac, SHA256_LEN, expected);
	expected[SHA256_LEN * 2] = '\0';
	if (len != SHA256_LEN * 2)
		return false;
	return CRYPTO_memcmp(expected, candidate, SHA256_LEN * 2) == 0;
}

/*
 * Constant-time comparison of the base64 text of our HMAC with a candidate,
 * as the Standard Webhooks and Svix libraries compare them.  Decoding the
 * candidate instead would accept other spellings of the same bytes: the
 * last character of a 32-byte value carries two bits that decoding drops.
 */
static bool
base64_signature_matches(const unsigned char *mac, const char *candidate, size_t len)
{
	char		expected[SHA256_B64_LEN + 1];
	int			n;

	n = pg_b64_encode((const char *) mac, SHA256_LEN, expected, sizeof(expected));
	if (n != SHA256_B64_LEN)
		elog(ERROR, "could not encode an HMAC-SHA256 signature in base64");
	if (len != SHA256_B64_LEN)
		return false;
	return CRYPTO_memcmp(expected, candidate, SHA256_B64_LEN) == 0;
}

/*
 * The index of the first secret whose HMAC-SHA256 of prefix and body, in
 * hex, is one of the candidate signatures (Stripe's scheme and the http
 * driver's own, which sign "<timestamp>.<body>"); every candidate is
 * compared, in constant time.  Refuses (WD008) when none matches.
 */
static int
first_secret_matching_hex(const char *const *secrets, int nsecrets, const char *prefix,
						  const char *body, size_t bodylen, List *candidates)
{
	unsigned char mac[SHA256_LEN];
	int			s;

	for (s = 0; s < nsecrets; s++)
	{
		bool		any = false;
		ListCell   *lc;

		hmac_sha256((const unsigned char *) secrets[s], strlen(secrets[s]),
					(const char *[]) {prefix}, 1, body, bodylen, mac);
		foreach(lc, candidates)
		{
			char	   *candidate = lfirst(lc);

			any |= hex_signature_matches(mac, candidate, strlen(candidate));
		}
		if (any)
			return s;
	}
	refuse("no signature matches");
	return -1;					/* keep the compiler quiet */
}

/*
 * Scheme "stripe": Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...];
 * HMAC-SHA256 keyed with the whole secret ("whsec_..." included) over
 * "<t>.<body>".  Any v1 may match any of the secrets (rotation); v0 and
 * unknown schemes are ignored, as Stripe's libraries do.  Returns the
 * index of the first secret that matches, or -1.
 */
static int
verify_stripe(const char *const *secrets, int nsecrets, Jsonb *headers,
			  const char *body, int bodylen, int64 now_unix, int64 tolerance_s)
{
	char	   *header = required_header(headers, "Stripe-Signature");
	char	   *t = NULL;
	List	   *candidates = NIL;
	char	   *item;
	char	   *saveptr = NULL;
	int64		timestamp;
	int			matched;

	for (item = strtok_r(header, ",", &saveptr); item != NULL;
		 item = strtok_r(NULL, ",", &saveptr))
	{
		while (*item == ' ')
			item++;
		if (strncmp(item, "t=", 2) == 0)
		{
			if (t != NULL)
				refuse("Stripe-Signature has more than one timestamp");
			t = item + 2;
		}
		else if (strncmp(item, "v1=", 3) == 0)
			candidates = lappend(candidates, item + 3);
	}
	if (t == NULL)
		refuse("Stripe-Signature has no timestamp");
	if (candidates == NIL)
		refuse("Stripe-Signature has no v1 signature");
	timestamp = parse_timestamp(t, "Stripe-Signature timestamp");

	matched = first_secret_matching_hex(secrets, nsecrets, t, body, bodylen, candidates);
	check_tolerance(timestamp, now_unix, tolerance_s);
	return matched;
}

/*
 * The id, timestamp and signature headers of a Standard Webhooks message.
 * Svix, which wrote the specification, sends them as svix-id,
 * svix-timestamp and svix-signature; its verify() takes those when all
 * three are present and the webhook-* ones otherwise, and so do we.
 */
static void
standard_headers(Jsonb *headers, char **id, char **ts, char **sigs)
{
	char	   *svix_id = header_value(headers, "svix-id");
	char	   *svix_ts = header_value(headers, "svix-timestamp");
	char	   *svix_sigs = header_value(headers, "svix-signature");

	if (svix_id != NULL && svix_ts != NULL && svix_sigs != NULL)
	{
		*id = svix_id;
		*ts = svix_ts;
		*sigs = svix_sigs;
		return;
	}
	*id = required_header(headers, "webhook-id");
	*ts = required_header(headers, "webhook-timestamp");
	*sigs = required_header(headers, "webhook-signature");
}

/*
 * The key of a Standard Webhooks secret, "whsec_<base64 of the key>";
 * 55000 when it is not one.
 */
static char *
standard_key(const char *secret, int *keylen)
{
	const char *encoded = secret;
	char	   *key;

	if (strncmp(encoded, "whsec_", 6) == 0)
		encoded += 6;
	key = palloc(pg_b64_dec_len(strlen(encoded)) + 1);
	*keylen = pg_b64_decode(encoded, strlen(encoded), key,
							pg_b64_dec_len(strlen(encoded)));
	if (*keylen <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("webhook secret of a \"standard\" processor is not a valid whsec_ secret"),
				 errhint("Standard Webhooks secrets are \"whsec_\" followed by the base64 of the key.")));
	return key;
}

/*
 * Scheme "standard" (Standard Webhooks): webhook-id, webhook-timestamp and
 * webhook-signature (or their svix-* names): "v1,<base64>" entries
 * separated by spaces; the secret is "whsec_<base64 of the key>";
 * HMAC-SHA256 over "<id>.<timestamp>.<body>".  Returns the index of the
 * first secret that matches, or -1.
 */
static int
verify_standard(const char *const *secrets, int nsecrets, Jsonb *headers,
				const char *body, int bodylen, int64 now_unix,
				int64 tolerance_s, char **webhook_id)
{
	char	   *id;
	char	   *ts;
	char	   *sigs;
	List	   *candidates = NIL;
	int64		timestamp;
	unsigned char mac[SHA256_LEN];
	char	   *item;
	char	   *saveptr = NULL;
	int			matched = -1;
	int			s;
	ListCell   *lc;

	standard_headers(headers, &id, &ts, &sigs);
	if (strlen(id) == 0 || strlen(id) > MAX_EVENT_ID)
		refuse("webhook-id must have 1 to 255 bytes");
	timestamp = parse_timestamp(ts, "webhook-timestamp");

	for (item = strtok_r(sigs, " ", &saveptr); item != NULL;
		 item = strtok_r(NULL, " ", &saveptr))
		if (strncmp(item, "v1,", 3) == 0)
			candidates = lappend(candidates, item + 3);

	for (s = 0; s < nsecrets && matched < 0; s++)
	{
		int			keylen;
		char	   *key = standard_key(secrets[s], &keylen);
		bool		any = false;

		hmac_sha256((unsigned char *) key, keylen, (const char *[]) {id, ts}, 2,
					body, bodylen, mac);
		explicit_bzero(key, keylen);
		foreach(lc, candidates)
		{
			char	   *candidate = lfirst(lc);

			any |= base64_signature_matches(mac, candidate, strlen(candidate));
		}
		if (any)
			matched = s;
	}
	if (matched < 0)
		refuse("no signature matches");
	check_tolerance(timestamp, now_unix, tolerance_s);
	*webhook_id = id;
	return matched;
}

/*
 * Scheme "hmac-sha256", the http driver's own:
 *   X-Withdrawal-Timestamp: <unix seconds>
 *   X-Withdrawal-Signature: v1=<hex>[, v1=<hex>...]
 * where hex is the lower-case HMAC-SHA256, keyed with the secret as is,
 * of "<timestamp>.<body>".  Several v1 values allow secret rotation.
 * Returns the index of the first secret that matches, or -1.
 */
static int
verify_hmac_sha256(const char *const *secrets, int nsecrets, Jsonb *headers,
				   const char *body, int bodylen, int64 now_unix,
				   int64 tolerance_s)
{
	char	   *ts = required_header(headers, WITHDRAWAL_WEBHOOK_TIMESTAMP_HEADER);
	char	   *sigs = required_header(headers, WITHDRAWAL_WEBHOOK_SIGNATURE_HEADER);
	List	   *candidates = NIL;
	int64		timestamp;
	char	   *item;
	char	   *saveptr = NULL;
	int			matched;

	timestamp = parse_timestamp(ts, WITHDRAWAL_WEBHOOK_TIMESTAMP_HEADER);
	for (item = strtok_r(sigs, ",", &saveptr); item != NULL;
		 item = strtok_r(NULL, ",", &saveptr))
	{
		while (*item == ' ')
			item++;
		if (strncmp(item, "v1=", 3) == 0)
			candidates = lappend(candidates, item + 3);
	}

	matched = first_secret_matching_hex(secrets, nsecrets, ts, body, bodylen, candidates);
	check_tolerance(timestamp, now_unix, tolerance_s);
	return matched;
}

int
WithdrawalWebhookVerify(const char *scheme, const char *const *secrets,
						int nsecrets, Jsonb *headers, const char *body,
						int bodylen, int64 now_unix, int64 tolerance_s,
						char **webhook_id)
{
	Assert(nsecrets >= 1);
	*webhook_id = NULL;
	if (strcmp(scheme, "stripe") == 0)
		return verify_stripe(secrets, nsecrets, headers, body, bodylen,
							 now_unix, tolerance_s);
	else if (strcmp(scheme, "standard") == 0)
		return verify_standard(secrets, nsecrets, headers, body, bodylen,
							   now_unix, tolerance_s, webhook_id);
	else if (strcmp(scheme, "hmac-sha256") == 0)
		return verify_hmac_sha256(secrets, nsecrets, headers, body, bodylen,
								  now_unix, tolerance_s);
	elog(ERROR, "unknown webhook scheme \"%s\"", scheme);
	return -1;					/* keep compiler quiet */
}

/*
 * Parses the (verified) body with PostgreSQL's jsonb input function.  What
 * the parser raises about the text is bad input, 22023: any data exception
 * (syntax, bad escapes, \u0000), nesting too deep for the stack (54001),
 * and an escape that the database encoding cannot hold (0A000).  Anything
 * else (out of memory, a cancel) is not about the body and is re-raised.
 *
 * JSON is UTF-8 (RFC 8259).  A UTF-8 database has checked the text already;
 * a SQL_ASCII one stores any bytes, so the body is checked here.
 */
static Jsonb *
parse_body(const char *body, int bodylen)
{
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;
	ErrorData  *volatile edata = NULL;

	if (GetDatabaseEncoding() == PG_SQL_ASCII &&
		!pg_verify_mbstr(PG_UTF8, body, bodylen, true))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook body is not valid JSON"),
				 errdetail("The body is not valid UTF-8.")));

	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(body)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION &&
			edata->sqlerrcode != ERRCODE_STATEMENT_TOO_COMPLEX &&
			edata->sqlerrcode != ERRCODE_FEATURE_NOT_SUPPORTED)
			PG_RE_THROW();
		FlushErrorState();
	}
	PG_END_TRY();

	if (edata != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook body is not valid JSON"),
				 errdetail("%s", edata->message)));
	if (!JB_ROOT_IS_OBJECT(result) || JB_ROOT_IS_SCALAR(result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook body must be a JSON object")));
	return result;
}

/*
 * Integer minor units from a JSON number's text as the processor wrote it:
 * digits only; anything else (a string, a fraction, an exponent such as
 * 1.114e3, even of an integral value) is 22023.
 */
static int64
parse_amount(const char *type, const char *s)
{
	size_t		len = strlen(s);
	size_t		i;

	if (strcmp(type, "number") != 0 || len == 0 || len > 18)
		goto bad;
	for (i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			goto bad;
	return (int64) strtoll(s, NULL, 10);

bad:
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("webhook event amount must be a non-negative integer number of minor units")));
	pg_unreachable();
}

/*
 * What an event does to a withdrawal in status "from".  Policy (README,
 * "Webhooks"):
 *	- paid:     dispatching/submitted/dead -> paid; queued -> dispatching
 *				-> paid (an earlier attempt reached the processor); paid or
 *				returned: no change; failed, rejected or canceled: the money
 *				was already refunded, so nothing moves and it is a
 *				discrepancy (paid_after_refund); review: never sent, a
 *				discrepancy (not_dispatched).
 *	- failed:   queued/dispatching/submitted/dead -> failed (refund);
 *				failed/rejected/canceled/returned: no change; paid ->
 *				returned: a payout that fails after it was paid came back
 *				(banks bounce paid payouts), so the money is credited back
 *				once; review: discrepancy.
 *	- returned: paid -> returned; dispatching/submitted/dead -> paid ->
 *				returned and queued -> dispatching -> paid -> returned (the
 *				paid event is late or lost; settle then return keeps the
 *				books true); returned: no change; failed/rejected/canceled:
 *				already refunded, a discrepancy (returned_after_refund);
 *				review: discrepancy.  A return of part of the amount takes
 *				the same path but stops at paid (decide_locked).
 */
static void
decide(WebhookAction action, WithdrawalStatus from, WebhookDecision *d)
{
	memset(d, 0, sizeof(*d));
	d->result = "applied";

#define STEP(s) (d->steps[d->nsteps++] = (s))
	if (from == WITHDRAWAL_REVIEW)
	{
		d->result = "ignored";
		d->discrepancy = "not_dispatched";
		return;
	}
	switch (action)
	{
		case ACTION_PAID:
			if (from == WITHDRAWAL_QUEUED)
				STEP(WITHDRAWAL_DISPATCHING);
			if (from == WITHDRAWAL_QUEUED || from == WITHDRAWAL_DISPATCHING ||
				from == WITHDRAWAL_SUBMITTED || from == WITHDRAWAL_DEAD)
				STEP(WITHDRAWAL_PAID);
			else if (from == WITHDRAWAL_FAILED || from == WITHDRAWAL_REJECTED ||
					 from == WITHDRAWAL_CANCELED)
				d->discrepancy = "paid_after_refund";
			break;
		case ACTION_FAILED:
			if (from == WITHDRAWAL_QUEUED || from == WITHDRAWAL_DISPATCHING ||
				from == WITHDRAWAL_SUBMITTED || from == WITHDRAWAL_DEAD)
				STEP(WITHDRAWAL_FAILED);
			else if (from == WITHDRAWAL_PAID)
				STEP(WITHDRAWAL_RETURNED);
			break;
		case ACTION_RETURNED:
			if (from == WITHDRAWAL_QUEUED)
				STEP(WITHDRAWAL_DISPATCHING);
			if (from == WITHDRAWAL_QUEUED || from == WITHDRAWAL_DISPATCHING ||
				from == WITHDRAWAL_SUBMITTED || from == WITHDRAWAL_DEAD)
				STEP(WITHDRAWAL_PAID);
			if (from != WITHDRAWAL_RETURNED && from != WITHDRAWAL_FAILED &&
				from != WITHDRAWAL_REJECTED && from != WITHDRAWAL_CANCELED)
				STEP(WITHDRAWAL_RETURNED);
			else if (from != WITHDRAWAL_RETURNED)
				d->discrepancy = "returned_after_refund";
			break;
		case ACTION_NONE:
			break;
	}
#undef STEP
	if (d->nsteps == 0)
	{
		d->result = "ignored";
		if (d->discrepancy == NULL)
			d->reason = "no_change";
	}
}

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
 * The audit detail of a webhook: which event, and the disagreement if any.
 */
static Jsonb *
event_detail(const char *processor, const char *event_id,
			 const char *event_type, const char *discrepancy,
			 const char *amount, const char *currency, int64 part)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID};
	Datum		values[7];
	char		nulls[7];
	bool		isnull;

	WithdrawalPrepare(&plan,
					  "SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
					  "'processor', $1, 'event_id', $2, 'event_type', $3,"
					  " 'discrepancy', $4, 'event_amount', $5, 'event_currency', $6,"
					  " 'partial_return', $7))",
					  7, types);
	set_text(values, nulls, 0, processor);
	set_text(values, nulls, 1, event_id);
	set_text(values, nulls, 2, event_type);
	set_text(values, nulls, 3, discrepancy);
	set_text(values, nulls, 4, amount);
	set_text(values, nulls, 5, currency);
	/* what the event returned (Stripe's event_amount is a running total) */
	values[6] = Int64GetDatum(part);
	nulls[6] = part > 0 ? ' ' : 'n';
	WithdrawalExecute(plan, values, nulls, true, 1, SPI_OK_SELECT);
	return DatumGetJsonbP(WithdrawalSpiGet(0, 1, &isnull));
}

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
	char	   *amount;		/* the amount as written in the body */
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
 * Extracts the event's fields with jsonb operators, in the shape of the
 * scheme: Stripe's data.object (our id in metadata.withdrawal_id; the
 * amount is amount_reversed for transfer.reversed, NULL when absent) or
 * the http protocol's data
 * (data.payout_id).  Raises 22023 when the event has no usable id.
 *
 * jsonb keeps a number's value, not its spelling: 1.114e3 becomes 1114.
 * The amount is therefore taken as written, through the json type, which
 * keeps the text (and, like jsonb, takes the last of duplicate keys), so
 * that parse_amount sees the literal the processor sent.
 */
static void
extract_event(Jsonb *payload, const char *body, bool stripe, char *webhook_id,
			  WebhookEvent *ev)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {JSONBOID, BOOLOID, TEXTOID};
	Datum		values[3];
	int			i;

	WithdrawalPrepare(&plan,
					  "SELECT CASE WHEN pg_catalog.jsonb_typeof($1->'id') OPERATOR(pg_catalog.=) 'string'"
					  "  THEN $1->>'id' END,"
					  " CASE WHEN pg_catalog.jsonb_typeof($1->'type') OPERATOR(pg_catalog.=) 'string'"
					  "  THEN $1->>'type' END,"
					  " CASE WHEN $2 THEN o->'metadata'->>'withdrawal_id' ELSE o->>'payout_id' END,"
					  " CASE WHEN pg_catalog.jsonb_typeof(o->'id') OPERATOR(pg_catalog.=) 'string'"
					  "  THEN o->>'id' END,"
					  " pg_catalog.jsonb_typeof(o->a),"
					  " CASE WHEN pg_catalog.jsonb_typeof(o->a) OPERATOR(pg_catalog.=) 'number'"
					  "  THEN (CASE WHEN $2 THEN $3::pg_catalog.json->'data'->'object'"
					  "   ELSE $3::pg_catalog.json->'data' END)->>a ELSE o->>a END,"
					  " CASE WHEN pg_catalog.jsonb_typeof(o->'currency') OPERATOR(pg_catalog.=) 'string'"
					  "  THEN o->>'currency' END"
					  " FROM (SELECT CASE WHEN $2 THEN $1->'data'->'object' ELSE $1->'data' END AS o,"
					  "  CASE WHEN $2 AND $1->>'type' OPERATOR(pg_catalog.=) 'transfer.reversed'"
					  "   THEN 'amount_reversed' ELSE 'amount' END AS a) s",
					  3, types);
	values[0] = JsonbPGetDatum(payload);
	values[1] = BoolGetDatum(stripe);
	values[2] = CStringGetTextDatum(body);
	WithdrawalExecute(plan, values, NULL, true, 1, SPI_OK_SELECT);

	memset(ev, 0, sizeof(*ev));
	ev->payload = payload;
	ev->id = webhook_id ? webhook_id : WithdrawalSpiGetText(0, 1);
	ev->type = WithdrawalSpiGetText(0, 2);
	ev->withdrawal_id = WithdrawalSpiGetText(0, 3);
	ev->processor_ref = WithdrawalSpiGetText(0, 4);
	ev->amount_type = WithdrawalSpiGetText(0, 5);
	ev->amount = WithdrawalSpiGetText(0, 6);
	ev->currency = WithdrawalSpiGetText(0, 7);

	if (ev->id == NULL || strlen(ev->id) == 0 || strlen(ev->id) > MAX_EVENT_ID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook event has no usable id"),
				 errdetail("The event id must be a string of 1 to %d bytes.", MAX_EVENT_ID)));
	ev->action = ACTION_NONE;
	if (ev->type != NULL)
		for (i = 0; i < lengthof(event_types); i++)
			if (event_types[i].stripe == stripe &&
				strcmp(event_types[i].type, ev->type) == 0)
			{
				ev->action = event_types[i].action;
				ev->reversal = event_types[i].reversal;
			}
	if (ev->processor_ref != NULL && strlen(ev->processor_ref) > MAX_EVENT_ID)
		ev->processor_ref = NULL;
}

/*
 * The withdrawal id of the event when it is a well-formed UUID, else NULL
 * (an unknown withdrawal, not an error).
 */
static pg_uuid_t *
event_withdrawal_id(const char *text)
{
	static const char hexdigits[] = "0123456789abcdefABCDEF";
	int			i;

	if (text == NULL || strlen(text) != 36)
		return NULL;
	for (i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ?
			text[i] != '-' : strchr(hexdigits, text[i]) == NULL)
			return NULL;
	return DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(text)));
}

/*
 * Locks the event's withdrawal and decides what the event does to it.
 */
static void
decide_locked(const char *processor, WebhookEvent *ev, WebhookOutcome *out)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {UUIDOID};
	Datum		values[1];
	const char *unknown = ev->action == ACTION_NONE ? "unknown_event_type" : "unknown_withdrawal";
	int64		amount;
	int64		returned;
	int64		part = -1;		/* a partial return of this much, or -1 */
	bool		has_amount;
	char	   *currency;
	bool		isnull;

	memset(out, 0, sizeof(*out));
	out->d.result = "ignored";
	out->withdrawal_id = event_withdrawal_id(ev->withdrawal_id);
	if (out->withdrawal_id == NULL)
	{
		out->d.reason = unknown;
		return;
	}

	WithdrawalPrepare(&plan,
					  "SELECT w.status, w.amount, w.currency, c.processor, w.returned_amount"
					  " FROM withdrawal.withdrawal w"
					  " JOIN withdrawal.channel c ON c.name OPERATOR(pg_catalog.=) w.channel"
					  " WHERE w.withdrawal_id OPERATOR(pg_catalog.=) $1"
					  " FOR NO KEY UPDATE OF w",
					  1, types);
	values[0] = UUIDPGetDatum(out->withdrawal_id);
	WithdrawalExecute(plan, values, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		out->d.reason = unknown;
		out->withdrawal_id = NULL;
		return;
	}
	if (strcmp(WithdrawalSpiGetText(0, 4), processor) != 0)
	{
		out->d.reason = "other_processor";
		return;
	}
	if (ev->action == ACTION_NONE)
	{
		/* kept, and answered with the withdrawal's status */
		out->d.reason = "unknown_event_type";
		out->status_now = WithdrawalSpiGetText(0, 1);
		return;
	}

	out->from = (WithdrawalStatus) WithdrawalStatusParse(WithdrawalSpiGetText(0, 1));
	amount = DatumGetInt64(WithdrawalSpiGet(0, 2, &isnull));
	currency = WithdrawalSpiGetText(0, 3);
	returned = DatumGetInt64(WithdrawalSpiGet(0, 5, &isnull));
	has_amount = ev->amount_type != NULL && strcmp(ev->amount_type, "null") != 0;
	if (ev->reversal)
	{
		/*
		 * amount_reversed is the running total of a transfer's reversals,
		 * so an event returns what its total adds to what the books
		 * returned already: a redelivery under another id, or an older
		 * total arriving late, adds nothing.  A total of the whole amount
		 * is the return (of the rest, once).  Without a total, the event
		 * cannot say how much came back: it is a discrepancy, as before.
		 */
		int64		reversed = has_amount ? parse_amount(ev->amount_type, ev->amount) : -1;

		if (reversed > amount)
			out->d.discrepancy = "amount_mismatch";
		else if (reversed < 0 && out->from != WITHDRAWAL_RETURNED)
			out->d.discrepancy = "partial_reversal";
		else if (reversed >= 0 && reversed < amount)
			part = reversed > returned ? reversed - returned : 0;
	}
	else if (ev->action == ACTION_RETURNED && has_amount)
	{
		/*
		 * The http protocol's payout.returned carries the amount that
		 * event returns; the event id (webhook_event's key) makes it count
		 * once.  The rest of the amount is the return; less is a part;
		 * more than is left is a disagreement, except the whole amount
		 * again for a returned payout (a redelivery under another id).
		 */
		int64		given = parse_amount(ev->amount_type, ev->amount);

		if (given == amount - returned ||
			(given == amount && out->from == WITHDRAWAL_RETURNED))
			;
		else if (given < amount - returned)
			part = given;
		else
			out->d.discrepancy = "amount_mismatch";
	}
	else if (has_amount && parse_amount(ev->amount_type, ev->amount) != amount)
		out->d.discrepancy = "amount_mismatch";
	if (out->d.discrepancy == NULL && ev->currency != NULL &&
		pg_strcasecmp(ev->currency, currency) != 0)
		out->d.discrepancy = "currency_mismatch";
	if (out->d.discrepancy == NULL)
		decide(ev->action, out->from, &out->d);
	if (part >= 0 && out->d.discrepancy == NULL && out->d.nsteps > 0 &&
		out->d.steps[out->d.nsteps - 1] == WITHDRAWAL_RETURNED)
	{
		/*
		 * A part, not the whole: the payout is (or becomes) paid and stays
		 * so, with the part credited back.  A part of zero changes
		 * nothing, except a late paid the event proves.
		 */
		out->d.nsteps--;
		out->d.partial = part;
		if (out->d.nsteps == 0 && part == 0)
		{
			out->d.result = "ignored";
			out->d.reason = "no_change";
		}
	}
	out->status_after = WithdrawalStatusName(out->d.nsteps > 0 ?
											 out->d.steps[out->d.nsteps - 1] :
											 out->from);
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
	static SPIPlanPtr plan = NULL;
	Oid			types[6] = {TEXTOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[6];
	char		nulls[6];
	bool		isnull;

	WithdrawalPrepare(&plan,
					  "SELECT pg_catalog.jsonb_build_object('result', $1, 'withdrawal_id', $2,"
					  " 'status', $3, 'event_id', $4) OPERATOR(pg_catalog.||)"
					  " pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
					  " 'reason', $5, 'discrepancy', $6))",
					  6, types);
	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(out->d.result);
	values[1] = out->withdrawal_id ? UUIDPGetDatum(out->withdrawal_id) : (Datum) 0;
	nulls[1] = out->withdrawal_id ? ' ' : 'n';
	set_text(values, nulls, 2, out->status_after ? out->status_after : out->status_now);
	values[3] = CStringGetTextDatum(ev->id);
	set_text(values, nulls, 4, out->d.reason);
	set_text(values, nulls, 5, out->d.discrepancy);
	WithdrawalExecute(plan, values, nulls, true, 1, SPI_OK_SELECT);
	return SPI_datumTransfer(WithdrawalSpiGet(0, 1, &isnull), false, -1);
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
	extract_event(parse_body(body, bodylen), body, strcmp(wp.scheme, "stripe") == 0,
				  webhook_id, &ev);

	/* 4. decide under the withdrawal's row lock; keep it, or a duplicate */
	decide_locked(processor, &ev, &out);
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
