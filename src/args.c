/*-------------------------------------------------------------------------
 *
 * args.c
 *	  Argument checks of the SQL entry points, the canonical spelling of an
 *	  IP address, UUIDs and the acting user.
 *
 * Every SQL entry point validates its arguments here so that bad input is
 * refused with 22023 before anything is read or written, with a message
 * that names the argument.  Nothing here reads a table: see cache.c for
 * the currency check, which needs the currency list.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/args.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/timestamp.h"

#include "args.h"
#include "crypto.h"
#include "withdrawal.h"

/*
 * Raises 22023 for a NULL argument.
 */
static void
require_not_null(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", argname)));
}

/* See args.h */
char *
WithdrawalCheckText(text *t, const char *argname, int maxbytes)
{
	int			len = VARSIZE_ANY_EXHDR(t);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname)));
	if (len > maxbytes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", argname),
				 errdetail("The value has %d bytes; at most %d are allowed.",
						   len, maxbytes)));
	return text_to_cstring(t);
}

static char *
text_arg(FunctionCallInfo fcinfo, int argno, const char *argname, int maxbytes)
{
	return WithdrawalCheckText(PG_GETARG_TEXT_PP(argno), argname, maxbytes);
}

char *
WithdrawalArgText(FunctionCallInfo fcinfo, int argno, const char *argname,
				  int maxbytes)
{
	require_not_null(fcinfo, argno, argname);
	return text_arg(fcinfo, argno, argname, maxbytes);
}

char *
WithdrawalArgTextOrNull(FunctionCallInfo fcinfo, int argno,
						const char *argname, int maxbytes)
{
	if (PG_ARGISNULL(argno))
		return NULL;
	return text_arg(fcinfo, argno, argname, maxbytes);
}

/*
 * True for the code points an identifier must not contain: C0 controls,
 * DEL, C1 controls, and the Unicode bidirectional formatting characters
 * (ALM, LRM, RLM, the embeddings and overrides LRE..RLO, the isolates
 * LRI..PDI).  Identifiers are echoed in error messages, the audit log and
 * the server log, where a newline forges a line and a right-to-left
 * override makes one id display as another.
 */
static bool
forbidden_code_point(pg_wchar c)
{
	return c < 0x20 || (c >= 0x7F && c <= 0x9F) ||
		c == 0x061C || c == 0x200E || c == 0x200F ||
		(c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069);
}

/*
 * Refuses an identifier holding a forbidden code point (see args.h).  The
 * value is decoded as Unicode whatever the database encoding, except
 * SQL_ASCII, where only ASCII has a meaning.
 */
void
WithdrawalCheckIdentifier(const char *value, const char *argname)
{
	int			encoding = GetDatabaseEncoding();
	const unsigned char *p;
	const unsigned char *end;
	pg_wchar	bad = 0;
	bool		found = false;

	/* SQL_ASCII gives no meaning to bytes above 0x7F: check ASCII only */
	if (encoding == PG_SQL_ASCII)
	{
		for (p = (const unsigned char *) value; *p != '\0' && !found; p++)
			if (*p < 0x80 && forbidden_code_point(*p))
			{
				found = true;
				bad = *p;
			}
	}
	else
	{
		p = (const unsigned char *) pg_server_to_any(value, strlen(value), PG_UTF8);
		end = p + strlen((const char *) p);
		while (p < end && !found)
		{
			pg_wchar	c = utf8_to_unicode(p);

			if (forbidden_code_point(c))
			{
				found = true;
				bad = c;
			}
			p += pg_utf_mblen(p);
		}
	}
	if (found)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not contain control or bidirectional formatting characters",
						argname),
				 errdetail("The value contains U+%04X.", (unsigned int) bad)));
}

/*
 * See args.h.  The blocklist, the per-IP velocity limit and unblock()
 * compare addresses, so each must have exactly one spelling: a host with a
 * mask ("203.0.113.9/0" is inet 203.0.113.9 with a zero-bit mask, which no
 * /24 entry contains and which counts apart from 203.0.113.9) is refused
 * where a host is wanted, and an IPv4-mapped IPv6 value (::ffff:203.0.113.9,
 * how a dual-stack socket reports an IPv4 client) is the IPv4 one, since
 * inet never contains a value of the other family.  inet_in raises 22P02 on
 * garbage; the contract says 22023 for bad input, so the error is mapped.
 */
