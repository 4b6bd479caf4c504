/* withdrawal 1.0.0 -> 1.1.0 */

\echo Use "ALTER EXTENSION withdrawal UPDATE TO '1.1.0'" to load this file. \quit

/*
 * Sent means maybe paid: sent_at records, durably and for good, that a
 * payout may have reached its processor; refunding such a payout needs a
 * proof (refund_proof).  Payouts that 1.0.0 may already have sent are
 * marked as such: every one claimed at least once, and every one past
 * queued that still holds money.
 */
CREATE DOMAIN withdrawal.refund_proof AS text
	CHECK (VALUE IN ('declined', 'processor_status', 'webhook', 'operator_resolution'));
COMMENT ON DOMAIN withdrawal.refund_proof IS
	'why a payout that may have reached a processor could be refunded: its create request was declined, a status query or a signed webhook said it failed, or two operators resolved it';

ALTER TABLE withdrawal.withdrawal ADD COLUMN sent_at timestamptz,
	ADD COLUMN refund_proof withdrawal.refund_proof;
COMMENT ON COLUMN withdrawal.withdrawal.sent_at IS
	'when a create request for this payout could first have reached the processor; committed durably before it is sent, never cleared';
COMMENT ON COLUMN withdrawal.withdrawal.refund_proof IS
	'the proof that the processor did not and will not pay, required to refund a payout once sent_at is set';
UPDATE withdrawal.withdrawal SET sent_at = updated_at
 WHERE status IN ('dispatching', 'submitted', 'dead')
	OR (status = 'queued' AND attempts > 0);

DROP TRIGGER withdrawal_status_guard ON withdrawal.withdrawal;
CREATE TRIGGER withdrawal_status_guard BEFORE UPDATE OF status, sent_at ON withdrawal.withdrawal
	FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.sent_at IS DISTINCT FROM NEW.sent_at)
	EXECUTE FUNCTION withdrawal.status_guard();
COMMENT ON FUNCTION withdrawal.status_guard() IS
	'trigger: refuses undocumented status transitions, changes to sent_at and refunds of sent payouts without proof (WD005)';

CREATE TABLE withdrawal.resolution (
	withdrawal_id uuid NOT NULL REFERENCES withdrawal.withdrawal,
	approver	name NOT NULL,
	outcome		text NOT NULL CHECK (outcome IN ('paid', 'failed')),
	evidence	text NOT NULL CHECK (pg_catalog.octet_length(evidence) BETWEEN 1 AND 1024),
	voted_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (withdrawal_id, approver)
);
COMMENT ON TABLE withdrawal.resolution IS
	'operators'' votes resolving a payout of unknown outcome; two distinct approvers with the same outcome apply it';
CREATE TRIGGER resolution_append_only BEFORE UPDATE OR DELETE ON withdrawal.resolution
	FOR EACH ROW EXECUTE FUNCTION withdrawal.append_only();
CREATE TRIGGER resolution_no_truncate BEFORE TRUNCATE ON withdrawal.resolution
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();
SELECT pg_catalog.pg_extension_config_dump('withdrawal.resolution', '');
REVOKE ALL ON withdrawal.resolution FROM PUBLIC;

CREATE FUNCTION withdrawal.resolve(withdrawal_id uuid, outcome text, evidence text)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_resolve'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.resolve(uuid, text, text) IS
	'ops: records session_user''s vote that the processor confirmed outcome (paid or failed) of a payout that may have been sent; two distinct voters apply it; returns the resulting status';
REVOKE ALL ON FUNCTION withdrawal.resolve(uuid, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdrawal.resolve(uuid, text, text) TO withdrawal_ops;
COMMENT ON FUNCTION withdrawal.cancel(uuid, text) IS
	'cancels a withdrawal that cannot have reached a processor yet and refunds it (WD005 once it may have been sent)';
COMMENT ON FUNCTION withdrawal.reject(uuid, text) IS
	'ops: rejects a withdrawal that cannot have reached a processor and refunds it (WD005 once it may have been sent: see resolve())';

/* The outbox: parking of poison payouts, "in progress" answers, fair claims. */
ALTER TABLE withdrawal.outbox ADD COLUMN failures integer NOT NULL DEFAULT 0,
	ADD COLUMN busy_answers integer NOT NULL DEFAULT 0,
	ADD COLUMN parked_at timestamptz,
	ADD COLUMN park_reason text;
DROP INDEX withdrawal.outbox_due;
CREATE INDEX outbox_due ON withdrawal.outbox (channel, kind DESC, next_attempt_at);
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
GRANT SELECT ON withdrawal.parked_payouts TO withdrawal_ops, withdrawal_auditor;

COMMENT ON FUNCTION withdrawal.retry(uuid) IS
	'ops: puts a dead-lettered or parked payout back on the queue (same idempotency key, fresh attempt budget); returns the new status';
COMMENT ON FUNCTION withdrawal.sweep(interval) IS
	'ops: re-sends payouts whose lease expired, queries the processor about payouts submitted longer than withdrawal.poll_after ago and about dead ones that may have been sent, re-queues payouts missing from the outbox, and fails and refunds payouts queued longer than older_than that were never sent; returns how many it moved';

ALTER TABLE withdrawal.sandbox_event ADD COLUMN attempts integer NOT NULL DEFAULT 0,
	ADD COLUMN last_error text;

/* The dispatcher workers' own role (see 96_worker.sql of the install). */
DO $role$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'withdrawal_worker') THEN
		CREATE ROLE withdrawal_worker LOGIN NOINHERIT;
	END IF;
