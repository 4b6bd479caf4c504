--
-- reconcile: import_settlement() (CSV through COPY's parser, all or
-- nothing), COPY into withdrawal.settlement, and reconcile(): one scenario
-- per discrepancy kind, clean periods, periods that cut through a
-- payout's life, the no-period form, batch settlements, tolerances, the
-- summary view and the roles.  (Partial returns: sql/returns.sql.)
-- Each scenario has its own processor so that runs do not see each other.
--
CREATE DATABASE regress_reconcile;
\c regress_reconcile
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all

-- a processor and a channel of the same name
CREATE FUNCTION proc(name text) RETURNS void LANGUAGE sql AS $$
	INSERT INTO withdrawal.processor (name, driver, base_url) VALUES (name, 'http', 'https://' || name || '.example');
	INSERT INTO withdrawal.channel (name, processor) VALUES (name, name);
$$;

-- a withdrawal of bob through channel, moved to status upto
CREATE FUNCTION wd(key text, amount bigint, channel text, upto text DEFAULT 'paid',
				   currency text DEFAULT 'USD') RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
	id uuid;
BEGIN
	SELECT withdrawal_id INTO id FROM withdrawal.request('bob', currency, amount, channel, '{"bank": "x"}', key);
	PERFORM withdrawal.transition(id, 'dispatching');
	PERFORM withdrawal.transition(id, 'submitted');
	IF upto IN ('paid', 'returned') THEN
		PERFORM withdrawal.transition(id, 'paid');
	END IF;
	IF upto = 'returned' THEN
		PERFORM withdrawal.transition(id, 'returned');
	ELSIF upto = 'failed' THEN
		PERFORM withdrawal.transition(id, 'failed');
	END IF;
	RETURN id;
END
$$;

CREATE FUNCTION id(key text) RETURNS uuid LANGUAGE sql AS $$
	SELECT withdrawal_id FROM withdrawal.withdrawal WHERE idempotency_key = key
$$;

-- one CSV line of a settlement report
CREATE FUNCTION line(ref text, key text, amount bigint, currency text DEFAULT 'USD',
					 status text DEFAULT 'paid', at timestamptz DEFAULT now()) RETURNS text
LANGUAGE sql AS $$
	SELECT concat_ws(',', ref, coalesce(id(key)::text, key, ''), amount, currency, status, at)
$$;
CREATE FUNCTION report(VARIADIC lines text[]) RETURNS text LANGUAGE sql AS $$
	SELECT 'processor_ref,withdrawal_id,amount,currency,status,settled_at' || E'\n'
		|| coalesce(nullif(array_to_string(lines, E'\n'), '') || E'\n', '')
$$;

-- the items of a run, with withdrawal keys instead of random ids
CREATE FUNCTION recon(processor text, period_start timestamptz DEFAULT now() - interval '1 hour',
					  period_end timestamptz DEFAULT now())
RETURNS TABLE (kind text, key text, processor_ref text, ledger_amount bigint, processor_amount bigint,
			   ledger_status text, processor_status text)
LANGUAGE sql AS $$
	SELECT r.kind, coalesce(w.idempotency_key, r.withdrawal_id::text, '-'), r.processor_ref,
		   r.ledger_amount, r.processor_amount, r.ledger_status, r.processor_status
	  FROM withdrawal.reconcile(processor, period_start, period_end) r
	  LEFT JOIN withdrawal.withdrawal w ON w.withdrawal_id = r.withdrawal_id
	 ORDER BY 1, 2, 3
$$;

SELECT available FROM withdrawal.credit('bob', 'USD', 10000000, 'fund-usd');
SELECT available FROM withdrawal.credit('bob', 'EUR', 10000000, 'fund-eur');
SELECT proc(p) FROM unnest(ARRAY['r_imp', 'r_clean', 'r_miss_p', 'r_miss_l', 'r_amount', 'r_currency',
								 'r_status', 'r_dup', 'r_period', 'r_since', 'r_copy']) p;

