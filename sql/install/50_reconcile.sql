/* withdrawal: reconciliation of the ledger with processor settlement reports */

/*
 * Processor settlement reports, one row per payout event the processor
 * reports (paid, failed, returned).  Loaded by import_settlement() or by
 * COPY (as the owner).  A row is identified by (processor, processor_ref,
 * status): loading the same report twice adds nothing, while a transfer
 * that is paid on one report and returned on a later one has two rows.
 * withdrawal_id may be NULL when the processor could not attribute the
 * payout; such rows are reported as missing_in_ledger.
 */
CREATE SEQUENCE withdrawal.settlement_seq;
COMMENT ON SEQUENCE withdrawal.settlement_seq IS 'settlement row ids';
CREATE TABLE withdrawal.settlement (
	settlement_id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('withdrawal.settlement_seq'::pg_catalog.regclass),
	processor	text NOT NULL REFERENCES withdrawal.processor,
	processor_ref text NOT NULL CHECK (pg_catalog.octet_length(processor_ref) BETWEEN 1 AND 255),
	withdrawal_id uuid,
	amount		withdrawal.amount NOT NULL,
	currency	text NOT NULL REFERENCES withdrawal.currency,
	status		text NOT NULL CHECK (status IN ('paid', 'failed', 'returned')),
	settled_at	timestamptz NOT NULL,
	imported_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	UNIQUE (processor, processor_ref, status)
);
CREATE INDEX settlement_period ON withdrawal.settlement (processor, settled_at);
CREATE INDEX settlement_withdrawal ON withdrawal.settlement (withdrawal_id);
COMMENT ON INDEX withdrawal.settlement_period IS 'a processor''s settlement rows by time, for reconcile() periods';
COMMENT ON INDEX withdrawal.settlement_withdrawal IS 'the settlement rows of a withdrawal, in any period';
COMMENT ON TABLE withdrawal.settlement IS
	'processor settlement report rows (import_settlement() or COPY), compared with the ledger by reconcile()';

/*
 * When the ledger settled a payout is the time of its "settle" movement;
 * reconcile() selects a period's payouts by it.
 */
CREATE INDEX ledger_entry_settled_at ON withdrawal.ledger_entry (created_at)
	WHERE kind = 'settle' AND leg = 1;
COMMENT ON INDEX withdrawal.ledger_entry_settled_at IS
	'settle movements by time, for reconcile() periods';

/* Reconciliation runs; only successful runs are recorded (one transaction). */
CREATE SEQUENCE withdrawal.recon_run_seq;
COMMENT ON SEQUENCE withdrawal.recon_run_seq IS 'reconciliation run ids';
CREATE TABLE withdrawal.recon_run (
	run_id		bigint PRIMARY KEY DEFAULT pg_catalog.nextval('withdrawal.recon_run_seq'::pg_catalog.regclass),
	processor	text NOT NULL REFERENCES withdrawal.processor,
	period_start timestamptz NOT NULL,
	period_end	timestamptz NOT NULL,
	started_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	finished_at	timestamptz,
	discrepancies bigint,
	run_by		name NOT NULL DEFAULT SESSION_USER,
	CHECK (period_start < period_end)
);
CREATE INDEX recon_run_processor ON withdrawal.recon_run (processor, run_id);
COMMENT ON INDEX withdrawal.recon_run_processor IS 'the runs of a processor, latest last';
COMMENT ON TABLE withdrawal.recon_run IS
	'reconciliation runs: processor, period [period_start, period_end) and how many discrepancies were found';

