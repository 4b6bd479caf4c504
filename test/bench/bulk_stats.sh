#!/usr/bin/env bash
# Bulk loads after a VACUUM ANALYZE of a fresh install (issue 16), in one
# run and one cluster, two databases:
#   fresh   CREATE EXTENSION, VACUUM ANALYZE (every table is now known to
#           be empty), then BENCH_ROWS credits to new accounts in one
#           statement, then as many requests in one statement
#   warm    the same statements on an install whose statistics describe
#           BENCH_ROWS accounts, credits and withdrawals already there
# Prints both times and the ratio fresh/warm for each statement (target
# <= 1.5).  Plans kept from the "empty" statistics used to scan the growing
# tables at every call: 20k credits took 10x as long, 100k did not finish
# in 10 minutes.  BENCH_ROWS defaults to 100,000.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster.sh"

rows=${BENCH_ROWS:-100000}

start_bench_cluster
bench_psql -c "CREATE DATABASE fresh" -c "CREATE DATABASE warm"
bench_psql -d fresh -c "CREATE EXTENSION withdrawal" -c "VACUUM ANALYZE"
echo "warm: $rows accounts with a credit and a withdrawal, then VACUUM ANALYZE..."
bench_psql -d warm -c "CREATE EXTENSION withdrawal" \
	-c "SELECT count(withdrawal.credit('w' || g, 'USD', 100000, 'k' || g)) FROM generate_series(1, $rows) g" \
	-c "SELECT count(withdrawal.request('w' || g, 'USD', 1000, 'sandbox', '{}', 'r' || g)) FROM generate_series(1, $rows) g" \
	-c "VACUUM ANALYZE" >/dev/null

# seconds DB SQL: runs one statement, prints its wall time in seconds
seconds() {
	local start end
	start=$(date +%s.%N)
	bench_psql -d "$1" -c "$2" >/dev/null
	end=$(date +%s.%N)
	echo "$end - $start" | bc
}

credits="SELECT count(withdrawal.credit('f' || g, 'USD', 100000, 'k' || g)) FROM generate_series(1, $rows) g"
requests="SELECT count(withdrawal.request('f' || g, 'USD', 1000, 'sandbox', '{}', 'r' || g)) FROM generate_series(1, $rows) g"
warm_credit=$(seconds warm "$credits")
fresh_credit=$(seconds fresh "$credits")
warm_request=$(seconds warm "$requests")
fresh_request=$(seconds fresh "$requests")

bench_psql -d fresh -Atc "SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0" |
	grep -qx 0 || { echo "bulk_stats: check_invariants() failed" >&2; exit 1; }

printf '%-30s %10s %10s %8s\n' "$rows in one statement" "warm s" "fresh s" "ratio"
printf '%-30s %10.2f %10.2f %8.2f\n' "credit() to new accounts" "$warm_credit" "$fresh_credit" \
	"$(echo "scale=4; $fresh_credit / $warm_credit" | bc)"
printf '%-30s %10.2f %10.2f %8.2f\n' "request()" "$warm_request" "$fresh_request" \
	"$(echo "scale=4; $fresh_request / $warm_request" | bc)"
echo "target: ratio <= 1.5 (fresh statistics must not change the plans of key lookups)"
