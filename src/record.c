/*-------------------------------------------------------------------------
 *
 * record.c
 *	  The worker's outcomes: what each processor answer does to a payout
 *	  (submitted, paid, failed with proof, requeued with a backoff, dead),
 *	  recorded in ONE short transaction per batch, with the accepted sends
 *	  recorded set-based, and the fallback when that fails: one
 *	  transaction per payout, then requeue or park the one that fails.
 *
 * Sent means maybe paid: a payout is refunded only on the proof of a
 * declined create request or of a status query that says failed
 * (lifecycle.c checks).  These commits are asynchronous, because losing
 * one only makes the payout be sent again with the same idempotency key,
 * which the processor answers with its first answer.  A payout whose
 * outcome cannot be recorded is put back with a backoff; after
 * withdrawal.park_after such failures it is parked for an operator, so one
 * poison payout cannot crash-loop the worker.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/record.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "dispatch.h"
#include "flow.h"
#include "lifecycle.h"
#include "processor.h"
#include "record.h"
#include "shmem.h"
#include "spi.h"
#include "withdrawal.h"
#include "workerchannels.h"
#include "workerproc.h"

/*
 * The backoff doubles with each attempt up to withdrawal.retry_cap; past
 * 2^40 times any base the cap has long been reached, and the double that
 * holds it stays finite
 */
#define BACKOFF_MAX_EXPONENT	40
/* "In progress" answers back off over at most 2^4 bases: the answer is near */
#define BUSY_BACKOFF_MAX_EXPONENT	4
/* A payout whose outcome could not be recorded waits at least this long */
#define RECORD_FAILURE_MIN_DELAY_MS	1000L

/* A random delay in [0, min(retry_cap, retry_base * 2^attempts)) */
static long
backoff_ms(int attempts)
{
	double		ceiling = withdrawal_retry_base_ms * pow(2.0, Min(attempts, BACKOFF_MAX_EXPONENT));

	ceiling = Min(ceiling, (double) withdrawal_retry_cap_ms);
	return (long) (pg_prng_double(&pg_global_prng_state) * ceiling);
}

/* ---------- outcomes ---------- */

/*
 * The data of a status change the worker makes.  The actor is the session
 * user, i.e. the worker's own role, which no other login can be.
 */
static void
transition_data(WithdrawalTransitionData *data, const WithdrawalPayout *p,
				const char *action)
{
	memset(data, 0, sizeof(*data));
	data->action = action;
	data->missing_ok = true;
	data->invalid_ok = true;
	data->processor_ref = p->processor_ref;
	data->last_error = WithdrawalClipError(p->error);
}

static bool
transition(WithdrawalPayout *p, WithdrawalStatus to, const char *action)
{
	WithdrawalTransitionData data;

	transition_data(&data, p, action);
	return WithdrawalTransition(&p->id, to, &data, NULL);
}

/* Failed with proof: the only refund the worker makes */
static bool
transition_failed(WithdrawalPayout *p, const char *proof, const char *action)
{
	WithdrawalTransitionData data;

	transition_data(&data, p, action);
	data.reason = WithdrawalClipError(p->error);
	data.refund_proof = proof;
	return WithdrawalTransition(&p->id, WITHDRAWAL_FAILED, &data, NULL);
}

/* Notes an answer (or a failure) that changes nothing else in last_error */
static void
note_error(const pg_uuid_t *id, const char *error)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {UUIDOID, TEXTOID};
	Datum		values[2];

	if (error == NULL)
		return;
	WithdrawalPrepare(&plan,
					  "UPDATE withdrawal.withdrawal SET last_error = $2 WHERE withdrawal_id = $1",
					  2, types);
	values[0] = UUIDPGetDatum(id);
	values[1] = CStringGetTextDatum(WithdrawalClipError(error));
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_UPDATE);
}

/*
 * Puts a send back on the queue after delay_ms: the same key is used
 * again.  An "in progress" answer is not an attempt: it is counted apart.
 */
static void
requeue(WithdrawalPayout *p, long delay_ms, bool busy)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {UUIDOID, INT8OID, INT4OID};
	Datum		values[3];
	WithdrawalTransitionData data;

	transition_data(&data, p, busy ? "dispatch_busy" : "dispatch_retry");
	data.uncount_attempt = busy;
	if (!WithdrawalTransition(&p->id, WITHDRAWAL_QUEUED, &data, NULL))
		return;
	WithdrawalPrepare(&plan,
					  "UPDATE withdrawal.outbox SET lease_until = NULL, claimed_by = NULL,"
					  " busy_answers = busy_answers + $3,"
					  " next_attempt_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $2 / 1000.0)"
					  " WHERE withdrawal_id = $1",
					  3, types);
	values[0] = UUIDPGetDatum(&p->id);
	values[1] = Int64GetDatum(delay_ms);
	values[2] = Int32GetDatum(busy ? 1 : 0);
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_UPDATE);
	WithdrawalEarliest(&MyWithdrawalWorker.next_claim_at, WithdrawalLaterMs(delay_ms));
}

