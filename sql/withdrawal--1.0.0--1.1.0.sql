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
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
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

/*
 * Key lookups are index lookups whatever the statistics say (20_api.sql):
 * plans kept from a VACUUM ANALYZE of empty tables made bulk loads
 * quadratic.
 */
ALTER FUNCTION withdrawal.credit(text, text, bigint, text, text, jsonb) SET enable_seqscan = off;
ALTER FUNCTION withdrawal.set_account(text, integer, boolean) SET enable_seqscan = off;
ALTER FUNCTION withdrawal.request(text, text, bigint, text, jsonb, text, jsonb) SET enable_seqscan = off;
ALTER FUNCTION withdrawal.cancel(uuid, text) SET enable_seqscan = off;
ALTER FUNCTION withdrawal.approve(uuid, text) SET enable_seqscan = off;
ALTER FUNCTION withdrawal.reject(uuid, text) SET enable_seqscan = off;
ALTER FUNCTION withdrawal.transition(uuid, text, text) SET enable_seqscan = off;
ALTER FUNCTION withdrawal.retry(uuid) SET enable_seqscan = off;
ALTER FUNCTION withdrawal.receive_webhook(text, jsonb, text) SET enable_seqscan = off;

/* Bulk credits (20_api.sql) */
CREATE FUNCTION withdrawal.credit_many(account_ids text[], currencies text[], amounts bigint[],
									   idempotency_keys text[], "references" text[] DEFAULT NULL,
									   metadata jsonb[] DEFAULT NULL)
	RETURNS TABLE (item integer, transfer_id uuid, available bigint, result text)
	AS 'MODULE_PATHNAME', 'withdrawal_credit_many'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.credit_many(text[], text[], bigint[], text[], text[], jsonb[]) IS
	'credit() for up to 100,000 items in one call, set-based; per item: new, replayed or mismatched';
