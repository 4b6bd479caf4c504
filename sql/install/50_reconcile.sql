/* withdrawal: reconciliation of the ledger with processor settlement reports */

/*
 * Processor settlement reports, one row per payout event the processor
 * reports (paid, failed, returned).  Loaded by import_settlement() or by
 * COPY (as the owner).  A row is identified by (processor, processor_ref,
 * status): loading the same report twice adds nothing, while a transfer
 * that is paid on one report and returned on a later one has two rows.
 * withdrawal_id may be NULL when the processor could not attribute the
 * payout; such rows are reported as missing_in_ledger, unless
 * processor_ref names a batch of the processor (settlement_batch): then
 * the row is a batch line, compared with the sum of the batch's
 * withdrawals.
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
										  'status_mismatch', 'duplicate_at_processor',
										  'return_mismatch', 'amount_within_tolerance')),
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
COMMENT ON TABLE withdrawal.recon_item IS
	'the discrepancies found by a reconciliation run, and the amount differences within the processor''s tolerance (kind amount_within_tolerance, not counted as discrepancies)';

CREATE FUNCTION withdrawal.import_settlement(processor text, report text)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'withdrawal_import_settlement'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.import_settlement(text, text) IS
	'loads a CSV settlement report (header processor_ref,withdrawal_id,amount,currency,status,settled_at) into withdrawal.settlement; all rows or none (22023 names the line); returns the number of new rows';

/*
 * Batch settlements: a processor that pays many withdrawals in one
 * transfer (a payout batch, a bank file, a transfer group) reports one
 * settlement line for all of them, with the batch's reference as
 * processor_ref and no withdrawal_id.  Which withdrawals the batch holds
 * comes from the processor's batch detail (PayPal's payout items, the
 * bank file's lines), loaded here by import_settlement_batch() or COPY:
 * the drivers do not learn a batch id when they submit (each payout is
 * its own request), and a settlement line has room for one withdrawal.
 * A withdrawal may be in several batches of a processor (paid in one,
 * returned in another).  withdrawal_id is not a foreign key: a batch
 * naming a withdrawal the ledger does not know is reported by reconcile().
 */
CREATE TABLE withdrawal.settlement_batch (
	processor	text NOT NULL REFERENCES withdrawal.processor,
	batch_ref	text NOT NULL CHECK (pg_catalog.octet_length(batch_ref) BETWEEN 1 AND 255),
	withdrawal_id uuid NOT NULL,
	imported_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (processor, batch_ref, withdrawal_id)
);
CREATE INDEX settlement_batch_withdrawal ON withdrawal.settlement_batch (withdrawal_id);
COMMENT ON INDEX withdrawal.settlement_batch_withdrawal IS
	'the batches that name a withdrawal, for reconcile()''s missing_at_processor';
COMMENT ON TABLE withdrawal.settlement_batch IS
	'the withdrawals of each settlement batch of a processor (import_settlement_batch() or COPY): a settlement row without withdrawal_id whose processor_ref is a batch_ref is compared by reconcile() with the sum of these withdrawals';

/* A period's unattributed settlement rows, among them the batch lines */
CREATE INDEX settlement_unattributed ON withdrawal.settlement (processor, settled_at)
	WHERE withdrawal_id IS NULL;
COMMENT ON INDEX withdrawal.settlement_unattributed IS
	'a processor''s settlement rows without withdrawal_id by time, for reconcile()''s batch lines';

/*
 * The argument checks of the C functions (WithdrawalArgText) for the
 * PL/pgSQL ones: 22023 for NULL, empty and more than maxbytes bytes, with
 * the same messages.  Like _reconcile() below, granted to nobody: only the
 * extension's own functions, running as the owner, call it (SECURITY
 * DEFINER as every function of the schema, which the access test checks).
 */
CREATE FUNCTION withdrawal._require_text(value text, argname text, maxbytes integer)
	RETURNS void
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF value IS NULL THEN
		RAISE EXCEPTION '% must not be null', argname USING ERRCODE = '22023';
	ELSIF value = '' THEN
		RAISE EXCEPTION '% must not be empty', argname USING ERRCODE = '22023';
	ELSIF octet_length(value) > maxbytes THEN
		RAISE EXCEPTION '% is too long', argname USING ERRCODE = '22023',
			DETAIL = format('The value has %s bytes; at most %s are allowed.', octet_length(value), maxbytes);
	END IF;