/* The answer to a status query, whose outbox row this worker leases */
static void
apply_query_outcome(WithdrawalPayout *p)
{
	static SPIPlanPtr unquery_plan = NULL;
	Oid			types[2] = {UUIDOID, TIMESTAMPTZOID};
	Datum		values[2];
	bool		dead;

	values[0] = UUIDPGetDatum(&p->id);
	values[1] = TimestampTzGetDatum(p->lease_until);
	WithdrawalPrepare(&unquery_plan,
					  "DELETE FROM withdrawal.outbox WHERE withdrawal_id = $1"
					  " AND lease_until = $2 AND kind = 'query'"
					  " RETURNING (SELECT status FROM withdrawal.withdrawal w"
					  "             WHERE w.withdrawal_id = $1)",
					  2, types);
	WithdrawalExecute(unquery_plan, values, NULL, false, 0, SPI_OK_DELETE_RETURNING);
	if (SPI_processed == 0)
		return;
	dead = strcmp(WithdrawalSpiGetText(0, 1), "dead") == 0;

	switch (p->outcome)
	{
		case WITHDRAWAL_OUTCOME_PAID:
			transition(p, WITHDRAWAL_PAID, "dispatch_query_paid");
			break;
		case WITHDRAWAL_OUTCOME_FAILED:
			if (transition_failed(p, "processor_status", "dispatch_query_failed"))
				p->ended = "failed";
			break;
		case WITHDRAWAL_OUTCOME_UNKNOWN:

			/*
			 * No record is not proof of anything: a submitted payout is sent
			 * again with the same key; a dead one waits for an operator's
			 * retry().
			 */
			if (!dead)
			{
				transition(p, WITHDRAWAL_QUEUED, "dispatch_query_resend");
				break;
			}
			/* FALLTHROUGH */
		default:

			/*
			 * No final word; asked again after withdrawal.poll_after.  A dead
			 * payout keeps the reason it died for.
			 */
			if (dead)
				elog(DEBUG1, "withdrawal %s (dead): status query answered %s: %s",
					 p->id_text, WithdrawalOutcomeName(p->outcome), p->error ? p->error : "");
			else
				note_error(&p->id, p->error);
			break;
	}
}

/* p's driver settles accepted sends itself (the sandbox's delayed events) */
static bool
driver_settles_by_itself(const WithdrawalPayout *p)
{
	const WithdrawalDriver *driver = WithdrawalDriverFind(p->driver_name);

	return driver != NULL && driver->settles_by_itself;
}

/*
 * Applies one outcome in the current transaction, the withdrawal's row
 * already locked (record_body).  The lease is the claim token: when it is
 * gone (another worker took the payout over after our lease expired, a
 * webhook settled it, ops intervened) the outcome is dropped; the payout's
 * later word comes from whoever holds it now.
 */
