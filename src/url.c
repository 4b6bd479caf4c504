/*-------------------------------------------------------------------------
 *
 * url.c
 *	  The URL policy for processor endpoints.
 *
 * A payout's request carries a bearer secret and money: it goes over
 * https, or over plain http only to a loopback host (a test processor, a
 * local TLS-terminating proxy) when withdrawal.allow_insecure_loopback
 * says so.  The URL is parsed by libcurl, the library that will send it,
 * so that the policy judges the host libcurl would connect to.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/url.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>

#include "url.h"
#include "withdrawal.h"

/* Room for the longest IPv6 literal without its brackets, and more */
#define HOST_BUF_BYTES		64

/* IPv4 loopback is 127.0.0.0/8: its first octet */
#define IPV4_LOOPBACK_OCTET	127

static bool
host_is_loopback(const char *host)
{
	unsigned char addr[sizeof(struct in6_addr)];
	char		buf[HOST_BUF_BYTES];
	size_t		len = strlen(host);

	if (pg_strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, addr) == 1)
		return addr[0] == IPV4_LOOPBACK_OCTET;
	/* libcurl returns IPv6 hosts in brackets */
	if (len >= 2 && len < sizeof(buf) && host[0] == '[' && host[len - 1] == ']')
	{
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		if (inet_pton(AF_INET6, buf, addr) == 1)
			return memcmp(addr, &in6addr_loopback, sizeof(addr)) == 0;
	}
	return false;
}

bool
WithdrawalUrlAllowed(const char *url, char **why)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	bool		ok = false;

	*why = NULL;
	if (u == NULL)
	{
		*why = pstrdup("out of memory parsing the processor URL");
		return false;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		*why = pstrdup("processor base_url is not a valid URL");
	else if (pg_strcasecmp(scheme, "https") == 0)
		ok = true;
	else if (pg_strcasecmp(scheme, "http") != 0)
		*why = psprintf("processor URL scheme \"%s\" is not supported", scheme);
	else if (!withdrawal_allow_insecure_loopback)
		*why = pstrdup("plain http is refused (withdrawal.allow_insecure_loopback is off)");
	else if (!host_is_loopback(host))
		*why = psprintf("plain http is refused for non-loopback host \"%s\"", host);
	else
		ok = true;
	if (scheme)
		curl_free(scheme);
	if (host)
		curl_free(host);
	curl_url_cleanup(u);
	return ok;
}
