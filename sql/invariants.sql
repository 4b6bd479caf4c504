--
-- invariants: check_invariants() finds what each of its checks is for.
-- Books broken on purpose, one way at a time, by the superuser with the
-- triggers off (session_replication_role = replica), in a transaction
-- that is rolled back: each shows the checks it breaks (the one it aims
-- at, and those a change of the kind breaks with it), with their detail
-- where that does not name a random id.
--
CREATE DATABASE regress_invariants;
\c regress_invariants
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all

-- broken(): the checks that fail, with their violations and detail
CREATE FUNCTION broken() RETURNS TABLE (check_name text, violations bigint, detail text)
	LANGUAGE sql AS $$
	SELECT * FROM withdrawal.check_invariants() WHERE violations <> 0
$$;

-- one row per check, in order, all holding on empty books
SELECT * FROM withdrawal.check_invariants();

-- books that hold: a credit of 10000, and a queued payout of 1000 held
SELECT available FROM withdrawal.credit('alice', 'USD', 10000, 'c1', 'bonus');
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO withdrawal.withdrawal (withdrawal_id, idempotency_key, account_id, currency, amount,
								   channel, destination, context, status, requested_by)
	VALUES ('00000000-0000-4000-8000-00000000000a', 'r1', 'alice', 'USD', 1000,
			'sandbox', '{}', '{}', 'queued', 'app');
INSERT INTO withdrawal.ledger_entry (txn_id, leg, kind, wallet_id, currency, bucket, amount, withdrawal_id)
	SELECT 1000, v.leg, 'debit', w.wallet_id, 'USD', v.bucket, v.amount,
		   '00000000-0000-4000-8000-00000000000a'
	  FROM withdrawal.wallet w,
		   (VALUES (1::int2, 'available', -1000), (2::int2, 'held', 1000)) v(leg, bucket, amount);
UPDATE withdrawal.wallet SET available = available - 1000, held = held + 1000;
COMMIT;
SELECT * FROM broken();

-- a wallet's cached balance off its ledger
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE withdrawal.wallet SET available = available + 1;
SELECT * FROM broken();
ROLLBACK;

-- a transaction that does not sum to zero
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO withdrawal.ledger_entry (txn_id, leg, kind, wallet_id, currency, bucket, amount, credit_id)
	SELECT 2000, 1, 'credit', w.wallet_id, 'USD', 'funding', -5, c.transfer_id
	  FROM withdrawal.wallet w, withdrawal.credit c;
SELECT check_name, violations FROM broken();
ROLLBACK;

-- a payout debited of another amount than its own
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE withdrawal.withdrawal SET amount = 999;
SELECT * FROM broken();
ROLLBACK;

-- a payout both refunded and settled
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO withdrawal.ledger_entry (txn_id, leg, kind, wallet_id, currency, bucket, amount, withdrawal_id)
	SELECT t.txn_id, v.leg, t.kind, w.wallet_id, 'USD', v.bucket, v.amount,
		   '00000000-0000-4000-8000-00000000000a'
	  FROM withdrawal.wallet w,
		   (VALUES (1001, 'refund'), (1002, 'settle')) t(txn_id, kind),
		   (VALUES (1::int2, 'held', -1), (2::int2, 'available', 1)) v(leg, bucket, amount);
SELECT check_name, violations FROM broken();
ROLLBACK;

-- a status that does not match where the money is
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE withdrawal.withdrawal SET status = 'paid';
SELECT * FROM broken();
ROLLBACK;

-- a return the ledger does not have, of a payout never paid
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE withdrawal.withdrawal SET returned_amount = 1;
SELECT * FROM broken();
ROLLBACK;

-- a negative balance (the column's domain refuses one, so it goes first)
BEGIN;
ALTER DOMAIN withdrawal.balance DROP CONSTRAINT balance_check;
SET LOCAL session_replication_role = replica;
UPDATE withdrawal.wallet SET paid_out = -1;
SELECT check_name, violations FROM broken();
ROLLBACK;

-- a credit with no ledger transaction
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE withdrawal.credit SET txn_id = txn_id + 1;
SELECT check_name, violations FROM broken();
ROLLBACK;

-- an entry of a payout in another currency than the payout's
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE withdrawal.withdrawal SET currency = 'EUR';
SELECT * FROM broken();
ROLLBACK;

-- and the books hold again
SELECT * FROM broken();

\c postgres
DROP DATABASE regress_invariants;
