--
-- methods: payout methods bound to an account and a channel (issue 13).
-- add_payout_method() (idempotent over live methods), verify (ops only),
-- remove; request() by {"method_id": ...} pays the stored destination and
-- stores the method id; another account's, a removed or a pending method
-- is refused, and so is a method in its cooling-off period (time travel:
-- the owner moves verified_at back) and a free destination where the
-- policy says free_destinations = false.  Every refusal changes nothing.
--
CREATE DATABASE regress_methods;
\c regress_methods
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all
SET timezone = 'UTC';

GRANT EXECUTE ON FUNCTION try_anon(text), books() TO PUBLIC;

CREATE ROLE regress_pm_app LOGIN IN ROLE withdrawal_app;
CREATE ROLE regress_pm_ops LOGIN IN ROLE withdrawal_ops;

SELECT transfer_id IS NOT NULL AS credited FROM withdrawal.credit('alice', 'USD', 100000, 'c1');
SELECT transfer_id IS NOT NULL AS credited FROM withdrawal.credit('bob', 'USD', 100000, 'c2');

-- the application binds alice's bank account; the same destination again
-- (any key order) is the same method; another one is another
SET SESSION AUTHORIZATION regress_pm_app;
SELECT withdrawal.add_payout_method('alice', 'sandbox', '{"iban": "DE89", "name": "Alice"}', 'main') AS alice_m \gset
SELECT withdrawal.add_payout_method('alice', 'sandbox', '{"name": "Alice", "iban": "DE89"}', 'again') = :'alice_m' AS same_method;
SELECT withdrawal.add_payout_method('alice', 'sandbox', '{"iban": "FR76"}', 'second') AS alice_m2 \gset
SELECT :'alice_m2' <> :'alice_m' AS other_method;
SELECT withdrawal.add_payout_method('bob', 'sandbox', '{"iban": "GB33"}', 'bob') AS bob_m \gset
-- the application cannot verify (ops do: docs/security.md)
SELECT try_anon(format('SELECT withdrawal.verify_payout_method(%L)', :'alice_m'));
-- nor read the registry
SELECT try_anon('SELECT count(*) FROM withdrawal.payout_method');
-- a pending method is not paid to
SELECT books() AS before;
SELECT try_anon(format($$SELECT withdrawal.request('alice', 'USD', 100, 'sandbox', '{"method_id": "%s"}', 'r0')$$, :'alice_m'));
SELECT books() AS after;
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION regress_pm_ops;
SELECT withdrawal.verify_payout_method(:'alice_m');
SELECT withdrawal.verify_payout_method(:'alice_m') AS again;
SELECT withdrawal.verify_payout_method(:'bob_m');
SELECT try_anon('SELECT withdrawal.verify_payout_method(''00000000-0000-0000-0000-000000000000'')');
SELECT label, status, verified_at IS NOT NULL AS verified, removed_at IS NULL AS live
  FROM withdrawal.payout_method ORDER BY created_at, label;
RESET SESSION AUTHORIZATION;

-- a request by method id pays the stored destination and records the method
SET SESSION AUTHORIZATION regress_pm_app;
SELECT status, replayed
  FROM withdrawal.request('alice', 'USD', 100, 'sandbox', format('{"method_id": "%s"}', :'alice_m')::jsonb, 'r1');
-- a replay with the same method id replays; another method, or the same
-- destination spelled out, is another request: WD002
SELECT status, replayed
  FROM withdrawal.request('alice', 'USD', 100, 'sandbox', format('{"method_id": "%s"}', :'alice_m')::jsonb, 'r1');
SELECT try_anon(format($$SELECT withdrawal.request('alice', 'USD', 100, 'sandbox', '{"method_id": "%s"}', 'r1')$$, :'alice_m2'));
SELECT try_anon($$SELECT withdrawal.request('alice', 'USD', 100, 'sandbox', '{"iban": "DE89", "name": "Alice"}', 'r1')$$);
-- another account's method is unknown, and so is a method on another channel
SELECT books() AS before;
SELECT try_anon(format($$SELECT withdrawal.request('alice', 'USD', 100, 'sandbox', '{"method_id": "%s"}', 'r2')$$, :'bob_m'));
SELECT try_anon(format($$SELECT withdrawal.request('bob', 'USD', 100, 'sandbox', '{"method_id": "%s"}', 'r2')$$, :'alice_m'));
SELECT try_anon('SELECT withdrawal.request(''alice'', ''USD'', 100, ''sandbox'', ''{"method_id": "00000000-0000-0000-0000-000000000000"}'', ''r2'')');
SELECT books() AS after;
RESET SESSION AUTHORIZATION;
SELECT destination, method_id = :'alice_m' AS method_recorded, requested_by
  FROM withdrawal.withdrawal WHERE idempotency_key = 'r1';
SELECT action, account_id, before_status, after_status,
	   detail - 'method_id' AS detail, detail->>'method_id' IS NOT NULL AS names_method
  FROM withdrawal.audit_log WHERE action LIKE 'method%' OR action = 'request' ORDER BY audit_id;

-- another channel: alice's sandbox method is unknown there
INSERT INTO withdrawal.channel (name, processor) VALUES ('bank', 'sandbox');
SELECT try_anon(format($$SELECT withdrawal.request('alice', 'USD', 100, 'bank', '{"method_id": "%s"}', 'r3')$$, :'alice_m'));

-- removal: by the application; final; requests naming it are refused, the
-- replay of an earlier request still replays; the destination can be
-- bound anew as a new (pending) method
SET SESSION AUTHORIZATION regress_pm_app;
SELECT withdrawal.remove_payout_method(:'alice_m');
SELECT withdrawal.remove_payout_method(:'alice_m') AS again;
SELECT try_anon(format($$SELECT withdrawal.request('alice', 'USD', 100, 'sandbox', '{"method_id": "%s"}', 'r4')$$, :'alice_m'));
SELECT status, replayed
  FROM withdrawal.request('alice', 'USD', 100, 'sandbox', format('{"method_id": "%s"}', :'alice_m')::jsonb, 'r1');
