
/* withdrawal: the payout outbox drained by the dispatcher workers */

/*
 * One row per payout waiting for (or on) the wire.  Rows leave when the
 * payout reaches a status that needs no dispatch, so the table stays small
 * and VACUUM keeps up.  kind 'send' rows belong to queued and dispatching
 * withdrawals; kind 'query' rows are status queries for submitted and dead
 * ones (added by sweep()).  lease_until is set when a worker claims the
 * row: until it passes, no other worker sends the payout; after it passes,
 * the payout is re-sent with the same idempotency key.  claimed_by is the
 * worker number, so that a restarted worker releases its own leases.
 * Only lease_until and claimed_by change on a claim, and neither is
 * indexed, so claims are HOT updates.
 *
 * failures counts the attempts whose outcome could not be recorded and the
 * leases lost to a worker's death; at withdrawal.park_after the payout is
 * parked (parked_at, park_reason) and no longer claimed until an operator
 * retries it, so one poison payout cannot crash-loop a worker.
 * busy_answers counts "request in progress" answers, which do not use up
 * the attempt budget.
 */
CREATE TABLE withdrawal.outbox (
	withdrawal_id uuid PRIMARY KEY,
	channel		text NOT NULL,
	next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	lease_until	timestamptz,
	enqueued_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	kind		text NOT NULL DEFAULT 'send' CHECK (kind IN ('send', 'query')),
	claimed_by	integer,
	failures	integer NOT NULL DEFAULT 0,
	busy_answers integer NOT NULL DEFAULT 0,
	parked_at	timestamptz,
	park_reason	text
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.01,
		autovacuum_vacuum_insert_scale_factor = 0.01);
CREATE INDEX outbox_due ON withdrawal.outbox (channel, kind DESC, next_attempt_at);
COMMENT ON TABLE withdrawal.outbox IS 'payouts waiting for the dispatcher; the hot queue table';
COMMENT ON INDEX withdrawal.outbox_due IS
	'the dispatcher claims each channel''s due rows, sends before status queries, in next_attempt_at order';

CREATE VIEW withdrawal.parked_payouts AS
	SELECT o.withdrawal_id, w.account_id, w.currency, w.amount, o.channel, w.status, o.kind,
		   o.failures, o.parked_at, o.park_reason
	  FROM withdrawal.outbox o
	  JOIN withdrawal.withdrawal w ON w.withdrawal_id OPERATOR(pg_catalog.=) o.withdrawal_id
	 WHERE o.parked_at IS NOT NULL;
COMMENT ON VIEW withdrawal.parked_payouts IS
	'payouts the dispatcher stopped claiming because their outcome could not be recorded; retry() resumes them';

/*
 * The sandbox processor's delayed events: a payout it accepted is paid
 * withdrawal.sandbox_settle_delay later; one whose amount ends in 42 is
 * then returned after the same delay.  An event that cannot be applied is
 * postponed (attempts, last_error) so that it holds up no other.
 */
CREATE TABLE withdrawal.sandbox_event (
	withdrawal_id uuid NOT NULL,
	event		text NOT NULL CHECK (event IN ('paid', 'returned')),
	due_at		timestamptz NOT NULL,
	attempts	integer NOT NULL DEFAULT 0,
	last_error	text,
	PRIMARY KEY (withdrawal_id, event)
);
CREATE INDEX sandbox_event_due ON withdrawal.sandbox_event (due_at);
COMMENT ON TABLE withdrawal.sandbox_event IS 'settlements and returns the sandbox processor will report, and when';
COMMENT ON INDEX withdrawal.sandbox_event_due IS 'the worker applies sandbox events in due order';

SELECT pg_catalog.pg_extension_config_dump('withdrawal.sandbox_event', '');

CREATE FUNCTION withdrawal.retry(withdrawal_id uuid)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_retry'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.retry(uuid) IS
	'ops: puts a dead-lettered or parked payout back on the queue (same idempotency key, fresh attempt budget); returns the new status';

CREATE FUNCTION withdrawal.sweep(older_than interval DEFAULT '4 hours')
	RETURNS integer
	AS 'MODULE_PATHNAME', 'withdrawal_sweep'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.sweep(interval) IS
	'ops: re-sends payouts whose lease expired, queries the processor about payouts submitted longer than withdrawal.poll_after ago and about dead ones that may have been sent, re-queues payouts missing from the outbox, and fails and refunds payouts queued longer than older_than that were never sent; returns how many it moved';

GRANT EXECUTE ON FUNCTION withdrawal.retry(uuid), withdrawal.sweep(interval) TO withdrawal_ops;

/*
 * The rules of the sweep, in SQL so that they read from psql (\sf).  The
 * worker runs both every withdrawal.sweep_interval, sweep() on demand;
 * ops.c passes the settings and moves the money of what _sweep_unsent()
 * returns through the lifecycle, as every status change of a single
 * withdrawal.  Sent means maybe paid: nothing here refunds a payout that
 * may have been sent; it only re-sends it with the same key or asks the
 * processor about it.
 *
 * Both run with the rights of their caller: the workers' role, which may
 * do exactly this (96_worker.sql), or the owner inside sweep().  Rows
 * someone else holds are skipped (they are being worked on), so that the
 * sweep neither waits on a worker nor takes locks out of the extension's
 * order.  Every statement is planned when it runs (plan_cache_mode): the
 * sweep is rare, and a kept plan could join today's tables as they were
 * when they were empty.  Fresh plans are not enough: an outbox analyzed
 * while drained (pages, no live rows) is estimated at one row however
 * full it is, and the locked subquery of a lease or outbox cleanup, as a
 * semi-join, was rescanned for every outbox row: 5,000 expired leases
 * took 117 s.  So the rows to change are collected once into an array,
 * then reached through the primary key.
 */
