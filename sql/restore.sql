--
-- restore: what a dump and restore must keep (test/t/080_dump_restore.pl
-- runs pg_dump and pg_restore).  Every table and sequence of the extension
-- is registered for pg_dump, whole (lock_slot aside); an INSERT of a key
-- whose row is still as CREATE EXTENSION wrote it, which is what a
-- restore's COPY does, replaces that row, so the dumped configuration
-- wins over the re-seeded defaults; changed seeded rows are marked, and
-- seeded rows cannot be deleted (a restore would bring them back).
-- Dispatch is bound to the installation; a restored binding holds it, and
-- resume_dispatch(), for withdrawal_ops only and audited, rebinds it.
--
CREATE DATABASE regress_restore;
\c regress_restore
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all
SET timezone = 'UTC';

-- tables and sequences pg_dump would leave out: lock_slot only
SELECT c.relname, c.relkind
  FROM pg_class c, pg_extension e
 WHERE e.extname = 'withdrawal' AND c.relnamespace = 'withdrawal'::regnamespace
   AND c.relkind IN ('r', 'p', 'S') AND c.oid <> ALL (e.extconfig)
 ORDER BY 1;
-- and every registered one is dumped whole
SELECT cfg.rel::regclass, cfg.cond
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) cfg(rel, cond)
 WHERE e.extname = 'withdrawal' AND cfg.cond <> '';

-- the seeded rows
SELECT 'processor' AS tab, name AS key, seed FROM withdrawal.processor
UNION ALL SELECT 'channel', name, seed FROM withdrawal.channel
UNION ALL SELECT 'policy', currency, seed FROM withdrawal.policy
UNION ALL SELECT 'installation', singleton::text, seed FROM withdrawal.installation
UNION ALL SELECT 'currency', count(*)::text, seed FROM withdrawal.currency GROUP BY seed
ORDER BY 1, 2;

-- a restore's COPY of a tightened '*' policy replaces the default in place
COPY withdrawal.policy (currency, min_amount, max_amount, seed) FROM stdin;
*	100	50000	changed
\.
SELECT currency, min_amount, max_amount, seed FROM withdrawal.policy;
-- it is in force at once
SELECT transfer_id IS NOT NULL AS credited FROM withdrawal.credit('rs-1', 'USD', 100000, 'rs-c1');
SELECT try($$SELECT withdrawal.request('rs-1', 'USD', 50001, 'sandbox', '{}', 'rs-r1')$$);
SELECT status FROM withdrawal.request('rs-1', 'USD', 50000, 'sandbox', '{}', 'rs-r2');
-- now that it is changed, an INSERT of its key is a unique violation again, not a reset
SELECT try($$INSERT INTO withdrawal.policy (currency) VALUES ('*')$$);
-- an INSERT of a key still as installed replaces the row, which stays a seeded one
INSERT INTO withdrawal.channel (name, processor, enabled) VALUES ('sandbox', 'sandbox', false);
SELECT name, enabled, seed FROM withdrawal.channel;
SELECT try($$SELECT withdrawal.request('rs-1', 'USD', 100, 'sandbox', '{}', 'rs-r3')$$);

-- an UPDATE that changes a seeded row marks it; one that changes nothing does not
UPDATE withdrawal.currency SET minor_unit = minor_unit WHERE code = 'USD';
UPDATE withdrawal.currency SET minor_unit = 2 WHERE code = 'ISK';
UPDATE withdrawal.processor SET request_timeout_ms = 5000 WHERE name = 'sandbox';
INSERT INTO withdrawal.currency (code, minor_unit) VALUES ('XTS', 2);
SELECT code, minor_unit, seed FROM withdrawal.currency WHERE code IN ('USD', 'ISK', 'XTS') ORDER BY 1;
SELECT name, request_timeout_ms, seed FROM withdrawal.processor;
-- the seed state is the extension's
SELECT try($$UPDATE withdrawal.currency SET seed = 'default' WHERE code = 'ISK'$$);
SELECT try($$UPDATE withdrawal.currency SET seed = 'changed' WHERE code = 'XTS'$$);

