#!/usr/bin/env bash
# Benchmark of the risk policy (issue 5): withdrawal.request() throughput
# with the full policy enabled versus an empty (permissive) policy, in the
# same run, on the same data: BENCH_ACCOUNTS accounts (default 100000),
# each with BENCH_HISTORY prior withdrawals (default 20) spread over the
# last 60 days, random devices and IPs.
#
# full  = USD policy with min/max, daily amount and count, velocity per
#         account, device and IP (1 hour), KYC and review thresholds (never
#         reached, but evaluated), 30k blocklist entries (10k devices, 10k
#         destinations, 10k IPs/networks), a channel opening window
# empty = no USD policy (the permissive '*' row), empty blocklist, no window
#
# The two configurations alternate (empty, full, empty, full, ...,
# BENCH_ROUNDS rounds, default 3); the best of each is kept, and the ratio
# full/empty printed (target >= 0.85).
# BENCH_SECONDS (default 30, per configuration, split over the rounds) and
# BENCH_CLIENTS (default 4) scale it; a quick run:
#   BENCH_ACCOUNTS=10000 BENCH_SECONDS=6 test/bench/policy.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster.sh"

seconds=${BENCH_SECONDS:-30}
accounts=${BENCH_ACCOUNTS:-100000}
history=${BENCH_HISTORY:-20}
clients=${BENCH_CLIENTS:-4}
rounds=${BENCH_ROUNDS:-3}

# autovacuum off and a VACUUM after each reconfiguration: its work would
# land at random in one configuration's measurement.  synchronous_commit off
# makes the run CPU-bound, so the policy's cost is not hidden behind fsync.
start_bench_cluster "autovacuum = off" "synchronous_commit = off"
bench_psql -c "CREATE EXTENSION withdrawal"
echo "seeding $accounts accounts with $history prior withdrawals each..."
bench_psql <<EOS
CREATE SCHEMA bench;
INSERT INTO withdrawal.channel (name, processor) VALUES ('bench', 'sandbox');
SELECT count(withdrawal.credit('acct' || g, 'USD', 1000000000, 'seed' || g)) FROM generate_series(1, $accounts) g;
INSERT INTO withdrawal.withdrawal (withdrawal_id, idempotency_key, account_id, currency, amount, channel,
		destination, context, device_id, ip, status, requested_by, created_at, updated_at)
SELECT gen_random_uuid(), 'h-' || a || '-' || k, 'acct' || a, 'USD', 100 + (random() * 5000)::int, 'bench',
	   '{"bank": "DE89"}', '{}', 'dev' || (1 + (random() * 199999)::int),
	   ('10.' || (r / 65536) || '.' || (r / 256 % 256) || '.' || (r % 256))::inet,
	   'paid', 'postgres', now() - random() * interval '60 days', now()
  FROM generate_series(1, $accounts) a, generate_series(1, $history) k,
	   LATERAL (SELECT (1 + random() * 199999)::int + 0 * a AS r) x;
-- the full configuration, kept aside while the empty one runs
CREATE TABLE bench.full_policy (LIKE withdrawal.policy INCLUDING DEFAULTS);
INSERT INTO bench.full_policy (currency, min_amount, max_amount, daily_amount_limit, daily_count_limit,
		velocity_window, velocity_account_limit, velocity_device_limit, velocity_ip_limit,
		review_threshold, kyc_threshold, kyc_level_required, four_eyes_threshold, timezone)
VALUES ('USD', 100, 10000000, 1000000000, 1000, '1 hour', 1000, 1000, 1000,
		100000000, 100000000, 2, 500000000, 'Asia/Shanghai');
CREATE TABLE bench.full_blocklist AS
SELECT 'device' AS kind, 'bad-dev' || g AS value, 'emulators' AS list_name FROM generate_series(1, 10000) g
UNION ALL SELECT 'destination', 'acct_bad' || g, 'sanctions' FROM generate_series(1, 10000) g
UNION ALL SELECT 'ip', '172.' || (16 + g / 65536) || '.' || (g / 256 % 256) || '.' || (g % 256)
			  || CASE WHEN g % 10 = 0 THEN '/28' ELSE '' END, 'tor_exits' FROM generate_series(1, 10000) g;
