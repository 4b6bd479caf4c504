--
-- bad_input: every argument of the core API refused with a clear SQLSTATE
-- (22023 invalid parameter, 22003 overflow, WD007 unknown object), and
-- none of them changing balances, the ledger, withdrawals or the audit log.
--
CREATE DATABASE regress_bad_input;
\c regress_bad_input
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all

SELECT available FROM withdrawal.credit('mallory', 'USD', 5000, 'bad-seed');
SELECT available FROM withdrawal.credit('mallory', 'JPY', 9223372036854775000, 'bad-seed-jpy');

CREATE TEMP TABLE before AS
SELECT (SELECT count(*) FROM withdrawal.ledger_entry) AS entries,
	   (SELECT count(*) FROM withdrawal.audit_log) AS audit_rows,
	   (SELECT count(*) FROM withdrawal.withdrawal) AS withdrawals,
	   (SELECT count(*) FROM withdrawal.credit) AS credits,
	   (SELECT count(*) FROM withdrawal.account) AS accounts,
	   (SELECT count(*) FROM withdrawal.outbox) AS outbox,
	   (SELECT count(*) FROM withdrawal.blocklist) AS blocklist,
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
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k2', '{"device_id": "dev\nforged log line"}')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k2', '{"device_id": "dev\u202e"}')$$),
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
	($$SELECT withdrawal.transition('00000000-0000-0000-0000-000000000000', 'paid')$$),
	-- control and bidirectional formatting characters in account ids and
	-- idempotency keys (they would reach error messages and logs)
	($$SELECT withdrawal.credit(E'mal\nlory', 'USD', 1, 'k3')$$),
	($$SELECT withdrawal.credit(E'mal\u202Elory', 'USD', 1, 'k3')$$),
	($$SELECT withdrawal.credit(E'mallory\u0085', 'USD', 1, 'k3')$$),
	($$SELECT withdrawal.credit(E'mallory\x7f', 'USD', 1, 'k3')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 1, E'k3\r')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 1, E'k\u20663')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 1, E'k3\u200F')$$),
	($$SELECT withdrawal.request(E'\u061Cmallory', 'USD', 100, 'sandbox', '{}', 'k4')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', E'k4\x01')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', E'k4\u2069')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', E'k4\t')$$),
	($$SELECT withdrawal.balance(E'mallory\u200E', 'USD')$$),
	($$SELECT withdrawal.set_account(E'mallory\u009B', 1)$$),
	($$SELECT withdrawal.set_account(E'\u202Amallory', frozen => true)$$),
	($$SELECT withdrawal.channel_released('sandbox', E'mallory\n')$$),
	($$SELECT withdrawal.block('account', E'mallory\u202D', 'bidi')$$),
	-- context.ip must be a host address (a network slipped past the
	-- blocklist and the per-IP velocity limit)
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k5', '{"ip": "203.0.113.9/0"}')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k5', '{"ip": "203.0.113.0/24"}')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k5', '{"ip": "::ffff:203.0.113.0/120"}')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k5', '{"ip": "2001:db8::1/64"}')$$),
	-- block(): an expiry that has passed, or is not an instant
	($$SELECT withdrawal.block('ip', '203.0.113.0/24', 'expired', NULL, now() - interval '1 second')$$),
	($$SELECT withdrawal.block('ip', '203.0.113.0/24', 'expired', NULL, now())$$),
	($$SELECT withdrawal.block('ip', '203.0.113.0/24', 'expired', NULL, '-infinity')$$),
	($$SELECT withdrawal.block('ip', '203.0.113.0/24', 'expired', NULL, 'infinity')$$);

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
			   (SELECT count(*) FROM withdrawal.blocklist) AS blocklist,
			   (SELECT sum(available) || '/' || sum(held) || '/' || sum(paid_out) FROM withdrawal.wallet) AS money) a;
SELECT * FROM withdrawal.balance('mallory', 'USD');
SELECT invariants();

--
-- configuration refused when written: time zones PostgreSQL does not know,
-- non-finite rates, processor URLs the dispatcher refuses (22023, nothing
-- changed); on UPDATE only the columns that change are checked
--
CREATE TEMP TABLE config_before AS
SELECT (SELECT string_agg(p::text, ';' ORDER BY currency) FROM withdrawal.policy p) AS policies,
	   (SELECT string_agg(c::text, ';' ORDER BY name) FROM withdrawal.channel c) AS channels,
	   (SELECT string_agg(p::text, ';' ORDER BY name) FROM withdrawal.processor p) AS processors;
