#!/usr/bin/env bash
# Benchmark of account statements (issue 13), in one run:
#   credit     credit() tps (BENCH_CLIENTS clients, default 4, one credit per
#              transaction) with the index ledger_entry_wallet that
#              statement() pages on, against the same without it (dropped
#              and rebuilt between interleaved rounds): what the index
#              costs the hot path
#   statement  one page of 100 of a wallet with BENCH_ENTRIES (default
#              100,000) credits, from its start and after its middle
#              txn_id, in a ledger with BENCH_ROWS (default 1,000,000)
#              credits of 10,000 other wallets
# Prints the best of BENCH_ROUNDS (default 3) interleaved rounds of
# BENCH_SECONDS (default 15) each, and the ratio with/without.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster.sh"

rows=${BENCH_ROWS:-1000000}
entries=${BENCH_ENTRIES:-100000}
rounds=${BENCH_ROUNDS:-3}
seconds=${BENCH_SECONDS:-15}
clients=${BENCH_CLIENTS:-4}

start_bench_cluster
bench_psql -c "CREATE EXTENSION withdrawal"
echo "loading $rows credits of 10,000 accounts and $entries of one account..."
bench_psql <<EOF >/dev/null
-- credit_many() takes at most 100,000 items a call
SELECT sum((SELECT count(*) FROM withdrawal.credit_many(x.a, array_fill('USD'::text, ARRAY[cardinality(x.a)]),
			array_fill(1::bigint, ARRAY[cardinality(x.a)]), x.k)))
  FROM (SELECT g / 100000, array_agg('acct' || g % 10000), array_agg('load' || g)
		  FROM generate_series(1, $rows) g GROUP BY 1) x(b, a, k);
SELECT sum((SELECT count(*) FROM withdrawal.credit_many(x.a, array_fill('USD'::text, ARRAY[cardinality(x.a)]),
			array_fill(1::bigint, ARRAY[cardinality(x.a)]), x.k)))
  FROM (SELECT g / 100000, array_agg('long'::text), array_agg('long' || g)
		  FROM generate_series(1, $entries) g GROUP BY 1) x(b, a, k);
VACUUM ANALYZE;
EOF

script=$bench_work/credit.sql
cat >"$script" <<'SQL'
\set aid random(1, 10000)
\set k random(1, 1000000000000)
SELECT transfer_id FROM withdrawal.credit('acct' || :aid, 'USD', 1, 'bench' || :k);
SQL
chmod 644 "$script"

best_with=0
best_without=0
for round in $(seq 1 "$rounds"); do
	with=$(pgbench_tps "$seconds" "$clients" "$script")
	bench_psql -c "DROP INDEX withdrawal.ledger_entry_wallet" -c "CHECKPOINT"
	without=$(pgbench_tps "$seconds" "$clients" "$script")
	bench_psql -c "CREATE INDEX ledger_entry_wallet ON withdrawal.ledger_entry (wallet_id, txn_id) WHERE leg = 2" -c "CHECKPOINT"
	echo "round $round: credit() with the index $with tps, without $without tps"
	if awk "BEGIN{exit !($with > $best_with)}"; then best_with=$with; fi
	if awk "BEGIN{exit !($without > $best_without)}"; then best_without=$without; fi
done
printf '\n%-12s %12s %12s %8s\n' "" "with_tps" "without_tps" "ratio"
printf '%-12s %12.1f %12.1f %8.3f\n' "credit()" "$best_with" "$best_without" \
	"$(awk "BEGIN{print $best_with / $best_without}")"

echo
echo "statement() pages of 100 transactions of a wallet with $entries entries:"
read -r first middle <<<"$(bench_psql -At -F' ' -c "SELECT min(txn_id), (min(txn_id) + max(txn_id)) / 2
	FROM withdrawal.ledger_entry e JOIN withdrawal.wallet w USING (wallet_id) WHERE w.account_id = 'long'")"
for after in NULL "$middle"; do
	bench_psql -c '\timing on' -c "SELECT count(*) FROM withdrawal.statement('long', 'USD', $after, 100)" |
		sed -n "s/^Time: /  after_txn_id $after: /p"
done