--
-- 1. import_settlement: bad input, bad rows (nothing loaded), good rows
--
SELECT wd('imp-1', 100, 'r_imp') IS NOT NULL AS created;
SELECT try($$SELECT withdrawal.import_settlement(NULL, 'x')$$);
SELECT try($$SELECT withdrawal.import_settlement('r_imp', NULL)$$);
SELECT try($$SELECT withdrawal.import_settlement('nobody', 'x')$$);
SELECT name, try(format('SELECT withdrawal.import_settlement(%L, %L)', 'r_imp', rep)) AS outcome
  FROM (VALUES
	('empty', ''),
	('no header', line('tr_1', 'imp-1', 100) || E'\n'),
	('header in another order', 'withdrawal_id,processor_ref,amount,currency,status,settled_at' || E'\n'),
	('header with a missing column', 'processor_ref,withdrawal_id,amount,currency,status' || E'\n'),
	('amount not a number, line 3', report(line('tr_1', 'imp-1', 100), 'tr_2,,12x,USD,paid,2026-01-01 00:00+00')),
	('amount zero', report('tr_2,,0,USD,paid,2026-01-01 00:00+00')),
	('amount negative', report('tr_2,,-5,USD,paid,2026-01-01 00:00+00')),
	('amount overflows', report('tr_2,,99999999999999999999,USD,paid,2026-01-01 00:00+00')),
	('unknown currency', report('tr_2,,5,XXX,paid,2026-01-01 00:00+00')),
	('lower-case currency', report('tr_2,,5,usd,paid,2026-01-01 00:00+00')),
	('unknown status', report('tr_2,,5,USD,pending,2026-01-01 00:00+00')),
	('bad withdrawal id', report('tr_2,not-a-uuid,5,USD,paid,2026-01-01 00:00+00')),
	('bad timestamp', report('tr_2,,5,USD,paid,yesterday-ish')),
	('infinite timestamp', report('tr_2,,5,USD,paid,infinity')),
	('missing settled_at', report('tr_2,,5,USD,paid,')),
	('empty processor_ref', report(',,5,USD,paid,2026-01-01 00:00+00')),
	('too few fields', report('tr_2,,5,USD,paid')),
	('too many fields', report('tr_2,,5,USD,paid,2026-01-01 00:00+00,extra')),
	('unterminated quote from line 4 to the end', report(line('tr_1', 'imp-1', 100), line('tr_3', NULL, 7), '"tr_2,,5,USD,paid,2026-01-01 00:00+00')),
	-- COPY's end-of-data marker would silently drop the lines after it
	('end-of-data marker on line 3', report(line('tr_1', 'imp-1', 100), '\.', line('tr_3', NULL, 7))),
	('end-of-data marker on the last line', report(line('tr_1', 'imp-1', 100), line('tr_3', NULL, 7), '\.')),
	('end-of-data marker after the header, CRLF', replace(report('\.', line('tr_3', NULL, 7)), E'\n', E'\r\n'))
  ) AS c(name, rep) ORDER BY name;
SELECT count(*) AS settlement_rows FROM withdrawal.settlement;
-- header only: nothing to load
SELECT withdrawal.import_settlement('r_imp', report(VARIADIC ARRAY[]::text[]));
-- quoted fields (a comma and a newline in a reference), CRLF line ends,
-- an empty withdrawal id
SELECT withdrawal.import_settlement('r_imp',
	'processor_ref,withdrawal_id,amount,currency,status,settled_at' || E'\r\n'
	|| line('tr_imp_1', 'imp-1', 100) || E'\r\n'
	|| '"tr,quoted' || E'\n' || 'two lines",,250,EUR,returned,2026-01-02 03:04:05+00' || E'\r\n');
-- the same report again adds nothing
SELECT withdrawal.import_settlement('r_imp', report(line('tr_imp_1', 'imp-1', 100)));
SELECT processor, processor_ref, withdrawal_id = id('imp-1') AS ours, amount, currency, status
  FROM withdrawal.settlement ORDER BY settlement_id;

--
-- 2. COPY into withdrawal.settlement works too (as the owner)
--
SELECT wd('copy-1', 150, 'r_copy') IS NOT NULL AS created;
COPY withdrawal.settlement (processor, processor_ref, withdrawal_id, amount, currency, status, settled_at) FROM stdin WITH (FORMAT csv);
r_copy,tr_copy_1,,150,USD,paid,2026-01-01 00:00:00+00
\.
SELECT count(*) AS copied FROM withdrawal.settlement WHERE processor = 'r_copy';

--
-- 3. a clean period: paid, returned and failed payouts all reported
--
SELECT wd('clean-1', 1001, 'r_clean') IS NOT NULL AS a, wd('clean-2', 1002, 'r_clean', 'returned') IS NOT NULL AS b,
	   wd('clean-3', 1003, 'r_clean', 'failed') IS NOT NULL AS c, wd('clean-4', 1004, 'r_clean', 'paid', 'EUR') IS NOT NULL AS d;
