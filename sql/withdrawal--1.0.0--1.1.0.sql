/* withdrawal 1.0.0 -> 1.1.0 */

\echo Use "ALTER EXTENSION withdrawal UPDATE TO '1.1.0'" to load this file. \quit

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
