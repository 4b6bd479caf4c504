--
-- access: what an attacker holding one of the extension's roles would try.
-- withdrawal_app cannot read or write tables, call ops functions, approve
-- its own withdrawals or change policy, channels or the blocklist;
-- withdrawal_auditor reads but never writes; nobody but the owner writes a
-- table directly; and objects planted earlier in the caller's search_path
-- (an operator =(text,text), >=(bigint,bigint), a now()) do not change what
-- the SECURITY DEFINER functions do.
--
CREATE DATABASE regress_access;
\c regress_access
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all
SET timezone = 'UTC';

-- attacks(statements): runs each statement as the current role; every one
-- must fail, and the books must not move.  Its own comparisons name
-- pg_catalog's operator: it runs under the attacker's search_path too.
CREATE FUNCTION attacks(stmts text[]) RETURNS TABLE (attack text, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
	s text;
	before text;
	r text;
BEGIN
	FOREACH s IN ARRAY stmts LOOP
		before := books();
		r := try(s);
		attack := s;
		outcome := CASE WHEN r OPERATOR(pg_catalog.=) 'ok' THEN 'SUCCEEDED' ELSE split_part(r, ':', 1) END
			|| CASE WHEN books() OPERATOR(pg_catalog.=) before THEN '' ELSE ' AND CHANGED THE BOOKS' END;
		RETURN NEXT;
	END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION try(text), books(), attacks(text[]) TO PUBLIC;

CREATE ROLE regress_ac_app LOGIN IN ROLE withdrawal_app;
CREATE ROLE regress_ac_ops LOGIN IN ROLE withdrawal_ops;
CREATE ROLE regress_ac_aud LOGIN IN ROLE withdrawal_auditor;

INSERT INTO withdrawal.policy (currency, min_amount, review_threshold) VALUES ('USD', 100, 10000);
SELECT withdrawal.block('device', 'rooted-1', 'emulators');
SELECT available FROM withdrawal.credit('eve', 'USD', 5000, 'ac-seed');
SELECT available FROM withdrawal.credit('eve', 'USD', 20000, 'ac-seed-2');
SELECT status FROM withdrawal.request('eve', 'USD', 20000, 'sandbox', '{"iban": "X"}', 'ac-big');
-- big(): that withdrawal's id, without printing it
CREATE FUNCTION big() RETURNS uuid LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
	SELECT withdrawal_id FROM withdrawal.withdrawal WHERE idempotency_key = 'ac-big'
$$;
GRANT EXECUTE ON FUNCTION big() TO PUBLIC;

--
-- Catalog view: table, column and sequence rights of the three roles.
-- Only the listed SELECTs exist; no role can write anything.
--
SELECT r.rolname, c.relname, string_agg(p.priv, ', ' ORDER BY p.priv) AS privileges
  FROM pg_class c
 CROSS JOIN (VALUES ('withdrawal_app'), ('withdrawal_ops'), ('withdrawal_auditor')) r(rolname)
 CROSS JOIN (VALUES ('SELECT'), ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE'),
					('REFERENCES'), ('TRIGGER')) p(priv)
 WHERE c.relnamespace = 'withdrawal'::regnamespace AND c.relkind IN ('r', 'v', 'p')
   AND has_table_privilege(r.rolname, c.oid, p.priv)
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) AS column_write_rights
  FROM pg_class c
 CROSS JOIN (VALUES ('withdrawal_app'), ('withdrawal_ops'), ('withdrawal_auditor')) r(rolname)
 WHERE c.relnamespace = 'withdrawal'::regnamespace AND c.relkind IN ('r', 'v', 'p')
   AND (has_any_column_privilege(r.rolname, c.oid, 'INSERT') OR has_any_column_privilege(r.rolname, c.oid, 'UPDATE'));
