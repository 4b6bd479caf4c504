/*-------------------------------------------------------------------------
 *
 * review.c
 *	  Manual review by operators: approve (with four-eyes at or above the
 *	  policy's threshold) and reject.
 *
 * The actor is always session_user, never a parameter (SET ROLE does not
 * change it), and the role that requested a withdrawal can never approve
 * it.  Each approval is a row of withdrawal.approval keyed by (withdrawal,
 * approver), so the same approver cannot count twice.  approve() locks the
 * withdrawal row first and counts the approvals in a later statement, with
 * a fresh snapshot: two operators approving at once are serialised and the
 * second sees the first's approval.  Every action appends an audit row
 * with the actor, the note or reason and the status before and after.
 *
 * A withdrawal nobody decides does not hold the user's money for ever:
 * once its policy's review_expires_after has passed since the request,
 * expire_reviews() (run by the first worker every minute, and callable by
 * operators, for example from pg_cron) rejects and refunds it through the
 * same transition as reject(), like a pending transfer that times out in
 * TigerBeetle.  A withdrawal in review has never been sent, so no proof is
 * needed.  One approval of two does not stop the clock: four-eyes means
 * nothing is decided before the second, and a second approver who never
 * comes must not lock the money up; the audit row says how many approvals
 * there were.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/review.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "args.h"
#include "audit.h"
#include "json.h"
#include "lifecycle.h"
#include "policy.h"
#include "review.h"
#include "spi.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_approve);
PG_FUNCTION_INFO_V1(withdrawal_reject);
PG_FUNCTION_INFO_V1(withdrawal_resolve);
PG_FUNCTION_INFO_V1(withdrawal_expire_reviews);

/* An expired withdrawal, as found under its row lock */
typedef struct ExpiredReview
{
	pg_uuid_t	id;
	char	   *expires_after;	/* the policy's review_expires_after */
	int64		approvals;
} ExpiredReview;

/*
 * approve(withdrawal_id, note): records session_user's approval; when
 * enough distinct approvers have approved (two at or above the four-eyes
 * threshold, else one), queues the payout.  Returns the status after.
 */
Datum
withdrawal_approve(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr approve_plan = NULL;
	static SPIPlanPtr count_plan = NULL;
	Oid			approve_types[3] = {UUIDOID, NAMEOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	pg_uuid_t  *id;
	char	   *note;
	char	   *actor;
	char	   *status;
	char	   *requested_by;
	char	   *currency;
	char	   *account_id;
	bool		frozen;
	int64		amount;
	int64		threshold;
	int64		approvals;
	int			needed;
	NameData	actor_name;
	bool		isnull;
	WithdrawalTransitionData data;
	const char *keys[3] = {"note", "approvals", "needed"};
	const char *detail[3];
	const char *result;

	id = WithdrawalArgUuid(fcinfo, 0, "withdrawal_id");
	note = WithdrawalArgTextOrNull(fcinfo, 1, "note", WITHDRAWAL_MAX_REASON);
	actor = WithdrawalActor();

	SPI_connect();
	WithdrawalSelectWithdrawal(&lock_plan,
							   "SELECT w.status, w.requested_by, w.currency, w.amount, w.account_id,"
							   " coalesce(a.frozen, false)"
							   " FROM withdrawal.withdrawal w"
							   " LEFT JOIN withdrawal.account a ON a.account_id = w.account_id"
							   " WHERE w.withdrawal_id = $1 FOR NO KEY UPDATE OF w",
							   id, false, false);
	values[0] = UUIDPGetDatum(id);
	status = WithdrawalSpiGetText(0, 1);
	requested_by = WithdrawalSpiGetText(0, 2);
	currency = WithdrawalSpiGetText(0, 3);
	amount = DatumGetInt64(WithdrawalSpiGet(0, 4, &isnull));
	account_id = WithdrawalSpiGetText(0, 5);
	frozen = DatumGetBool(WithdrawalSpiGet(0, 6, &isnull));

	if (strcmp(status, "review") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WD_INVALID_TRANSITION),
				 errmsg("withdrawal is in status \"%s\", not \"review\"", status),
				 errdetail("Only withdrawals held for review can be approved.")));
	if (strcmp(requested_by, actor) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" requested this withdrawal and cannot approve it", actor),
				 errdetail("The approver is the session user; SET ROLE does not change it.")));
	if (frozen)
		ereport(ERROR,
				(errcode(ERRCODE_WD_ACCOUNT_FROZEN),
				 errmsg("account \"%s\" is frozen", account_id),
				 errhint("Unfreeze the account or reject the withdrawal.")));

	WithdrawalPrepare(&approve_plan,
					  "INSERT INTO withdrawal.approval (withdrawal_id, approver, note)"
					  " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
					  3, approve_types);
	namestrcpy(&actor_name, actor);
	values[1] = NameGetDatum(&actor_name);
	values[2] = note ? CStringGetTextDatum(note) : (Datum) 0;
	nulls[2] = note ? ' ' : 'n';
	WithdrawalExecute(approve_plan, values, nulls, false, 0, SPI_OK_INSERT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" has already approved this withdrawal", actor),
				 errdetail("An approver counts once."),
				 errhint("A second approval must come from a different role.")));

	/* A fresh snapshot: sees approvals committed while we waited for the row */
	WithdrawalPrepare(&count_plan,
					  "SELECT count(*) FROM withdrawal.approval WHERE withdrawal_id = $1",
					  1, approve_types);
	WithdrawalExecute(count_plan, values, NULL, false, 1, SPI_OK_SELECT);
	approvals = DatumGetInt64(WithdrawalSpiGet(0, 1, &isnull));

	threshold = WithdrawalFourEyesThreshold(currency);
	needed = (threshold >= 0 && amount >= threshold) ? 2 : 1;

	detail[0] = note;
	detail[1] = psprintf(INT64_FORMAT, approvals);
	detail[2] = psprintf("%d", needed);
	memset(&data, 0, sizeof(data));
	data.action = "approve";
	data.actor = actor;
	data.detail = WithdrawalDetail(3, keys, detail, (1U << 1) | (1U << 2));
	if (approvals >= needed)
	{
		WithdrawalTransition(id, WITHDRAWAL_QUEUED, &data, NULL);
		result = "queued";
	}
	else
	{
		WithdrawalAudit("approve", actor, id, account_id, status, status, data.detail);
		result = "review";
	}
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

