#!/usr/bin/env bash
# Dispatch benchmark, in one run:
#   1. the mock processor's own capacity (test/bench/mock_capacity.sh, wrk);
#   2. end-to-end dispatch throughput, queued -> submitted, of N withdrawals
#      committed at once with no rate limit, as a ratio of that capacity;
#   3. commit -> request-at-processor latency, p50 and p99, at a moderate
#      request rate (commit times from track_commit_timestamp, arrival
#      times from the mock's request log, on the same clock);
#   4. worker RSS before and after M more payouts.
#
#   test/bench/dispatch.sh
#
# Environment: BENCH_SCALE (default 1: N = 100000, M = 200000; 0.05 for a
# quick run), DISPATCH_WORKERS (default 2), MAX_IN_FLIGHT and BATCH_SIZE
# (withdrawal.max_in_flight and withdrawal.batch_size, default 64 each),
# LATENCY_RATE (requests/s, default 100), LATENCY_SECONDS (default 10),
# NODE (default node).  DISPATCH_STATEMENTS=1 loads pg_stat_statements
# (track = all, with planning) and prints, after phase 2, the workers'
# statements with their execution and planning time and buffer hits per
# payout: where the workers' CPU goes (issue 16).  It slows the workers,
# so its CPU figures are not comparable with a run without it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster.sh"

scale=${BENCH_SCALE:-1}
workers=${DISPATCH_WORKERS:-2}
lat_rate=${LATENCY_RATE:-100}
lat_seconds=${LATENCY_SECONDS:-10}
node=${NODE:-node}
n_tp=$(python3 -c "print(max(100, int(100000 * $scale)))")
n_rss=$(python3 -c "print(max(100, int(200000 * $scale)))")

echo "== 1. mock capacity"
# wrk sometimes sees a stray socket error on a busy machine: try 3 times
for try in 1 2 3; do
	cap_line=$("$here/mock_capacity.sh" 5 64 2>&1 | tail -n 1) && break
	echo "(mock capacity run $try failed: $cap_line)"
done
echo "$cap_line"
capacity=$(echo "$cap_line" | sed -n 's/^mock capacity: \([0-9]*\) requests\/s.*/\1/p')

