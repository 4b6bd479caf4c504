--
-- policy: every rule of the risk policy and of channels, exactly at each
-- threshold and one minor unit on either side.  Each refused request also
-- shows that nothing changed (balances, ledger, audit log, withdrawals).
-- Time-dependent rules are evaluated at fixed instants or inside one
-- transaction (where now() is fixed), never against the wall clock.
--
CREATE DATABASE regress_policy;
\c regress_policy
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all
SET timezone = 'UTC';

-- rq(): request() returning 'status' or 'status reason'
CREATE FUNCTION rq(acct text, amt bigint, key text, ctx jsonb DEFAULT '{}',
	dest jsonb DEFAULT '{"iban": "DE00 0000"}', ch text DEFAULT 'sandbox', cur text DEFAULT 'USD')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	SELECT * INTO r FROM withdrawal.request(acct, cur, amt, ch, dest, key, ctx);
	RETURN r.status || coalesce(' ' || (SELECT w.reason FROM withdrawal.withdrawal w
										 WHERE w.withdrawal_id = r.withdrawal_id), '');
END
$$;

SELECT count(withdrawal.credit(a, 'USD', 1000000, 'seed-' || a))
  FROM unnest(ARRAY['mina', 'revy', 'kyla', 'dana', 'dora', 'vera', 'vic',
					'dev1', 'dev2', 'dev3', 'ipa', 'ipb', 'ipc', 'blk', 'win', 'frz']) a;
SELECT withdrawal.credit('mina', 'EUR', 1000, 'seed-mina-eur') IS NOT NULL AS eur;

-- The USD policy used below; the '*' row stays permissive.  The time zone
-- is chosen so that it is around noon there now, far from any midnight,
-- and is not UTC, so that daily limits really run in the policy's zone.
INSERT INTO withdrawal.policy (currency, timezone)
SELECT 'USD', CASE WHEN o = 0 THEN 'Etc/GMT-1'
				   WHEN o > 0 THEN 'Etc/GMT-' || o ELSE 'Etc/GMT+' || -o END
  FROM (SELECT 12 - extract(hour FROM now() AT TIME ZONE 'UTC')::int AS o) s;
SELECT extract(hour FROM now() AT TIME ZONE timezone) BETWEEN 12 AND 13 AS near_noon,
	   timezone <> 'UTC' AS not_utc
  FROM withdrawal.policy WHERE currency = 'USD';

--
-- min_amount and max_amount: WD003, nothing recorded
--
UPDATE withdrawal.policy SET min_amount = 100, max_amount = 10000 WHERE currency = 'USD';
SELECT refused($$SELECT rq('mina', 99, 'min-99')$$);
SELECT rq('mina', 100, 'min-100');
SELECT rq('mina', 101, 'min-101');
SELECT rq('mina', 9999, 'max-9999');
SELECT rq('mina', 10000, 'max-10000');
SELECT refused($$SELECT rq('mina', 10001, 'max-10001')$$);
-- a currency without a row of its own falls back to '*' (minimum 1)
SELECT rq('mina', 1, 'eur-1', cur => 'EUR');
UPDATE withdrawal.policy SET min_amount = 1, max_amount = NULL WHERE currency = 'USD';

--
-- review_threshold: at or above, held for review (funds held, no outbox row)
--
UPDATE withdrawal.policy SET review_threshold = 5000 WHERE currency = 'USD';
SELECT rq('revy', 4999, 'rev-4999');
SELECT rq('revy', 5000, 'rev-5000');
SELECT rq('revy', 5001, 'rev-5001');
SELECT * FROM withdrawal.balance('revy', 'USD');
SELECT w.idempotency_key, w.status, o.withdrawal_id IS NOT NULL AS in_outbox
  FROM withdrawal.withdrawal w LEFT JOIN withdrawal.outbox o USING (withdrawal_id)
 WHERE w.account_id = 'revy' ORDER BY w.amount;
UPDATE withdrawal.policy SET review_threshold = NULL WHERE currency = 'USD';