REVOKE ALL ON FUNCTION withdrawal.credit_many(text[], text[], bigint[], text[], text[], jsonb[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdrawal.credit_many(text[], text[], bigint[], text[], text[], jsonb[]) TO withdrawal_app;

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

-- monitoring (issue 11): views and functions of sql/install/60_monitor.sql

/*
 * Each monitor_* view is a SELECT over the function of the same name, as
 * pg_stat_statements does.  The functions are SECURITY DEFINER, so that a
 * member of pg_monitor or withdrawal_ops reads the counts and the shared
 * state without any right on the tables, and they return only aggregates,
 * ids and messages: no account, destination or amount.  They read only,
 * and work on a standby; without shared_preload_libraries the shared
 * state is missing and shows as NULL (channels) or no rows (workers).
 */

/* The shared flow-control state of the channels (flow.c), for monitor_channels() */
CREATE FUNCTION withdrawal.channel_state(OUT channel text, OUT rate_per_second double precision,
										 OUT burst integer, OUT tokens double precision,
										 OUT blocked_until timestamptz, OUT throttled bigint,
										 OUT in_flight integer, OUT cannot_dispatch text)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdrawal_channel_state'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.channel_state() IS
	'the shared flow-control state of each channel the workers used since the server started (none without shared_preload_libraries); read through monitor_channels';

-- The status sets, from the C tables that enforce them (lifecycle.c).
CREATE FUNCTION withdrawal.status_info(OUT status text, OUT ordinal integer,
									   OUT holds_funds boolean, OUT keeps_outbox boolean,
									   OUT final boolean, OUT next_statuses text[])
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdrawal_status_info'
	LANGUAGE C IMMUTABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.status_info() IS
	'every withdrawal status: whether its amount is held, whether it keeps an outbox row, whether it is final, and the statuses it may move to';
REVOKE ALL ON FUNCTION withdrawal.status_info() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdrawal.status_info() TO withdrawal_app, withdrawal_ops, withdrawal_auditor;

/*
 * Open payouts per channel and status, every pair listed (zero included)
 * so that a gauge drops to 0 instead of disappearing.  The status test is
 * the predicate of the partial index withdrawal_open: paid, failed and
 * other final rows, the bulk of a big table, are never read.
 */
CREATE FUNCTION withdrawal.monitor_queue(OUT channel text, OUT status text, OUT payouts bigint,
										 OUT oldest_created_at timestamptz,
										 OUT oldest_updated_at timestamptz)
	RETURNS SETOF record
	LANGUAGE sql STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	WITH q AS (
		SELECT w.channel, w.status::text AS status, count(*) AS payouts,
			   min(w.created_at) AS oldest_created_at, min(w.updated_at) AS oldest_updated_at
		  FROM withdrawal.withdrawal w
		 WHERE w.status IN ('review', 'queued', 'dispatching', 'submitted', 'dead')
		 GROUP BY w.channel, w.status
	)
	SELECT c.channel, s.status, coalesce(q.payouts, 0), q.oldest_created_at, q.oldest_updated_at
	  FROM (SELECT name FROM withdrawal.channel UNION SELECT channel FROM q) c(channel)
	 CROSS JOIN (SELECT i.status, i.ordinal FROM withdrawal.status_info() i
				  WHERE i.holds_funds) s
	  LEFT JOIN q ON q.channel = c.channel AND q.status = s.status
	 ORDER BY c.channel, s.ordinal
$$;
COMMENT ON FUNCTION withdrawal.monitor_queue() IS
	'open payouts (review, queued, dispatching, submitted, dead) per channel and status: how many, the oldest request and the longest unchanged';
CREATE VIEW withdrawal.monitor_queue AS SELECT * FROM withdrawal.monitor_queue();
COMMENT ON VIEW withdrawal.monitor_queue IS
	'open payouts per channel and status, with the oldest; see docs/monitoring.md';

/*
 * Each channel's configuration, its shared flow-control state and its
 * part of the outbox (a small table: rows leave when payouts do).
 */
CREATE FUNCTION withdrawal.monitor_channels(OUT channel text, OUT processor text, OUT enabled boolean,
											OUT rate_per_second double precision, OUT burst integer,
											OUT max_in_flight integer, OUT tokens double precision,
											OUT blocked_until timestamptz, OUT blocked boolean,
											OUT throttled bigint, OUT in_flight integer,
											OUT cannot_dispatch text, OUT outbox bigint,
											OUT due bigint, OUT oldest_due_at timestamptz,
											OUT parked bigint)
	RETURNS SETOF record
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT c.name, c.processor, c.enabled, c.rate_per_second, c.burst, c.max_in_flight,
		   s.tokens, s.blocked_until,
		   CASE WHEN s.channel IS NOT NULL THEN coalesce(s.blocked_until > now(), false) END,
		   s.throttled, s.in_flight,
		   CASE WHEN c.enabled THEN s.cannot_dispatch END,
		   o.outbox, o.due, o.oldest_due_at, o.parked
	  FROM withdrawal.channel c
	  LEFT JOIN withdrawal.channel_state() s ON s.channel = c.name
	 CROSS JOIN LATERAL (
		SELECT count(*) AS outbox,
			   count(*) FILTER (WHERE x.parked_at IS NULL AND x.next_attempt_at <= now()
								AND (x.lease_until IS NULL OR x.lease_until < now())) AS due,
			   min(x.next_attempt_at) FILTER (WHERE x.parked_at IS NULL AND x.next_attempt_at <= now()
											  AND (x.lease_until IS NULL OR x.lease_until < now())) AS oldest_due_at,
			   count(*) FILTER (WHERE x.parked_at IS NOT NULL) AS parked
		  FROM withdrawal.outbox x
		 WHERE x.channel = c.name) o
	 ORDER BY c.name
$$;
COMMENT ON FUNCTION withdrawal.monitor_channels() IS
	'each channel: switch, limits, shared flow-control state (tokens, Retry-After pause, requests on the wire), why it cannot dispatch, and its outbox rows (due now, oldest due, parked)';
CREATE VIEW withdrawal.monitor_channels AS SELECT * FROM withdrawal.monitor_channels();
COMMENT ON VIEW withdrawal.monitor_channels IS
	'each channel''s switch, limits, flow-control state and outbox; see docs/monitoring.md';

CREATE FUNCTION withdrawal.monitor_workers(OUT worker integer, OUT pid integer, OUT state text,
										   OUT started_at timestamptz, OUT last_loop_at timestamptz,
										   OUT in_flight integer, OUT sent bigint, OUT recorded bigint,
										   OUT failed bigint, OUT dead bigint, OUT send_errors bigint,
										   OUT last_error text, OUT last_error_at timestamptz,
										   OUT last_send_error text, OUT last_send_error_at timestamptz)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdrawal_monitor_workers'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.monitor_workers() IS
	'each dispatcher worker as it reports itself in shared memory: pid (NULL: not running), state, last pass of its loop, counters since its start, last errors (none without shared_preload_libraries)';
CREATE VIEW withdrawal.monitor_workers AS SELECT * FROM withdrawal.monitor_workers();
COMMENT ON VIEW withdrawal.monitor_workers IS
	'the dispatcher workers: pid, state, liveness, counters, last errors; see docs/monitoring.md';

/*
 * One row of what needs a person or says the books are watched: payouts
 * held for review or dead, parked ones, the workers, the audit chain's
 * head and what is not sealed yet (the rows above the highest sealed id,
 * read by key), and the latest reconciliation.
 */
CREATE FUNCTION withdrawal.monitor_summary(OUT review bigint, OUT dead bigint, OUT parked bigint,
										   OUT workers integer, OUT workers_running integer,
										   OUT audit_head_seq bigint, OUT audit_head_sealed_at timestamptz,
										   OUT audit_unsealed bigint,
										   OUT audit_oldest_unsealed_at timestamptz,
										   OUT last_reconcile_run_id bigint,
										   OUT last_reconcile_processor text,
										   OUT last_reconcile_finished_at timestamptz,
										   OUT last_reconcile_discrepancies bigint)
	RETURNS record
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT (SELECT count(*) FROM withdrawal.withdrawal w WHERE w.status = 'review'),
		   (SELECT count(*) FROM withdrawal.withdrawal w WHERE w.status = 'dead'),
		   (SELECT count(*) FROM withdrawal.outbox o WHERE o.parked_at IS NOT NULL),
		   (SELECT count(*)::integer FROM withdrawal.monitor_workers()),
		   (SELECT count(*)::integer FROM withdrawal.monitor_workers() m WHERE m.pid IS NOT NULL),
		   coalesce(h.seq, 0), h.sealed_at, u.unsealed, u.oldest,
		   r.run_id, r.processor, r.finished_at, r.discrepancies
	  FROM (SELECT count(*) AS unsealed, min(a.logged_at) AS oldest
			  FROM withdrawal.audit_log a
			 WHERE a.audit_id > coalesce((SELECT max(s.audit_id) FROM withdrawal.audit_seal s), 0)) u
	  LEFT JOIN LATERAL (SELECT s.seq, s.sealed_at FROM withdrawal.audit_seal s
						  ORDER BY s.seq DESC LIMIT 1) h ON true
	  LEFT JOIN LATERAL (SELECT x.run_id, x.processor, x.finished_at, x.discrepancies
						   FROM withdrawal.recon_run x
						  WHERE x.finished_at IS NOT NULL
						  ORDER BY x.run_id DESC LIMIT 1) r ON true
$$;
COMMENT ON FUNCTION withdrawal.monitor_summary() IS
	'one row: payouts in review, dead and parked, workers configured and running, the audit chain head and its unsealed rows, the latest reconciliation';
CREATE VIEW withdrawal.monitor_summary AS SELECT * FROM withdrawal.monitor_summary();
COMMENT ON VIEW withdrawal.monitor_summary IS
	'review, dead and parked counts, workers, audit chain head and lag, latest reconciliation; see docs/monitoring.md';

/* The latest reconciliation of each processor (none: NULLs), by recon_run_processor */
CREATE FUNCTION withdrawal.monitor_reconcile(OUT processor text, OUT run_id bigint,
											 OUT period_start timestamptz, OUT period_end timestamptz,
											 OUT finished_at timestamptz, OUT discrepancies bigint)
	RETURNS SETOF record
	LANGUAGE sql STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT p.name, r.run_id, r.period_start, r.period_end, r.finished_at, r.discrepancies
	  FROM withdrawal.processor p
	  LEFT JOIN LATERAL (SELECT x.run_id, x.period_start, x.period_end, x.finished_at, x.discrepancies
						   FROM withdrawal.recon_run x
						  WHERE x.processor = p.name
						  ORDER BY x.run_id DESC LIMIT 1) r ON true
	 ORDER BY p.name
$$;
COMMENT ON FUNCTION withdrawal.monitor_reconcile() IS
	'the latest reconciliation run of each processor (NULLs for one never reconciled)';
CREATE VIEW withdrawal.monitor_reconcile AS SELECT * FROM withdrawal.monitor_reconcile();
COMMENT ON VIEW withdrawal.monitor_reconcile IS
	'the latest reconciliation of each processor; see docs/monitoring.md';

/* PUBLIC keeps no right (95_privileges.sql of the install) */
REVOKE ALL ON FUNCTION withdrawal.channel_state(), withdrawal.monitor_queue(),
	withdrawal.monitor_channels(), withdrawal.monitor_workers(), withdrawal.monitor_summary(),
	withdrawal.monitor_reconcile() FROM PUBLIC;
REVOKE ALL ON withdrawal.monitor_queue, withdrawal.monitor_channels, withdrawal.monitor_workers,
	withdrawal.monitor_summary, withdrawal.monitor_reconcile FROM PUBLIC;

/*
 * Readable by monitoring agents (pg_monitor) and operators; channel_state()
 * is read through monitor_channels() only.  pg_monitor gets USAGE on the
 * schema and nothing else in it.
 */
GRANT USAGE ON SCHEMA withdrawal TO pg_monitor;
GRANT EXECUTE ON FUNCTION withdrawal.monitor_queue(), withdrawal.monitor_channels(),
	withdrawal.monitor_workers(), withdrawal.monitor_summary(), withdrawal.monitor_reconcile()
	TO pg_monitor, withdrawal_ops, withdrawal_auditor;
GRANT SELECT ON withdrawal.monitor_queue, withdrawal.monitor_channels, withdrawal.monitor_workers,
	withdrawal.monitor_summary, withdrawal.monitor_reconcile
	TO pg_monitor, withdrawal_ops, withdrawal_auditor;

-- backup and restore (issue 11)

/*
 * Seeded rows: the rows CREATE EXTENSION writes carry a seed state, so
 * that the configuration tables can be dumped whole and a restore keeps
 * the changes made to them (60_restore.sql of the install).  Rows of
 * 1.0.0 with a seeded key are 'default' when they still have the install
 * values and 'changed' otherwise; rows operators added have none.
 */
CREATE DOMAIN withdrawal.seed_state AS text CHECK (VALUE IN ('default', 'changed'));
COMMENT ON DOMAIN withdrawal.seed_state IS
	'state of a row CREATE EXTENSION wrote: default (as installed) or changed; NULL for rows operators added';

ALTER TABLE withdrawal.currency ADD COLUMN seed withdrawal.seed_state;
COMMENT ON COLUMN withdrawal.currency.seed IS
	'default or changed for the codes CREATE EXTENSION installs (they cannot be deleted), NULL for codes operators added; maintained by the extension';
ALTER TABLE withdrawal.processor ADD COLUMN seed withdrawal.seed_state;
COMMENT ON COLUMN withdrawal.processor.seed IS
	'default or changed for the sandbox processor CREATE EXTENSION installs (it cannot be deleted), NULL for processors operators added; maintained by the extension';
ALTER TABLE withdrawal.channel ADD COLUMN seed withdrawal.seed_state;
COMMENT ON COLUMN withdrawal.channel.seed IS
	'default or changed for the sandbox channel CREATE EXTENSION installs (it cannot be deleted: disable it), NULL for channels operators added; maintained by the extension';
ALTER TABLE withdrawal.policy ADD COLUMN seed withdrawal.seed_state;
COMMENT ON COLUMN withdrawal.policy.seed IS
	'default or changed for the ''*'' policy CREATE EXTENSION installs (it cannot be deleted: tighten it), NULL for policies operators added; maintained by the extension';

UPDATE withdrawal.currency c
   SET seed = CASE WHEN c.minor_unit = s.minor_unit THEN 'default' ELSE 'changed' END
  FROM (VALUES
		('AED', 2), ('AFN', 2), ('ALL', 2), ('AMD', 2), ('ANG', 2), ('AOA', 2), ('ARS', 2), ('AUD', 2),
		('AWG', 2), ('AZN', 2), ('BAM', 2), ('BBD', 2), ('BDT', 2), ('BGN', 2), ('BHD', 3), ('BIF', 0),
		('BMD', 2), ('BND', 2), ('BOB', 2), ('BRL', 2), ('BSD', 2), ('BTN', 2), ('BWP', 2), ('BYN', 2),
		('BZD', 2), ('CAD', 2), ('CDF', 2), ('CHF', 2), ('CLP', 0), ('CNY', 2), ('COP', 2), ('CRC', 2),
		('CUP', 2), ('CVE', 2), ('CZK', 2), ('DJF', 0), ('DKK', 2), ('DOP', 2), ('DZD', 2), ('EGP', 2),
		('ERN', 2), ('ETB', 2), ('EUR', 2), ('FJD', 2), ('FKP', 2), ('GBP', 2), ('GEL', 2), ('GHS', 2),
		('GIP', 2), ('GMD', 2), ('GNF', 0), ('GTQ', 2), ('GYD', 2), ('HKD', 2), ('HNL', 2), ('HTG', 2),
		('HUF', 2), ('IDR', 2), ('ILS', 2), ('INR', 2), ('IQD', 3), ('IRR', 2), ('ISK', 0), ('JMD', 2),
		('JOD', 3), ('JPY', 0), ('KES', 2), ('KGS', 2), ('KHR', 2), ('KMF', 0), ('KPW', 2), ('KRW', 0),
		('KWD', 3), ('KYD', 2), ('KZT', 2), ('LAK', 2), ('LBP', 2), ('LKR', 2), ('LRD', 2), ('LSL', 2),
		('LYD', 3), ('MAD', 2), ('MDL', 2), ('MGA', 2), ('MKD', 2), ('MMK', 2), ('MNT', 2), ('MOP', 2),
		('MRU', 2), ('MUR', 2), ('MVR', 2), ('MWK', 2), ('MXN', 2), ('MYR', 2), ('MZN', 2), ('NAD', 2),
		('NGN', 2), ('NIO', 2), ('NOK', 2), ('NPR', 2), ('NZD', 2), ('OMR', 3), ('PAB', 2), ('PEN', 2),
		('PGK', 2), ('PHP', 2), ('PKR', 2), ('PLN', 2), ('PYG', 0), ('QAR', 2), ('RON', 2), ('RSD', 2),
		('RUB', 2), ('RWF', 0), ('SAR', 2), ('SBD', 2), ('SCR', 2), ('SDG', 2), ('SEK', 2), ('SGD', 2),
		('SHP', 2), ('SLE', 2), ('SOS', 2), ('SRD', 2), ('SSP', 2), ('STN', 2), ('SVC', 2), ('SYP', 2),
		('SZL', 2), ('THB', 2), ('TJS', 2), ('TMT', 2), ('TND', 3), ('TOP', 2), ('TRY', 2), ('TTD', 2),
		('TWD', 2), ('TZS', 2), ('UAH', 2), ('UGX', 0), ('USD', 2), ('UYU', 2), ('UZS', 2), ('VES', 2),
		('VND', 0), ('VUV', 0), ('WST', 2), ('XAF', 0), ('XCD', 2), ('XOF', 0), ('XPF', 0), ('YER', 2),
		('ZAR', 2), ('ZMW', 2), ('ZWL', 2)
	   ) s(code, minor_unit)
 WHERE c.code = s.code;
UPDATE withdrawal.processor
   SET seed = CASE WHEN (driver, base_url, api_secret, webhook_secret, webhook_scheme, webhook_tolerance,
						 connect_timeout_ms, request_timeout_ms, settings)
						IS NOT DISTINCT FROM
						('sandbox'::text, NULL::text, NULL::text, NULL::text, 'hmac-sha256'::text,
						 '300 seconds'::interval, 2000, 10000, '{}'::jsonb)
				   THEN 'default' ELSE 'changed' END
 WHERE name = 'sandbox';
UPDATE withdrawal.channel
   SET seed = CASE WHEN (processor, enabled, rate_per_second, burst, max_in_flight, open_from, open_until,
						 timezone, release_percent)
						IS NOT DISTINCT FROM
						('sandbox'::text, true, NULL::float8, 1, NULL::integer, NULL::time, NULL::time,
						 'UTC'::text, 100)
				   THEN 'default' ELSE 'changed' END
 WHERE name = 'sandbox';
UPDATE withdrawal.policy
   SET seed = CASE WHEN (min_amount, max_amount, daily_amount_limit, daily_count_limit, velocity_window,
						 velocity_account_limit, velocity_device_limit, velocity_ip_limit,
						 review_threshold, kyc_threshold, kyc_level_required, four_eyes_threshold, timezone)
						IS NOT DISTINCT FROM
						(1::bigint, NULL::bigint, NULL::bigint, NULL::integer, '1 hour'::interval,
						 NULL::integer, NULL::integer, NULL::integer,
						 NULL::bigint, NULL::bigint, 1, NULL::bigint, 'UTC'::text)
				   THEN 'default' ELSE 'changed' END
 WHERE currency = '*';

/*
 * A restore (pg_restore, or psql of a plain dump) runs CREATE EXTENSION,
 * which writes the seeded rows again with their install values, and then
 * loads the dumped rows of every table registered in 90_dump.sql, the
 * configuration tables included.  The dumped row of a seeded key must win
 * over the re-seeded default, or a restore would undo every change made to
 * the defaults (a tightened '*' policy, a disabled sandbox channel).
 *
 * The trigger config_seed() does it: an INSERT of a key whose row is still
 * as installed (seed 'default') updates that row in place with the
 * inserted values and inserts nothing.  pg_restore's COPY fires row
 * triggers, so the dumped row replaces the default whatever order the
 * tables are loaded in; it is an UPDATE and not a DELETE and INSERT
 * because other rows reference the seeded ones (the sandbox channel its
 * processor, wallets their currency).  The dumped row carries its own seed
 * state, so a row that was changed stays 'changed' after the restore.
 *
 * An UPDATE that changes a seeded row marks it 'changed'; from then on an
 * INSERT of its key is a unique violation, as for any other row, and not a
 * silent reset.  Deleting a seeded row (or changing its key, or TRUNCATE)
 * is refused with 55000: nothing in a dump can say that a row is gone, so
 * the next restore would bring the default back, enabled and permissive.
 * Operators disable the sandbox channel and tighten the '*' policy instead.
 */
CREATE FUNCTION withdrawal.config_seed() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_config_seed'
	LANGUAGE C;
COMMENT ON FUNCTION withdrawal.config_seed() IS
	'trigger: an INSERT of a key whose row is as CREATE EXTENSION wrote it replaces that row (restores); an UPDATE marks a seeded row changed; seeded rows cannot be deleted (55000)';

CREATE TRIGGER currency_seed BEFORE INSERT OR UPDATE OR DELETE ON withdrawal.currency
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER currency_seed_truncate BEFORE TRUNCATE ON withdrawal.currency
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER processor_seed BEFORE INSERT OR UPDATE OR DELETE ON withdrawal.processor
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER processor_seed_truncate BEFORE TRUNCATE ON withdrawal.processor
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER channel_seed BEFORE INSERT OR UPDATE OR DELETE ON withdrawal.channel
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER channel_seed_truncate BEFORE TRUNCATE ON withdrawal.channel
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER policy_seed BEFORE INSERT OR UPDATE OR DELETE ON withdrawal.policy
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER policy_seed_truncate BEFORE TRUNCATE ON withdrawal.policy
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_seed();

/*
 * The installation whose workers may dispatch this database's payouts:
 * the database system (pg_control_system().system_identifier) and the
 * database (its OID; the name is for people), written by CREATE EXTENSION
 * and dumped with the data.  A copy restored elsewhere (another database,
 * another cluster) loads the binding of the original over its own, and its
 * workers hold dispatch, sending nothing, until an operator calls
 * resume_dispatch() there.  A physical standby, once promoted, keeps both
 * identifiers and dispatches on; pg_upgrade creates a new system
 * identifier, so dispatch is held after it until resumed
 * (docs/backup-restore.md).
 */
CREATE TABLE withdrawal.installation (
	singleton	boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	system_identifier bigint NOT NULL,
	database_oid oid NOT NULL,
	database_name name NOT NULL,
	bound_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	bound_by	name NOT NULL DEFAULT SESSION_USER,
	seed		withdrawal.seed_state
);
COMMENT ON TABLE withdrawal.installation IS
	'the database system and database whose workers may dispatch these payouts; one row, dumped, rebound by resume_dispatch()';
COMMENT ON COLUMN withdrawal.installation.seed IS
	'default while the row is the one CREATE EXTENSION wrote, changed after resume_dispatch(); maintained by the extension';
-- bound since before the payouts 1.0.0 queued here: the workers do not
-- send a payout queued before a binding that is still as created (a
-- restore in progress), and these were queued by this very database
INSERT INTO withdrawal.installation (system_identifier, database_oid, database_name, bound_at, seed)
SELECT s.system_identifier, d.oid, d.datname,
	   LEAST(pg_catalog.now(), (SELECT pg_catalog.min(enqueued_at) FROM withdrawal.outbox)),
	   'default'
  FROM pg_catalog.pg_control_system() s, pg_catalog.pg_database d
 WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database();
CREATE TRIGGER installation_seed BEFORE INSERT OR UPDATE OR DELETE ON withdrawal.installation
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER installation_seed_truncate BEFORE TRUNCATE ON withdrawal.installation
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_seed();
/* the workers re-read the binding when it changes, and wake */
CREATE TRIGGER installation_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON withdrawal.installation
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_changed();

CREATE FUNCTION withdrawal.dispatch_binding(OUT held boolean,
											OUT bound_system_identifier bigint,
											OUT bound_database_oid oid,
											OUT bound_database_name name,
											OUT bound_at timestamptz,
											OUT bound_by name,
											OUT system_identifier bigint,
											OUT database_oid oid,
											OUT database_name name)
	RETURNS record
	AS 'MODULE_PATHNAME', 'withdrawal_dispatch_binding'
	LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.dispatch_binding() IS
	'the installation the payouts are bound to and the current one; held is true when they differ and the workers send nothing';

CREATE FUNCTION withdrawal.resume_dispatch(reason text)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'withdrawal_resume_dispatch'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.resume_dispatch(text) IS
	'ops: binds the payouts to this installation so that its workers dispatch them (after a restore or pg_upgrade); audited with the reason; false when dispatch was not held';

GRANT EXECUTE ON FUNCTION withdrawal.dispatch_binding() TO withdrawal_ops, withdrawal_auditor;
GRANT EXECUTE ON FUNCTION withdrawal.resume_dispatch(text) TO withdrawal_ops;

REVOKE ALL ON FUNCTION withdrawal.config_seed(), withdrawal.dispatch_binding(),
	withdrawal.resume_dispatch(text) FROM PUBLIC;
REVOKE ALL ON withdrawal.installation FROM PUBLIC;
GRANT SELECT ON withdrawal.installation TO withdrawal_worker;

/*
 * Everything is dumped now, the sequences behind identity columns and the
 * configuration tables whole included (90_dump.sql of the install).
 */
SELECT pg_catalog.pg_extension_config_dump('withdrawal.currency', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.wallet_wallet_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.audit_log_audit_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.processor', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.channel', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.policy', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.installation', '');

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

-- review expiry and channel caps (issue 13)

COMMENT ON FUNCTION withdrawal.config_check() IS
	'trigger: refuses configuration values that would fail later (time zones, rates, processor URLs, review expiry, daily caps)';

/*
 * Withdrawals left in review too long are rejected and refunded by
 * expire_reviews(), which the first worker runs every minute.
 */
ALTER TABLE withdrawal.policy
	ADD COLUMN review_expires_after interval CHECK (review_expires_after > '0'::interval);
COMMENT ON COLUMN withdrawal.policy.review_expires_after IS
	'a withdrawal left in review this long after its request is rejected and refunded by expire_reviews(); NULL: never';

/*
 * Daily caps of channels: the processor's allocation for a channel day,
 * counted in withdrawal.channel_usage when requests are accepted.  A
 * channel with a cap pays one currency, cap_currency.
 */
ALTER TABLE withdrawal.channel
	ADD COLUMN daily_count_cap integer CHECK (daily_count_cap >= 1),
	ADD COLUMN daily_amount_cap bigint CHECK (daily_amount_cap >= 1),
	ADD COLUMN cap_currency text REFERENCES withdrawal.currency,
	ADD CONSTRAINT channel_cap_currency
		CHECK ((cap_currency IS NULL) = (daily_count_cap IS NULL AND daily_amount_cap IS NULL));
COMMENT ON TABLE withdrawal.channel IS 'payout channels: processor, rate limit, in-flight cap, opening window, staged release, daily caps';
COMMENT ON COLUMN withdrawal.channel.daily_count_cap IS
	'most withdrawals accepted per channel day (local midnight in timezone); NULL: no cap';
COMMENT ON COLUMN withdrawal.channel.daily_amount_cap IS
	'most money accepted per channel day, in minor units of cap_currency; NULL: no cap';
COMMENT ON COLUMN withdrawal.channel.cap_currency IS
	'the one currency a channel with a daily cap pays (others get WD004); set exactly when a cap is';

CREATE TABLE withdrawal.channel_usage (
	channel		text NOT NULL,
	day			date NOT NULL,
	requests	bigint NOT NULL CHECK (requests >= 0),
	amount		bigint NOT NULL CHECK (amount >= 0),
	PRIMARY KEY (channel, day)
);
COMMENT ON TABLE withdrawal.channel_usage IS
	'withdrawals and amount (in cap_currency) accepted per capped channel and channel day; the daily caps are checked against it';

CREATE FUNCTION withdrawal.expire_reviews()
	RETURNS integer
	AS 'MODULE_PATHNAME', 'withdrawal_expire_reviews'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.expire_reviews() IS
	'ops: rejects and refunds the withdrawals left in review longer than their policy''s review_expires_after, each audited; returns how many; the worker runs it every minute';

SELECT pg_catalog.pg_extension_config_dump('withdrawal.channel_usage', '');

REVOKE ALL ON FUNCTION withdrawal.expire_reviews() FROM PUBLIC;
REVOKE ALL ON withdrawal.channel_usage FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdrawal.expire_reviews() TO withdrawal_ops;
GRANT SELECT ON withdrawal.channel_usage TO withdrawal_ops, withdrawal_auditor;
GRANT SELECT ON withdrawal.policy, withdrawal.approval, withdrawal.channel_usage TO withdrawal_worker;

-- circuit breaker and audited configuration (issue 14)

/*
 * The circuit breaker of each channel is shown by channel_state() and
 * monitor_channels (60_monitor.sql of the install): their columns change,
 * so they are made again, with their rights.
 */
DROP VIEW withdrawal.monitor_channels;
DROP FUNCTION withdrawal.monitor_channels();
DROP FUNCTION withdrawal.channel_state();

/* The shared flow-control state of the channels (flow.c), for monitor_channels() */
CREATE FUNCTION withdrawal.channel_state(OUT channel text, OUT rate_per_second double precision,
										 OUT burst integer, OUT tokens double precision,
										 OUT blocked_until timestamptz, OUT throttled bigint,
										 OUT in_flight integer, OUT cannot_dispatch text,
										 OUT breaker text, OUT breaker_until timestamptz,
										 OUT breaker_failures integer, OUT breaker_opens bigint)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdrawal_channel_state'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.channel_state() IS
	'the shared flow-control state and circuit breaker of each channel the workers used since the server started (none without shared_preload_libraries); read through monitor_channels';

/*
 * Each channel's configuration, its shared flow-control state (circuit
 * breaker included) and its part of the outbox (a small table: rows leave
 * when payouts do).
 */
CREATE FUNCTION withdrawal.monitor_channels(OUT channel text, OUT processor text, OUT enabled boolean,
											OUT rate_per_second double precision, OUT burst integer,
											OUT max_in_flight integer, OUT tokens double precision,
											OUT blocked_until timestamptz, OUT blocked boolean,
											OUT throttled bigint, OUT in_flight integer,
											OUT breaker text, OUT breaker_until timestamptz,
											OUT breaker_failures integer, OUT breaker_opens bigint,
											OUT cannot_dispatch text, OUT outbox bigint,
											OUT due bigint, OUT oldest_due_at timestamptz,
											OUT parked bigint)
	RETURNS SETOF record
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT c.name, c.processor, c.enabled, c.rate_per_second, c.burst, c.max_in_flight,
		   s.tokens, s.blocked_until,
		   CASE WHEN s.channel IS NOT NULL THEN coalesce(s.blocked_until > now(), false) END,
		   s.throttled, s.in_flight,
		   s.breaker, s.breaker_until, s.breaker_failures, s.breaker_opens,
		   CASE WHEN c.enabled THEN s.cannot_dispatch END,
		   o.outbox, o.due, o.oldest_due_at, o.parked
	  FROM withdrawal.channel c
	  LEFT JOIN withdrawal.channel_state() s ON s.channel = c.name
	 CROSS JOIN LATERAL (
		SELECT count(*) AS outbox,
			   count(*) FILTER (WHERE x.parked_at IS NULL AND x.next_attempt_at <= now()
								AND (x.lease_until IS NULL OR x.lease_until < now())) AS due,
			   min(x.next_attempt_at) FILTER (WHERE x.parked_at IS NULL AND x.next_attempt_at <= now()
											  AND (x.lease_until IS NULL OR x.lease_until < now())) AS oldest_due_at,
			   count(*) FILTER (WHERE x.parked_at IS NOT NULL) AS parked
		  FROM withdrawal.outbox x
		 WHERE x.channel = c.name) o
	 ORDER BY c.name
$$;
COMMENT ON FUNCTION withdrawal.monitor_channels() IS
	'each channel: switch, limits, shared flow-control state (tokens, Retry-After pause, requests on the wire, circuit breaker), why it cannot dispatch, and its outbox rows (due now, oldest due, parked)';
CREATE VIEW withdrawal.monitor_channels AS SELECT * FROM withdrawal.monitor_channels();
COMMENT ON VIEW withdrawal.monitor_channels IS
	'each channel''s switch, limits, flow-control state, circuit breaker and outbox; see docs/monitoring.md';

REVOKE ALL ON FUNCTION withdrawal.channel_state(), withdrawal.monitor_channels() FROM PUBLIC;
REVOKE ALL ON withdrawal.monitor_channels FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdrawal.monitor_channels() TO pg_monitor, withdrawal_ops, withdrawal_auditor;
GRANT SELECT ON withdrawal.monitor_channels TO pg_monitor, withdrawal_ops, withdrawal_auditor;

/* Audited configuration: 62_config_audit.sql of the install */

/*
 * Every change of a configuration row (policy, channels, processors,
 * currencies, the blocklist) appends an audit row: action config_insert,
 * config_update or config_delete, actor session_user, and the row before
 * and after as jsonb (detail: table, before, after, and the columns an
 * UPDATE changed).  The tables hold no secret: processors name theirs
 * (api_secret, webhook_secret are names in withdrawal.secrets_file), and a
 * base_url's user information is replaced by [redacted] all the same.
 *
 * Not audited by the trigger:
 * - block() and unblock(), which audit their changes themselves (actions
 *   block, block_update, unblock);
 * - rows loaded by COPY: that is how a restore loads these tables, and the
 *   restored audit log already holds their changes (audit rows written
 *   during the load would also take identity values the restored log
 *   uses, and fail the restore).  The seeded row a restore replaces
 *   (60_restore.sql) is replaced under that COPY, and not audited either;
 * - UPDATEs that change nothing.
 * TRUNCATE is refused on the tables with seeded rows (config_seed) and
 * audited, with the number of rows, on the blocklist.
 *
 * The triggers are created after CREATE EXTENSION has written the seeded
 * rows, so that an installation starts with no configuration audit rows.
 */
CREATE FUNCTION withdrawal.config_audit() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_config_audit'
	LANGUAGE C SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.config_audit() IS
	'trigger: appends an audit row (config_insert, config_update, config_delete, config_truncate) with the row before and after for each change of a configuration table; not for COPY (restores) nor block()/unblock(), which audit themselves';

CREATE TRIGGER currency_audit AFTER INSERT OR UPDATE OR DELETE ON withdrawal.currency
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_audit();
CREATE TRIGGER processor_audit AFTER INSERT OR UPDATE OR DELETE ON withdrawal.processor
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_audit();
CREATE TRIGGER channel_audit AFTER INSERT OR UPDATE OR DELETE ON withdrawal.channel
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_audit();
CREATE TRIGGER policy_audit AFTER INSERT OR UPDATE OR DELETE ON withdrawal.policy
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_audit();
CREATE TRIGGER blocklist_audit AFTER INSERT OR UPDATE OR DELETE ON withdrawal.blocklist
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_audit();
CREATE TRIGGER blocklist_audit_truncate BEFORE TRUNCATE ON withdrawal.blocklist
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_audit();
REVOKE ALL ON FUNCTION withdrawal.config_audit() FROM PUBLIC;

-- partial returns (issue 13)
/*
 * A processor may return a paid payout in parts.  Each part is a ledger
 * movement partial_return (settled -> available), which may come several
 * times per withdrawal, so the once-only index no longer covers it;
 * withdrawal.returned_amount, updated in the same statement as the
 * entries, bounds the parts by the amount.
 */
ALTER DOMAIN withdrawal.ledger_kind DROP CONSTRAINT ledger_kind_check;
ALTER DOMAIN withdrawal.ledger_kind ADD CONSTRAINT ledger_kind_check
	CHECK (VALUE IN ('credit', 'debit', 'refund', 'settle', 'return', 'partial_return'));
DROP INDEX withdrawal.ledger_entry_once;
CREATE UNIQUE INDEX ledger_entry_once ON withdrawal.ledger_entry (withdrawal_id, kind)
	WHERE leg = 1 AND withdrawal_id IS NOT NULL AND kind <> 'partial_return';
COMMENT ON INDEX withdrawal.ledger_entry_once IS 'at most one debit, refund, settle and return per withdrawal';
ALTER TABLE withdrawal.withdrawal ADD COLUMN returned_amount bigint NOT NULL DEFAULT 0,
	ADD CONSTRAINT withdrawal_returned_amount_check
		CHECK (returned_amount >= 0 AND returned_amount <= amount);
COMMENT ON COLUMN withdrawal.withdrawal.returned_amount IS
	'the part of a paid payout the processor returned (partial returns), credited back to the wallet; the amount once returned';
-- a withdrawal returned under 1.0.0 was returned whole
UPDATE withdrawal.withdrawal SET returned_amount = amount WHERE status = 'returned';

-- payout methods (issue 13)

/* withdrawal: bound payout methods (issue 13) */

/*
 * A payout method is a destination bound to an account and a channel
 * ahead of time, so that a request can name it ({"method_id": ...}) instead
 * of carrying a destination of its own: a stolen application session can
 * then only pay to destinations the account already bound and ops
 * verified.  Removed methods stay (withdrawals and the audit log refer to
 * them); the partial unique index makes add_payout_method() idempotent
 * over live methods only, so a removed destination can be bound again.
 * The cooling-off period is not stored here: it is per currency
 * (policy.method_cooling_off) and a method is not, so request() adds it to
 * verified_at.
 */
CREATE TABLE withdrawal.payout_method (
	method_id	uuid PRIMARY KEY,
	account_id	withdrawal.account_ref NOT NULL,
	channel		text NOT NULL,
	destination withdrawal.json_object NOT NULL
				CHECK (pg_catalog.octet_length(destination::text) <= 2048),
	label		text CHECK (pg_catalog.octet_length(label) BETWEEN 1 AND 128),
	status		text NOT NULL DEFAULT 'pending'
				CHECK (status IN ('pending', 'verified', 'removed')),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	verified_at timestamptz,
	removed_at	timestamptz,
	CHECK ((status = 'pending') = (verified_at IS NULL AND removed_at IS NULL)
		   OR status = 'removed'),
	CHECK ((status = 'removed') = (removed_at IS NOT NULL))
);
CREATE UNIQUE INDEX payout_method_live ON withdrawal.payout_method
	(account_id, channel, pg_catalog.md5(destination::text)) WHERE status <> 'removed';
COMMENT ON TABLE withdrawal.payout_method IS
	'payout destinations bound to an account and a channel; requests name them by method_id';
COMMENT ON COLUMN withdrawal.payout_method.status IS
	'pending (added, not yet usable), verified (usable after the policy''s method_cooling_off) or removed (never usable again)';

ALTER TABLE withdrawal.withdrawal ADD COLUMN method_id uuid;
COMMENT ON COLUMN withdrawal.withdrawal.method_id IS
	'the payout method the request named (destination holds its destination as resolved then), or NULL for a free destination';

ALTER TABLE withdrawal.policy ADD COLUMN free_destinations boolean NOT NULL DEFAULT true;
ALTER TABLE withdrawal.policy ADD COLUMN method_cooling_off interval
	CHECK (method_cooling_off >= '0'::interval);
COMMENT ON COLUMN withdrawal.policy.free_destinations IS
	'whether request() accepts a destination that is not a payout method (default true for compatibility; set false before going live)';
COMMENT ON COLUMN withdrawal.policy.method_cooling_off IS
	'how long after its verification a payout method can first be paid to; NULL: at once';

CREATE FUNCTION withdrawal.add_payout_method(account_id text, channel text, destination jsonb,
											 label text DEFAULT NULL)
	RETURNS uuid
	AS 'MODULE_PATHNAME', 'withdrawal_add_payout_method'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.add_payout_method(text, text, jsonb, text) IS
	'binds a destination to an account and a channel as a pending payout method; the same live destination returns its method';

CREATE FUNCTION withdrawal.verify_payout_method(method_id uuid)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_verify_payout_method'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.verify_payout_method(uuid) IS
	'ops: marks a pending payout method verified; it is usable once the policy''s cooling-off is over';

CREATE FUNCTION withdrawal.remove_payout_method(method_id uuid)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_remove_payout_method'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.remove_payout_method(uuid) IS
	'removes a payout method for good; requests naming it get WD007, replays still replay';

GRANT EXECUTE ON FUNCTION withdrawal.add_payout_method(text, text, jsonb, text),
	withdrawal.remove_payout_method(uuid)
	TO withdrawal_app, withdrawal_ops;
GRANT EXECUTE ON FUNCTION withdrawal.verify_payout_method(uuid) TO withdrawal_ops;
GRANT SELECT ON withdrawal.payout_method TO withdrawal_ops, withdrawal_auditor;
/* PUBLIC gets nothing (95_privileges does the same for a fresh install) */
REVOKE ALL ON FUNCTION withdrawal.add_payout_method(text, text, jsonb, text),
	withdrawal.verify_payout_method(uuid),
	withdrawal.remove_payout_method(uuid) FROM PUBLIC;
REVOKE ALL ON withdrawal.payout_method FROM PUBLIC;

/* Dumped with all its rows (see 90_dump.sql) */
SELECT pg_catalog.pg_extension_config_dump('withdrawal.payout_method', '');

-- statements and batch settlements (issue 13)

/*
 * A statement pages through one wallet's ledger by txn_id, so it needs the
 * wallet's transactions in txn_id order: no other index leads with
 * wallet_id.  Every transaction has a leg 2 and concerns one wallet, so
 * indexing leg 2 only finds them all, at one index insert per movement
 * rather than two; the legs are then fetched by primary key.  Inserts go
 * to a leaf per wallet, not to the right edge like the primary key's:
 * that, and the full-page images after each checkpoint, is the cost on
 * credit() (test/bench/statement.sh measures it).
 */
CREATE INDEX ledger_entry_wallet ON withdrawal.ledger_entry (wallet_id, txn_id) WHERE leg = 2;
COMMENT ON INDEX withdrawal.ledger_entry_wallet IS
	'a wallet''s ledger transactions in txn_id order (by their leg 2), for statement()';

CREATE FUNCTION withdrawal.statement(account_id text, currency text,
									 after_txn_id bigint DEFAULT NULL,
									 page_size integer DEFAULT 100)
	RETURNS TABLE (txn_id bigint, kind text, bucket text, amount bigint,
				   balance_after bigint, withdrawal_id uuid, credit_id uuid,
				   withdrawal_status text, created_at timestamptz)
	AS 'MODULE_PATHNAME', 'withdrawal_statement'
	LANGUAGE C STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.statement(text, text, bigint, integer) IS
	'a wallet''s ledger movements after after_txn_id, page_size ledger transactions at a time, with running balances';

GRANT EXECUTE ON FUNCTION withdrawal.statement(text, text, bigint, integer)
	TO withdrawal_app, withdrawal_ops, withdrawal_auditor;
REVOKE ALL ON FUNCTION withdrawal.statement(text, text, bigint, integer) FROM PUBLIC;

/* The processor drivers of the library (issue 12: the driver registry) */
CREATE FUNCTION withdrawal.drivers(OUT name text, OUT network boolean,
								   OUT settles_by_itself boolean, OUT bulk_submit boolean)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdrawal_drivers'
	LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.drivers() IS
	'the processor drivers of the loaded library: whether each sends over the network, settles by itself (sandbox), has its accepted sends recorded in bulk';
REVOKE ALL ON FUNCTION withdrawal.drivers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdrawal.drivers() TO withdrawal_ops, withdrawal_auditor;

/* The paypal driver (PayPal Payouts) */
ALTER TABLE withdrawal.processor DROP CONSTRAINT processor_driver_check,
	ADD CONSTRAINT processor_driver_check CHECK (driver IN ('sandbox', 'http', 'stripe', 'paypal'));

/*
 * check_invariants() is SQL from 1.1.0 on (15_invariants.sql): the same
 * nine checks, in the same order and shape, readable with \sf.
 */
DROP FUNCTION withdrawal.check_invariants();
CREATE FUNCTION withdrawal.check_invariants()
	RETURNS TABLE (check_name text, violations bigint, detail text)
	LANGUAGE sql STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
SELECT c.check_name, c.violations, c.detail FROM (
	/* each wallet's balances are the sums of its ledger entries */
	SELECT 1, 'wallet_matches_ledger', count(*),
		   string_agg(wallet_id::text, ', ' ORDER BY wallet_id) FILTER (WHERE n <= 10)
	  FROM (SELECT coalesce(w.wallet_id, l.wallet_id) AS wallet_id, row_number() OVER () AS n
			  FROM withdrawal.wallet w
			  FULL JOIN (SELECT wallet_id,
								sum(amount) FILTER (WHERE bucket = 'available') AS available,
								sum(amount) FILTER (WHERE bucket = 'held') AS held,
								sum(amount) FILTER (WHERE bucket = 'settled') AS settled
						   FROM withdrawal.ledger_entry GROUP BY wallet_id) l USING (wallet_id)
			 WHERE w.wallet_id IS NULL
				OR w.available <> coalesce(l.available, 0)
				OR w.held <> coalesce(l.held, 0)
				OR w.paid_out <> coalesce(l.settled, 0)) bad
	UNION ALL
	/* a transaction balances, has two legs or more, one currency, kind and wallet */
	SELECT 2, 'transactions_sum_to_zero', count(*),
		   string_agg(txn_id::text, ', ' ORDER BY txn_id) FILTER (WHERE n <= 10)
	  FROM (SELECT txn_id, row_number() OVER () AS n
			  FROM withdrawal.ledger_entry GROUP BY txn_id
			HAVING sum(amount) <> 0 OR count(*) < 2
				OR count(DISTINCT currency) > 1 OR count(DISTINCT kind) > 1
				OR count(DISTINCT wallet_id) > 1) bad
	UNION ALL
	/* a withdrawal is debited once, of its amount (a rejection before any entry aside) */
	SELECT 3, 'one_debit_per_withdrawal', count(*),
		   string_agg(withdrawal_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT w.withdrawal_id, row_number() OVER () AS n
			  FROM withdrawal.withdrawal w
			  LEFT JOIN (SELECT withdrawal_id, count(*) AS debits, sum(amount) AS amount
						   FROM withdrawal.ledger_entry WHERE kind = 'debit' AND leg = 2
						  GROUP BY withdrawal_id) d USING (withdrawal_id)
			 WHERE coalesce(d.debits, 0) > 1
				OR (d.debits = 1 AND d.amount <> w.amount)
				OR (d.debits IS NULL AND NOT (w.status = 'rejected'
					AND NOT EXISTS (SELECT FROM withdrawal.ledger_entry e
									 WHERE e.withdrawal_id = w.withdrawal_id)))) bad
	UNION ALL
	/* refunded, settled and returned at most once each, never both refunded and settled */
	SELECT 4, 'at_most_one_refund_per_withdrawal', count(*),
		   string_agg(withdrawal_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT withdrawal_id, row_number() OVER () AS n
			  FROM withdrawal.ledger_entry WHERE kind IN ('refund', 'settle', 'return') AND leg = 1
			 GROUP BY withdrawal_id
			HAVING count(*) FILTER (WHERE kind = 'refund') > 1
				OR count(*) FILTER (WHERE kind = 'settle') > 1
				OR count(*) FILTER (WHERE kind = 'return') > 1
				OR (count(*) FILTER (WHERE kind = 'refund') = 1
					AND count(*) FILTER (WHERE kind = 'settle') = 1)) bad
	UNION ALL
	/* held while open, settled (less what came back) once paid, else neither */
	SELECT 5, 'status_matches_money', count(*),
		   string_agg(withdrawal_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT w.withdrawal_id, row_number() OVER () AS n
			  FROM withdrawal.withdrawal w
			  LEFT JOIN (SELECT withdrawal_id, sum(amount) FILTER (WHERE bucket = 'held') AS held,
								sum(amount) FILTER (WHERE bucket = 'settled') AS settled
						   FROM withdrawal.ledger_entry WHERE withdrawal_id IS NOT NULL
						  GROUP BY withdrawal_id) m USING (withdrawal_id)
			 WHERE coalesce(m.held, 0) <> CASE WHEN w.status IN
					   (SELECT i.status FROM withdrawal.status_info() i WHERE i.holds_funds)
					   THEN w.amount ELSE 0 END
				OR coalesce(m.settled, 0) <> CASE WHEN w.status = 'paid'
					   THEN w.amount - w.returned_amount ELSE 0 END) bad
	UNION ALL
	/*
	 * What came back of a payout is in the ledger as its return entries,
	 * never more than the amount, all of it once returned, and nothing of a
	 * payout that was not paid.
	 */
	SELECT 6, 'returns_match_withdrawal', count(*),
		   string_agg(withdrawal_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT w.withdrawal_id, row_number() OVER () AS n
			  FROM withdrawal.withdrawal w
			  LEFT JOIN (SELECT withdrawal_id, sum(amount) AS returned
						   FROM withdrawal.ledger_entry
						  WHERE kind IN ('return', 'partial_return') AND bucket = 'available'
						  GROUP BY withdrawal_id) r USING (withdrawal_id)
			 WHERE coalesce(r.returned, 0) <> w.returned_amount
				OR w.returned_amount < 0 OR w.returned_amount > w.amount
				OR (w.status = 'returned') <> (w.returned_amount = w.amount)
				OR (w.returned_amount > 0 AND w.status NOT IN ('paid', 'returned'))) bad
	UNION ALL
	/* no wallet balance below zero */
	SELECT 7, 'no_negative_balances', count(*),
		   string_agg(wallet_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT wallet_id, row_number() OVER () AS n FROM withdrawal.wallet
			 WHERE available < 0 OR held < 0 OR paid_out < 0) bad
	UNION ALL
	/* every credit is one ledger transaction of its amount, and the other way round */
	SELECT 8, 'credits_match_ledger', count(*),
		   string_agg(transfer_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT c.transfer_id, row_number() OVER () AS n
			  FROM withdrawal.credit c
			  FULL JOIN (SELECT credit_id, txn_id,
								sum(amount) FILTER (WHERE bucket = 'available') AS amount
						   FROM withdrawal.ledger_entry WHERE kind = 'credit'
						  GROUP BY credit_id, txn_id) l ON l.credit_id = c.transfer_id
			 WHERE c.transfer_id IS NULL OR l.credit_id IS NULL
				OR l.txn_id <> c.txn_id OR l.amount <> c.amount) bad
	UNION ALL
	/* an entry of a withdrawal is in that withdrawal's account and currency */
	SELECT 9, 'entries_reference_withdrawals', count(*),
		   string_agg(txn_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT e.txn_id, row_number() OVER () AS n
			  FROM withdrawal.ledger_entry e
			 WHERE e.withdrawal_id IS NOT NULL AND e.leg = 1 AND NOT EXISTS
				   (SELECT FROM withdrawal.withdrawal w WHERE w.withdrawal_id = e.withdrawal_id
					   AND w.account_id = (SELECT account_id FROM withdrawal.wallet x
											WHERE x.wallet_id = e.wallet_id)
					   AND w.currency = e.currency)) bad
) c(rank, check_name, violations, detail)
ORDER BY c.rank
$$;
COMMENT ON FUNCTION withdrawal.check_invariants() IS
	'integrity checks of the books; a clean database reports zero violations on every row';
REVOKE ALL ON FUNCTION withdrawal.check_invariants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdrawal.check_invariants() TO withdrawal_ops, withdrawal_auditor;

-- reconciliation in SQL, batch settlements and tolerances (issues 12, 13)

/*
 * Amount tolerances of reconcile() per processor, checked by config_check()
 * (22023 for NULL, negative, or more than 10000 basis points).
 */
ALTER TABLE withdrawal.processor
	ADD COLUMN recon_tolerance_abs bigint NOT NULL DEFAULT 0 CHECK (recon_tolerance_abs >= 0),
	ADD COLUMN recon_tolerance_bps integer NOT NULL DEFAULT 0
				CHECK (recon_tolerance_bps BETWEEN 0 AND 10000);
COMMENT ON COLUMN withdrawal.processor.recon_tolerance_abs IS
	'reconcile(): an amount difference of at most this many minor units (or within recon_tolerance_bps) is amount_within_tolerance, not a discrepancy; 0: exact';
COMMENT ON COLUMN withdrawal.processor.recon_tolerance_bps IS
	'reconcile(): an amount difference of at most this many basis points of the ledger amount (or within recon_tolerance_abs) is amount_within_tolerance, not a discrepancy; 0 to 10000';
COMMENT ON FUNCTION withdrawal.config_check() IS
	'trigger: refuses configuration values that would fail later (time zones, rates, processor URLs, review expiry, daily caps, reconciliation tolerances)';

/*
 * Batch settlements: a processor that pays many withdrawals in one
 * transfer (a payout batch, a bank file, a transfer group) reports one
 * settlement line for all of them, with the batch's reference as
 * processor_ref and no withdrawal_id.  Which withdrawals the batch holds
 * comes from the processor's batch detail (PayPal's payout items, the
 * bank file's lines), loaded here by import_settlement_batch() or COPY:
 * the drivers do not learn a batch id when they submit (each payout is
 * its own request), and a settlement line has room for one withdrawal.
 * A withdrawal may be in several batches of a processor (paid in one,
 * returned in another).  withdrawal_id is not a foreign key: a batch
 * naming a withdrawal the ledger does not know is reported by reconcile().
 */
CREATE TABLE withdrawal.settlement_batch (
	processor	text NOT NULL REFERENCES withdrawal.processor,
	batch_ref	text NOT NULL CHECK (pg_catalog.octet_length(batch_ref) BETWEEN 1 AND 255),
	withdrawal_id uuid NOT NULL,
	imported_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (processor, batch_ref, withdrawal_id)
);
CREATE INDEX settlement_batch_withdrawal ON withdrawal.settlement_batch (withdrawal_id);
COMMENT ON INDEX withdrawal.settlement_batch_withdrawal IS
	'the batches that name a withdrawal, for reconcile()''s missing_at_processor';
COMMENT ON TABLE withdrawal.settlement_batch IS
	'the withdrawals of each settlement batch of a processor (import_settlement_batch() or COPY): a settlement row without withdrawal_id whose processor_ref is a batch_ref is compared by reconcile() with the sum of these withdrawals';

/* A period's unattributed settlement rows, among them the batch lines */
CREATE INDEX settlement_unattributed ON withdrawal.settlement (processor, settled_at)
	WHERE withdrawal_id IS NULL;
COMMENT ON INDEX withdrawal.settlement_unattributed IS
	'a processor''s settlement rows without withdrawal_id by time, for reconcile()''s batch lines';

/* two more kinds: return_mismatch, and amount_within_tolerance (no discrepancy) */
ALTER TABLE withdrawal.recon_item DROP CONSTRAINT recon_item_kind_check;
ALTER TABLE withdrawal.recon_item ADD CONSTRAINT recon_item_kind_check
	CHECK (kind IN ('missing_at_processor', 'missing_in_ledger', 'amount_mismatch',
					'currency_mismatch', 'status_mismatch', 'duplicate_at_processor',
					'return_mismatch', 'amount_within_tolerance'));
COMMENT ON TABLE withdrawal.recon_item IS
	'the discrepancies found by a reconciliation run, and the amount differences within the processor''s tolerance (kind amount_within_tolerance, not counted as discrepancies)';

/*
 * reconcile() leaves C for PL/pgSQL: the same statement, readable from
 * psql, with batch lines, tolerances and partial returns.
 */
/*
 * The argument checks of the C functions (WithdrawalArgText) for the
 * PL/pgSQL ones: 22023 for NULL, empty and more than maxbytes bytes, with
 * the same messages.  Like _reconcile() below, granted to nobody: only the
 * extension's own functions, running as the owner, call it (SECURITY
 * DEFINER as every function of the schema, which the access test checks).
 */
CREATE FUNCTION withdrawal._require_text(value text, argname text, maxbytes integer)
	RETURNS void
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF value IS NULL THEN
		RAISE EXCEPTION '% must not be null', argname USING ERRCODE = '22023';
	ELSIF value = '' THEN
		RAISE EXCEPTION '% must not be empty', argname USING ERRCODE = '22023';
	ELSIF octet_length(value) > maxbytes THEN
		RAISE EXCEPTION '% is too long', argname USING ERRCODE = '22023',
			DETAIL = format('The value has %s bytes; at most %s are allowed.', octet_length(value), maxbytes);
	END IF;
END
$$;
COMMENT ON FUNCTION withdrawal._require_text(text, text, integer) IS
	'internal: 22023 unless value is a text of 1 to maxbytes bytes';

CREATE FUNCTION withdrawal.import_settlement_batch(processor text, batch_ref text, withdrawal_ids uuid[])
	RETURNS bigint
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	added bigint;
BEGIN
	PERFORM withdrawal._require_text(processor, 'processor', 63);
	PERFORM withdrawal._require_text(batch_ref, 'batch_ref', 255);
	IF withdrawal_ids IS NULL THEN
		RAISE EXCEPTION 'withdrawal_ids must not be null' USING ERRCODE = '22023';
	ELSIF cardinality(withdrawal_ids) = 0 THEN
		RAISE EXCEPTION 'withdrawal_ids must not be empty' USING ERRCODE = '22023',
			HINT = 'A batch holds at least one withdrawal.';
	ELSIF array_ndims(withdrawal_ids) <> 1 THEN
		RAISE EXCEPTION 'withdrawal_ids must be a one-dimensional array' USING ERRCODE = '22023';
	ELSIF array_position(withdrawal_ids, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'withdrawal_ids must not contain null' USING ERRCODE = '22023',
			DETAIL = format('Element %s is null.', array_position(withdrawal_ids, NULL));
	END IF;
	PERFORM FROM withdrawal.processor p WHERE p.name = import_settlement_batch.processor;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown processor "%"', processor USING ERRCODE = 'WD007';
	END IF;

	INSERT INTO withdrawal.settlement_batch (processor, batch_ref, withdrawal_id)
		SELECT DISTINCT import_settlement_batch.processor, import_settlement_batch.batch_ref, u.id
		  FROM unnest(withdrawal_ids) AS u(id)
		ON CONFLICT DO NOTHING;
	GET DIAGNOSTICS added = ROW_COUNT;
	RETURN added;
END
$$;
COMMENT ON FUNCTION withdrawal.import_settlement_batch(text, text, uuid[]) IS
	'records which withdrawals a settlement batch of the processor holds (its settlement line has processor_ref = batch_ref and no withdrawal_id); idempotent; returns the number of new members';

/*
 * One reconciliation run: the processor is checked (and locked, so that
 * runs of one processor, whose periods must not overlap, are serialised),
 * the run recorded, its items classified, inserted and returned in one
 * set-based statement, and the run finished.  period_start NULL means
 * from the end of the processor's latest run (the beginning of time for
 * the first) until the start of the transaction.  Called by the two
 * reconcile() functions, which check their arguments.
 *
 * The statement:
 * l   payouts of the processor whose settle movement falls in the period.
 * p   the processor's rows of the period that are not batch lines, one
 *     per withdrawal (rows without a withdrawal id stay one per
 *     processor_ref); amount/max_amount of the paid and failed rows,
 *     returned_here the returned rows' sum; paid_rows counts distinct
 *     paid transfers.
 * j   l FULL JOIN p.  A row of p without a partner in l is checked
 *     against the withdrawal itself (o): the ledger may have settled it in
 *     another period, or not at all.  A row of l without a partner in p is
 *     only missing at the processor when no report of the processor
 *     mentions it, itemised or in a batch (x).  Both lookups are gated on
 *     the missing partner (a one-time filter per row; OFFSET 0 keeps the
 *     planner from turning o into a second scan of every withdrawal), so
 *     matched pairs, nearly all of them, cost nothing more.  When the
 *     processor or the ledger knows of a return, the processor's returned
 *     rows of every period are summed (a CASE, so only then).
 * q   the processor's status: returned when what it returned covers the
 *     payout, else paid when it paid it (a partial return leaves it paid,
 *     as it leaves the withdrawal paid), else failed; and the tolerance.
 * k   one kind per withdrawal, the most serious first.
 * bl  batch lines of the period: rows without a withdrawal id whose
 *     processor_ref is a batch of the processor;
 * bm  their members as the ledger knows them (NULL: unknown);
 * bk  one item per batch line whose amount differs from its members' sum
 *     (what they paid, or what they returned for a returned line), and
 *     one per member the ledger does not know, in another currency or in
 *     a status the line contradicts.
 */
CREATE FUNCTION withdrawal._reconcile(p_processor text, p_start timestamptz, p_end timestamptz,
									  OUT run_id bigint, OUT kind text, OUT withdrawal_id uuid,
									  OUT processor_ref text, OUT ledger_amount bigint,
									  OUT processor_amount bigint, OUT ledger_status text,
									  OUT processor_status text)
	RETURNS SETOF record
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET jit = off
	AS $$
#variable_conflict use_column
DECLARE
	v_run bigint;
	v_abs bigint;
	v_bps integer;
	v_found bigint;
BEGIN
	SELECT p.recon_tolerance_abs, p.recon_tolerance_bps INTO v_abs, v_bps
	  FROM withdrawal.processor p WHERE p.name = p_processor
	   FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown processor "%"', p_processor USING ERRCODE = 'WD007';
	END IF;
	IF p_start IS NULL THEN
		SELECT coalesce(max(r.period_end), '-infinity') INTO p_start
		  FROM withdrawal.recon_run r WHERE r.processor = p_processor;
		p_end := transaction_timestamp();
		IF p_end <= p_start THEN
			RAISE EXCEPTION 'processor "%" was already reconciled until now', p_processor
				USING ERRCODE = '55000';
		END IF;
	END IF;

	INSERT INTO withdrawal.recon_run (processor, period_start, period_end)
		VALUES (p_processor, p_start, p_end)
		RETURNING recon_run.run_id INTO v_run;

	RETURN QUERY
	WITH l AS (
		SELECT w.withdrawal_id, w.amount::bigint AS amount, w.currency, w.status::text AS status,
			   w.processor_ref, w.returned_amount
		  FROM withdrawal.ledger_entry e
		  JOIN withdrawal.withdrawal w ON w.withdrawal_id = e.withdrawal_id
		  JOIN withdrawal.channel c ON c.name = w.channel
		 WHERE e.kind = 'settle' AND e.leg = 1
		   AND e.created_at >= p_start AND e.created_at < p_end
		   AND c.processor = p_processor
	), p AS (
		SELECT s.withdrawal_id, min(s.processor_ref COLLATE "C") AS processor_ref,
			   min(s.amount::bigint) FILTER (WHERE s.status <> 'returned') AS amount,
			   max(s.amount::bigint) FILTER (WHERE s.status <> 'returned') AS max_amount,
			   sum(s.amount) FILTER (WHERE s.status = 'returned') AS returned_here,
			   min(s.currency COLLATE "C") AS currency, max(s.currency COLLATE "C") AS max_currency,
			   bool_or(s.status = 'returned') AS returned,
			   bool_or(s.status = 'paid') AS paid,
			   count(*) FILTER (WHERE s.status = 'paid') AS paid_rows
		  FROM withdrawal.settlement s
		 WHERE s.processor = p_processor
		   AND s.settled_at >= p_start AND s.settled_at < p_end
		   AND CASE WHEN s.withdrawal_id IS NULL
					THEN NOT EXISTS (SELECT FROM withdrawal.settlement_batch b
									  WHERE b.processor = p_processor AND b.batch_ref = s.processor_ref)
					ELSE true END
		 GROUP BY s.withdrawal_id, CASE WHEN s.withdrawal_id IS NULL THEN s.processor_ref END
	), j AS (
		SELECT coalesce(l.withdrawal_id, p.withdrawal_id) AS withdrawal_id,
			   coalesce(p.processor_ref, l.processor_ref) AS processor_ref,
			   coalesce(l.amount, o.amount) AS ledger_amount,
			   p.amount AS paid_amount, p.max_amount, p.returned_here,
			   coalesce(l.currency, o.currency) AS ledger_currency,
			   p.currency AS processor_currency, p.max_currency,
			   coalesce(l.status, o.status) AS ledger_status,
			   coalesce(l.returned_amount, o.returned_amount) AS ledger_returned,
			   p.returned, p.paid, p.paid_rows,
			   CASE WHEN p.withdrawal_id IS NOT NULL
						 AND (p.returned OR coalesce(l.returned_amount, o.returned_amount) > 0)
					THEN (SELECT coalesce(sum(s4.amount), 0) FROM withdrawal.settlement s4
						   WHERE s4.withdrawal_id = p.withdrawal_id AND s4.processor = p_processor
							 AND s4.status = 'returned')
			   END AS processor_returned,
			   p.processor_ref IS NULL AS no_p,
			   l.withdrawal_id IS NULL AND o.status IS NULL AS no_l,
			   x.found IS NOT NULL AS reported_elsewhere
		  FROM l FULL JOIN p ON p.withdrawal_id = l.withdrawal_id
		  LEFT JOIN LATERAL (
			SELECT w.amount::bigint AS amount, w.currency, w.status::text AS status, w.returned_amount
			  FROM withdrawal.withdrawal w
			 WHERE l.withdrawal_id IS NULL AND w.withdrawal_id = p.withdrawal_id
			OFFSET 0) o ON true
		  LEFT JOIN LATERAL (
			SELECT 1 AS found FROM withdrawal.settlement s2
			 WHERE p.processor_ref IS NULL AND s2.withdrawal_id = l.withdrawal_id
			   AND s2.processor = p_processor AND s2.status <> 'failed'
			UNION ALL
			SELECT 1 FROM withdrawal.settlement_batch b
			  JOIN withdrawal.settlement s3 ON s3.processor = b.processor AND s3.processor_ref = b.batch_ref
			 WHERE p.processor_ref IS NULL AND b.withdrawal_id = l.withdrawal_id
			   AND b.processor = p_processor AND s3.withdrawal_id IS NULL
			   AND (s3.status <> 'failed' OR (s3.settled_at >= p_start AND s3.settled_at < p_end))
			LIMIT 1) x ON true
	), q AS (
		SELECT j.*,
			   CASE WHEN returned AND (ledger_amount IS NULL OR processor_returned >= ledger_amount)
					THEN 'returned'
					WHEN paid OR returned THEN 'paid'
					ELSE 'failed' END AS processor_status,
			   greatest(v_abs, floor(ledger_amount::numeric * v_bps / 10000)) AS tolerance
		  FROM j
	), k AS (
		SELECT q.*, CASE
			WHEN no_p THEN CASE WHEN reported_elsewhere THEN NULL ELSE 'missing_at_processor' END
			WHEN no_l THEN 'missing_in_ledger'
			WHEN paid_rows > 1 THEN 'duplicate_at_processor'
			WHEN ledger_currency <> processor_currency OR processor_currency <> max_currency
				THEN 'currency_mismatch'
			WHEN paid_amount <> max_amount OR abs(paid_amount - ledger_amount) > tolerance
				THEN 'amount_mismatch'
			WHEN ledger_status <> processor_status THEN 'status_mismatch'
			WHEN processor_returned <> ledger_returned THEN 'return_mismatch'
			WHEN paid_amount <> ledger_amount THEN 'amount_within_tolerance'
		   END AS kind
		  FROM q
	), bl AS (
		SELECT s.processor_ref, s.amount::bigint AS amount, s.currency, s.status
		  FROM withdrawal.settlement s
		 WHERE s.processor = p_processor AND s.withdrawal_id IS NULL
		   AND s.settled_at >= p_start AND s.settled_at < p_end
		   AND EXISTS (SELECT FROM withdrawal.settlement_batch b
						WHERE b.processor = p_processor AND b.batch_ref = s.processor_ref)
	), bm AS (
		SELECT bl.processor_ref, bl.amount AS line_amount, bl.currency AS line_currency,
			   bl.status AS line_status, b.withdrawal_id, w.withdrawal_id IS NULL AS unknown,
			   w.amount::bigint AS amount, w.currency, w.status::text AS status, w.returned_amount
		  FROM bl
		  JOIN withdrawal.settlement_batch b ON b.processor = p_processor AND b.batch_ref = bl.processor_ref
		  LEFT JOIN withdrawal.withdrawal w ON w.withdrawal_id = b.withdrawal_id
	), bs AS (
		SELECT processor_ref, line_amount, line_currency, line_status,
			   coalesce(sum(CASE WHEN line_status = 'returned' THEN returned_amount ELSE amount END), 0)
				   AS ledger_sum,
			   coalesce(bool_or(currency <> line_currency), false) AS other_currency
		  FROM bm
		 GROUP BY processor_ref, line_amount, line_currency, line_status
	), bk AS (
		SELECT CASE
				 WHEN other_currency OR ledger_sum = line_amount THEN NULL
				 WHEN line_status <> 'returned'
					  AND abs(line_amount - ledger_sum)
						  <= greatest(v_abs, floor(ledger_sum * v_bps / 10000))
					THEN 'amount_within_tolerance'
				 ELSE 'amount_mismatch'
			   END AS kind,
			   NULL::uuid AS withdrawal_id, processor_ref,
			   CASE WHEN ledger_sum <= 9223372036854775807 THEN ledger_sum::bigint END AS ledger_amount,
			   line_amount AS processor_amount, line_currency AS ledger_currency,
			   line_currency AS processor_currency, NULL::text AS ledger_status,
			   line_status AS processor_status
		  FROM bs
		UNION ALL
		SELECT CASE
				 WHEN unknown THEN 'missing_in_ledger'
				 WHEN currency <> line_currency THEN 'currency_mismatch'
				 WHEN CASE line_status WHEN 'paid' THEN status NOT IN ('paid', 'returned')
									   WHEN 'failed' THEN status <> 'failed'
									   ELSE returned_amount = 0 END
					THEN 'status_mismatch'
			   END,
			   withdrawal_id, processor_ref,
			   CASE WHEN line_status = 'returned' THEN returned_amount ELSE amount END,
			   NULL::bigint, currency, line_currency, status, line_status
		  FROM bm
	), items AS (
		SELECT k.kind, k.withdrawal_id, k.processor_ref,
			   CASE WHEN k.kind = 'return_mismatch' THEN k.ledger_returned ELSE k.ledger_amount END
				   AS ledger_amount,
			   CASE WHEN k.kind = 'return_mismatch' THEN
						CASE WHEN k.processor_returned <= 9223372036854775807 THEN k.processor_returned::bigint END
					ELSE coalesce(k.paid_amount,
								  CASE WHEN k.returned_here <= 9223372036854775807 THEN k.returned_here::bigint END)
			   END AS processor_amount,
			   k.ledger_currency, k.processor_currency, k.ledger_status,
			   CASE WHEN NOT k.no_p THEN k.processor_status END AS processor_status
		  FROM k WHERE k.kind IS NOT NULL
		UNION ALL
		SELECT bk.kind, bk.withdrawal_id, bk.processor_ref, bk.ledger_amount, bk.processor_amount,
			   bk.ledger_currency, bk.processor_currency, bk.ledger_status, bk.processor_status
		  FROM bk WHERE bk.kind IS NOT NULL
	), ins AS (
		INSERT INTO withdrawal.recon_item (run_id, kind, withdrawal_id, processor_ref, ledger_amount,
										   processor_amount, ledger_currency, processor_currency,
										   ledger_status, processor_status)
		SELECT v_run, i.kind, i.withdrawal_id, i.processor_ref, i.ledger_amount, i.processor_amount,
			   i.ledger_currency, i.processor_currency, i.ledger_status, i.processor_status
		  FROM items i
		RETURNING recon_item.run_id, recon_item.kind, recon_item.withdrawal_id,
				  recon_item.processor_ref, recon_item.ledger_amount, recon_item.processor_amount,
				  recon_item.ledger_status, recon_item.processor_status
	)
	SELECT * FROM ins;

	/* an amount within tolerance is reported, but is no discrepancy */
	SELECT count(*) INTO v_found FROM withdrawal.recon_item i
	 WHERE i.run_id = v_run AND i.kind <> 'amount_within_tolerance';
	UPDATE withdrawal.recon_run r SET discrepancies = v_found, finished_at = clock_timestamp()
	 WHERE r.run_id = v_run;
	IF v_found > 0 THEN
		PERFORM pg_notify('withdrawal_recon',
						  jsonb_build_object('run_id', v_run, 'processor', p_processor,
											 'discrepancies', v_found)::text);
	END IF;
END
$$;
COMMENT ON FUNCTION withdrawal._reconcile(text, timestamptz, timestamptz) IS
	'internal: one reconcile() run of the processor for [p_start, p_end), or since its latest run when p_start is NULL';

/*
 * jit is off for reconcile(): it is one statement run once per call, whose
 * cost estimate (inflated by the gated per-row lookups) would otherwise
 * buy JIT compilation that takes longer than it saves.
 */
CREATE OR REPLACE FUNCTION withdrawal.reconcile(processor text, period_start timestamptz, period_end timestamptz,
									 OUT run_id bigint, OUT kind text, OUT withdrawal_id uuid,
									 OUT processor_ref text, OUT ledger_amount bigint,
									 OUT processor_amount bigint, OUT ledger_status text,
									 OUT processor_status text)
	RETURNS SETOF record
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET jit = off
	AS $$
BEGIN
	PERFORM withdrawal._require_text(processor, 'processor', 63);
	IF period_start IS NULL OR period_end IS NULL THEN
		RAISE EXCEPTION 'period_start and period_end must not be null' USING ERRCODE = '22023';
	ELSIF NOT isfinite(period_start) OR NOT isfinite(period_end) THEN
		RAISE EXCEPTION 'period_start and period_end must be finite' USING ERRCODE = '22023';
	ELSIF period_start >= period_end THEN
		RAISE EXCEPTION 'period_start must be before period_end' USING ERRCODE = '22023';
	/*
	 * reconcile(processor) continues from the latest period_end: a period
	 * that ends in the future would make it fail until then, and the
	 * settlements still to come in that period would never be reconciled.
	 */
	ELSIF period_end > transaction_timestamp() THEN
		RAISE EXCEPTION 'period_end must not be in the future' USING ERRCODE = '22023',
			DETAIL = 'A run covers settlements up to its period_end, and the next reconcile(processor) starts there.';
	END IF;
	RETURN QUERY SELECT * FROM withdrawal._reconcile(processor, period_start, period_end);
END
$$;
COMMENT ON FUNCTION withdrawal.reconcile(text, timestamptz, timestamptz) IS
	'compares the payouts the ledger settled in [period_start, period_end) with the processor''s settlement rows of the period; records the run and returns its discrepancies';

CREATE OR REPLACE FUNCTION withdrawal.reconcile(processor text,
									 OUT run_id bigint, OUT kind text, OUT withdrawal_id uuid,
									 OUT processor_ref text, OUT ledger_amount bigint,
									 OUT processor_amount bigint, OUT ledger_status text,
									 OUT processor_status text)
	RETURNS SETOF record
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET jit = off
	AS $$
BEGIN
	PERFORM withdrawal._require_text(processor, 'processor', 63);
	RETURN QUERY SELECT * FROM withdrawal._reconcile(processor, NULL, NULL);
END
$$;
COMMENT ON FUNCTION withdrawal.reconcile(text) IS
	'reconcile() from the end of the processor''s last recorded run (or the beginning) until now, so that a missed night is covered by the next run';

CREATE OR REPLACE VIEW withdrawal.recon_summary AS
	SELECT r.processor, r.run_id, r.period_start, r.period_end, r.started_at, r.finished_at,
		   r.run_by, r.discrepancies,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'missing_at_processor') AS missing_at_processor,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'missing_in_ledger') AS missing_in_ledger,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'amount_mismatch') AS amount_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'currency_mismatch') AS currency_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'status_mismatch') AS status_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'duplicate_at_processor') AS duplicate_at_processor,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'return_mismatch') AS return_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'amount_within_tolerance') AS amount_within_tolerance
	  FROM (SELECT DISTINCT ON (processor) *
			  FROM withdrawal.recon_run
			 ORDER BY processor, run_id DESC) r
	  LEFT JOIN withdrawal.recon_item i ON i.run_id = r.run_id
	 GROUP BY r.processor, r.run_id, r.period_start, r.period_end, r.started_at, r.finished_at,
			  r.run_by, r.discrepancies;

