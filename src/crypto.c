/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  SHA-256, HMAC-SHA256 and constant-time comparison.
 *
 * SHA-256 goes through PostgreSQL's own cryptohash API (OpenSSL underneath
 * in a build with OpenSSL, its own implementation otherwise), so the audit
 * chain and the secret fingerprints hash alike on every platform.  The
 * HMAC uses OpenSSL's EVP_MAC, which the webhook schemes were written and
 * tested against; the library links libcrypto for it anyway.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/crypto.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "common/cryptohash.h"

#include "crypto.h"

/* OpenSSL's HMAC implementation, fetched once per backend */
static EVP_MAC *hmac_algorithm = NULL;

void
WithdrawalSha256(const void *data, size_t len, uint8 *out)
{
	pg_cryptohash_ctx *ctx;

	ctx = pg_cryptohash_create(PG_SHA256);
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, out, WITHDRAWAL_SHA256_LEN) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a SHA-256 digest: %s",
						pg_cryptohash_error(ctx))));
	pg_cryptohash_free(ctx);
}

void
WithdrawalHmacSha256(const uint8 *key, size_t keylen,
					 const char *const *parts, const size_t *lens, int nparts,
					 uint8 *out)
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
	for (i = 0; ok && i < nparts; i++)
		ok = EVP_MAC_update(ctx, (const unsigned char *) parts[i], lens[i]) == 1;
	ok = ok && EVP_MAC_final(ctx, out, &outlen, WITHDRAWAL_SHA256_LEN) == 1 &&
		outlen == WITHDRAWAL_SHA256_LEN;
	EVP_MAC_CTX_free(ctx);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute an HMAC-SHA256 signature")));
}

bool
WithdrawalTimingSafeEqual(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}
