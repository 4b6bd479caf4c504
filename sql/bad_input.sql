--
-- bad_input: every argument of the core API refused with a clear SQLSTATE
-- (22023 invalid parameter, 22003 overflow, WD007 unknown object), and
-- none of them changing balances, the ledger, withdrawals or the audit log.
--
SET client_min_messages = warning;

SELECT available FROM withdrawal.credit('mallory', 'USD', 5000, 'bad-seed');
SELECT available FROM withdrawal.credit('mallory', 'JPY', 9223372036854775000, 'bad-seed-jpy');

CREATE TEMP TABLE before AS
SELECT (SELECT count(*) FROM withdrawal.ledger_entry) AS entries,
	   (SELECT count(*) FROM withdrawal.audit_log) AS audit_rows,
	   (SELECT count(*) FROM withdrawal.withdrawal) AS withdrawals,
	   (SELECT count(*) FROM withdrawal.credit) AS credits,
	   (SELECT count(*) FROM withdrawal.account) AS accounts,
	   (SELECT count(*) FROM withdrawal.outbox) AS outbox,
	   (SELECT sum(available) || '/' || sum(held) || '/' || sum(paid_out) FROM withdrawal.wallet) AS money;

CREATE TEMP TABLE bad (n serial, call text);
INSERT INTO bad (call) VALUES
	-- credit: NULL in each required argument
	($$SELECT withdrawal.credit(NULL, 'USD', 1, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', NULL, 1, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', NULL, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 1, NULL)$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 1, 'k1', NULL, NULL)$$),
	-- credit: amounts
	($$SELECT withdrawal.credit('mallory', 'USD', 0, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', -1, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', -9223372036854775808, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'JPY', 1000, 'k1')$$),
	-- credit: text bounds and currencies
	($$SELECT withdrawal.credit('', 'USD', 1, 'k1')$$),
	($$SELECT withdrawal.credit(repeat('a', 65), 'USD', 1, 'k1')$$),
	($$SELECT withdrawal.credit(repeat('é', 33), 'USD', 1, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 1, '')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 1, repeat('k', 256))$$),
	($$SELECT withdrawal.credit('mallory', 'usd', 1, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'XXX', 1, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'US', 1, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'USDT', 1, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'U$D', 1, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 1, 'k1', repeat('r', 1025))$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 1, 'k1', NULL, '[1, 2]')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 1, 'k1', NULL, '"text"')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 1, 'k1', NULL, jsonb_build_object('blob', repeat('x', 20000)))$$),
	-- request: NULL in each required argument
	($$SELECT withdrawal.request(NULL, 'USD', 100, 'sandbox', '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', NULL, 100, 'sandbox', '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', NULL, 'sandbox', '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, NULL, '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', NULL, 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', NULL)$$),
	-- request: amounts, shapes, bounds
	($$SELECT withdrawal.request('mallory', 'USD', 0, 'sandbox', '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', -100, 'sandbox', '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 9223372036854775807, 'sandbox', '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '[]', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '"iban"', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', 'null', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', '')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', repeat('k', 256))$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, '', '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, repeat('c', 64), '{}', 'k2')$$),
	($$SELECT withdrawal.request(repeat('a', 65), 'USD', 100, 'sandbox', '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'EUR', 100, 'sandbox', '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'eur', 100, 'sandbox', '{}', 'k2')$$),
	-- request: context
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k2', NULL)$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k2', '[]')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k2', '{"ip": "999.1.1.1"}')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k2', '{"ip": 17}')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k2', '{"ip": "1.2.3.4; DROP TABLE x"}')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k2', '{"device_id": ""}')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k2', jsonb_build_object('device_id', repeat('d', 129)))$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k2', '{"device_id": {"nested": true}}')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', jsonb_build_object('iban', repeat('x', 17000)), 'k2')$$),
	-- balance, set_account, cancel, reject, approve, get, transition
	($$SELECT withdrawal.balance(NULL, 'USD')$$),
	($$SELECT withdrawal.balance('mallory', NULL)$$),
	($$SELECT withdrawal.set_account(NULL, 1)$$),
	($$SELECT withdrawal.set_account('mallory', -1)$$),
	($$SELECT withdrawal.set_account(repeat('a', 65), 1)$$),
	($$SELECT withdrawal.cancel(NULL, 'x')$$),
	($$SELECT withdrawal.cancel('00000000-0000-0000-0000-000000000000', 'x')$$),
	($$SELECT withdrawal.cancel('00000000-0000-0000-0000-000000000000', repeat('r', 1025))$$),
	($$SELECT withdrawal.reject('00000000-0000-0000-0000-000000000000', NULL)$$),
	($$SELECT withdrawal.reject('00000000-0000-0000-0000-000000000000', 'fraud')$$),
	($$SELECT withdrawal.approve(NULL)$$),
	($$SELECT withdrawal.approve('00000000-0000-0000-0000-000000000000')$$),
	($$SELECT withdrawal.get(NULL)$$),
	($$SELECT withdrawal.transition('00000000-0000-0000-0000-000000000000', 'bogus')$$),
	($$SELECT withdrawal.transition('00000000-0000-0000-0000-000000000000', 'paid')$$);

SELECT n, try(call) FROM bad ORDER BY n;

-- nothing changed
SELECT b.* IS NOT DISTINCT FROM a.* AS unchanged
  FROM before b,
	   (SELECT (SELECT count(*) FROM withdrawal.ledger_entry) AS entries,
			   (SELECT count(*) FROM withdrawal.audit_log) AS audit_rows,
			   (SELECT count(*) FROM withdrawal.withdrawal) AS withdrawals,
			   (SELECT count(*) FROM withdrawal.credit) AS credits,
			   (SELECT count(*) FROM withdrawal.account) AS accounts,
			   (SELECT count(*) FROM withdrawal.outbox) AS outbox,
			   (SELECT sum(available) || '/' || sum(held) || '/' || sum(paid_out) FROM withdrawal.wallet) AS money) a;
SELECT * FROM withdrawal.balance('mallory', 'USD');
SELECT invariants();
