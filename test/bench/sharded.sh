#!/usr/bin/env bash
# Benchmark of sharding (issue 15, docs/sharding.md), in one run:
#   single   withdrawal.request() on one server (the baseline)
#   routed   the same call through the PL/Proxy router
#            (router/withdrawal_router.sql) onto 2 shard servers
# and the router's overhead per call: balance() (the cheapest call) and
# request() with one client, direct to one server and through the router;
# the difference of the mean latencies is what the router adds to a call.
#
# All of it runs on this machine: the router and both shards share its
# cores, so routed throughput here is not what 2 servers give.  What the
# scaling model of docs/sharding.md needs is the CPU each side spends per
# call, read from /proc for the router's and the shards' server processes
# (the difference of a short and a long run, so that the first calls of
# new sessions, which load the library and prepare its plans, drop out):
# a shard server of k cores does about k / shard_cpu requests/s, a router
# server k / router_cpu.  No worker runs (no payout leaves), as in
# request.sh.
#
# BENCH_SECONDS (default 20), BENCH_ACCOUNTS (default 100000) and
# BENCH_CLIENTS (default 4) scale it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster.sh"

seconds=${BENCH_SECONDS:-20}
accounts=${BENCH_ACCOUNTS:-100000}
clients=${BENCH_CLIENTS:-4}
cores=$(nproc)

# the baseline server: cluster.sh's
start_bench_cluster
single_port=$bench_port

# start_extra NAME: another throwaway cluster on a free port; prints the port
start_extra() {
	local name=$1 port
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	as_run_user "$bench_bindir/initdb" -D "$bench_work/$name" -A trust -U postgres >/dev/null
	{
		echo "port = $port"
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = ''"
		echo "shared_buffers = '512MB'"
		echo "max_wal_size = '4GB'"
		echo "checkpoint_timeout = '30min'"
	} | as_run_user tee -a "$bench_work/$name/postgresql.conf" >/dev/null
	as_run_user "$bench_bindir/pg_ctl" -D "$bench_work/$name" -l "$bench_work/$name.log" -w start >/dev/null
	echo "$port"
}
stop_all() {
	local d
	for d in pg_shard0 pg_shard1 pg_router; do
		if [ -d "$bench_work/$d" ]; then
			as_run_user "$bench_bindir/pg_ctl" -D "$bench_work/$d" -m fast stop >/dev/null 2>&1 || true
		fi
	done
	stop_bench_cluster
}
trap stop_all EXIT

shard0=$(start_extra pg_shard0)
shard1=$(start_extra pg_shard1)
router=$(start_extra pg_router)
for p in "$single_port" "$shard0" "$shard1"; do
	PGPORT=$p bench_psql -c "CREATE EXTENSION withdrawal"
done
PGPORT=$router bench_psql -c "CREATE EXTENSION plproxy" -f "$src_root/router/withdrawal_router.sql" \
	-c "SELECT withdrawal_router.configure(ARRAY['host=127.0.0.1 port=$shard0 dbname=postgres user=postgres',
	                                             'host=127.0.0.1 port=$shard1 dbname=postgres user=postgres'])" >/dev/null

echo "seeding $accounts accounts on the single server and, through the router, on the shards..."
seed="SELECT count(*) FROM withdrawal.credit_many(
	ARRAY(SELECT 'acct' || g FROM generate_series(1, $accounts) g),
	array_fill('USD'::text, ARRAY[$accounts]), array_fill(1000000000::bigint, ARRAY[$accounts]),
	ARRAY(SELECT 'seed' || g FROM generate_series(1, $accounts) g))"
PGPORT=$single_port bench_psql -c "$seed" >/dev/null
PGPORT=$router bench_psql -c "$seed" >/dev/null
for p in "$single_port" "$shard0" "$shard1"; do
	PGPORT=$p bench_psql -c "VACUUM ANALYZE" >/dev/null
done

scripts=$bench_work/scripts
as_run_user mkdir -p "$scripts"
as_run_user tee "$scripts/request.sql" >/dev/null <<EOS
\\set a random(1, $accounts)
\\set amt random(1, 1000)
\\set k random(1, 1000000000000)
SELECT withdrawal.request('acct' || :a, 'USD', :amt, 'sandbox', '{"bank": "DE89"}', 'c-' || :client_id || '-' || :k, '{"device_id": "d1"}');
EOS
as_run_user tee "$scripts/balance.sql" >/dev/null <<EOS
\\set a random(1, $accounts)
SELECT withdrawal.balance('acct' || :a, 'USD');
EOS

