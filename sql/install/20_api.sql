
/* withdrawal: core SQL API (wallets, credits, withdrawals, integrity) */

/*
 * Every entry point is SECURITY DEFINER with a pinned search_path: callers
 * hold EXECUTE only, never rights on the tables.  None is STRICT, so that a
 * NULL argument is an error (22023) rather than a silent NULL result.
 *
 * The functions that find their rows by key (the money paths, the webhook
 * receiver) run with enable_seqscan = off.  Their plans, and those of the
 * foreign-key checks they fire, are kept per session; made while the
 * statistics said a table was empty (a VACUUM ANALYZE right after the
 * install), they would scan it whole at every call, and a bulk load of
 * 100k credits in one statement would take hours instead of seconds.  A
 * lookup by key must be an index lookup whatever the statistics say.
 */

CREATE FUNCTION withdrawal.credit(account_id text, currency text, amount bigint,
								  idempotency_key text, reference text DEFAULT NULL,
								  metadata jsonb DEFAULT '{}',
								  OUT transfer_id uuid, OUT available bigint, OUT replayed boolean)
	RETURNS record
	AS 'MODULE_PATHNAME', 'withdrawal_credit'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.credit(text, text, bigint, text, text, jsonb) IS
	'credits a reward into a wallet (created on first use); idempotent per key';

