
/* withdrawal: monitoring (docs/monitoring.md) */

/*
 * Each monitor_* view is a SELECT over the function of the same name, as
 * pg_stat_statements does.  The functions are SECURITY DEFINER, so that a
 * member of pg_monitor or withdrawal_ops reads the counts and the shared
 * state without any right on the tables, and they return only aggregates,
 * ids and messages: no account, destination or amount.  They read only,
 * and work on a standby; without shared_preload_libraries the shared
 * state is missing and shows as NULL (channels) or no rows (workers).
 */

/* The shared flow-control state of the channels (flow.c), for monitor_channels() */
CREATE FUNCTION withdrawal.channel_state(OUT channel text, OUT rate_per_second double precision,
										 OUT burst integer, OUT tokens double precision,
										 OUT blocked_until timestamptz, OUT throttled bigint,
										 OUT in_flight integer, OUT cannot_dispatch text,
										 OUT breaker text, OUT breaker_until timestamptz,
										 OUT breaker_failures integer, OUT breaker_opens bigint)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdrawal_channel_state'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.channel_state() IS
	'the shared flow-control state and circuit breaker of each channel the workers used since the server started (none without shared_preload_libraries); read through monitor_channels';

/*
 * Open payouts per channel and status, every pair listed (zero included)
 * so that a gauge drops to 0 instead of disappearing.  The status test is
 * the predicate of the partial index withdrawal_open: paid, failed and
 * other final rows, the bulk of a big table, are never read.
 */
CREATE FUNCTION withdrawal.monitor_queue(OUT channel text, OUT status text, OUT payouts bigint,
										 OUT oldest_created_at timestamptz,
										 OUT oldest_updated_at timestamptz)
	RETURNS SETOF record
	LANGUAGE sql STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	WITH q AS (
		SELECT w.channel, w.status::text AS status, count(*) AS payouts,
			   min(w.created_at) AS oldest_created_at, min(w.updated_at) AS oldest_updated_at
		  FROM withdrawal.withdrawal w
		 WHERE w.status IN ('review', 'queued', 'dispatching', 'submitted', 'dead')
		 GROUP BY w.channel, w.status
	)
	SELECT c.channel, s.status, coalesce(q.payouts, 0), q.oldest_created_at, q.oldest_updated_at
	  FROM (SELECT name FROM withdrawal.channel UNION SELECT channel FROM q) c(channel)
	 CROSS JOIN (SELECT i.status, i.ordinal FROM withdrawal.status_info() i
				  WHERE i.holds_funds) s
	  LEFT JOIN q ON q.channel = c.channel AND q.status = s.status
	 ORDER BY c.channel, s.ordinal
$$;
COMMENT ON FUNCTION withdrawal.monitor_queue() IS
	'open payouts (review, queued, dispatching, submitted, dead) per channel and status: how many, the oldest request and the longest unchanged';
CREATE VIEW withdrawal.monitor_queue AS SELECT * FROM withdrawal.monitor_queue();
COMMENT ON VIEW withdrawal.monitor_queue IS
	'open payouts per channel and status, with the oldest; see docs/monitoring.md';

/*
 * Each channel's configuration, its shared flow-control state (circuit
 * breaker included) and its part of the outbox (a small table: rows leave
 * when payouts do).
 */
