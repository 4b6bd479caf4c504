
/* withdrawal: the payout outbox drained by the dispatcher workers */

/*
 * One row per payout waiting for (or on) the wire.  Rows leave when the
 * payout reaches a status that needs no dispatch, so the table stays small
 * and VACUUM keeps up.
 */
CREATE TABLE withdrawal.outbox (
	withdrawal_id uuid PRIMARY KEY,
	channel		text NOT NULL,
	next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	lease_until	timestamptz,
	enqueued_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
) WITH (fillfactor = 50);
COMMENT ON TABLE withdrawal.outbox IS 'payouts waiting for the dispatcher; the hot queue table';
