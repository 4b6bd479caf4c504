--
-- webhook: receive_webhook() signature schemes, bad input, deduplication,
-- every transition and out-of-order pair, discrepancies; the books stay
-- consistent after each scenario.  Signatures are computed here with
-- pgcrypto's hmac() from the secrets in test/regress-secrets; the
-- processors' own SDKs are exercised by test/t/050_webhook_interop.pl.
--
CREATE DATABASE regress_webhook;
\c regress_webhook
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
CREATE EXTENSION pgcrypto;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\i :abs_srcdir/sql/webhook_helpers.psql
\set ECHO all

SELECT available FROM withdrawal.credit('alice', 'USD', 1000000, 'fund-1');

--
-- 1. bad input: nothing is stored
--
SELECT try($$SELECT withdrawal.receive_webhook(NULL, '{}', '{}')$$);
SELECT try($$SELECT withdrawal.receive_webhook('acme', NULL, '{}')$$);
SELECT try($$SELECT withdrawal.receive_webhook('acme', '{}', NULL)$$);
SELECT try($$SELECT withdrawal.receive_webhook('acme', '[]', '{}')$$);
SELECT try($$SELECT withdrawal.receive_webhook('nobody', '{}', '{}')$$);
SELECT try($$SELECT withdrawal.receive_webhook('nosecret', '{}', '{}')$$);
SELECT try($$SELECT withdrawal.receive_webhook('lost', '{}', '{}')$$);
SELECT try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'badstd',
	sign('std', '{}', epoch()), '{}'));
-- a body over 1 MB is refused before anything else
SELECT try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'acme',
	sign('acme', b, epoch()), b))
  FROM (SELECT '{"id": "big", "pad": "' || repeat('x', 1048576) || '"}' AS b) s;
-- non-UTF-8 bytes never reach the function: the server refuses the text
SELECT try($$SELECT withdrawal.receive_webhook('acme', '{}', convert_from('\xff7b7d'::bytea, 'UTF8'))$$);
SELECT count(*) AS stored_events FROM withdrawal.webhook_event;

