--
-- holds: withdrawals left in review too long are rejected and refunded
-- (policy.review_expires_after, expire_reviews()), and the daily count and
-- amount caps of channels (channel.daily_count_cap, daily_amount_cap,
-- cap_currency; counted in channel_usage).  Every refusal shows that
-- nothing changed.  Time travel is done by the owner moving created_at
-- back, or by moving a channel to a time zone where it is another day.
--
CREATE DATABASE regress_holds;
\c regress_holds
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all
SET timezone = 'UTC';

-- the owner's time machine: the withdrawal was requested days ago
CREATE FUNCTION requested_ago(key text, ago interval) RETURNS void LANGUAGE sql AS $$
	UPDATE withdrawal.withdrawal SET created_at = now() - ago, updated_at = now() - ago
	 WHERE idempotency_key = key
$$;
GRANT EXECUTE ON FUNCTION try_detail(text), refused_detail(text), books(), wid(text) TO PUBLIC;

CREATE ROLE regress_hd_app LOGIN IN ROLE withdrawal_app;
CREATE ROLE regress_hd_ops1 LOGIN IN ROLE withdrawal_ops;
CREATE ROLE regress_hd_ops2 LOGIN IN ROLE withdrawal_ops;

--
-- review_expires_after: NULL (never) or a positive interval of at most 100
-- years; anything else is 22023 and changes nothing
--
SELECT review_expires_after FROM withdrawal.policy WHERE currency = '*';
SELECT refused_detail($$UPDATE withdrawal.policy SET review_expires_after = '0' WHERE currency = '*'$$);
SELECT refused_detail($$UPDATE withdrawal.policy SET review_expires_after = '-1 day' WHERE currency = '*'$$);
SELECT refused_detail($$UPDATE withdrawal.policy SET review_expires_after = '1 day -25 hours' WHERE currency = '*'$$);
SELECT refused_detail($$UPDATE withdrawal.policy SET review_expires_after = '1 mon -1 day' WHERE currency = '*'$$);
SELECT refused_detail($$UPDATE withdrawal.policy SET review_expires_after = '101 years' WHERE currency = '*'$$);
SELECT refused_detail($$INSERT INTO withdrawal.policy (currency, review_expires_after) VALUES ('GBP', '-1 second')$$);
SELECT try_detail($$UPDATE withdrawal.policy SET review_expires_after = '100 years' WHERE currency = '*'$$);
SELECT try_detail($$UPDATE withdrawal.policy SET review_expires_after = NULL WHERE currency = '*'$$);

-- USD: review from 1000, four-eyes from 5000, expiry after 30 days; the
-- '*' policy (EUR) reviews from 1000 too and never expires
INSERT INTO withdrawal.policy (currency, review_threshold, four_eyes_threshold, review_expires_after)
VALUES ('USD', 1000, 5000, '30 days');
UPDATE withdrawal.policy SET review_threshold = 1000 WHERE currency = '*';

SET SESSION AUTHORIZATION regress_hd_app;
SELECT available FROM withdrawal.credit('ann', 'USD', 100000, 'hd-seed-usd');
SELECT available FROM withdrawal.credit('ann', 'EUR', 100000, 'hd-seed-eur');
SELECT status FROM withdrawal.request('ann', 'USD', 2000, 'sandbox', '{"iban": "A"}', 'hd-old');
SELECT status FROM withdrawal.request('ann', 'USD', 6000, 'sandbox', '{"iban": "A"}', 'hd-old-4eyes');
SELECT status FROM withdrawal.request('ann', 'USD', 3000, 'sandbox', '{"iban": "A"}', 'hd-young');
SELECT status FROM withdrawal.request('ann', 'USD', 4000, 'sandbox', '{"iban": "A"}', 'hd-approved');
SELECT status FROM withdrawal.request('ann', 'EUR', 2000, 'sandbox', '{"iban": "A"}', 'hd-eur-old');
SELECT * FROM withdrawal.balance('ann', 'USD');
RESET SESSION AUTHORIZATION;

-- one of two approvals on the four-eyes withdrawal; one full approval
SET SESSION AUTHORIZATION regress_hd_ops1;
SELECT withdrawal.approve(wid('hd-old-4eyes'), 'first of two');
SELECT withdrawal.approve(wid('hd-approved'));
RESET SESSION AUTHORIZATION;

-- nothing is old enough yet
SET SESSION AUTHORIZATION regress_hd_ops1;
SELECT withdrawal.expire_reviews() AS expired;
RESET SESSION AUTHORIZATION;

-- 31 days later for all but hd-young (29 days); exactly 30 days expires
SELECT requested_ago('hd-old', '31 days'), requested_ago('hd-old-4eyes', '30 days'),
	   requested_ago('hd-young', '29 days 23 hours'), requested_ago('hd-approved', '31 days'),
	   requested_ago('hd-eur-old', '400 days');

