/*-------------------------------------------------------------------------
 *
 * webhook_event.c
 *	  Processor webhooks: what a verified event says, and what it does.
 *
 * The body, once its signature verified (webhook_signature.c), is parsed
 * by PostgreSQL's JSON parser and its fields are taken in the shape of the
 * processor's scheme; the event type maps to an action (paid, failed,
 * returned).  Under a lock on the withdrawal row, the event is checked
 * against the books (amount, currency, a return of part of the amount) and
 * the action is looked up in webhook_steps[action][status]: the
 * transitions it takes, or the discrepancy it is.  Nothing here writes:
 * webhook.c records the event and applies the decision.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/webhook_event.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "lifecycle.h"
#include "spi.h"
#include "webhook_event.h"
#include "webhook_signature.h"
#include "withdrawal.h"

/*
 * Event types per scheme (docs/webhooks.md, "Events").
 *
 * Stripe: the stripe driver creates transfers to connected accounts
 * (/v1/transfers), which are final when created, so transfer.created is
 * the proof that the money left (paid) and transfer.reversed that it came
 * back: returned once amount_reversed, which Stripe keeps as the running
 * total of the reversals, covers the whole amount, a partial return of the
 * increase before that (WithdrawalWebhookDecide).  transfer.paid and
 * transfer.failed exist only for webhook endpoints on API versions before
 * 2017-04-06 (when transfers still had a status); there they mean what
 * they say, so they are still applied.  payout.* events concern payouts from a Stripe balance to a bank
 * account; they apply when the payout's metadata names a withdrawal
 * (payout.canceled: the money never left, like payout.failed).
 *
 * The http driver's protocol and Standard Webhooks: payout.paid,
 * payout.failed and payout.returned with data.payout_id = withdrawal id.
 */
typedef struct WebhookEventType
{
	bool		stripe;
	const char *type;
	WebhookAction action;
	bool		reversal;		/* amount_reversed must cover the amount */
} WebhookEventType;

static const WebhookEventType event_types[] = {
	{true, "transfer.created", ACTION_PAID, false},
	{true, "transfer.reversed", ACTION_RETURNED, true},
	{true, "transfer.paid", ACTION_PAID, false},
	{true, "transfer.failed", ACTION_FAILED, false},
	{true, "payout.paid", ACTION_PAID, false},
	{true, "payout.failed", ACTION_FAILED, false},
	{true, "payout.canceled", ACTION_FAILED, false},
	{false, "payout.paid", ACTION_PAID, false},
	{false, "payout.failed", ACTION_FAILED, false},
	{false, "payout.returned", ACTION_RETURNED, false},
};

/* What an event does from one status: its transitions, or a discrepancy */
typedef struct WebhookStep
{
	int			nsteps;			/* transitions, in order; none: no change */
	WithdrawalStatus steps[WITHDRAWAL_WEBHOOK_MAX_STEPS];
	const char *discrepancy;	/* the event disagrees with the books */
} WebhookStep;

#define TO(...) {lengthof(((WithdrawalStatus[]) {__VA_ARGS__})), {__VA_ARGS__}, NULL}
#define NO_CHANGE {0, {0}, NULL}
#define DISCREPANCY(code) {0, {0}, code}

/*
 * webhook_steps[action][status now]: docs/webhooks.md, "What each event
 * does, from each status", row by row.  Every transition is one that
 * lifecycle.c's allowed_to[] allows; WithdrawalTransition posts its money
 * movement at most once.
 *
 *	- paid:     an earlier attempt of a queued payout reached the processor;
 *				after a refund (failed, rejected, canceled), the refund stands
 *				and it is a discrepancy for a human.
 *	- failed:   a payout that fails after it was paid came back (banks bounce
 *				paid payouts), so the money is credited back once.
 *	- returned: when the paid event is late or lost, settle then return
 *				keeps the books true.  A return of part of the amount takes
 *				the same path but stops at paid (WithdrawalWebhookDecide).
 *	- review:   never sent; any event is a discrepancy.
 */