SELECT count(*) AS sequence_rights
  FROM pg_class c
 CROSS JOIN (VALUES ('withdrawal_app'), ('withdrawal_ops'), ('withdrawal_auditor')) r(rolname)
 WHERE c.relnamespace = 'withdrawal'::regnamespace AND c.relkind = 'S'
   AND has_sequence_privilege(r.rolname, c.oid, 'USAGE, UPDATE, SELECT');
SELECT has_schema_privilege(r, 'withdrawal', 'CREATE') AS can_create_in_schema
  FROM unnest(ARRAY['withdrawal_app', 'withdrawal_ops', 'withdrawal_auditor']) r;
-- functions each role can execute
SELECT r.rolname, string_agg(p.proname, ', ' ORDER BY p.proname) AS functions
  FROM pg_proc p
 CROSS JOIN (VALUES ('withdrawal_app'), ('withdrawal_ops'), ('withdrawal_auditor')) r(rolname)
 WHERE p.pronamespace = 'withdrawal'::regnamespace
   AND has_function_privilege(r.rolname, p.oid, 'EXECUTE')
 GROUP BY 1 ORDER BY 1;
-- the dispatcher workers' role: no attribute, and exactly the rights
-- dispatching needs (no function of the extension, no schema CREATE)
SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolinherit, rolreplication
  FROM pg_roles WHERE rolname = 'withdrawal_worker';
SELECT c.relname, string_agg(p.priv, ', ' ORDER BY p.priv) AS privileges
  FROM pg_class c
 CROSS JOIN (VALUES ('SELECT'), ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE'),
                    ('REFERENCES'), ('TRIGGER')) p(priv)
 WHERE c.relnamespace = 'withdrawal'::regnamespace AND c.relkind IN ('r', 'v', 'p')
   AND has_table_privilege('withdrawal_worker', c.oid, p.priv)
 GROUP BY 1 ORDER BY 1;
SELECT c.relname AS worker_sequences FROM pg_class c
 WHERE c.relnamespace = 'withdrawal'::regnamespace AND c.relkind = 'S'
   AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege('withdrawal_worker', c.oid, 'USAGE, UPDATE, SELECT') END
 ORDER BY 1;
SELECT p.oid::regprocedure AS worker_functions, p.prosecdef FROM pg_proc p
 WHERE p.pronamespace = 'withdrawal'::regnamespace
   AND has_function_privilege('withdrawal_worker', p.oid, 'EXECUTE');
