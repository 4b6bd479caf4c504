--
-- dispatch: retry() and sweep() without a worker (the library is not
-- preloaded here): their bad input, their privileges, and each step of
-- sweep() on rows put into the state it repairs.
--
CREATE DATABASE regress_dispatch;
\c regress_dispatch
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all

SELECT available FROM withdrawal.credit('disp', 'USD', 100000, 'disp-seed');
CREATE TEMP TABLE w (label text PRIMARY KEY, id uuid);
INSERT INTO w SELECT 'old', withdrawal_id FROM withdrawal.request('disp', 'USD', 100, 'sandbox', '{}', 'd-old');
INSERT INTO w SELECT 'new', withdrawal_id FROM withdrawal.request('disp', 'USD', 200, 'sandbox', '{}', 'd-new');
INSERT INTO w SELECT 'leased', withdrawal_id FROM withdrawal.request('disp', 'USD', 300, 'sandbox', '{}', 'd-leased');
INSERT INTO w SELECT 'submitted', withdrawal_id FROM withdrawal.request('disp', 'USD', 400, 'sandbox', '{}', 'd-sub');
INSERT INTO w SELECT 'dead', withdrawal_id FROM withdrawal.request('disp', 'USD', 500, 'sandbox', '{}', 'd-dead');

-- bad input
SELECT try($$SELECT withdrawal.retry(NULL)$$);
SELECT try($$SELECT withdrawal.retry('00000000-0000-0000-0000-000000000000')$$);
SELECT try_anon(format('SELECT withdrawal.retry(%L)', id)) FROM w WHERE label = 'new';
SELECT try($$SELECT withdrawal.sweep(NULL)$$);
SELECT try($$SELECT withdrawal.sweep('-1 hour')$$);

-- privileges: ops only
SET ROLE withdrawal_app;
SELECT try($$SELECT withdrawal.sweep()$$);
SELECT try($$SELECT withdrawal.retry('00000000-0000-0000-0000-000000000000')$$);
RESET ROLE;
SET ROLE withdrawal_ops;
SELECT withdrawal.sweep('1000 years');
RESET ROLE;

-- put rows into the states sweep() repairs
UPDATE withdrawal.withdrawal SET created_at = now() - interval '5 hours'
 WHERE withdrawal_id = (SELECT id FROM w WHERE label = 'old');
SELECT withdrawal.transition(id, 'dispatching') FROM w WHERE label IN ('leased', 'submitted', 'dead') ORDER BY label;
UPDATE withdrawal.outbox SET lease_until = now() - interval '1 second', next_attempt_at = now() + interval '1 hour'
 WHERE withdrawal_id = (SELECT id FROM w WHERE label = 'leased');
SELECT withdrawal.transition(id, 'submitted') FROM w WHERE label = 'submitted';
UPDATE withdrawal.withdrawal SET updated_at = now() - interval '1 day'
 WHERE withdrawal_id = (SELECT id FROM w WHERE label = 'submitted');
SELECT withdrawal.transition(id, 'dead') FROM w WHERE label = 'dead';

-- expired lease re-sent now, submitted queried, never-sent old one failed
SELECT withdrawal.sweep('4 hours');
SELECT w.label, x.status, x.reason, o.kind, o.lease_until IS NULL AS unleased,
	   o.next_attempt_at <= now() AS due
  FROM w JOIN withdrawal.withdrawals x ON x.withdrawal_id = w.id
  LEFT JOIN withdrawal.outbox o ON o.withdrawal_id = w.id
 ORDER BY w.label;
-- the refund of the failed one
SELECT available, held FROM withdrawal.balance('disp', 'USD');
-- idempotent: nothing more to do
SELECT withdrawal.sweep('4 hours');

-- retry() of the dead one: queued again with a fresh attempt budget
UPDATE withdrawal.withdrawal SET attempts = 8 WHERE withdrawal_id = (SELECT id FROM w WHERE label = 'dead');
SELECT withdrawal.retry(id) FROM w WHERE label = 'dead';
SELECT x.status, x.attempts, o.kind FROM w JOIN withdrawal.withdrawals x ON x.withdrawal_id = w.id
  JOIN withdrawal.outbox o ON o.withdrawal_id = w.id WHERE w.label = 'dead';
-- a second retry() finds it queued already
SELECT try_anon(format('SELECT withdrawal.retry(%L)', id)) FROM w WHERE label = 'dead';

SELECT check_name, violations FROM withdrawal.check_invariants() WHERE violations > 0;
