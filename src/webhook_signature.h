/*-------------------------------------------------------------------------
 *
 * webhook_signature.h
 *	  Processor webhooks: signature schemes and their verification.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/webhook_signature.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_WEBHOOK_SIGNATURE_H
#define WITHDRAWAL_WEBHOOK_SIGNATURE_H

#include "utils/jsonb.h"

/* Longest event id accepted (the body's "id" or a webhook-id header), in bytes */
#define WITHDRAWAL_WEBHOOK_MAX_EVENT_ID	255

/* Largest signature-related header value looked at, in bytes */
#define WITHDRAWAL_WEBHOOK_MAX_HEADER	8192

/* Header names of the http driver's own scheme, "hmac-sha256" */
#define WITHDRAWAL_WEBHOOK_TIMESTAMP_HEADER	"X-Withdrawal-Timestamp"
#define WITHDRAWAL_WEBHOOK_SIGNATURE_HEADER	"X-Withdrawal-Signature"

/* A processor signs with its current webhook secret or, while a rotation
 * lasts, with the previous one: at most two secrets are tried */
#define WITHDRAWAL_WEBHOOK_MAX_SECRETS	2

/*
 * Verifies the signature of a webhook by the processor's scheme ("stripe",
 * "standard" or "hmac-sha256") with the values of its secrets (the current
 * one first), at time now_unix (seconds since 1970) with a tolerance of
 * tolerance_s seconds either way.  Returns the index of the first secret
 * that matches.  Raises WD008 on any failure and changes nothing.  For the
 * "standard" scheme, *webhook_id receives the (signed) webhook-id header;
 * otherwise NULL.
 */
extern int	WithdrawalWebhookVerify(const char *scheme, const char *const *secrets,
									int nsecrets, Jsonb *headers,
									const char *body, int bodylen,
									int64 now_unix, int64 tolerance_s,
									char **webhook_id);

#endif							/* WITHDRAWAL_WEBHOOK_SIGNATURE_H */