--
-- 2. signatures: each failure is WD008 and stores nothing
--
SELECT wd('w-sig', 1000) IS NOT NULL AS created;
CREATE TABLE sig_cases (name text, processor text, headers jsonb, body text);
WITH e AS (SELECT event('acme', 'sig-1', 'payout.paid', id('w-sig')::text) AS b, epoch() AS t)
INSERT INTO sig_cases
SELECT 'missing signature header', 'acme', sign('acme', b, t) - 'X-Withdrawal-Signature', b FROM e UNION ALL
SELECT 'missing timestamp header', 'acme', sign('acme', b, t) - 'X-Withdrawal-Timestamp', b FROM e UNION ALL
SELECT 'no headers', 'acme', '{}', b FROM e UNION ALL
SELECT 'tampered body byte', 'acme', sign('acme', b, t), replace(b, '"sig-1"', '"sig-2"') FROM e UNION ALL
SELECT 'tampered timestamp', 'acme', jsonb_set(sign('acme', b, t), '{X-Withdrawal-Timestamp}', to_jsonb((t + 1)::text)), b FROM e UNION ALL
SELECT 'wrong secret', 'acme', sign('acme', b, t, secret_override => 'http-secret-X'), b FROM e UNION ALL
SELECT 'signature not hex', 'acme', jsonb_set(sign('acme', b, t), '{X-Withdrawal-Signature}', '"v1=zz"'), b FROM e UNION ALL
SELECT 'upper-case scheme prefix', 'acme', jsonb_set(sign('acme', b, t), '{X-Withdrawal-Signature}', to_jsonb(replace(sign('acme', b, t)->>'X-Withdrawal-Signature', 'v1=', 'V1='))), b FROM e UNION ALL
SELECT 'replay: 302 s old', 'acme', sign('acme', b, t - 302), b FROM e UNION ALL
SELECT 'from the future: 302 s ahead', 'acme', sign('acme', b, t + 302), b FROM e UNION ALL
SELECT 'timestamp not a number', 'acme', jsonb_set(sign('acme', b, t), '{X-Withdrawal-Timestamp}', '"12a"'), b FROM e UNION ALL
SELECT 'timestamp not a string', 'acme', jsonb_set(sign('acme', b, t), '{X-Withdrawal-Timestamp}', to_jsonb(t)), b FROM e UNION ALL
SELECT 'header twice, two spellings', 'acme', sign('acme', b, t) || jsonb_build_object('x-withdrawal-signature', 'v1=00'), b FROM e UNION ALL
SELECT 'stripe: no v1', 'stripe_test', jsonb_build_object('Stripe-Signature', 't=' || t), b FROM e UNION ALL
SELECT 'stripe: v0 only', 'stripe_test', jsonb_build_object('Stripe-Signature', replace(sign('stripe_test', b, t)->>'Stripe-Signature', 'v1=', 'v0=')), b FROM e UNION ALL
SELECT 'stripe: no timestamp', 'stripe_test', jsonb_build_object('Stripe-Signature', regexp_replace(sign('stripe_test', b, t)->>'Stripe-Signature', 't=[0-9]+,', '')), b FROM e UNION ALL
SELECT 'stripe: two timestamps', 'stripe_test', jsonb_build_object('Stripe-Signature', 't=' || t || ',' || (sign('stripe_test', b, t)->>'Stripe-Signature')), b FROM e UNION ALL
SELECT 'stripe: replay 400 s old', 'stripe_test', sign('stripe_test', b, t - 400), b FROM e UNION ALL
SELECT 'stripe: signed with the http scheme', 'stripe_test', sign('acme', b, t), b FROM e UNION ALL
SELECT 'standard: missing webhook-id', 'std', sign('std', b, t) - 'webhook-id', b FROM e UNION ALL
SELECT 'standard: other webhook-id', 'std', jsonb_set(sign('std', b, t), '{webhook-id}', '"msg_2"'), b FROM e UNION ALL
SELECT 'standard: v1 not base64', 'std', jsonb_set(sign('std', b, t), '{webhook-signature}', '"v1,@@@@"'), b FROM e UNION ALL
SELECT 'standard: wrong key', 'std', sign('std', b, t, secret_override => 'another-key'), b FROM e UNION ALL
SELECT 'standard: old timestamp', 'std', sign('std', b, t - 1000), b FROM e;
SELECT name, try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', processor, headers, body)) AS outcome
  FROM sig_cases ORDER BY name;
SELECT count(*) AS stored_events, st('w-sig') AS status FROM withdrawal.webhook_event;
SELECT * FROM withdrawal.balance('alice', 'USD');

-- what verifies: 290 s old, lower-case header names, a rotated secret
-- next to the current one (any v1 may match), several standard signatures
SELECT show(withdrawal.receive_webhook('acme', sign('acme', b, epoch() - 290), b))
  FROM event('acme', 'ok-old', 'payout.unknown_type', id('w-sig')::text) b;
SELECT show(withdrawal.receive_webhook('acme',
	(SELECT jsonb_object_agg(lower(k), v) FROM jsonb_each(sign('acme', b, epoch())) x(k, v)), b))
  FROM event('acme', 'ok-lower', 'payout.unknown_type', id('w-sig')::text) b;
SELECT show(withdrawal.receive_webhook('acme', jsonb_build_object(
	'X-Withdrawal-Timestamp', t::text,
	'X-Withdrawal-Signature', 'v1=' || encode(hmac(t || '.' || b, 'http-secret-old', 'sha256'), 'hex')
		|| ', ' || (sign('acme', b, t)->>'X-Withdrawal-Signature')), b))
  FROM event('acme', 'ok-rotated', 'payout.unknown_type', id('w-sig')::text) b, epoch() t;
