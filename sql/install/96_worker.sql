
/* withdrawal: the dispatcher workers' own role */

/*
 * The workers connect as withdrawal_worker, never as a superuser: a role
 * that owns no object and may do exactly what dispatching needs.  Code it
 * runs cannot grant itself more, and the workers pin their search_path to
 * pg_catalog, so an object planted by a database user is never resolved.
 * The role is cluster-wide, like the others, and may already exist.
 *
 * PostgreSQL 15 lets a background worker connect only as a role with
 * LOGIN.  The role has no password, so no client can log in as it through
 * password authentication; pg_hba.conf must not let it in by trust or
 * peer either (docs: operations).
 */
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
-- the binding of dispatch to this installation, checked before claims
GRANT SELECT ON withdrawal.installation TO withdrawal_worker;

-- the status events its status changes append (70_events.sql)
GRANT INSERT ON withdrawal.status_event TO withdrawal_worker;
GRANT USAGE ON SEQUENCE withdrawal.status_event_seq TO withdrawal_worker;

-- review expiry (expire_reviews() reads the policy and the approvals) and
-- the daily caps of channels, checked before claims
GRANT SELECT ON withdrawal.policy, withdrawal.approval, withdrawal.channel_usage TO withdrawal_worker;

-- the scheduled sweep (30_dispatch.sql), with the rights above
GRANT EXECUTE ON FUNCTION withdrawal._sweep_requeue(integer, integer) TO withdrawal_worker;
