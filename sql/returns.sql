--
-- returns: partial returns of a paid payout (issue 13).  A returned
-- webhook for less than the amount credits that part back, once per
-- event; the payout stays paid with returned_amount until the parts reach
-- the amount, then it is returned.  Stripe's amount_reversed is a running
-- total: each event books its increment.  The books stay consistent.
--
CREATE DATABASE regress_returns;
\c regress_returns
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
CREATE EXTENSION pgcrypto;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\i :abs_srcdir/sql/webhook_helpers.psql
\set ECHO all

-- a Stripe transfer.reversed with amount_reversed, the running total
CREATE FUNCTION reversed(evt text, key text, total bigint) RETURNS text LANGUAGE sql AS $$
	SELECT show(withdrawal.receive_webhook('stripe_test', sign('stripe_test', b, epoch()), b))
	  FROM (SELECT jsonb_build_object('id', evt, 'object', 'event', 'type', 'transfer.reversed',
			'data', jsonb_build_object('object', jsonb_build_object(
				'id', 'tr_' || key, 'object', 'transfer', 'amount', w.amount,
				'currency', lower(w.currency), 'amount_reversed', total,
				'reversed', total = w.amount,
				'metadata', jsonb_build_object('withdrawal_id', w.withdrawal_id))))::text AS b
		  FROM withdrawal.withdrawal w WHERE w.idempotency_key = key) e
$$;
-- the withdrawal's status, returned part and the wallet
CREATE FUNCTION books(key text) RETURNS text LANGUAGE sql AS $$
	SELECT format('%s returned_amount=%s available=%s held=%s paid_out=%s',
				  w.status, w.returned_amount, b.available, b.held, b.paid_out)
	  FROM withdrawal.withdrawal w, withdrawal.balance(w.account_id, w.currency) b
	 WHERE w.idempotency_key = key
$$;

SELECT available FROM withdrawal.credit('alice', 'USD', 10000, 'fund-1');

--
-- 1. the http scheme: payout.returned carries the amount it returns
--
SELECT wd('h', 1000) IS NOT NULL AS created;
SELECT deliver('acme', 'h-paid', 'payout.paid', id('h'));
SELECT books('h');
-- 30% comes back: credited, still paid
SELECT deliver('acme', 'h-r1', 'payout.returned', id('h'), 300);
SELECT books('h');
-- the same event again: a duplicate, nothing moves
SELECT deliver('acme', 'h-r1', 'payout.returned', id('h'), 300);
SELECT books('h');
-- a second part
SELECT deliver('acme', 'h-r2', 'payout.returned', id('h'), 200);
SELECT books('h');
-- more than is left: a discrepancy, nothing moves
SELECT deliver('acme', 'h-r3', 'payout.returned', id('h'), 501);
SELECT deliver('acme', 'h-r4', 'payout.returned', id('h'), 1000);
SELECT books('h');
SELECT invariants();
-- the rest: returned, by the once-only return of what was left
SELECT deliver('acme', 'h-r5', 'payout.returned', id('h'), 500);
SELECT books('h');
-- after that, neither a part nor the whole moves anything
SELECT deliver('acme', 'h-r6', 'payout.returned', id('h'), 100);
SELECT deliver('acme', 'h-r7', 'payout.returned', id('h'), 1000);
SELECT deliver('acme', 'h-r8', 'payout.returned', id('h'));
SELECT books('h');
SELECT kind, bucket, amount FROM withdrawal.ledger_entry
 WHERE withdrawal_id = id('h') ORDER BY txn_id, leg;
SELECT invariants();

-- a whole return at once is a single return, as before
SELECT wd('w', 700) IS NOT NULL AS created;
SELECT deliver('acme', 'w-paid', 'payout.paid', id('w'));
SELECT deliver('acme', 'w-r1', 'payout.returned', id('w'), 700);
SELECT books('w');
-- a payout.failed after a part returns the rest
SELECT wd('f', 400) IS NOT NULL AS created;
SELECT deliver('acme', 'f-paid', 'payout.paid', id('f'));
SELECT deliver('acme', 'f-r1', 'payout.returned', id('f'), 100);
SELECT deliver('acme', 'f-fail', 'payout.failed', id('f'), 400);
SELECT books('f');
SELECT kind, amount FROM withdrawal.ledger_entry
 WHERE withdrawal_id = id('f') AND bucket = 'available' ORDER BY txn_id;