END
$role$;

GRANT USAGE ON SCHEMA withdrawal TO withdrawal_worker;
-- configuration it dispatches with
GRANT SELECT ON withdrawal.channel, withdrawal.processor, withdrawal.currency TO withdrawal_worker;
-- the queue and the sandbox processor's own events
GRANT SELECT, INSERT, UPDATE, DELETE ON withdrawal.outbox, withdrawal.sandbox_event TO withdrawal_worker;
-- status changes and the money movements they imply
GRANT SELECT, UPDATE ON withdrawal.withdrawal, withdrawal.wallet TO withdrawal_worker;
GRANT SELECT, INSERT ON withdrawal.ledger_entry, withdrawal.audit_log, withdrawal.audit_seal TO withdrawal_worker;
GRANT USAGE ON SEQUENCE withdrawal.ledger_txn_seq TO withdrawal_worker;

/*
 * Idempotency keys are scoped per account (credits and withdrawals): a key
 * chosen by one user's client no longer blocks another user.  Every 1.0.0
 * key is unique, so it is unique per account too.
 */
ALTER TABLE withdrawal.credit
	DROP CONSTRAINT credit_idempotency_key_key,
	ADD CONSTRAINT credit_account_id_idempotency_key_key UNIQUE (account_id, idempotency_key);
ALTER TABLE withdrawal.withdrawal
	DROP CONSTRAINT withdrawal_idempotency_key_key,
	ADD CONSTRAINT withdrawal_account_id_idempotency_key_key UNIQUE (account_id, idempotency_key);

/*
 * Configuration values that would only fail later are refused when
 * written.  Rows written by 1.0.0 are not rechecked: only the columns an
 * UPDATE changes are.
 */
CREATE FUNCTION withdrawal.config_check() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_config_check'
	LANGUAGE C;
COMMENT ON FUNCTION withdrawal.config_check() IS
	'trigger: refuses configuration values that would fail later (time zones, rates, processor URLs)';
REVOKE ALL ON FUNCTION withdrawal.config_check() FROM PUBLIC;
CREATE TRIGGER processor_check BEFORE INSERT OR UPDATE ON withdrawal.processor
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_check();
CREATE TRIGGER channel_check BEFORE INSERT OR UPDATE ON withdrawal.channel
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_check();
CREATE TRIGGER policy_check BEFORE INSERT OR UPDATE ON withdrawal.policy
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_check();

/*
 * Locks no other role can take: rows of lock_slot replace the advisory
 * locks of the audit sealers and of the policy counters (00_core.sql,
 * 25_policy.sql).
 */
CREATE TABLE withdrawal.lock_slot (
	slot_id		integer PRIMARY KEY,
	purpose		text NOT NULL
);
COMMENT ON TABLE withdrawal.lock_slot IS
	'rows locked by the extension to serialise audit sealers and requests sharing a policy counter; never locked or changed by anyone else';
INSERT INTO withdrawal.lock_slot (slot_id, purpose) VALUES (0, 'audit sealer');
INSERT INTO withdrawal.lock_slot (slot_id, purpose)
SELECT k.kind * 65536 + b, k.purpose
  FROM (VALUES (1, 'account counter'), (2, 'device counter'), (3, 'ip counter')) k(kind, purpose),
	   pg_catalog.generate_series(0, 4095) b;
REVOKE ALL ON withdrawal.lock_slot FROM PUBLIC;

/*
 * Blocklist IP entries take the one spelling block() now stores: the IPv4
 * form of an IPv4-mapped IPv6 entry (which, as IPv6, could never contain
 * the IPv4 address a request is compared as) and inet's own output for the
 * rest, so that unblock() finds them.  An entry whose canonical spelling is
 * already listed stays as it was.
 */
