#!/usr/bin/env bash
# Benchmark of withdrawal.receive_webhook() (issue 4) against
# withdrawal.request() in the same run, with pgbench:
#   webhook  receive_webhook(): HMAC-SHA256 signature verified (scheme
#            hmac-sha256, secret from withdrawal.secrets_file), body parsed,
#            event deduplicated and stored, the payout settled (ledger,
#            wallet, withdrawal, audit)
#   request  request(): the transaction that creates a payout
# Every webhook is a distinct event for a distinct submitted withdrawal,
# signed beforehand with pgcrypto; each pgbench transaction takes the next
# one.  BENCH_EVENTS (default 60000) events, BENCH_CLIENTS (default 4).
# Prints tps of each and the ratio webhook/request.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster.sh"

events=${BENCH_EVENTS:-60000}
clients=${BENCH_CLIENTS:-4}
# two rounds of each, with durable commits and with synchronous_commit = off
per_client=$(( events / clients / 4 ))

secrets=$bench_work/secrets
echo "bench_http = bench-webhook-secret" | as_run_user tee "$secrets" >/dev/null
as_run_user chmod 600 "$secrets"
start_bench_cluster "withdrawal.secrets_file = '$secrets'"
bench_psql -c "CREATE EXTENSION withdrawal" -c "CREATE EXTENSION pgcrypto"
echo "preparing $events submitted withdrawals and their signed events..."
bench_psql <<EOF >/dev/null
INSERT INTO withdrawal.processor (name, driver, base_url, webhook_secret, webhook_scheme, webhook_tolerance)
	VALUES ('bench', 'http', 'https://bench.invalid', 'bench_http', 'hmac-sha256', '1 day');
INSERT INTO withdrawal.channel (name, processor) VALUES ('bench', 'bench');
SELECT count(withdrawal.credit('acct' || a, 'USD', 1000000000, 'seed' || a)) FROM generate_series(1, 10000) a;
CREATE SCHEMA bench;
CREATE TABLE bench.ids AS
	SELECT g, (withdrawal.request('acct' || g % 10000 + 1, 'USD', 100 + g % 900, 'bench',
								  '{"bank": "x"}', 'w' || g)).withdrawal_id AS id
	  FROM generate_series(1, $events) g;
SELECT count(withdrawal.transition(id, 'dispatching')) FROM bench.ids;
SELECT count(withdrawal.transition(id, 'submitted')) FROM bench.ids;
CREATE TABLE bench.hook (i bigint PRIMARY KEY, headers jsonb, body text);
INSERT INTO bench.hook
	SELECT g, jsonb_build_object('X-Withdrawal-Timestamp', t::text,
			'X-Withdrawal-Signature', 'v1=' || encode(hmac(t || '.' || b, 'bench-webhook-secret', 'sha256'), 'hex')), b
	  FROM (SELECT g, extract(epoch FROM now())::bigint AS t,
				   jsonb_build_object('id', 'evt_' || g, 'type', 'payout.paid',
					   'data', jsonb_build_object('id', 'ref_' || g, 'payout_id', x.id,
						   'amount', w.amount, 'currency', 'USD'))::text AS b
			  FROM bench.ids x JOIN withdrawal.withdrawal w ON w.withdrawal_id = x.id) s;
CREATE SEQUENCE bench.next_hook;
VACUUM ANALYZE;
EOF

scripts=$bench_work/scripts
as_run_user mkdir -p "$scripts"
as_run_user tee "$scripts/webhook.sql" >/dev/null <<'EOS'
SELECT withdrawal.receive_webhook('bench', headers, body) FROM bench.hook WHERE i = (SELECT nextval('bench.next_hook'));
EOS
as_run_user tee "$scripts/request.sql" >/dev/null <<'EOS'
\set a random(1, 10000)
\set k random(1, 1000000000000)
SELECT withdrawal.request('acct' || :a, 'USD', 100, 'sandbox', '{"bank": "x"}', 'r-' || :client_id || '-' || :k);
EOS

run() {
	as_run_user "$bench_bindir/pgbench" -n -t "$per_client" -c "$clients" -j "$clients" -f "$1" 2>&1 |
		sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}

printf '\n%-22s %10s %10s %8s\n' "synchronous_commit" "webhook" "request" "ratio"
for sync in on off; do
	export PGOPTIONS="-c synchronous_commit=$sync"
	declare -A tps=()
	# two interleaved rounds, best of each: drift hits both alike
	for round in 1 2; do
		for v in webhook request; do
			t=$(run "$scripts/$v.sql")
			if [ -z "${tps[$v]:-}" ] || awk "BEGIN{exit !($t > ${tps[$v]})}"; then tps[$v]=$t; fi
		done
	done
	printf '%-22s %10.0f %10.0f %8.2f\n' "$sync" "${tps[webhook]}" "${tps[request]}" \
		"$(awk "BEGIN{print ${tps[webhook]} / ${tps[request]}}")"
	unset tps
done
unset PGOPTIONS
bench_psql -Atc "SELECT 'webhooks applied: ' || count(*) FILTER (WHERE result = 'applied') || ' of ' || count(*) FROM withdrawal.webhook_event"
bench_psql -Atc "SELECT 'invariants: ' || coalesce(string_agg(check_name, ', '), 'clean') FROM withdrawal.check_invariants() WHERE violations <> 0"
