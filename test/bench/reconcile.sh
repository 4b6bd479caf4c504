#!/usr/bin/env bash
# Benchmark of withdrawal.reconcile() (issue 4), in one run:
#   reconcile  withdrawal.reconcile(): classification, items persisted in
#              recon_item, the run in recon_run, NOTIFY
#   baseline   a hand-written FULL OUTER JOIN of the same ledger and
#              settlement rows that classifies the same kinds and only
#              counts them (what a DBA would write by hand)
# BENCH_ROWS withdrawals (default 1,000,000) paid in one period against as
# many settlement rows, with a few hundred planted discrepancies of every
# kind.  The data is generated set-based straight into the tables (the
# API would take far longer and is benchmarked elsewhere).  Prints the
# best of BENCH_ROUNDS (default 3) interleaved rounds and the ratio
# reconcile/baseline (target <= 1.3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster.sh"

rows=${BENCH_ROWS:-1000000}
rounds=${BENCH_ROUNDS:-3}
# every kind is planted in 1 of step rows (about 100 each), at distinct offsets
step=$(( rows >= 10000 ? rows / 100 : 100 ))

start_bench_cluster "work_mem = '256MB'"
bench_psql -c "CREATE EXTENSION withdrawal"
echo "generating $rows withdrawals, their settle movements and $rows settlement rows..."
bench_psql <<EOF >/dev/null
INSERT INTO withdrawal.processor (name, driver, base_url) VALUES ('bench', 'http', 'https://bench.invalid');
INSERT INTO withdrawal.channel (name, processor) VALUES ('bench', 'bench');
CREATE SCHEMA bench;
CREATE TABLE bench.w AS
	SELECT g, gen_random_uuid() AS id, 100 + g % 5000 AS amount,
		   timestamptz '2026-01-01' + (g % 86400) * interval '1 second' AS at
	  FROM generate_series(1, $rows) g;
INSERT INTO withdrawal.withdrawal (withdrawal_id, idempotency_key, account_id, currency, amount, channel,
	destination, context, status, requested_by, processor_ref, created_at, updated_at)
	SELECT id, 'k' || g, 'acct' || g % 10000, 'USD', amount, 'bench', '{}', '{}', 'paid', 'bench',
		   'tr_' || g, at - interval '1 minute', at
	  FROM bench.w;
-- the settle movement of each payout: held -> settled, two legs
INSERT INTO withdrawal.ledger_entry (txn_id, leg, kind, wallet_id, currency, bucket, amount, withdrawal_id, created_at)
	SELECT g, leg, 'settle', 1, 'USD', CASE leg WHEN 1 THEN 'held' ELSE 'settled' END,
		   CASE leg WHEN 1 THEN -amount ELSE amount END, id, at
	  FROM bench.w, generate_series(1, 2) leg;
-- the processor's report, with planted discrepancies:
--   g % step = 1: missing at the processor (left out)
INSERT INTO withdrawal.settlement (processor, processor_ref, withdrawal_id, amount, currency, status, settled_at)
	SELECT 'bench', 'tr_' || g, id,
		   amount + CASE WHEN g % $step = 2 THEN 1 ELSE 0 END,          -- amount_mismatch
		   CASE WHEN g % $step = 3 THEN 'EUR' ELSE 'USD' END,           -- currency_mismatch
		   CASE WHEN g % $step = 4 THEN 'failed' ELSE 'paid' END,       -- status_mismatch
		   at + interval '30 seconds'
	  FROM bench.w WHERE g % $step <> 1;
--   duplicate_at_processor: a second transfer paid
INSERT INTO withdrawal.settlement (processor, processor_ref, withdrawal_id, amount, currency, status, settled_at)
	SELECT 'bench', 'tr_dup_' || g, id, amount, 'USD', 'paid', at + interval '40 seconds'
	  FROM bench.w WHERE g % $step = 5;
--   missing_in_ledger: payouts we never made
INSERT INTO withdrawal.settlement (processor, processor_ref, withdrawal_id, amount, currency, status, settled_at)
	SELECT 'bench', 'tr_ghost_' || g, gen_random_uuid(), 777, 'USD', 'paid', timestamptz '2026-01-01 12:00'
	  FROM generate_series(1, 100) g;