# pgbench_once PORT CLIENTS SECONDS SCRIPT DIRS...: "calls ticks" of one
# pgbench run, the ticks being the CPU of the servers in DIRS
# (server_cpu_ticks)
pgbench_once() {
	local port=$1 c=$2 t=$3 script=$4 before after calls
	shift 4
	# the sessions of the previous run must have exited and been reaped
	sleep 1
	before=$(server_cpu_ticks "$@")
	calls=$(PGPORT=$port as_run_user "$bench_bindir/pgbench" -n -M prepared -T "$t" -c "$c" -j "$c" \
		-f "$script" 2>&1 | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
	sleep 1
	after=$(server_cpu_ticks "$@")
	echo "$calls $((after - before))"
}

# run PORT CLIENTS SCRIPT DIRS...: "tps cpu_us_per_call latency_us" from a
# short and a long run: every run opens new sessions, and through the
# router new shard sessions too, whose first calls load the library and
# prepare its plans; the difference of the two runs leaves that out.
run() {
	local port=$1 c=$2 script=$3 short long s l
	shift 3
	short=$(( seconds / 4 > 0 ? seconds / 4 : 1 ))
	long=$(( seconds / 2 > short ? seconds / 2 : short + 1 ))
	s=$(pgbench_once "$port" "$c" "$short" "$script" "$@")
	l=$(pgbench_once "$port" "$c" "$long" "$script" "$@")
	awk -v s="$s" -v l="$l" -v ts="$short" -v tl="$long" -v hz="$hz" -v c="$c" 'BEGIN {
		split(s, a, " "); split(l, b, " "); n = b[1] - a[1]
		if (n <= 0) n = 1
		printf "%f %f %f\n", n / (tl - ts), (b[2] - a[2]) * 1e6 / hz / n, c * (tl - ts) * 1e6 / n }'
}

# keep NAME RESULT: the result of best tps of the rounds
export PGOPTIONS="-c synchronous_commit=on"
declare -A res
keep() {
	local name=$1 r=$2
	if [ -z "${res[$name]:-}" ] || awk "BEGIN{exit !(${r%% *} > ${res[$name]%% *})}"; then res[$name]=$r; fi
}
for round in 1 2; do
	keep single "$(run "$single_port" "$clients" "$scripts/request.sql" data)"
	# the shards' CPU first, then the router's, in two runs: each run's
	# CPU is read from one side only, so that the sides do not mix
	keep routed "$(run "$router" "$clients" "$scripts/request.sql" pg_shard0 pg_shard1)"
	keep router "$(run "$router" "$clients" "$scripts/request.sql" pg_router)"
	keep bal_direct "$(run "$single_port" 1 "$scripts/balance.sql" data)"
	keep bal_routed "$(run "$router" 1 "$scripts/balance.sql" pg_router)"
	keep req_direct "$(run "$single_port" 1 "$scripts/request.sql" data)"
	keep req_routed "$(run "$router" 1 "$scripts/request.sql" pg_router)"
done
field() { echo "${res[$1]}" | awk -v f="$2" '{ print $f }'; }

printf '\nrequest(), %d clients, durable commits (%d cores shared by every server)\n' "$clients" "$cores"
printf '%-34s %12s %12s %8s\n' "" "single" "router+2" "ratio"
printf '%-34s %12.0f %12.0f %8.2f\n' "request() tps" "$(field single 1)" "$(field routed 1)" \
	"$(awk "BEGIN{print $(field routed 1) / $(field single 1)}")"
printf '\none client, mean latency per call (us)\n'
printf '%-34s %12s %12s %12s\n' "" "direct" "routed" "router adds"
for c in bal req; do
	d=$(field ${c}_direct 3); r=$(field ${c}_routed 3)
	printf '%-34s %12.0f %12.0f %12.0f\n' "$([ $c = bal ] && echo 'balance()' || echo 'request()')" \
		"$d" "$r" "$(awk "BEGIN{print $r - $d}")"
done
# CPU per call, measured from /proc: what the scaling model needs
single_cpu=$(field single 2)
shard_cpu=$(field routed 2)
router_cpu=$(field router 2)
printf '\nCPU per request(), core-us: single server %.0f; routed: shards %.0f, router %.0f (balance() router %.0f)\n' \
	"$single_cpu" "$shard_cpu" "$router_cpu" "$(field bal_routed 2)"
printf 'model: a shard server of k cores does about k x %.0f requests/s; a router server of k cores routes about k x %.0f/s\n' \
	"$(awk "BEGIN{print 1e6 / $shard_cpu}")" "$(awk "BEGIN{print 1e6 / $router_cpu}")"
printf 'router CPU / shard CPU per request(): %.2f\n' "$(awk "BEGIN{print $router_cpu / $shard_cpu}")"

for p in "$shard0" "$shard1"; do
	PGPORT=$p bench_psql -Atc "SELECT 'shard $p: ' || (SELECT count(*) FROM withdrawal.withdrawal) || ' withdrawals, invariants: ' || coalesce(string_agg(check_name, ', '), 'clean') FROM withdrawal.check_invariants() WHERE violations <> 0"
done