-- the app cannot expire anything
SET SESSION AUTHORIZATION regress_hd_app;
SELECT refused_detail('SELECT withdrawal.expire_reviews()');
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION regress_hd_ops1;
SELECT withdrawal.expire_reviews() AS expired;
-- exactly once: a second run finds nothing
SELECT withdrawal.expire_reviews() AS expired_again;
RESET SESSION AUTHORIZATION;

SELECT idempotency_key, status, reason, refund_proof, sent_at
  FROM withdrawal.withdrawal WHERE account_id = 'ann' ORDER BY idempotency_key;
-- the money is back: only hd-young (3000 USD) and hd-eur-old (2000 EUR)
-- are held, plus the queued hd-approved (4000 USD)
SELECT currency, (withdrawal.balance('ann', currency)).* FROM (VALUES ('USD'), ('EUR')) c(currency);
-- one debit and one refund each, through the ledger
SELECT w.idempotency_key, l.kind, l.bucket, l.amount
  FROM withdrawal.ledger_entry l JOIN withdrawal.withdrawal w USING (withdrawal_id)
 WHERE w.idempotency_key IN ('hd-old', 'hd-old-4eyes') ORDER BY 1, l.txn_id, l.leg;
-- audited, with the actor, the reason and the approvals so far
SELECT a.actor, a.action, w.idempotency_key, a.before_status, a.after_status, a.detail
  FROM withdrawal.audit_log a JOIN withdrawal.withdrawal w USING (withdrawal_id)
 WHERE a.action = 'expire_review' ORDER BY w.idempotency_key;
-- an expired withdrawal is decided: approving or rejecting it is WD005
SET SESSION AUTHORIZATION regress_hd_ops2;
SELECT refused_detail(format('SELECT withdrawal.approve(%L)', wid('hd-old-4eyes')));
SELECT refused_detail(format('SELECT withdrawal.reject(%L, %L)', wid('hd-old'), 'late'));
RESET SESSION AUTHORIZATION;
-- hd-young expires once its 30 days are over; a policy change counts at once
UPDATE withdrawal.policy SET review_expires_after = '29 days' WHERE currency = 'USD';
SET SESSION AUTHORIZATION regress_hd_ops2;
SELECT withdrawal.expire_reviews() AS expired;
RESET SESSION AUTHORIZATION;
SELECT status, reason FROM withdrawal.withdrawal WHERE idempotency_key = 'hd-young';
SELECT ok, first_bad_id FROM withdrawal.verify_audit();
SELECT coalesce(string_agg(check_name || '=' || violations, ', '), 'clean') AS invariants
  FROM withdrawal.check_invariants() WHERE violations <> 0;

--
-- daily caps of channels: bad configuration is 22023 and changes nothing
--
INSERT INTO withdrawal.channel (name, processor) VALUES ('bank', 'sandbox'), ('wire', 'sandbox');
SELECT refused_detail($$UPDATE withdrawal.channel SET daily_count_cap = 0, cap_currency = 'CNY' WHERE name = 'bank'$$);
SELECT refused_detail($$UPDATE withdrawal.channel SET daily_amount_cap = -5, cap_currency = 'CNY' WHERE name = 'bank'$$);
SELECT refused_detail($$UPDATE withdrawal.channel SET daily_count_cap = 3 WHERE name = 'bank'$$);
SELECT refused_detail($$UPDATE withdrawal.channel SET cap_currency = 'CNY' WHERE name = 'bank'$$);
SELECT refused_detail($$UPDATE withdrawal.channel SET daily_count_cap = 3, cap_currency = 'XYZ' WHERE name = 'bank'$$);
SELECT refused_detail($$INSERT INTO withdrawal.channel (name, processor, daily_amount_cap) VALUES ('bad', 'sandbox', 100)$$);

UPDATE withdrawal.channel SET daily_count_cap = 3, daily_amount_cap = 1000000, cap_currency = 'CNY'
 WHERE name = 'bank';
UPDATE withdrawal.channel SET daily_amount_cap = 5000, cap_currency = 'CNY' WHERE name = 'wire';
-- removing a cap leaves the other, and the currency with it
SELECT try_detail($$UPDATE withdrawal.channel SET daily_amount_cap = NULL WHERE name = 'bank'$$);
SELECT refused_detail($$UPDATE withdrawal.channel SET daily_count_cap = NULL WHERE name = 'bank'$$);
UPDATE withdrawal.channel SET daily_amount_cap = 1000000 WHERE name = 'bank';