SELECT withdrawal.import_settlement('r_clean', report(
	line('tr_c1', 'clean-1', 1001),
	line('tr_c2', 'clean-2', 1002), line('tr_c2', 'clean-2', 1002, 'USD', 'returned'),
	line('tr_c3', 'clean-3', 1003, 'USD', 'failed'),
	line('tr_c4', 'clean-4', 1004, 'EUR')));
SELECT * FROM recon('r_clean');
SELECT processor, discrepancies, finished_at IS NOT NULL AS finished FROM withdrawal.recon_run WHERE processor = 'r_clean';
SELECT invariants();

--
-- 4. one scenario per kind
--
-- missing_at_processor: the ledger paid it, no report mentions it
SELECT wd('mp-1', 2001, 'r_miss_p') IS NOT NULL AS a, wd('mp-2', 2002, 'r_miss_p') IS NOT NULL AS b;
SELECT withdrawal.import_settlement('r_miss_p', report(line('tr_mp2', 'mp-2', 2002)));
SELECT * FROM recon('r_miss_p');
-- missing_in_ledger: the processor paid a withdrawal we do not know, and
-- one it could not attribute
SELECT wd('ml-1', 3001, 'r_miss_l') IS NOT NULL AS created;
SELECT withdrawal.import_settlement('r_miss_l', report(line('tr_ml1', 'ml-1', 3001),
	line('tr_ml2', '6e0b5d55-3b39-4c7a-9a55-7a7d0f8f0001', 3002), line('tr_ml3', NULL, 3003)));
SELECT * FROM recon('r_miss_l');
-- amount_mismatch
SELECT wd('am-1', 4001, 'r_amount') IS NOT NULL AS created;
SELECT withdrawal.import_settlement('r_amount', report(line('tr_am1', 'am-1', 4010)));
SELECT * FROM recon('r_amount');
-- currency_mismatch
SELECT wd('cm-1', 5001, 'r_currency') IS NOT NULL AS created;
SELECT withdrawal.import_settlement('r_currency', report(line('tr_cm1', 'cm-1', 5001, 'EUR')));
SELECT * FROM recon('r_currency');
-- status_mismatch: paid here, failed there; returned here, only paid
-- there; still submitted here (a lost webhook), paid there
SELECT wd('sm-1', 6001, 'r_status') IS NOT NULL AS a, wd('sm-2', 6002, 'r_status', 'returned') IS NOT NULL AS b,
	   wd('sm-3', 6003, 'r_status', 'submitted') IS NOT NULL AS c;
SELECT withdrawal.import_settlement('r_status', report(line('tr_sm1', 'sm-1', 6001, 'USD', 'failed'),
	line('tr_sm2', 'sm-2', 6002), line('tr_sm3', 'sm-3', 6003)));
SELECT * FROM recon('r_status');
-- duplicate_at_processor: two transfers paid for one withdrawal
SELECT wd('dp-1', 7001, 'r_dup') IS NOT NULL AS created;
SELECT withdrawal.import_settlement('r_dup', report(line('tr_dp1a', 'dp-1', 7001), line('tr_dp1b', 'dp-1', 7001)));
SELECT * FROM recon('r_dup');
SELECT processor, discrepancies FROM withdrawal.recon_run ORDER BY run_id;
SELECT invariants();