SELECT show(withdrawal.receive_webhook('stripe_test', jsonb_build_object('Stripe-Signature',
	't=' || t || ',v1=' || repeat('0', 64) || ',' || split_part(sign('stripe_test', b, t)->>'Stripe-Signature', ',', 2)), b))
  FROM event('stripe_test', 'evt_ok_two', 'transfer.created', id('w-sig')::text) b, epoch() t;
SELECT show(withdrawal.receive_webhook('std', jsonb_set(sign('std', b, t, 'msg_two'), '{webhook-signature}',
	to_jsonb('v1,' || encode(sha256('x'), 'base64') || ' ' || (sign('std', b, t, 'msg_two')->>'webhook-signature'))), b))
  FROM event('std', 'ok-std-two', 'payout.unknown_type', id('w-sig')::text) b, epoch() t;
SELECT invariants();

--
-- 3. bodies that verify but are not events: 22023, nothing stored
--
SELECT name, try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'acme', sign('acme', b, epoch()), b)) AS outcome
  FROM (VALUES
	('truncated JSON', '{"id": "bad-1", "type": "payout.paid", "data": {"payout_id": '),
	('empty body', ''),
	('not JSON', 'id=bad-2&type=payout.paid'),
	('JSON array', '[{"id": "bad-3"}]'),
	('JSON string', '"bad-4"'),
	('lone surrogate escape', '{"id": "bad-5", "type": "\ud800"}'),
	('NUL escape', '{"id": "bad-6", "type": "\u0000"}'),
	('no event id', '{"type": "payout.paid", "data": {}}'),
	('event id not a string', '{"id": {"x": 1}, "type": "payout.paid"}'),
	('amount not an integer', format('{"id": "bad-7", "type": "payout.paid", "data": {"payout_id": "%s", "amount": 10.5}}', id('w-sig'))),
	('amount a string', format('{"id": "bad-8", "type": "payout.paid", "data": {"payout_id": "%s", "amount": "1000"}}', id('w-sig'))),
	-- the amount is read as written: jsonb would turn these into 1000
	('amount with an exponent', format('{"id": "bad-9", "type": "payout.paid", "data": {"payout_id": "%s", "amount": 1e3}}', id('w-sig'))),
	('amount with an exponent and a fraction', format('{"id": "bad-10", "type": "payout.paid", "data": {"payout_id": "%s", "amount": 1.000E+3}}', id('w-sig'))),
	('amount with a zero fraction', format('{"id": "bad-11", "type": "payout.paid", "data": {"payout_id": "%s", "amount": 1000.0}}', id('w-sig'))),
	('amount: the last of duplicate keys', format('{"id": "bad-12", "type": "payout.paid", "data": {"payout_id": "%s", "amount": 1000, "amount": 1e3}}', id('w-sig'))),
	('nesting too deep', repeat('[', 100000)),
	('nesting too deep inside an event', '{"id": "bad-13", "type": "payout.paid", "data": ' || repeat('{"a": ', 100000) || '1' || repeat('}', 100000) || '}')
  ) AS c(name, b) ORDER BY name;
-- nearly 1 MB of body verifies and is kept (ignored: unknown type)
SELECT show(withdrawal.receive_webhook('acme', sign('acme', b, epoch()), b)), octet_length(b)
  FROM (SELECT '{"id": "big-ok", "type": "payout.note", "pad": "' || repeat('y', 1048000) || '"}' AS b) s;
SELECT count(*) AS stored_events, st('w-sig') AS status FROM withdrawal.webhook_event;
SELECT invariants();

--
-- 4. the normal transitions, and duplicates
--
SELECT wd('w-paid', 1000) IS NOT NULL AS created;
SELECT * FROM withdrawal.balance('alice', 'USD');
SELECT deliver('acme', 'e-paid', 'payout.paid', id('w-paid'));
SELECT * FROM withdrawal.balance('alice', 'USD');
-- the same event again: duplicate, nothing moves
SELECT deliver('acme', 'e-paid', 'payout.paid', id('w-paid'));
SELECT show(withdrawal.receive_webhook('acme', sign('acme', b, epoch() - 10), b))
  FROM event('acme', 'e-paid', 'payout.paid', id('w-paid')::text) b;