CREATE FUNCTION bench.configure(enable boolean) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
	DELETE FROM withdrawal.policy WHERE currency = 'USD';
	DELETE FROM withdrawal.blocklist;
	UPDATE withdrawal.channel SET open_from = NULL, open_until = NULL WHERE name = 'bench';
	IF enable THEN
		INSERT INTO withdrawal.policy SELECT * FROM bench.full_policy;
		INSERT INTO withdrawal.blocklist (kind, value, list_name, added_by)
		SELECT kind, value, list_name, 'postgres' FROM bench.full_blocklist;
		-- open from an hour ago for a day minus two hours: crosses midnight
		UPDATE withdrawal.channel
		   SET open_from = (now() AT TIME ZONE 'Asia/Shanghai' - interval '1 hour')::time,
			   open_until = (now() AT TIME ZONE 'Asia/Shanghai' - interval '3 hours')::time,
			   timezone = 'Asia/Shanghai'
		 WHERE name = 'bench';
	END IF;
END
\$\$;
EOS
bench_psql -c "VACUUM ANALYZE" >/dev/null
bench_psql -Atc "SELECT 'history rows: ' || count(*) FROM withdrawal.withdrawal"

scripts=$bench_work/scripts
as_run_user mkdir -p "$scripts"
as_run_user tee "$scripts/request.sql" >/dev/null <<EOS
\\set a random(1, $accounts)
\\set amt random(100, 5000)
\\set d random(1, 200000)
\\set i random(1, 200000)
SELECT withdrawal.request('acct' || :a, 'USD', :amt, 'bench', '{"bank": "DE89"}', gen_random_uuid()::text, jsonb_build_object('device_id', 'dev' || :d, 'ip', '10.' || (:i / 65536) || '.' || (:i / 256 % 256) || '.' || (:i % 256)));
EOS

# run CONFIG SECONDS: prints the tps; fails loudly if any transaction failed
run() {
	local config=$1 secs=$2 out
	# command substitution does not inherit errexit: a failed
	# reconfiguration must stop the run, not measure the other one twice
	bench_psql -c "SELECT bench.configure($config)" >/dev/null || exit 1
	bench_psql -c "VACUUM ANALYZE withdrawal.blocklist, withdrawal.policy, withdrawal.channel" >/dev/null || exit 1
	out=$(as_run_user "$bench_bindir/pgbench" -n -T "$secs" -c "$clients" -j "$clients" -f "$scripts/request.sql" 2>&1)
	if grep -q "aborted\|ERROR" <<<"$out"; then
		echo "pgbench reported errors with full=$config:" >&2
		echo "$out" >&2
		exit 1
	fi
	sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out"
}

best_empty=0
best_full=0
round_secs=$((seconds / rounds))
[ "$round_secs" -lt 1 ] && round_secs=1
printf '\n%-8s %12s %12s\n' round "empty tps" "full tps"
for round in $(seq 1 "$rounds"); do
	e=$(run false "$round_secs") || exit 1
	f=$(run true "$round_secs") || exit 1
	printf '%-8s %12.0f %12.0f\n' "$round" "$e" "$f"
	awk "BEGIN{exit !($e > $best_empty)}" && best_empty=$e
	awk "BEGIN{exit !($f > $best_full)}" && best_full=$f
done
# the full configuration is in place after the last round: prove it
bench_psql -Atc "SELECT 'full configuration: ' || (SELECT count(*) FROM withdrawal.policy WHERE currency = 'USD') || ' USD policy, '
	|| (SELECT count(*) FROM withdrawal.blocklist) || ' blocklist entries, window '
	|| (SELECT coalesce(open_from::text || '-' || open_until::text, 'none') FROM withdrawal.channel WHERE name = 'bench')"
printf 'best     %12.0f %12.0f   ratio full/empty = %.2f (target >= 0.85)\n' "$best_empty" "$best_full" \
	"$(awk "BEGIN{print $best_full / $best_empty}")"
bench_psql -Atc "SELECT 'new withdrawals by status: ' || string_agg(status || '=' || n, ', ') FROM (SELECT status, count(*) n FROM withdrawal.withdrawal WHERE idempotency_key NOT LIKE 'h-%' GROUP BY 1 ORDER BY 1) s"
