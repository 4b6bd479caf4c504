--
-- statement: an account's ledger movements with running balances, paged by
-- txn_id (issue 13).  Pages hold whole ledger transactions: walking them
-- returns every entry of the wallet once.  withdrawal_app reads a
-- statement only through the function, which names one wallet.
--
CREATE DATABASE regress_statement;
\c regress_statement
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all
SET timezone = 'UTC';

-- alice: two credits, a withdrawal paid, one failed (and refunded),
-- one paid then returned, one still queued, and a credit after them all
SELECT available FROM withdrawal.credit('alice', 'USD', 10000, 'c1');
SELECT available FROM withdrawal.credit('alice', 'USD', 500, 'c2', 'referral');
SELECT status FROM withdrawal.request('alice', 'USD', 1000, 'sandbox', '{"to": "a"}', 'w1');
SELECT status FROM withdrawal.request('alice', 'USD', 2000, 'sandbox', '{"to": "a"}', 'w2');
SELECT status FROM withdrawal.request('alice', 'USD', 3000, 'sandbox', '{"to": "a"}', 'w3');
SELECT status FROM withdrawal.request('alice', 'USD', 400, 'sandbox', '{"to": "a"}', 'w4');
SELECT withdrawal.transition(withdrawal_id, s) FROM withdrawal.withdrawal,
	unnest(ARRAY['dispatching', 'submitted', 'paid']) s
 WHERE idempotency_key IN ('w1', 'w3') ORDER BY idempotency_key;
SELECT withdrawal.transition(withdrawal_id, s) FROM withdrawal.withdrawal,
	unnest(ARRAY['dispatching', 'failed']) s WHERE idempotency_key = 'w2';
SELECT withdrawal.transition(withdrawal_id, 'returned') FROM withdrawal.withdrawal
 WHERE idempotency_key = 'w3';
-- bob's wallet and alice's EUR wallet must never show in alice's USD one
SELECT available FROM withdrawal.credit('bob', 'USD', 700, 'c1');
SELECT available FROM withdrawal.credit('alice', 'EUR', 900, 'c-eur');
SELECT available FROM withdrawal.credit('alice', 'USD', 1, 'c3');

-- one page, with the withdrawals named by key for a stable output
SELECT s.txn_id - min(s.txn_id) OVER () AS txn, s.kind, s.bucket, s.amount,
	   s.balance_after, w.idempotency_key AS withdrawal, c.idempotency_key AS credit,
	   s.withdrawal_status, s.created_at IS NOT NULL AS has_time
  FROM withdrawal.statement('alice', 'USD') s
  LEFT JOIN withdrawal.withdrawal w USING (withdrawal_id)
  LEFT JOIN withdrawal.credit c ON c.transfer_id = s.credit_id;

-- the last balance of each bucket is the wallet's balance
SELECT (SELECT balance_after FROM withdrawal.statement('alice', 'USD') WHERE bucket = 'available'
		 ORDER BY txn_id DESC LIMIT 1) AS available,
	   (SELECT balance_after FROM withdrawal.statement('alice', 'USD') WHERE bucket = 'held'
		 ORDER BY txn_id DESC LIMIT 1) AS held,
	   (SELECT balance_after FROM withdrawal.statement('alice', 'USD') WHERE bucket = 'settled'
		 ORDER BY txn_id DESC LIMIT 1) AS paid_out;
SELECT * FROM withdrawal.balance('alice', 'USD');

-- walking pages of every size returns each entry of the wallet exactly once
CREATE FUNCTION walk(account text, cur text, size int,
					 OUT pages int, OUT entries bigint, OUT distinct_entries bigint)
LANGUAGE plpgsql AS $$
DECLARE
	last bigint;
	n int;
BEGIN
	pages := 0;
	CREATE TEMP TABLE seen (txn_id bigint, bucket text) ON COMMIT DROP;
	LOOP
		INSERT INTO seen SELECT s.txn_id, s.bucket
		  FROM withdrawal.statement(account, cur, last, size) s;
		GET DIAGNOSTICS n = ROW_COUNT;
		EXIT WHEN n = 0;
		pages := pages + 1;
		SELECT max(txn_id) INTO last FROM seen;
	END LOOP;
	SELECT count(*), count(DISTINCT (txn_id, bucket)) INTO entries, distinct_entries FROM seen;
	DROP TABLE seen;