SELECT withdrawal.add_payout_method('alice', 'sandbox', '{"iban": "DE89", "name": "Alice"}', 'rebound') <> :'alice_m' AS new_method;
SELECT try_anon('SELECT withdrawal.remove_payout_method(''00000000-0000-0000-0000-000000000000'')');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_pm_ops;
SELECT try_anon(format('SELECT withdrawal.verify_payout_method(%L)', :'alice_m'));
RESET SESSION AUTHORIZATION;

-- cooling-off: a method verified now cannot be paid to for a day (WD003),
-- then can
UPDATE withdrawal.policy SET method_cooling_off = '1 day' WHERE currency = '*';
-- a mixed sign, or more than 100 years, is refused when written
SELECT try_anon($$UPDATE withdrawal.policy SET method_cooling_off = '1 day -25 hours' WHERE currency = '*'$$);
SELECT try_anon($$UPDATE withdrawal.policy SET method_cooling_off = '101 years' WHERE currency = '*'$$);
SET SESSION AUTHORIZATION regress_pm_ops;
SELECT withdrawal.verify_payout_method(:'alice_m2');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_pm_app;
SELECT books() AS before;
SELECT try_anon(format($$SELECT withdrawal.request('alice', 'USD', 200, 'sandbox', '{"method_id": "%s"}', 'r5')$$, :'alice_m2'));
SELECT books() AS after;
RESET SESSION AUTHORIZATION;
UPDATE withdrawal.payout_method SET verified_at = verified_at - interval '25 hours' WHERE method_id = :'alice_m2';
SET SESSION AUTHORIZATION regress_pm_app;
SELECT status, replayed
  FROM withdrawal.request('alice', 'USD', 200, 'sandbox', format('{"method_id": "%s"}', :'alice_m2')::jsonb, 'r5');
RESET SESSION AUTHORIZATION;

-- free destinations: allowed by default, refused when the policy says so
SET SESSION AUTHORIZATION regress_pm_app;
SELECT status FROM withdrawal.request('bob', 'USD', 100, 'sandbox', '{"iban": "XX00"}', 'f1');
RESET SESSION AUTHORIZATION;
UPDATE withdrawal.policy SET free_destinations = false WHERE currency = '*';
SET SESSION AUTHORIZATION regress_pm_app;
SELECT books() AS before;
SELECT try_anon($$SELECT withdrawal.request('bob', 'USD', 100, 'sandbox', '{"iban": "XX00"}', 'f2')$$);
SELECT books() AS after;
-- a replay of a request accepted before still replays
SELECT status, replayed FROM withdrawal.request('bob', 'USD', 100, 'sandbox', '{"iban": "XX00"}', 'f1');
-- bob's method is verified and there is no cooling-off for it any more
RESET SESSION AUTHORIZATION;
UPDATE withdrawal.policy SET method_cooling_off = NULL WHERE currency = '*';
SET SESSION AUTHORIZATION regress_pm_app;
SELECT status FROM withdrawal.request('bob', 'USD', 100, 'sandbox', format('{"method_id": "%s"}', :'bob_m')::jsonb, 'f3');
RESET SESSION AUTHORIZATION;

-- bad input: 22023, nothing changes
SET SESSION AUTHORIZATION regress_pm_app;
SELECT books() AS before;
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'sandbox', '[1]', 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'sandbox', NULL, 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method(NULL, 'sandbox', '{}', 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', NULL, '{}', 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'sandbox', '{"a": 1}', repeat('x', 129))$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'sandbox', '{"a": 1}', '')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'sandbox', jsonb_build_object('a', repeat('x', 2100)), 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'sandbox', '{"method_id": "00000000-0000-0000-0000-000000000000"}', 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('nobody', 'sandbox', '{"a": 1}', 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'nochannel', '{"a": 1}', 'x')$$);
SELECT try_anon($$SELECT withdrawal.remove_payout_method(NULL)$$);
SELECT try_anon($$SELECT withdrawal.request('alice', 'USD', 100, 'sandbox', '{"method_id": "not-a-uuid"}', 'b1')$$);
SELECT try_anon($$SELECT withdrawal.request('alice', 'USD', 100, 'sandbox', '{"method_id": 42}', 'b1')$$);
SELECT try_anon($$SELECT withdrawal.request('alice', 'USD', 100, 'sandbox', '{"method_id": "{00000000-0000-0000-0000-000000000000}"}', 'b1')$$);
SELECT try_anon($$SELECT withdrawal.request('alice', 'USD', 100, 'sandbox', '{"method_id": "00000000-0000-0000-0000-000000000000", "iban": "X"}', 'b1')$$);
SELECT books() AS after;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_pm_ops;
SELECT try_anon($$SELECT withdrawal.verify_payout_method(NULL)$$);
RESET SESSION AUTHORIZATION;
-- nobody but the owner writes the table
SET SESSION AUTHORIZATION regress_pm_ops;
SELECT try_anon($$UPDATE withdrawal.payout_method SET status = 'verified'$$);
RESET SESSION AUTHORIZATION;

SELECT action, before_status, after_status FROM withdrawal.audit_log
 WHERE action LIKE 'method%' ORDER BY audit_id;

SELECT coalesce(string_agg(check_name || '=' || violations, ', '), 'clean') AS invariants
  FROM withdrawal.check_invariants() WHERE violations <> 0;

DROP OWNED BY regress_pm_app, regress_pm_ops;
DROP ROLE regress_pm_app, regress_pm_ops;