CREATE SEQUENCE withdrawal.recon_item_seq;
COMMENT ON SEQUENCE withdrawal.recon_item_seq IS 'reconciliation item numbers';
CREATE TABLE withdrawal.recon_item (
	run_id		bigint NOT NULL REFERENCES withdrawal.recon_run,
	item_no		bigint NOT NULL DEFAULT pg_catalog.nextval('withdrawal.recon_item_seq'::pg_catalog.regclass),
	kind		text NOT NULL CHECK (kind IN ('missing_at_processor', 'missing_in_ledger',
										  'amount_mismatch', 'currency_mismatch',
										  'status_mismatch', 'duplicate_at_processor')),
	withdrawal_id uuid,
	processor_ref text,
	ledger_amount bigint,
	processor_amount bigint,
	ledger_currency text,
	processor_currency text,
	ledger_status text,
	processor_status text,
	PRIMARY KEY (run_id, item_no)
);
CREATE INDEX recon_item_withdrawal ON withdrawal.recon_item (withdrawal_id);
COMMENT ON INDEX withdrawal.recon_item_withdrawal IS 'the discrepancies reported for a withdrawal';
COMMENT ON TABLE withdrawal.recon_item IS 'the discrepancies found by a reconciliation run';

CREATE FUNCTION withdrawal.import_settlement(processor text, report text)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'withdrawal_import_settlement'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.import_settlement(text, text) IS
	'loads a CSV settlement report (header processor_ref,withdrawal_id,amount,currency,status,settled_at) into withdrawal.settlement; all rows or none (22023 names the line); returns the number of new rows';

/*
 * jit is off for reconcile(): it is one statement run once per call, whose
 * cost estimate (inflated by the gated per-row lookups) would otherwise
 * buy JIT compilation that takes longer than it saves.
 */
CREATE FUNCTION withdrawal.reconcile(processor text, period_start timestamptz, period_end timestamptz,
									 OUT run_id bigint, OUT kind text, OUT withdrawal_id uuid,
									 OUT processor_ref text, OUT ledger_amount bigint,
									 OUT processor_amount bigint, OUT ledger_status text,
									 OUT processor_status text)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdrawal_reconcile'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET jit = off;
COMMENT ON FUNCTION withdrawal.reconcile(text, timestamptz, timestamptz) IS
	'compares the payouts the ledger settled in [period_start, period_end) with the processor''s settlement rows of the period; records the run and returns its discrepancies';

CREATE FUNCTION withdrawal.reconcile(processor text,
									 OUT run_id bigint, OUT kind text, OUT withdrawal_id uuid,
									 OUT processor_ref text, OUT ledger_amount bigint,
									 OUT processor_amount bigint, OUT ledger_status text,
									 OUT processor_status text)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdrawal_reconcile_since'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET jit = off;
COMMENT ON FUNCTION withdrawal.reconcile(text) IS
	'reconcile() from the end of the processor''s last recorded run (or the beginning) until now, so that a missed night is covered by the next run';

/* The latest run per processor, with its discrepancies counted by kind. */
CREATE VIEW withdrawal.recon_summary AS
	SELECT r.processor, r.run_id, r.period_start, r.period_end, r.started_at, r.finished_at,
		   r.run_by, r.discrepancies,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'missing_at_processor') AS missing_at_processor,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'missing_in_ledger') AS missing_in_ledger,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'amount_mismatch') AS amount_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'currency_mismatch') AS currency_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'status_mismatch') AS status_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'duplicate_at_processor') AS duplicate_at_processor
	  FROM (SELECT DISTINCT ON (processor) *
			  FROM withdrawal.recon_run
			 ORDER BY processor, run_id DESC) r
	  LEFT JOIN withdrawal.recon_item i ON i.run_id = r.run_id
	 GROUP BY r.processor, r.run_id, r.period_start, r.period_end, r.started_at, r.finished_at,
			  r.run_by, r.discrepancies;
COMMENT ON VIEW withdrawal.recon_summary IS
	'the latest reconciliation run of each processor with its discrepancies counted by kind';

GRANT EXECUTE ON FUNCTION withdrawal.import_settlement(text, text),
	withdrawal.reconcile(text, timestamptz, timestamptz),
	withdrawal.reconcile(text)
	TO withdrawal_ops;
GRANT SELECT ON withdrawal.settlement, withdrawal.recon_run, withdrawal.recon_item,
	withdrawal.recon_summary
	TO withdrawal_ops, withdrawal_auditor;