/*
 * reject(withdrawal_id, reason): rejects a withdrawal that is held for
 * review, or queued or dead without ever having been sent, refunding it.
 * A payout that may have reached the processor is refused (WD005) by
 * WithdrawalTransition: it is refunded only on proof, see resolve().
 */
Datum
withdrawal_reject(PG_FUNCTION_ARGS)
{
	WithdrawalTransitionData data;
	pg_uuid_t  *id;
	const char *keys[1] = {"reason"};
	const char *detail[1];

	id = WithdrawalArgUuid(fcinfo, 0, "withdrawal_id");
	memset(&data, 0, sizeof(data));
	data.reason = WithdrawalArgText(fcinfo, 1, "reason", WITHDRAWAL_MAX_REASON);
	data.action = "reject";
	data.actor = WithdrawalActor();
	detail[0] = data.reason;
	data.detail = WithdrawalDetail(1, keys, detail, 0);

	SPI_connect();
	WithdrawalTransition(id, WITHDRAWAL_REJECTED, &data, NULL);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text("rejected"));
}

/* Statuses in which an operator may resolve a payout that may have been sent */
static bool
resolvable(const char *status)
{
	return strcmp(status, "queued") == 0 || strcmp(status, "submitted") == 0 ||
		strcmp(status, "dead") == 0;
}

/*
 * resolve(withdrawal_id, outcome, evidence): an operator's vote that the
 * processor confirmed the outcome ("paid" or "failed") of a payout that may
 * have been sent and whose outcome the dispatcher could not learn, with the
 * evidence (a ticket, a statement line).  When two distinct operators, none
 * of them the requester, have voted for the same outcome, it is applied:
 * "paid" settles the payout, "failed" refunds it, with the proof
 * "operator_resolution".  Votes are rows of withdrawal.resolution and audit
 * rows; the same operator votes once.  Returns the status after the vote.
 *
 * A payout on the wire (dispatching) cannot be resolved: its attempt may
 * be reaching the processor right now.  One never sent needs no proof:
 * reject() or cancel() it.
 */