# The mock for the dispatch runs: "pending" answers, so payouts end submitted.
mock_dir=$(mktemp -d)
mock_pid=
cleanup_mock() {
	[ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
	rm -rf "$mock_dir"
	stop_bench_cluster
}
mkfifo "$mock_dir/out"
"$node" "$here/../mock/processor.js" --port 0 --status pending --log-limit 20000 >"$mock_dir/out" 2>"$mock_dir/err" &
mock_pid=$!
exec 3<"$mock_dir/out"
IFS= read -r -t 30 line <&3 || { cat "$mock_dir/err" >&2; exit 1; }
mock_url=http://127.0.0.1:${line//[^0-9]/}

# ctl METHOD PATH: a control request; prints the body
ctl() {
	"$node" -e '
		const req = require("http").request(process.argv[1], { method: process.argv[2] }, (res) => {
			let b = ""; res.on("data", (c) => b += c);
			res.on("end", () => process.stdout.write(b, () => process.exit(res.statusCode === 200 ? 0 : 1)));
		});
		req.end();' "$mock_url$2" "$1"
}

statements=${DISPATCH_STATEMENTS:-0}
preload=withdrawal
pss_conf=()
if [ "$statements" = 1 ]; then
	preload=withdrawal,pg_stat_statements
	pss_conf=("pg_stat_statements.track = all" "pg_stat_statements.track_planning = on")
fi
start_bench_cluster \
	"shared_preload_libraries = '$preload'" \
	${pss_conf[@]+"${pss_conf[@]}"} \
	"withdrawal.database = 'postgres'" \
	"withdrawal.workers = $workers" \
	"withdrawal.allow_insecure_loopback = on" \
	"withdrawal.max_in_flight = ${MAX_IN_FLIGHT:-64}" \
	"withdrawal.batch_size = ${BATCH_SIZE:-64}" \
	"track_commit_timestamp = on" \
	"synchronous_commit = on"
trap cleanup_mock EXIT

bench_psql <<SQL
CREATE EXTENSION withdrawal;
INSERT INTO withdrawal.processor (name, driver, base_url) VALUES ('mock', 'http', '$mock_url');
INSERT INTO withdrawal.channel (name, processor) VALUES ('bank', 'mock');
SELECT count(*) FROM (SELECT withdrawal.credit('acct' || a, 'USD', 1000000000000, 'fund' || a) FROM generate_series(1, 1000) a) s;
SQL
# CREATE EXTENSION creates the workers' role: they restart once to connect
# as it, and are measured from then on
while [ "$(bench_psql -At -c "SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'withdrawal worker' AND usename = 'withdrawal_worker'")" != "$workers" ]; do
	sleep 0.2
done

# wait_drained: until nothing is queued or dispatching
wait_drained() {
	while [ "$(bench_psql -At -c "SELECT count(*) FROM withdrawal.outbox")" != 0 ]; do
		sleep 0.2
	done
}

# wait_idle: until the outbox is drained and the audit chain sealed
wait_idle() {
	wait_drained
	while [ "$(bench_psql -At -c "SELECT (SELECT count(*) FROM withdrawal.audit_log) - (SELECT count(*) FROM withdrawal.audit_seal)")" != 0 ]; do
		sleep 0.2
	done
}

# read once the workers have been idle for 2 s: a worker returns the
# memory it freed to the kernel within a second of going idle (worker.c)
worker_rss_kb() {
	local total=0 pid
	sleep 2
	for pid in $(bench_psql -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'withdrawal worker'"); do
		# private memory only: RssAnon leaves out the shared buffers touched
		total=$((total + $(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status")))
	done
	echo "$total"
}

# queue_batch PREFIX N: N requests committed in one transaction; prints
# the commit time (epoch seconds)
queue_batch() {
	bench_psql -At <<SQL
SELECT count(*) FROM (SELECT withdrawal.request('acct' || (1 + i % 1000), 'USD', 100 + i % 900, 'bank',
	'{"iban": "DE89370400440532013000"}', '$1' || i) FROM generate_series(1, $2) i) s \gset
SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM withdrawal.ledger_entry
 WHERE kind = 'debit' AND withdrawal_id = (SELECT withdrawal_id FROM withdrawal.withdrawal WHERE idempotency_key = '${1}1');
SQL
}

# cpu_ticks PID...: CPU time (user + system, clock ticks) the processes used
cpu_ticks() {
	local total=0 pid
	for pid in "$@"; do
		total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
	done
	echo "$total"
}

echo "== 2. dispatch throughput: $n_tp withdrawals committed at once, $workers worker(s), no rate limit"
ctl POST /_control/reset >/dev/null
if [ "$statements" = 1 ]; then
	bench_psql -c "CREATE EXTENSION pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
fi
worker_pids=$(bench_psql -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'withdrawal worker'")
commit_epoch=$(queue_batch tp "$n_tp" | tail -n 1)
workers_cpu0=$(cpu_ticks $worker_pids)
mock_cpu0=$(cpu_ticks "$mock_pid")
wait_drained
workers_cpu=$(($(cpu_ticks $worker_pids) - workers_cpu0))
mock_cpu=$(($(cpu_ticks "$mock_pid") - mock_cpu0))
read -r e2e_s submitted <<<"$(bench_psql -At -F ' ' -c "
	SELECT extract(epoch FROM max(updated_at)) - $commit_epoch, count(*) FILTER (WHERE status = 'submitted')
	  FROM withdrawal.withdrawal WHERE idempotency_key LIKE 'tp%'")"
stats=$(ctl GET "/_control/stats?keys=0")
max_per_key=$(echo "$stats" | sed -n 's/.*"max_effective_per_key":\([0-9]*\).*/\1/p')
tp=$(python3 -c "print(round($n_tp / $e2e_s))")
echo "dispatch: $submitted of $n_tp submitted in $(python3 -c "print(round($e2e_s, 2))") s = $tp payouts/s" \
	"(max effective payouts per key at the mock: $max_per_key)"
echo "dispatch throughput / mock capacity: $(python3 -c "print(round($tp / $capacity, 2))") (target >= 0.7)"
hz=$(getconf CLK_TCK)
echo "CPU per payout: workers $(python3 -c "print(round($workers_cpu * 1e6 / $hz / $n_tp))") us," \
	"mock $(python3 -c "print(round($mock_cpu * 1e6 / $hz / $n_tp))") us ($(nproc) CPUs shared by both)"

if [ "$statements" = 1 ]; then
	echo "workers' statements in phase 2, per payout (nested ones are also inside their callers' time):"
	bench_psql -c "
		SELECT round((1000 * total_exec_time / $n_tp)::numeric, 1) AS exec_us,
		       round((1000 * total_plan_time / $n_tp)::numeric, 1) AS plan_us,
		       round(calls::numeric / $n_tp, 2) AS calls,
		       round(shared_blks_hit::numeric / $n_tp, 1) AS hits,
		       round(wal_bytes / $n_tp) AS wal_bytes,
		       left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS statement
		  FROM pg_stat_statements
		 WHERE userid = 'withdrawal_worker'::regrole
		 ORDER BY total_exec_time + total_plan_time DESC LIMIT 12"
fi

echo "== 3. commit -> request-at-processor latency at $lat_rate requests/s for $lat_seconds s"
# steady state: the burst of phase 2 fully recorded and sealed first
wait_idle
ctl POST /_control/reset >/dev/null
# epoch ms of the mock's t_ms = 0, from a round trip measured around it
# the round trip with the smallest RTT out of 20 bounds the error by RTT/2
offset_ms=$("$node" -e '
	const http = require("http");
	const agent = new http.Agent({ keepAlive: true });
	let best = null, n = 0;
	function probe() {
		const t1 = Date.now();
		http.get(process.argv[1] + "/_control/stats?keys=0", { agent }, (res) => {
			let b = ""; res.on("data", (c) => b += c);
			res.on("end", () => {
				const t2 = Date.now();
				if (best === null || t2 - t1 < best.rtt)
					best = { rtt: t2 - t1, offset: (t1 + t2) / 2 - JSON.parse(b).uptime_ms };
				if (++n < 20)
					probe();
				else {
					console.log(best.offset.toFixed(3));
					agent.destroy();
				}
			});
		});
	}
	probe();' "$mock_url")
cat >"$bench_work/latency.sql" <<'SQL'
\set k random(1, 1000000000)
SELECT withdrawal.request('acct' || (1 + :k % 1000), 'USD', 100 + :k % 900, 'bank', '{"iban": "DE89370400440532013000"}', 'lat' || :client_id || '-' || :k);
SQL
chmod 644 "$bench_work/latency.sql"
as_run_user "$bench_bindir/pgbench" -n -c 2 -j 2 -T "$lat_seconds" -R "$lat_rate" -f "$bench_work/latency.sql" >/dev/null 2>&1
wait_drained
ctl GET /_control/requests | "$node" -e '
	let b = ""; process.stdin.on("data", (c) => b += c);
	process.stdin.on("end", () => {
		for (const r of JSON.parse(b))
			if (r.method === "POST" && r.withdrawal_id)
				console.log(r.withdrawal_id + "," + r.t_ms);
	});' >"$bench_work/arrivals.csv"
chmod 644 "$bench_work/arrivals.csv"
bench_psql -At <<SQL
CREATE TEMP TABLE arrival (withdrawal_id uuid, t_ms double precision);
\copy arrival FROM '$bench_work/arrivals.csv' WITH (FORMAT csv)
SELECT 'latency: ' || count(*) || ' payouts, p50 ' ||
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) || ' ms, p99 ' ||
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2) || ' ms, max ' ||
       round(max(ms)::numeric, 2) || ' ms (target p50 <= 5 ms)'
  FROM (SELECT min(a.t_ms) + $offset_ms - extract(epoch FROM pg_xact_commit_timestamp(l.xmin)) * 1000 AS ms
          FROM arrival a JOIN withdrawal.ledger_entry l ON l.withdrawal_id = a.withdrawal_id AND l.kind = 'debit' AND l.leg = 1
         GROUP BY a.withdrawal_id, l.xmin) s;
SQL

echo "== 4. worker RSS before and after $n_rss payouts"
# read when the workers are idle: a sealing backlog holds transient memory
wait_idle
rss_before=$(worker_rss_kb)
done_n=0
chunk=$(( n_rss < 50000 ? n_rss : 50000 ))
while [ "$done_n" -lt "$n_rss" ]; do
	queue_batch "rss$done_n-" "$chunk" >/dev/null
	wait_idle
	done_n=$((done_n + chunk))
done
rss_after=$(worker_rss_kb)
echo "worker private RSS (RssAnon, $workers worker(s)): before ${rss_before} kB, after ${rss_after} kB," \
	"ratio $(python3 -c "print(round($rss_after / $rss_before, 3))") (target within 10%)"
bench_psql -At -c "SELECT 'invariants: ' || coalesce(string_agg(check_name, ', ') FILTER (WHERE violations > 0), 'clean') FROM withdrawal.check_invariants()"
