# Shared by the benchmarks; sourced, not run.  Builds the extension into a
# private installation (tools/common.sh) and starts a throwaway cluster on a
# free loopback port, stopped and removed on exit.  The benchmarks print
# ratios against a baseline measured in the same run: these machines are
# noisy, absolute numbers are not comparable between runs.
set -euo pipefail
# a failure inside $(...) fails the benchmark too: a swallowed error once
# made policy.sh measure the same configuration twice
shopt -s inherit_errexit
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/tools/common.sh"
"$src_root/tools/setup.sh"

bench_work=$(make_workdir)
bench_bindir=$(PG_CFLAGS="-O2" build_private_install "$bench_work")
bench_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PGHOST=127.0.0.1 PGPORT=$bench_port PGUSER=postgres PGDATABASE=postgres

# start_bench_cluster [postgresql.conf lines...]
start_bench_cluster() {
	as_run_user "$bench_bindir/initdb" -D "$bench_work/data" -A trust -U postgres >/dev/null
	{
		echo "port = $bench_port"
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = ''"
		echo "shared_buffers = '1GB'"
		echo "max_wal_size = '4GB'"
		echo "checkpoint_timeout = '30min'"
		for line in "$@"; do echo "$line"; done
	} | as_run_user tee -a "$bench_work/data/postgresql.conf" >/dev/null
	as_run_user "$bench_bindir/pg_ctl" -D "$bench_work/data" -l "$bench_work/server.log" -w start >/dev/null
	trap stop_bench_cluster EXIT
}

stop_bench_cluster() {
	as_run_user "$bench_bindir/pg_ctl" -D "$bench_work/data" -m fast stop >/dev/null 2>&1 || true
	rm -rf "$bench_work"
}

bench_psql() {
	as_run_user "$bench_bindir/psql" -X -q -v ON_ERROR_STOP=1 "$@"
}

# server_cpu_ticks DIR...: CPU time (clock ticks) used so far by the
# servers of these data directories under $bench_work: each postmaster
# with its reaped children, and its live children (the router's PL/Proxy
# connections stay open between runs)
server_cpu_ticks() {
	local d pm total=0 t
	for d in "$@"; do
		pm=$(head -n 1 "$bench_work/$d/postmaster.pid")
		# a child may exit between ps and the read of its stat: skip it
		t=$( { echo "$pm"; ps -o pid= --ppid "$pm"; } | while read -r pid; do
			stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
			echo "${stat##*) }" | awk -v pm="$pm" -v pid="$pid" \
				'{ print $12 + $13 + (pid == pm ? $14 + $15 : 0) }'
		done | awk '{ s += $1 } END { print s + 0 }')
		total=$((total + t))
	done
	echo "$total"
}
hz=$(getconf CLK_TCK)

# pgbench_run SECONDS CLIENTS SCRIPT [extra pgbench args]: pgbench's report
pgbench_run() {
	local seconds=$1 clients=$2 script=$3 out
	shift 3
	out=$(as_run_user "$bench_bindir/pgbench" -n -M prepared -T "$seconds" -c "$clients" -j "$clients" \
		-f "$script" "$@" 2>&1)
	# a client that hit an error stops, and the others' tps would pass
	# for the script's
	if grep -qE "aborted|ERROR" <<<"$out"; then
		echo "pgbench reported errors running $script:" >&2
		echo "$out" | head -n 20 >&2
		return 1
	fi
	echo "$out"
}

# report_tps REPORT: the tps of pgbench's report
report_tps() {
	sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$1"
}

# pgbench_tps SECONDS CLIENTS SCRIPT [extra pgbench args]: prints the tps
pgbench_tps() {
	local out
	out=$(pgbench_run "$@")
	report_tps "$out"
}

# pgbench_tps_cpu SECONDS CLIENTS SCRIPT [extra pgbench args]: prints the
# tps and the server's CPU time per transaction in microseconds (every
# process of the cluster in $bench_work/data: backends, WAL writer,
# checkpointer).  CPU per call is steadier than tps on a shared machine:
# it does not count the time the server waits for a CPU.
pgbench_tps_cpu() {
	local before after out
	# the sessions of the previous run must have exited and been reaped
	sleep 0.5
	before=$(server_cpu_ticks data)
	out=$(pgbench_run "$@")
	sleep 0.5
	after=$(server_cpu_ticks data)
	awk -v hz="$hz" -v ticks=$((after - before)) \
		-v tps="$(report_tps "$out")" \
		-v n="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")" \
		'BEGIN { printf "%s %.1f\n", tps, ticks * 1e6 / hz / (n > 0 ? n : 1) }'
}