SELECT (withdrawal.receive_webhook('acme', sign('acme', b, epoch()), b)->>'withdrawal_id')::uuid = id('w-paid') AS duplicate_names_withdrawal
  FROM event('acme', 'e-paid', 'payout.paid', id('w-paid')::text) b;
SELECT processor_ref FROM withdrawal.withdrawal WHERE withdrawal_id = id('w-paid');
SELECT * FROM withdrawal.balance('alice', 'USD');
-- returned after paid: credited back once
SELECT deliver('acme', 'e-ret', 'payout.returned', id('w-paid'));
SELECT deliver('acme', 'e-ret-2', 'payout.returned', id('w-paid'));
SELECT * FROM withdrawal.balance('alice', 'USD');
-- failed from submitted: refunded once
SELECT wd('w-fail', 2000) IS NOT NULL AS created;
SELECT deliver('acme', 'e-fail', 'payout.failed', id('w-fail'));
SELECT deliver('acme', 'e-fail-2', 'payout.failed', id('w-fail'));
SELECT * FROM withdrawal.balance('alice', 'USD');
-- from dispatching, dead and queued (an earlier attempt reached the processor)
SELECT wd('w-disp', 300, 'dispatching') IS NOT NULL AS created;
SELECT deliver('acme', 'e-disp', 'payout.paid', id('w-disp'));
SELECT wd('w-dead', 400, 'dead') IS NOT NULL AS created;
SELECT deliver('acme', 'e-dead', 'payout.paid', id('w-dead'));
SELECT wd('w-dead2', 450, 'dead') IS NOT NULL AS created;
SELECT deliver('acme', 'e-dead2', 'payout.failed', id('w-dead2'));
SELECT wd('w-queued', 500, 'queued') IS NOT NULL AS created;
SELECT deliver('acme', 'e-queued', 'payout.paid', id('w-queued'));
SELECT count(*) AS outbox_rows FROM withdrawal.outbox WHERE withdrawal_id = id('w-queued');
SELECT wd('w-queued2', 550, 'queued') IS NOT NULL AS created;
SELECT deliver('acme', 'e-queued2', 'payout.failed', id('w-queued2'));
SELECT * FROM withdrawal.balance('alice', 'USD');
SELECT invariants();

--
-- 5. out of order
--
-- failed after paid: the payout came back (returned), credited once
SELECT wd('o-pf', 610) IS NOT NULL AS created;
SELECT deliver('acme', 'o-pf-1', 'payout.paid', id('o-pf'));
SELECT deliver('acme', 'o-pf-2', 'payout.failed', id('o-pf'));
-- paid after failed: the refund stands, nothing moves, a discrepancy
SELECT wd('o-fp', 620) IS NOT NULL AS created;
SELECT deliver('acme', 'o-fp-1', 'payout.failed', id('o-fp'));
SELECT * FROM withdrawal.balance('alice', 'USD');
SELECT deliver('acme', 'o-fp-2', 'payout.paid', id('o-fp'));
SELECT * FROM withdrawal.balance('alice', 'USD');
-- returned before paid: settled then returned; the late paid changes nothing
SELECT wd('o-rp', 630) IS NOT NULL AS created;
SELECT deliver('acme', 'o-rp-1', 'payout.returned', id('o-rp'));
SELECT deliver('acme', 'o-rp-2', 'payout.paid', id('o-rp'));
SELECT deliver('acme', 'o-rp-3', 'payout.failed', id('o-rp'));
-- returned on a queued payout
SELECT wd('o-rq', 635, 'queued') IS NOT NULL AS created;
SELECT deliver('acme', 'o-rq-1', 'payout.returned', id('o-rq'));
-- returned after failed: already refunded, a discrepancy
SELECT wd('o-fr', 640) IS NOT NULL AS created;
SELECT deliver('acme', 'o-fr-1', 'payout.failed', id('o-fr'));
SELECT deliver('acme', 'o-fr-2', 'payout.returned', id('o-fr'));
-- paid after the user canceled (never dispatched): a discrepancy
SELECT wd('o-cp', 650, 'canceled') IS NOT NULL AS created;
SELECT deliver('acme', 'o-cp-1', 'payout.paid', id('o-cp'));
-- an event for a withdrawal still in review: never sent, a discrepancy
UPDATE withdrawal.policy SET review_threshold = 5000 WHERE currency = '*';
SELECT wd('o-rv', 6000, 'review') IS NOT NULL AS created, st('o-rv');
UPDATE withdrawal.policy SET review_threshold = NULL WHERE currency = '*';
SELECT deliver('acme', 'o-rv-1', 'payout.paid', id('o-rv'));
SELECT key, st(key) FROM unnest(ARRAY['o-pf', 'o-fp', 'o-rp', 'o-rq', 'o-fr', 'o-cp', 'o-rv']) key;
SELECT * FROM withdrawal.balance('alice', 'USD');
SELECT invariants();

