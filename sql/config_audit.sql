--
-- config_audit: every change of a configuration row (policy, channel,
-- processor, currency, blocklist) appends an audit row with who, when,
-- and the row before and after, with no secret in it; block() and
-- unblock() audit themselves once; a restore's COPY writes none; refused
-- changes write none; the chain still verifies.
--
CREATE DATABASE regress_config_audit;
\c regress_config_audit
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all
SET timezone = 'UTC';

GRANT EXECUTE ON FUNCTION try(text) TO PUBLIC;

-- the configuration audit rows written since the last call, oldest first
CREATE TABLE seen (audit_id bigint);
INSERT INTO seen VALUES (0);
CREATE FUNCTION new_rows() RETURNS TABLE (action text, own_actor boolean, account_id text, detail jsonb)
LANGUAGE sql AS $$
	WITH n AS (
		SELECT a.* FROM withdrawal.audit_log a
		 WHERE a.audit_id > (SELECT max(s.audit_id) FROM seen s)
		   AND (a.action LIKE 'config%' OR a.action LIKE '%block%')),
	m AS (INSERT INTO seen SELECT max(audit_id) FROM n WHERE EXISTS (SELECT FROM n))
	SELECT n.action, n.actor = session_user, n.account_id, n.detail FROM n ORDER BY n.audit_id
$$;

-- CREATE EXTENSION writes its seeded rows before the triggers exist
SELECT count(*) AS config_rows_after_install FROM withdrawal.audit_log WHERE action LIKE 'config%';

-- a policy tightened: before and after, and what changed (the seeded row
-- is marked changed by config_seed, so seed changes too)
UPDATE withdrawal.policy SET max_amount = 500000, daily_count_limit = 10 WHERE currency = '*';
SELECT action, own_actor, detail->>'table' AS tbl, detail->'changed' AS changed,
       detail->'before'->>'max_amount' AS max_before, detail->'after'->>'max_amount' AS max_after,
       detail->'after'->>'seed' AS seed_after
  FROM new_rows();

-- a channel added, disabled, disabled again (no change: no row), deleted
INSERT INTO withdrawal.channel (name, processor, rate_per_second, burst) VALUES ('audited', 'sandbox', 5, 10);
UPDATE withdrawal.channel SET enabled = false WHERE name = 'audited';
UPDATE withdrawal.channel SET enabled = false WHERE name = 'audited';
DELETE FROM withdrawal.channel WHERE name = 'audited';
SELECT action, own_actor, detail->'changed' AS changed,
       detail->'before'->>'enabled' AS enabled_before, detail->'after'->>'enabled' AS enabled_after,
       detail->'after'->>'rate_per_second' AS rate_after, jsonb_typeof(detail->'before') AS before
  FROM new_rows();

-- a processor: secrets are names; a password in the URL never reaches the log
INSERT INTO withdrawal.processor (name, driver, base_url, api_secret, webhook_secret)
VALUES ('acme', 'http', 'https://merchant:hunter2@pay.example/v1', 'acme_api_key', 'acme_webhook');
UPDATE withdrawal.processor SET request_timeout_ms = 5000 WHERE name = 'acme';
SELECT action, detail->'changed' AS changed, detail->'after'->>'base_url' AS base_url,
       detail->'after'->>'api_secret' AS api_secret, detail->'before'->>'request_timeout_ms' AS timeout_before,
       detail::text LIKE '%hunter2%' AS leaks_password
  FROM new_rows();

-- a currency added and changed
INSERT INTO withdrawal.currency (code, minor_unit) VALUES ('XTS', 2);
UPDATE withdrawal.currency SET minor_unit = 3 WHERE code = 'XTS';
SELECT action, detail->'changed' AS changed, detail->'after' AS after FROM new_rows();

-- block() and unblock() audit themselves, once; direct writes of the
-- blocklist are audited by the trigger, with the account when one is listed
SELECT withdrawal.block('account', 'acct-bad', 'fraud', 'chargebacks');
SELECT withdrawal.block('account', 'acct-bad', 'fraud', 'chargebacks, twice');
SELECT withdrawal.unblock('account', 'acct-bad', 'fraud');
INSERT INTO withdrawal.blocklist (kind, value, list_name, added_by) VALUES ('account', 'acct-direct', 'manual', 'me');
INSERT INTO withdrawal.blocklist (kind, value, list_name, added_by) VALUES ('device', 'dev-1', 'manual', 'me');
UPDATE withdrawal.blocklist SET note = 'seen twice' WHERE value = 'dev-1';
SELECT action, account_id, detail->'changed' AS changed, detail->'after'->>'value' AS value_after,
       detail->>'value' AS api_value
  FROM new_rows();
TRUNCATE withdrawal.blocklist;
SELECT action, detail FROM new_rows();

-- refused changes change nothing and write nothing
SELECT try($$UPDATE withdrawal.channel SET rate_per_second = 'NaN' WHERE name = 'sandbox'$$);
SELECT try($$UPDATE withdrawal.policy SET timezone = 'Mars/Olympus' WHERE currency = '*'$$);
SELECT try($$DELETE FROM withdrawal.policy WHERE currency = '*'$$);
SELECT try($$TRUNCATE withdrawal.policy$$);
SELECT try($$INSERT INTO withdrawal.currency (code, minor_unit) VALUES ('XTS', 2)$$);
SELECT count(*) AS rows_for_refused_changes FROM new_rows();
-- a change rolled back takes its audit row with it
BEGIN;
UPDATE withdrawal.channel SET enabled = false WHERE name = 'sandbox';
ROLLBACK;
SELECT count(*) AS rows_for_rolled_back FROM new_rows();

-- a role granted a write on a configuration table needs no right on the
-- audit log, and is the actor
CREATE ROLE regress_cfg_editor;
GRANT USAGE ON SCHEMA withdrawal TO regress_cfg_editor;
GRANT SELECT, UPDATE ON withdrawal.policy TO regress_cfg_editor;
SET SESSION AUTHORIZATION regress_cfg_editor;
UPDATE withdrawal.policy SET daily_count_limit = 20 WHERE currency = '*';
SELECT try($$INSERT INTO withdrawal.audit_log (actor, action) VALUES ('x', 'forged')$$);
RESET SESSION AUTHORIZATION;
SELECT action, actor, detail->'changed' AS changed
  FROM withdrawal.audit_log WHERE audit_id > (SELECT max(audit_id) FROM seen) AND action LIKE 'config%';
SELECT count(*) FROM new_rows();
REVOKE ALL ON withdrawal.policy FROM regress_cfg_editor;
REVOKE ALL ON SCHEMA withdrawal FROM regress_cfg_editor;
DROP ROLE regress_cfg_editor;

-- a restore loads the tables with COPY: no audit rows (the restored log has
-- them); the seeded row it replaces is replaced under the COPY too
COPY withdrawal.currency (code, minor_unit, seed) FROM stdin;
XTT	2	\N
USD	3	changed
\.
SELECT code, minor_unit, seed FROM withdrawal.currency WHERE code IN ('XTT', 'USD') ORDER BY code;
SELECT count(*) AS rows_for_copy FROM new_rows();
UPDATE withdrawal.currency SET minor_unit = 2 WHERE code = 'USD';
SELECT action, detail->'changed' AS changed FROM new_rows();

-- the chain takes them in and verifies
SELECT withdrawal.seal_audit() > 0 AS sealed;
SELECT ok, first_bad_id FROM withdrawal.verify_audit();

DROP FUNCTION new_rows();
DROP TABLE seen;
