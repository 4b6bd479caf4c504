#!/usr/bin/env bash
# Bulk credits (issue 13), in one run and one cluster, two databases:
#   single  BENCH_ROWS credit() calls, looped by one server-side statement
#           per batch (no client round trips: the fastest way to make
#           single calls)
#   bulk    the same credits through credit_many(), BENCH_BATCH items per
#           call, one call per transaction
# Both credit BENCH_ROWS rewards to BENCH_ROWS/10 accounts (ten each, the
# shape of a campaign), with synchronous_commit on.  Prints both
# throughputs and the ratio bulk/single (target >= 5 at 1M credits), and
# checks that both databases hold the same balances and clean books.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster.sh"

rows=${BENCH_ROWS:-1000000}
batch=${BENCH_BATCH:-10000}
accounts=$(( rows / 10 > 0 ? rows / 10 : 1 ))
batches=$(( (rows + batch - 1) / batch ))

start_bench_cluster
bench_psql -c "CREATE DATABASE single" -c "CREATE DATABASE bulk"
for db in single bulk; do
	bench_psql -d "$db" -c "CREATE EXTENSION withdrawal"
done

# run DB SQL-FOR-BATCH: one transaction per batch of items
# [first, last]; prints the wall time in seconds
run() {
	local db=$1 template=$2 start end b first last
	start=$(date +%s.%N)
	for ((b = 0; b < batches; b++)); do
		first=$(( b * batch + 1 ))
		last=$(( (b + 1) * batch < rows ? (b + 1) * batch : rows ))
		printf '%s\n' "${template//@FIRST@/$first}" | sed "s/@LAST@/$last/g"
	done | bench_psql -d "$db" >/dev/null
	end=$(date +%s.%N)
	echo "$end - $start" | bc
}

single_sql="SELECT count(withdrawal.credit('acct' || g % $accounts, 'USD', 100 + g % 900, 'reward:' || g))
  FROM generate_series(@FIRST@, @LAST@) g;"
bulk_sql="SELECT count(*) FROM withdrawal.credit_many(
  ARRAY(SELECT 'acct' || g % $accounts FROM generate_series(@FIRST@, @LAST@) g),
  array_fill('USD'::text, ARRAY[@LAST@ - @FIRST@ + 1]),
  ARRAY(SELECT (100 + g % 900)::bigint FROM generate_series(@FIRST@, @LAST@) g),
  ARRAY(SELECT 'reward:' || g FROM generate_series(@FIRST@, @LAST@) g));"

echo "$rows credits to $accounts accounts, $batches transactions of $batch..."
bulk_s=$(run bulk "$bulk_sql")
single_s=$(run single "$single_sql")

books="SELECT count(*) || ' wallets, ' || sum(available) || ' available, '
  || (SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0) || ' failed checks'
  FROM withdrawal.wallet"
single_books=$(bench_psql -d single -Atc "$books")
bulk_books=$(bench_psql -d bulk -Atc "$books")
if [ "$single_books" != "$bulk_books" ] || [[ "$bulk_books" != *" 0 failed checks" ]]; then
	echo "bulk_credit: the books differ: single: $single_books; bulk: $bulk_books" >&2
	exit 1
fi

printf '%-28s %10s %14s\n' "" "seconds" "credits/s"
printf '%-28s %10.2f %14.0f\n' "credit(), one call per item" "$single_s" "$(echo "$rows / $single_s" | bc -l)"
printf '%-28s %10.2f %14.0f\n' "credit_many(), $batch per call" "$bulk_s" "$(echo "$rows / $bulk_s" | bc -l)"
printf 'ratio bulk/single: %.2f (target >= 5); both: %s\n' "$(echo "$single_s / $bulk_s" | bc -l)" "$bulk_books"