static void
apply_outcome(WithdrawalPayout *p)
{
	static SPIPlanPtr lock_plan = NULL;
	Oid			types[2] = {UUIDOID, TIMESTAMPTZOID};
	Datum		values[2];

	if (p->query)
	{
		apply_query_outcome(p);
		return;
	}

	values[0] = UUIDPGetDatum(&p->id);
	values[1] = TimestampTzGetDatum(p->lease_until);
	WithdrawalPrepare(&lock_plan,
					  "SELECT 1 FROM withdrawal.outbox WHERE withdrawal_id = $1"
					  " AND lease_until = $2 FOR UPDATE",
					  2, types);
	WithdrawalExecute(lock_plan, values, NULL, false, 0, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		elog(DEBUG1, "withdrawal %s: lease lost, outcome %s dropped",
			 p->id_text, WithdrawalOutcomeName(p->outcome));
		return;
	}

	switch (p->outcome)
	{
		case WITHDRAWAL_OUTCOME_SUBMITTED:
			if (transition(p, WITHDRAWAL_SUBMITTED, "dispatch_submitted") &&
				driver_settles_by_itself(p))
			{
				WithdrawalSandboxSchedule(p);
				WithdrawalEarliest(&MyWithdrawalWorker.next_sandbox_at, WithdrawalLaterMs(withdrawal_sandbox_settle_ms));
			}
			break;
		case WITHDRAWAL_OUTCOME_PAID:
			transition(p, WITHDRAWAL_PAID, "dispatch_paid");
			break;
		case WITHDRAWAL_OUTCOME_FAILED:
			if (transition_failed(p, "declined", "dispatch_failed"))
				p->ended = "failed";
			break;
		case WITHDRAWAL_OUTCOME_DEAD:
			if (transition(p, WITHDRAWAL_DEAD, "dispatch_dead"))
				p->ended = "dead";
			break;
		case WITHDRAWAL_OUTCOME_IN_PROGRESS:
			if (p->busy_answers + 1 >= withdrawal_max_busy_answers)
			{
				WithdrawalTransitionData data;

				transition_data(&data, p, "dispatch_dead");
				data.uncount_attempt = true;
				data.last_error = psprintf("%s (%d times; held for an operator)",
										   WithdrawalClipError(p->error), p->busy_answers + 1);
				if (WithdrawalTransition(&p->id, WITHDRAWAL_DEAD, &data, NULL))
					p->ended = "dead";
			}
			else
				requeue(p, Max(backoff_ms(Min(p->busy_answers, BUSY_BACKOFF_MAX_EXPONENT)), p->retry_after_ms), true);
			break;
		default:
			if (p->attempts >= withdrawal_max_attempts)
			{
				if (transition(p, WITHDRAWAL_DEAD, "dispatch_dead"))
					p->ended = "dead";
			}
			else
				requeue(p, Max(backoff_ms(p->attempts), p->retry_after_ms), false);
			break;
	}
}

/*
 * A set-based outcome applies to p: a plain send accepted by a driver whose
 * accepted sends need nothing but the status change
 */
static bool
submitted_in_bulk(const WithdrawalPayout *p)
{
	const WithdrawalDriver *driver = WithdrawalDriverFind(p->driver_name);

	return p->outcome == WITHDRAWAL_OUTCOME_SUBMITTED && !p->query &&
		driver != NULL && driver->bulk_submit;
}

/*
 * Records every accepted send of the list in one statement
 * (WithdrawalSubmitPayouts): the outbox row, still leased by us, leaves and
 * the withdrawal becomes submitted with its processor reference.
 */
static void
apply_submitted_bulk(WithdrawalPayout *list)
{
	pg_uuid_t  *ids;
	TimestampTz *leases;
	char	  **refs;
	int			n = 0;
	WithdrawalPayout *p;

	for (p = list; p; p = p->next)
		if (submitted_in_bulk(p))
			n++;
	if (n == 0)
		return;
	ids = palloc(sizeof(pg_uuid_t) * n);
	leases = palloc(sizeof(TimestampTz) * n);
	refs = palloc(sizeof(char *) * n);
	n = 0;
	for (p = list; p; p = p->next)
	{
		if (!submitted_in_bulk(p))
			continue;
		ids[n] = p->id;
		leases[n] = p->lease_until;
		refs[n] = p->processor_ref;
		n++;
	}
	WithdrawalSubmitPayouts(ids, leases, refs, n);
}

/*
 * Records a list of outcomes: locks every withdrawal of the list first (in
 * id order, see WithdrawalLockWithdrawals), then applies the accepted
 * sends set-based and the others one by one, in wallet order.
 */
static void
record_body(void *arg)
{
	WithdrawalPayout *list = (WithdrawalPayout *) arg;
	WithdrawalPayout *p;
	pg_uuid_t  *ids;
	int			n = 0;

	for (p = list; p; p = p->next)
		n++;
	ids = palloc(sizeof(pg_uuid_t) * n);
	n = 0;
	for (p = list; p; p = p->next)
		ids[n++] = p->id;
	WithdrawalLockWithdrawals(ids, n);

	apply_submitted_bulk(list);
	for (p = list; p; p = p->next)
		if (!submitted_in_bulk(p))
			apply_outcome(p);
}

typedef struct Failure
{
	WithdrawalPayout *payout;
	const char *error;
	bool		with_last_error;	/* also note it on the withdrawal */
	long		delay_ms;		/* until it is sent again */
	bool		parked;			/* result */
} Failure;

/*
 * Counts a failure to record p's outcome: its lease is cleared and it is
 * sent again (same key) after a backoff, or, at withdrawal.park_after, it
 * is parked for an operator with the reason.
 */
