/*-------------------------------------------------------------------------
 *
 * json.c
 *	  Small jsonb helpers with no domain knowledge.
 *
 * WithdrawalDetail builds the flat objects of audit details (review,
 * policy and binding rows share it).  The parser and getters read the
 * answers of processors: untrusted input, read in the worker outside any
 * transaction, so a malformed document is NULL, never an ERROR.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/json.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "json.h"

Jsonb *
WithdrawalDetail(int n, const char *const *keys, const char *const *values,
				 uint32 numbers)
{
	JsonbParseState *state = NULL;
	JsonbValue	k;
	JsonbValue	v;
	JsonbValue *result;
	int			i;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < n; i++)
	{
		k.type = jbvString;
		k.val.string.val = (char *) keys[i];
		k.val.string.len = strlen(keys[i]);
		pushJsonbValue(&state, WJB_KEY, &k);
		if (values[i] == NULL)
			v.type = jbvNull;
		else if (numbers & (1U << i))
		{
			v.type = jbvNumeric;
			v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																CStringGetDatum(values[i]),
																ObjectIdGetDatum(InvalidOid),
																Int32GetDatum(-1)));
		}
		else
		{
			v.type = jbvString;
			v.val.string.val = (char *) values[i];
			v.val.string.len = strlen(values[i]);
		}
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

void
WithdrawalJsonPushKey(JsonbParseState **state, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &k);
}

void
WithdrawalJsonPushString(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	v;

	WithdrawalJsonPushKey(state, key);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	pushJsonbValue(state, WJB_VALUE, &v);
}

Jsonb *
WithdrawalJsonParse(const char *text, size_t len)
{
	JsonLexContext *lex;
	MemoryContext cxt = CurrentMemoryContext;
	char	   *copy;
	Jsonb	   *volatile result = NULL;

	if (text == NULL || len == 0 || len > WITHDRAWAL_JSON_MAX_BYTES ||
		memchr(text, '\0', len))
		return NULL;
	copy = pnstrdup(text, len);
	lex = makeJsonLexContextCstringLen(copy, (int) len, GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return NULL;

	/* Valid JSON; the conversion can still refuse it (deep nesting...). */
	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(copy)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		result = NULL;
	}
	PG_END_TRY();
	return result;
}

/* A scalar as text; NULL for JSON null and for a container */
static char *
scalar_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/* The scalar value of key in an object container, as text */
static char *
container_get_text(JsonbContainer *container, const char *key, JsonbValue *out)
{
	JsonbValue *v;

	if (!JsonContainerIsObject(container))
		return NULL;
	v = getKeyJsonValueFromContainer(container, key, strlen(key), out);
	if (v == NULL)
		return NULL;
	return scalar_text(v);
}

/* jb->key when it is a container, else NULL */
static JsonbContainer *
container_get(Jsonb *jb, const char *key, JsonbValue *out)
{
	JsonbValue *v;

	if (jb == NULL || !JsonContainerIsObject(&jb->root))
		return NULL;
	v = getKeyJsonValueFromContainer(&jb->root, key, strlen(key), out);
	if (v == NULL || v->type != jbvBinary)
		return NULL;
	return v->val.binary.data;
}

char *
WithdrawalJsonGetText(Jsonb *jb, const char *key)
{
	JsonbValue	v;

	if (jb == NULL)
		return NULL;
	return container_get_text(&jb->root, key, &v);
}

char *
WithdrawalJsonGetValueText(Jsonb *jb, const char *key)
{
	JsonbValue	out;
	JsonbValue *v;

	if (jb == NULL || !JsonContainerIsObject(&jb->root))
		return NULL;
	v = getKeyJsonValueFromContainer(&jb->root, key, strlen(key), &out);
	if (v == NULL)
		return NULL;
	if (v->type == jbvBinary)
		return JsonbToCString(NULL, v->val.binary.data, -1);
	return scalar_text(v);
}

char *
WithdrawalJsonGetPath(Jsonb *jb, const char *key1, const char *key2)
{
	JsonbValue	v;
	JsonbValue	v2;
	JsonbContainer *inner = container_get(jb, key1, &v);

	if (inner == NULL)
		return NULL;
	return container_get_text(inner, key2, &v2);
}

int
WithdrawalJsonArrayLength(Jsonb *jb, const char *key)
{
	JsonbValue	v;
	JsonbContainer *array = container_get(jb, key, &v);

	if (array == NULL || !JsonContainerIsArray(array))
		return -1;
	return (int) JsonContainerSize(array);
}

char *
WithdrawalJsonArrayGetText(Jsonb *jb, const char *key, int index, const char *field)
{
	JsonbValue	v;
	JsonbValue	field_value;
	JsonbContainer *array = container_get(jb, key, &v);
	JsonbValue *element;

	if (array == NULL || !JsonContainerIsArray(array) || index < 0 ||
		index >= (int) JsonContainerSize(array))
		return NULL;
	element = getIthJsonbValueFromContainer(array, index);
	if (element == NULL || element->type != jbvBinary)
		return NULL;
	return container_get_text(element->val.binary.data, field, &field_value);
}