SET SESSION AUTHORIZATION regress_hd_app;
SELECT available FROM withdrawal.credit('bo', 'CNY', 100000, 'hd-seed-cny');
SELECT available FROM withdrawal.credit('bo', 'USD', 100000, 'hd-seed-bo-usd');
-- a capped channel pays one currency
SELECT refused_detail($$SELECT withdrawal.request('bo', 'USD', 100, 'bank', '{"card": "B"}', 'hd-usd-bank')$$);
-- the count cap: three a day
SELECT status FROM withdrawal.request('bo', 'CNY', 100, 'bank', '{"card": "B"}', 'hd-bank-1');
SELECT status FROM withdrawal.request('bo', 'CNY', 100, 'bank', '{"card": "B"}', 'hd-bank-2');
-- a request refused for funds takes no slot: the third still fits
SELECT refused_detail($$SELECT withdrawal.request('bo', 'CNY', 200000, 'bank', '{"card": "B"}', 'hd-poor')$$);
SELECT status FROM withdrawal.request('bo', 'CNY', 100, 'bank', '{"card": "B"}', 'hd-bank-3');
SELECT refused_detail($$SELECT withdrawal.request('bo', 'CNY', 100, 'bank', '{"card": "B"}', 'hd-bank-4')$$);
-- a replay of an accepted request is not a new one
SELECT status, replayed FROM withdrawal.request('bo', 'CNY', 100, 'bank', '{"card": "B"}', 'hd-bank-3');
-- the amount cap: 5000 a day, exactly reached (withdrawals held for review
-- count: they hold money and will be paid once approved)
SELECT status FROM withdrawal.request('bo', 'CNY', 3000, 'wire', '{"card": "B"}', 'hd-wire-1');
SELECT refused_detail($$SELECT withdrawal.request('bo', 'CNY', 2001, 'wire', '{"card": "B"}', 'hd-wire-2')$$);
SELECT refused_detail($$SELECT withdrawal.request('bo', 'CNY', 6000, 'wire', '{"card": "B"}', 'hd-wire-big')$$);
SELECT status FROM withdrawal.request('bo', 'CNY', 2000, 'wire', '{"card": "B"}', 'hd-wire-3');
SELECT refused_detail($$SELECT withdrawal.request('bo', 'CNY', 1, 'wire', '{"card": "B"}', 'hd-wire-4')$$);
-- other channels are not capped
SELECT status FROM withdrawal.request('bo', 'CNY', 100, 'sandbox', '{"card": "B"}', 'hd-sandbox');
RESET SESSION AUTHORIZATION;
SELECT channel, day = (now() AT TIME ZONE 'UTC')::date AS today, requests, amount
  FROM withdrawal.channel_usage ORDER BY channel;

-- a canceled withdrawal keeps its slot: the counter only grows in its day
SET SESSION AUTHORIZATION regress_hd_app;
SELECT withdrawal.cancel(wid('hd-bank-1'), 'changed my mind');
SELECT refused_detail($$SELECT withdrawal.request('bo', 'CNY', 100, 'bank', '{"card": "B"}', 'hd-bank-5')$$);
RESET SESSION AUTHORIZATION;

-- the next channel day: a time zone where it is already (or still) another
-- date; the day starts at local midnight there
UPDATE withdrawal.channel SET timezone =
	CASE WHEN (now() AT TIME ZONE 'Etc/GMT-14')::date <> (now() AT TIME ZONE 'UTC')::date
		 THEN 'Etc/GMT-14' ELSE 'Etc/GMT+12' END
 WHERE name = 'bank';
SET SESSION AUTHORIZATION regress_hd_app;
SELECT status FROM withdrawal.request('bo', 'CNY', 100, 'bank', '{"card": "B"}', 'hd-bank-6');
RESET SESSION AUTHORIZATION;
SELECT u.channel, u.day = (now() AT TIME ZONE c.timezone)::date AS today_there, u.requests, u.amount
  FROM withdrawal.channel_usage u JOIN withdrawal.channel c ON c.name = u.channel
 WHERE u.channel = 'bank' ORDER BY today_there DESC;  -- the new day, then the old one

-- the operators see the counters; the app does not
SET SESSION AUTHORIZATION regress_hd_ops1;
SELECT count(*) AS usage_rows FROM withdrawal.channel_usage;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_hd_app;
SELECT refused_detail('SELECT count(*) FROM withdrawal.channel_usage');
RESET SESSION AUTHORIZATION;

SELECT coalesce(string_agg(check_name || '=' || violations, ', '), 'clean') AS invariants
  FROM withdrawal.check_invariants() WHERE violations <> 0;

DROP OWNED BY regress_hd_app, regress_hd_ops1, regress_hd_ops2;
DROP ROLE regress_hd_app, regress_hd_ops1, regress_hd_ops2;