END
$$;
COMMENT ON FUNCTION withdrawal._require_text(text, text, integer) IS
	'internal: 22023 unless value is a text of 1 to maxbytes bytes';

CREATE FUNCTION withdrawal.import_settlement_batch(processor text, batch_ref text, withdrawal_ids uuid[])
	RETURNS bigint
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	added bigint;
BEGIN
	PERFORM withdrawal._require_text(processor, 'processor', 63);
	PERFORM withdrawal._require_text(batch_ref, 'batch_ref', 255);
	IF withdrawal_ids IS NULL THEN
		RAISE EXCEPTION 'withdrawal_ids must not be null' USING ERRCODE = '22023';
	ELSIF cardinality(withdrawal_ids) = 0 THEN
		RAISE EXCEPTION 'withdrawal_ids must not be empty' USING ERRCODE = '22023',
			HINT = 'A batch holds at least one withdrawal.';
	ELSIF array_ndims(withdrawal_ids) <> 1 THEN
		RAISE EXCEPTION 'withdrawal_ids must be a one-dimensional array' USING ERRCODE = '22023';
	ELSIF array_position(withdrawal_ids, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'withdrawal_ids must not contain null' USING ERRCODE = '22023',
			DETAIL = format('Element %s is null.', array_position(withdrawal_ids, NULL));
	END IF;
	PERFORM FROM withdrawal.processor p WHERE p.name = import_settlement_batch.processor;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown processor "%"', processor USING ERRCODE = 'WD007';
	END IF;

	INSERT INTO withdrawal.settlement_batch (processor, batch_ref, withdrawal_id)
		SELECT DISTINCT import_settlement_batch.processor, import_settlement_batch.batch_ref, u.id
		  FROM unnest(withdrawal_ids) AS u(id)
		ON CONFLICT DO NOTHING;
	GET DIAGNOSTICS added = ROW_COUNT;
	RETURN added;
END
$$;
COMMENT ON FUNCTION withdrawal.import_settlement_batch(text, text, uuid[]) IS
	'records which withdrawals a settlement batch of the processor holds (its settlement line has processor_ref = batch_ref and no withdrawal_id); idempotent; returns the number of new members';

/*
 * One reconciliation run: the processor is checked (and locked, so that
 * runs of one processor, whose periods must not overlap, are serialised),
 * the run recorded, its items classified, inserted and returned in one
 * set-based statement, and the run finished.  period_start NULL means
 * from the end of the processor's latest run (the beginning of time for
 * the first) until the start of the transaction.  Called by the two
 * reconcile() functions, which check their arguments.
 *
 * The statement:
 * l   payouts of the processor whose settle movement falls in the period.
 * p   the processor's rows of the period that are not batch lines, one
 *     per withdrawal (rows without a withdrawal id stay one per
 *     processor_ref); amount/max_amount of the paid and failed rows,
 *     returned_here the returned rows' sum; paid_rows counts distinct
 *     paid transfers.
 * j   l FULL JOIN p.  A row of p without a partner in l is checked
 *     against the withdrawal itself (o): the ledger may have settled it in
 *     another period, or not at all.  A row of l without a partner in p is
 *     only missing at the processor when no report of the processor
 *     mentions it, itemised or in a batch (x).  Both lookups are gated on
 *     the missing partner (a one-time filter per row; OFFSET 0 keeps the
 *     planner from turning o into a second scan of every withdrawal), so
 *     matched pairs, nearly all of them, cost nothing more.  When the
 *     processor or the ledger knows of a return, the processor's returned
 *     rows of every period are summed (a CASE, so only then).
 * q   the processor's status: returned when what it returned covers the
 *     payout, else paid when it paid it (a partial return leaves it paid,
 *     as it leaves the withdrawal paid), else failed; and the tolerance.
 * k   one kind per withdrawal, the most serious first.
 * bl  batch lines of the period: rows without a withdrawal id whose
 *     processor_ref is a batch of the processor;
 * bm  their members as the ledger knows them (NULL: unknown);
 * bk  one item per batch line whose amount differs from its members' sum
 *     (what they paid, or what they returned for a returned line), and
 *     one per member the ledger does not know, in another currency or in
 *     a status the line contradicts.
 */
CREATE FUNCTION withdrawal._reconcile(p_processor text, p_start timestamptz, p_end timestamptz,
									  OUT run_id bigint, OUT kind text, OUT withdrawal_id uuid,
									  OUT processor_ref text, OUT ledger_amount bigint,
									  OUT processor_amount bigint, OUT ledger_status text,
									  OUT processor_status text)
	RETURNS SETOF record
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET jit = off
	AS $$
#variable_conflict use_column
DECLARE
	v_run bigint;
	v_abs bigint;
	v_bps integer;
	v_found bigint;
BEGIN
	SELECT p.recon_tolerance_abs, p.recon_tolerance_bps INTO v_abs, v_bps
	  FROM withdrawal.processor p WHERE p.name = p_processor
	   FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown processor "%"', p_processor USING ERRCODE = 'WD007';
	END IF;
	IF p_start IS NULL THEN
		SELECT coalesce(max(r.period_end), '-infinity') INTO p_start
		  FROM withdrawal.recon_run r WHERE r.processor = p_processor;
		p_end := transaction_timestamp();
		IF p_end <= p_start THEN
			RAISE EXCEPTION 'processor "%" was already reconciled until now', p_processor
				USING ERRCODE = '55000';
		END IF;
	END IF;

	INSERT INTO withdrawal.recon_run (processor, period_start, period_end)
		VALUES (p_processor, p_start, p_end)
		RETURNING recon_run.run_id INTO v_run;

	RETURN QUERY
	WITH l AS (
		SELECT w.withdrawal_id, w.amount::bigint AS amount, w.currency, w.status::text AS status,
			   w.processor_ref, w.returned_amount
		  FROM withdrawal.ledger_entry e
		  JOIN withdrawal.withdrawal w ON w.withdrawal_id = e.withdrawal_id
		  JOIN withdrawal.channel c ON c.name = w.channel
		 WHERE e.kind = 'settle' AND e.leg = 1
		   AND e.created_at >= p_start AND e.created_at < p_end
		   AND c.processor = p_processor
	), p AS (
		SELECT s.withdrawal_id, min(s.processor_ref COLLATE "C") AS processor_ref,
			   min(s.amount::bigint) FILTER (WHERE s.status <> 'returned') AS amount,
			   max(s.amount::bigint) FILTER (WHERE s.status <> 'returned') AS max_amount,
			   sum(s.amount) FILTER (WHERE s.status = 'returned') AS returned_here,
			   min(s.currency COLLATE "C") AS currency, max(s.currency COLLATE "C") AS max_currency,
			   bool_or(s.status = 'returned') AS returned,
			   bool_or(s.status = 'paid') AS paid,
			   count(*) FILTER (WHERE s.status = 'paid') AS paid_rows
		  FROM withdrawal.settlement s
		 WHERE s.processor = p_processor
		   AND s.settled_at >= p_start AND s.settled_at < p_end
		   AND CASE WHEN s.withdrawal_id IS NULL
					THEN NOT EXISTS (SELECT FROM withdrawal.settlement_batch b
									  WHERE b.processor = p_processor AND b.batch_ref = s.processor_ref)
					ELSE true END
		 GROUP BY s.withdrawal_id, CASE WHEN s.withdrawal_id IS NULL THEN s.processor_ref END
	), j AS (
		SELECT coalesce(l.withdrawal_id, p.withdrawal_id) AS withdrawal_id,
			   coalesce(p.processor_ref, l.processor_ref) AS processor_ref,
			   coalesce(l.amount, o.amount) AS ledger_amount,
			   p.amount AS paid_amount, p.max_amount, p.returned_here,
			   coalesce(l.currency, o.currency) AS ledger_currency,
			   p.currency AS processor_currency, p.max_currency,
			   coalesce(l.status, o.status) AS ledger_status,
			   coalesce(l.returned_amount, o.returned_amount) AS ledger_returned,
			   p.returned, p.paid, p.paid_rows,
			   CASE WHEN p.withdrawal_id IS NOT NULL
						 AND (p.returned OR coalesce(l.returned_amount, o.returned_amount) > 0)
					THEN (SELECT coalesce(sum(s4.amount), 0) FROM withdrawal.settlement s4
						   WHERE s4.withdrawal_id = p.withdrawal_id AND s4.processor = p_processor
							 AND s4.status = 'returned')
			   END AS processor_returned,
			   p.processor_ref IS NULL AS no_p,
			   l.withdrawal_id IS NULL AND o.status IS NULL AS no_l,
			   x.found IS NOT NULL AS reported_elsewhere
		  FROM l FULL JOIN p ON p.withdrawal_id = l.withdrawal_id
		  LEFT JOIN LATERAL (
			SELECT w.amount::bigint AS amount, w.currency, w.status::text AS status, w.returned_amount
			  FROM withdrawal.withdrawal w
			 WHERE l.withdrawal_id IS NULL AND w.withdrawal_id = p.withdrawal_id
			OFFSET 0) o ON true
		  LEFT JOIN LATERAL (
			SELECT 1 AS found FROM withdrawal.settlement s2
			 WHERE p.processor_ref IS NULL AND s2.withdrawal_id = l.withdrawal_id
			   AND s2.processor = p_processor AND s2.status <> 'failed'
			UNION ALL
			SELECT 1 FROM withdrawal.settlement_batch b
			  JOIN withdrawal.settlement s3 ON s3.processor = b.processor AND s3.processor_ref = b.batch_ref
			 WHERE p.processor_ref IS NULL AND b.withdrawal_id = l.withdrawal_id
			   AND b.processor = p_processor AND s3.withdrawal_id IS NULL
			   AND (s3.status <> 'failed' OR (s3.settled_at >= p_start AND s3.settled_at < p_end))
			LIMIT 1) x ON true
	), q AS (
		SELECT j.*,
			   CASE WHEN returned AND (ledger_amount IS NULL OR processor_returned >= ledger_amount)
					THEN 'returned'
					WHEN paid OR returned THEN 'paid'
					ELSE 'failed' END AS processor_status,
			   greatest(v_abs, floor(ledger_amount::numeric * v_bps / 10000)) AS tolerance
		  FROM j
	), k AS (
		SELECT q.*, CASE
			WHEN no_p THEN CASE WHEN reported_elsewhere THEN NULL ELSE 'missing_at_processor' END
			WHEN no_l THEN 'missing_in_ledger'
			WHEN paid_rows > 1 THEN 'duplicate_at_processor'
			WHEN ledger_currency <> processor_currency OR processor_currency <> max_currency
				THEN 'currency_mismatch'
			WHEN paid_amount <> max_amount OR abs(paid_amount - ledger_amount) > tolerance
				THEN 'amount_mismatch'
			WHEN ledger_status <> processor_status THEN 'status_mismatch'
			WHEN processor_returned <> ledger_returned THEN 'return_mismatch'
			WHEN paid_amount <> ledger_amount THEN 'amount_within_tolerance'
		   END AS kind
		  FROM q
	), bl AS (
		SELECT s.processor_ref, s.amount::bigint AS amount, s.currency, s.status
		  FROM withdrawal.settlement s
		 WHERE s.processor = p_processor AND s.withdrawal_id IS NULL
		   AND s.settled_at >= p_start AND s.settled_at < p_end
		   AND EXISTS (SELECT FROM withdrawal.settlement_batch b
						WHERE b.processor = p_processor AND b.batch_ref = s.processor_ref)
	), bm AS (
		SELECT bl.processor_ref, bl.amount AS line_amount, bl.currency AS line_currency,
			   bl.status AS line_status, b.withdrawal_id, w.withdrawal_id IS NULL AS unknown,
			   w.amount::bigint AS amount, w.currency, w.status::text AS status, w.returned_amount
		  FROM bl
		  JOIN withdrawal.settlement_batch b ON b.processor = p_processor AND b.batch_ref = bl.processor_ref
		  LEFT JOIN withdrawal.withdrawal w ON w.withdrawal_id = b.withdrawal_id
	), bs AS (
		SELECT processor_ref, line_amount, line_currency, line_status,
			   coalesce(sum(CASE WHEN line_status = 'returned' THEN returned_amount ELSE amount END), 0)
				   AS ledger_sum,
			   coalesce(bool_or(currency <> line_currency), false) AS other_currency
		  FROM bm
		 GROUP BY processor_ref, line_amount, line_currency, line_status
	), bk AS (
		SELECT CASE
				 WHEN other_currency OR ledger_sum = line_amount THEN NULL
				 WHEN line_status <> 'returned'
					  AND abs(line_amount - ledger_sum)
						  <= greatest(v_abs, floor(ledger_sum * v_bps / 10000))
					THEN 'amount_within_tolerance'
				 ELSE 'amount_mismatch'
			   END AS kind,
			   NULL::uuid AS withdrawal_id, processor_ref,
			   CASE WHEN ledger_sum <= 9223372036854775807 THEN ledger_sum::bigint END AS ledger_amount,
			   line_amount AS processor_amount, line_currency AS ledger_currency,
			   line_currency AS processor_currency, NULL::text AS ledger_status,
			   line_status AS processor_status
		  FROM bs
		UNION ALL
		SELECT CASE
				 WHEN unknown THEN 'missing_in_ledger'
				 WHEN currency <> line_currency THEN 'currency_mismatch'
				 WHEN CASE line_status WHEN 'paid' THEN status NOT IN ('paid', 'returned')
									   WHEN 'failed' THEN status <> 'failed'
									   ELSE returned_amount = 0 END
					THEN 'status_mismatch'
			   END,
			   withdrawal_id, processor_ref,
			   CASE WHEN line_status = 'returned' THEN returned_amount ELSE amount END,
			   NULL::bigint, currency, line_currency, status, line_status
		  FROM bm
	), items AS (
		SELECT k.kind, k.withdrawal_id, k.processor_ref,
			   CASE WHEN k.kind = 'return_mismatch' THEN k.ledger_returned ELSE k.ledger_amount END
				   AS ledger_amount,
			   CASE WHEN k.kind = 'return_mismatch' THEN
						CASE WHEN k.processor_returned <= 9223372036854775807 THEN k.processor_returned::bigint END
					ELSE coalesce(k.paid_amount,
								  CASE WHEN k.returned_here <= 9223372036854775807 THEN k.returned_here::bigint END)
			   END AS processor_amount,
			   k.ledger_currency, k.processor_currency, k.ledger_status,
			   CASE WHEN NOT k.no_p THEN k.processor_status END AS processor_status
		  FROM k WHERE k.kind IS NOT NULL
		UNION ALL
		SELECT bk.kind, bk.withdrawal_id, bk.processor_ref, bk.ledger_amount, bk.processor_amount,
			   bk.ledger_currency, bk.processor_currency, bk.ledger_status, bk.processor_status
		  FROM bk WHERE bk.kind IS NOT NULL
	), ins AS (
		INSERT INTO withdrawal.recon_item (run_id, kind, withdrawal_id, processor_ref, ledger_amount,
										   processor_amount, ledger_currency, processor_currency,
										   ledger_status, processor_status)
		SELECT v_run, i.kind, i.withdrawal_id, i.processor_ref, i.ledger_amount, i.processor_amount,
			   i.ledger_currency, i.processor_currency, i.ledger_status, i.processor_status
		  FROM items i
		RETURNING recon_item.run_id, recon_item.kind, recon_item.withdrawal_id,
				  recon_item.processor_ref, recon_item.ledger_amount, recon_item.processor_amount,
				  recon_item.ledger_status, recon_item.processor_status
	)
	SELECT * FROM ins;

	/* an amount within tolerance is reported, but is no discrepancy */
	SELECT count(*) INTO v_found FROM withdrawal.recon_item i
	 WHERE i.run_id = v_run AND i.kind <> 'amount_within_tolerance';
	UPDATE withdrawal.recon_run r SET discrepancies = v_found, finished_at = clock_timestamp()
	 WHERE r.run_id = v_run;
	IF v_found > 0 THEN
		PERFORM pg_notify('withdrawal_recon',
						  jsonb_build_object('run_id', v_run, 'processor', p_processor,
											 'discrepancies', v_found)::text);
	END IF;
END
$$;
COMMENT ON FUNCTION withdrawal._reconcile(text, timestamptz, timestamptz) IS
	'internal: one reconcile() run of the processor for [p_start, p_end), or since its latest run when p_start is NULL';

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
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET jit = off
	AS $$
BEGIN
	PERFORM withdrawal._require_text(processor, 'processor', 63);
	IF period_start IS NULL OR period_end IS NULL THEN
		RAISE EXCEPTION 'period_start and period_end must not be null' USING ERRCODE = '22023';
	ELSIF NOT isfinite(period_start) OR NOT isfinite(period_end) THEN
		RAISE EXCEPTION 'period_start and period_end must be finite' USING ERRCODE = '22023';
	ELSIF period_start >= period_end THEN
		RAISE EXCEPTION 'period_start must be before period_end' USING ERRCODE = '22023';
	/*
	 * reconcile(processor) continues from the latest period_end: a period
	 * that ends in the future would make it fail until then, and the
	 * settlements still to come in that period would never be reconciled.
	 */
	ELSIF period_end > transaction_timestamp() THEN
		RAISE EXCEPTION 'period_end must not be in the future' USING ERRCODE = '22023',
			DETAIL = 'A run covers settlements up to its period_end, and the next reconcile(processor) starts there.';
	END IF;
	RETURN QUERY SELECT * FROM withdrawal._reconcile(processor, period_start, period_end);
END
$$;
COMMENT ON FUNCTION withdrawal.reconcile(text, timestamptz, timestamptz) IS
	'compares the payouts the ledger settled in [period_start, period_end) with the processor''s settlement rows of the period; records the run and returns its discrepancies';

CREATE FUNCTION withdrawal.reconcile(processor text,
									 OUT run_id bigint, OUT kind text, OUT withdrawal_id uuid,
									 OUT processor_ref text, OUT ledger_amount bigint,
									 OUT processor_amount bigint, OUT ledger_status text,
									 OUT processor_status text)
	RETURNS SETOF record
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET jit = off
	AS $$
BEGIN
	PERFORM withdrawal._require_text(processor, 'processor', 63);
	RETURN QUERY SELECT * FROM withdrawal._reconcile(processor, NULL, NULL);
END
$$;
COMMENT ON FUNCTION withdrawal.reconcile(text) IS
	'reconcile() from the end of the processor''s last recorded run (or the beginning) until now, so that a missed night is covered by the next run';

/*
 * The latest run per processor, with its items counted by kind (the
 * amounts within tolerance are not among its discrepancies).
 */
CREATE VIEW withdrawal.recon_summary AS
	SELECT r.processor, r.run_id, r.period_start, r.period_end, r.started_at, r.finished_at,
		   r.run_by, r.discrepancies,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'missing_at_processor') AS missing_at_processor,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'missing_in_ledger') AS missing_in_ledger,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'amount_mismatch') AS amount_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'currency_mismatch') AS currency_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'status_mismatch') AS status_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'duplicate_at_processor') AS duplicate_at_processor,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'return_mismatch') AS return_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'amount_within_tolerance') AS amount_within_tolerance
	  FROM (SELECT DISTINCT ON (processor) *
			  FROM withdrawal.recon_run
			 ORDER BY processor, run_id DESC) r
	  LEFT JOIN withdrawal.recon_item i ON i.run_id = r.run_id
	 GROUP BY r.processor, r.run_id, r.period_start, r.period_end, r.started_at, r.finished_at,
			  r.run_by, r.discrepancies;
COMMENT ON VIEW withdrawal.recon_summary IS
	'the latest reconciliation run of each processor with its discrepancies counted by kind';

GRANT EXECUTE ON FUNCTION withdrawal.import_settlement(text, text),
	withdrawal.import_settlement_batch(text, text, uuid[]),
	withdrawal.reconcile(text, timestamptz, timestamptz),
	withdrawal.reconcile(text)
	TO withdrawal_ops;
GRANT SELECT ON withdrawal.settlement, withdrawal.settlement_batch, withdrawal.recon_run,
	withdrawal.recon_item, withdrawal.recon_summary
	TO withdrawal_ops, withdrawal_auditor;
