--
-- webhook_parity: webhook secret rotation (current and previous secret,
-- the previous one refused from its expiry), Standard Webhooks parity with
-- the SDKs (svix-* headers, signatures compared as base64 text, the
-- specification's test vector through verify_webhook_signature()), and
-- the Stripe event types (transfer.created, partial and full
-- transfer.reversed, payout.canceled).
--
CREATE DATABASE regress_webhook_parity;
\c regress_webhook_parity
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
CREATE EXTENSION pgcrypto;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all

CREATE FUNCTION epoch() RETURNS bigint LANGUAGE sql AS $$
	SELECT floor(extract(epoch FROM clock_timestamp()))::bigint
$$;
CREATE FUNCTION show(r jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT (r->>'result') || ' ' || coalesce(r->>'status', '-')
		|| coalesce(' reason=' || (r->>'reason'), '')
		|| coalesce(' discrepancy=' || (r->>'discrepancy'), '')
$$;

INSERT INTO withdrawal.processor (name, driver, base_url, webhook_secret, webhook_scheme) VALUES
	('acme', 'http', 'https://acme.example', 'regress_http', 'hmac-sha256'),
	('std', 'http', 'https://std.example', 'regress_standard', 'standard'),
	('vector', 'http', 'https://vector.example', 'regress_standard_vector', 'standard'),
	('stripe_test', 'stripe', 'https://stripe.example', 'regress_stripe', 'stripe');
INSERT INTO withdrawal.channel (name, processor) VALUES
	('acme_bank', 'acme'), ('std_ch', 'std'), ('stripe_ch', 'stripe_test');

-- signers, keyed by the secret's value as a processor holds it
CREATE FUNCTION sign_http(secret text, body text, ts bigint) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('X-Withdrawal-Timestamp', ts::text,
		'X-Withdrawal-Signature', 'v1=' || encode(hmac(ts || '.' || body, secret, 'sha256'), 'hex'))
$$;
CREATE FUNCTION std_sig(key text, msg_id text, ts bigint, body text) RETURNS text LANGUAGE sql AS $$
	SELECT 'v1,' || encode(hmac(convert_to(msg_id || '.' || ts || '.' || body, 'UTF8'),
								convert_to(key, 'UTF8'), 'sha256'), 'base64')
$$;
CREATE FUNCTION sign_std(key text, msg_id text, ts bigint, body text, prefix text DEFAULT 'webhook')
RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object(prefix || '-id', msg_id, prefix || '-timestamp', ts::text,
							  prefix || '-signature', std_sig(key, msg_id, ts, body))
$$;
CREATE FUNCTION sign_stripe(body text, ts bigint) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('Stripe-Signature', 't=' || ts || ',v1=' ||
		encode(hmac(ts || '.' || body, 'whsec_stripe_regress_secret', 'sha256'), 'hex'))
$$;
CREATE FUNCTION http_event(evt text, wid uuid) RETURNS text LANGUAGE sql AS $$
	SELECT jsonb_build_object('id', evt, 'type', 'payout.unknown_type',
							  'data', jsonb_build_object('payout_id', wid))::text
$$;
CREATE FUNCTION stripe_event(evt text, typ text, wid uuid, fields jsonb DEFAULT '{}') RETURNS text
LANGUAGE sql AS $$
	SELECT jsonb_build_object('id', evt, 'object', 'event', 'type', typ,
		'data', jsonb_build_object('object', jsonb_build_object(
			'id', 'tr_' || wid, 'object', 'transfer', 'amount', w.amount, 'currency', 'usd',
			'metadata', jsonb_build_object('withdrawal_id', wid)) || fields))::text
	  FROM withdrawal.withdrawal w WHERE w.withdrawal_id = wid
$$;
CREATE FUNCTION wd(key text, amount bigint, channel text) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
	id uuid;
BEGIN
	SELECT withdrawal_id INTO id FROM withdrawal.request('alice', 'USD', amount, channel, '{"bank": "x"}', key);
	PERFORM withdrawal.transition(id, 'dispatching');
	PERFORM withdrawal.transition(id, 'submitted');
	RETURN id;
END
$$;
CREATE FUNCTION st(key text) RETURNS text LANGUAGE sql AS $$
	SELECT status FROM withdrawal.withdrawal WHERE idempotency_key = key
$$;
CREATE FUNCTION id(key text) RETURNS uuid LANGUAGE sql AS $$
	SELECT withdrawal_id FROM withdrawal.withdrawal WHERE idempotency_key = key
$$;
SELECT available FROM withdrawal.credit('alice', 'USD', 1000000, 'fund-1');
SELECT wd('w-1', 1000, 'acme_bank') IS NOT NULL AS created;

--
-- 1. rotation of a webhook secret, from http-secret-1 to http-secret-2,
-- with no webhook refused on the way
--
-- before: the processor signs with the old secret, the only one
SELECT show(withdrawal.receive_webhook('acme', sign_http('http-secret-1', b, epoch()), b))
  FROM http_event('rot-1', id('w-1')) b;
-- a previous secret needs an expiry, and an expiry a previous secret
SELECT try($$UPDATE withdrawal.processor SET webhook_secret_previous = 'regress_http' WHERE name = 'acme'$$);
SELECT try($$UPDATE withdrawal.processor SET webhook_secret_previous_expires_at = now() WHERE name = 'acme'$$);
-- the operator rotates: new current secret, the old one for an hour more
UPDATE withdrawal.processor
   SET webhook_secret = 'regress_http_rotated', webhook_secret_previous = 'regress_http',
	   webhook_secret_previous_expires_at = now() + interval '1 hour'
 WHERE name = 'acme';
-- the processor still signs with the old one, then with both, then the new
SELECT show(withdrawal.receive_webhook('acme', sign_http('http-secret-1', b, epoch()), b))
  FROM http_event('rot-2', id('w-1')) b;
SELECT show(withdrawal.receive_webhook('acme', jsonb_build_object(
	'X-Withdrawal-Timestamp', t::text,
	'X-Withdrawal-Signature', (sign_http('http-secret-1', b, t)->>'X-Withdrawal-Signature') || ', '
		|| (sign_http('http-secret-2', b, t)->>'X-Withdrawal-Signature')), b))
  FROM http_event('rot-3', id('w-1')) b, epoch() t;
SELECT show(withdrawal.receive_webhook('acme', sign_http('http-secret-2', b, epoch()), b))
  FROM http_event('rot-4', id('w-1')) b;
-- which secret verifies, as operators can check while the window lasts
CREATE TABLE old_signed AS
	SELECT sign_http('http-secret-1', b, epoch()) AS h, b, clock_timestamp() AS t
	  FROM http_event('rot-5', id('w-1')) b;
SELECT withdrawal.verify_webhook_signature('acme', h, b) FROM old_signed;
SELECT withdrawal.verify_webhook_signature('acme', sign_http('http-secret-2', b, epoch()), b) FROM old_signed;
-- the window closes: the old secret is refused (WD008), the new one is not
UPDATE withdrawal.processor SET webhook_secret_previous_expires_at = now() - interval '1 second'
 WHERE name = 'acme';
SELECT try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'acme', h, b)) FROM old_signed;
SELECT try(format('SELECT withdrawal.verify_webhook_signature(%L, %L, %L)', 'acme', h, b)) FROM old_signed;
-- ... but it did verify at a time before the expiry
SELECT withdrawal.verify_webhook_signature('acme', h, b, p.webhook_secret_previous_expires_at - interval '1 second')
  FROM old_signed, withdrawal.processor p WHERE p.name = 'acme';