--
-- KYC: at or above kyc_threshold the account needs kyc_level_required;
-- a hard error (WD003) that the user fixes by completing verification
--
UPDATE withdrawal.policy SET kyc_threshold = 3000, kyc_level_required = 2 WHERE currency = 'USD';
SELECT withdrawal.set_account('kyla', kyc_level => 1);
SELECT rq('kyla', 2999, 'kyc-2999');
SELECT refused($$SELECT rq('kyla', 3000, 'kyc-3000')$$);
SELECT refused($$SELECT rq('kyla', 3001, 'kyc-3001')$$);
SELECT withdrawal.set_account('kyla', kyc_level => 2);
SELECT rq('kyla', 3000, 'kyc-3000');
SELECT rq('kyla', 3001, 'kyc-3001');
UPDATE withdrawal.policy SET kyc_threshold = NULL WHERE currency = 'USD';

--
-- Daily count: the limit includes this request; withdrawals refunded
-- (canceled, rejected, failed) give their slot back
--
UPDATE withdrawal.policy SET daily_count_limit = 3 WHERE currency = 'USD';
SELECT rq('dana', 10, 'dc-1'), rq('dana', 10, 'dc-2'), rq('dana', 10, 'dc-3');
SELECT refused($$SELECT rq('dana', 10, 'dc-4')$$);
SELECT withdrawal.cancel(withdrawal_id, 'oops') FROM withdrawal.withdrawal WHERE idempotency_key = 'dc-3';
SELECT rq('dana', 10, 'dc-4');
SELECT refused($$SELECT rq('dana', 10, 'dc-5')$$);
-- other currencies have their own count (EUR falls back to '*')
SELECT withdrawal.credit('dana', 'EUR', 100, 'seed-dana-eur') IS NOT NULL AS eur;
SELECT rq('dana', 10, 'dc-eur', cur => 'EUR');
-- the day starts at midnight in the policy's time zone: a withdrawal one
-- microsecond before it is yesterday's, one exactly at it is today's
BEGIN;
UPDATE withdrawal.withdrawal SET created_at = withdrawal.policy_day_start('USD', now()) - interval '1 microsecond'
 WHERE idempotency_key = 'dc-1';
SELECT rq('dana', 10, 'dc-5');
SELECT refused($$SELECT rq('dana', 10, 'dc-6')$$);
UPDATE withdrawal.withdrawal SET created_at = withdrawal.policy_day_start('USD', now())
 WHERE idempotency_key = 'dc-1';
SELECT refused($$SELECT rq('dana', 10, 'dc-5b')$$);
ROLLBACK;
UPDATE withdrawal.policy SET daily_count_limit = NULL WHERE currency = 'USD';

-- policy_day_start() at fixed instants, in a zone with an offset
INSERT INTO withdrawal.policy (currency, timezone) VALUES ('CNY', 'Asia/Shanghai');
SELECT withdrawal.policy_day_start('CNY', '2026-03-01 15:59:59.999999+00') AS before_local_midnight,
	   withdrawal.policy_day_start('CNY', '2026-03-01 16:00:00+00') AS at_local_midnight,
	   withdrawal.policy_day_start('EUR', '2026-03-01 16:00:00+00') AS default_utc;

--
-- Daily amount: the sum including this request may reach the limit, not
-- exceed it
--
UPDATE withdrawal.policy SET daily_amount_limit = 1000 WHERE currency = 'USD';
SELECT rq('dora', 600, 'da-600');
SELECT refused($$SELECT rq('dora', 401, 'da-401')$$);
SELECT rq('dora', 400, 'da-400');
SELECT refused($$SELECT rq('dora', 1, 'da-1')$$);
-- rejected by ops: refunded, so it no longer counts
SELECT withdrawal.reject(withdrawal_id, 'test') FROM withdrawal.withdrawal WHERE idempotency_key = 'da-400';
SELECT rq('dora', 400, 'da-400b');
UPDATE withdrawal.policy SET daily_amount_limit = NULL WHERE currency = 'USD';