CREATE FUNCTION withdrawal.balance(account_id text, currency text,
								   OUT available bigint, OUT held bigint, OUT paid_out bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'withdrawal_balance'
	LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.balance(text, text) IS
	'available, held and paid-out balances of a wallet';

CREATE FUNCTION withdrawal.credit_many(account_ids text[], currencies text[], amounts bigint[],
									   idempotency_keys text[], "references" text[] DEFAULT NULL,
									   metadata jsonb[] DEFAULT NULL)
	RETURNS TABLE (item integer, transfer_id uuid, available bigint, result text)
	AS 'MODULE_PATHNAME', 'withdrawal_credit_many'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.credit_many(text[], text[], bigint[], text[], text[], jsonb[]) IS
	'credit() for up to 100,000 items in one call, set-based; per item: new, replayed or mismatched';

CREATE FUNCTION withdrawal.set_account(account_id text, kyc_level integer DEFAULT NULL,
									   frozen boolean DEFAULT NULL)
	RETURNS void
	AS 'MODULE_PATHNAME', 'withdrawal_set_account'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.set_account(text, integer, boolean) IS
	'ops: records an account''s KYC level and freezes or unfreezes it (NULL leaves a field as is)';

CREATE FUNCTION withdrawal.request(account_id text, currency text, amount bigint, channel text,
								   destination jsonb, idempotency_key text,
								   context jsonb DEFAULT '{}',
								   OUT withdrawal_id uuid, OUT status text, OUT replayed boolean)
	RETURNS record
	AS 'MODULE_PATHNAME', 'withdrawal_request'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.request(text, text, bigint, text, jsonb, text, jsonb) IS
	'requests a withdrawal: screens it, holds the funds and queues the payout, idempotently per key';

CREATE FUNCTION withdrawal.cancel(withdrawal_id uuid, reason text)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_cancel'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.cancel(uuid, text) IS
	'cancels a withdrawal that cannot have reached a processor yet and refunds it (WD005 once it may have been sent)';

CREATE FUNCTION withdrawal.approve(withdrawal_id uuid, note text DEFAULT NULL)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_approve'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.approve(uuid, text) IS
	'ops: approves a withdrawal held for review as session_user; returns the resulting status';

CREATE FUNCTION withdrawal.reject(withdrawal_id uuid, reason text)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_reject'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.reject(uuid, text) IS
	'ops: rejects a withdrawal that cannot have reached a processor and refunds it (WD005 once it may have been sent: see resolve())';

CREATE FUNCTION withdrawal.resolve(withdrawal_id uuid, outcome text, evidence text)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_resolve'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.resolve(uuid, text, text) IS
	'ops: records session_user''s vote that the processor confirmed outcome (paid or failed) of a payout that may have been sent; two distinct voters apply it; returns the resulting status';

CREATE VIEW withdrawal.withdrawals AS
	SELECT withdrawal_id, account_id, currency, amount, channel, idempotency_key,
		   status, reason, attempts, last_error, processor_ref, created_at, updated_at
	  FROM withdrawal.withdrawal;
COMMENT ON VIEW withdrawal.withdrawals IS 'one row per withdrawal';

CREATE FUNCTION withdrawal.get(withdrawal_id uuid)
	RETURNS withdrawal.withdrawals
	AS 'MODULE_PATHNAME', 'withdrawal_get'
	LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.get(uuid) IS 'one withdrawal (WD007 when unknown)';

/* Internal: lets the owner (and tests) drive a documented transition. */
CREATE FUNCTION withdrawal.transition(withdrawal_id uuid, to_status text, reason text DEFAULT NULL)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_transition'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.transition(uuid, text, text) IS
	'owner only: applies a documented status transition with its money movement; returns the previous status';

CREATE FUNCTION withdrawal.seal_audit()
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'withdrawal_seal_audit'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.seal_audit() IS
	'links audit rows appended since the last seal into the SHA-256 hash chain; returns how many';

CREATE FUNCTION withdrawal.verify_audit(OUT ok boolean, OUT checked bigint, OUT first_bad_id bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'withdrawal_verify_audit'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.verify_audit() IS
	'recomputes every sealed row hash and the chain, reading only; reports the first tampered row';

CREATE FUNCTION withdrawal.audit_head(OUT seq bigint, OUT audit_id bigint, OUT chain_hash bytea,
									  OUT sealed_at timestamptz)
	RETURNS record
	AS 'MODULE_PATHNAME', 'withdrawal_audit_head'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.audit_head() IS
	'the latest audit seal (seq 0 and zero hash before the first), to be stored outside the database as an anchor';

CREATE FUNCTION withdrawal.verify_audit_anchor(seq bigint, chain_hash bytea)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'withdrawal_verify_audit_anchor'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.verify_audit_anchor(bigint, bytea) IS
	'whether the audit chain recomputed from the rows still reaches chain_hash at seal seq, as audit_head() reported it';

/* Privileges: EXECUTE only, per role (PUBLIC loses everything in 95_privileges). */

GRANT EXECUTE ON FUNCTION withdrawal.credit(text, text, bigint, text, text, jsonb),
	withdrawal.credit_many(text[], text[], bigint[], text[], text[], jsonb[]),
	withdrawal.balance(text, text),
	withdrawal.request(text, text, bigint, text, jsonb, text, jsonb),
	withdrawal.cancel(uuid, text),
	withdrawal.get(uuid)
	TO withdrawal_app;

GRANT EXECUTE ON FUNCTION withdrawal.approve(uuid, text),
	withdrawal.reject(uuid, text),
	withdrawal.resolve(uuid, text, text),
	withdrawal.set_account(text, integer, boolean),
	withdrawal.balance(text, text),
	withdrawal.get(uuid),
	withdrawal.seal_audit(),
	withdrawal.audit_head()
	TO withdrawal_ops;
GRANT SELECT ON withdrawal.withdrawals TO withdrawal_ops;

GRANT EXECUTE ON FUNCTION withdrawal.balance(text, text),
	withdrawal.get(uuid),
	withdrawal.verify_audit(),
	withdrawal.audit_head(),
	withdrawal.verify_audit_anchor(bigint, bytea)
	TO withdrawal_auditor;
GRANT SELECT ON withdrawal.withdrawals, withdrawal.audit_log, withdrawal.audit_seal,
	withdrawal.ledger_entry, withdrawal.policy, withdrawal.channel, withdrawal.processor
	TO withdrawal_auditor;
