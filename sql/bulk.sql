--
-- bulk: credit_many() is credit() for many items at once.  Each item is
-- its own ledger transaction under its own key, replayed or reported as
-- mismatched exactly as credit() would treat it; running balances follow
-- the ledger order; bad input and overflows change nothing.
--
CREATE DATABASE regress_bulk;
\c regress_bulk
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all
SET timezone = 'UTC';

-- each item's ledger transaction, and whether its running balance is the
-- sum of the wallet's credits up to it
CREATE FUNCTION running_balances_ok() RETURNS boolean LANGUAGE sql AS $$
	SELECT bool_and(e.balance_after = s.running)
	  FROM withdrawal.ledger_entry e
	  JOIN (SELECT txn_id, sum(amount) OVER (PARTITION BY wallet_id ORDER BY txn_id) AS running
			  FROM withdrawal.ledger_entry WHERE bucket = 'available') s USING (txn_id)
	 WHERE e.bucket = 'available'
$$;

-- three accounts, one credited twice in the same call, one with reference
-- and metadata; every item new
SELECT item, transfer_id IS NOT NULL AS has_id, available, result
  FROM withdrawal.credit_many(ARRAY['ann', 'bob', 'ann', 'cy'], ARRAY['USD', 'USD', 'USD', 'EUR'],
							  ARRAY[100, 200, 300, 400]::bigint[], ARRAY['k1', 'k1', 'k2', 'k1'],
							  ARRAY[NULL, NULL, NULL, 'campaign 7'],
							  ARRAY[NULL, NULL, NULL, '{"src": "fest"}']::jsonb[]);
SELECT account_id, currency, available, held, paid_out FROM withdrawal.wallet ORDER BY account_id, currency;
SELECT count(DISTINCT txn_id) AS transactions, sum(amount) AS ledger_sum, running_balances_ok()
  FROM withdrawal.ledger_entry;
SELECT reference, metadata FROM withdrawal.credit WHERE account_id = 'cy';
SELECT invariants();

-- the same call again: every item replays its first result, nothing moves
SELECT item, available, result,
	   transfer_id = (SELECT c.transfer_id FROM withdrawal.credit c WHERE c.account_id = x.acct AND c.idempotency_key = x.k) AS same_id
  FROM withdrawal.credit_many(ARRAY['ann', 'bob', 'ann', 'cy'], ARRAY['USD', 'USD', 'USD', 'EUR'],
							  ARRAY[100, 200, 300, 400]::bigint[], ARRAY['k1', 'k1', 'k2', 'k1'],
							  ARRAY[NULL, NULL, NULL, 'campaign 7'],
							  ARRAY[NULL, NULL, NULL, '{"src": "fest"}']::jsonb[]) r
  JOIN (VALUES (1, 'ann', 'k1'), (2, 'bob', 'k1'), (3, 'ann', 'k2'), (4, 'cy', 'k1')) x(i, acct, k) ON x.i = r.item
 ORDER BY item;
SELECT books();

-- a key the account used with other parameters is reported, not written;
-- the other items of the call go through; a key repeated within one call
-- is written once and the repeat replays or mismatches
SELECT item, available, result, transfer_id IS NULL AS no_id
  FROM withdrawal.credit_many(ARRAY['ann', 'ann', 'dee', 'dee', 'dee', 'cy'],
							  ARRAY['USD', 'USD', 'USD', 'USD', 'USD', 'EUR'],
							  ARRAY[999, 50, 10, 10, 11, 400]::bigint[],
							  ARRAY['k1', 'k3', 'k1', 'k1', 'k1', 'k1'],
							  NULL,
							  ARRAY[NULL, NULL, NULL, NULL, NULL, '{"src": "other"}']::jsonb[]);
SELECT books();
-- credit() and credit_many() share keys both ways
SELECT available, replayed FROM withdrawal.credit('dee', 'USD', 10, 'k1');
SELECT result FROM withdrawal.credit_many(ARRAY['ann'], ARRAY['USD'], ARRAY[7]::bigint[], ARRAY['solo']);
SELECT try($$SELECT withdrawal.credit('ann', 'USD', 8, 'solo')$$);
SELECT available, replayed FROM withdrawal.credit('ann', 'USD', 7, 'solo');
SELECT running_balances_ok(), invariants();

-- many credits to one wallet in one call, in a random order of keys: the
-- running balances follow the ledger's order
SELECT count(*) FILTER (WHERE result = 'new') AS new, max(available) AS last_available
  FROM withdrawal.credit_many(array_fill('eve'::text, ARRAY[1000]), array_fill('USD'::text, ARRAY[1000]),
							  ARRAY(SELECT g::bigint FROM generate_series(1, 1000) g),
							  ARRAY(SELECT md5(g::text) FROM generate_series(1, 1000) g));
SELECT available FROM withdrawal.balance('eve', 'USD');
SELECT running_balances_ok(), invariants();

-- bad input: 22023, nothing changed
SELECT refused($$SELECT * FROM withdrawal.credit_many(NULL, ARRAY['USD'], ARRAY[1]::bigint[], ARRAY['x'])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY['a'], NULL, ARRAY[1]::bigint[], ARRAY['x'])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY['a', NULL], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[1, 0]::bigint[], ARRAY['x', 'y'])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'XXX'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'usd'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY['a', E'b\n'], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', ''])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', repeat('k', 256)])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'], ARRAY['r', repeat('r', 1025)])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'], NULL, ARRAY['{}', '[1]']::jsonb[])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY[['a', 'b']], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(array_fill('a'::text, ARRAY[100001]), array_fill('USD'::text, ARRAY[100001]),
	array_fill(1::bigint, ARRAY[100001]), ARRAY(SELECT g::text FROM generate_series(1, 100001) g))$$);
-- the error names the item
SELECT try_detail($$SELECT withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[1, -5]::bigint[], ARRAY['x', 'y'])$$);
-- an overflow of any wallet stops the whole call
SELECT available FROM withdrawal.credit('fay', 'USD', 9223372036854775000, 'big');
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY['gus', 'fay'], ARRAY['USD', 'USD'], ARRAY[5, 900]::bigint[], ARRAY['x', 'y'])$$);
SELECT refused($$SELECT * FROM withdrawal.credit_many(ARRAY['hal', 'hal'], ARRAY['USD', 'USD'],
	ARRAY[9223372036854775000, 9223372036854775000]::bigint[], ARRAY['x', 'y'])$$);
-- an empty call credits nothing
SELECT count(*) FROM withdrawal.credit_many('{}', '{}', '{}', '{}');
SELECT running_balances_ok(), invariants();

-- the application role may call it; PUBLIC may not
CREATE ROLE bulk_app LOGIN IN ROLE withdrawal_app;
CREATE ROLE bulk_nobody LOGIN;
SET ROLE bulk_app;
SELECT result FROM withdrawal.credit_many(ARRAY['ivy'], ARRAY['USD'], ARRAY[5]::bigint[], ARRAY['x']);
SET ROLE bulk_nobody;
SELECT try($$SELECT * FROM withdrawal.credit_many(ARRAY['ivy'], ARRAY['USD'], ARRAY[5]::bigint[], ARRAY['y'])$$);
RESET ROLE;
DROP ROLE bulk_app;
DROP ROLE bulk_nobody;
