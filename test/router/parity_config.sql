--
-- parity_config.sql: the configuration test/router/parity.sql expects, run
-- by 091_router_regress as the owner on the single server and on every
-- shard (docs/sharding.md: one configuration script for all shards).  The
-- script cannot change configuration halfway, as the regress tests do,
-- since the router exposes no configuration: each case has its own
-- currency or channel instead.
--
-- GBP: hard minimum and maximum (WD003)
INSERT INTO withdrawal.policy (currency, min_amount, max_amount) VALUES ('GBP', 100, 5000);
-- CHF: review at 1000 and above (approve, reject, the four-eyes rule)
INSERT INTO withdrawal.policy (currency, review_threshold) VALUES ('CHF', 1000);
-- NOK: review at 1000, two distinct approvers at 5000 and above
INSERT INTO withdrawal.policy (currency, review_threshold, four_eyes_threshold) VALUES ('NOK', 1000, 5000);
-- SEK: two withdrawals per account and hour (WD003 on the third)
INSERT INTO withdrawal.policy (currency, velocity_account_limit) VALUES ('SEK', 2);
-- a disabled channel (WD004)
INSERT INTO withdrawal.channel (name, processor, enabled) VALUES ('closed', 'sandbox', false);
-- a processor whose webhooks are signed with test/regress-secrets' regress_http
INSERT INTO withdrawal.processor (name, driver, base_url, webhook_secret, webhook_scheme)
	VALUES ('acme', 'http', 'https://acme.example', 'regress_http', 'hmac-sha256');
INSERT INTO withdrawal.channel (name, processor) VALUES ('acme_bank', 'acme');