static const WebhookStep webhook_steps[WEBHOOK_ACTION_COUNT][WITHDRAWAL_STATUS_COUNT] = {
	[ACTION_PAID] = {
		[WITHDRAWAL_QUEUED] = TO(WITHDRAWAL_DISPATCHING, WITHDRAWAL_PAID),
		[WITHDRAWAL_DISPATCHING] = TO(WITHDRAWAL_PAID),
		[WITHDRAWAL_SUBMITTED] = TO(WITHDRAWAL_PAID),
		[WITHDRAWAL_DEAD] = TO(WITHDRAWAL_PAID),
		[WITHDRAWAL_PAID] = NO_CHANGE,
		[WITHDRAWAL_RETURNED] = NO_CHANGE,
		[WITHDRAWAL_FAILED] = DISCREPANCY("paid_after_refund"),
		[WITHDRAWAL_REJECTED] = DISCREPANCY("paid_after_refund"),
		[WITHDRAWAL_CANCELED] = DISCREPANCY("paid_after_refund"),
		[WITHDRAWAL_REVIEW] = DISCREPANCY("not_dispatched"),
	},
	[ACTION_FAILED] = {
		[WITHDRAWAL_QUEUED] = TO(WITHDRAWAL_FAILED),
		[WITHDRAWAL_DISPATCHING] = TO(WITHDRAWAL_FAILED),
		[WITHDRAWAL_SUBMITTED] = TO(WITHDRAWAL_FAILED),
		[WITHDRAWAL_DEAD] = TO(WITHDRAWAL_FAILED),
		[WITHDRAWAL_PAID] = TO(WITHDRAWAL_RETURNED),
		[WITHDRAWAL_RETURNED] = NO_CHANGE,
		[WITHDRAWAL_FAILED] = NO_CHANGE,
		[WITHDRAWAL_REJECTED] = NO_CHANGE,
		[WITHDRAWAL_CANCELED] = NO_CHANGE,
		[WITHDRAWAL_REVIEW] = DISCREPANCY("not_dispatched"),
	},
	[ACTION_RETURNED] = {
		[WITHDRAWAL_QUEUED] = TO(WITHDRAWAL_DISPATCHING, WITHDRAWAL_PAID, WITHDRAWAL_RETURNED),
		[WITHDRAWAL_DISPATCHING] = TO(WITHDRAWAL_PAID, WITHDRAWAL_RETURNED),
		[WITHDRAWAL_SUBMITTED] = TO(WITHDRAWAL_PAID, WITHDRAWAL_RETURNED),
		[WITHDRAWAL_DEAD] = TO(WITHDRAWAL_PAID, WITHDRAWAL_RETURNED),
		[WITHDRAWAL_PAID] = TO(WITHDRAWAL_RETURNED),
		[WITHDRAWAL_RETURNED] = NO_CHANGE,
		[WITHDRAWAL_FAILED] = DISCREPANCY("returned_after_refund"),
		[WITHDRAWAL_REJECTED] = DISCREPANCY("returned_after_refund"),
		[WITHDRAWAL_CANCELED] = DISCREPANCY("returned_after_refund"),
		[WITHDRAWAL_REVIEW] = DISCREPANCY("not_dispatched"),
	},
};

#undef TO
#undef NO_CHANGE
#undef DISCREPANCY

/*
 * Parses the (verified) body with PostgreSQL's jsonb input function.  What
 * the parser raises about the text is bad input, 22023: any data exception
 * (syntax, bad escapes, \u0000), nesting too deep for the stack (54001),
 * and an escape that the database encoding cannot hold (0A000).  Anything
 * else (out of memory, a cancel) is not about the body and is re-raised.
 *
 * JSON is UTF-8 (RFC 8259).  A UTF-8 database has checked the text already;
 * a SQL_ASCII one stores any bytes, so the body is checked here.
 */
Jsonb *
WithdrawalWebhookParseBody(const char *body, int bodylen)
{
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;
	ErrorData  *volatile edata = NULL;

	if (GetDatabaseEncoding() == PG_SQL_ASCII &&
		!pg_verify_mbstr(PG_UTF8, body, bodylen, true))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook body is not valid JSON"),
				 errdetail("The body is not valid UTF-8.")));

	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(body)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION &&
			edata->sqlerrcode != ERRCODE_STATEMENT_TOO_COMPLEX &&
			edata->sqlerrcode != ERRCODE_FEATURE_NOT_SUPPORTED)
			PG_RE_THROW();
		FlushErrorState();
	}
	PG_END_TRY();

	if (edata != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook body is not valid JSON"),
				 errdetail("%s", edata->message)));
	if (!JB_ROOT_IS_OBJECT(result) || JB_ROOT_IS_SCALAR(result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook body must be a JSON object")));
	return result;
}

/*
 * Integer minor units from a JSON number's text as the processor wrote it:
 * digits only; anything else (a string, a fraction, an exponent such as
 * 1.114e3, even of an integral value) is 22023.
 */
static int64
parse_amount(const char *type, const char *s)
{
	size_t		len = strlen(s);
	size_t		i;

	if (strcmp(type, "number") != 0 || len == 0 || len > 18)
		goto bad;
	for (i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			goto bad;
	return (int64) strtoll(s, NULL, 10);

bad:
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("webhook event amount must be a non-negative integer number of minor units")));
	pg_unreachable();
}