--
-- Velocity per account and currency over a sliding window (all
-- statuses): a withdrawal exactly one window old has left the window
--
UPDATE withdrawal.policy SET velocity_window = '1 hour', velocity_account_limit = 2 WHERE currency = 'USD';
SELECT rq('vera', 10, 'va-1'), rq('vera', 10, 'va-2');
SELECT refused($$SELECT rq('vera', 10, 'va-3')$$);
BEGIN;
UPDATE withdrawal.withdrawal SET created_at = now() - interval '1 hour' WHERE idempotency_key = 'va-1';
SELECT rq('vera', 10, 'va-3');
ROLLBACK;
BEGIN;
UPDATE withdrawal.withdrawal SET created_at = now() - interval '1 hour' + interval '1 microsecond'
 WHERE idempotency_key = 'va-1';
SELECT refused($$SELECT rq('vera', 10, 'va-3')$$);
ROLLBACK;
-- requests earlier in the same statement count too
SELECT refused($$SELECT rq('vic', 10, 'vv-1'), rq('vic', 10, 'vv-2'), rq('vic', 10, 'vv-3')$$);
SELECT rq('vic', 10, 'vv-1'), rq('vic', 10, 'vv-2');
UPDATE withdrawal.policy SET velocity_account_limit = NULL WHERE currency = 'USD';

--
-- Velocity per device and per IP, across accounts
--
UPDATE withdrawal.policy SET velocity_device_limit = 2, velocity_ip_limit = 3 WHERE currency = 'USD';
SELECT rq('dev1', 10, 'vd-1', '{"device_id": "phone-1"}'), rq('dev2', 10, 'vd-2', '{"device_id": "phone-1"}');
SELECT refused($$SELECT rq('dev3', 10, 'vd-3', '{"device_id": "phone-1"}')$$);
SELECT rq('dev3', 10, 'vd-3', '{"device_id": "phone-2"}');
SELECT rq('dev3', 10, 'vd-4');
BEGIN;
UPDATE withdrawal.withdrawal SET created_at = now() - interval '1 hour' WHERE idempotency_key = 'vd-1';
SELECT rq('dev1', 10, 'vd-5', '{"device_id": "phone-1"}');
ROLLBACK;
SELECT rq('ipa', 10, 'vi-1', '{"ip": "198.51.100.9"}'), rq('ipb', 10, 'vi-2', '{"ip": "198.51.100.9"}'),
	   rq('ipc', 10, 'vi-3', '{"ip": "198.51.100.9"}');
SELECT refused($$SELECT rq('ipc', 10, 'vi-4', '{"ip": "198.51.100.9"}')$$);
SELECT rq('ipc', 10, 'vi-4', '{"ip": "198.51.100.10"}');
-- one address has one spelling: an IPv4-mapped IPv6 address (in any
-- notation) and an explicit host mask count as the IPv4 address, and a
-- network in its place is refused, so none of them gets past the limit
SELECT rq('ipa', 10, 'vm-1', '{"ip": "198.51.100.33"}'), rq('ipb', 10, 'vm-2', '{"ip": "::ffff:198.51.100.33"}'),
	   rq('ipc', 10, 'vm-3', '{"ip": "198.51.100.33/32"}');
SELECT refused($$SELECT rq('ipc', 10, 'vm-4', '{"ip": "::FFFF:C633:6421"}')$$);
SELECT refused($$SELECT rq('ipc', 10, 'vm-4', '{"ip": "::ffff:198.51.100.33/128"}')$$);
SELECT refused($$SELECT rq('ipc', 10, 'vm-4', '{"ip": "198.51.100.33/0"}')$$);
SELECT refused($$SELECT rq('ipc', 10, 'vm-4', '{"ip": "198.51.100.33/31"}')$$);
SELECT idempotency_key, ip, family(ip), masklen(ip) FROM withdrawal.withdrawal
 WHERE idempotency_key LIKE 'vm-%' ORDER BY idempotency_key;
UPDATE withdrawal.policy SET velocity_device_limit = NULL, velocity_ip_limit = NULL WHERE currency = 'USD';