CREATE FUNCTION withdrawal._sweep_requeue(poll_after_seconds integer, park_after integer)
	RETURNS integer
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	SET plan_cache_mode = force_custom_plan
	AS $$
DECLARE
	moved integer := 0;
	n integer;
BEGIN
	-- dispatching with an expired lease: its worker died or stalled; resend
	-- now, with the same key, counting the loss; park it after park_after
	UPDATE withdrawal.outbox
	   SET lease_until = NULL, claimed_by = NULL, next_attempt_at = now(),
		   failures = failures + 1,
		   parked_at = CASE WHEN failures + 1 >= park_after THEN now() END,
		   park_reason = CASE WHEN failures + 1 >= park_after
						 THEN 'its lease expired ' || (failures + 1) || ' times' END
	 WHERE withdrawal_id = ANY (ARRAY(SELECT withdrawal_id FROM withdrawal.outbox
									 WHERE lease_until < now() FOR UPDATE SKIP LOCKED));
	GET DIAGNOSTICS n = ROW_COUNT;
	moved := moved + n;

	-- outbox rows whose withdrawal needs no dispatch any more
	DELETE FROM withdrawal.outbox
	 WHERE withdrawal_id = ANY (ARRAY(
		SELECT o.withdrawal_id FROM withdrawal.outbox o
		  JOIN withdrawal.withdrawal w ON w.withdrawal_id = o.withdrawal_id
		 WHERE o.lease_until IS NULL
		   AND NOT CASE WHEN o.kind = 'send' THEN w.status IN ('queued', 'dispatching')
						ELSE w.status IN ('submitted', 'dead') END
		   FOR UPDATE OF o SKIP LOCKED));

	-- queued or dispatching without an outbox row: back on the queue
	INSERT INTO withdrawal.outbox (withdrawal_id, channel)
	SELECT w.withdrawal_id, w.channel FROM withdrawal.withdrawal w
	 WHERE w.status IN ('queued', 'dispatching')
	   AND NOT EXISTS (SELECT FROM withdrawal.outbox o WHERE o.withdrawal_id = w.withdrawal_id)
	ON CONFLICT DO NOTHING;
	GET DIAGNOSTICS n = ROW_COUNT;
	moved := moved + n;

	-- submitted with no final word after poll_after, and dead ones that may
	-- have been sent: ask the processor.  Only its answer (or an operator's
	-- two-person resolution) settles or refunds them.
	INSERT INTO withdrawal.outbox (withdrawal_id, channel, kind)
	SELECT w.withdrawal_id, w.channel, 'query' FROM withdrawal.withdrawal w
	 WHERE (w.status = 'submitted' OR (w.status = 'dead' AND w.sent_at IS NOT NULL))
	   AND w.updated_at < now() - make_interval(secs => poll_after_seconds)
	ON CONFLICT DO NOTHING;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN moved + n;
END
$$;
COMMENT ON FUNCTION withdrawal._sweep_requeue(integer, integer) IS
	'internal (workers, sweep()): re-sends payouts whose lease expired, drops outbox rows no longer needed, re-queues payouts missing from the outbox, queues status queries; returns how many payouts it moved';

CREATE FUNCTION withdrawal._sweep_unsent(older_than interval)
	RETURNS SETOF uuid
	LANGUAGE sql VOLATILE PARALLEL UNSAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	-- queued longer than older_than and never sent: nothing reached a
	-- processor, so failing and refunding is safe.  Both rows are locked
	-- until the end of the transaction, so no worker claims it meanwhile.
	-- Returned in wallet lock order (docs/lifecycle.md#lock-order), the
	-- order in which sweep() then refunds them: in withdrawal_id order it
	-- deadlocked with the worker recording outcomes.
	SELECT w.withdrawal_id FROM withdrawal.outbox o
	  JOIN withdrawal.withdrawal w ON w.withdrawal_id = o.withdrawal_id
	 WHERE w.status = 'queued' AND w.sent_at IS NULL
	   AND o.lease_until IS NULL AND o.kind = 'send'
	   AND w.created_at < now() - older_than
	 ORDER BY w.account_id COLLATE "C", w.currency COLLATE "C", w.withdrawal_id
	   FOR UPDATE OF o SKIP LOCKED FOR NO KEY UPDATE OF w SKIP LOCKED
$$;
COMMENT ON FUNCTION withdrawal._sweep_unsent(interval) IS
	'internal (sweep()): locks and returns the payouts queued longer than older_than that were never sent, which sweep() fails and refunds';
GRANT SELECT ON withdrawal.outbox TO withdrawal_auditor;
GRANT SELECT ON withdrawal.parked_payouts TO withdrawal_ops, withdrawal_auditor;

CREATE FUNCTION withdrawal.retry_dead(channel text DEFAULT NULL, error_like text DEFAULT NULL,
									  died_after timestamptz DEFAULT NULL,
									  died_before timestamptz DEFAULT NULL,
									  dry_run boolean DEFAULT true, max_rows integer DEFAULT 1000)
	RETURNS TABLE (withdrawal_id uuid, channel text, last_error text, died_at timestamptz,
				   retried boolean)
	AS 'MODULE_PATHNAME', 'withdrawal_retry_dead'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.retry_dead(text, text, timestamptz, timestamptz, boolean, integer) IS
	'ops: retry() of the dead payouts that match a filter (channel, last_error LIKE pattern, when they died), earliest death first, at most max_rows; lists them without retrying when dry_run (the default)';

GRANT EXECUTE ON FUNCTION withdrawal.retry_dead(text, text, timestamptz, timestamptz, boolean, integer)
	TO withdrawal_ops;