CREATE TEMP TABLE bad_config (n serial, call text);
INSERT INTO bad_config (call) VALUES
	($$INSERT INTO withdrawal.policy (currency, timezone) VALUES ('USD', 'Not/AZone')$$),
	($$UPDATE withdrawal.policy SET timezone = 'Not/AZone' WHERE currency = '*'$$),
	($$UPDATE withdrawal.policy SET timezone = '' WHERE currency = '*'$$),
	($$INSERT INTO withdrawal.channel (name, processor, timezone) VALUES ('tz', 'sandbox', 'Not/AZone')$$),
	($$UPDATE withdrawal.channel SET timezone = 'Mars/Olympus_Mons' WHERE name = 'sandbox'$$),
	($$INSERT INTO withdrawal.channel (name, processor, rate_per_second) VALUES ('nan', 'sandbox', 'NaN')$$),
	($$UPDATE withdrawal.channel SET rate_per_second = 'NaN' WHERE name = 'sandbox'$$),
	($$UPDATE withdrawal.channel SET rate_per_second = 'Infinity' WHERE name = 'sandbox'$$),
	($$UPDATE withdrawal.channel SET rate_per_second = 0 WHERE name = 'sandbox'$$),
	($$INSERT INTO withdrawal.processor (name, driver, base_url) VALUES ('evil', 'http', 'file:///etc/passwd')$$),
	($$INSERT INTO withdrawal.processor (name, driver, base_url) VALUES ('evil', 'http', 'ftp://files.example/payouts')$$),
	($$INSERT INTO withdrawal.processor (name, driver, base_url) VALUES ('evil', 'http', 'gopher://evil.example')$$),
	($$INSERT INTO withdrawal.processor (name, driver, base_url) VALUES ('evil', 'http', 'not a url')$$),
	($$INSERT INTO withdrawal.processor (name, driver, base_url) VALUES ('evil', 'http', 'http://pay.example')$$),
	($$UPDATE withdrawal.processor SET base_url = 'file:///etc/passwd' WHERE name = 'sandbox'$$);
SELECT n, try(call) FROM bad_config ORDER BY n;
SELECT b.* IS NOT DISTINCT FROM a.* AS config_unchanged
  FROM config_before b,
	   (SELECT (SELECT string_agg(p::text, ';' ORDER BY currency) FROM withdrawal.policy p) AS policies,
			   (SELECT string_agg(c::text, ';' ORDER BY name) FROM withdrawal.channel c) AS channels,
			   (SELECT string_agg(p::text, ';' ORDER BY name) FROM withdrawal.processor p) AS processors) a;
-- what is accepted
BEGIN;
INSERT INTO withdrawal.policy (currency, timezone) VALUES ('USD', 'Asia/Shanghai'), ('EUR', 'europe/paris');
INSERT INTO withdrawal.channel (name, processor, rate_per_second, timezone)
	VALUES ('fast', 'sandbox', 1e6, 'America/New_York'), ('unlimited', 'sandbox', NULL, 'UTC');
INSERT INTO withdrawal.processor (name, driver, base_url)
	VALUES ('acme', 'http', 'https://api.acme.example/v2'), ('stripe', 'stripe', 'https://api.stripe.com');
-- a row an older version let through can still be disabled, and fixed;
-- a column that changes is checked
ALTER TABLE withdrawal.channel DISABLE TRIGGER channel_check;
UPDATE withdrawal.channel SET timezone = 'Not/AZone', rate_per_second = 'NaN' WHERE name = 'fast';
ALTER TABLE withdrawal.channel ENABLE TRIGGER channel_check;
UPDATE withdrawal.channel SET enabled = false WHERE name = 'fast';
SELECT try($$UPDATE withdrawal.channel SET timezone = 'Also/Unknown' WHERE name = 'fast'$$);
UPDATE withdrawal.channel SET timezone = 'UTC', rate_per_second = 10 WHERE name = 'fast';
SELECT name, enabled, rate_per_second, timezone FROM withdrawal.channel ORDER BY name;
ROLLBACK;

--
-- overflow: a credit that would make available + held + paid_out of the
-- wallet exceed bigint is refused up front (22003, a clean message: no
-- internal statement in it or its context, which try_detail() would
-- show), so no later movement between those buckets can overflow
--
SET ROLE withdrawal_app;
SELECT available, replayed FROM withdrawal.credit('big', 'JPY', 9223372036854775807, 'big-c1');
SELECT status FROM withdrawal.request('big', 'JPY', 9223372036854775807, 'sandbox', '{}', 'big-r1');
SELECT try_detail($$SELECT withdrawal.credit('big', 'JPY', 9223372036854775807, 'big-c2')$$);
SELECT try_detail($$SELECT withdrawal.credit('big', 'JPY', 1, 'big-c3')$$);
RESET ROLE;
SELECT * FROM withdrawal.balance('big', 'JPY');
SELECT withdrawal.transition(withdrawal_id, 'dispatching') FROM withdrawal.withdrawal WHERE idempotency_key = 'big-r1';
SELECT withdrawal.transition(withdrawal_id, 'paid') FROM withdrawal.withdrawal WHERE idempotency_key = 'big-r1';
SELECT * FROM withdrawal.balance('big', 'JPY');
SELECT try_detail($$SELECT withdrawal.credit('big', 'JPY', 1, 'big-c4')$$);
-- a wallet whose buckets already add up past the limit (written before the
-- check existed): the debit of request() reports the overflow cleanly
BEGIN;
UPDATE withdrawal.wallet SET available = 10, held = 9223372036854775800, paid_out = 0
 WHERE account_id = 'big' AND currency = 'JPY';
SELECT try_detail($$SELECT withdrawal.request('big', 'JPY', 9, 'sandbox', '{}', 'big-r2')$$);
ROLLBACK;
SELECT * FROM withdrawal.balance('big', 'JPY');
SELECT invariants();