/*
 * What an event asking for "action" does to a withdrawal in status "from",
 * by webhook_steps.
 */
static void
decide(WebhookAction action, WithdrawalStatus from, WebhookDecision *d)
{
	const WebhookStep *step;

	Assert(action != ACTION_NONE);
	step = &webhook_steps[action][from];
#ifdef USE_ASSERT_CHECKING
	{
		WithdrawalStatus at = from;
		int			i;

		/* the table asks only for documented transitions */
		for (i = 0; i < step->nsteps; i++)
		{
			Assert(WithdrawalTransitionAllowed(at, step->steps[i]));
			at = step->steps[i];
		}
	}
#endif
	memset(d, 0, sizeof(*d));
	d->nsteps = step->nsteps;
	memcpy(d->steps, step->steps, sizeof(d->steps));
	d->discrepancy = step->discrepancy;
	if (d->nsteps > 0)
		d->result = "applied";
	else
	{
		d->result = "ignored";
		if (d->discrepancy == NULL)
			d->reason = "no_change";
	}
}

/*
 * Reads the event's fields with withdrawal._webhook_fields() (40_webhook.sql,
 * which says which field each scheme puts where), and raises 22023 when
 * the event has no usable id.
 */
void
WithdrawalWebhookExtractEvent(Jsonb *payload, const char *body, bool stripe,
							  char *webhook_id, WebhookEvent *ev)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {JSONBOID, BOOLOID, TEXTOID};
	Datum		values[3];
	int			i;

	WithdrawalPrepare(&plan,
					  "SELECT event_id, event_type, withdrawal_id, processor_ref, amount_type,"
					  " amount, currency FROM withdrawal._webhook_fields($1, $2, $3)",
					  3, types);
	values[0] = JsonbPGetDatum(payload);
	values[1] = BoolGetDatum(stripe);
	values[2] = CStringGetTextDatum(body);
	WithdrawalExecute(plan, values, NULL, true, 1, SPI_OK_SELECT);

	memset(ev, 0, sizeof(*ev));
	ev->payload = payload;
	ev->id = webhook_id ? webhook_id : WithdrawalSpiGetText(0, 1);
	ev->type = WithdrawalSpiGetText(0, 2);
	ev->withdrawal_id = WithdrawalSpiGetText(0, 3);
	ev->processor_ref = WithdrawalSpiGetText(0, 4);
	ev->amount_type = WithdrawalSpiGetText(0, 5);
	ev->amount = WithdrawalSpiGetText(0, 6);
	ev->currency = WithdrawalSpiGetText(0, 7);

	if (ev->id == NULL || strlen(ev->id) == 0 ||
		strlen(ev->id) > WITHDRAWAL_WEBHOOK_MAX_EVENT_ID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook event has no usable id"),
				 errdetail("The event id must be a string of 1 to %d bytes.",
						   WITHDRAWAL_WEBHOOK_MAX_EVENT_ID)));
	ev->action = ACTION_NONE;
	if (ev->type != NULL)
		for (i = 0; i < lengthof(event_types); i++)
			if (event_types[i].stripe == stripe &&
				strcmp(event_types[i].type, ev->type) == 0)
			{
				ev->action = event_types[i].action;
				ev->reversal = event_types[i].reversal;
			}
	if (ev->processor_ref != NULL &&
		strlen(ev->processor_ref) > WITHDRAWAL_WEBHOOK_MAX_EVENT_ID)
		ev->processor_ref = NULL;
}

/*
 * The withdrawal id of the event when it is a well-formed UUID, else NULL
 * (an unknown withdrawal, not an error).
 */
static pg_uuid_t *
event_withdrawal_id(const char *text)
{
	static const char hexdigits[] = "0123456789abcdefABCDEF";
	int			i;

	if (text == NULL || strlen(text) != 36)
		return NULL;
	for (i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ?
			text[i] != '-' : strchr(hexdigits, text[i]) == NULL)
			return NULL;
	return DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(text)));
}

/*
 * Locks the event's withdrawal and decides what the event does to it.
 */
