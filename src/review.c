/*-------------------------------------------------------------------------
 *
 * review.c
 *	  Manual review by operators: approve (with four-eyes above the
 *	  policy's threshold) and reject.
 *
 * The actor is always session_user, never a parameter, and the role that
 * requested a withdrawal can never approve it.
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
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "lifecycle.h"
#include "audit.h"
#include "policy.h"
#include "util.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_approve);
PG_FUNCTION_INFO_V1(withdrawal_reject);

/*
 * approve(withdrawal_id, note): records the approval; when enough distinct
 * approvers have approved, queues the payout.  Returns the status after.
 */
Datum
withdrawal_approve(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr approve_plan = NULL;
	Oid			lock_types[1] = {UUIDOID};
	Oid			approve_types[3] = {UUIDOID, NAMEOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	pg_uuid_t  *id;
	char	   *note;
	char	   *actor;
	char	   *status;
	char	   *requested_by;
	char	   *currency;
	int64		amount;
	int64		threshold;
	int64		approvals;
	int			needed;
	NameData	actor_name;
	bool		isnull;
	WithdrawalTransitionData data;
	const char *result;

	id = WithdrawalArgUuid(fcinfo, 0, "withdrawal_id");
	note = WithdrawalArgTextOrNull(fcinfo, 1, "note", WITHDRAWAL_MAX_REASON);
	actor = WithdrawalActor();

	SPI_connect();
	WithdrawalPrepare(&lock_plan,
					  "SELECT status, requested_by, currency, amount,"
					  " (SELECT count(*) FROM withdrawal.approval a WHERE a.withdrawal_id = w.withdrawal_id)"
					  " FROM withdrawal.withdrawal w WHERE withdrawal_id = $1 FOR NO KEY UPDATE",
					  1, lock_types);
	values[0] = UUIDPGetDatum(id);
	WithdrawalExecute(lock_plan, values, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WD_UNKNOWN_OBJECT),
				 errmsg("unknown withdrawal %s",
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id))))));
	status = WithdrawalSpiGetText(0, 1);
	requested_by = WithdrawalSpiGetText(0, 2);
	currency = WithdrawalSpiGetText(0, 3);
	amount = DatumGetInt64(WithdrawalSpiGet(0, 4, &isnull));
	approvals = DatumGetInt64(WithdrawalSpiGet(0, 5, &isnull));

	if (strcmp(status, "review") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WD_INVALID_TRANSITION),
				 errmsg("withdrawal is in status \"%s\", not \"review\"", status),
				 errdetail("Only withdrawals held for review can be approved.")));
	if (strcmp(requested_by, actor) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" requested this withdrawal and cannot approve it", actor)));

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
				 errhint("A second approval must come from a different role.")));
	approvals++;

	threshold = WithdrawalFourEyesThreshold(currency);
	needed = (threshold >= 0 && amount >= threshold) ? 2 : 1;

	memset(&data, 0, sizeof(data));
	data.action = "approve";
	data.actor = actor;
	if (approvals >= needed)
	{
		WithdrawalTransition(id, WITHDRAWAL_QUEUED, &data, NULL);
		result = "queued";
	}
	else
	{
		WithdrawalAudit("approve", actor, id, NULL, status, status,
						DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
														   CStringGetDatum(psprintf("{\"approvals\": " INT64_FORMAT ", \"needed\": %d}",
																					approvals, needed)))));
		result = "review";
	}
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

/*
 * reject(withdrawal_id, reason): rejects a withdrawal that is held for
 * review, queued or dead, refunding it.
 */
Datum
withdrawal_reject(PG_FUNCTION_ARGS)
{
	WithdrawalTransitionData data;
	pg_uuid_t  *id;

	id = WithdrawalArgUuid(fcinfo, 0, "withdrawal_id");
	memset(&data, 0, sizeof(data));
	data.reason = WithdrawalArgText(fcinfo, 1, "reason", WITHDRAWAL_MAX_REASON);
	data.action = "reject";

	SPI_connect();
	WithdrawalTransition(id, WITHDRAWAL_REJECTED, &data, NULL);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text("rejected"));
}