char *
WithdrawalCanonicalIp(const char *value, bool host_only, const char *argname)
{
	static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	MemoryContext cxt = CurrentMemoryContext;
	inet	   *addr;
	unsigned char *a;

	PG_TRY();
	{
		addr = DatumGetInetPP(DirectFunctionCall1(inet_in, CStringGetDatum(value)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not an IP address%s: \"%s\"", argname,
						host_only ? "" : " or network", value)));
	}
	PG_END_TRY();

	if (host_only && ip_bits(addr) != ip_maxbits(addr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a host address: \"%s\"", argname, value),
				 errdetail("A network mask other than /%d is not allowed.", ip_maxbits(addr))));
	a = ip_addr(addr);
	if (ip_family(addr) == PGSQL_AF_INET6 && ip_bits(addr) >= 96 &&
		memcmp(a, v4mapped, sizeof(v4mapped)) == 0)
	{
		if (ip_bits(addr) == 128)
			return psprintf("%u.%u.%u.%u", a[12], a[13], a[14], a[15]);
		return psprintf("%u.%u.%u.%u/%d", a[12], a[13], a[14], a[15], ip_bits(addr) - 96);
	}
	return DatumGetCString(DirectFunctionCall1(inet_out, InetPGetDatum(addr)));
}

/*
 * A text argument that is an account id or an idempotency key.
 */
char *
WithdrawalArgIdentifier(FunctionCallInfo fcinfo, int argno,
						const char *argname, int maxbytes)
{
	char	   *value = WithdrawalArgText(fcinfo, argno, argname, maxbytes);

	WithdrawalCheckIdentifier(value, argname);
	return value;
}

void
WithdrawalCheckAmount(int64 amount, const char *argname)
{
	if (amount <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", argname),
				 errdetail("Amounts are in minor units of the currency; got " INT64_FORMAT ".",
						   amount)));
}

int64
WithdrawalArgAmount(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	require_not_null(fcinfo, argno, argname);
	WithdrawalCheckAmount(PG_GETARG_INT64(argno), argname);
	return PG_GETARG_INT64(argno);
}

void
WithdrawalCheckObject(Jsonb *jb, const char *argname)
{
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", argname)));
	if (VARSIZE(jb) > WITHDRAWAL_MAX_JSON)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too large", argname),
				 errdetail("At most %d bytes of JSON are allowed.", WITHDRAWAL_MAX_JSON)));
}

Jsonb *
WithdrawalArgObject(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	Jsonb	   *jb;

	require_not_null(fcinfo, argno, argname);
	jb = PG_GETARG_JSONB_P(argno);
	WithdrawalCheckObject(jb, argname);
	return jb;
}

pg_uuid_t *
WithdrawalArgUuid(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	require_not_null(fcinfo, argno, argname);
	return PG_GETARG_UUID_P(argno);
}

/*
 * A timestamptz argument: 22023 when NULL.  Infinity is the caller's
 * business.
 */
TimestampTz
WithdrawalArgTimestampTz(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	require_not_null(fcinfo, argno, argname);
	return PG_GETARG_TIMESTAMPTZ(argno);
}


/*
 * Refuses a code that is not spelled like an upper-case ISO 4217 code.
 */
void
WithdrawalCheckCurrencyCode(const char *code)
{
	if (strlen(code) != 3 ||
		code[0] < 'A' || code[0] > 'Z' ||
		code[1] < 'A' || code[1] > 'Z' ||
		code[2] < 'A' || code[2] > 'Z')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid currency code \"%s\"", code),
				 errhint("Use an upper-case ISO 4217 alphabetic code such as \"USD\".")));
}

char *
WithdrawalUuidText(const pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

void
WithdrawalRaiseUnknownWithdrawal(const pg_uuid_t *id)
{
	ereport(ERROR,
			(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
			 errmsg("unknown withdrawal %s", WithdrawalUuidText(id))));
	pg_unreachable();
}

pg_uuid_t *
WithdrawalNewUuid(void)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	if (!pg_strong_random(uuid->data, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
	/* RFC 4122 version 4, variant 1 */
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x40;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;
	return uuid;
}

/*
 * A fresh random UUID whose first byte is the account's logical partition:
 * the first byte of SHA-256 of the account id in UTF-8.  A sharded
 * deployment's router (router/withdrawal_router.sql) sends a call keyed by
 * such an id straight to the shard that holds the account, without asking
 * every shard; on one server the byte is merely not random.  The UUID stays
 * a valid version 4 one with 114 random bits.
 */
pg_uuid_t *
WithdrawalNewAccountUuid(const char *account_id)
{
	pg_uuid_t  *uuid = WithdrawalNewUuid();
	const char *utf8 = pg_server_to_any(account_id, strlen(account_id), PG_UTF8);
	uint8		digest[WITHDRAWAL_SHA256_LEN];

	WithdrawalSha256(utf8, strlen(utf8), digest);
	uuid->data[0] = digest[0];
	return uuid;
}

char *
WithdrawalActor(void)
{
	return GetUserNameFromId(GetSessionUserId(), false);
}
