--
-- proof: sent means maybe paid (SPEC section 5).  Once a payout may have
-- reached a processor (sent_at, set by the worker's durable claim), the
-- user cannot cancel it, ops cannot reject it, sweep() and retry() cannot
-- make it look unsent, and money goes back to the wallet only with a
-- proof: here, the resolution of two distinct operators with evidence.
-- The database refuses the same even from the owner's direct UPDATEs.
--
CREATE DATABASE regress_proof;
\c regress_proof
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all
SET timezone = 'UTC';

-- what a worker's claim does to a queued payout: dispatching, sent
CREATE FUNCTION claim(key text) RETURNS void LANGUAGE sql AS $$
	UPDATE withdrawal.withdrawal SET status = 'dispatching', attempts = attempts + 1,
		sent_at = coalesce(sent_at, now()) WHERE idempotency_key = key
$$;
CREATE FUNCTION state(key text) RETURNS text LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
	SELECT format('%s sent=%s proof=%s attempts=%s outbox=%s', w.status, w.sent_at IS NOT NULL,
		coalesce(w.refund_proof, '-'), w.attempts,
		coalesce((SELECT o.kind FROM withdrawal.outbox o WHERE o.withdrawal_id = w.withdrawal_id), '-'))
	  FROM withdrawal.withdrawal w WHERE w.idempotency_key = key
$$;
GRANT EXECUTE ON FUNCTION try(text), refused_anon(text), books(), wid(text), state(text) TO PUBLIC;

CREATE ROLE regress_pf_app LOGIN IN ROLE withdrawal_app;
CREATE ROLE regress_pf_ops1 LOGIN IN ROLE withdrawal_ops;
CREATE ROLE regress_pf_ops2 LOGIN IN ROLE withdrawal_ops;
CREATE ROLE regress_pf_ops3 LOGIN IN ROLE withdrawal_ops;
-- a misconfigured role that is both app and ops
CREATE ROLE regress_pf_both LOGIN IN ROLE withdrawal_app, withdrawal_ops;

SET SESSION AUTHORIZATION regress_pf_app;
SELECT available FROM withdrawal.credit('pat', 'USD', 100000, 'pf-seed');
SELECT status FROM withdrawal.request('pat', 'USD', 1000, 'sandbox', '{}', 'pf-backoff');
SELECT status FROM withdrawal.request('pat', 'USD', 2000, 'sandbox', '{}', 'pf-dead');
SELECT status FROM withdrawal.request('pat', 'USD', 3000, 'sandbox', '{}', 'pf-unsent');
SELECT status FROM withdrawal.request('pat', 'USD', 4000, 'sandbox', '{}', 'pf-paid');
SELECT status FROM withdrawal.request('pat', 'USD', 5000, 'sandbox', '{}', 'pf-wire');
SELECT status FROM withdrawal.request('pat', 'USD', 7000, 'sandbox', '{}', 'pf-query');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_pf_both;
SELECT status FROM withdrawal.request('pat', 'USD', 6000, 'sandbox', '{}', 'pf-own');
RESET SESSION AUTHORIZATION;

-- A worker claims four of them; one goes back to the queue for its backoff
-- (its answer was lost), two are dead-lettered, one stays on the wire.
SELECT claim(k) FROM unnest(ARRAY['pf-backoff', 'pf-dead', 'pf-paid', 'pf-wire', 'pf-own', 'pf-query']) k;
SELECT withdrawal.transition(wid('pf-backoff'), 'queued');
SELECT withdrawal.transition(wid(k), 'dead') FROM unnest(ARRAY['pf-dead', 'pf-paid', 'pf-own', 'pf-query']) k;
SELECT k, state(k) FROM unnest(ARRAY['pf-backoff', 'pf-dead', 'pf-unsent', 'pf-paid', 'pf-wire', 'pf-own']) k;

-- The user cannot cancel what may have been sent, even while it waits in
-- the queue for its backoff; what was never sent is canceled as before.
SET SESSION AUTHORIZATION regress_pf_app;
SELECT refused_anon($$SELECT withdrawal.cancel(wid('pf-backoff'), 'changed my mind')$$);
SELECT refused_anon($$SELECT withdrawal.cancel(wid('pf-dead'), 'changed my mind')$$);
SELECT refused_anon($$SELECT withdrawal.cancel(wid('pf-wire'), 'changed my mind')$$);
RESET SESSION AUTHORIZATION;

-- Ops cannot reject it either: a rejection is no proof.
SET SESSION AUTHORIZATION regress_pf_ops1;
SELECT refused_anon($$SELECT withdrawal.reject(wid('pf-backoff'), 'fraud suspected')$$);
SELECT refused_anon($$SELECT withdrawal.reject(wid('pf-dead'), 'nothing heard')$$);
RESET SESSION AUTHORIZATION;

-- Nor the owner, through the repair function or a direct UPDATE: the
-- status guard asks for the proof, and keeps sent_at.
SELECT refused_anon($$SELECT withdrawal.transition(wid('pf-dead'), 'failed', 'owner says so')$$);
SELECT refused_anon($$SELECT withdrawal.transition(wid('pf-dead'), 'rejected')$$);
SELECT refused_anon($$UPDATE withdrawal.withdrawal SET status = 'failed' WHERE idempotency_key = 'pf-dead'$$);
SELECT refused_anon($$UPDATE withdrawal.withdrawal SET status = 'canceled', refund_proof = 'webhook' WHERE idempotency_key = 'pf-backoff'$$);
SELECT refused_anon($$UPDATE withdrawal.withdrawal SET sent_at = NULL WHERE idempotency_key = 'pf-dead'$$);
SELECT refused_anon($$UPDATE withdrawal.withdrawal SET sent_at = now() - interval '1 day' WHERE idempotency_key = 'pf-dead'$$);
SELECT refused_anon($$UPDATE withdrawal.withdrawal SET refund_proof = 'someone_said_so' WHERE idempotency_key = 'pf-dead'$$);

-- sweep() fails and refunds on age only what was never sent; retry() gives
-- a fresh attempt budget but keeps the fact that it was sent.
UPDATE withdrawal.withdrawal SET created_at = now() - interval '1 day'
 WHERE idempotency_key IN ('pf-backoff', 'pf-unsent');
SET SESSION AUTHORIZATION regress_pf_ops1;
SELECT refused_anon($$SELECT withdrawal.sweep('0')$$);
SELECT withdrawal.sweep('1 hour') >= 1 AS swept;
SELECT withdrawal.retry(wid('pf-dead'));
RESET SESSION AUTHORIZATION;
SELECT k, state(k) FROM unnest(ARRAY['pf-backoff', 'pf-dead', 'pf-unsent']) k;
-- sweep() asks the processor about a dead payout that may have been sent;
-- retry() replaces that status query with a send
UPDATE withdrawal.withdrawal SET updated_at = now() - interval '1 day' WHERE idempotency_key = 'pf-query';
SET SESSION AUTHORIZATION regress_pf_ops1;
SELECT withdrawal.sweep('1 hour') >= 1 AS swept;
RESET SESSION AUTHORIZATION;
SELECT state('pf-query');
SET SESSION AUTHORIZATION regress_pf_ops1;
SELECT withdrawal.retry(wid('pf-query'));
RESET SESSION AUTHORIZATION;
SELECT state('pf-query');
SELECT withdrawal.transition(wid('pf-dead'), 'dispatching');
SELECT withdrawal.transition(wid('pf-dead'), 'dead');

-- resolve(): operators record what the processor confirmed, with evidence.
SET SESSION AUTHORIZATION regress_pf_ops1;
SELECT refused_anon($$SELECT withdrawal.resolve(NULL, 'failed', 'x')$$);
SELECT refused_anon($$SELECT withdrawal.resolve(wid('pf-dead'), 'refunded', 'x')$$);
SELECT refused_anon($$SELECT withdrawal.resolve(wid('pf-dead'), 'failed', '')$$);
SELECT refused_anon($$SELECT withdrawal.resolve(wid('pf-dead'), 'failed', repeat('x', 1025))$$);
SELECT refused_anon($$SELECT withdrawal.resolve('00000000-0000-0000-0000-000000000000', 'failed', 'x')$$);
SELECT refused_anon($$SELECT withdrawal.resolve(wid('pf-wire'), 'failed', 'ticket 7')$$);
SELECT refused_anon($$SELECT withdrawal.resolve(wid('pf-unsent'), 'failed', 'ticket 7')$$);
-- one vote changes nothing but the votes; the same operator counts once
SELECT withdrawal.resolve(wid('pf-dead'), 'failed', 'processor ticket 4711: payout never created, key voided');
SELECT refused_anon($$SELECT withdrawal.resolve(wid('pf-dead'), 'failed', 'again')$$);
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_pf_app;
SELECT refused_anon($$SELECT withdrawal.resolve(wid('pf-dead'), 'failed', 'the user')$$);
RESET SESSION AUTHORIZATION;
-- the role that requested a withdrawal never resolves it
SET SESSION AUTHORIZATION regress_pf_both;
SELECT refused_anon($$SELECT withdrawal.resolve(wid('pf-own'), 'failed', 'my own')$$);
RESET SESSION AUTHORIZATION;
-- a second operator who saw something else does not apply either outcome
SET SESSION AUTHORIZATION regress_pf_ops2;
SELECT withdrawal.resolve(wid('pf-dead'), 'paid', 'statement line 88 shows a payout');
RESET SESSION AUTHORIZATION;
SELECT state('pf-dead'), books();
-- a third agreeing with the first applies it: failed, refunded, with proof
SET SESSION AUTHORIZATION regress_pf_ops3;
SELECT withdrawal.resolve(wid('pf-dead'), 'failed', 'confirmed ticket 4711 with the processor');
RESET SESSION AUTHORIZATION;
SELECT state('pf-dead');
-- paid, confirmed by two: settled
SET SESSION AUTHORIZATION regress_pf_ops1;
SELECT withdrawal.resolve(wid('pf-paid'), 'paid', 'statement 2026-11-30 line 12');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_pf_ops2;
SELECT withdrawal.resolve(wid('pf-paid'), 'paid', 'statement 2026-11-30 line 12, checked');
RESET SESSION AUTHORIZATION;
SELECT state('pf-paid');
-- a queued payout that may have been sent can be resolved paid as well
SET SESSION AUTHORIZATION regress_pf_ops1;
SELECT withdrawal.resolve(wid('pf-backoff'), 'paid', 'webhook lost; dashboard shows paid');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_pf_ops3;
SELECT withdrawal.resolve(wid('pf-backoff'), 'paid', 'dashboard confirmed');
RESET SESSION AUTHORIZATION;
SELECT state('pf-backoff');
-- votes are append-only and audited
SELECT refused_anon($$DELETE FROM withdrawal.resolution$$);
SELECT refused_anon($$TRUNCATE withdrawal.resolution$$);
SELECT action, actor, before_status, after_status, detail->>'outcome' AS outcome, detail->>'votes' AS votes
  FROM withdrawal.audit_log WHERE withdrawal_id = wid('pf-dead') AND action LIKE 'resolve%' ORDER BY audit_id;

SELECT books();
SELECT invariants();