--
-- Blocklist: a hit is recorded as rejected with the list's name; no money
-- moves, the replay returns it
--
SELECT withdrawal.block('account', 'blk', 'fraud_2026', 'chargebacks');
SELECT withdrawal.block('destination', 'acct_EVIL', 'sanctions');
SELECT withdrawal.block('device', 'rooted-7', 'emulators');
SELECT withdrawal.block('ip', '192.0.2.0/24', 'tor_exits');
-- an entry that has expired since it was written (block() refuses a
-- past expiry, so it is written directly)
INSERT INTO withdrawal.blocklist (kind, value, list_name, expires_at, added_by)
VALUES ('device', 'old-dev', 'emulators', now() - interval '1 second', session_user);
SELECT withdrawal.block('device', 'new-dev', 'emulators', NULL, now() + interval '1 day');
SELECT withdrawal.block('account', 'blk', 'fraud_2026', 'chargebacks, confirmed');
SELECT * FROM withdrawal.balance('blk', 'USD');
SELECT rq('blk', 500, 'bl-1');
SELECT status, replayed FROM withdrawal.request('blk', 'USD', 500, 'sandbox', '{"iban": "DE00 0000"}', 'bl-1');
SELECT * FROM withdrawal.balance('blk', 'USD');
SELECT count(*) AS ledger_entries_of_bl_1 FROM withdrawal.ledger_entry l
  JOIN withdrawal.withdrawal w USING (withdrawal_id) WHERE w.idempotency_key = 'bl-1';
SELECT rq('mina', 500, 'bl-2', dest => '{"type": "stripe", "stripe_account": "acct_EVIL"}');
SELECT rq('mina', 500, 'bl-3', dest => '{"type": "stripe", "nested": {"stripe_account": "acct_EVIL"}}');
SELECT rq('mina', 500, 'bl-4', '{"device_id": "rooted-7"}');
SELECT rq('mina', 500, 'bl-5', '{"ip": "192.0.2.77"}');
SELECT rq('mina', 500, 'bl-6', '{"ip": "192.0.3.77"}');
SELECT rq('mina', 500, 'bl-7', '{"device_id": "old-dev"}');
-- IP entries: networks of both families, host bits, expiry, several lists
SELECT withdrawal.block('ip', '2001:db8::/32', 'v6_list'), withdrawal.block('ip', '198.51.100.77/24', 'hostbits'),
	   withdrawal.block('ip', '203.0.113.9', 'single'),
	   withdrawal.block('ip', '192.0.2.0/25', 'aaa_tor');
INSERT INTO withdrawal.blocklist (kind, value, list_name, expires_at, added_by)
VALUES ('ip', '203.0.113.0/24', 'aaa_expired', now() - interval '1 second', session_user);
SELECT ip, rq('mina', 500, 'ip-' || ip, jsonb_build_object('ip', ip)) AS outcome,
	   (SELECT min(list_name) FROM withdrawal.blocklist
		 WHERE kind = 'ip' AND net >>= ip::inet AND (expires_at IS NULL OR expires_at > now())) AS sql_says
  FROM unnest(ARRAY['2001:db8:1::5', '2001:db9::1', '198.51.100.5', '198.51.101.5', '203.0.113.9',
					'203.0.113.10', '192.0.2.77', '192.0.2.200']) ip;
-- the blocklist sees the one address whatever the spelling; a network in
-- place of an address is refused (it got past the /24 entry)
SELECT ip, rq('mina', 500, 'ipc-' || ip, jsonb_build_object('ip', ip)) AS outcome
  FROM unnest(ARRAY['::ffff:192.0.2.77', '::ffff:c000:24d', '192.0.2.78/32', '::ffff:192.0.2.200',
					'::ffff:203.0.113.9', '2001:db8::9/128']) ip;