static void
failure_body(void *arg)
{
	static SPIPlanPtr plan = NULL;
	Failure    *f = (Failure *) arg;
	WithdrawalPayout *p = f->payout;
	Oid			types[5] = {UUIDOID, TIMESTAMPTZOID, INT8OID, TEXTOID, INT4OID};
	Datum		values[5];
	bool		isnull;

	WithdrawalPrepare(&plan,
					  "UPDATE withdrawal.outbox SET lease_until = NULL, claimed_by = NULL,"
					  "  failures = failures + 1,"
					  "  next_attempt_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $3 / 1000.0),"
					  "  parked_at = CASE WHEN failures + 1 >= $5 THEN pg_catalog.now() END,"
					  "  park_reason = CASE WHEN failures + 1 >= $5 THEN $4 END"
					  " WHERE withdrawal_id = $1 AND lease_until = $2"
					  " RETURNING parked_at IS NOT NULL",
					  5, types);
	values[0] = UUIDPGetDatum(&p->id);
	values[1] = TimestampTzGetDatum(p->lease_until);
	values[2] = Int64GetDatum(f->delay_ms);
	values[3] = CStringGetTextDatum(f->error);
	values[4] = Int32GetDatum(withdrawal_park_after);
	WithdrawalExecute(plan, values, NULL, false, 0, SPI_OK_UPDATE_RETURNING);
	f->parked = SPI_processed > 0 && DatumGetBool(WithdrawalSpiGet(0, 1, &isnull));
	if (f->with_last_error && SPI_processed > 0)
		note_error(&p->id, f->error);
}

/*
 * A payout whose outcome could not be recorded.  The outbox row is all
 * that must change, so it is tried with the withdrawal's last_error and,
 * should that fail too (the withdrawal's row may be what fails), without.
 */
static void
record_failure(WithdrawalPayout *p, const char *error)
{
	Failure		f;

	memset(&f, 0, sizeof(f));
	f.payout = p;
	f.error = psprintf("could not record outcome %s: %s",
					   WithdrawalOutcomeName(p->outcome), WithdrawalClipError(error));
	f.with_last_error = true;
	f.delay_ms = Max(backoff_ms(p->attempts), RECORD_FAILURE_MIN_DELAY_MS);
	if (!WithdrawalRunTransaction("withdrawal: noting a failed outcome", false, failure_body, &f, NULL))
	{
		f.with_last_error = false;
		if (!WithdrawalRunTransaction("withdrawal: noting a failed outcome", false, failure_body, &f, NULL))
			return;				/* the lease expires; sweep() counts it */
	}

	/*
	 * Claim again when it falls due, as requeue() does: the next claim may
	 * otherwise wait for a far one, such as another channel's Retry-After.
	 */
	if (!f.parked)
		WithdrawalEarliest(&MyWithdrawalWorker.next_claim_at, WithdrawalLaterMs(f.delay_ms));
	if (f.parked)
		ereport(WARNING,
				(errmsg("withdrawal worker %d parked payout %s", MyWithdrawalWorker.index, p->id_text),
				 errdetail("%s", f.error),
				 errhint("See withdrawal.parked_payouts; withdrawal.retry() resumes it.")));
}

static void
free_payouts(WithdrawalPayout *list)
{
	WithdrawalPayout *p;
	WithdrawalPayout *next;

	for (p = list; p; p = next)
	{
		next = p->next;
		MemoryContextDelete(p->cxt);
	}
}

/* Wallet lock order (lifecycle.h), then by withdrawal */
static int
payout_cmp(const void *a, const void *b)
{
	const WithdrawalPayout *pa = *(WithdrawalPayout *const *) a;
	const WithdrawalPayout *pb = *(WithdrawalPayout *const *) b;
	int			c = WithdrawalWalletOrder(pa->account_id, pa->currency,
										  pb->account_id, pb->currency);

	return c != 0 ? c : strcmp(pa->id_text, pb->id_text);
}

/* Sorts a list into wallet lock order */
static WithdrawalPayout *
sort_payouts(WithdrawalPayout *list)
{
	WithdrawalPayout **arr;
	WithdrawalPayout *p;
	int			n = 0;
	int			i;

	for (p = list; p; p = p->next)
		n++;
	if (n < 2)
		return list;
	arr = palloc(sizeof(WithdrawalPayout *) * n);
	for (i = 0, p = list; p; p = p->next)
		arr[i++] = p;
	qsort(arr, n, sizeof(WithdrawalPayout *), payout_cmp);
	for (i = 0; i < n - 1; i++)
		arr[i]->next = arr[i + 1];
	arr[n - 1]->next = NULL;
	list = arr[0];
	pfree(arr);
	return list;
}