--
-- 5. periods: a payout the processor settled a day before the ledger's
-- period is neither missing here nor there
--
SELECT wd('pd-1', 8001, 'r_period') IS NOT NULL AS created;
SELECT withdrawal.import_settlement('r_period', report(line('tr_pd1', 'pd-1', 8001, 'USD', 'paid', now() - interval '1 day')));
SELECT * FROM recon('r_period');
SELECT * FROM recon('r_period', now() - interval '2 days', now() - interval '12 hours');
-- a period with nothing at all is clean and still recorded
SELECT * FROM recon('r_period', '2020-01-01', '2020-01-02');
SELECT count(*) AS runs FROM withdrawal.recon_run WHERE processor = 'r_period';
SELECT try($$SELECT * FROM withdrawal.reconcile('r_period', now(), now())$$);
SELECT try($$SELECT * FROM withdrawal.reconcile('r_period', NULL, now())$$);
SELECT try($$SELECT * FROM withdrawal.reconcile(NULL, now(), now())$$);
SELECT try($$SELECT * FROM withdrawal.reconcile('nobody', now() - interval '1 day', now())$$);
SELECT try($$SELECT * FROM withdrawal.reconcile('nobody')$$);
SELECT try($$SELECT * FROM withdrawal.reconcile('')$$);
SELECT try($$SELECT * FROM withdrawal.reconcile(repeat('p', 64))$$);
SELECT try($$SELECT * FROM withdrawal.reconcile(NULL)$$);
-- a period that is not finite or ends in the future is refused: the next
-- reconcile(processor) starts where the latest run ended, and would fail
-- (or leave a gap) until then
SELECT try($$SELECT * FROM withdrawal.reconcile('r_period', '-infinity', 'infinity')$$);
SELECT try($$SELECT * FROM withdrawal.reconcile('r_period', '-infinity', now())$$);
SELECT try($$SELECT * FROM withdrawal.reconcile('r_period', now() - interval '1 day', 'infinity')$$);
SELECT try($$SELECT * FROM withdrawal.reconcile('r_period', now() - interval '1 day', now() + interval '1 second')$$);
SELECT try($$SELECT * FROM withdrawal.reconcile('r_period', '2020-01-01', '3000-01-01')$$);
SELECT count(*) AS runs FROM withdrawal.recon_run WHERE processor = 'r_period';
BEGIN;
SELECT count(*) AS items FROM withdrawal.reconcile('r_period');
SELECT period_end = now() AS until_now FROM withdrawal.recon_run WHERE processor = 'r_period'
 ORDER BY run_id DESC LIMIT 1;
COMMIT;

--
-- 6. reconcile(processor): from the end of the last run until now
--
SELECT wd('sn-1', 9001, 'r_since') IS NOT NULL AS created;
SELECT kind, processor_ref FROM withdrawal.reconcile('r_since');
SELECT withdrawal.import_settlement('r_since', report(line('tr_sn1', 'sn-1', 9001)));
-- the next run covers only what happened since; the late report row is
-- checked against the ledger and agrees
SELECT kind FROM withdrawal.reconcile('r_since');
SELECT wd('sn-2', 9002, 'r_since') IS NOT NULL AS created;
SELECT kind, ledger_amount FROM withdrawal.reconcile('r_since');
SELECT run_id, period_start = '-infinity' AS from_the_beginning,
	   period_start = lag(period_end) OVER (ORDER BY run_id) AS continues_previous, discrepancies
  FROM withdrawal.recon_run WHERE processor = 'r_since' ORDER BY run_id;
-- two runs in one transaction: the second has nothing left to cover
BEGIN;
SELECT count(*) FROM withdrawal.reconcile('r_since');
SELECT try($$SELECT * FROM withdrawal.reconcile('r_since')$$);
ROLLBACK;

--
-- 9. batch settlements: one line for many withdrawals, matched against
-- the sum of the batch's withdrawals (import_settlement_batch()), and the
-- unmatched remainder
--
SELECT proc(p) FROM unnest(ARRAY['r_batch', 'r_tol']) p;
SELECT wd('b-1', 1000, 'r_batch') IS NOT NULL AS a, wd('b-2', 2000, 'r_batch') IS NOT NULL AS b,
	   wd('b-3', 3000, 'r_batch') IS NOT NULL AS c, wd('b-4', 400, 'r_batch') IS NOT NULL AS d,
	   wd('b-5', 500, 'r_batch', 'submitted') IS NOT NULL AS e, wd('b-6', 600, 'r_batch') IS NOT NULL AS f,
	   wd('b-7', 700, 'r_batch') IS NOT NULL AS g, wd('b-8', 800, 'r_batch') IS NOT NULL AS h,
	   wd('b-9', 900, 'r_batch') IS NOT NULL AS i;