-- seeded rows cannot be deleted, re-keyed or truncated away; added rows can go
SELECT try($$DELETE FROM withdrawal.channel WHERE name = 'sandbox'$$);
SELECT try($$DELETE FROM withdrawal.policy$$);
SELECT try($$DELETE FROM withdrawal.currency WHERE code = 'ISK'$$);
SELECT try($$UPDATE withdrawal.processor SET name = 'sandbox2' WHERE name = 'sandbox'$$);
SELECT try($$TRUNCATE withdrawal.policy$$);
SELECT try($$DELETE FROM withdrawal.installation$$);
DELETE FROM withdrawal.currency WHERE code = 'XTS';
SELECT count(*) AS xts FROM withdrawal.currency WHERE code = 'XTS';

-- dispatch is bound to this installation
SELECT held, bound_system_identifier = system_identifier AS same_system,
	   bound_database_oid = database_oid AS same_database,
	   bound_database_name = current_database() AND database_name = current_database() AS names
  FROM withdrawal.dispatch_binding();
SELECT system_identifier = (SELECT system_identifier FROM pg_control_system()) AS system_identifier,
	   database_oid = (SELECT oid FROM pg_database WHERE datname = current_database()) AS database_oid,
	   seed
  FROM withdrawal.installation;
-- a restore elsewhere loads the original's binding over its own: held
COPY withdrawal.installation (singleton, system_identifier, database_oid, database_name, bound_at, bound_by, seed) FROM stdin;
t	7000000000000000001	1	app	2026-01-01 00:00:00+00	postgres	default
\.
SELECT held, bound_system_identifier, bound_database_oid, bound_database_name, bound_at, bound_by
  FROM withdrawal.dispatch_binding();
-- request() still queues while dispatch is held
UPDATE withdrawal.channel SET enabled = true WHERE name = 'sandbox';
SELECT status FROM withdrawal.request('rs-1', 'USD', 200, 'sandbox', '{}', 'rs-r4');

-- who may see and resume it
CREATE ROLE regress_rs_app LOGIN IN ROLE withdrawal_app;
CREATE ROLE regress_rs_ops LOGIN IN ROLE withdrawal_ops;
CREATE ROLE regress_rs_aud LOGIN IN ROLE withdrawal_auditor;
SET SESSION AUTHORIZATION regress_rs_app;
SELECT try($$SELECT withdrawal.dispatch_binding()$$);
SELECT try($$SELECT withdrawal.resume_dispatch('app')$$);
SELECT try($$SELECT * FROM withdrawal.installation$$);
SET SESSION AUTHORIZATION regress_rs_aud;
SELECT held FROM withdrawal.dispatch_binding();
SELECT try($$SELECT withdrawal.resume_dispatch('auditor')$$);
SELECT try($$UPDATE withdrawal.installation SET database_oid = 0$$);
SET SESSION AUTHORIZATION regress_rs_ops;
SELECT try($$SELECT withdrawal.resume_dispatch(NULL)$$);
SELECT try($$SELECT withdrawal.resume_dispatch('')$$);
SELECT withdrawal.resume_dispatch('staging copy of app, restored on purpose') AS resumed;
SELECT withdrawal.resume_dispatch('again') AS resumed_again;
SELECT held, bound_by, bound_at > '2026-01-02' AS bound_now FROM withdrawal.dispatch_binding();
RESET SESSION AUTHORIZATION;
SELECT seed FROM withdrawal.installation;
SELECT actor, action, detail->>'reason' AS reason, detail->>'bound_system_identifier' AS was_system,
	   detail->>'bound_database_oid' AS was_database,
	   (detail->>'system_identifier')::bigint = (SELECT system_identifier FROM pg_control_system()) AS now_system,
	   (detail->>'database_oid')::oid = (SELECT oid FROM pg_database WHERE datname = current_database()) AS now_database
  FROM withdrawal.audit_log WHERE action = 'resume_dispatch';
SELECT withdrawal.seal_audit() > 0 AS sealed;
SELECT ok FROM withdrawal.verify_audit();
SELECT coalesce(string_agg(check_name || '=' || violations, ', '), 'clean') AS invariants
  FROM withdrawal.check_invariants() WHERE violations <> 0;

DROP OWNED BY regress_rs_app, regress_rs_ops, regress_rs_aud;
DROP ROLE regress_rs_app, regress_rs_ops, regress_rs_aud;