SELECT show(withdrawal.receive_webhook('acme', sign_http('http-secret-2', b, epoch()), b))
  FROM http_event('rot-6', id('w-1')) b;
-- a previous secret missing from the secrets file is a configuration error
UPDATE withdrawal.processor SET webhook_secret_previous = 'regress_not_in_file',
	webhook_secret_previous_expires_at = now() + interval '1 hour' WHERE name = 'acme';
SELECT try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'acme', h, b)) FROM old_signed;
UPDATE withdrawal.processor SET webhook_secret_previous = NULL,
	webhook_secret_previous_expires_at = NULL WHERE name = 'acme';
SELECT event_id, result FROM withdrawal.webhook_event ORDER BY event_id;

-- the standard scheme rotates the same way
UPDATE withdrawal.processor
   SET webhook_secret = 'regress_standard_rotated', webhook_secret_previous = 'regress_standard',
	   webhook_secret_previous_expires_at = now() + interval '1 hour'
 WHERE name = 'std';
SELECT wd('s-1', 900, 'std_ch') IS NOT NULL AS created;
SELECT show(withdrawal.receive_webhook('std', sign_std('secret-key-for-standard-webhooks', 'msg_old', t, b), b))
  FROM http_event('x', id('s-1')) b, epoch() t;
SELECT show(withdrawal.receive_webhook('std', sign_std('new-key-for-standard-webhooks', 'msg_new', t, b), b))
  FROM http_event('x', id('s-1')) b, epoch() t;