-- bad input: 22023 or WD007, and nothing recorded
SELECT name, try(format('SELECT withdrawal.import_settlement_batch(%s)', args)) AS outcome
  FROM (VALUES
	('processor null', $$NULL, 'B1', ARRAY[gen_random_uuid()]$$),
	('processor empty', $$'', 'B1', ARRAY[gen_random_uuid()]$$),
	('processor too long', $$repeat('p', 64), 'B1', ARRAY[gen_random_uuid()]$$),
	('processor unknown', $$'nobody', 'B1', ARRAY[gen_random_uuid()]$$),
	('batch_ref null', $$'r_batch', NULL, ARRAY[gen_random_uuid()]$$),
	('batch_ref empty', $$'r_batch', '', ARRAY[gen_random_uuid()]$$),
	('batch_ref too long', $$'r_batch', repeat('é', 128), ARRAY[gen_random_uuid()]$$),
	('ids null', $$'r_batch', 'B1', NULL$$),
	('ids empty', $$'r_batch', 'B1', '{}'::uuid[]$$),
	('ids with a null', $$'r_batch', 'B1', ARRAY[gen_random_uuid(), NULL]$$),
	('ids two-dimensional', $$'r_batch', 'B1', ARRAY[[gen_random_uuid()], [gen_random_uuid()]]$$),
	('ids not uuids', $$'r_batch', 'B1', '{x}'$$)
  ) AS c(name, args) ORDER BY name;
SELECT count(*) AS batch_rows FROM withdrawal.settlement_batch;
-- B1: three paid withdrawals, one line for their sum; a repeated id and a
-- second import add nothing
SELECT withdrawal.import_settlement_batch('r_batch', 'B1', ARRAY[id('b-1'), id('b-2'), id('b-3'), id('b-1')]);
SELECT withdrawal.import_settlement_batch('r_batch', 'B1', ARRAY[id('b-1'), id('b-2'), id('b-3')]);
-- B2: paid, still submitted here (a lost webhook), and one the ledger
-- does not know; the line is not their sum
SELECT withdrawal.import_settlement_batch('r_batch', 'B2',
	ARRAY[id('b-4'), id('b-5'), '6e0b5d55-3b39-4c7a-9a55-7a7d0f8f00b2']);
-- B3: a line that says failed for a payout paid here
SELECT withdrawal.import_settlement_batch('r_batch', 'B3', ARRAY[id('b-7')]);
-- B4: a USD payout in a EUR batch
SELECT withdrawal.import_settlement_batch('r_batch', 'B4', ARRAY[id('b-8')]);
-- B5: its line was settled the day before: another period's
SELECT withdrawal.import_settlement_batch('r_batch', 'B5', ARRAY[id('b-9')]);
SELECT withdrawal.import_settlement_batch('r_batch', 'B6', ARRAY['6e0b5d55-3b39-4c7a-9a55-7a7d0f8f00b6'::uuid]);
SELECT withdrawal.import_settlement('r_batch', report(
	line('B1', NULL, 6000), line('B2', NULL, 1000), line('B3', NULL, 700, 'USD', 'failed'),
	line('B4', NULL, 800, 'EUR'), line('B5', NULL, 900, 'USD', 'paid', now() - interval '1 day'),
	line('tr_nobatch', NULL, 123)));
-- b-6 is claimed by no line; B6 has no line at all (nothing to compare)
SELECT * FROM recon('r_batch');
SELECT processor, discrepancies FROM withdrawal.recon_run WHERE processor = 'r_batch';
-- the day before: B5 agrees with b-9 (settled by the ledger today)
SELECT * FROM recon('r_batch', now() - interval '2 days', now() - interval '12 hours');
SELECT invariants();

--
-- 10. tolerances per processor: a difference within the absolute or the
-- relative tolerance is reported as amount_within_tolerance, is not a
-- discrepancy and sends no NOTIFY; bad values are 22023 and change nothing
--
SELECT name, try(format('UPDATE withdrawal.processor SET %s WHERE name = %L', change, 'r_tol')) AS outcome
  FROM (VALUES
	('abs negative', 'recon_tolerance_abs = -1'),
	('abs null', 'recon_tolerance_abs = NULL'),
	('abs overflows', 'recon_tolerance_abs = 9223372036854775808'),
	('bps negative', 'recon_tolerance_bps = -1'),
	('bps over 100%', 'recon_tolerance_bps = 10001'),
	('bps null', 'recon_tolerance_bps = NULL'),
	('bps not a number', $$recon_tolerance_bps = 'x'$$)
  ) AS c(name, change) ORDER BY name;
SELECT try($$INSERT INTO withdrawal.processor (name, driver, base_url, recon_tolerance_bps) VALUES ('r_tol2', 'http', 'https://x.example', 20000)$$);
SELECT name, recon_tolerance_abs, recon_tolerance_bps FROM withdrawal.processor WHERE name LIKE 'r_tol%';
UPDATE withdrawal.processor SET recon_tolerance_abs = 5, recon_tolerance_bps = 100 WHERE name = 'r_tol';
SELECT name, recon_tolerance_abs, recon_tolerance_bps FROM withdrawal.processor WHERE name = 'r_tol';
SELECT wd('t-1', 1000, 'r_tol') IS NOT NULL AS a, wd('t-2', 1000, 'r_tol') IS NOT NULL AS b,
	   wd('t-3', 100000, 'r_tol') IS NOT NULL AS c, wd('t-4', 300, 'r_tol') IS NOT NULL AS d,
	   wd('t-5', 700, 'r_tol') IS NOT NULL AS e, wd('t-6', 5, 'r_tol') IS NOT NULL AS f;