END
$$;
SELECT size, w.*,
	   (SELECT count(*) FROM withdrawal.ledger_entry e JOIN withdrawal.wallet USING (wallet_id)
		 WHERE account_id = 'alice' AND wallet.currency = 'USD' AND bucket <> 'funding') AS in_ledger
  FROM unnest(ARRAY[1, 2, 3, 5, 1000]) size, walk('alice', 'USD', size) w;

-- a page holds whole transactions: page_size counts transactions, not rows
SELECT count(*) AS rows, count(DISTINCT txn_id) AS transactions
  FROM withdrawal.statement('alice', 'USD', NULL, 3);
-- after the last txn_id there is nothing
SELECT count(*) FROM withdrawal.statement('alice', 'USD',
	(SELECT max(txn_id) FROM withdrawal.ledger_entry), 10);

-- bad input
SELECT try($$SELECT * FROM withdrawal.statement(NULL, 'USD')$$);
SELECT try($$SELECT * FROM withdrawal.statement('', 'USD')$$);
SELECT try($$SELECT * FROM withdrawal.statement('alice', NULL)$$);
SELECT try($$SELECT * FROM withdrawal.statement('alice', 'usd')$$);
SELECT try($$SELECT * FROM withdrawal.statement('alice', 'XXX')$$);
SELECT try($$SELECT * FROM withdrawal.statement('alice', 'USD', NULL, 0)$$);
SELECT try($$SELECT * FROM withdrawal.statement('alice', 'USD', NULL, 1001)$$);
SELECT try($$SELECT * FROM withdrawal.statement('alice', 'USD', NULL, NULL)$$);
SELECT try($$SELECT * FROM withdrawal.statement('alice', 'USD', NULL, -1)$$);
SELECT try($$SELECT * FROM withdrawal.statement('carol', 'USD')$$);
SELECT try($$SELECT * FROM withdrawal.statement('bob', 'EUR')$$);

-- the plan: a range scan of the wallet's entries, not of the ledger
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT txn_id FROM withdrawal.ledger_entry
 WHERE wallet_id = 1 AND txn_id > 0 AND leg = 2 ORDER BY txn_id LIMIT 100;
RESET enable_seqscan;

-- roles: the application reads statements through the function only
CREATE ROLE regress_st_app LOGIN IN ROLE withdrawal_app;
SET ROLE regress_st_app;
SELECT count(*) > 0 AS bob_has_a_statement FROM withdrawal.statement('bob', 'USD');
SELECT DISTINCT kind, amount FROM withdrawal.statement('bob', 'USD');
SELECT try($$SELECT count(*) FROM withdrawal.ledger_entry$$);
SELECT try($$SELECT count(*) FROM withdrawal.wallet$$);
SELECT try($$SELECT count(*) FROM withdrawal.credit$$);
-- a planted operator or function in the caller's path changes nothing
RESET ROLE;
CREATE SCHEMA regress_st_evil AUTHORIZATION regress_st_app;
SET ROLE regress_st_app;
CREATE FUNCTION regress_st_evil.texteq_any(text, text) RETURNS boolean
	LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR regress_st_evil.= (LEFTARG = text, RIGHTARG = text,
	FUNCTION = regress_st_evil.texteq_any);
SET search_path = regress_st_evil, public;
SELECT DISTINCT kind, amount FROM withdrawal.statement('bob', 'USD');
RESET search_path;
RESET ROLE;
DROP SCHEMA regress_st_evil CASCADE;
SET ROLE withdrawal_auditor;
SELECT count(*) > 0 AS auditor_reads FROM withdrawal.statement('alice', 'EUR');
RESET ROLE;
SELECT has_function_privilege('public', 'withdrawal.statement(text, text, bigint, integer)', 'EXECUTE')
	AS public_may_execute;
DROP ROLE regress_st_app;