CREATE FUNCTION withdrawal.monitor_channels(OUT channel text, OUT processor text, OUT enabled boolean,
											OUT rate_per_second double precision, OUT burst integer,
											OUT max_in_flight integer, OUT tokens double precision,
											OUT blocked_until timestamptz, OUT blocked boolean,
											OUT throttled bigint, OUT in_flight integer,
											OUT breaker text, OUT breaker_until timestamptz,
											OUT breaker_failures integer, OUT breaker_opens bigint,
											OUT cannot_dispatch text, OUT outbox bigint,
											OUT due bigint, OUT oldest_due_at timestamptz,
											OUT parked bigint)
	RETURNS SETOF record
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT c.name, c.processor, c.enabled, c.rate_per_second, c.burst, c.max_in_flight,
		   s.tokens, s.blocked_until,
		   CASE WHEN s.channel IS NOT NULL THEN coalesce(s.blocked_until > now(), false) END,
		   s.throttled, s.in_flight,
		   s.breaker, s.breaker_until, s.breaker_failures, s.breaker_opens,
		   CASE WHEN c.enabled THEN s.cannot_dispatch END,
		   o.outbox, o.due, o.oldest_due_at, o.parked
	  FROM withdrawal.channel c
	  LEFT JOIN withdrawal.channel_state() s ON s.channel = c.name
	 CROSS JOIN LATERAL (
		SELECT count(*) AS outbox,
			   count(*) FILTER (WHERE x.parked_at IS NULL AND x.next_attempt_at <= now()
								AND (x.lease_until IS NULL OR x.lease_until < now())) AS due,
			   min(x.next_attempt_at) FILTER (WHERE x.parked_at IS NULL AND x.next_attempt_at <= now()
											  AND (x.lease_until IS NULL OR x.lease_until < now())) AS oldest_due_at,
			   count(*) FILTER (WHERE x.parked_at IS NOT NULL) AS parked
		  FROM withdrawal.outbox x
		 WHERE x.channel = c.name) o
	 ORDER BY c.name
$$;
COMMENT ON FUNCTION withdrawal.monitor_channels() IS
	'each channel: switch, limits, shared flow-control state (tokens, Retry-After pause, requests on the wire, circuit breaker), why it cannot dispatch, and its outbox rows (due now, oldest due, parked)';
CREATE VIEW withdrawal.monitor_channels AS SELECT * FROM withdrawal.monitor_channels();
COMMENT ON VIEW withdrawal.monitor_channels IS
	'each channel''s switch, limits, flow-control state, circuit breaker and outbox; see docs/monitoring.md';

CREATE FUNCTION withdrawal.monitor_workers(OUT worker integer, OUT pid integer, OUT state text,
										   OUT started_at timestamptz, OUT last_loop_at timestamptz,
										   OUT in_flight integer, OUT sent bigint, OUT recorded bigint,
										   OUT failed bigint, OUT dead bigint, OUT send_errors bigint,
										   OUT last_error text, OUT last_error_at timestamptz,
										   OUT last_send_error text, OUT last_send_error_at timestamptz)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdrawal_monitor_workers'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.monitor_workers() IS
	'each dispatcher worker as it reports itself in shared memory: pid (NULL: not running), state, last pass of its loop, counters since its start, last errors (none without shared_preload_libraries)';
CREATE VIEW withdrawal.monitor_workers AS SELECT * FROM withdrawal.monitor_workers();
COMMENT ON VIEW withdrawal.monitor_workers IS
	'the dispatcher workers: pid, state, liveness, counters, last errors; see docs/monitoring.md';

/*
 * One row of what needs a person or says the books are watched: payouts
 * held for review or dead, parked ones, the workers, the audit chain's
 * head and what is not sealed yet (the rows above the highest sealed id,
 * read by key), and the latest reconciliation.
 */