-- a part that overtakes its paid event: paid, then the part
SELECT wd('o', 600) IS NOT NULL AS created;
SELECT deliver('acme', 'o-r1', 'payout.returned', id('o'), 150);
SELECT books('o');
SELECT deliver('acme', 'o-paid', 'payout.paid', id('o'));
SELECT books('o');
-- a part of a refunded payout: a discrepancy, as a whole return is
SELECT wd('c', 500, 'canceled') IS NOT NULL AS created;
SELECT deliver('acme', 'c-r1', 'payout.returned', id('c'), 100);
SELECT books('c');
-- a part in another currency: a discrepancy
SELECT deliver('acme', 'o-r2', 'payout.returned', id('o'), 100, 'EUR');
SELECT books('o');
SELECT invariants();

--
-- 2. Stripe: amount_reversed is a running total; each event books what it
-- adds
--
SELECT wd('s', 1000, 'submitted', 'stripe_ch') IS NOT NULL AS created;
SELECT deliver('stripe_test', 'evt_s_paid', 'transfer.created', id('s'));
SELECT reversed('evt_s_r1', 's', 300);
SELECT books('s');
SELECT reversed('evt_s_r1', 's', 300);
SELECT reversed('evt_s_r2', 's', 700);
SELECT books('s');
-- an older total arriving late, or the same total again: nothing
SELECT reversed('evt_s_r0', 's', 200);
SELECT reversed('evt_s_r2b', 's', 700);
-- a total past the amount: a discrepancy
SELECT reversed('evt_s_r3', 's', 1001);
SELECT books('s');
SELECT kind, amount FROM withdrawal.ledger_entry
 WHERE withdrawal_id = id('s') AND bucket = 'available' ORDER BY txn_id;
-- the whole amount: returned, the last 300
SELECT reversed('evt_s_r4', 's', 1000);
SELECT reversed('evt_s_r5', 's', 1000);
SELECT books('s');
SELECT kind, amount FROM withdrawal.ledger_entry
 WHERE withdrawal_id = id('s') AND bucket = 'available' ORDER BY txn_id;
SELECT invariants();

--
-- 3. the database refuses what the webhook would never do
--
SET client_min_messages = error;
SELECT try(format('UPDATE withdrawal.withdrawal SET returned_amount = amount + 1 WHERE withdrawal_id = %L', id('o')));
SELECT try(format('UPDATE withdrawal.withdrawal SET returned_amount = -1 WHERE withdrawal_id = %L', id('o')));
SET client_min_messages = warning;
-- a partial return is not once-only; a whole return still is
SELECT indexdef LIKE '%partial_return%' AS once_only_excludes_parts FROM pg_indexes
 WHERE indexname = 'ledger_entry_once';

SELECT event_id, result, discrepancy, reason, status_before, status_after
  FROM withdrawal.webhook_event ORDER BY received_at, event_id;
SELECT action, before_status, after_status, detail->>'event_id' AS event_id,
	   detail->>'event_amount' AS event_amount, detail->>'partial_return' AS part
  FROM withdrawal.audit_log WHERE action IN ('webhook_partial_return', 'webhook_discrepancy')
 ORDER BY audit_id;
SELECT invariants();
--
-- 4. reconcile() and partial returns: the processor's returned lines of a
-- payout (each its own reference), summed over every report, are compared
-- with returned_amount; a partly returned payout is paid on both sides.
-- reconcile() only reports: a returned line the ledger has not booked
-- moves no money (the webhook or the status query books it).
--
INSERT INTO withdrawal.processor (name, driver, base_url, webhook_secret, webhook_scheme) VALUES
	('acme_r', 'http', 'https://acme-r.example', 'regress_http', 'hmac-sha256');