--
-- 6. amount and currency must match the withdrawal
--
SELECT wd('m-amt', 700) IS NOT NULL AS created;
SELECT deliver('acme', 'm-amt-1', 'payout.paid', id('m-amt'), 701);
SELECT deliver('acme', 'm-cur-1', 'payout.paid', id('m-amt'), 700, 'EUR');
SELECT deliver('acme', 'm-amt-2', 'payout.failed', id('m-amt'), 7);
SELECT st('m-amt');
-- the right event still applies afterwards
SELECT deliver('acme', 'm-amt-3', 'payout.paid', id('m-amt'));
SELECT invariants();

--
-- 7. events that change nothing are kept for inspection
--
SELECT deliver('acme', 'i-unknown-wd', 'payout.paid', '00000000-0000-4000-8000-000000000000');
SELECT show(withdrawal.receive_webhook('acme', sign('acme', b, epoch()), b))
  FROM (SELECT '{"id": "i-not-uuid", "type": "payout.paid", "data": {"payout_id": "12345", "amount": 1}}' AS b) s;
SELECT show(withdrawal.receive_webhook('acme', sign('acme', b, epoch()), b))
  FROM (SELECT '{"id": "i-no-data", "type": "payout.paid"}' AS b) s;
SELECT deliver('acme', 'i-type', 'payout.created', id('m-amt'));
-- a withdrawal paid through another processor
SELECT wd('i-other', 800, 'submitted', 'stripe_ch') IS NOT NULL AS created;
SELECT deliver('acme', 'i-other-1', 'payout.paid', id('i-other'));
SELECT st('i-other');
SELECT invariants();

--
-- 8. the stripe and standard schemes end to end
--
-- Stripe's amount (data.object.amount) is read as written too
SELECT try(format('SELECT withdrawal.receive_webhook(%L, %L, %L)', 'stripe_test', sign('stripe_test', b, epoch()), b))
  FROM (SELECT format('{"id": "evt_s0", "type": "transfer.paid", "data": {"object": {"id": "tr_s0", "amount": 8e2, "currency": "usd", "metadata": {"withdrawal_id": "%s"}}}}', id('i-other')) AS b) s;
