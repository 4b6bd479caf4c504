#!/usr/bin/env bash
# Measures the mock processor's own capacity: POST /payouts with unique
# idempotency keys over keep-alive loopback connections, driven by wrk, for
# a bounded time.  Prints "mock capacity: N requests/s" last, and checks
# with the mock's own counters that every request was an effective payout.
# Also prints the mock's CPU time per request (from /proc), whose inverse is
# the capacity of one fully available core: on a busy machine the wall-clock
# figure drops while that one stays put.
#
#   test/bench/mock_capacity.sh [SECONDS (default 5)] [CONNECTIONS (default 32)]
#
# Environment: WRK_THREADS (default 1), NODE (default node).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
duration=${1:-5}
connections=${2:-32}
threads=${WRK_THREADS:-1}
node=${NODE:-node}
key=sk_test_bench

command -v wrk >/dev/null || { echo "mock_capacity: wrk is not installed (tools/setup.sh)" >&2; exit 1; }
case $duration in ''|*[!0-9]*) echo "mock_capacity: SECONDS must be an integer" >&2; exit 1;; esac
[ "$duration" -ge 1 ] && [ "$duration" -le 600 ] || { echo "mock_capacity: SECONDS must be within 1..600" >&2; exit 1; }

tmp=$(mktemp -d)
mock_pid=
cleanup() {
	if [ -n "$mock_pid" ]; then
		kill "$mock_pid" 2>/dev/null || true
		wait "$mock_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

mkfifo "$tmp/out" "$tmp/out2"
"$node" "$here/../mock/processor.js" --port 0 --api-key "$key" >"$tmp/out" 2>"$tmp/err" &
mock_pid=$!
# the mock prints {"port":N} once listening; give up after 30 s
exec 3<"$tmp/out"
if ! IFS= read -r -t 30 line <&3; then
	echo "mock_capacity: the mock did not start:" >&2
	cat "$tmp/err" >&2
	exit 1
fi
port=${line//[^0-9]/}
url=http://127.0.0.1:$port

# ctl METHOD PATH: a control request to the mock (no curl needed)
ctl() {
	"$node" -e '
		const req = require("http").request(process.argv[1], { method: process.argv[2] }, (res) => {
			let b = ""; res.on("data", (c) => b += c);
			res.on("end", () => { process.stdout.write(b); process.exit(res.statusCode === 200 ? 0 : 1); });
		});
		req.on("error", (e) => { console.error(e.message); process.exit(1); });
		req.end();' "$url$2" "$1"
}

# warm up (JIT), then forget it
wrk -t1 -c"$connections" -d1s -s "$here/mock_capacity.lua" "$url" -- "$key" >/dev/null
ctl POST /_control/reset >/dev/null

# cpu_ticks PID: user + system clock ticks of a process
cpu_ticks() {
	local f
	read -r -a f <"/proc/$1/stat"
	# fields 14 and 15 (utime, stime); the command name has no spaces here
	echo $((f[13] + f[14]))
}
ticks0=$(cpu_ticks "$mock_pid")
out=$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s "$here/mock_capacity.lua" "$url" -- "$key")
echo "$out"
ticks1=$(cpu_ticks "$mock_pid")
stats=$(ctl GET "/_control/stats?keys=0")

summary=$(echo "$out" | sed -n 's/^wrk: requests=\([0-9]*\) duration_us=\([0-9]*\) non2xx=\([0-9]*\) connect=\([0-9]*\) read=\([0-9]*\) write=\([0-9]*\) timeout=\([0-9]*\)$/\1 \2 \3 \4 \5 \6 \7/p')
read -r requests duration_us non2xx econnect eread ewrite etimeout <<<"$summary"
effective=$(echo "$stats" | sed -n 's/.*"effective_payouts":\([0-9]*\).*/\1/p')
max_per_key=$(echo "$stats" | sed -n 's/.*"max_effective_per_key":\([0-9]*\).*/\1/p')

errors=$((non2xx + econnect + eread + ewrite + etimeout))
if [ "$errors" -ne 0 ] || [ "$max_per_key" -gt 1 ]; then
	echo "mock_capacity: errors during the run (non-2xx/socket: $errors, max payouts per key: $max_per_key)" >&2
	exit 1
fi
# wrk stops counting at the deadline; requests still in flight then may
# reach the mock after it, so the mock can see up to one per connection more.
if [ "$effective" -lt "$requests" ] || [ "$effective" -gt $((requests + connections)) ]; then
	echo "mock_capacity: mock counted $effective payouts for $requests requests" >&2
	exit 1
fi
hz=$(getconf CLK_TCK)
cpu_us=$(((ticks1 - ticks0) * 1000000 / hz))
if [ "$cpu_us" -gt 0 ]; then
	echo "mock CPU: $((cpu_us * 1000 / requests)) ns per request," \
		"i.e. $((requests * 1000000 / cpu_us)) requests/s per fully available core"
fi

# Baseline in the same run: a Node server that answers the same request
# with a constant body and records nothing, i.e. the floor that Node's HTTP
# stack sets on this machine now.
kill "$mock_pid" 2>/dev/null || true
wait "$mock_pid" 2>/dev/null || true
mock_pid=
"$node" -e '
	const s = require("http").createServer((req, res) => {
		req.resume();
		req.on("end", () => {
			const t = "{\"id\":\"po_1\",\"status\":\"paid\"}";
			res.writeHead(200, { "Content-Type": "application/json", "Content-Length": t.length });
			res.end(t);
		});
	});
	s.keepAliveTimeout = 120000;
	s.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ port: s.address().port })));' >"$tmp/out2" 2>>"$tmp/err" &
mock_pid=$!
exec 4<"$tmp/out2"
IFS= read -r -t 30 line <&4 || { echo "mock_capacity: the baseline server did not start" >&2; exit 1; }
base_url=http://127.0.0.1:${line//[^0-9]/}
wrk -t1 -c"$connections" -d1s -s "$here/mock_capacity.lua" "$base_url" >/dev/null
base=$(wrk -t"$threads" -c"$connections" -d"${duration}s" -s "$here/mock_capacity.lua" "$base_url" |
	sed -n 's/^wrk: requests=\([0-9]*\) duration_us=\([0-9]*\) .*/\1 \2/p')
read -r base_requests base_us <<<"$base"
rate=$((requests * 1000000 / duration_us))
base_rate=$((base_requests * 1000000 / base_us))
echo "node HTTP floor (constant answer, nothing recorded): $base_rate requests/s"
echo "mock capacity: $rate requests/s" \
	"($requests POST /payouts with unique keys in $((duration_us / 1000)) ms, $connections connections," \
	"$threads wrk thread(s); $((rate * 100 / base_rate))% of the node HTTP floor)"
