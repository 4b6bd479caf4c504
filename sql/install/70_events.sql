
/* withdrawal: status events for applications (table, NOTIFY, retention) */

/*
 * One row per status change of a withdrawal, written by the trigger below
 * in the transaction that makes the change, for subscribers: logical
 * decoding (CDC) in commit order, or polling.  event_id comes from a
 * sequence, so ids are not in commit order: a poller that remembers the
 * last id it read can skip an event whose transaction committed late.
 * xact_id is the writing transaction's id, for the watermark that does
 * not (docs/api.md, withdrawal.status_event).  Rows carry no money
 * details: withdrawal_app reads them.  Never updated; deleted only by
 * prune_status_events().
 */
CREATE SEQUENCE withdrawal.status_event_seq;
CREATE TABLE withdrawal.status_event (
	event_id	bigint PRIMARY KEY DEFAULT pg_catalog.nextval('withdrawal.status_event_seq'),
	withdrawal_id uuid NOT NULL,
	status		withdrawal.status NOT NULL,
	at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	xact_id		xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()
);
ALTER SEQUENCE withdrawal.status_event_seq OWNED BY withdrawal.status_event.event_id;
CREATE INDEX status_event_withdrawal ON withdrawal.status_event (withdrawal_id, event_id);
CREATE INDEX status_event_xact ON withdrawal.status_event (xact_id);
COMMENT ON TABLE withdrawal.status_event IS
	'append-only: one row per status change of a withdrawal (id, new status, time, transaction), for subscribers; pruned by prune_status_events()';
COMMENT ON COLUMN withdrawal.status_event.xact_id IS
	'the transaction that made the change: poll between two pg_snapshot_xmin() watermarks to read every event exactly once';
COMMENT ON INDEX withdrawal.status_event_withdrawal IS 'the history of a withdrawal';
COMMENT ON INDEX withdrawal.status_event_xact IS 'polling by transaction watermark';

CREATE FUNCTION withdrawal.status_event_record() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_status_event_record'
	LANGUAGE C;
COMMENT ON FUNCTION withdrawal.status_event_record() IS
	'trigger: appends a status_event row for a status change, and a NOTIFY on withdrawal_status when withdrawal.notify_status is on';
CREATE FUNCTION withdrawal.status_event_guard() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_status_event_guard'
	LANGUAGE C;
COMMENT ON FUNCTION withdrawal.status_event_guard() IS
	'trigger: refuses UPDATE of status events, and DELETE outside prune_status_events()';

CREATE TRIGGER status_event_guard BEFORE UPDATE OR DELETE ON withdrawal.status_event
	FOR EACH ROW EXECUTE FUNCTION withdrawal.status_event_guard();
CREATE TRIGGER status_event_no_truncate BEFORE TRUNCATE ON withdrawal.status_event
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();

/*
 * A row trigger, fired only for rows whose status changed: the workers'
 * set-based claims change the status of whole batches, and their other
 * updates (leases, last_error, attempts) fire nothing.  A statement
 * trigger with transition tables cannot name the status column and would
 * copy every updated row.  There is no INSERT trigger: request() writes a
 * withdrawal's first event in its own statement, and an INSERT trigger
 * would fire again for the rows a restore of a dump copies in.
 */
CREATE TRIGGER withdrawal_status_event_update AFTER UPDATE OF status ON withdrawal.withdrawal
	FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
	EXECUTE FUNCTION withdrawal.status_event_record();

CREATE FUNCTION withdrawal.prune_status_events(older_than interval)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'withdrawal_prune_status_events'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.prune_status_events(interval) IS
	'ops: deletes status events older than older_than (at least 1 day), keeping every event of withdrawals that are not final; returns how many; for pg_cron';

SELECT pg_catalog.pg_extension_config_dump('withdrawal.status_event', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.status_event_seq', '');

GRANT SELECT ON withdrawal.status_event TO withdrawal_app, withdrawal_ops, withdrawal_auditor;
GRANT EXECUTE ON FUNCTION withdrawal.prune_status_events(interval) TO withdrawal_ops;
