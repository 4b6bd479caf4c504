--
-- roles: what withdrawal_app, withdrawal_ops and withdrawal_auditor can and
-- cannot do; nobody but the owner writes the tables.
--
CREATE DATABASE regress_roles;
\c regress_roles
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all

CREATE ROLE regress_app LOGIN IN ROLE withdrawal_app;
CREATE ROLE regress_ops LOGIN IN ROLE withdrawal_ops;
CREATE ROLE regress_ops2 LOGIN IN ROLE withdrawal_ops;
CREATE ROLE regress_auditor LOGIN IN ROLE withdrawal_auditor;
CREATE ROLE regress_nobody LOGIN;
GRANT USAGE ON SCHEMA public TO PUBLIC;
GRANT EXECUTE ON FUNCTION try(text) TO PUBLIC;

-- the app credits and requests; it cannot touch tables or ops functions
SET SESSION AUTHORIZATION regress_app;
SELECT available, replayed FROM withdrawal.credit('rita', 'EUR', 8000, 'roles-c1');
SELECT status FROM withdrawal.request('rita', 'EUR', 500, 'sandbox', '{"iban": "FR76"}', 'roles-w1');
SELECT status FROM withdrawal.request('rita', 'EUR', 600, 'sandbox', '{"iban": "FR76"}', 'roles-w2');
SELECT * FROM withdrawal.balance('rita', 'EUR');
SELECT try($$SELECT * FROM withdrawal.wallet$$);
SELECT try($$SELECT * FROM withdrawal.withdrawals$$);
SELECT try($$SELECT * FROM withdrawal.audit_log$$);
SELECT try($$UPDATE withdrawal.wallet SET available = 10 ^ 9$$);
SELECT try($$INSERT INTO withdrawal.ledger_entry VALUES (1, 1, 'credit', 1, 'EUR', 'available', 100)$$);
SELECT try($$UPDATE withdrawal.policy SET min_amount = 1$$);
SELECT try($$INSERT INTO withdrawal.channel (name, processor) VALUES ('evil', 'sandbox')$$);
SELECT try($$SELECT withdrawal.set_account('rita', 9)$$);
SELECT try($$SELECT withdrawal.transition('00000000-0000-0000-0000-000000000000', 'paid')$$);
SELECT try($$SELECT withdrawal.seal_audit()$$);
SELECT try($$SELECT withdrawal.check_invariants()$$);
SELECT try(format('SELECT withdrawal.approve(%L)', (withdrawal.request('rita', 'EUR', 500, 'sandbox', '{"iban": "FR76"}', 'roles-w1')).withdrawal_id));
SELECT try(format('SELECT withdrawal.reject(%L, %L)', (withdrawal.request('rita', 'EUR', 500, 'sandbox', '{"iban": "FR76"}', 'roles-w1')).withdrawal_id, 'x'));
SELECT withdrawal.cancel((withdrawal.request('rita', 'EUR', 600, 'sandbox', '{"iban": "FR76"}', 'roles-w2')).withdrawal_id, 'user');
RESET SESSION AUTHORIZATION;

-- ops approve, reject and set accounts; they cannot write tables either
UPDATE withdrawal.policy SET review_threshold = 1000 WHERE currency = '*';
SET SESSION AUTHORIZATION regress_app;
SELECT status FROM withdrawal.request('rita', 'EUR', 1000, 'sandbox', '{"iban": "FR76"}', 'roles-w3');
SELECT withdrawal_id AS w3 FROM withdrawal.request('rita', 'EUR', 1000, 'sandbox', '{"iban": "FR76"}', 'roles-w3') \gset
RESET SESSION AUTHORIZATION;
UPDATE withdrawal.policy SET review_threshold = NULL WHERE currency = '*';
SET SESSION AUTHORIZATION regress_ops;
SELECT withdrawal.set_account('rita', 1);
SELECT (withdrawal.get(:'w3')).status;
SELECT status FROM withdrawal.withdrawals WHERE withdrawal_id = :'w3';
SELECT try($$SELECT withdrawal.credit('rita', 'EUR', 1, 'roles-ops-credit')$$);
SELECT try($$UPDATE withdrawal.withdrawal SET status = 'paid'$$);
SELECT try($$DELETE FROM withdrawal.outbox$$);
SELECT withdrawal.reject(:'w3', 'unverified beneficiary');
SELECT * FROM withdrawal.balance('rita', 'EUR');
RESET SESSION AUTHORIZATION;

-- the auditor reads views and the audit log, and writes nothing
SET SESSION AUTHORIZATION regress_auditor;
SELECT action, actor, before_status, after_status FROM withdrawal.audit_log
 WHERE account_id = 'rita' ORDER BY audit_id;
SELECT count(*) FROM withdrawal.withdrawals WHERE account_id = 'rita';
SELECT invariants();
SELECT try($$DELETE FROM withdrawal.audit_log$$);
SELECT try($$INSERT INTO withdrawal.audit_log (actor, action) VALUES ('x', 'forged')$$);
SELECT try($$SELECT withdrawal.request('rita', 'EUR', 100, 'sandbox', '{}', 'roles-w4')$$);
SELECT try($$SELECT withdrawal.approve('00000000-0000-0000-0000-000000000000')$$);
RESET SESSION AUTHORIZATION;

-- a role with no grant can do nothing at all
SET SESSION AUTHORIZATION regress_nobody;
SELECT try($$SELECT withdrawal.balance('rita', 'EUR')$$);
SELECT try($$SELECT withdrawal.credit('rita', 'EUR', 1, 'roles-x')$$);
RESET SESSION AUTHORIZATION;

-- that every entry point is SECURITY DEFINER with a pinned search_path,
-- and the listed exceptions, is access.sql's to check
-- nothing is executable by PUBLIC
SELECT p.proname FROM pg_proc p
 WHERE p.pronamespace = 'withdrawal'::regnamespace
   AND has_function_privilege('regress_nobody', p.oid, 'EXECUTE')
 ORDER BY 1;
