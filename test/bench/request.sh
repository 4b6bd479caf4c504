#!/usr/bin/env bash
# Benchmark of withdrawal.request() (issue 2), in one run:
#   C      withdrawal.request()
#   plpgsql the same transaction in PL/pgSQL (request_plpgsql.sql)
#   minimal the minimal competent withdrawal transaction in PL/pgSQL
#          (request_minimal.sql, issue 16: idempotency key, conditional
#          debit, two ledger rows, outbox row)
#   naive  UPDATE ... WHERE balance >= amount; INSERT ... (two statements)
# 100k accounts, a random account per call, 4 clients, with durable
# commits and with synchronous_commit = off.  Prints tps and the server's
# CPU per call, the ratios of C to each baseline by both, then the WAL
# bytes per call of each variant
# (BENCH_WAL_CALLS calls from one client, default 2000, full-page images
# included).  BENCH_SECONDS (default 20) and BENCH_ACCOUNTS
# (default 100000) scale it; BENCH_CONF adds a postgresql.conf line, e.g.
# BENCH_CONF="withdrawal.notify_status = on" (docs/operations.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster.sh"

seconds=${BENCH_SECONDS:-20}
accounts=${BENCH_ACCOUNTS:-100000}
clients=${BENCH_CLIENTS:-4}

start_bench_cluster ${BENCH_CONF:+"$BENCH_CONF"}
bench_psql -c "CREATE EXTENSION withdrawal"
bench_psql -f "$here/request_plpgsql.sql"
bench_psql -v accounts="$accounts" -f "$here/request_minimal.sql" >/dev/null
echo "seeding $accounts accounts..."
bench_psql -c "SELECT count(withdrawal.credit('acct' || g, 'USD', 1000000000, 'seed' || g)) FROM generate_series(1, $accounts) g" >/dev/null
bench_psql -c "INSERT INTO bench.naive_wallet SELECT 'acct' || g, 1000000000 FROM generate_series(1, $accounts) g" >/dev/null
bench_psql -c "VACUUM ANALYZE" >/dev/null

scripts=$bench_work/scripts
as_run_user mkdir -p "$scripts"
common="\\set a random(1, $accounts)
\\set amt random(1, 1000)
\\set k random(1, 1000000000000)"
as_run_user tee "$scripts/c.sql" >/dev/null <<EOS
$common
SELECT withdrawal.request('acct' || :a, 'USD', :amt, 'sandbox', '{"bank": "DE89"}', 'c-' || :client_id || '-' || :k, '{"device_id": "d1"}');
EOS
as_run_user tee "$scripts/plpgsql.sql" >/dev/null <<EOS
$common
SELECT bench.request_plpgsql('acct' || :a, 'USD', :amt, 'sandbox', '{"bank": "DE89"}', 'p-' || :client_id || '-' || :k, '{"device_id": "d1"}');
EOS
as_run_user tee "$scripts/minimal.sql" >/dev/null <<EOS
$common
SELECT * FROM ref.request_withdrawal(:a, :amt, 'USD', 'm-' || :client_id || '-' || :k);
EOS
as_run_user tee "$scripts/naive.sql" >/dev/null <<EOS
$common
BEGIN;
UPDATE bench.naive_wallet SET balance = balance - :amt WHERE account_id = 'acct' || :a AND balance >= :amt;
INSERT INTO bench.naive_payout (account_id, amount) VALUES ('acct' || :a, :amt);
COMMIT;
EOS

# tps and the server's CPU per call of every variant; the ratios by CPU
# (the baseline's CPU per call over C's, so that, like the tps ratios,
# above 1 means C is cheaper) move less with the machine's load
printf '\n%-18s %8s %8s %8s %8s %10s %10s %10s\n' "synchronous_commit" "naive" "minimal" "plpgsql" "C" \
	"C/minimal" "C/plpgsql" "C/naive"
for sync in on off; do
	export PGOPTIONS="-c synchronous_commit=$sync"
	declare -A tps=() cpu=()
	# interleaved rounds, best of each: drift hits every variant alike
	for round in 1 2; do
		for v in naive minimal plpgsql c; do
			r=$(pgbench_tps_cpu $((seconds / 2)) "$clients" "$scripts/$v.sql")
			t=${r% *} u=${r#* }
			if [ -z "${tps[$v]:-}" ] || awk "BEGIN{exit !($t > ${tps[$v]})}"; then tps[$v]=$t; fi
			if [ -z "${cpu[$v]:-}" ] || awk "BEGIN{exit !($u < ${cpu[$v]})}"; then cpu[$v]=$u; fi
		done
	done
	printf '%-18s %8.0f %8.0f %8.0f %8.0f %10.2f %10.2f %10.2f\n' "$sync" "${tps[naive]}" "${tps[minimal]}" \
		"${tps[plpgsql]}" "${tps[c]}" "$(awk "BEGIN{print ${tps[c]} / ${tps[minimal]}}")" \
		"$(awk "BEGIN{print ${tps[c]} / ${tps[plpgsql]}}")" "$(awk "BEGIN{print ${tps[c]} / ${tps[naive]}}")"
	printf '%-18s %8.0f %8.0f %8.0f %8.0f %10.2f %10.2f %10.2f\n' "  CPU us per call" "${cpu[naive]}" "${cpu[minimal]}" \
		"${cpu[plpgsql]}" "${cpu[c]}" "$(awk "BEGIN{print ${cpu[minimal]} / ${cpu[c]}}")" \
		"$(awk "BEGIN{print ${cpu[plpgsql]} / ${cpu[c]}}")" "$(awk "BEGIN{print ${cpu[naive]} / ${cpu[c]}}")"
	unset tps cpu
done
unset PGOPTIONS

# WAL per call: a checkpoint first, so that each variant starts with its
# share of full-page images
wal_calls=${BENCH_WAL_CALLS:-2000}
printf '\n%-18s' "WAL bytes per call"
for v in naive minimal plpgsql c; do
	bench_psql -c "CHECKPOINT"
	before=$(bench_psql -Atc "SELECT pg_current_wal_insert_lsn()")
	as_run_user "$bench_bindir/pgbench" -n -M prepared -t "$wal_calls" -c 1 -f "$scripts/$v.sql" >/dev/null 2>&1
	printf ' %s %s' "$v" "$(bench_psql -Atc "SELECT round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$before') / $wal_calls)")"
done
echo
bench_psql -Atc "SELECT 'invariants: ' || coalesce(string_agg(check_name, ', '), 'clean') FROM withdrawal.check_invariants() WHERE violations <> 0"