UPDATE withdrawal.blocklist b
   SET value = c.canonical
  FROM (SELECT e.value, e.list_name,
			   pg_catalog.format('%s',
				   CASE WHEN e.net OPERATOR(pg_catalog.<<=) inet '::ffff:0.0.0.0/96'
						THEN pg_catalog.set_masklen(inet '0.0.0.0' OPERATOR(pg_catalog.+)
													(e.net OPERATOR(pg_catalog.-) inet '::ffff:0.0.0.0'),
													pg_catalog.masklen(e.net) OPERATOR(pg_catalog.-) 96)
						ELSE e.net END) AS canonical
		  FROM withdrawal.blocklist e
		 WHERE e.kind OPERATOR(pg_catalog.=) 'ip') c
 WHERE b.kind OPERATOR(pg_catalog.=) 'ip'
   AND b.value OPERATOR(pg_catalog.=) c.value
   AND b.list_name OPERATOR(pg_catalog.=) c.list_name
   AND c.canonical OPERATOR(pg_catalog.<>) c.value
   AND NOT EXISTS (SELECT FROM withdrawal.blocklist o
					WHERE o.kind OPERATOR(pg_catalog.=) 'ip'
					  AND o.list_name OPERATOR(pg_catalog.=) c.list_name
					  AND o.value OPERATOR(pg_catalog.=) c.canonical);

/* TRUNCATE is refused on every append-only table (00_core.sql, 40_webhook.sql) */
CREATE TRIGGER credit_no_truncate BEFORE TRUNCATE ON withdrawal.credit
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();
CREATE TRIGGER approval_no_truncate BEFORE TRUNCATE ON withdrawal.approval
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();
CREATE TRIGGER webhook_event_no_truncate BEFORE TRUNCATE ON withdrawal.webhook_event
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();

/* verify_audit() reads only; the chain head is published (20_api.sql) */
COMMENT ON FUNCTION withdrawal.verify_audit() IS
	'recomputes every sealed row hash and the chain, reading only; reports the first tampered row';

CREATE FUNCTION withdrawal.audit_head(OUT seq bigint, OUT audit_id bigint, OUT chain_hash bytea,
									  OUT sealed_at timestamptz)
	RETURNS record
	AS 'MODULE_PATHNAME', 'withdrawal_audit_head'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.audit_head() IS
	'the latest audit seal (seq 0 and zero hash before the first), to be stored outside the database as an anchor';

CREATE FUNCTION withdrawal.verify_audit_anchor(seq bigint, chain_hash bytea)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'withdrawal_verify_audit_anchor'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.verify_audit_anchor(bigint, bytea) IS
	'whether the audit chain recomputed from the rows still reaches chain_hash at seal seq, as audit_head() reported it';

