--
-- monitor: the monitoring views without shared_preload_libraries (no
-- shared state: channels show NULL state, workers no rows), read by a role
-- that is only a member of pg_monitor, by ops, and refused to the app.
-- The worker's side is tested by TAP (081_monitor).
--
CREATE DATABASE regress_monitor;
\c regress_monitor
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all
SET timezone = 'UTC';

GRANT EXECUTE ON FUNCTION try(text) TO PUBLIC;
GRANT USAGE ON SCHEMA public TO PUBLIC;

CREATE ROLE regress_mon_monitor LOGIN IN ROLE pg_monitor;
CREATE ROLE regress_mon_ops LOGIN IN ROLE withdrawal_ops;
CREATE ROLE regress_mon_app LOGIN IN ROLE withdrawal_app;
CREATE ROLE regress_mon_nobody LOGIN;

-- open payouts on two channels, one held for review, one canceled (final)
INSERT INTO withdrawal.channel (name, processor) VALUES ('bank', 'sandbox');
UPDATE withdrawal.policy SET review_threshold = 5000 WHERE currency = '*';
SELECT available FROM withdrawal.credit('mona', 'USD', 100000, 'mon-c1');
SELECT status FROM withdrawal.request('mona', 'USD', 100, 'sandbox', '{}', 'mon-1');
SELECT status FROM withdrawal.request('mona', 'USD', 200, 'sandbox', '{}', 'mon-2');
SELECT status FROM withdrawal.request('mona', 'USD', 300, 'bank', '{}', 'mon-3');
SELECT status FROM withdrawal.request('mona', 'USD', 6000, 'bank', '{}', 'mon-4');
SELECT withdrawal.cancel(withdrawal_id, 'changed my mind')
  FROM withdrawal.withdrawal WHERE idempotency_key = 'mon-1';

SET SESSION AUTHORIZATION regress_mon_monitor;
-- every open status of every channel, zero included; canceled is not open
SELECT channel, status, payouts, (oldest_created_at IS NOT NULL) = (payouts > 0) AS oldest_iff_any
  FROM withdrawal.monitor_queue;
-- no shared memory: the configuration and the outbox, NULL state
SELECT channel, processor, enabled, tokens, blocked_until, blocked, throttled, in_flight,
	   breaker, breaker_until, breaker_failures, breaker_opens,
	   cannot_dispatch, outbox, due, oldest_due_at IS NOT NULL AS has_oldest_due, parked
  FROM withdrawal.monitor_channels;
SELECT count(*) AS worker_rows FROM withdrawal.monitor_workers;
SELECT review, dead, parked, workers, workers_running, audit_head_seq, audit_unsealed > 0 AS unsealed,
	   audit_oldest_unsealed_at IS NOT NULL AS has_oldest_unsealed, last_reconcile_run_id
  FROM withdrawal.monitor_summary;
SELECT processor, run_id FROM withdrawal.monitor_reconcile;
-- the functions behind the views too; the tables and the raw state stay closed
SELECT count(*) FROM withdrawal.monitor_queue();
SELECT try($$SELECT * FROM withdrawal.withdrawal$$);
SELECT try($$SELECT * FROM withdrawal.outbox$$);
SELECT try($$SELECT * FROM withdrawal.channel_state()$$);
SELECT try($$SELECT withdrawal.audit_head()$$);
RESET SESSION AUTHORIZATION;

-- the audit chain sealed, and a reconciliation recorded
SELECT withdrawal.seal_audit() > 0 AS sealed;
SELECT count(*) FROM withdrawal.reconcile('sandbox', '2000-01-01', '2001-01-01');

SET SESSION AUTHORIZATION regress_mon_ops;
SELECT review, dead, parked, audit_head_seq = (SELECT seq FROM withdrawal.audit_head()) AS head_is_published,
	   audit_unsealed, audit_oldest_unsealed_at, last_reconcile_processor,
	   last_reconcile_finished_at IS NOT NULL AS reconciled, last_reconcile_discrepancies
  FROM withdrawal.monitor_summary;
SELECT processor, run_id IS NOT NULL AS has_run, period_start, period_end, discrepancies
  FROM withdrawal.monitor_reconcile;
SELECT channel, sum(payouts) FROM withdrawal.monitor_queue GROUP BY 1 ORDER BY 1;
RESET SESSION AUTHORIZATION;

-- the app and a role without grants get nothing
SET SESSION AUTHORIZATION regress_mon_app;
SELECT try($$SELECT * FROM withdrawal.monitor_queue$$);
SELECT try($$SELECT * FROM withdrawal.monitor_channels$$);
SELECT try($$SELECT * FROM withdrawal.monitor_workers$$);
SELECT try($$SELECT * FROM withdrawal.monitor_summary$$);
SELECT try($$SELECT * FROM withdrawal.monitor_reconcile$$);
SELECT try($$SELECT * FROM withdrawal.monitor_summary()$$);
SELECT try($$SELECT * FROM withdrawal.channel_state()$$);
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_mon_nobody;
SELECT try($$SELECT * FROM withdrawal.monitor_summary$$);
RESET SESSION AUTHORIZATION;

DROP OWNED BY regress_mon_monitor, regress_mon_ops, regress_mon_app, regress_mon_nobody;
DROP ROLE regress_mon_monitor, regress_mon_ops, regress_mon_app, regress_mon_nobody;
