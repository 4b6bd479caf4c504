/*-------------------------------------------------------------------------
 *
 * crypto.h
 *	  SHA-256, HMAC-SHA256 and constant-time comparison: the one place the
 *	  extension computes digests (audit chain, secret fingerprints, webhook
 *	  signatures).  A leaf: no domain knowledge.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/crypto.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_CRYPTO_H
#define WITHDRAWAL_CRYPTO_H

#include "common/sha2.h"

/* Length of a SHA-256 digest, and so of an HMAC-SHA256, in bytes */
#define WITHDRAWAL_SHA256_LEN	PG_SHA256_DIGEST_LENGTH

/*
 * SHA-256 of len bytes at data, into out (WITHDRAWAL_SHA256_LEN bytes),
 * with PostgreSQL's cryptohash API.  Needs a resource owner (any
 * transaction has one).
 */
extern void WithdrawalSha256(const void *data, size_t len, uint8 *out);

/*
 * HMAC-SHA256 keyed with keylen bytes at key, with OpenSSL, over the
 * concatenation of nparts parts (parts[i], lens[i] bytes), into out
 * (WITHDRAWAL_SHA256_LEN bytes).
 */
extern void WithdrawalHmacSha256(const uint8 *key, size_t keylen,
								 const char *const *parts, const size_t *lens,
								 int nparts, uint8 *out);

/*
 * Whether len bytes at a and b are equal, in a time that depends only on
 * len (OpenSSL's CRYPTO_memcmp): for secrets and signatures.
 */
extern bool WithdrawalTimingSafeEqual(const void *a, const void *b, size_t len);

#endif							/* WITHDRAWAL_CRYPTO_H */