UPDATE withdrawal.processor SET webhook_secret_previous_expires_at = now() - interval '1 second'
 WHERE name = 'std';
SELECT try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'std',
	sign_std('secret-key-for-standard-webhooks', 'msg_old2', t, b), b))
  FROM http_event('x', id('s-1')) b, epoch() t;

--
-- 2. Standard Webhooks as the SDKs verify it
--
-- the specification's test vector, at its own time (now it is a replay)
CREATE TABLE vec AS SELECT
	jsonb_build_object('webhook-id', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 'webhook-timestamp', '1614265330',
		'webhook-signature', 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=') AS h,
	'{"test": 2432232314}'::text AS b, to_timestamp(1614265330) AS t;
SELECT withdrawal.verify_webhook_signature('vector', h, b, t) FROM vec;
SELECT try(format('SELECT withdrawal.verify_webhook_signature(%L, %L, %L)', 'vector', h, b)) FROM vec;
SELECT try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'vector', h, b)) FROM vec;
-- Svix's header names, as its verify() takes them
SELECT withdrawal.verify_webhook_signature('vector', jsonb_build_object(
	'svix-id', h->>'webhook-id', 'svix-timestamp', h->>'webhook-timestamp',
	'svix-signature', h->>'webhook-signature'), b, t) FROM vec;
SELECT withdrawal.verify_webhook_signature('vector', jsonb_build_object(
	'Svix-Id', h->>'webhook-id', 'Svix-Timestamp', h->>'webhook-timestamp',
	'Svix-Signature', 'v1,bm9wZQ== ' || (h->>'webhook-signature')), b, t) FROM vec;
-- svix-* headers are used only all three together, as Svix does
SELECT try(format('SELECT withdrawal.verify_webhook_signature(%L, %L, %L, %L)', 'vector',
	jsonb_build_object('svix-id', h->>'webhook-id', 'svix-timestamp', h->>'webhook-timestamp'), b, t)) FROM vec;
-- other spellings of the same 32 bytes are refused, as by the SDKs: the
-- last character of the base64 carries two unused bits (E, F, G and H
-- decode alike here), padding is part of the text
SELECT v, try(format('SELECT withdrawal.verify_webhook_signature(%L, %L, %L, %L)', 'vector',
	jsonb_set(h, '{webhook-signature}', to_jsonb(v)), b, t)) AS outcome
  FROM vec, unnest(ARRAY['v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=',
						 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OH=',
						 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE',
						 'v1,g0hM9SsE-OTPJTGt_tmIKtSyZlE3uFJELVlNIOLJ1OE=']) v;