SELECT refused($$SELECT rq('mina', 500, 'ipc-net-1', '{"ip": "192.0.2.77/0"}')$$);
SELECT refused($$SELECT rq('mina', 500, 'ipc-net-2', '{"ip": "192.0.2.0/24"}')$$);
SELECT refused($$SELECT rq('mina', 500, 'ipc-net-3', '{"ip": "::ffff:192.0.2.77/96"}')$$);
-- an entry written in IPv4-mapped IPv6 form is stored as the IPv4 one, so
-- it blocks the IPv4 clients it names, and unblock() finds it by either
-- spelling
SELECT withdrawal.block('ip', '::ffff:198.18.0.0/111', 'mapped'),
	   withdrawal.block('ip', '::ffff:198.19.0.5', 'mapped'),
	   withdrawal.block('ip', '198.18.0.0/15', 'mapped');
SELECT value, net::text FROM withdrawal.blocklist WHERE list_name = 'mapped' ORDER BY value;
SELECT rq('mina', 500, 'ipm-1', '{"ip": "198.18.7.7"}'), rq('mina', 500, 'ipm-2', '{"ip": "::ffff:198.18.7.8"}');
SELECT withdrawal.unblock('ip', '198.18.0.0/15', 'mapped'), withdrawal.unblock('ip', '::ffff:198.19.0.5', 'mapped');
SELECT count(*) AS mapped_left FROM withdrawal.blocklist WHERE list_name = 'mapped';
SELECT refused($$SELECT withdrawal.block('device', E'dev\nforged', 'l')$$);
-- several hits: the account's list wins, then destination, device, IP
SELECT rq('blk', 500, 'bl-8', '{"ip": "192.0.2.1", "device_id": "rooted-7"}');
-- a listed request that would also break a hard limit is still recorded
UPDATE withdrawal.policy SET daily_count_limit = 1 WHERE currency = 'USD';
SELECT refused($$SELECT rq('mina', 500, 'bl-9')$$);
SELECT rq('mina', 500, 'bl-9', '{"device_id": "rooted-7"}');
UPDATE withdrawal.policy SET daily_count_limit = NULL WHERE currency = 'USD';
SELECT withdrawal.unblock('account', 'blk', 'fraud_2026'), withdrawal.unblock('account', 'blk', 'fraud_2026');
SELECT rq('blk', 500, 'bl-10');
SELECT * FROM withdrawal.balance('blk', 'USD');
SELECT kind, value, list_name, note, expires_at IS NOT NULL AS expires, net::text AS net
  FROM withdrawal.blocklist ORDER BY kind, value;
SELECT action, actor = session_user AS by_me, account_id, detail - 'expires_at' AS detail
  FROM withdrawal.audit_log WHERE action IN ('block', 'block_update', 'unblock') ORDER BY audit_id;
-- bad blocklist input: 22023, nothing changed
SELECT refused($$SELECT withdrawal.block('email', 'x', 'l')$$);
SELECT refused($$SELECT withdrawal.block('ip', '300.1.1.1', 'l')$$);
SELECT refused($$SELECT withdrawal.block('device', 'x', 'Bad List')$$);
SELECT refused($$SELECT withdrawal.block('device', '', 'l')$$);
SELECT refused($$SELECT withdrawal.block('device', repeat('x', 257), 'l')$$);
SELECT refused($$SELECT withdrawal.block(NULL, 'x', 'l')$$);
SELECT refused($$SELECT withdrawal.unblock('device', 'x', NULL)$$);
-- an expiry must be a future instant; NULL is "never expires", so
-- 'infinity' is not a second spelling of it
SELECT refused($$SELECT withdrawal.block('device', 'x', 'l', NULL, now() - interval '1 second')$$);
SELECT refused($$SELECT withdrawal.block('device', 'x', 'l', NULL, now())$$);
SELECT refused($$SELECT withdrawal.block('device', 'x', 'l', NULL, '-infinity')$$);
SELECT refused($$SELECT withdrawal.block('device', 'x', 'l', NULL, 'infinity')$$);
SELECT refused($$SELECT withdrawal.block('device', 'new-dev', 'emulators', NULL, now() - interval '1 day')$$);
SELECT refused($$SELECT withdrawal.block('account', E'blk\u202E', 'l')$$);
SELECT count(*) AS blocklist_entries, count(*) FILTER (WHERE expires_at > now()) AS unexpired_with_expiry
  FROM withdrawal.blocklist;