SELECT has_schema_privilege('withdrawal_worker', 'withdrawal', 'CREATE') AS worker_can_create;
-- every function is SECURITY DEFINER with a pinned search_path (trigger
-- functions run as the caller of the DML, which only the owner can do),
-- but the sweep's rules, which run with their caller's rights (the
-- worker's, or the owner's inside sweep()) and are granted to no role
-- but the worker's: they are listed here, so that a new exception shows
SELECT p.proname, p.prosecdef,
	   p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'] AS pinned
  FROM pg_proc p
 WHERE p.pronamespace = 'withdrawal'::regnamespace AND p.prorettype <> 'trigger'::regtype
   AND NOT (p.prosecdef AND p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'])
 ORDER BY 1;

--
-- The app: no table, no ops function, no policy change, no self-approval
--
SET SESSION AUTHORIZATION regress_ac_app;
SELECT * FROM attacks(ARRAY[
	$$SELECT * FROM withdrawal.wallet$$,
	$$SELECT * FROM withdrawal.withdrawal$$,
	$$SELECT * FROM withdrawal.withdrawals$$,
	$$SELECT * FROM withdrawal.blocklist$$,
	$$SELECT * FROM withdrawal.audit_log$$,
	$$SELECT * FROM withdrawal.policy$$,
	$$UPDATE withdrawal.wallet SET available = 1000000000$$,
	$$INSERT INTO withdrawal.ledger_entry VALUES (1, 1, 'credit', 1, 'USD', 'available', 100)$$,
	$$UPDATE withdrawal.policy SET min_amount = 1, review_threshold = NULL$$,
	$$DELETE FROM withdrawal.policy$$,
	$$UPDATE withdrawal.channel SET enabled = true, release_percent = 100, open_from = NULL, open_until = NULL$$,
	$$INSERT INTO withdrawal.channel (name, processor) VALUES ('evil', 'sandbox')$$,
	$$DELETE FROM withdrawal.blocklist$$,
	$$INSERT INTO withdrawal.approval (withdrawal_id, approver) VALUES (public.big(), 'regress_ac_ops')$$,
	$$UPDATE withdrawal.withdrawal SET status = 'queued' WHERE idempotency_key = 'ac-big'$$,
	$$TRUNCATE withdrawal.outbox$$,
	$$SELECT pg_catalog.nextval('withdrawal.ledger_txn_seq')$$,
	$$ALTER TABLE withdrawal.withdrawal DISABLE TRIGGER withdrawal_status_guard$$,
	$$CREATE TABLE withdrawal.shadow (x int)$$,
	$$CREATE FUNCTION withdrawal.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT now()'$$,
	$$SELECT withdrawal.approve(public.big())$$,
	$$SELECT withdrawal.reject(public.big(), 'x')$$,
	$$SELECT withdrawal.set_account('eve', kyc_level => 9)$$,
	$$SELECT withdrawal.set_account('victim', frozen => true)$$,
	$$SELECT withdrawal.block('account', 'victim', 'grief')$$,
	$$SELECT withdrawal.unblock('device', 'rooted-1', 'emulators')$$,
	$$SELECT withdrawal.transition(public.big(), 'queued')$$,
	$$SELECT withdrawal.seal_audit()$$,
	$$SELECT withdrawal.check_invariants()$$,
	$$SELECT withdrawal.channel_open_at('sandbox', now())$$,
	$$SET ROLE withdrawal_ops$$
]);
-- what the app may do still works
SELECT status FROM withdrawal.request('eve', 'USD', 100, 'sandbox', '{"iban": "X"}', 'ac-ok');
RESET SESSION AUTHORIZATION;

--
-- Ops act through functions only: no direct writes, not even of the
-- blocklist or approvals (which block() and approve() audit)
--
SET SESSION AUTHORIZATION regress_ac_ops;
SELECT * FROM attacks(ARRAY[
	$$INSERT INTO withdrawal.approval (withdrawal_id, approver) VALUES (public.big(), 'someone_else')$$,
	$$INSERT INTO withdrawal.blocklist (kind, value, list_name, added_by) VALUES ('account', 'x', 'l', 'x')$$,
	$$DELETE FROM withdrawal.blocklist$$,
	$$UPDATE withdrawal.policy SET four_eyes_threshold = NULL$$,
	$$UPDATE withdrawal.channel SET release_percent = 100$$,
	$$DELETE FROM withdrawal.audit_log$$,
	$$SELECT * FROM withdrawal.wallet$$,
	$$SELECT withdrawal.request('eve', 'USD', 100, 'sandbox', '{}', 'ac-ops')$$,
	$$SELECT withdrawal.transition(public.big(), 'queued')$$,
	$$SELECT withdrawal._sweep_requeue(0, 1)$$,
	$$SELECT * FROM withdrawal._sweep_unsent('1 second')$$,
	$$SELECT * FROM withdrawal._webhook_fields('{}', false, '{}')$$
]);
SELECT count(*) AS blocklist_rows_visible FROM withdrawal.blocklist;
RESET SESSION AUTHORIZATION;

--
-- The auditor reads, and writes nothing
--
SET SESSION AUTHORIZATION regress_ac_aud;
SELECT (SELECT count(*) FROM withdrawal.withdrawals) AS withdrawals,
	   (SELECT count(*) > 0 FROM withdrawal.audit_log) AS audit_rows,
	   (SELECT count(*) FROM withdrawal.policy) AS policies,
	   (SELECT count(*) FROM withdrawal.channel) AS channels,
	   (SELECT count(*) FROM withdrawal.blocklist) AS blocklist;
SELECT ok FROM withdrawal.verify_audit();
SELECT * FROM attacks(ARRAY[
	$$INSERT INTO withdrawal.audit_log (actor, action) VALUES ('x', 'forged')$$,
	$$UPDATE withdrawal.policy SET min_amount = 1$$,
	$$DELETE FROM withdrawal.blocklist$$,
	$$UPDATE withdrawal.channel SET enabled = false$$,
	$$SELECT * FROM withdrawal.wallet$$,
	$$SELECT withdrawal.request('eve', 'USD', 100, 'sandbox', '{}', 'ac-aud')$$,
	$$SELECT withdrawal.credit('eve', 'USD', 100, 'ac-aud-credit')$$,
	$$SELECT withdrawal.approve(public.big())$$,
	$$SELECT withdrawal.block('account', 'x', 'l')$$
]);
RESET SESSION AUTHORIZATION;

--
-- search_path hijacking.  The app owns a schema that it puts before
-- pg_catalog, with an always-true =(text,text), an always-true
-- >=(bigint,bigint) and a now() in the year 2000.  In the caller's own
-- queries they win; inside the extension's functions they do not.
--
CREATE SCHEMA regress_evil AUTHORIZATION regress_ac_app;
SET SESSION AUTHORIZATION regress_ac_app;
CREATE FUNCTION regress_evil.always(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR regress_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_evil.always);
CREATE FUNCTION regress_evil.always(bigint, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR regress_evil.>= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = regress_evil.always);
CREATE FUNCTION regress_evil.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT '2000-01-01 00:00+00'::timestamptz$$;
SET search_path = regress_evil, pg_catalog, public;
SELECT 'a' = 'b' AS evil_eq, 1::bigint >= 2::bigint AS evil_ge, now() = '2000-01-01 00:00+00' AS evil_now;
-- a new key is not mistaken for an existing one (idempotency lookup uses =)
SELECT status, replayed FROM withdrawal.request('eve', 'USD', 100, 'sandbox', '{"iban": "X"}', 'ac-new');
-- a mismatched replay is still WD002, an overdraft still WD001, the
-- minimum still WD003, and the device blocklist still matches exactly
SELECT * FROM attacks(ARRAY[
	$$SELECT withdrawal.request('eve', 'USD', 999, 'sandbox', '{"iban": "X"}', 'ac-new')$$,
	$$SELECT withdrawal.request('eve', 'USD', 9000000, 'sandbox', '{"iban": "X"}', 'ac-overdraft')$$,
	$$SELECT withdrawal.request('eve', 'USD', 99, 'sandbox', '{"iban": "X"}', 'ac-min')$$
]);
SELECT status, replayed FROM withdrawal.request('eve', 'USD', 100, 'sandbox', '{"iban": "X"}', 'ac-dev-ok',
												'{"device_id": "clean-1"}');
SELECT status, replayed FROM withdrawal.request('eve', 'USD', 100, 'sandbox', '{"iban": "X"}', 'ac-dev-bad',
												'{"device_id": "rooted-1"}');
SELECT * FROM withdrawal.balance('eve', 'USD');
RESET search_path;
RESET SESSION AUTHORIZATION;
SELECT idempotency_key, status, reason, created_at > '2001-01-01' AS real_time
  FROM withdrawal.withdrawal WHERE idempotency_key LIKE 'ac-%' ORDER BY idempotency_key;
SELECT coalesce(string_agg(check_name || '=' || violations, ', '), 'clean') AS invariants
  FROM withdrawal.check_invariants() WHERE violations <> 0;

DROP SCHEMA regress_evil CASCADE;
DROP OWNED BY regress_ac_app, regress_ac_ops, regress_ac_aud;
DROP ROLE regress_ac_app, regress_ac_ops, regress_ac_aud;
