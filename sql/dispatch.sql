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

-- The driver registry (processor.c) and the CHECK list of
-- withdrawal.processor.driver name the same drivers: a driver added to one
-- side only is listed here.
WITH registry AS (SELECT name FROM withdrawal.drivers()),
allowed AS (
	SELECT m[1] AS name
	  FROM pg_constraint c,
		   regexp_matches(pg_get_constraintdef(c.oid), '''([^'']+)''::text', 'g') m
	 WHERE c.conrelid = 'withdrawal.processor'::regclass AND c.contype = 'c'
	   AND pg_get_constraintdef(c.oid) ~ '^CHECK \(\(driver = ANY')
SELECT coalesce(r.name, a.name) AS driver,
	   CASE WHEN a.name IS NULL THEN 'in the registry only' ELSE 'in the CHECK list only' END AS problem
  FROM registry r FULL JOIN allowed a ON a.name = r.name
 WHERE r.name IS NULL OR a.name IS NULL;
-- the drivers without network are exactly those the base_url CHECK exempts
WITH exempt AS (
	SELECT m[1] AS name
	  FROM pg_constraint c,
		   regexp_matches(pg_get_constraintdef(c.oid), 'driver = ''([^'']+)''::text', 'g') m
	 WHERE c.conrelid = 'withdrawal.processor'::regclass AND c.contype = 'c'
	   AND pg_get_constraintdef(c.oid) ~ 'base_url IS NOT NULL')
SELECT coalesce(d.name, e.name) AS driver, d.network
  FROM (SELECT * FROM withdrawal.drivers() WHERE NOT network) d
  FULL JOIN exempt e ON e.name = d.name
 WHERE d.name IS NULL OR e.name IS NULL;
-- what each driver declares; settling by itself excludes bulk recording
SELECT * FROM withdrawal.drivers();
SELECT name FROM withdrawal.drivers() WHERE settles_by_itself AND bulk_submit;
SET ROLE withdrawal_auditor;
SELECT count(*) FROM withdrawal.drivers();
RESET ROLE;
SET ROLE withdrawal_app;
SELECT try($$SELECT count(*) FROM withdrawal.drivers()$$);
RESET ROLE;

-- sweep() stays linear in the outbox when the outbox was analyzed while
-- drained (pages but no live rows: estimated at one row however full it
-- is).  Its lease cleanup, a locked subquery planned as a semi-join, was
-- rescanned for every outbox row: 5,000 expired leases took 113M buffer
-- hits and 117 s.  Counted in buffer hits (work), not in time.  In a
-- database of its own, so that the outbox is drained when analyzed.
\c postgres
CREATE DATABASE regress_sweep_linear;
\c regress_sweep_linear
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
SET session_replication_role = replica;
INSERT INTO withdrawal.withdrawal (withdrawal_id, idempotency_key, account_id, currency, amount,
								   channel, destination, context, status, requested_by, sent_at)
SELECT gen_random_uuid(), 'lin-' || g, 'lin', 'USD', 1, 'sandbox', '{}', '{}', 'dispatching',
	   current_user, now()
  FROM generate_series(1, 2000) g;
INSERT INTO withdrawal.outbox (withdrawal_id, channel)
SELECT withdrawal_id, channel FROM withdrawal.withdrawal WHERE account_id = 'lin';
DELETE FROM withdrawal.outbox o USING withdrawal.withdrawal w
 WHERE w.withdrawal_id = o.withdrawal_id AND w.account_id = 'lin';
ANALYZE withdrawal.outbox;
INSERT INTO withdrawal.outbox (withdrawal_id, channel, lease_until, claimed_by)
SELECT withdrawal_id, channel, now() - interval '1 minute', 0
  FROM withdrawal.withdrawal WHERE account_id = 'lin';
RESET session_replication_role;
SELECT relpages > 0 AS has_pages, reltuples = 0 AS thought_empty
  FROM pg_class WHERE oid = 'withdrawal.outbox'::regclass;
CREATE FUNCTION pg_temp.buffer_hits(query text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	plan json;
BEGIN
	EXECUTE 'EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ' || query INTO plan;
	RETURN (plan -> 0 -> 'Plan' ->> 'Shared Hit Blocks')::bigint +
		   (plan -> 0 -> 'Plan' ->> 'Shared Read Blocks')::bigint;
END
$$;
-- linear: about 16 hits per row; the semi-join took thousands
SELECT pg_temp.buffer_hits($$SELECT withdrawal.sweep('4 hours')$$) < 50 * 2000 AS linear_in_outbox;
SELECT count(*) FILTER (WHERE o.lease_until IS NULL AND o.failures = 1) AS requeued, count(*) AS total
  FROM withdrawal.outbox o JOIN withdrawal.withdrawal w USING (withdrawal_id)
 WHERE w.account_id = 'lin';
\c postgres
DROP DATABASE regress_sweep_linear;
