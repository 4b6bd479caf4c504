--
-- parity.sql: the API calls of the regress tests (core, bad_input, bulk,
-- policy, review, roles, statement, methods, webhook, reconcile), only
-- those the router exposes (docs/sharding.md).  091_router_regress runs
-- this same script against one server and through the router over two
-- shards and requires the same output: idempotency, SQLSTATEs, messages
-- and roles as on one server.  Configuration is parity_config.sql's, on
-- every database.  Prints no random ids, txn ids or times (they differ
-- between any two runs), so that the outputs compare whole.
--
SET client_min_messages = warning;
\set VERBOSITY terse

-- try(sql), anon(text), try_anon(sql), try_detail(sql): as sql/helpers.psql
-- (which also defines books(), reading tables the router does not have)
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
CREATE FUNCTION anon(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT regexp_replace(t, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', 'UUID', 'g')
$$;
CREATE FUNCTION try_anon(sql text) RETURNS text LANGUAGE sql AS $$
	SELECT anon(try(sql))
$$;
CREATE FUNCTION try_detail(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	detail text;
	hint text;
	context text;
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT,
		context = PG_EXCEPTION_CONTEXT;
	context := rtrim(split_part(context, 'SQL statement "' || sql || '"', 1), E'\n');
	RETURN anon(SQLSTATE || ': ' || SQLERRM ||
		coalesce(' (' || nullif(detail, '') || ')', '') ||
		coalesce(' {' || nullif(hint, '') || '}', '') ||
		coalesce(' [' || nullif(replace(context, E'\n', ' / '), '') || ']', ''));
END
$$;
-- the signing side of the "acme" processor (hmac-sha256, regress_http)
CREATE FUNCTION sign(body text, ts bigint DEFAULT floor(extract(epoch FROM clock_timestamp()))::bigint,
					 secret text DEFAULT 'http-secret-1') RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('X-Withdrawal-Timestamp', ts::text,
		'X-Withdrawal-Signature', 'v1=' || encode(hmac(ts || '.' || body, secret, 'sha256'), 'hex'))
$$;
CREATE FUNCTION event(evt text, typ text, wid text, amount bigint DEFAULT 1000) RETURNS text
LANGUAGE sql AS $$
	SELECT jsonb_build_object('id', evt, 'type', typ,
		'data', jsonb_build_object('id', 'ref_' || evt, 'payout_id', wid, 'amount', amount, 'currency', 'USD'))::text
$$;

--
-- 1. idempotency (core, bulk)
--
SELECT available, replayed FROM withdrawal.credit('alice', 'USD', 10000, 'credit-a1', 'signup bonus');
SELECT available, replayed FROM withdrawal.credit('alice', 'USD', 10000, 'credit-a1', 'signup bonus');
SELECT try($$SELECT withdrawal.credit('alice', 'USD', 10001, 'credit-a1', 'signup bonus')$$);
SELECT try($$SELECT withdrawal.credit('alice', 'USD', 10000, 'credit-a1', 'other reference')$$);
SELECT try($$SELECT withdrawal.credit('alice', 'USD', 10000, 'credit-a1', 'signup bonus', '{"other": 1}')$$);
SELECT (SELECT transfer_id FROM withdrawal.credit('alice', 'USD', 10000, 'credit-a1', 'signup bonus'))
	 = (SELECT transfer_id FROM withdrawal.credit('alice', 'USD', 10000, 'credit-a1', 'signup bonus')) AS same_transfer;
SELECT available, replayed FROM withdrawal.credit('alice', 'USD', 5000, 'credit-a2', NULL, '{"campaign": 7}');
SELECT available, replayed FROM withdrawal.credit('alice', 'JPY', 300, 'credit-a3');
SELECT * FROM withdrawal.balance('alice', 'USD');
SELECT * FROM withdrawal.balance('alice', 'JPY');
SELECT try($$SELECT withdrawal.balance('alice', 'EUR')$$);
SELECT try($$SELECT withdrawal.balance('nobody', 'USD')$$);

SELECT status, replayed FROM withdrawal.request('alice', 'USD', 2500, 'sandbox',
	'{"bank": "DE89 3704"}', 'wd-a1', '{"ip": "203.0.113.7", "device_id": "dev-1"}');
SELECT status, replayed FROM withdrawal.request('alice', 'USD', 2500, 'sandbox',
	'{"bank": "DE89 3704"}', 'wd-a1', '{"ip": "198.51.100.1"}');
SELECT try($$SELECT withdrawal.request('alice', 'USD', 2600, 'sandbox', '{"bank": "DE89 3704"}', 'wd-a1')$$);
SELECT try($$SELECT withdrawal.request('alice', 'USD', 2500, 'sandbox', '{"bank": "other"}', 'wd-a1')$$);
SELECT try($$SELECT withdrawal.request('alice', 'USD', 2500, 'acme_bank', '{"bank": "DE89 3704"}', 'wd-a1')$$);
SELECT try($$SELECT withdrawal.request('alice', 'USD', 12501, 'sandbox', '{"bank": "x"}', 'wd-a2')$$);
SELECT * FROM withdrawal.balance('alice', 'USD');
SELECT withdrawal_id AS wd_a1 FROM withdrawal.request('alice', 'USD', 2500, 'sandbox', '{"bank": "DE89 3704"}', 'wd-a1') \gset
SELECT account_id, currency, amount, channel, idempotency_key, status, reason, attempts, last_error, processor_ref
  FROM withdrawal.get(:'wd_a1');
SELECT try($$SELECT withdrawal.get('00000000-0000-0000-0000-000000000000')$$);
SELECT try($$SELECT withdrawal.get('ffffffff-0000-4000-8000-000000000000')$$);
SELECT try($$SELECT withdrawal.get('not a uuid')$$);

-- cancel refunds once; what is final cannot move again
SELECT withdrawal.cancel(:'wd_a1', 'changed my mind');
SELECT try_anon(format('SELECT withdrawal.cancel(%L, NULL)', :'wd_a1'));
SELECT try_anon(format('SELECT withdrawal.reject(%L, %L)', :'wd_a1', 'late'));
SELECT try_anon(format('SELECT withdrawal.approve(%L)', :'wd_a1'));
SELECT try_anon(format('SELECT withdrawal.retry(%L)', :'wd_a1'));
SELECT try_anon(format('SELECT withdrawal.resolve(%L, %L, %L)', :'wd_a1', 'not_paid', 'bank statement'));
SELECT * FROM withdrawal.balance('alice', 'USD');
SELECT status, replayed FROM withdrawal.request('alice', 'USD', 2500, 'sandbox', '{"bank": "DE89 3704"}', 'wd-a1');
SELECT status FROM withdrawal.get(:'wd_a1');
SELECT status FROM withdrawal.request('alice', 'USD', 1000, 'sandbox', '{"bank": "x"}', 'wd-a3');
SELECT withdrawal_id AS wd_a3 FROM withdrawal.request('alice', 'USD', 1000, 'sandbox', '{"bank": "x"}', 'wd-a3') \gset
SELECT try_anon(format('SELECT withdrawal.retry(%L)', :'wd_a3'));
SELECT try_anon(format('SELECT withdrawal.approve(%L)', :'wd_a3'));
SELECT try_anon(format('SELECT withdrawal.resolve(%L, %L, %L)', :'wd_a3', 'paid', 'bank statement'));
SELECT withdrawal.reject(:'wd_a3', 'beneficiary unreachable');
SELECT * FROM withdrawal.balance('alice', 'USD');

-- keys are scoped per account: bob's credit-a1 and wd-a1 are his own
SELECT available, replayed FROM withdrawal.credit('bob', 'USD', 10000, 'credit-a1', 'signup bonus');
SELECT available, replayed FROM withdrawal.credit('bob', 'USD', 10000, 'credit-a1', 'signup bonus');
SELECT try($$SELECT withdrawal.credit('bob', 'USD', 10001, 'credit-a1', 'signup bonus')$$);
SELECT status, replayed FROM withdrawal.request('bob', 'USD', 2500, 'sandbox',
	'{"bank": "DE89 3704"}', 'wd-a1', '{"ip": "203.0.113.7", "device_id": "dev-1"}');
SELECT status, replayed FROM withdrawal.request('bob', 'USD', 2500, 'sandbox', '{"bank": "DE89 3704"}', 'wd-a1');
SELECT try($$SELECT withdrawal.request('bob', 'USD', 2600, 'sandbox', '{"bank": "DE89 3704"}', 'wd-a1')$$);
SELECT * FROM withdrawal.balance('bob', 'USD');
SELECT account_id, available, replayed
  FROM unnest(ARRAY['user-42', 'user-43', 'user-44', 'user-45']) account_id,
	   withdrawal.credit(account_id, 'CNY', 500, 'reward:checkin:2026-11-23', 'daily check-in');

-- credit_many: new, replayed, mismatched per item; shares keys with credit()
SELECT item, transfer_id IS NOT NULL AS has_id, available, result
  FROM withdrawal.credit_many(ARRAY['ann', 'bob', 'ann', 'cy'], ARRAY['USD', 'USD', 'USD', 'EUR'],
							  ARRAY[100, 200, 300, 400]::bigint[], ARRAY['k1', 'k1', 'k2', 'k1'],
							  ARRAY[NULL, NULL, NULL, 'campaign 7'],
							  ARRAY[NULL, NULL, NULL, '{"src": "fest"}']::jsonb[]);
SELECT item, available, result
  FROM withdrawal.credit_many(ARRAY['ann', 'bob', 'ann', 'cy'], ARRAY['USD', 'USD', 'USD', 'EUR'],
							  ARRAY[100, 200, 300, 400]::bigint[], ARRAY['k1', 'k1', 'k2', 'k1'],
							  ARRAY[NULL, NULL, NULL, 'campaign 7'],
							  ARRAY[NULL, NULL, NULL, '{"src": "fest"}']::jsonb[]);
SELECT item, available, result, transfer_id IS NULL AS no_id
  FROM withdrawal.credit_many(ARRAY['ann', 'ann', 'dee', 'dee', 'dee', 'cy'],
							  ARRAY['USD', 'USD', 'USD', 'USD', 'USD', 'EUR'],
							  ARRAY[999, 50, 10, 10, 11, 400]::bigint[],
							  ARRAY['k1', 'k3', 'k1', 'k1', 'k1', 'k1'],
							  NULL,
							  ARRAY[NULL, NULL, NULL, NULL, NULL, '{"src": "other"}']::jsonb[]);
SELECT available, replayed FROM withdrawal.credit('dee', 'USD', 10, 'k1');
SELECT result FROM withdrawal.credit_many(ARRAY['ann'], ARRAY['USD'], ARRAY[7]::bigint[], ARRAY['solo']);
SELECT try($$SELECT withdrawal.credit('ann', 'USD', 8, 'solo')$$);
SELECT available, replayed FROM withdrawal.credit('ann', 'USD', 7, 'solo');
SELECT count(*) FILTER (WHERE result = 'new') AS new, max(available) AS last_available
  FROM withdrawal.credit_many(array_fill('eve'::text, ARRAY[200]), array_fill('USD'::text, ARRAY[200]),
							  ARRAY(SELECT g::bigint FROM generate_series(1, 200) g),
							  ARRAY(SELECT md5(g::text) FROM generate_series(1, 200) g));
SELECT n, try(call) FROM (VALUES
	(1, $$SELECT * FROM withdrawal.credit_many(NULL, ARRAY['USD'], ARRAY[1]::bigint[], ARRAY['x'])$$),
	(2, $$SELECT * FROM withdrawal.credit_many(ARRAY['a'], NULL, ARRAY[1]::bigint[], ARRAY['x'])$$),
	(3, $$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'])$$),
	(4, $$SELECT * FROM withdrawal.credit_many(ARRAY['a', NULL], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'])$$),
	(5, $$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[1, 0]::bigint[], ARRAY['x', 'y'])$$),
	(6, $$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'XXX'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'])$$),
	(7, $$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'usd'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'])$$),
	(8, $$SELECT * FROM withdrawal.credit_many(ARRAY['a', E'b\n'], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'])$$),
	(9, $$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', ''])$$),
	(10, $$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', repeat('k', 256)])$$),
	(11, $$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'], ARRAY['r', repeat('r', 1025)])$$),
	(12, $$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'], NULL, ARRAY['{}', '[1]']::jsonb[])$$),
	(13, $$SELECT * FROM withdrawal.credit_many(ARRAY[['a', 'b']], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'])$$),
	(14, $$SELECT * FROM withdrawal.credit_many('{}', '{}', '{}', '{}')$$),
	(15, $$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY[['USD', 'USD']], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'])$$),
	(16, $$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[[1, 2]]::bigint[], ARRAY['x', 'y'])$$),
	(17, $$SELECT * FROM withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[1, 2]::bigint[], ARRAY['x', 'y'], NULL, ARRAY[['{}', '{}']]::jsonb[])$$)
  ) c(n, call) ORDER BY n;
SELECT try_detail($$SELECT withdrawal.credit_many(ARRAY['a', 'b'], ARRAY['USD', 'USD'], ARRAY[1, -5]::bigint[], ARRAY['x', 'y'])$$);
SELECT available FROM withdrawal.credit('fay', 'USD', 9223372036854775000, 'big');
SELECT try($$SELECT * FROM withdrawal.credit_many(ARRAY['gus', 'fay'], ARRAY['USD', 'USD'], ARRAY[5, 900]::bigint[], ARRAY['x', 'y'])$$);
SELECT try($$SELECT * FROM withdrawal.credit_many(ARRAY['hal', 'hal'], ARRAY['USD', 'USD'],
	ARRAY[9223372036854775000, 9223372036854775000]::bigint[], ARRAY['x', 'y'])$$);
SELECT try($$SELECT withdrawal.balance('gus', 'USD')$$);

--
-- 2. bad input (bad_input): NULLs, negatives, huge, overlong, control
--    characters; 22023, 22003, WD007
--
SELECT available FROM withdrawal.credit('mallory', 'USD', 5000, 'bad-seed');
SELECT available FROM withdrawal.credit('mallory', 'JPY', 9223372036854775000, 'bad-seed-jpy');
CREATE TEMP TABLE bad (n serial, call text);
INSERT INTO bad (call) VALUES
	($$SELECT withdrawal.credit(NULL, 'USD', 1, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', NULL, 1, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', NULL, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 1, NULL)$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 1, 'k1', NULL, NULL)$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 0, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', -1, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', -9223372036854775808, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'JPY', 1000, 'k1')$$),
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
	($$SELECT withdrawal.credit('mallory', 'USD', 9223372036854775807, 'k1')$$),
	($$SELECT withdrawal.credit('mallory', 'USD', 9223372036854775808, 'k1')$$),
	($$SELECT withdrawal.request(NULL, 'USD', 100, 'sandbox', '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', NULL, 100, 'sandbox', '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', NULL, 'sandbox', '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, NULL, '{}', 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', NULL, 'k2')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', NULL)$$),
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
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k5', '{"ip": "203.0.113.9/0"}')$$),
	($$SELECT withdrawal.request('mallory', 'USD', 100, 'sandbox', '{}', 'k5', '{"ip": "2001:db8::1/64"}')$$),
	($$SELECT withdrawal.balance(NULL, 'USD')$$),
	($$SELECT withdrawal.balance('mallory', NULL)$$),
	($$SELECT withdrawal.balance(repeat('a', 65), 'USD')$$),
	($$SELECT withdrawal.set_account(NULL, 1)$$),
	($$SELECT withdrawal.set_account('mallory', -1)$$),
	($$SELECT withdrawal.set_account(repeat('a', 65), 1)$$),
	($$SELECT withdrawal.cancel(NULL, 'x')$$),
	($$SELECT withdrawal.cancel('00000000-0000-0000-0000-000000000000', 'x')$$),
	($$SELECT withdrawal.cancel('00000000-0000-0000-0000-000000000000', repeat('r', 1025))$$),
	($$SELECT withdrawal.reject('00000000-0000-0000-0000-000000000000', NULL)$$),
	($$SELECT withdrawal.reject('00000000-0000-0000-0000-000000000000', 'fraud')$$),
	($$SELECT withdrawal.reject(NULL, 'fraud')$$),
	($$SELECT withdrawal.approve(NULL)$$),
	($$SELECT withdrawal.approve('00000000-0000-0000-0000-000000000000')$$),
	($$SELECT withdrawal.retry(NULL)$$),
	($$SELECT withdrawal.retry('00000000-0000-0000-0000-000000000000')$$),
	($$SELECT withdrawal.resolve(NULL, 'paid', 'x')$$),
	($$SELECT withdrawal.resolve('00000000-0000-0000-0000-000000000000', 'bogus', 'x')$$),
	($$SELECT withdrawal.get(NULL)$$),
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
	($$SELECT withdrawal.set_account(E'\u202Amallory', frozen => true)$$);
SELECT n, try(call) FROM bad ORDER BY n;
SELECT * FROM withdrawal.balance('mallory', 'USD');
SELECT * FROM withdrawal.balance('mallory', 'JPY');
-- overflow: refused up front with a clean message, context and all
SELECT available, replayed FROM withdrawal.credit('big', 'JPY', 9223372036854775807, 'big-c1');
SELECT status FROM withdrawal.request('big', 'JPY', 9223372036854775807, 'sandbox', '{}', 'big-r1');
SELECT try_detail($$SELECT withdrawal.credit('big', 'JPY', 9223372036854775807, 'big-c2')$$);
SELECT try_detail($$SELECT withdrawal.credit('big', 'JPY', 1, 'big-c3')$$);
SELECT * FROM withdrawal.balance('big', 'JPY');

--
-- 3. policy (core, policy): limits, channels, frozen accounts
--
SELECT available FROM withdrawal.credit('carl', 'GBP', 100000, 'carl-c1');
SELECT try($$SELECT withdrawal.request('carl', 'GBP', 99, 'sandbox', '{"bank": "x"}', 'carl-w1')$$);
SELECT try($$SELECT withdrawal.request('carl', 'GBP', 5001, 'sandbox', '{"bank": "x"}', 'carl-w1')$$);
SELECT status FROM withdrawal.request('carl', 'GBP', 100, 'sandbox', '{"bank": "x"}', 'carl-w1');
SELECT try($$SELECT withdrawal.request('carl', 'GBP', 100, 'carrier_pigeon', '{"bank": "x"}', 'carl-w2')$$);
SELECT try($$SELECT withdrawal.request('carl', 'GBP', 100, 'closed', '{"bank": "x"}', 'carl-w2')$$);
SELECT withdrawal.set_account('carl', frozen => true);
SELECT try($$SELECT withdrawal.request('carl', 'GBP', 100, 'sandbox', '{"bank": "x"}', 'carl-w2')$$);
SELECT status, replayed FROM withdrawal.request('carl', 'GBP', 100, 'sandbox', '{"bank": "x"}', 'carl-w1');
SELECT withdrawal.set_account('carl', kyc_level => 2, frozen => false);
SELECT status FROM withdrawal.request('carl', 'GBP', 100, 'sandbox', '{"bank": "x"}', 'carl-w2');
SELECT * FROM withdrawal.balance('carl', 'GBP');
SELECT available FROM withdrawal.credit('sven', 'SEK', 10000, 'sven-c1');
SELECT status FROM withdrawal.request('sven', 'SEK', 100, 'sandbox', '{"bank": "x"}', 'sven-w1');
SELECT status FROM withdrawal.request('sven', 'SEK', 100, 'sandbox', '{"bank": "x"}', 'sven-w2');
SELECT try($$SELECT withdrawal.request('sven', 'SEK', 100, 'sandbox', '{"bank": "x"}', 'sven-w3')$$);
SELECT try($$SELECT withdrawal.request('sven', 'SEK', 100, 'sandbox', '{"bank": "x"}', 'sven-w3', '{"ip": "203.0.113.1"}')$$);
SELECT * FROM withdrawal.balance('sven', 'SEK');

--
-- 4. roles (roles, review): each role's grants on the router are the
--    shard's; the four-eyes rule sees the caller
--
SET SESSION AUTHORIZATION parity_app;
SELECT available, replayed FROM withdrawal.credit('rita', 'EUR', 8000, 'roles-c1');
SELECT available, replayed FROM withdrawal.credit('rita', 'CHF', 8000, 'roles-c2');
SELECT status FROM withdrawal.request('rita', 'EUR', 500, 'sandbox', '{"iban": "FR76"}', 'roles-w1');
SELECT status FROM withdrawal.request('rita', 'EUR', 600, 'sandbox', '{"iban": "FR76"}', 'roles-w2');
SELECT status FROM withdrawal.request('rita', 'CHF', 1000, 'sandbox', '{"iban": "CH93"}', 'roles-w3');
SELECT status FROM withdrawal.request('rita', 'CHF', 1500, 'sandbox', '{"iban": "CH93"}', 'roles-w4');
SELECT withdrawal_id AS w3 FROM withdrawal.request('rita', 'CHF', 1000, 'sandbox', '{"iban": "CH93"}', 'roles-w3') \gset
SELECT withdrawal_id AS w4 FROM withdrawal.request('rita', 'CHF', 1500, 'sandbox', '{"iban": "CH93"}', 'roles-w4') \gset
SELECT * FROM withdrawal.balance('rita', 'EUR');
SELECT * FROM withdrawal.balance('rita', 'CHF');
SELECT status FROM withdrawal.get(:'w3');
SELECT count(*) FROM withdrawal.statement('rita', 'EUR');
SELECT try($$SELECT withdrawal.set_account('rita', 9)$$);
SELECT try($$SELECT withdrawal.check_invariants()$$);
SELECT try($$SELECT * FROM withdrawal.monitor_summary$$);
SELECT try($$SELECT withdrawal.monitor_summary()$$);
SELECT try($$SELECT * FROM withdrawal.reconcile('acme')$$);
SELECT try($$SELECT withdrawal.import_settlement('acme', 'x')$$);
SELECT try($$SELECT withdrawal.verify_webhook_signature('acme', '{}', '{}')$$);
SELECT try(format('SELECT withdrawal.approve(%L)', :'w3'));
SELECT try(format('SELECT withdrawal.reject(%L, %L)', :'w3', 'x'));
SELECT try(format('SELECT withdrawal.retry(%L)', :'w3'));
SELECT try(format('SELECT withdrawal.resolve(%L, %L, %L)', :'w3', 'paid', 'x'));
SELECT try(format('SELECT withdrawal.verify_payout_method(%L)', :'w3'));
SELECT withdrawal.cancel((withdrawal.request('rita', 'EUR', 600, 'sandbox', '{"iban": "FR76"}', 'roles-w2')).withdrawal_id, 'user');
RESET SESSION AUTHORIZATION;

-- the requester may not approve (nor may anyone who is not ops); ops may
SET SESSION AUTHORIZATION parity_ops;
SELECT withdrawal.set_account('rita', 1);
SELECT status FROM withdrawal.get(:'w3');
SELECT try($$SELECT withdrawal.credit('rita', 'EUR', 1, 'roles-ops-credit')$$);
SELECT try($$SELECT withdrawal.request('rita', 'EUR', 1, 'sandbox', '{}', 'roles-ops-w')$$);
SELECT try($$SELECT withdrawal.cancel('00000000-0000-0000-0000-000000000000', 'x')$$);
SELECT withdrawal.approve(:'w3', 'documents checked');
SELECT try_anon(format('SELECT withdrawal.approve(%L)', :'w3'));
SELECT withdrawal.reject(:'w4', 'unverified beneficiary');
SELECT try_anon(format('SELECT withdrawal.approve(%L)', :'w4'));
SELECT * FROM withdrawal.balance('rita', 'CHF');
SELECT review, dead, parked FROM withdrawal.monitor_summary;
RESET SESSION AUTHORIZATION;
-- the owner requested this one: it cannot approve it itself
SELECT status FROM withdrawal.request('rita', 'CHF', 2000, 'sandbox', '{"iban": "CH93"}', 'roles-w5');
SELECT withdrawal_id AS w5 FROM withdrawal.request('rita', 'CHF', 2000, 'sandbox', '{"iban": "CH93"}', 'roles-w5') \gset
SELECT try_anon(format('SELECT withdrawal.approve(%L)', :'w5'));
SET SESSION AUTHORIZATION parity_ops2;
SELECT withdrawal.approve(:'w5');
RESET SESSION AUTHORIZATION;

-- at the four-eyes threshold: two distinct approvers; the same one twice
-- does not count; a frozen account's withdrawal cannot be approved
SET SESSION AUTHORIZATION parity_app;
SELECT available FROM withdrawal.credit('nils', 'NOK', 100000, 'nils-c1');
SELECT status FROM withdrawal.request('nils', 'NOK', 4999, 'sandbox', '{"iban": "NO93"}', 'nils-w1');
SELECT status FROM withdrawal.request('nils', 'NOK', 5000, 'sandbox', '{"iban": "NO93"}', 'nils-w2');
SELECT status FROM withdrawal.request('nils', 'NOK', 6000, 'sandbox', '{"iban": "NO93"}', 'nils-w3');
SELECT withdrawal_id AS n1 FROM withdrawal.request('nils', 'NOK', 4999, 'sandbox', '{"iban": "NO93"}', 'nils-w1') \gset
SELECT withdrawal_id AS n2 FROM withdrawal.request('nils', 'NOK', 5000, 'sandbox', '{"iban": "NO93"}', 'nils-w2') \gset
SELECT withdrawal_id AS n3 FROM withdrawal.request('nils', 'NOK', 6000, 'sandbox', '{"iban": "NO93"}', 'nils-w3') \gset
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION parity_ops;
SELECT withdrawal.approve(:'n1', 'looks fine');
SELECT withdrawal.approve(:'n2', 'first look');
SELECT try_anon(format('SELECT withdrawal.approve(%L)', :'n2'));
SELECT status FROM withdrawal.get(:'n2');
SELECT withdrawal.set_account('nils', frozen => true);
SELECT try_anon(format('SELECT withdrawal.approve(%L)', :'n3'));
SELECT try_anon(format('SELECT withdrawal.approve(%L, %L)', :'n3', repeat('x', 1025)));
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION parity_ops2;
SELECT try_anon(format('SELECT withdrawal.approve(%L)', :'n3'));
SELECT withdrawal.reject(:'n3', 'frozen');
SELECT withdrawal.set_account('nils', frozen => false);
SELECT withdrawal.approve(:'n2', 'second look');
SELECT * FROM withdrawal.balance('nils', 'NOK');
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION parity_auditor;
SELECT * FROM withdrawal.balance('rita', 'CHF');
SELECT status FROM withdrawal.get(:'w5');
SELECT kind, bucket, amount, balance_after, withdrawal_status FROM withdrawal.statement('rita', 'CHF');
SELECT check_name, violations FROM withdrawal.check_invariants();
SELECT review, dead, parked FROM withdrawal.monitor_summary;
SELECT try($$SELECT withdrawal.request('rita', 'EUR', 100, 'sandbox', '{}', 'roles-w9')$$);
SELECT try($$SELECT withdrawal.credit('rita', 'EUR', 100, 'roles-c9')$$);
SELECT try($$SELECT withdrawal.approve('00000000-0000-0000-0000-000000000000')$$);
SELECT try($$SELECT withdrawal.add_payout_method('rita', 'sandbox', '{"iban": "FR76"}')$$);
SELECT try($$SELECT * FROM withdrawal.reconcile('acme')$$);
SELECT try($$SELECT * FROM withdrawal.credit_many(ARRAY['rita'], ARRAY['EUR'], ARRAY[1]::bigint[], ARRAY['x'])$$);
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION parity_nobody;
SELECT try($$SELECT withdrawal.balance('rita', 'EUR')$$);
SELECT try($$SELECT withdrawal.credit('rita', 'EUR', 1, 'roles-x')$$);
SELECT try($$SELECT withdrawal.get('00000000-0000-0000-0000-000000000000')$$);
SELECT try($$SELECT * FROM withdrawal.statement('rita', 'EUR')$$);
SELECT try($$SELECT * FROM withdrawal.check_invariants()$$);
SELECT try($$SELECT withdrawal.receive_webhook('acme', '{}', '{}')$$);
RESET SESSION AUTHORIZATION;

--
-- 5. statement (statement): rows, pages, bad arguments
--
SELECT kind, bucket, amount, balance_after, withdrawal_status, credit_id IS NOT NULL AS has_credit
  FROM withdrawal.statement('alice', 'USD');
SELECT kind, bucket, amount FROM withdrawal.statement('alice', 'USD', NULL, 3);
SELECT max(txn_id) AS after FROM withdrawal.statement('alice', 'USD', NULL, 3) \gset
SELECT kind, bucket, amount FROM withdrawal.statement('alice', 'USD', :after, 2);
SELECT count(*) FROM withdrawal.statement('alice', 'USD', 9223372036854775807);
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

--
-- 6. payout methods (methods)
--
SELECT withdrawal.add_payout_method('alice', 'sandbox', '{"iban": "DE89", "name": "Alice"}', 'main') AS alice_m \gset
SELECT withdrawal.add_payout_method('alice', 'sandbox', '{"name": "Alice", "iban": "DE89"}', 'again') = :'alice_m' AS same_method;
SELECT withdrawal.add_payout_method('bob', 'sandbox', '{"iban": "GB33"}', 'bob') AS bob_m \gset
SELECT withdrawal.verify_payout_method(:'alice_m');
SELECT withdrawal.verify_payout_method(:'alice_m') AS again;
SELECT withdrawal.verify_payout_method(:'bob_m');
SELECT withdrawal.remove_payout_method(:'alice_m');
SELECT withdrawal.remove_payout_method(:'alice_m') AS again;
SELECT try_anon(format('SELECT withdrawal.verify_payout_method(%L)', :'alice_m'));
SELECT withdrawal.add_payout_method('alice', 'sandbox', '{"iban": "DE89", "name": "Alice"}', 'rebound') <> :'alice_m' AS new_method;
SELECT try_anon('SELECT withdrawal.verify_payout_method(''00000000-0000-0000-0000-000000000000'')');
SELECT try_anon('SELECT withdrawal.remove_payout_method(''00000000-0000-0000-0000-000000000000'')');
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'sandbox', '[1]', 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'sandbox', NULL, 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method(NULL, 'sandbox', '{}', 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', NULL, '{}', 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'sandbox', '{"a": 1}', repeat('x', 129))$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'sandbox', '{"a": 1}', '')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'sandbox', jsonb_build_object('a', repeat('x', 2100)), 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'sandbox', '{"method_id": "00000000-0000-0000-0000-000000000000"}', 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('nobody', 'sandbox', '{"a": 1}', 'x')$$);
SELECT try_anon($$SELECT withdrawal.add_payout_method('alice', 'nochannel', '{"a": 1}', 'x')$$);
SELECT try_anon($$SELECT withdrawal.remove_payout_method(NULL)$$);
SELECT try_anon($$SELECT withdrawal.verify_payout_method(NULL)$$);

--
-- 7. webhooks (webhook): signatures, bodies, events, duplicates
--
SELECT status FROM withdrawal.request('alice', 'USD', 1000, 'acme_bank', '{"bank": "x"}', 'w-hook');
SELECT withdrawal_id AS w_hook FROM withdrawal.request('alice', 'USD', 1000, 'acme_bank', '{"bank": "x"}', 'w-hook') \gset
SELECT event('e-1', 'payout.paid', :'w_hook') AS body \gset
SELECT withdrawal.verify_webhook_signature('acme', sign(:'body'), :'body');
SELECT try(format('SELECT withdrawal.verify_webhook_signature(%L, %L, %L)', 'acme', sign(:'body', secret => 'wrong'), :'body'));
SELECT try($$SELECT withdrawal.verify_webhook_signature('nope', '{}', '{}')$$);
SELECT anon(withdrawal.receive_webhook('acme', sign(:'body'), :'body')::text);
SELECT anon(withdrawal.receive_webhook('acme', sign(:'body'), :'body')::text);
SELECT try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'acme', sign(:'body', secret => 'wrong'), :'body'));
SELECT try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'acme', sign(:'body', 1), :'body'));
SELECT try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'acme', '{}', :'body'));
SELECT try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'nope', sign(:'body'), :'body'));
SELECT try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'acme', NULL, :'body'));
SELECT name, anon(try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'acme', sign(b), b))) AS outcome
  FROM (VALUES
	('truncated JSON', '{"id": "bad-1", "type": "payout.paid", "data": {"payout_id": '),
	('empty body', ''),
	('not JSON', 'id=bad-2&type=payout.paid'),
	('JSON array', '[{"id": "bad-3"}]'),
	('no event id', '{"type": "payout.paid", "data": {}}'),
	('amount a string', format('{"id": "bad-8", "type": "payout.paid", "data": {"payout_id": "%s", "amount": "1000"}}', :'w_hook')),
	('unknown payout', event('e-2', 'payout.paid', '00000000-0000-4000-8000-000000000000')),
	('unknown payout, other partition', event('e-3', 'payout.paid', 'ffffffff-0000-4000-8000-000000000000')),
	('payout id not a uuid', event('e-4', 'payout.paid', 'po_123')),
	('unknown type', event('e-5', 'payout.note', :'w_hook'))
  ) AS c(name, b) ORDER BY name;
SELECT status FROM withdrawal.get(:'w_hook');
SELECT * FROM withdrawal.balance('alice', 'USD');

--
-- 8. every shard, merged: reconcile, import_settlement, check_invariants,
--    monitor_summary (reconcile)
--
SELECT try($$SELECT * FROM withdrawal.reconcile('nope')$$);
SELECT try($$SELECT withdrawal.import_settlement('nope', 'processor_ref,withdrawal_id,amount,currency,status,settled_at')$$);
SELECT try($$SELECT withdrawal.import_settlement('acme', NULL)$$);
SELECT try($$SELECT withdrawal.import_settlement('acme', 'not,a,settlement,header')$$);
SELECT try($$SELECT * FROM withdrawal.reconcile('acme', now(), now() - interval '1 day')$$);
SELECT kind, count(*) FROM withdrawal.reconcile('acme') GROUP BY kind ORDER BY kind;
-- a settlement report through the router is split by shard: one line of
-- alice's paid payout with a wrong amount, one of an unknown payout
SELECT processor_ref AS hook_ref FROM withdrawal.get(:'w_hook') \gset
SELECT withdrawal.import_settlement('acme', format(E'processor_ref,withdrawal_id,amount,currency,status,settled_at\n%s,%s,1001,USD,paid,%s\nref_x,ffffffff-0000-4000-8000-000000000000,5,USD,paid,%s\n',
	:'hook_ref', :'w_hook', now(), now()));
SELECT kind, ledger_amount, processor_amount, ledger_status, processor_status
  FROM withdrawal.reconcile('acme') ORDER BY kind, processor_amount;
SELECT check_name, violations FROM withdrawal.check_invariants();
-- (not the workers, which are per cluster, nor the audit columns: each
-- shard's audit chain also holds the configuration parity_config.sql
-- wrote there)
SELECT review, dead, parked, last_reconcile_processor, last_reconcile_discrepancies
  FROM withdrawal.monitor_summary;
