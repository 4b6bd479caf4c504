--
-- audit: the log is append-only and hash-chained; verify_audit() finds the
-- first tampered row whether a row, its seal or the order was changed; a
-- chain head anchored outside finds what the owner can hide from it.
--
CREATE DATABASE regress_audit;
\c regress_audit
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all

-- the history this test seals and tampers with, as an application wrote it
SELECT available FROM withdrawal.credit('audit-seed', 'GBP', 1000, 'audit-seed-c1');
SELECT count(*) AS requested FROM generate_series(1, 12) g,
	withdrawal.request('audit-seed', 'GBP', 10 * g, 'sandbox', '{"sort_code": "1"}', 'audit-seed-w' || g);

-- verify_audit() only reads: it runs in a read-only transaction (as on a
-- standby) and checks the chain as sealed, sealing nothing itself
SELECT count(*) AS seals_before FROM withdrawal.audit_seal \gset
BEGIN READ ONLY;
SELECT ok, checked = :seals_before AS checked_the_sealed, first_bad_id FROM withdrawal.verify_audit();
COMMIT;
SELECT count(*) = :seals_before AS nothing_sealed, (SELECT count(*) FROM withdrawal.audit_log) > 0 AS rows_pending
  FROM withdrawal.audit_seal;
SELECT withdrawal.seal_audit() > 0 AS sealed_some;
SELECT ok, checked > 0 AS checked_some, first_bad_id FROM withdrawal.verify_audit();
SELECT withdrawal.seal_audit() AS sealed_again;
-- rows appended after a seal are sealed by the next one, and verified once sealed
SELECT available FROM withdrawal.credit('audit-acct', 'GBP', 100, 'audit-c1');
SELECT status FROM withdrawal.request('audit-acct', 'GBP', 40, 'sandbox', '{"sort_code": "1"}', 'audit-w1');
SELECT ok, checked = (SELECT count(*) FROM withdrawal.audit_seal) AS checked_the_sealed,
       checked < (SELECT count(*) FROM withdrawal.audit_log) AS skipped_the_pending
  FROM withdrawal.verify_audit();
SELECT withdrawal.seal_audit() AS sealed;
SELECT ok, checked = (SELECT count(*) FROM withdrawal.audit_log) AS checked_all FROM withdrawal.verify_audit();

-- the chain head, as an auditor would store it elsewhere
SELECT h.seq = s.seq AND h.audit_id = s.audit_id AND h.chain_hash = s.chain_hash AND h.sealed_at = s.sealed_at
       AS head_is_last_seal
  FROM withdrawal.audit_head() h, (SELECT * FROM withdrawal.audit_seal ORDER BY seq DESC LIMIT 1) s;
SELECT seq AS anchor_seq, chain_hash AS anchor_hash FROM withdrawal.audit_head() \gset
SELECT withdrawal.verify_audit_anchor(:anchor_seq, :'anchor_hash') AS anchor_holds,
       withdrawal.verify_audit_anchor(:anchor_seq - 1, (SELECT chain_hash FROM withdrawal.audit_seal WHERE seq = :anchor_seq - 1)) AS earlier_anchor_holds,
       withdrawal.verify_audit_anchor(:anchor_seq, sha256('forged')) AS other_hash,
       withdrawal.verify_audit_anchor(:anchor_seq + 1, :'anchor_hash') AS other_seq,
       withdrawal.verify_audit_anchor(0, '\x0000000000000000000000000000000000000000000000000000000000000000') AS genesis;
SELECT try($$SELECT withdrawal.verify_audit_anchor(NULL, sha256('x'))$$);
SELECT try($$SELECT withdrawal.verify_audit_anchor(1, NULL)$$);
SELECT try($$SELECT withdrawal.verify_audit_anchor(-1, sha256('x'))$$);
SELECT try($$SELECT withdrawal.verify_audit_anchor(1, '\x00')$$);

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

-- A malicious owner (triggers disabled) rewrites a row, drops the seals
-- from it on and has the chain re-sealed.  verify_audit() alone finds a
-- consistent chain; the anchor taken before does not hold.
ALTER TABLE withdrawal.audit_log DISABLE TRIGGER audit_log_append_only;
ALTER TABLE withdrawal.audit_seal DISABLE TRIGGER audit_seal_append_only;
UPDATE withdrawal.audit_log SET detail = detail || '{"amount": 1}' WHERE audit_id = :victim;
DELETE FROM withdrawal.audit_seal WHERE seq >= (SELECT seq FROM withdrawal.audit_seal WHERE audit_id = :victim);
ALTER TABLE withdrawal.audit_log ENABLE TRIGGER audit_log_append_only;
ALTER TABLE withdrawal.audit_seal ENABLE TRIGGER audit_seal_append_only;
SELECT withdrawal.seal_audit() > 0 AS resealed;
SELECT ok, first_bad_id FROM withdrawal.verify_audit();
SELECT withdrawal.verify_audit_anchor(:anchor_seq, :'anchor_hash') AS anchor_holds;

-- Cutting off the tail (rows and seals) also leaves a consistent chain;
-- an anchor in the cut part does not hold, an older one still does.
SELECT seq AS kept_seq, chain_hash AS kept_hash, audit_id AS kept_id FROM withdrawal.audit_head() \gset
SELECT status FROM withdrawal.request('audit-acct', 'GBP', 5, 'sandbox', '{"sort_code": "1"}', 'audit-w2');
SELECT withdrawal.seal_audit() AS sealed_tail;
SELECT seq AS tail_seq, chain_hash AS tail_hash FROM withdrawal.audit_head() \gset
SELECT withdrawal.verify_audit_anchor(:tail_seq, :'tail_hash') AS tail_anchor_holds;
ALTER TABLE withdrawal.audit_log DISABLE TRIGGER audit_log_append_only;
ALTER TABLE withdrawal.audit_seal DISABLE TRIGGER audit_seal_append_only;
DELETE FROM withdrawal.audit_seal WHERE seq > :kept_seq;
DELETE FROM withdrawal.audit_log WHERE audit_id > :kept_id;
ALTER TABLE withdrawal.audit_log ENABLE TRIGGER audit_log_append_only;
ALTER TABLE withdrawal.audit_seal ENABLE TRIGGER audit_seal_append_only;
SELECT ok, first_bad_id FROM withdrawal.verify_audit();
SELECT withdrawal.verify_audit_anchor(:tail_seq, :'tail_hash') AS tail_anchor_holds,
       withdrawal.verify_audit_anchor(:kept_seq, :'kept_hash') AS kept_anchor_holds;