--
-- Frozen accounts: WD006, nothing recorded
--
SELECT withdrawal.set_account('frz', frozen => true);
SELECT refused($$SELECT rq('frz', 10, 'frz-1')$$);
SELECT withdrawal.set_account('frz', frozen => false);
SELECT rq('frz', 10, 'frz-1');

--
-- Channels: unknown (WD007), disabled (WD004)
--
SELECT refused($$SELECT rq('win', 10, 'ch-1', ch => 'nowhere')$$);
INSERT INTO withdrawal.channel (name, processor, enabled) VALUES ('off', 'sandbox', false);
SELECT refused($$SELECT rq('win', 10, 'ch-1', ch => 'off')$$);
UPDATE withdrawal.channel SET enabled = true WHERE name = 'off';
SELECT rq('win', 10, 'ch-1', ch => 'off');

--
-- Opening windows, evaluated at fixed instants.  The seed product was
-- closed from 19:00 to 01:00 Beijing time: open [01:00, 19:00).
--
INSERT INTO withdrawal.channel (name, processor, open_from, open_until, timezone)
VALUES ('alipay', 'sandbox', '01:00', '19:00', 'Asia/Shanghai'),
	   ('night', 'sandbox', '22:00', '02:00', 'America/New_York'),
	   ('empty', 'sandbox', '09:00', '09:00', 'UTC'),
	   ('allday', 'sandbox', '00:00', '24:00', 'UTC');
SELECT t AS utc, withdrawal.channel_open_at('alipay', t) AS alipay_open
  FROM unnest(ARRAY['2026-03-01 16:59:59.999999+00', '2026-03-01 17:00:00+00',
					'2026-03-02 10:59:59.999999+00', '2026-03-02 11:00:00+00',
					'2026-03-02 15:00:00+00']::timestamptz[]) t;
-- crossing midnight, with daylight saving time (EST in January, EDT in July)
SELECT t AS utc, withdrawal.channel_open_at('night', t) AS night_open
  FROM unnest(ARRAY['2026-01-15 02:59:59.999999+00', '2026-01-15 03:00:00+00',
					'2026-01-15 05:00:00+00', '2026-01-15 06:59:59.999999+00',
					'2026-01-15 07:00:00+00', '2026-07-15 02:00:00+00',
					'2026-07-15 06:00:00+00']::timestamptz[]) t;
SELECT withdrawal.channel_open_at('empty', '2026-03-01 09:00+00') AS empty_window,
	   withdrawal.channel_open_at('allday', '2026-03-01 23:59:59.999999+00') AS allday_window,
	   withdrawal.channel_open_at('sandbox', '2026-03-01 19:00+00') AS no_window;
SELECT refused($$SELECT withdrawal.channel_open_at('nowhere', now())$$);
SELECT refused($$SELECT withdrawal.channel_open_at('night', NULL)$$);
-- request() applies the same check at now(): a window that ends an hour
-- from now, and one that starts an hour from now
UPDATE withdrawal.channel SET open_from = (now() AT TIME ZONE timezone - interval '1 hour')::time,
	   open_until = (now() AT TIME ZONE timezone + interval '1 hour')::time WHERE name = 'night';
SELECT withdrawal.channel_open_at('night', now()) AS open_now, rq('win', 10, 'win-1', ch => 'night');
UPDATE withdrawal.channel SET open_from = (now() AT TIME ZONE timezone + interval '1 hour')::time,
	   open_until = (now() AT TIME ZONE timezone + interval '2 hours')::time WHERE name = 'night';
SELECT withdrawal.channel_open_at('night', now()) AS open_now;
SELECT refused($$SELECT rq('win', 10, 'win-2', ch => 'night')$$);
SELECT refused($$SELECT rq('win', 10, 'win-3', ch => 'empty')$$);

