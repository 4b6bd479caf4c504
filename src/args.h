/*-------------------------------------------------------------------------
 *
 * args.h
 *	  Argument checks of the SQL entry points, the canonical spelling of an
 *	  IP address, UUID helpers and the acting user (args.c).
 *
 * A leaf: no SPI, no tables, no caches.  The checks that need a table
 * (a known currency) are in cache.h.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/args.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_ARGS_H
#define WITHDRAWAL_ARGS_H

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/*
 * Argument checks.  Each raises 22023 (invalid_parameter_value) naming the
 * argument when the value is NULL, empty or too long, and returns the value
 * as a palloc'd C string (or the detoasted datum).
 */
extern char *WithdrawalArgText(FunctionCallInfo fcinfo, int argno,
							   const char *argname, int maxbytes);
extern char *WithdrawalArgTextOrNull(FunctionCallInfo fcinfo, int argno,
									 const char *argname, int maxbytes);
/*
 * An account id or idempotency key: like WithdrawalArgText, and 22023 when
 * the value holds a control character (C0, DEL, C1) or a Unicode
 * bidirectional formatting character.  WithdrawalCheckIdentifier applies
 * the same check to a value that is not a text argument of its own.
 */
extern char *WithdrawalArgIdentifier(FunctionCallInfo fcinfo, int argno,
									 const char *argname, int maxbytes);
extern void WithdrawalCheckIdentifier(const char *value, const char *argname);

/*
 * The one spelling of an IP address (host_only) or of an address or network
 * (a blocklist entry), as inet_out prints it; an IPv4-mapped IPv6 value is
 * the IPv4 one it maps.  Garbage, and a network where host_only, are 22023
 * errors naming argname.
 */
extern char *WithdrawalCanonicalIp(const char *value, bool host_only,
								   const char *argname);
extern int64 WithdrawalArgAmount(FunctionCallInfo fcinfo, int argno,
								 const char *argname);
extern Jsonb *WithdrawalArgObject(FunctionCallInfo fcinfo, int argno,
								  const char *argname);
extern pg_uuid_t *WithdrawalArgUuid(FunctionCallInfo fcinfo, int argno,
									const char *argname);
extern TimestampTz WithdrawalArgTimestampTz(FunctionCallInfo fcinfo, int argno,
											const char *argname);

/*
 * The checks of the Arg functions above on a value that is not an argument
 * of its own (an element of an array argument): 22023 naming argname.
 * WithdrawalCheckText returns the value as a C string.
 */
extern char *WithdrawalCheckText(text *t, const char *argname, int maxbytes);
extern void WithdrawalCheckAmount(int64 amount, const char *argname);
extern void WithdrawalCheckObject(Jsonb *jb, const char *argname);

/*
 * 22023 unless code is spelled like an upper-case ISO 4217 code (three
 * letters A-Z).  Whether the currency is known is WithdrawalCheckCurrency's
 * business (cache.h).
 */
extern void WithdrawalCheckCurrencyCode(const char *code);

/* The text form of a UUID, for messages */
extern char *WithdrawalUuidText(const pg_uuid_t *id);

/* Raises WD007 for a withdrawal id that does not exist */
extern void WithdrawalRaiseUnknownWithdrawal(const pg_uuid_t *id) pg_attribute_noreturn();

/* A fresh random (version 4) UUID */
extern pg_uuid_t *WithdrawalNewUuid(void);

/* A fresh random UUID carrying the account's logical partition (sharding) */
extern pg_uuid_t *WithdrawalNewAccountUuid(const char *account_id);

/* The session user's name, for audit and approvals */
extern char *WithdrawalActor(void);

#endif							/* WITHDRAWAL_ARGS_H */