/*
 * Says, once its transaction has committed, that a payout failed (and was
 * refunded) or went dead: one LOG line each, with the id, the channel and
 * the reason, for whoever watches the server log.
 */
static void
report_ended(const WithdrawalPayout *p)
{
	const char *reason = p->error ? p->error : "no reason given";

	if (p->ended == NULL)
		return;
	if (strcmp(p->ended, "failed") == 0)
	{
		MyWithdrawalWorker.failed++;
		ereport(LOG,
				(errmsg("withdrawal %s on channel \"%s\" failed and was refunded: %s",
						p->id_text, p->channel, reason)));
	}
	else
	{
		MyWithdrawalWorker.dead++;
		ereport(LOG,
				(errmsg("withdrawal %s on channel \"%s\" is dead, its funds held for an operator: %s",
						p->id_text, p->channel, reason)));
	}
}

/* An attempt that did not get through: the processor or the network failed */
static void
note_send_error(const WithdrawalPayout *p)
{
	if (p->outcome != WITHDRAWAL_OUTCOME_RETRY && p->outcome != WITHDRAWAL_OUTCOME_DEAD)
		return;
	MyWithdrawalWorker.send_errors++;
	WithdrawalShmemWorkerError(MyWithdrawalWorker.index, true,
							   psprintf("channel \"%s\": %s", p->channel,
										p->error ? p->error : WithdrawalOutcomeName(p->outcome)));
}

/*
 * What a finished request says about its processor, for the channel's
 * circuit breaker: no answer (refused, reset, timed out) or a 5xx is a
 * failure, any other answer a success (a decline, "in progress" or a 429
 * shows a processor that answers; a 429 has its own pause).  Status
 * queries do not open the breaker, so that a processor whose status
 * endpoint fails keeps paying; a query sent as the half-open probe
 * decides like any probe.  A payout decided without a request says
 * nothing.
 */
static WithdrawalBreakerVerdict
breaker_verdict(const WithdrawalPayout *p)
{
	if (!p->on_wire || (p->query && !p->breaker_probe))
		return WITHDRAWAL_BREAKER_NONE;
	if (p->transport_failed || p->http_status >= 500)
		return WITHDRAWAL_BREAKER_FAILURE;
	return WITHDRAWAL_BREAKER_SUCCESS;
}

/*
 * Records a list of decided payouts: all in one transaction, or, when that
 * fails, each in its own, counting a failure against the ones that fail
 * again.
 */
static void
record_outcomes(WithdrawalPayout *list)
{
	WithdrawalPayout *p;
	WithdrawalPayout *next;

	if (list == NULL)
		return;
	list = sort_payouts(list);

	/* their sends are over: leave the channels' in-flight counts */
	for (p = list; p; p = p->next)
	{
		note_send_error(p);
		if (!p->reserved)
			continue;
		/* before the release: no other send is granted in between */
		if (WithdrawalChannelBreakerNote(p->channel, MyWithdrawalWorker.index, breaker_verdict(p),
										 p->breaker_probe, p->error, p->burst))
			WithdrawalWakeWorkersNow();
		WithdrawalChannelRelease(p->channel, MyWithdrawalWorker.index, 0, 1, p->burst);
		if (p->retry_after_ms > 0)
			WithdrawalChannelBlock(p->channel, p->retry_after_ms, p->burst);
		if (p->on_wire)
			WithdrawalWorkerChannelOnWire(p->channel, -1);
		p->reserved = false;
	}

	if (!WithdrawalRunTransaction("withdrawal: recording outcomes", false, record_body, list, NULL))
	{
		/* what the rolled-back transaction did is undone */
		for (p = list; p; p = p->next)
			p->ended = NULL;
		for (p = list; p; p = next)
		{
			char	   *error = NULL;

			next = p->next;
			p->next = NULL;
			if (!WithdrawalRunTransaction("withdrawal: recording an outcome", false,
										  record_body, p, &error))
			{
				p->ended = NULL;
				record_failure(p, error);
			}
			p->next = next;
		}
	}
	for (p = list; p; p = p->next)
	{
		MyWithdrawalWorker.recorded++;
		report_ended(p);
	}
	free_payouts(list);
}

bool
WithdrawalRecordDone(void)
{
	WithdrawalPayout *head = NULL;
	WithdrawalPayout *tail = NULL;
	WithdrawalPayout *p;

	while ((p = WithdrawalDispatchNextDone()) != NULL)
	{
		if (tail)
			tail->next = p;
		else
			head = p;
		tail = p;
	}
	if (head == NULL)
		return false;
	record_outcomes(head);
	return true;
}