--
-- Staged release: bucket = first 8 bytes of SHA-256('<channel>:<account>')
-- as an unsigned big-endian integer, mod 100; released when below
-- release_percent.  The C implementation agrees with that formula on 10k
-- accounts, the split is close to the percentage, and raising the
-- percentage only adds accounts.
--
INSERT INTO withdrawal.channel (name, processor, release_percent)
VALUES ('staged', 'sandbox', 30), ('staged2', 'sandbox', 30);
CREATE TEMP TABLE accounts AS SELECT 'user-' || g AS account_id FROM generate_series(1, 10000) g;
CREATE TEMP TABLE buckets AS
SELECT account_id, (('x' || substr(encode(sha256(convert_to('staged:' || account_id, 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint::numeric
	   + CASE WHEN substr(encode(sha256(convert_to('staged:' || account_id, 'UTF8')), 'hex'), 1, 1) >= '8'
			  THEN 18446744073709551616 ELSE 0 END) % 100 AS bucket,
	   withdrawal.channel_released('staged', account_id) AS released_30
  FROM accounts;
SELECT count(*) FILTER (WHERE released_30) AS released,
	   abs(count(*) FILTER (WHERE released_30) - 3000) <= 150 AS close_to_30_percent,
	   count(*) FILTER (WHERE released_30 <> (bucket < 30)) AS disagree_with_formula
  FROM buckets;
SELECT count(*) FILTER (WHERE withdrawal.channel_released('staged2', account_id)) AS released_staged2,
	   count(*) FILTER (WHERE released_30 AND withdrawal.channel_released('staged2', account_id)) AS in_both
  FROM buckets;
UPDATE withdrawal.channel SET release_percent = 60 WHERE name = 'staged';
SELECT count(*) FILTER (WHERE withdrawal.channel_released('staged', account_id)) AS released_60,
	   count(*) FILTER (WHERE released_30 AND NOT withdrawal.channel_released('staged', account_id)) AS dropped
  FROM buckets;
UPDATE withdrawal.channel SET release_percent = 0 WHERE name = 'staged2';
SELECT count(*) FILTER (WHERE withdrawal.channel_released('staged2', account_id)) AS released_0 FROM buckets;
UPDATE withdrawal.channel SET release_percent = 30 WHERE name = 'staged';
-- request(): the first account of each side
SELECT min(account_id) FILTER (WHERE released_30) AS yes, min(account_id) FILTER (WHERE NOT released_30) AS no
  FROM buckets \gset
SELECT :'yes' AS released_account, :'no' AS held_back_account;
SELECT withdrawal.credit(:'yes', 'USD', 100, 'seed-yes') IS NOT NULL, withdrawal.credit(:'no', 'USD', 100, 'seed-no') IS NOT NULL;
SELECT rq(:'yes', 10, 'st-1', ch => 'staged');
SELECT refused(format('SELECT rq(%L, 10, %L, ch => %L)', :'no', 'st-2', 'staged'));

--
-- Replays are not re-screened: the first result stands even after the
-- policy changes
--
UPDATE withdrawal.policy SET min_amount = 1000 WHERE currency = 'USD';
SELECT status, replayed FROM withdrawal.request('mina', 'USD', 100, 'sandbox', '{"iban": "DE00 0000"}', 'min-100');
UPDATE withdrawal.policy SET min_amount = 1 WHERE currency = 'USD';

--
-- The per-backend currency list follows withdrawal.currency (cache.c):
-- loaded here, then a code added (seen at once by this backend) and the
-- addition rolled back (forgotten again)
--
SELECT try($$SELECT withdrawal.policy_day_start('XTT', '2026-03-01 16:00:00+00')$$) AS before_insert;
BEGIN;
INSERT INTO withdrawal.currency (code, minor_unit) VALUES ('XTT', 2);
SELECT withdrawal.policy_day_start('XTT', '2026-03-01 16:00:00+00') AS after_insert;
ROLLBACK;
SELECT try($$SELECT withdrawal.policy_day_start('XTT', '2026-03-01 16:00:00+00')$$) AS after_rollback;

-- the books balance after all of the above
SELECT coalesce(string_agg(check_name || '=' || violations, ', '), 'clean') AS invariants
  FROM withdrawal.check_invariants() WHERE violations <> 0;
