#!/usr/bin/env bash
# Bulk credits (issue 13), in one run and one cluster, three databases,
# each crediting BENCH_ROWS rewards to BENCH_ROWS/10 accounts (ten each,
# the shape of a campaign), with synchronous_commit on:
#   bulk    credit_many(), BENCH_BATCH items per call, one call per
#           transaction, from one client
#   single  credit() as an application calls it: one reward, one call,
#           one transaction, from 4 pgbench clients
#   loop    credit() looped by one server-side statement per BENCH_BATCH
#           credits (no round trips, one commit per batch: the fastest way
#           to call credit() itself, for reference)
# Prints the throughputs and the ratios bulk/single (target >= 5 at 1M
# credits) and bulk/loop, and checks that bulk and loop end with the same
# balances and clean books.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster.sh"

rows=${BENCH_ROWS:-1000000}
batch=${BENCH_BATCH:-10000}
accounts=$((rows / 10 > 0 ? rows / 10 : 1))
batches=$(((rows + batch - 1) / batch))

start_bench_cluster
bench_psql -c "CREATE DATABASE single" -c "CREATE DATABASE bulk" -c "CREATE DATABASE loop"
for db in single bulk loop; do
	bench_psql -d "$db" -c "CREATE EXTENSION withdrawal"
done

# elapsed COMMAND...: runs it, prints its wall time in seconds
elapsed() {
	local start end
	start=$(date +%s.%N)
	"$@" >/dev/null
	end=$(date +%s.%N)
	echo "$end - $start" | bc
}

# batches DB TEMPLATE: TEMPLATE once per batch of items [@FIRST@, @LAST@],
# one transaction each, through one session
batches() {
	local db=$1 template=$2 b first last
	for ((b = 0; b < batches; b++)); do
		first=$((b * batch + 1))
		last=$(((b + 1) * batch < rows ? (b + 1) * batch : rows))
		printf '%s\n' "$template" | sed "s/@FIRST@/$first/g; s/@LAST@/$last/g"
	done | bench_psql -d "$db"
}

loop_sql="SELECT count(withdrawal.credit('acct' || g % $accounts, 'USD', 100 + g % 900, 'reward:' || g))
  FROM generate_series(@FIRST@, @LAST@) g;"
bulk_sql="SELECT count(*) FROM withdrawal.credit_many(
  ARRAY(SELECT 'acct' || g % $accounts FROM generate_series(@FIRST@, @LAST@) g),
  array_fill('USD'::text, ARRAY[@LAST@ - @FIRST@ + 1]),
  ARRAY(SELECT (100 + g % 900)::bigint FROM generate_series(@FIRST@, @LAST@) g),
  ARRAY(SELECT 'reward:' || g FROM generate_series(@FIRST@, @LAST@) g));"

# single: each transaction a credit() with a key of its own (the client id
# and a random number; a rare repeat replays, which is a call all the same)
printf '%s\n' "\\set a random(0, $((accounts - 1)))" \
	"\\set k random(1, 1000000000000)" \
	"SELECT withdrawal.credit('acct' || :a, 'USD', 100 + :k::bigint % 900, 'reward:' || :client_id || ':' || :k);" \
	>"$bench_work/single.sql"
chmod 644 "$bench_work/single.sql"
single() {
	as_run_user "$bench_bindir/pgbench" -n -M prepared -c 4 -j 4 -t $(((rows + 3) / 4)) \
		-f "$bench_work/single.sql" single
}

echo "$rows credits to $accounts accounts; bulk and loop in $batches transactions of $batch..."
bulk_s=$(elapsed batches bulk "$bulk_sql")
loop_s=$(elapsed batches loop "$loop_sql")
single_s=$(elapsed single)

books="SELECT count(*) || ' wallets, ' || sum(available) || ' available, '
  || (SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0) || ' failed checks'
  FROM withdrawal.wallet"
loop_books=$(bench_psql -d loop -Atc "$books")
bulk_books=$(bench_psql -d bulk -Atc "$books")
single_credits=$(bench_psql -d single -Atc "SELECT count(*) FROM withdrawal.credit")
if [ "$loop_books" != "$bulk_books" ] || [[ "$bulk_books" != *" 0 failed checks" ]]; then
	echo "bulk_credit: the books differ: loop: $loop_books; bulk: $bulk_books" >&2
	exit 1
fi

printf '%-40s %10s %12s\n' "" "seconds" "credits/s"
printf '%-40s %10.2f %12.0f\n' "single: credit(), one per transaction" "$single_s" "$(echo "$rows / $single_s" | bc -l)"
printf '%-40s %10.2f %12.0f\n' "loop: credit(), $batch per transaction" "$loop_s" "$(echo "$rows / $loop_s" | bc -l)"
printf '%-40s %10.2f %12.0f\n' "bulk: credit_many(), $batch per call" "$bulk_s" "$(echo "$rows / $bulk_s" | bc -l)"
printf 'ratio bulk/single: %.2f (target >= 5); bulk/loop: %.2f\n' \
	"$(echo "$single_s / $bulk_s" | bc -l)" "$(echo "$loop_s / $bulk_s" | bc -l)"
echo "books: bulk and loop: $bulk_books; single: $single_credits credits"