SELECT withdrawal.import_settlement_batch('r_tol', 'T1', ARRAY[id('t-4'), id('t-5')]);
-- t-1: 5 less (the absolute tolerance); t-2: 11 less, over both; t-3:
-- 900 less, within 1%; T1: 8 less than its sum; t-6: 5 more than 5
SELECT withdrawal.import_settlement('r_tol', report(
	line('tr_t1', 't-1', 995), line('tr_t2', 't-2', 989), line('tr_t3', 't-3', 99100),
	line('T1', NULL, 992), line('tr_t6', 't-6', 10)));
SELECT * FROM recon('r_tol');
SELECT processor, discrepancies, amount_mismatch, amount_within_tolerance
  FROM withdrawal.recon_summary WHERE processor = 'r_tol';
-- within tolerance only: no discrepancy, still reported
UPDATE withdrawal.processor SET recon_tolerance_abs = 20 WHERE name = 'r_tol';
SELECT * FROM recon('r_tol');
SELECT processor, discrepancies, amount_within_tolerance
  FROM withdrawal.recon_summary WHERE processor = 'r_tol';
SELECT invariants();

--
-- 7. the summary of the latest run per processor, and the items kept
--
SELECT processor, discrepancies, missing_at_processor, missing_in_ledger, amount_mismatch,
	   currency_mismatch, status_mismatch, duplicate_at_processor, return_mismatch,
	   amount_within_tolerance
  FROM withdrawal.recon_summary ORDER BY processor;
SELECT kind, count(*) FROM withdrawal.recon_item GROUP BY kind ORDER BY kind;

--
-- 8. roles: ops import and reconcile, the auditor reads, the app neither
--
SET ROLE withdrawal_ops;
SELECT withdrawal.import_settlement('r_clean', report(VARIADIC ARRAY[]::text[]));
SELECT withdrawal.import_settlement_batch('r_clean', 'C1', ARRAY['6e0b5d55-3b39-4c7a-9a55-7a7d0f8f00c1'::uuid]);
SELECT count(*) > 0 AS ops_reads_batches FROM withdrawal.settlement_batch;
SELECT count(*) FROM withdrawal.reconcile('r_clean', now() - interval '1 hour', now());
SELECT count(*) > 0 AS ops_reads_summary FROM withdrawal.recon_summary;
SELECT try($$INSERT INTO withdrawal.settlement (processor, processor_ref, amount, currency, status, settled_at) VALUES ('r_clean', 'x', 1, 'USD', 'paid', now())$$);
RESET ROLE;
SET ROLE withdrawal_auditor;
SELECT count(*) > 0 AS auditor_reads_summary FROM withdrawal.recon_summary;
SELECT count(*) > 0 AS auditor_reads_items FROM withdrawal.recon_item;
SELECT count(*) > 0 AS auditor_reads_batches FROM withdrawal.settlement_batch;
SELECT try($$SELECT withdrawal.import_settlement_batch('r_clean', 'C2', ARRAY[gen_random_uuid()])$$);
SELECT try($$SELECT withdrawal.reconcile('r_clean')$$);
SELECT try($$SELECT withdrawal.import_settlement('r_clean', 'x')$$);
RESET ROLE;
SET ROLE withdrawal_app;
SELECT try($$SELECT withdrawal.reconcile('r_clean')$$);
SELECT try($$SELECT withdrawal.import_settlement('r_clean', 'x')$$);
SELECT try($$SELECT count(*) FROM withdrawal.recon_summary$$);
SELECT try($$SELECT withdrawal.import_settlement_batch('r_clean', 'C2', ARRAY[gen_random_uuid()])$$);
SELECT try($$SELECT count(*) FROM withdrawal.settlement_batch$$);
SELECT try($$SELECT withdrawal._reconcile('r_clean', NULL, NULL)$$);
RESET ROLE;
SELECT invariants();

\c postgres
DROP DATABASE regress_reconcile;