-- bad input
SELECT try($$SELECT withdrawal.verify_webhook_signature(NULL, '{}', '{}')$$);
SELECT try($$SELECT withdrawal.verify_webhook_signature('vector', NULL, '{}')$$);
SELECT try($$SELECT withdrawal.verify_webhook_signature('vector', '{}', NULL)$$);
SELECT try($$SELECT withdrawal.verify_webhook_signature('nobody', '{}', '{}')$$);
SELECT try($$SELECT withdrawal.verify_webhook_signature('vector', '{}', '{}', 'infinity')$$);
-- ops may verify; the application may not (it would be a signature oracle)
GRANT SELECT ON vec TO withdrawal_ops, withdrawal_app;
SET ROLE withdrawal_ops;
SELECT withdrawal.verify_webhook_signature('vector', h, b, t) FROM vec;
RESET ROLE;
SET ROLE withdrawal_app;
SELECT try($$SELECT withdrawal.verify_webhook_signature('vector', h, b, t) FROM vec$$);
RESET ROLE;
SELECT count(*) AS stored FROM withdrawal.webhook_event WHERE processor = 'vector';

--
-- 3. Stripe: what each event type does to a transfer
--
SELECT wd('t-created', 500, 'stripe_ch') IS NOT NULL AS created;
SELECT wd('t-canceled', 600, 'stripe_ch') IS NOT NULL AS created;
SELECT wd('t-rev', 1000, 'stripe_ch') IS NOT NULL AS created;
CREATE FUNCTION deliver_stripe(evt text, typ text, key text, fields jsonb DEFAULT '{}') RETURNS text
LANGUAGE sql AS $$
	SELECT show(withdrawal.receive_webhook('stripe_test', sign_stripe(b, epoch()), b))
	  FROM stripe_event(evt, typ, id(key), fields) b
$$;
-- transfer.created: the transfer exists, so it was paid
SELECT deliver_stripe('evt_c1', 'transfer.created', 't-created');
-- payout.canceled: the money never left
SELECT deliver_stripe('evt_p1', 'payout.canceled', 't-canceled');
-- transfer.reversed: amount_reversed is the running total of reversals;
-- short of the amount the part comes back (sql/returns.sql), never the
-- whole amount; without a total nothing moves
SELECT deliver_stripe('evt_r0', 'transfer.paid', 't-rev');
SELECT deliver_stripe('evt_r1', 'transfer.reversed', 't-rev', '{"amount_reversed": 300, "reversed": false}');
SELECT deliver_stripe('evt_r2', 'transfer.reversed', 't-rev', '{"reversed": true}');
SELECT deliver_stripe('evt_r3', 'transfer.reversed', 't-rev', '{"amount_reversed": 1001, "reversed": true}');
SELECT deliver_stripe('evt_r4', 'transfer.reversed', 't-rev', '{"amount_reversed": 1000, "reversed": true, "currency": "eur"}');
SELECT key, st(key) FROM unnest(ARRAY['t-created', 't-canceled', 't-rev']) key;
SELECT * FROM withdrawal.balance('alice', 'USD');
-- the rest of the money comes back: returned once, the 700 left
SELECT deliver_stripe('evt_r5', 'transfer.reversed', 't-rev', '{"amount_reversed": 1000, "reversed": true}');
SELECT deliver_stripe('evt_r6', 'transfer.reversed', 't-rev', '{"amount_reversed": 1000, "reversed": true}');
-- a partial reversal delivered late changes nothing either
SELECT deliver_stripe('evt_r7', 'transfer.reversed', 't-rev', '{"amount_reversed": 300, "reversed": false}');
SELECT st('t-rev'), * FROM withdrawal.balance('alice', 'USD');
SELECT event_id, event_type, result, discrepancy, reason, status_after
  FROM withdrawal.webhook_event WHERE processor = 'stripe_test' ORDER BY event_id;
SELECT invariants();

\c postgres
DROP DATABASE regress_webhook_parity;
