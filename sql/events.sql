--
-- events: the status_event table (one row per status change, written in
-- the changing transaction, append-only, pruned only by
-- prune_status_events()), who reads it, and retry_dead(), the bulk retry
-- of dead payouts under the proof rule.  The NOTIFY payloads are checked
-- by test/t/071_status_events.pl (psql prints the sender's PID with them).
--
CREATE DATABASE regress_events;
\c regress_events
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all

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

--
-- 5. retry_dead(): dead payouts in bulk, by a filter
--
-- dead payouts of two channels, some of them sent (sent_at), with errors
CREATE FUNCTION dead(key text, channel text, err text, sent boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	wid uuid;
BEGIN
	SELECT withdrawal_id INTO wid FROM withdrawal.request('alice', 'USD', 100, channel, '{"bank": "x"}', key);
	PERFORM withdrawal.transition(wid, 'dispatching');
	UPDATE withdrawal.withdrawal SET last_error = err,
		sent_at = CASE WHEN sent THEN now() END WHERE withdrawal_id = wid;
	PERFORM withdrawal.transition(wid, 'dead');
END
$$;
SELECT dead('d-1', 'acme_bank', 'HTTP 503', true);
SELECT dead('d-2', 'acme_bank', 'timeout after 10000 ms', true);
SELECT dead('d-3', 'other_bank', 'HTTP 503', false);
CREATE TABLE mark AS SELECT clock_timestamp() AS t;
SELECT dead('d-4', 'acme_bank', 'HTTP 502', true);
SELECT dead('d-5', 'acme_bank', 'HTTP 503', true);
CREATE VIEW dead_list AS
	SELECT w.idempotency_key AS key, w.status, w.sent_at IS NOT NULL AS sent, w.attempts
	  FROM withdrawal.withdrawal w WHERE w.idempotency_key LIKE 'd-%';
SELECT * FROM dead_list ORDER BY key;

-- bad input: 22023 (WD007 for an unknown channel), nothing changes
SELECT try($$SELECT * FROM withdrawal.retry_dead(dry_run => NULL)$$);
SELECT try($$SELECT * FROM withdrawal.retry_dead(max_rows => -1)$$);
SELECT try($$SELECT * FROM withdrawal.retry_dead(max_rows => 0)$$);
SELECT try($$SELECT * FROM withdrawal.retry_dead(max_rows => NULL)$$);
SELECT try($$SELECT * FROM withdrawal.retry_dead(max_rows => 1000000)$$);
SELECT try($$SELECT * FROM withdrawal.retry_dead(died_after => now(), died_before => now() - interval '1 hour')$$);
SELECT try($$SELECT * FROM withdrawal.retry_dead(died_after => now(), died_before => now())$$);
SELECT try($$SELECT * FROM withdrawal.retry_dead(channel => '')$$);
SELECT try($$SELECT * FROM withdrawal.retry_dead(channel => repeat('x', 64))$$);
SELECT try($$SELECT * FROM withdrawal.retry_dead(channel => 'nope')$$);
SELECT try($$SELECT * FROM withdrawal.retry_dead(error_like => '')$$);
-- roles: operators only
SET ROLE withdrawal_app;
SELECT try($$SELECT * FROM withdrawal.retry_dead()$$);
RESET ROLE;

-- a dry run (the default) lists, earliest death first, and changes nothing
SELECT w.idempotency_key, r.channel, r.last_error, r.died_at IS NOT NULL AS died_known, r.retried
  FROM withdrawal.retry_dead() r JOIN withdrawal.withdrawal w USING (withdrawal_id);
SELECT w.idempotency_key, r.retried
  FROM withdrawal.retry_dead(channel => 'acme_bank', error_like => 'HTTP 50%') r
  JOIN withdrawal.withdrawal w USING (withdrawal_id);
SELECT w.idempotency_key, r.retried
  FROM withdrawal.retry_dead(died_after => (SELECT t FROM mark)) r
  JOIN withdrawal.withdrawal w USING (withdrawal_id);
SELECT w.idempotency_key, r.retried
  FROM withdrawal.retry_dead(died_before => (SELECT t FROM mark), max_rows => 2) r
  JOIN withdrawal.withdrawal w USING (withdrawal_id);
SELECT * FROM dead_list ORDER BY key;

-- for real: the 503s of acme_bank that died after the mark, as ops
GRANT SELECT ON mark TO withdrawal_ops;
SET ROLE withdrawal_ops;
CREATE TEMP TABLE ops_run AS
	SELECT * FROM withdrawal.retry_dead(channel => 'acme_bank', error_like => 'HTTP 503',
										died_after => (SELECT t FROM mark), dry_run => false);
RESET ROLE;
SELECT w.idempotency_key, r.last_error, r.retried
  FROM ops_run r JOIN withdrawal.withdrawal w USING (withdrawal_id);
SELECT * FROM dead_list ORDER BY key;
-- sent means maybe paid: the retried payout is still sent, cannot be
-- canceled, and goes back on the queue with the same key
SELECT regexp_replace(try(format('SELECT withdrawal.cancel(%L, %L)', id('d-5'), 'user')),
					  '[0-9a-f-]{36}', '<id>');
SELECT kind, parked_at IS NULL AS not_parked FROM withdrawal.outbox WHERE withdrawal_id = id('d-5');
SELECT history('d-5');
-- the rest of acme_bank, every error
SELECT w.idempotency_key, r.retried
  FROM withdrawal.retry_dead(channel => 'acme_bank', dry_run => false) r
  JOIN withdrawal.withdrawal w USING (withdrawal_id);
SELECT * FROM dead_list ORDER BY key;
-- nothing left to retry there: an empty list, still audited
SELECT count(*) FROM withdrawal.retry_dead(channel => 'acme_bank', dry_run => false);
-- one audit row per retried payout, one per call
SELECT action, count(*) FROM withdrawal.audit_log WHERE action IN ('retry', 'retry_dead')
 GROUP BY action ORDER BY action;
SELECT detail - 'died_after' FROM withdrawal.audit_log WHERE action = 'retry_dead' ORDER BY audit_id;
SELECT count(*) AS clean FROM withdrawal.check_invariants() WHERE violations <> 0;

\c postgres
DROP DATABASE regress_events;
