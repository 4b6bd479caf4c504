-- The scripted scenario of tools/demo.sh.
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;

\echo
\echo '== rewards are credited into wallets (idempotent per key)'
SELECT 'alice' AS account, * FROM withdrawal.credit('alice', 'CNY', 5000, 'reward-1', 'daily check-in');
SELECT 'alice' AS account, * FROM withdrawal.credit('alice', 'CNY', 2500, 'reward-2', 'video ad');
SELECT 'bob' AS account, * FROM withdrawal.credit('bob', 'CNY', 3000, 'reward-3', 'referral');

\echo
\echo '== alice withdraws 40.00 to Alipay: the funds are held and the payout queued'
SELECT * FROM withdrawal.request('alice', 'CNY', 4000, 'sandbox',
	'{"alipay_account": "alice@example.com"}', 'withdraw-1',
	'{"ip": "203.0.113.9", "device_id": "phone-a"}');
SELECT * FROM withdrawal.balance('alice', 'CNY');

\echo
\echo '== the app retries the same request: the first result is replayed, nothing is debited twice'
SELECT * FROM withdrawal.request('alice', 'CNY', 4000, 'sandbox',
	'{"alipay_account": "alice@example.com"}', 'withdraw-1',
	'{"ip": "203.0.113.9", "device_id": "phone-a"}');

\echo
\echo '== the same key with another amount is refused (SQLSTATE WD002)'
DO $$
BEGIN
	PERFORM withdrawal.request('alice', 'CNY', 4100, 'sandbox',
		'{"alipay_account": "alice@example.com"}', 'withdraw-1');
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING '% %', SQLSTATE, SQLERRM;
END
$$;

\echo
\echo '== bob asks for more than he has (WD001), then withdraws 10.13, which the sandbox fails'
DO $$
BEGIN
	PERFORM withdrawal.request('bob', 'CNY', 9999, 'sandbox', '{"bank_card": "6222"}', 'withdraw-2');
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING '% %', SQLSTATE, SQLERRM;
END
$$;
SELECT * FROM withdrawal.request('bob', 'CNY', 1013, 'sandbox', '{"bank_card": "6222"}', 'withdraw-3');

\echo
\echo '== alice asks for 5.00 more, then cancels before it is dispatched: refunded'
SELECT withdrawal.cancel(withdrawal_id, 'changed my mind')
  FROM withdrawal.request('alice', 'CNY', 500, 'sandbox',
	'{"alipay_account": "alice@example.com"}', 'withdraw-4');

\echo
\echo '== the dispatcher pays through the sandbox processor (waiting up to 30 s)'
-- CREATE EXTENSION created the workers' role; the worker restarts once to
-- connect as it (5 s), then pays
DO $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
	WHILE (NOT EXISTS (SELECT FROM pg_stat_activity
						WHERE backend_type = 'withdrawal worker' AND usename = 'withdrawal_worker')
		   OR EXISTS (SELECT FROM withdrawal.withdrawals
					   WHERE status IN ('queued', 'dispatching', 'submitted')))
		  AND clock_timestamp() < deadline LOOP
		PERFORM pg_sleep(0.2);
	END LOOP;
END
$$;
SELECT usename AS dispatcher_role, count(*) AS workers FROM pg_stat_activity
 WHERE backend_type = 'withdrawal worker' GROUP BY 1;
SELECT account_id, amount, channel, idempotency_key, status, reason, attempts, processor_ref IS NOT NULL AS has_ref
  FROM withdrawal.withdrawals ORDER BY created_at;

\echo
\echo '== alice tries to cancel withdraw-1 once it was sent: refused (WD005); once sent, only the processor decides'
DO $$
BEGIN
	PERFORM withdrawal.cancel(withdrawal_id, 'too late')
	   FROM withdrawal.withdrawals WHERE idempotency_key = 'withdraw-1';
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING '% %', SQLSTATE, SQLERRM;
END
$$;

\echo
\echo '== balances'
SELECT account_id, currency, b.* FROM withdrawal.wallet w,
	LATERAL withdrawal.balance(w.account_id, w.currency) b ORDER BY account_id;

\echo
\echo '== the ledger: every transaction is two entries that sum to zero'
SELECT txn_id, kind, w.account_id, bucket, amount, balance_after
  FROM withdrawal.ledger_entry e JOIN withdrawal.wallet w USING (wallet_id)
 ORDER BY txn_id, leg;
SELECT bucket AS house_and_wallet_accounts, sum(amount) FROM withdrawal.ledger_entry GROUP BY bucket ORDER BY bucket;

\echo
\echo '== integrity: invariants and the audit chain'
SELECT * FROM withdrawal.check_invariants();
SELECT * FROM withdrawal.verify_audit();
SELECT audit_id, actor, action, before_status, after_status FROM withdrawal.audit_log ORDER BY audit_id;

\echo
\echo '== monitoring: what pg_monitor and ops see (docs/monitoring.md)'
SELECT channel, status, payouts FROM withdrawal.monitor_queue WHERE payouts > 0;
SELECT worker, state, sent, recorded, failed, dead FROM withdrawal.monitor_workers;
SELECT review, dead, parked, workers_running, audit_head_seq, audit_unsealed FROM withdrawal.monitor_summary;
