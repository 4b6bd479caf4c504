/*-------------------------------------------------------------------------
 *
 * json.h
 *	  Small jsonb helpers with no domain knowledge: the flat object builder
 *	  of audit details, and a parser and getters that never raise an ERROR
 *	  (for answers from processors, which are untrusted input).
 *
 * Layer 0: includes nothing of the extension's own.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/json.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_JSON_H
#define WITHDRAWAL_JSON_H

#include "utils/jsonb.h"

/*
 * The largest document WithdrawalJsonParse accepts.  A processor's answer
 * is a few hundred bytes; dispatch.c stops reading an answer at this size,
 * so that a hostile or broken endpoint cannot fill the worker's memory.
 */
#define WITHDRAWAL_JSON_MAX_BYTES	(256 * 1024)

/*
 * Builds a flat JSON object of n members for audit details.  Member i is
 * a JSON number when bit i of numbers is set, else a string; a NULL value
 * becomes JSON null.
 */
extern Jsonb *WithdrawalDetail(int n, const char *const *keys,
							   const char *const *values, uint32 numbers);

/*
 * For building an object with pushJsonbValue: a key, and a key with its
 * string value.  jsonb sorts the keys and prints one canonical text, so a
 * body built this way is the same bytes whenever its values are.
 */
extern void WithdrawalJsonPushKey(JsonbParseState **state, const char *key);
extern void WithdrawalJsonPushString(JsonbParseState **state, const char *key,
									 const char *value);

/*
 * Built on PostgreSQL's JSON parser: a malformed or oversized document
 * gives NULL (never an ERROR); a missing key or a non-scalar gives NULL.
 */
extern Jsonb *WithdrawalJsonParse(const char *text, size_t len);
extern char *WithdrawalJsonGetText(Jsonb *jb, const char *key);
extern char *WithdrawalJsonGetPath(Jsonb *jb, const char *key1, const char *key2);

/*
 * jb->>key, exactly as the SQL operator: a scalar as text, an object or
 * array as its JSON text, NULL for JSON null or a missing key.
 */
extern char *WithdrawalJsonGetValueText(Jsonb *jb, const char *key);

/* Length of the array jb->key, or -1 when it is not an array */
extern int	WithdrawalJsonArrayLength(Jsonb *jb, const char *key);

/* The scalar field of the object jb->key[index], as text, or NULL */
extern char *WithdrawalJsonArrayGetText(Jsonb *jb, const char *key, int index,
										const char *field);

#endif							/* WITHDRAWAL_JSON_H */