void
WithdrawalWebhookDecide(const char *processor, WebhookEvent *ev, WebhookOutcome *out)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {UUIDOID};
	Datum		values[1];
	const char *unknown = ev->action == ACTION_NONE ? "unknown_event_type" : "unknown_withdrawal";
	int64		amount;
	int64		returned;
	int64		part = -1;		/* a partial return of this much, or -1 */
	bool		has_amount;
	char	   *currency;
	bool		isnull;

	memset(out, 0, sizeof(*out));
	out->d.result = "ignored";
	out->withdrawal_id = event_withdrawal_id(ev->withdrawal_id);
	if (out->withdrawal_id == NULL)
	{
		out->d.reason = unknown;
		return;
	}

	WithdrawalPrepare(&plan,
					  "SELECT w.status, w.amount, w.currency, c.processor, w.returned_amount"
					  " FROM withdrawal.withdrawal w"
					  " JOIN withdrawal.channel c ON c.name OPERATOR(pg_catalog.=) w.channel"
					  " WHERE w.withdrawal_id OPERATOR(pg_catalog.=) $1"
					  " FOR NO KEY UPDATE OF w",
					  1, types);
	values[0] = UUIDPGetDatum(out->withdrawal_id);
	WithdrawalExecute(plan, values, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		out->d.reason = unknown;
		out->withdrawal_id = NULL;
		return;
	}
	if (strcmp(WithdrawalSpiGetText(0, 4), processor) != 0)
	{
		out->d.reason = "other_processor";
		return;
	}
	if (ev->action == ACTION_NONE)
	{
		/* kept, and answered with the withdrawal's status */
		out->d.reason = "unknown_event_type";
		out->status_now = WithdrawalSpiGetText(0, 1);
		return;
	}

	out->from = (WithdrawalStatus) WithdrawalStatusParse(WithdrawalSpiGetText(0, 1));
	amount = DatumGetInt64(WithdrawalSpiGet(0, 2, &isnull));
	currency = WithdrawalSpiGetText(0, 3);
	returned = DatumGetInt64(WithdrawalSpiGet(0, 5, &isnull));
	has_amount = ev->amount_type != NULL && strcmp(ev->amount_type, "null") != 0;
	if (ev->reversal)
	{
		/*
		 * amount_reversed is the running total of a transfer's reversals,
		 * so an event returns what its total adds to what the books
		 * returned already: a redelivery under another id, or an older
		 * total arriving late, adds nothing.  A total of the whole amount
		 * is the return (of the rest, once).  Without a total, the event
		 * cannot say how much came back: it is a discrepancy, as before.
		 */
		int64		reversed = has_amount ? parse_amount(ev->amount_type, ev->amount) : -1;

		if (reversed > amount)
			out->d.discrepancy = "amount_mismatch";
		else if (reversed < 0 && out->from != WITHDRAWAL_RETURNED)
			out->d.discrepancy = "partial_reversal";
		else if (reversed >= 0 && reversed < amount)
			part = reversed > returned ? reversed - returned : 0;
	}
	else if (ev->action == ACTION_RETURNED && has_amount)
	{
		/*
		 * The http protocol's payout.returned carries the amount that
		 * event returns; the event id (webhook_event's key) makes it count
		 * once.  The rest of the amount is the return; less is a part;
		 * more than is left is a disagreement, except the whole amount
		 * again for a returned payout (a redelivery under another id).
		 */
		int64		given = parse_amount(ev->amount_type, ev->amount);

		if (given == amount - returned ||
			(given == amount && out->from == WITHDRAWAL_RETURNED))
			;
		else if (given < amount - returned)
			part = given;
		else
			out->d.discrepancy = "amount_mismatch";
	}
	else if (has_amount && parse_amount(ev->amount_type, ev->amount) != amount)
		out->d.discrepancy = "amount_mismatch";
	if (out->d.discrepancy == NULL && ev->currency != NULL &&
		pg_strcasecmp(ev->currency, currency) != 0)
		out->d.discrepancy = "currency_mismatch";
	if (out->d.discrepancy == NULL)
		decide(ev->action, out->from, &out->d);
	if (part >= 0 && out->d.discrepancy == NULL && out->d.nsteps > 0 &&
		out->d.steps[out->d.nsteps - 1] == WITHDRAWAL_RETURNED)
	{
		/*
		 * A part, not the whole: the payout is (or becomes) paid and stays
		 * so, with the part credited back.  A part of zero changes
		 * nothing, except a late paid the event proves.
		 */
		out->d.nsteps--;
		out->d.partial = part;
		if (out->d.nsteps == 0 && part == 0)
		{
			out->d.result = "ignored";
			out->d.reason = "no_change";
		}
	}
	out->status_after = WithdrawalStatusName(out->d.nsteps > 0 ?
											 out->d.steps[out->d.nsteps - 1] :
											 out->from);
}
