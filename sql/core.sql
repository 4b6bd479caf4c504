--
-- core: the normal path of every core function, and the database-level
-- guarantees (status guard, append-only ledger, once-only movements,
-- non-negative balances) that hold whatever the code does.
--
CREATE DATABASE regress_core;
\c regress_core
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all

-- credits: first use creates the wallet; same key replays; other params WD002
SELECT available, replayed FROM withdrawal.credit('alice', 'USD', 10000, 'credit-a1', 'signup bonus');
SELECT available, replayed FROM withdrawal.credit('alice', 'USD', 10000, 'credit-a1', 'signup bonus');
SELECT try($$SELECT withdrawal.credit('alice', 'USD', 10001, 'credit-a1', 'signup bonus')$$);
SELECT try($$SELECT withdrawal.credit('alice', 'USD', 10000, 'credit-a1', 'other reference')$$);
SELECT (SELECT transfer_id FROM withdrawal.credit('alice', 'USD', 10000, 'credit-a1', 'signup bonus'))
     = (SELECT transfer_id FROM withdrawal.credit WHERE account_id = 'alice' AND idempotency_key = 'credit-a1') AS same_transfer;
SELECT available, replayed FROM withdrawal.credit('alice', 'USD', 5000, 'credit-a2', NULL, '{"campaign": 7}');
SELECT available, replayed FROM withdrawal.credit('alice', 'JPY', 300, 'credit-a3');
SELECT * FROM withdrawal.balance('alice', 'USD');
SELECT * FROM withdrawal.balance('alice', 'JPY');
SELECT try($$SELECT withdrawal.balance('alice', 'EUR')$$);
SELECT try($$SELECT withdrawal.balance('nobody', 'USD')$$);

-- requests: queued, replayed, mismatched, insufficient funds
SELECT status, replayed FROM withdrawal.request('alice', 'USD', 2500, 'sandbox',
	'{"bank": "DE89 3704"}', 'wd-a1', '{"ip": "203.0.113.7", "device_id": "dev-1"}');
SELECT status, replayed FROM withdrawal.request('alice', 'USD', 2500, 'sandbox',
	'{"bank": "DE89 3704"}', 'wd-a1', '{"ip": "198.51.100.1"}');
SELECT try($$SELECT withdrawal.request('alice', 'USD', 2600, 'sandbox', '{"bank": "DE89 3704"}', 'wd-a1')$$);
SELECT try($$SELECT withdrawal.request('alice', 'USD', 2500, 'sandbox', '{"bank": "other"}', 'wd-a1')$$);
SELECT try($$SELECT withdrawal.request('alice', 'USD', 12501, 'sandbox', '{"bank": "x"}', 'wd-a2')$$);
SELECT * FROM withdrawal.balance('alice', 'USD');
SELECT account_id, currency, amount, channel, status, reason, attempts, last_error, processor_ref
  FROM withdrawal.withdrawals ORDER BY created_at;
SELECT count(*) AS outbox_rows FROM withdrawal.outbox;
SELECT device_id, host(ip) FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a1';

-- get(): one row of the view; WD007 for an unknown id
SELECT (withdrawal.get(withdrawal_id)).status FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a1';
SELECT try($$SELECT withdrawal.get('00000000-0000-0000-0000-000000000000')$$);

-- cancel before dispatch refunds; a second cancel is an invalid transition
SELECT withdrawal.cancel(withdrawal_id, 'changed my mind') FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a1';
SELECT try(format('SELECT withdrawal.cancel(%L, NULL)', withdrawal_id)) FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a1';
SELECT * FROM withdrawal.balance('alice', 'USD');
SELECT count(*) AS outbox_rows FROM withdrawal.outbox;
-- replaying a canceled request returns it, it does not request again
SELECT status, replayed FROM withdrawal.request('alice', 'USD', 2500, 'sandbox',
	'{"bank": "DE89 3704"}', 'wd-a1');

-- the payout lifecycle through the owner's transition(): paid, then returned
SELECT status FROM withdrawal.request('alice', 'USD', 1000, 'sandbox', '{"bank": "x"}', 'wd-a3');
SELECT withdrawal.transition(withdrawal_id, 'dispatching') FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a3';
SELECT withdrawal.transition(withdrawal_id, 'submitted') FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a3';
SELECT try(format('SELECT withdrawal.cancel(%L, NULL)', withdrawal_id)) FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a3';
SELECT withdrawal.transition(withdrawal_id, 'paid') FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a3';
SELECT * FROM withdrawal.balance('alice', 'USD');
SELECT count(*) AS outbox_rows FROM withdrawal.outbox;
SELECT try(format('SELECT withdrawal.transition(%L, %L)', withdrawal_id, 'failed')) FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a3';
SELECT withdrawal.transition(withdrawal_id, 'returned', 'account closed') FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a3';
SELECT * FROM withdrawal.balance('alice', 'USD');
SELECT try(format('SELECT withdrawal.transition(%L, %L)', withdrawal_id, 'returned')) FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a3';

