--
-- review: manual review with four-eyes.  approve() records session_user;
-- at or above four_eyes_threshold two distinct approvers are needed; the
-- requester can never approve; the same approver twice does not count
-- twice; reject() refunds; every action is audited with actor, note or
-- reason and the status before and after.
--
CREATE DATABASE regress_review;
\c regress_review
SET client_min_messages = warning;
CREATE EXTENSION withdrawal;
\set ECHO none
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/helpers.psql
\set ECHO all
SET timezone = 'UTC';

GRANT EXECUTE ON FUNCTION try(text), refused(text), books(), wid(text) TO PUBLIC;

CREATE ROLE regress_rv_app LOGIN IN ROLE withdrawal_app;
CREATE ROLE regress_rv_ops1 LOGIN IN ROLE withdrawal_ops;
CREATE ROLE regress_rv_ops2 LOGIN IN ROLE withdrawal_ops;
-- a misconfigured role that is both app and ops
CREATE ROLE regress_rv_both LOGIN IN ROLE withdrawal_app, withdrawal_ops;

UPDATE withdrawal.policy SET review_threshold = 1000, four_eyes_threshold = 5000 WHERE currency = '*';

SET SESSION AUTHORIZATION regress_rv_app;
SELECT available FROM withdrawal.credit('rose', 'USD', 100000, 'rv-seed');
SELECT status FROM withdrawal.request('rose', 'USD', 999, 'sandbox', '{"iban": "X"}', 'rv-999');
SELECT status FROM withdrawal.request('rose', 'USD', 1000, 'sandbox', '{"iban": "X"}', 'rv-1000');
SELECT status FROM withdrawal.request('rose', 'USD', 4999, 'sandbox', '{"iban": "X"}', 'rv-4999');
SELECT status FROM withdrawal.request('rose', 'USD', 5000, 'sandbox', '{"iban": "X"}', 'rv-5000');
SELECT status FROM withdrawal.request('rose', 'USD', 5001, 'sandbox', '{"iban": "X"}', 'rv-5001');
SELECT status FROM withdrawal.request('rose', 'USD', 2000, 'sandbox', '{"iban": "X"}', 'rv-reject');
SELECT * FROM withdrawal.balance('rose', 'USD');
RESET SESSION AUTHORIZATION;
SELECT count(*) AS outbox_rows FROM withdrawal.outbox;

--
-- below the four-eyes threshold, one approver queues the payout
--
SET SESSION AUTHORIZATION regress_rv_ops1;
SELECT withdrawal.approve(wid('rv-1000'), 'looks fine');
SELECT withdrawal.approve(wid('rv-4999'));
-- approving what is no longer (or never was) in review: WD005
SELECT refused(format('SELECT withdrawal.approve(%L)', wid('rv-1000')));
SELECT refused(format('SELECT withdrawal.approve(%L)', wid('rv-999')));
RESET SESSION AUTHORIZATION;

--
-- at and above the threshold: two distinct approvers
--
SET SESSION AUTHORIZATION regress_rv_ops1;
SELECT withdrawal.approve(wid('rv-5000'), 'first look');
-- the same approver again does not count twice, whatever role it sets
SELECT refused(format('SELECT withdrawal.approve(%L)', wid('rv-5000')));
SET ROLE withdrawal_ops;
SELECT refused(format('SELECT withdrawal.approve(%L)', wid('rv-5000')));
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT (withdrawal.get(wid('rv-5000'))).status AS still;
SELECT count(*) AS in_outbox FROM withdrawal.outbox WHERE withdrawal_id = wid('rv-5000');
SET SESSION AUTHORIZATION regress_rv_ops2;
SELECT withdrawal.approve(wid('rv-5000'), 'second look');
SELECT withdrawal.approve(wid('rv-5001'), 'first');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_rv_ops1;
SELECT withdrawal.approve(wid('rv-5001'), 'second');
RESET SESSION AUTHORIZATION;
SELECT w.idempotency_key, w.status, o.withdrawal_id IS NOT NULL AS in_outbox,
	   (SELECT string_agg(a.approver || coalesce(':' || a.note, ''), ', ' ORDER BY a.approver)
		  FROM withdrawal.approval a WHERE a.withdrawal_id = w.withdrawal_id) AS approvals
  FROM withdrawal.withdrawal w LEFT JOIN withdrawal.outbox o USING (withdrawal_id)
 WHERE w.account_id = 'rose' ORDER BY w.amount;