Datum
withdrawal_resolve(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr vote_plan = NULL;
	static SPIPlanPtr count_plan = NULL;
	Oid			vote_types[4] = {UUIDOID, NAMEOID, TEXTOID, TEXTOID};
	Oid			count_types[2] = {UUIDOID, TEXTOID};
	Datum		values[4];
	pg_uuid_t  *id;
	char	   *outcome;
	char	   *evidence;
	char	   *actor;
	char	   *status;
	char	   *requested_by;
	char	   *account_id;
	bool		sent;
	int64		votes;
	NameData	actor_name;
	bool		isnull;
	const char *keys[4] = {"outcome", "evidence", "votes", "needed"};
	const char *detail[4];
	Jsonb	   *detail_json;
	const char *result;

	id = WithdrawalArgUuid(fcinfo, 0, "withdrawal_id");
	outcome = WithdrawalArgText(fcinfo, 1, "outcome", 16);
	evidence = WithdrawalArgText(fcinfo, 2, "evidence", WITHDRAWAL_MAX_REASON);
	if (strcmp(outcome, "paid") != 0 && strcmp(outcome, "failed") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("outcome must be \"paid\" or \"failed\", not \"%s\"", outcome)));
	actor = WithdrawalActor();

	SPI_connect();
	WithdrawalSelectWithdrawal(&lock_plan,
							   "SELECT status, requested_by, account_id, sent_at IS NOT NULL"
							   " FROM withdrawal.withdrawal WHERE withdrawal_id = $1 FOR NO KEY UPDATE",
							   id, false, false);
	values[0] = UUIDPGetDatum(id);
	status = WithdrawalSpiGetText(0, 1);
	requested_by = WithdrawalSpiGetText(0, 2);
	account_id = WithdrawalSpiGetText(0, 3);
	sent = DatumGetBool(WithdrawalSpiGet(0, 4, &isnull));

	if (!sent)
		ereport(ERROR,
				(errcode(ERRCODE_WD_INVALID_TRANSITION),
				 errmsg("withdrawal %s was never sent to a processor", WithdrawalUuidText(id)),
				 errdetail("Only payouts that may have reached a processor are resolved with evidence."),
				 errhint("Use withdrawal.reject() or withdrawal.cancel().")));
	if (!resolvable(status))
		ereport(ERROR,
				(errcode(ERRCODE_WD_INVALID_TRANSITION),
				 errmsg("withdrawal %s is %s and cannot be resolved", WithdrawalUuidText(id), status),
				 errdetail(strcmp(status, "dispatching") == 0 ?
						   "An attempt is on the wire; its answer comes first." :
						   "Only queued, submitted or dead payouts are resolved by operators.")));
	if (strcmp(requested_by, actor) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" requested this withdrawal and cannot resolve it", actor)));

	WithdrawalPrepare(&vote_plan,
					  "INSERT INTO withdrawal.resolution (withdrawal_id, approver, outcome, evidence)"
					  " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
					  4, vote_types);
	namestrcpy(&actor_name, actor);
	values[1] = NameGetDatum(&actor_name);
	values[2] = CStringGetTextDatum(outcome);
	values[3] = CStringGetTextDatum(evidence);
	WithdrawalExecute(vote_plan, values, NULL, false, 0, SPI_OK_INSERT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" has already voted on the resolution of this withdrawal", actor),
				 errhint("A second vote must come from a different role.")));

	/* A fresh snapshot: sees votes committed while we waited for the row */
	WithdrawalPrepare(&count_plan,
					  "SELECT count(*) FROM withdrawal.resolution"
					  " WHERE withdrawal_id = $1 AND outcome = $2",
					  2, count_types);
	values[1] = values[2];
	WithdrawalExecute(count_plan, values, NULL, false, 1, SPI_OK_SELECT);
	votes = DatumGetInt64(WithdrawalSpiGet(0, 1, &isnull));

	detail[0] = outcome;
	detail[1] = evidence;
	detail[2] = psprintf(INT64_FORMAT, votes);
	detail[3] = "2";
	detail_json = WithdrawalDetail(4, keys, detail, (1U << 2) | (1U << 3));
	if (votes >= 2)
	{
		WithdrawalTransitionData data;

		memset(&data, 0, sizeof(data));
		data.action = "resolve";
		data.actor = actor;
		data.detail = detail_json;
		data.reason = psprintf("resolved by operators: %s", evidence);
		if (strcmp(outcome, "failed") == 0)
		{
			data.refund_proof = "operator_resolution";
			WithdrawalTransition(id, WITHDRAWAL_FAILED, &data, NULL);
		}
		else
		{
			/* queued pays through dispatching, as a late webhook does */
			if (strcmp(status, "queued") == 0)
				WithdrawalTransition(id, WITHDRAWAL_DISPATCHING, &data, NULL);
			WithdrawalTransition(id, WITHDRAWAL_PAID, &data, NULL);
		}
		result = outcome;
	}
	else
	{
		WithdrawalAudit("resolve_vote", actor, id, account_id, status, status, detail_json);
		result = status;
	}
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