INSERT INTO withdrawal.channel (name, processor) VALUES ('acme_r_bank', 'acme_r');
SELECT available FROM withdrawal.credit('alice', 'USD', 10000, 'fund-2');
CREATE FUNCTION paid(key text, amount bigint) RETURNS boolean LANGUAGE sql AS $$
	SELECT wd(key, amount, 'submitted', 'acme_r_bank') IS NOT NULL
		   AND deliver('acme_r', key || '-paid', 'payout.paid', id(key)) LIKE 'applied%'
$$;
-- r1: 400 of 1000 returned, and so reported; r2: 250 booked, 300
-- reported; r3: nothing booked, 200 reported; r4: 100 booked, nothing
-- reported; r5: returned whole here, 600 of 900 reported
SELECT paid('r1', 1000), paid('r2', 1000), paid('r3', 800), paid('r4', 500), paid('r5', 900);
SELECT deliver('acme_r', 'r1-r', 'payout.returned', id('r1'), 400),
	   deliver('acme_r', 'r2-r', 'payout.returned', id('r2'), 250),
	   deliver('acme_r', 'r4-r', 'payout.returned', id('r4'), 100),
	   deliver('acme_r', 'r5-r', 'payout.returned', id('r5'), 900);
CREATE FUNCTION fingerprint() RETURNS text LANGUAGE sql AS $$
	SELECT md5(string_agg(concat_ws(',', txn_id, leg, kind, bucket, amount), ';' ORDER BY txn_id, leg))
		|| (SELECT md5(string_agg(concat_ws(',', withdrawal_id, status, returned_amount), ';' ORDER BY withdrawal_id))
			  FROM withdrawal.withdrawal)
	  FROM withdrawal.ledger_entry
$$;
SELECT fingerprint() AS before \gset
SELECT withdrawal.import_settlement('acme_r',
	'processor_ref,withdrawal_id,amount,currency,status,settled_at' || E'\n' ||
	(SELECT string_agg(concat_ws(',', ref, id(key), amount, 'USD', status, now()), E'\n')
	   FROM (VALUES ('tr_r1', 'r1', 1000, 'paid'), ('rt_r1', 'r1', 400, 'returned'),
					('tr_r2', 'r2', 1000, 'paid'), ('rt_r2', 'r2', 300, 'returned'),
					('tr_r3', 'r3', 800, 'paid'), ('rt_r3', 'r3', 200, 'returned'),
					('tr_r4', 'r4', 500, 'paid'),
					('tr_r5', 'r5', 900, 'paid'), ('rt_r5', 'r5', 600, 'returned')) v(ref, key, amount, status))
	|| E'\n');
SELECT r.kind, w.idempotency_key AS key, r.processor_ref, r.ledger_amount, r.processor_amount,
	   r.ledger_status, r.processor_status
  FROM withdrawal.reconcile('acme_r', now() - interval '1 hour', now()) r
  JOIN withdrawal.withdrawal w USING (withdrawal_id)
 ORDER BY key;
-- the rest of r5's return in a later report: whole on both sides
SELECT withdrawal.import_settlement('acme_r',
	'processor_ref,withdrawal_id,amount,currency,status,settled_at' || E'\n' ||
	concat_ws(',', 'rt_r5b', id('r5'), 300, 'USD', 'returned', now()) || E'\n');
SELECT r.kind, w.idempotency_key AS key
  FROM withdrawal.reconcile('acme_r', now() - interval '1 hour', now()) r
  JOIN withdrawal.withdrawal w USING (withdrawal_id)
 ORDER BY key;
SELECT fingerprint() = :'before' AS no_money_moved;
SELECT books('r3');
SELECT invariants();

SELECT withdrawal.seal_audit() >= 0 AS sealed;
SELECT ok FROM withdrawal.verify_audit();

\c postgres
DROP DATABASE regress_returns;
