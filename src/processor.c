/*-------------------------------------------------------------------------
 *
 * processor.c
 *	  The driver registry, the outcome names and the helpers every driver
 *	  shares.
 *
 * The registry is the one array below.  Generic code (dispatch.c, the
 * worker) finds a driver by the name in withdrawal.processor.driver and
 * reads its flags; it never tests a driver's name.  withdrawal.drivers()
 * lists the array, so that the regress test "dispatch" can compare it
 * with the CHECK list of withdrawal.processor.driver: a driver missing
 * from either side fails it.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/processor.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "json.h"
#include "processor.h"

PG_FUNCTION_INFO_V1(withdrawal_drivers);

/* The drivers, each defined in its processor_*.c; one line each */
extern const WithdrawalDriver withdrawal_sandbox_driver;
extern const WithdrawalDriver withdrawal_http_driver;
extern const WithdrawalDriver withdrawal_stripe_driver;
extern const WithdrawalDriver withdrawal_paypal_driver;

static const WithdrawalDriver *const drivers[] = {
	&withdrawal_sandbox_driver,
	&withdrawal_http_driver,
	&withdrawal_stripe_driver,
	&withdrawal_paypal_driver,
};

/* The columns of withdrawal.drivers() */
#define DRIVER_COLS			4

static const char *const outcome_names[] = {
	[WITHDRAWAL_OUTCOME_NONE] = "none",
	[WITHDRAWAL_OUTCOME_SUBMITTED] = "submitted",
	[WITHDRAWAL_OUTCOME_PAID] = "paid",
	[WITHDRAWAL_OUTCOME_FAILED] = "failed",
	[WITHDRAWAL_OUTCOME_RETRY] = "retry",
	[WITHDRAWAL_OUTCOME_DEAD] = "dead",
	[WITHDRAWAL_OUTCOME_PENDING] = "pending",
	[WITHDRAWAL_OUTCOME_UNKNOWN] = "unknown",
	[WITHDRAWAL_OUTCOME_IN_PROGRESS] = "in_progress",
};

const char *
WithdrawalOutcomeName(WithdrawalOutcome outcome)
{
	return outcome_names[outcome];
}

const WithdrawalDriver *
WithdrawalDriverFind(const char *name)
{
	int			i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < (int) lengthof(drivers); i++)
		if (strcmp(drivers[i]->name, name) == 0)
			return drivers[i];
	return NULL;
}

void
WithdrawalPayoutResult(WithdrawalPayout *p, WithdrawalOutcome outcome,
					   const char *fmt,...)
{
	MemoryContext old = MemoryContextSwitchTo(p->cxt);

	p->outcome = outcome;
	if (fmt)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		for (;;)
		{
			va_list		args;
			int			needed;

			va_start(args, fmt);
			needed = appendStringInfoVA(&buf, fmt, args);
			va_end(args);
			if (needed == 0)
				break;
			enlargeStringInfo(&buf, needed);
		}
		p->error = buf.data;
	}
	MemoryContextSwitchTo(old);
}

char *
WithdrawalProcessorUrl(const WithdrawalPayout *p, const char *path)
{
	size_t		len = strlen(p->base_url);

	while (len > 0 && p->base_url[len - 1] == '/')
		len--;
	return psprintf("%.*s%s", (int) len, p->base_url, path);
}

char *
WithdrawalProcessorEscape(const char *s)
{
	char	   *escaped = curl_easy_escape(NULL, s, 0);
	char	   *result;

	if (escaped == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory encoding a processor request")));
	result = pstrdup(escaped);
	curl_free(escaped);
	return result;
}

char *
WithdrawalDestinationField(WithdrawalPayout *p, const char *key)
{
	char	   *value = WithdrawalJsonGetValueText(p->destination, key);

	if (value != NULL && value[0] != '\0')
		return value;
	WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_DEAD,
						   "destination has no %s; nothing was sent in this attempt", key);
	return NULL;
}

static int
code_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

bool
WithdrawalCodeListed(const char *code, const char *const *list, int n)
{
	if (code == NULL)
		return false;
	return bsearch(&code, list, n, sizeof(char *), code_cmp) != NULL;
}

/*
 * drivers(): the drivers this library knows, in registry order, with what
 * generic code does differently for each: whether it sends over the
 * network, settles by itself, and has its accepted sends recorded in bulk.
 */
Datum
withdrawal_drivers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < (int) lengthof(drivers); i++)
	{
		Datum		values[DRIVER_COLS];
		bool		nulls[DRIVER_COLS];

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(drivers[i]->name);
		values[1] = BoolGetDatum(drivers[i]->decide == NULL);
		values[2] = BoolGetDatum(drivers[i]->settles_by_itself);
		values[3] = BoolGetDatum(drivers[i]->bulk_submit);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
