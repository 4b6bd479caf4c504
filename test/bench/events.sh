#!/usr/bin/env bash
# Cost of the NOTIFY of status events (issue 14) on withdrawal.request(),
# in one run:
#   table   request() as installed: it writes the status_event row
#   notify  the row and a NOTIFY (withdrawal.notify_status = on)
# 4 clients, a random account per call, with durable commits and with
# synchronous_commit = off; three interleaved rounds, best of each.  Prints
# tps and the ratio of "notify" to "table".  BENCH_SECONDS (default 20), BENCH_ACCOUNTS
# (default 100000) and BENCH_CLIENTS (default 4) scale it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster.sh"

seconds=${BENCH_SECONDS:-20}
accounts=${BENCH_ACCOUNTS:-100000}
clients=${BENCH_CLIENTS:-4}

start_bench_cluster
bench_psql -c "CREATE EXTENSION withdrawal"
echo "seeding $accounts accounts..."
bench_psql -c "SELECT count(withdrawal.credit('acct' || g, 'USD', 1000000000, 'seed' || g)) FROM generate_series(1, $accounts) g" >/dev/null
bench_psql -c "VACUUM ANALYZE" >/dev/null

scripts=$bench_work/scripts
as_run_user mkdir -p "$scripts"
as_run_user tee "$scripts/c.sql" >/dev/null <<EOS
\\set a random(1, $accounts)
\\set amt random(1, 1000)
\\set k random(1, 1000000000000)
SELECT withdrawal.request('acct' || :a, 'USD', :amt, 'sandbox', '{"bank": "DE89"}', 'c-' || :client_id || '-' || :k, '{"device_id": "d1"}');
EOS

# variant NAME: sets withdrawal.notify_status for it, for the sessions that
# connect from then on
variant() {
	local notify=off
	[ "$1" = notify ] && notify=on
	bench_psql -c "ALTER DATABASE postgres SET withdrawal.notify_status = $notify" >/dev/null
}

printf '\n%-22s %10s %10s %14s\n' "synchronous_commit" "table" "notify" "notify/table"
for sync in on off; do
	declare -A tps=()
	for round in 1 2 3; do
		for v in table notify; do
			variant "$v"
			t=$(PGOPTIONS="-c synchronous_commit=$sync" pgbench_tps $((seconds / 2)) "$clients" "$scripts/c.sql")
			if [ -z "${tps[$v]:-}" ] || awk "BEGIN{exit !($t > ${tps[$v]})}"; then tps[$v]=$t; fi
		done
	done
	printf '%-22s %10.0f %10.0f %14.2f\n' "$sync" "${tps[table]}" "${tps[notify]}" \
		"$(awk "BEGIN{print ${tps[notify]} / ${tps[table]}}")"
	unset tps
done
variant notify
bench_psql -Atc "LOAD 'withdrawal'" -c "SELECT 'withdrawal.notify_status in the notify variant: ' || current_setting('withdrawal.notify_status')"
variant table
bench_psql -Atc "SELECT 'events: ' || count(*) FROM withdrawal.status_event"
