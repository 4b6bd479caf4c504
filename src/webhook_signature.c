/*-------------------------------------------------------------------------
 *
 * webhook_signature.c
 *	  The signature schemes of processor webhooks: Stripe's, Standard
 *	  Webhooks (Svix) and the http driver's own "hmac-sha256".
 *
 * Each scheme reads its headers, computes the HMAC-SHA256 of what it signs
 * with every secret in force (the current one, and the previous one while
 * a rotation lasts), compares in constant time against every signature
 * offered, and only then checks the timestamp against the tolerance.  Any
 * failure is WD008 and says what was wrong with the request, never
 * anything about the expected signature.  Nothing here parses the body or
 * touches a table: receive_webhook() (webhook.c) calls it before either.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/webhook_signature.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"

#include "crypto.h"
#include "webhook_signature.h"
#include "withdrawal.h"

/* Length of the base64 text of a SHA-256 HMAC, padding included */
#define SHA256_B64_LEN 44

/* Prefixes a scheme signs before the body: at most an id and a timestamp */
#define MAX_PREFIXES 2

/*
 * HMAC-SHA256 of the content every scheme signs: the prefixes (ids,
 * timestamps), each followed by ".", then the body.
 */
static void
hmac_sha256(const unsigned char *key, size_t keylen,
			const char *const *prefixes, int nprefixes,
			const char *body, size_t bodylen, unsigned char *out)
{
	const char *parts[2 * MAX_PREFIXES + 1];
	size_t		lens[2 * MAX_PREFIXES + 1];
	int			n = 0;
	int			i;

	Assert(nprefixes <= MAX_PREFIXES);
	for (i = 0; i < nprefixes; i++)
	{
		parts[n] = prefixes[i];
		lens[n++] = strlen(prefixes[i]);
		parts[n] = ".";
		lens[n++] = 1;
	}
	parts[n] = body;
	lens[n++] = bodylen;
	WithdrawalHmacSha256(key, keylen, parts, lens, n, out);
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
	char		expected[WITHDRAWAL_SHA256_LEN * 2 + 1];

	hex_encode((const char *) mac, WITHDRAWAL_SHA256_LEN, expected);
	expected[WITHDRAWAL_SHA256_LEN * 2] = '\0';
	if (len != WITHDRAWAL_SHA256_LEN * 2)
		return false;
	return WithdrawalTimingSafeEqual(expected, candidate, WITHDRAWAL_SHA256_LEN * 2);
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

	n = pg_b64_encode((const char *) mac, WITHDRAWAL_SHA256_LEN, expected, sizeof(expected));
	if (n != SHA256_B64_LEN)
		elog(ERROR, "could not encode an HMAC-SHA256 signature in base64");
	if (len != SHA256_B64_LEN)
		return false;
	return WithdrawalTimingSafeEqual(expected, candidate, SHA256_B64_LEN);
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
	unsigned char mac[WITHDRAWAL_SHA256_LEN];
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
	unsigned char mac[WITHDRAWAL_SHA256_LEN];
	char	   *item;
	char	   *saveptr = NULL;
	int			matched = -1;
	int			s;
	ListCell   *lc;

	standard_headers(headers, &id, &ts, &sigs);
	if (strlen(id) == 0 || strlen(id) > WITHDRAWAL_WEBHOOK_MAX_EVENT_ID)
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