GRANT EXECUTE ON FUNCTION withdrawal.import_settlement_batch(text, text, uuid[]) TO withdrawal_ops;
GRANT SELECT ON withdrawal.settlement_batch TO withdrawal_ops, withdrawal_auditor;

/* PUBLIC gets nothing (95_privileges does the same for a fresh install) */
REVOKE ALL ON FUNCTION withdrawal._require_text(text, text, integer),
	withdrawal._reconcile(text, timestamptz, timestamptz),
	withdrawal.import_settlement_batch(text, text, uuid[]) FROM PUBLIC;
REVOKE ALL ON withdrawal.settlement_batch FROM PUBLIC;

/* Dumped with all its rows (see 90_dump.sql) */
SELECT pg_catalog.pg_extension_config_dump('withdrawal.settlement_batch', '');

/* processor.settings was never read, written or documented (issue 12) */
ALTER TABLE withdrawal.processor DROP COLUMN settings;

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

/* PUBLIC gets nothing; the workers run the scheduled sweep (96_worker.sql) */
REVOKE ALL ON FUNCTION withdrawal._sweep_requeue(integer, integer),
	withdrawal._sweep_unsent(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION withdrawal._sweep_requeue(integer, integer) TO withdrawal_worker;

/*
 * The fields receive_webhook() reads from an event whose signature it has
 * verified, in the shape of the processor's scheme: Stripe's data.object
 * (our id in metadata.withdrawal_id; the amount is amount_reversed for
 * transfer.reversed) or the http protocol's data (data.payout_id).  A
 * field of the wrong JSON type is NULL.
 *
 * jsonb keeps a number's value, not its spelling: 1.114e3 becomes 1114.
 * The amount is therefore taken as written, through the json type, which
 * keeps the text (and, like jsonb, takes the last of duplicate keys), so
 * that the C code sees the literal the processor sent and can refuse one
 * that is not an integer.  Granted to nobody: receive_webhook() calls it
 * as the owner.
 */
CREATE FUNCTION withdrawal._webhook_fields(payload jsonb, stripe boolean, body text,
										   OUT event_id text, OUT event_type text,
										   OUT withdrawal_id text, OUT processor_ref text,
										   OUT amount_type text, OUT amount text,
										   OUT currency text)
	LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	object jsonb := CASE WHEN stripe THEN payload->'data'->'object' ELSE payload->'data' END;
	amount_key text := CASE WHEN stripe AND payload->>'type' = 'transfer.reversed'
						   THEN 'amount_reversed' ELSE 'amount' END;
BEGIN
	event_id := CASE WHEN jsonb_typeof(payload->'id') = 'string' THEN payload->>'id' END;
	event_type := CASE WHEN jsonb_typeof(payload->'type') = 'string' THEN payload->>'type' END;
	withdrawal_id := CASE WHEN stripe THEN object->'metadata'->>'withdrawal_id'
						  ELSE object->>'payout_id' END;
	processor_ref := CASE WHEN jsonb_typeof(object->'id') = 'string' THEN object->>'id' END;
	amount_type := jsonb_typeof(object->amount_key);
	amount := CASE WHEN amount_type = 'number'
				   THEN (CASE WHEN stripe THEN body::json->'data'->'object'
							  ELSE body::json->'data' END)->>amount_key
				   ELSE object->>amount_key END;
	currency := CASE WHEN jsonb_typeof(object->'currency') = 'string' THEN object->>'currency' END;
END
$$;
COMMENT ON FUNCTION withdrawal._webhook_fields(jsonb, boolean, text) IS
	'internal (receive_webhook()): the fields of a verified event in the shape of its scheme, the amount as written';

/* PUBLIC gets nothing (95_privileges does the same for a fresh install) */
REVOKE ALL ON FUNCTION withdrawal._webhook_fields(jsonb, boolean, text) FROM PUBLIC;