-- failure after submission refunds exactly once
SELECT status FROM withdrawal.request('alice', 'USD', 700, 'sandbox', '{"bank": "x"}', 'wd-a4');
SELECT withdrawal.transition(withdrawal_id, 'dispatching') FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a4';
SELECT withdrawal.transition(withdrawal_id, 'failed', 'account_closed') FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a4';
SELECT try(format('SELECT withdrawal.transition(%L, %L)', withdrawal_id, 'failed')) FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a4';
SELECT * FROM withdrawal.balance('alice', 'USD');

-- dead, then ops retry puts it back on the queue; dead can be rejected
SELECT status FROM withdrawal.request('alice', 'USD', 300, 'sandbox', '{"bank": "x"}', 'wd-a5');
SELECT withdrawal.transition(withdrawal_id, 'dispatching') FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a5';
SELECT withdrawal.transition(withdrawal_id, 'dead') FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a5';
SELECT count(*) AS outbox_rows FROM withdrawal.outbox;
SELECT withdrawal.transition(withdrawal_id, 'queued') FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a5';
SELECT count(*) AS outbox_rows FROM withdrawal.outbox;
SELECT withdrawal.reject(withdrawal_id, 'beneficiary unreachable') FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a5';
SELECT * FROM withdrawal.balance('alice', 'USD');

-- review: at or above the threshold the funds are held and nothing is queued
UPDATE withdrawal.policy SET review_threshold = 2000 WHERE currency = '*';
SELECT status, replayed FROM withdrawal.request('alice', 'USD', 1999, 'sandbox', '{"bank": "x"}', 'wd-a6');
SELECT status, replayed FROM withdrawal.request('alice', 'USD', 2000, 'sandbox', '{"bank": "x"}', 'wd-a7');
SELECT reason FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a7';
SELECT count(*) AS outbox_rows FROM withdrawal.outbox;
SELECT * FROM withdrawal.balance('alice', 'USD');
-- the requester can never approve; another role can
CREATE ROLE regress_core_ops LOGIN IN ROLE withdrawal_ops;
SELECT withdrawal_id AS wd_a7 FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a7' \gset
SELECT try(format('SELECT withdrawal.approve(%L)', :'wd_a7'));
SET SESSION AUTHORIZATION regress_core_ops;
SELECT withdrawal.approve(:'wd_a7', 'documents checked');
RESET SESSION AUTHORIZATION;
SELECT status FROM withdrawal.withdrawals WHERE idempotency_key = 'wd-a7';
SELECT approver, note FROM withdrawal.approval;
SELECT count(*) AS outbox_rows FROM withdrawal.outbox;
UPDATE withdrawal.policy SET review_threshold = NULL WHERE currency = '*';

-- minimum and maximum are hard limits (WD003) that record nothing
UPDATE withdrawal.policy SET min_amount = 100, max_amount = 5000 WHERE currency = '*';
SELECT try($$SELECT withdrawal.request('alice', 'USD', 99, 'sandbox', '{"bank": "x"}', 'wd-a8')$$);
SELECT try($$SELECT withdrawal.request('alice', 'USD', 5001, 'sandbox', '{"bank": "x"}', 'wd-a8')$$);
SELECT status FROM withdrawal.request('alice', 'USD', 100, 'sandbox', '{"bank": "x"}', 'wd-a8');
UPDATE withdrawal.policy SET min_amount = 1, max_amount = NULL WHERE currency = '*';

-- channels: unknown WD007, disabled WD004
SELECT try($$SELECT withdrawal.request('alice', 'USD', 100, 'carrier_pigeon', '{"bank": "x"}', 'wd-a9')$$);
UPDATE withdrawal.channel SET enabled = false WHERE name = 'sandbox';
SELECT try($$SELECT withdrawal.request('alice', 'USD', 100, 'sandbox', '{"bank": "x"}', 'wd-a9')$$);
UPDATE withdrawal.channel SET enabled = true WHERE name = 'sandbox';

-- frozen accounts cannot withdraw (WD006); set_account creates accounts
SELECT withdrawal.set_account('alice', frozen => true);
SELECT try($$SELECT withdrawal.request('alice', 'USD', 100, 'sandbox', '{"bank": "x"}', 'wd-a9')$$);
SELECT withdrawal.set_account('alice', kyc_level => 2, frozen => false);
SELECT withdrawal.set_account('carol', kyc_level => 1);
SELECT account_id, kyc_level, frozen FROM withdrawal.account ORDER BY account_id;