SELECT deliver('stripe_test', 'evt_s1', 'transfer.paid', id('i-other'));
SELECT deliver('stripe_test', 'evt_s1', 'transfer.paid', id('i-other'));
SELECT deliver('stripe_test', 'evt_s2', 'transfer.reversed', id('i-other'));
-- the http protocol's event types mean nothing to a stripe processor
SELECT wd('s-2', 810, 'submitted', 'stripe_ch') IS NOT NULL AS created;
SELECT deliver('stripe_test', 'evt_s3', 'payout.returned', id('s-2'));
SELECT deliver('stripe_test', 'evt_s4', 'transfer.failed', id('s-2'), 810, 'usd');
SELECT wd('d-1', 900, 'submitted', 'std_ch') IS NOT NULL AS created;
SELECT deliver('std', 'std-1', 'payout.paid', id('d-1'));
-- Standard Webhooks deduplicate on webhook-id: same id, other body id
SELECT show(withdrawal.receive_webhook('std', sign('std', b, epoch(), 'msg_std-1'), b))
  FROM event('std', 'std-1-again', 'payout.returned', id('d-1')::text) b;
SELECT key, st(key) FROM unnest(ARRAY['i-other', 's-2', 'd-1']) key;
SELECT invariants();

--
-- 9. what was kept, and the audit trail
--
SELECT processor, event_id, event_type, result, discrepancy, reason, status_before, status_after
  FROM withdrawal.webhook_event ORDER BY processor, event_id;
SELECT action, count(*) FROM withdrawal.audit_log
 WHERE action IN ('webhook', 'webhook_discrepancy') GROUP BY action ORDER BY action;
SELECT try($$UPDATE withdrawal.webhook_event SET result = 'applied'$$);
SELECT try($$DELETE FROM withdrawal.webhook_event$$);

--
-- 10. roles: the application receives webhooks, nobody else
--
CREATE TABLE app_call AS
	SELECT sign('acme', b, epoch()) AS h, b FROM event('acme', 'r-app', 'payout.paid', id('w-sig')::text) b;
GRANT SELECT ON app_call TO withdrawal_app, withdrawal_auditor;
SET ROLE withdrawal_app;
SELECT show(withdrawal.receive_webhook('acme', h, b)) FROM app_call;
SELECT try($$SELECT count(*) FROM withdrawal.webhook_event$$);
RESET ROLE;
SET ROLE withdrawal_auditor;
SELECT try($$SELECT withdrawal.receive_webhook('acme', h, b) FROM app_call$$);
SELECT count(*) > 0 AS auditor_reads_events FROM withdrawal.webhook_event;
RESET ROLE;
SELECT st('w-sig');
SELECT invariants();

\c postgres
DROP DATABASE regress_webhook;

--
-- 11. a SQL_ASCII database keeps any bytes in text: a body that is not
-- UTF-8, or a \u escape the database cannot hold, is still 22023
--
CREATE DATABASE regress_webhook_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
\c regress_webhook_ascii
CREATE EXTENSION withdrawal;
CREATE EXTENSION pgcrypto;
SET client_min_messages = warning;
INSERT INTO withdrawal.processor (name, driver, base_url, webhook_secret, webhook_scheme) VALUES
	('acme', 'http', 'https://acme.example', 'regress_http', 'hmac-sha256');
-- deliver_raw(): signs and receives a body of raw bytes; 'ok' or the error
CREATE FUNCTION deliver_raw(body bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	b text := convert_from(body, 'SQL_ASCII');
	t bigint := floor(extract(epoch FROM clock_timestamp()));
BEGIN
	PERFORM withdrawal.receive_webhook('acme', jsonb_build_object('X-Withdrawal-Timestamp', t::text,
		'X-Withdrawal-Signature', 'v1=' || encode(hmac(t || '.' || b, 'http-secret-1', 'sha256'), 'hex')), b);
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SELECT deliver_raw(convert_to('{"id": "ascii-1", "type": "payout.note"}', 'SQL_ASCII')) AS plain_ascii;
SELECT deliver_raw('\x7b226964223a2022617363696920ff222c202274797065223a20227061796f75742e6e6f7465227d') AS not_utf8;
SELECT deliver_raw(convert_to('{"id": "ascii-3", "type": "caf\u00e9"}', 'SQL_ASCII')) AS escape_beyond_ascii;
SELECT event_id FROM withdrawal.webhook_event ORDER BY event_id;
\c postgres
DROP DATABASE regress_webhook_ascii;