--
-- the requester can never approve, even when it also holds ops rights
--
SET SESSION AUTHORIZATION regress_rv_both;
SELECT available FROM withdrawal.credit('sam', 'USD', 10000, 'rv-seed-sam');
SELECT status FROM withdrawal.request('sam', 'USD', 1000, 'sandbox', '{"iban": "Y"}', 'rv-self');
SELECT refused(format('SELECT withdrawal.approve(%L)', wid('rv-self')));
SET ROLE withdrawal_ops;
SELECT refused(format('SELECT withdrawal.approve(%L)', wid('rv-self')));
RESET ROLE;
RESET SESSION AUTHORIZATION;
-- and the plain app role cannot call approve at all
SET SESSION AUTHORIZATION regress_rv_app;
SELECT refused(format('SELECT withdrawal.approve(%L)', wid('rv-reject')));
SELECT refused(format('SELECT withdrawal.reject(%L, %L)', wid('rv-reject'), 'no'));
RESET SESSION AUTHORIZATION;
-- another operator can approve it
SET SESSION AUTHORIZATION regress_rv_ops1;
SELECT withdrawal.approve(wid('rv-self'));
RESET SESSION AUTHORIZATION;

--
-- a frozen account's withdrawal cannot be approved (WD006), only rejected
--
SET SESSION AUTHORIZATION regress_rv_app;
SELECT status FROM withdrawal.request('rose', 'USD', 1500, 'sandbox', '{"iban": "X"}', 'rv-frozen');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_rv_ops2;
SELECT withdrawal.set_account('rose', frozen => true);
SELECT refused(format('SELECT withdrawal.approve(%L)', wid('rv-frozen')));
SELECT withdrawal.reject(wid('rv-frozen'), 'account frozen');
SELECT withdrawal.set_account('rose', frozen => false);
RESET SESSION AUTHORIZATION;

--
-- reject refunds; rejecting twice is WD005
--
SELECT * FROM withdrawal.balance('rose', 'USD');
SET SESSION AUTHORIZATION regress_rv_ops2;
SELECT withdrawal.reject(wid('rv-reject'), 'beneficiary name mismatch');
SELECT refused(format('SELECT withdrawal.reject(%L, %L)', wid('rv-reject'), 'again'));
-- bad input
SELECT refused($$SELECT withdrawal.approve(NULL)$$);
SELECT refused($$SELECT withdrawal.approve('00000000-0000-0000-0000-000000000000')$$);
SELECT refused(format('SELECT withdrawal.approve(%L, %L)', wid('rv-999'), repeat('x', 1025)));
SELECT refused(format('SELECT withdrawal.reject(%L, NULL)', wid('rv-999')));
SELECT refused($$SELECT withdrawal.reject('00000000-0000-0000-0000-000000000000', 'x')$$);
RESET SESSION AUTHORIZATION;
SELECT * FROM withdrawal.balance('rose', 'USD');
SELECT idempotency_key, status, reason FROM withdrawal.withdrawal
 WHERE idempotency_key IN ('rv-reject', 'rv-frozen') ORDER BY 1;

-- the audit trail of every ops action: actor, note or reason, before/after
SELECT a.actor, a.action, w.idempotency_key, a.before_status, a.after_status, a.detail
  FROM withdrawal.audit_log a JOIN withdrawal.withdrawal w USING (withdrawal_id)
 WHERE a.action IN ('approve', 'reject') ORDER BY a.audit_id;
SELECT ok, first_bad_id FROM withdrawal.verify_audit();
SELECT coalesce(string_agg(check_name || '=' || violations, ', '), 'clean') AS invariants
  FROM withdrawal.check_invariants() WHERE violations <> 0;

-- at or above four_eyes_threshold a withdrawal is held for review even
-- when review_threshold is higher or off: it can never skip two approvers
UPDATE withdrawal.policy SET review_threshold = NULL, four_eyes_threshold = 3000 WHERE currency = '*';
SET SESSION AUTHORIZATION regress_rv_app;
SELECT status FROM withdrawal.request('rose', 'USD', 2999, 'sandbox', '{"iban": "X"}', 'rv-fe-2999');
SELECT status FROM withdrawal.request('rose', 'USD', 3000, 'sandbox', '{"iban": "X"}', 'rv-fe-3000');
RESET SESSION AUTHORIZATION;
SELECT reason FROM withdrawal.withdrawal WHERE idempotency_key = 'rv-fe-3000';
SET SESSION AUTHORIZATION regress_rv_ops1;
SELECT withdrawal.approve(wid('rv-fe-3000'));
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_rv_ops2;
SELECT withdrawal.approve(wid('rv-fe-3000'));
RESET SESSION AUTHORIZATION;

DROP OWNED BY regress_rv_app, regress_rv_ops1, regress_rv_ops2, regress_rv_both;
DROP ROLE regress_rv_app, regress_rv_ops1, regress_rv_ops2, regress_rv_both;