-- the books
SELECT bucket, sum(amount) FROM withdrawal.ledger_entry WHERE currency = 'USD' GROUP BY bucket ORDER BY bucket;
SELECT kind, count(*) FROM withdrawal.ledger_entry GROUP BY kind ORDER BY kind;
SELECT invariants();

-- database-level guarantees, even for the owner writing tables directly
SELECT try($$UPDATE withdrawal.withdrawal SET status = 'paid' WHERE idempotency_key = 'wd-a1'$$);
SELECT try($$UPDATE withdrawal.withdrawal SET status = 'submitted' WHERE idempotency_key = 'wd-a6'$$);
SELECT try($$UPDATE withdrawal.ledger_entry SET amount = amount * 2$$);
SELECT try($$DELETE FROM withdrawal.ledger_entry$$);
SELECT try($$TRUNCATE withdrawal.ledger_entry$$);
SELECT try($$UPDATE withdrawal.wallet SET available = -1 WHERE account_id = 'alice'$$);
SELECT try($$UPDATE withdrawal.credit SET amount = 1$$);
-- a second refund of the same withdrawal is refused by the unique index
SELECT try(format($q$INSERT INTO withdrawal.ledger_entry (txn_id, leg, kind, wallet_id, currency, bucket, amount, withdrawal_id)
	VALUES (-1, 1, 'refund', 1, 'USD', 'held', -700, %L), (-1, 2, 'refund', 1, 'USD', 'available', 700, %L)$q$,
	withdrawal_id, withdrawal_id)) FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a4';
SELECT invariants();

-- idempotency keys are scoped per account: another account reusing a key
-- gets a credit and a withdrawal of its own (no key squatting); the same
-- account with other parameters is still WD002
SELECT available, replayed FROM withdrawal.credit('bob', 'USD', 10000, 'credit-a1', 'signup bonus');
SELECT available, replayed FROM withdrawal.credit('bob', 'USD', 10000, 'credit-a1', 'signup bonus');
SELECT try($$SELECT withdrawal.credit('bob', 'USD', 10001, 'credit-a1', 'signup bonus')$$);
SELECT account_id, amount FROM withdrawal.credit WHERE idempotency_key = 'credit-a1' ORDER BY account_id;
SELECT status, replayed FROM withdrawal.request('bob', 'USD', 2500, 'sandbox',
	'{"bank": "DE89 3704"}', 'wd-a1', '{"ip": "203.0.113.7", "device_id": "dev-1"}');
SELECT status, replayed FROM withdrawal.request('bob', 'USD', 2500, 'sandbox',
	'{"bank": "DE89 3704"}', 'wd-a1');
SELECT try($$SELECT withdrawal.request('bob', 'USD', 2600, 'sandbox', '{"bank": "DE89 3704"}', 'wd-a1')$$);
SELECT account_id, amount, status FROM withdrawal.withdrawal WHERE idempotency_key = 'wd-a1' ORDER BY account_id;
SELECT * FROM withdrawal.balance('bob', 'USD');
-- the key format of the README's example works for every user of the day
SELECT account_id, available, replayed
  FROM unnest(ARRAY['user-42', 'user-43']) account_id,
	   withdrawal.credit(account_id, 'CNY', 500, 'reward:checkin:2026-11-23', 'daily check-in');
SELECT invariants();

-- The status sets have one source, status_info() (lifecycle.c's tables).
-- The two places that cannot call it, the status domain's CHECK and the
-- predicate of the partial index withdrawal_open, must name the same sets.
SELECT status, ordinal, holds_funds, keeps_outbox, final, next_statuses
  FROM withdrawal.status_info() ORDER BY ordinal;
SELECT (SELECT array_agg(m[1] ORDER BY m[1])
		  FROM regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') m)
	 = (SELECT array_agg(status ORDER BY status) FROM withdrawal.status_info()) AS domain_matches
  FROM pg_constraint c
 WHERE c.contypid = 'withdrawal.status'::regtype;
SELECT (SELECT array_agg(m[1] ORDER BY m[1])
		  FROM regexp_matches(pg_get_expr(i.indpred, i.indrelid), '''([a-z_]+)''', 'g') m)
	 = (SELECT array_agg(status ORDER BY status) FROM withdrawal.status_info() WHERE holds_funds)
	   AS open_index_matches
  FROM pg_index i
 WHERE i.indexrelid = 'withdrawal.withdrawal_open'::regclass;