/*
 * An interval in PostgreSQL's own style ("30 days", "36:00:00"), whatever
 * the session's IntervalStyle: it goes into reasons and audit rows.
 */
static char *
format_interval(const Interval *span)
{
	struct pg_itm itm;
	char		buf[MAXDATELEN + 1];

	interval2itm(*span, &itm);
	EncodeInterval(&itm, INTSTYLE_POSTGRES, buf);
	return pstrdup(buf);
}

int
WithdrawalExpireReviews(int limit)
{
	ExpiredReview *expired;
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	char		nulls[1];
	int			n;
	int			done = 0;
	int			i;

	/*
	 * Locks the rows in withdrawal_id order, then hands them over in wallet
	 * order (account, currency), the extension's lock order for refunds
	 * that touch several wallets.  A row another transaction holds (an
	 * approval at this moment) is skipped: the next run sees it decided,
	 * or takes it.  Planned at each call: it runs once a minute at most,
	 * and the partial index withdrawal_open finds the rows in review.
	 */
	values[0] = Int32GetDatum(limit);
	nulls[0] = limit > 0 ? ' ' : 'n';
	WithdrawalExecuteFreshPlan("SELECT e.withdrawal_id, e.expires_after,"
						  "  (SELECT count(*) FROM withdrawal.approval a"
						  "    WHERE a.withdrawal_id = e.withdrawal_id)"
						  " FROM (SELECT w.withdrawal_id, w.account_id, w.currency,"
						  "         p.review_expires_after AS expires_after"
						  "    FROM withdrawal.withdrawal w"
						  "   CROSS JOIN LATERAL (SELECT p.review_expires_after FROM withdrawal.policy p"
						  "                        WHERE p.currency IN (w.currency, '*')"
						  "                        ORDER BY p.currency = '*' LIMIT 1) p"
						  "   WHERE w.status = 'review' AND w.sent_at IS NULL"
						  "     AND w.created_at + p.review_expires_after <= pg_catalog.now()"
						  "   ORDER BY w.withdrawal_id LIMIT $1"
						  "   FOR NO KEY UPDATE OF w SKIP LOCKED) e"
						  " ORDER BY e.account_id COLLATE \"C\", e.currency COLLATE \"C\", e.withdrawal_id",
						  1, types, values, nulls, SPI_OK_SELECT);
	n = (int) SPI_processed;
	if (n == 0)
		return 0;
	expired = palloc(sizeof(ExpiredReview) * n);
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		expired[i].id = *DatumGetUUIDP(WithdrawalSpiGet(i, 1, &isnull));
		expired[i].expires_after =
			format_interval(DatumGetIntervalP(WithdrawalSpiGet(i, 2, &isnull)));
		expired[i].approvals = DatumGetInt64(WithdrawalSpiGet(i, 3, &isnull));
	}

	for (i = 0; i < n; i++)
	{
		WithdrawalTransitionData data;
		const char *keys[3] = {"reason", "review_expires_after", "approvals"};
		const char *detail[3];

		memset(&data, 0, sizeof(data));
		data.action = "expire_review";
		data.reason = psprintf("review expired after %s", expired[i].expires_after);
		detail[0] = data.reason;
		detail[1] = expired[i].expires_after;
		detail[2] = psprintf(INT64_FORMAT, expired[i].approvals);
		data.detail = WithdrawalDetail(3, keys, detail, 1U << 2);
		/* the row is locked and in review: nothing else can have moved it */
		if (WithdrawalTransition(&expired[i].id, WITHDRAWAL_REJECTED, &data, NULL))
			done++;
	}
	return done;
}

/*
 * expire_reviews(): ops call (or pg_cron job) that rejects and refunds the
 * withdrawals left in review longer than their policy allows; returns how
 * many.  The worker runs the same code every minute.
 */
Datum
withdrawal_expire_reviews(PG_FUNCTION_ARGS)
{
	int			n;

	SPI_connect();
	n = WithdrawalExpireReviews(0);
	SPI_finish();
	PG_RETURN_INT32(n);
}
