--
-- events: the status_event table (one row per status change, written in
-- the changing transaction, append-only, pruned only by
-- prune_status_events()), and who reads it.  The NOTIFY payloads are checked
-- by test/t/071_status_events.pl (psql prints the sender's PID with them).
--
CREATE DATABASE regress_events;
\c regress_events
CREATE EXTENSION withdrawal;
SET client_min_messages = warning;
\set VERBOSITY terse

CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
CREATE FUNCTION id(key text) RETURNS uuid LANGUAGE sql AS $$
	SELECT withdrawal_id FROM withdrawal.withdrawal WHERE idempotency_key = key
$$;
-- the statuses of a withdrawal's events, in order
CREATE FUNCTION history(key text) RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(e.status, ' > ' ORDER BY e.event_id)
	  FROM withdrawal.status_event e WHERE e.withdrawal_id = id(key)
$$;
INSERT INTO withdrawal.processor (name, driver, base_url) VALUES ('acme', 'http', 'https://acme.example');
INSERT INTO withdrawal.channel (name, processor) VALUES ('acme_bank', 'acme'), ('other_bank', 'acme');
SELECT available FROM withdrawal.credit('alice', 'USD', 100000, 'fund-1');

--
-- 1. one event per status change, in the transaction of the change
--
SELECT status FROM withdrawal.request('alice', 'USD', 100, 'sandbox', '{"bank": "x"}', 'e-1');
SELECT history('e-1');
SELECT withdrawal.cancel(id('e-1'), 'changed my mind');
SELECT history('e-1');
-- a replay changes nothing and records nothing
SELECT replayed FROM withdrawal.request('alice', 'USD', 100, 'sandbox', '{"bank": "x"}', 'e-1');
SELECT history('e-1');
-- a change rolled back leaves no event
BEGIN;
SELECT status FROM withdrawal.request('alice', 'USD', 200, 'sandbox', '{"bank": "x"}', 'e-2');
ROLLBACK;
SELECT count(*) AS events_of_rolled_back FROM withdrawal.status_event e
 WHERE NOT EXISTS (SELECT FROM withdrawal.withdrawal w WHERE w.withdrawal_id = e.withdrawal_id);
-- a risk denial is recorded as a rejected withdrawal, and an event
SELECT withdrawal.block('device', 'bad-device', 'fraud');
SELECT status FROM withdrawal.request('alice', 'USD', 50, 'sandbox', '{"bank": "x"}', 'e-3',
									  '{"device_id": "bad-device"}');
SELECT history('e-3');
-- every path: operators' transitions, a direct UPDATE by the owner, and a
-- statement that changes other columns only (no event)
SELECT status FROM withdrawal.request('alice', 'USD', 300, 'acme_bank', '{"bank": "x"}', 'e-4');
SELECT withdrawal.transition(id('e-4'), 'dispatching');
UPDATE withdrawal.withdrawal SET status = 'submitted' WHERE withdrawal_id = id('e-4');
UPDATE withdrawal.withdrawal SET last_error = 'noted', status = status WHERE withdrawal_id = id('e-4');
SELECT withdrawal.transition(id('e-4'), 'paid');
SELECT withdrawal.transition(id('e-4'), 'returned');
SELECT history('e-4');
-- event ids grow; every event's time is its transaction's
SELECT count(*) AS events, count(DISTINCT event_id) AS distinct_ids,
	   bool_and(at <= now()) AS in_the_past, bool_and(xact_id IS NOT NULL) AS with_xact
  FROM withdrawal.status_event;

-- the NOTIFY is a setting for superusers; either way the table is written
SHOW withdrawal.notify_status;
SET withdrawal.notify_status = on;
SELECT status FROM withdrawal.request('alice', 'USD', 400, 'sandbox', '{"bank": "x"}', 'e-5');
RESET withdrawal.notify_status;
SELECT history('e-5');
SET ROLE withdrawal_app;
SELECT try($$SET withdrawal.notify_status = off$$);
RESET ROLE;

--
-- 2. append-only: no UPDATE, DELETE or TRUNCATE, even by the owner
--
SELECT try($$UPDATE withdrawal.status_event SET status = 'paid'$$);
SELECT try($$DELETE FROM withdrawal.status_event$$);
SELECT try($$TRUNCATE withdrawal.status_event$$);

--
-- 3. who reads: the application, operators, auditors; nobody writes
--
SET ROLE withdrawal_app;
SELECT count(*) > 0 AS app_reads FROM withdrawal.status_event;
SELECT try($$INSERT INTO withdrawal.status_event (withdrawal_id, status) VALUES (gen_random_uuid(), 'paid')$$);
SELECT try($$SELECT withdrawal.prune_status_events('30 days')$$);
RESET ROLE;
SET ROLE withdrawal_auditor;
SELECT count(*) > 0 AS auditor_reads FROM withdrawal.status_event;
RESET ROLE;

--
-- 4. retention: prune_status_events(older_than)
--
SELECT try($$SELECT withdrawal.prune_status_events(NULL)$$);
SELECT try($$SELECT withdrawal.prune_status_events('23 hours')$$);
SELECT try($$SELECT withdrawal.prune_status_events('-30 days')$$);
SELECT count(*) AS before FROM withdrawal.status_event \gset
-- nothing is old enough yet
SET ROLE withdrawal_ops;
SELECT withdrawal.prune_status_events('1 day');
RESET ROLE;
-- events of two years ago, as an old installation has them: those of
-- final withdrawals go, those of a withdrawal still open stay
SELECT status FROM withdrawal.request('alice', 'USD', 500, 'acme_bank', '{"bank": "x"}', 'e-open');
INSERT INTO withdrawal.status_event (withdrawal_id, status, at)
SELECT id(k), 'queued', now() - interval '2 years' FROM unnest(ARRAY['e-1', 'e-4', 'e-open']) k;
SELECT withdrawal.prune_status_events('30 days');
SELECT count(*) = :before + 2 AS only_the_new_and_the_open_remain FROM withdrawal.status_event;
SELECT history('e-open');
SELECT action, detail FROM withdrawal.audit_log WHERE action = 'prune_status_events' ORDER BY audit_id;

\c postgres
DROP DATABASE regress_events;