REVOKE ALL ON FUNCTION withdrawal.audit_head(), withdrawal.verify_audit_anchor(bigint, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdrawal.audit_head() TO withdrawal_ops, withdrawal_auditor;
GRANT EXECUTE ON FUNCTION withdrawal.verify_audit_anchor(bigint, bytea) TO withdrawal_auditor;

-- events and webhooks (issue 14)

/* Webhook secret rotation and the pure verification (40_webhook.sql) */
ALTER TABLE withdrawal.processor
	ADD COLUMN webhook_secret_previous text,
	ADD COLUMN webhook_secret_previous_expires_at timestamptz,
	ADD CONSTRAINT processor_webhook_secret_previous_check
		CHECK ((webhook_secret_previous IS NULL) = (webhook_secret_previous_expires_at IS NULL));
COMMENT ON COLUMN withdrawal.processor.webhook_secret_previous IS
	'during a rotation, the name of the webhook secret used before webhook_secret, accepted until webhook_secret_previous_expires_at';
COMMENT ON COLUMN withdrawal.processor.webhook_secret_previous_expires_at IS
	'when webhook_secret_previous stops being accepted';

CREATE FUNCTION withdrawal.verify_webhook_signature(processor text, headers jsonb, body text,
													at timestamptz DEFAULT NULL)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_verify_webhook_signature'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.verify_webhook_signature(text, jsonb, text, timestamptz) IS
	'ops: verifies a webhook as receive_webhook() would have at time at (NULL: now) and returns which secret matched, "current" or "previous" (WD008 when none); stores and applies nothing';
REVOKE ALL ON FUNCTION withdrawal.verify_webhook_signature(text, jsonb, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdrawal.verify_webhook_signature(text, jsonb, text, timestamptz)
	TO withdrawal_ops;

/* Bulk dead-letter replay (30_dispatch.sql) */
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
REVOKE ALL ON FUNCTION withdrawal.retry_dead(text, text, timestamptz, timestamptz, boolean, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdrawal.retry_dead(text, text, timestamptz, timestamptz, boolean, integer)
	TO withdrawal_ops;

/* Status events (70_events.sql) */
CREATE SEQUENCE withdrawal.status_event_seq;
CREATE TABLE withdrawal.status_event (
	event_id	bigint PRIMARY KEY DEFAULT pg_catalog.nextval('withdrawal.status_event_seq'),
	withdrawal_id uuid NOT NULL,
	status		withdrawal.status NOT NULL,
	at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	xact_id		xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()
);
ALTER SEQUENCE withdrawal.status_event_seq OWNED BY withdrawal.status_event.event_id;
CREATE INDEX status_event_withdrawal ON withdrawal.status_event (withdrawal_id, event_id);
CREATE INDEX status_event_xact ON withdrawal.status_event (xact_id);
COMMENT ON TABLE withdrawal.status_event IS
	'append-only: one row per status change of a withdrawal (id, new status, time, transaction), for subscribers; pruned by prune_status_events()';
COMMENT ON COLUMN withdrawal.status_event.xact_id IS
	'the transaction that made the change: poll between two pg_snapshot_xmin() watermarks to read every event exactly once';
COMMENT ON INDEX withdrawal.status_event_withdrawal IS 'the history of a withdrawal';
COMMENT ON INDEX withdrawal.status_event_xact IS 'polling by transaction watermark';

CREATE FUNCTION withdrawal.status_event_record() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_status_event_record'
	LANGUAGE C;
COMMENT ON FUNCTION withdrawal.status_event_record() IS
	'trigger: appends a status_event row for a status change, and a NOTIFY on withdrawal_status when withdrawal.notify_status is on';
CREATE FUNCTION withdrawal.status_event_guard() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_status_event_guard'
	LANGUAGE C;
COMMENT ON FUNCTION withdrawal.status_event_guard() IS
	'trigger: refuses UPDATE of status events, and DELETE outside prune_status_events()';
REVOKE ALL ON FUNCTION withdrawal.status_event_record(), withdrawal.status_event_guard() FROM PUBLIC;

CREATE TRIGGER status_event_guard BEFORE UPDATE OR DELETE ON withdrawal.status_event
	FOR EACH ROW EXECUTE FUNCTION withdrawal.status_event_guard();
CREATE TRIGGER status_event_no_truncate BEFORE TRUNCATE ON withdrawal.status_event
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();

/*
 * Payouts dead before the update have no event yet; retry_dead() finds
 * when a payout died in the events, so each gets one, at the time of its
 * audit row.
 */
INSERT INTO withdrawal.status_event (withdrawal_id, status, at)
SELECT w.withdrawal_id, 'dead', coalesce(a.died_at, w.updated_at)
  FROM withdrawal.withdrawal w
  LEFT JOIN (SELECT l.withdrawal_id, pg_catalog.max(l.logged_at) AS died_at
			   FROM withdrawal.audit_log l
			  WHERE l.after_status OPERATOR(pg_catalog.=) 'dead'
			  GROUP BY l.withdrawal_id) a
	ON a.withdrawal_id OPERATOR(pg_catalog.=) w.withdrawal_id
 WHERE w.status OPERATOR(pg_catalog.=) 'dead'
 ORDER BY 3, 1;

CREATE TRIGGER withdrawal_status_event_update AFTER UPDATE OF status ON withdrawal.withdrawal
	FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
	EXECUTE FUNCTION withdrawal.status_event_record();

CREATE FUNCTION withdrawal.prune_status_events(older_than interval)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'withdrawal_prune_status_events'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.prune_status_events(interval) IS
	'ops: deletes status events older than older_than (at least 1 day), keeping every event of withdrawals that are not final; returns how many; for pg_cron';
REVOKE ALL ON FUNCTION withdrawal.prune_status_events(interval) FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('withdrawal.status_event', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.status_event_seq', '');

REVOKE ALL ON withdrawal.status_event FROM PUBLIC;
REVOKE ALL ON SEQUENCE withdrawal.status_event_seq FROM PUBLIC;
GRANT SELECT ON withdrawal.status_event TO withdrawal_app, withdrawal_ops, withdrawal_auditor;
GRANT EXECUTE ON FUNCTION withdrawal.prune_status_events(interval) TO withdrawal_ops;
GRANT INSERT ON withdrawal.status_event TO withdrawal_worker;
GRANT USAGE ON SEQUENCE withdrawal.status_event_seq TO withdrawal_worker;