VACUUM ANALYZE;
CREATE FUNCTION bench.ms(sql text) RETURNS double precision LANGUAGE plpgsql AS \$\$
DECLARE
	t0 timestamptz := clock_timestamp();
	n bigint;
BEGIN
	EXECUTE sql INTO n;
	RAISE NOTICE 'rows: %', n;
	RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END
\$\$;
EOF

period="timestamptz '2026-01-01', timestamptz '2026-01-02'"
reconcile_sql="SELECT count(*) FROM withdrawal.reconcile('bench', $period)"
baseline_sql="
WITH l AS (
	SELECT w.withdrawal_id, w.amount, w.currency, w.status::text AS status
	  FROM withdrawal.ledger_entry e
	  JOIN withdrawal.withdrawal w ON w.withdrawal_id = e.withdrawal_id
	  JOIN withdrawal.channel c ON c.name = w.channel
	 WHERE e.kind = 'settle' AND e.leg = 1 AND c.processor = 'bench'
	   AND e.created_at >= '2026-01-01' AND e.created_at < '2026-01-02'
), p AS (
	SELECT withdrawal_id, min(amount::bigint) AS amount, min(currency) AS currency,
		   CASE WHEN bool_or(status = 'returned') THEN 'returned' WHEN bool_or(status = 'paid') THEN 'paid' ELSE 'failed' END AS status,
		   count(*) FILTER (WHERE status = 'paid') AS paid_rows
	  FROM withdrawal.settlement
	 WHERE processor = 'bench' AND settled_at >= '2026-01-01' AND settled_at < '2026-01-02'
	 GROUP BY withdrawal_id
)
SELECT count(*) FROM (
	SELECT CASE WHEN p.withdrawal_id IS NULL THEN 'missing_at_processor'
				WHEN l.withdrawal_id IS NULL THEN 'missing_in_ledger'
				WHEN p.paid_rows > 1 THEN 'duplicate_at_processor'
				WHEN l.currency <> p.currency THEN 'currency_mismatch'
				WHEN l.amount <> p.amount THEN 'amount_mismatch'
				WHEN l.status <> p.status THEN 'status_mismatch' END AS kind
	  FROM l FULL JOIN p ON p.withdrawal_id = l.withdrawal_id
) x WHERE kind IS NOT NULL"

ms() {
	bench_psql -Atc "SELECT round(bench.ms(\$q\$$1\$q\$)::numeric, 1)" 2>&1 | sed -n 's/^NOTICE:  rows: /rows=/p;/^[0-9.]*$/p' | tr '\n' ' '
}

best_r=""; best_b=""
for round in $(seq 1 "$rounds"); do
	read -r rr tr <<<"$(ms "$reconcile_sql")"
	read -r rb tb <<<"$(ms "$baseline_sql")"
	echo "round $round: reconcile ${tr} ms ($rr)  baseline ${tb} ms ($rb)"
	if [ -z "$best_r" ] || awk "BEGIN{exit !($tr < $best_r)}"; then best_r=$tr; fi
	if [ -z "$best_b" ] || awk "BEGIN{exit !($tb < $best_b)}"; then best_b=$tb; fi
done
printf '\n%-12s %12s %12s %8s\n' "rows" "reconcile_ms" "baseline_ms" "ratio"
printf '%-12s %12.1f %12.1f %8.2f\n' "$rows" "$best_r" "$best_b" "$(awk "BEGIN{print $best_r / $best_b}")"
if [ -n "${BENCH_EXPLAIN:-}" ]; then
	# the plan of the reconcile statement, through auto_explain
	bench_psql -c "LOAD 'auto_explain'" -c "SET auto_explain.log_min_duration = 0" \
		-c "SET auto_explain.log_nested_statements = on" -c "SET auto_explain.log_analyze = on" \
		-c "SET client_min_messages = log" -c "$reconcile_sql" 2>&1 | sed -n '/INSERT INTO withdrawal.recon_item/,$p' | tail -n 80
fi
bench_psql -Atc "SELECT 'latest run: ' || string_agg(kind || '=' || n, ', ' ORDER BY kind) FROM (SELECT kind, count(*) n FROM withdrawal.recon_item WHERE run_id = (SELECT max(run_id) FROM withdrawal.recon_run) GROUP BY kind) s"
