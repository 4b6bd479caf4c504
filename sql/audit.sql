--
-- audit: the log is append-only and hash-chained; verify_audit() finds the
-- first tampered row whether a row, its seal or the order was changed.
--
SET client_min_messages = warning;

SELECT ok, checked > 0 AS checked_some, first_bad_id FROM withdrawal.verify_audit();
SELECT withdrawal.seal_audit() AS sealed_again;
-- rows appended after a seal are sealed by the next one
SELECT available FROM withdrawal.credit('audit-acct', 'GBP', 100, 'audit-c1');
SELECT status FROM withdrawal.request('audit-acct', 'GBP', 40, 'sandbox', '{"sort_code": "1"}', 'audit-w1');
SELECT withdrawal.seal_audit() AS sealed;
SELECT ok FROM withdrawal.verify_audit();

-- the chain: row_hash recomputable, chain_hash = sha256(previous || row_hash)
SELECT bool_and(s.chain_hash = sha256(coalesce(p.chain_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) || s.row_hash)) AS chain_links
  FROM withdrawal.audit_seal s LEFT JOIN withdrawal.audit_seal p ON p.seq = s.seq - 1;
SELECT count(*) = (SELECT count(*) FROM withdrawal.audit_log) AS every_row_sealed FROM withdrawal.audit_seal;
-- row_hash recomputed outside the extension from the documented encoding:
-- per column "N;" for NULL or "<octets>:<text>;", logged_at as integer
-- microseconds since 2000-01-01 UTC
CREATE FUNCTION pg_temp.field(v text) RETURNS text LANGUAGE sql IMMUTABLE
	AS $$SELECT CASE WHEN v IS NULL THEN 'N;' ELSE octet_length(v) || ':' || v || ';' END$$;
SELECT count(*) > 10 AS rows_checked, bool_and(s.row_hash = sha256(convert_to(
         pg_temp.field(a.audit_id::text) ||
         pg_temp.field(((extract(epoch FROM a.logged_at) - 946684800) * 1000000)::bigint::text) ||
         pg_temp.field(a.actor::text) || pg_temp.field(a.action) || pg_temp.field(a.withdrawal_id::text) ||
         pg_temp.field(a.account_id) || pg_temp.field(a.before_status) || pg_temp.field(a.after_status) ||
         pg_temp.field(a.detail::text), 'UTF8'))) AS row_hashes_match
  FROM withdrawal.audit_log a JOIN withdrawal.audit_seal s USING (audit_id);

-- even the owner cannot edit through SQL, nor truncate a table of record
SELECT try($$UPDATE withdrawal.audit_log SET detail = '{}'$$);
SELECT try($$DELETE FROM withdrawal.audit_seal$$);
SELECT t, try(format('TRUNCATE withdrawal.%I', t))
  FROM unnest(ARRAY['audit_log', 'audit_seal', 'ledger_entry', 'credit', 'approval', 'webhook_event']) t;
SELECT count(*) > 0 AS credits_kept FROM withdrawal.credit;

-- a superuser who disables the trigger and edits a row is detected
SELECT audit_id AS victim, actor AS victim_actor FROM withdrawal.audit_log
 WHERE action = 'request' ORDER BY audit_id LIMIT 1 \gset
SELECT min(audit_id) AS next_row FROM withdrawal.audit_log WHERE audit_id > :victim \gset
ALTER TABLE withdrawal.audit_log DISABLE TRIGGER audit_log_append_only;
UPDATE withdrawal.audit_log SET detail = detail || '{"amount": 1}' WHERE audit_id = :victim;
SELECT ok, first_bad_id = :victim AS found_victim FROM withdrawal.verify_audit();
-- putting it back restores the chain
UPDATE withdrawal.audit_log SET detail = detail - 'amount' || jsonb_build_object('amount', (
	SELECT amount FROM withdrawal.withdrawal w WHERE w.withdrawal_id = audit_log.withdrawal_id)) WHERE audit_id = :victim;
SELECT ok FROM withdrawal.verify_audit();
-- changing the actor is detected too
UPDATE withdrawal.audit_log SET actor = 'someone_else' WHERE audit_id = :victim;
SELECT ok, first_bad_id = :victim AS found_victim FROM withdrawal.verify_audit();
UPDATE withdrawal.audit_log SET actor = :'victim_actor' WHERE audit_id = :victim;
SELECT ok FROM withdrawal.verify_audit();
-- deleting a row is detected at its seal
DELETE FROM withdrawal.audit_log WHERE audit_id = :next_row;
SELECT ok, first_bad_id = :next_row AS found_gap FROM withdrawal.verify_audit();
ALTER TABLE withdrawal.audit_log ENABLE TRIGGER audit_log_append_only;

-- rewriting a row and its row_hash is caught by the chain
ALTER TABLE withdrawal.audit_seal DISABLE TRIGGER audit_seal_append_only;
SELECT max(seq) AS last_seq FROM withdrawal.audit_seal \gset
UPDATE withdrawal.audit_seal SET row_hash = sha256('forged') WHERE seq = :last_seq;
SELECT ok, first_bad_id = (SELECT audit_id FROM withdrawal.audit_seal WHERE seq = :last_seq) AS found_seal
  FROM withdrawal.verify_audit();
ALTER TABLE withdrawal.audit_seal ENABLE TRIGGER audit_seal_append_only;