CREATE FUNCTION withdrawal.monitor_summary(OUT review bigint, OUT dead bigint, OUT parked bigint,
										   OUT workers integer, OUT workers_running integer,
										   OUT audit_head_seq bigint, OUT audit_head_sealed_at timestamptz,
										   OUT audit_unsealed bigint,
										   OUT audit_oldest_unsealed_at timestamptz,
										   OUT last_reconcile_run_id bigint,
										   OUT last_reconcile_processor text,
										   OUT last_reconcile_finished_at timestamptz,
										   OUT last_reconcile_discrepancies bigint)
	RETURNS record
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT (SELECT count(*) FROM withdrawal.withdrawal w WHERE w.status = 'review'),
		   (SELECT count(*) FROM withdrawal.withdrawal w WHERE w.status = 'dead'),
		   (SELECT count(*) FROM withdrawal.outbox o WHERE o.parked_at IS NOT NULL),
		   (SELECT count(*)::integer FROM withdrawal.monitor_workers()),
		   (SELECT count(*)::integer FROM withdrawal.monitor_workers() m WHERE m.pid IS NOT NULL),
		   coalesce(h.seq, 0), h.sealed_at, u.unsealed, u.oldest,
		   r.run_id, r.processor, r.finished_at, r.discrepancies
	  FROM (SELECT count(*) AS unsealed, min(a.logged_at) AS oldest
			  FROM withdrawal.audit_log a
			 WHERE a.audit_id > coalesce((SELECT max(s.audit_id) FROM withdrawal.audit_seal s), 0)) u
	  LEFT JOIN LATERAL (SELECT s.seq, s.sealed_at FROM withdrawal.audit_seal s
						  ORDER BY s.seq DESC LIMIT 1) h ON true
	  LEFT JOIN LATERAL (SELECT x.run_id, x.processor, x.finished_at, x.discrepancies
						   FROM withdrawal.recon_run x
						  WHERE x.finished_at IS NOT NULL
						  ORDER BY x.run_id DESC LIMIT 1) r ON true
$$;
COMMENT ON FUNCTION withdrawal.monitor_summary() IS
	'one row: payouts in review, dead and parked, workers configured and running, the audit chain head and its unsealed rows, the latest reconciliation';
CREATE VIEW withdrawal.monitor_summary AS SELECT * FROM withdrawal.monitor_summary();
COMMENT ON VIEW withdrawal.monitor_summary IS
	'review, dead and parked counts, workers, audit chain head and lag, latest reconciliation; see docs/monitoring.md';

/* The latest reconciliation of each processor (none: NULLs), by recon_run_processor */
CREATE FUNCTION withdrawal.monitor_reconcile(OUT processor text, OUT run_id bigint,
											 OUT period_start timestamptz, OUT period_end timestamptz,
											 OUT finished_at timestamptz, OUT discrepancies bigint)
	RETURNS SETOF record
	LANGUAGE sql STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT p.name, r.run_id, r.period_start, r.period_end, r.finished_at, r.discrepancies
	  FROM withdrawal.processor p
	  LEFT JOIN LATERAL (SELECT x.run_id, x.period_start, x.period_end, x.finished_at, x.discrepancies
						   FROM withdrawal.recon_run x
						  WHERE x.processor = p.name
						  ORDER BY x.run_id DESC LIMIT 1) r ON true
	 ORDER BY p.name
$$;
COMMENT ON FUNCTION withdrawal.monitor_reconcile() IS
	'the latest reconciliation run of each processor (NULLs for one never reconciled)';
CREATE VIEW withdrawal.monitor_reconcile AS SELECT * FROM withdrawal.monitor_reconcile();
COMMENT ON VIEW withdrawal.monitor_reconcile IS
	'the latest reconciliation of each processor; see docs/monitoring.md';

/*
 * Readable by monitoring agents (pg_monitor) and operators; channel_state()
 * is read through monitor_channels() only.  pg_monitor gets USAGE on the
 * schema and nothing else in it.
 */
GRANT USAGE ON SCHEMA withdrawal TO pg_monitor;
GRANT EXECUTE ON FUNCTION withdrawal.monitor_queue(), withdrawal.monitor_channels(),
	withdrawal.monitor_workers(), withdrawal.monitor_summary(), withdrawal.monitor_reconcile()
	TO pg_monitor, withdrawal_ops, withdrawal_auditor;
GRANT SELECT ON withdrawal.monitor_queue, withdrawal.monitor_channels, withdrawal.monitor_workers,
	withdrawal.monitor_summary, withdrawal.monitor_reconcile
	TO pg_monitor, withdrawal_ops, withdrawal_auditor;
