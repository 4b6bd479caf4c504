/* withdrawal: core schema (money model, ledger, withdrawals, audit) */

\echo Use "CREATE EXTENSION withdrawal" to load this file. \quit

/*
 * Roles are cluster-wide and may already exist from an installation in
 * another database, so they are created only when missing.
 */
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'withdrawal_app') THEN
		CREATE ROLE withdrawal_app NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'withdrawal_ops') THEN
		CREATE ROLE withdrawal_ops NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'withdrawal_auditor') THEN
		CREATE ROLE withdrawal_auditor NOLOGIN;
	END IF;
END
$roles$;

REVOKE ALL ON SCHEMA withdrawal FROM PUBLIC;
GRANT USAGE ON SCHEMA withdrawal TO withdrawal_app, withdrawal_ops, withdrawal_auditor;

/* Trigger functions implemented in C, used by several tables below. */
CREATE FUNCTION withdrawal.append_only() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_append_only'
	LANGUAGE C;
COMMENT ON FUNCTION withdrawal.append_only() IS
	'trigger: refuses UPDATE, DELETE and TRUNCATE on append-only tables';

CREATE FUNCTION withdrawal.config_changed() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_config_changed'
	LANGUAGE C;
COMMENT ON FUNCTION withdrawal.config_changed() IS
	'trigger: invalidates the per-backend caches of policy, channel, processor and currency rows';

CREATE FUNCTION withdrawal.status_guard() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_status_guard'
	LANGUAGE C;
COMMENT ON FUNCTION withdrawal.status_guard() IS
	'trigger: refuses undocumented status transitions, changes to sent_at and refunds of sent payouts without proof (WD005)';

CREATE FUNCTION withdrawal.status_info(OUT status text, OUT ordinal integer,
									   OUT holds_funds boolean, OUT keeps_outbox boolean,
									   OUT final boolean, OUT next_statuses text[])
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdrawal_status_info'
	LANGUAGE C IMMUTABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.status_info() IS
	'every withdrawal status: whether its amount is held, whether it keeps an outbox row, whether it is final, and the statuses it may move to';
GRANT EXECUTE ON FUNCTION withdrawal.status_info() TO withdrawal_app, withdrawal_ops, withdrawal_auditor;

/*
 * Column rules as domains rather than table CHECKs: the executor re-reads a
 * table's CHECK constraints from their stored text at the start of every
 * INSERT or UPDATE, while a domain's constraints are compiled once per
 * backend in the type cache.  On the request path that difference was
 * about a tenth of the CPU time.
 */
CREATE DOMAIN withdrawal.account_ref AS text
	CHECK (pg_catalog.octet_length(VALUE) BETWEEN 1 AND 64);
COMMENT ON DOMAIN withdrawal.account_ref IS 'an application user id: 1 to 64 bytes';
CREATE DOMAIN withdrawal.idempotency_key AS text
	CHECK (pg_catalog.octet_length(VALUE) BETWEEN 1 AND 255);
COMMENT ON DOMAIN withdrawal.idempotency_key IS 'a client-chosen idempotency key: 1 to 255 bytes';
CREATE DOMAIN withdrawal.amount AS bigint CHECK (VALUE > 0);
COMMENT ON DOMAIN withdrawal.amount IS 'a positive amount in minor units';
CREATE DOMAIN withdrawal.balance AS bigint CHECK (VALUE >= 0);
COMMENT ON DOMAIN withdrawal.balance IS 'a balance in minor units, never negative';
CREATE DOMAIN withdrawal.json_object AS jsonb CHECK (pg_catalog.jsonb_typeof(VALUE) = 'object');
COMMENT ON DOMAIN withdrawal.json_object IS 'a JSON object';
CREATE DOMAIN withdrawal.status AS text
	CHECK (VALUE IN ('review', 'queued', 'dispatching', 'submitted', 'paid',
					 'failed', 'rejected', 'canceled', 'returned', 'dead'));
COMMENT ON DOMAIN withdrawal.status IS 'the status of a withdrawal';
CREATE DOMAIN withdrawal.ledger_kind AS text
	CHECK (VALUE IN ('credit', 'debit', 'refund', 'settle', 'return', 'partial_return'));
COMMENT ON DOMAIN withdrawal.ledger_kind IS 'the kind of money movement a ledger transaction is';
CREATE DOMAIN withdrawal.ledger_bucket AS text
	CHECK (VALUE IN ('funding', 'available', 'held', 'settled'));
COMMENT ON DOMAIN withdrawal.ledger_bucket IS 'the account a ledger entry posts to';
CREATE DOMAIN withdrawal.entry_amount AS bigint CHECK (VALUE <> 0);
COMMENT ON DOMAIN withdrawal.entry_amount IS 'a signed, non-zero ledger amount';
CREATE DOMAIN withdrawal.refund_proof AS text
	CHECK (VALUE IN ('declined', 'processor_status', 'webhook', 'operator_resolution'));
COMMENT ON DOMAIN withdrawal.refund_proof IS
	'why a payout that may have reached a processor could be refunded: its create request was declined, a status query or a signed webhook said it failed, or two operators resolved it';

/*
 * Rows of the configuration tables that CREATE EXTENSION writes (the ISO
 * currencies, the '*' policy, the sandbox processor and channel, the
 * dispatch binding) carry a seed state: 'default' while they are as
 * installed, 'changed' once an UPDATE changed them; rows operators add
 * have none.  A restore runs CREATE EXTENSION, which writes these rows
 * again, before it loads the dumped rows: the dumped row of a key whose
 * row is still 'default' replaces it (see 60_restore.sql).
 */
CREATE DOMAIN withdrawal.seed_state AS text CHECK (VALUE IN ('default', 'changed'));
COMMENT ON DOMAIN withdrawal.seed_state IS
	'state of a row CREATE EXTENSION wrote: default (as installed) or changed; NULL for rows operators added';

/* ISO 4217 currencies with their number of minor-unit digits. */
CREATE TABLE withdrawal.currency (
	code		text PRIMARY KEY CHECK (code OPERATOR(pg_catalog.~) '^[A-Z]{3}$'),
	minor_unit	smallint NOT NULL CHECK (minor_unit BETWEEN 0 AND 4),
	seed		withdrawal.seed_state
);
COMMENT ON TABLE withdrawal.currency IS 'ISO 4217 alphabetic codes accepted by the ledger';
COMMENT ON COLUMN withdrawal.currency.seed IS
	'default or changed for the codes CREATE EXTENSION installs (they cannot be deleted), NULL for codes operators added; maintained by the extension';
INSERT INTO withdrawal.currency (code, minor_unit) VALUES
	('AED', 2),
	('AFN', 2),
	('ALL', 2),
	('AMD', 2),
	('ANG', 2),
	('AOA', 2),
	('ARS', 2),
	('AUD', 2),
	('AWG', 2),
	('AZN', 2),
	('BAM', 2),
	('BBD', 2),
	('BDT', 2),
	('BGN', 2),
	('BHD', 3),
	('BIF', 0),
	('BMD', 2),
	('BND', 2),
	('BOB', 2),
	('BRL', 2),
	('BSD', 2),
	('BTN', 2),
	('BWP', 2),
	('BYN', 2),
	('BZD', 2),
	('CAD', 2),
	('CDF', 2),
	('CHF', 2),
	('CLP', 0),
	('CNY', 2),
	('COP', 2),
	('CRC', 2),
	('CUP', 2),
	('CVE', 2),
	('CZK', 2),
	('DJF', 0),
	('DKK', 2),
	('DOP', 2),
	('DZD', 2),
	('EGP', 2),
	('ERN', 2),
	('ETB', 2),
	('EUR', 2),
	('FJD', 2),
	('FKP', 2),
	('GBP', 2),
	('GEL', 2),
	('GHS', 2),
	('GIP', 2),
	('GMD', 2),
	('GNF', 0),
	('GTQ', 2),
	('GYD', 2),
	('HKD', 2),
	('HNL', 2),
	('HTG', 2),
	('HUF', 2),
	('IDR', 2),
	('ILS', 2),
	('INR', 2),
	('IQD', 3),
	('IRR', 2),
	('ISK', 0),
	('JMD', 2),
	('JOD', 3),
	('JPY', 0),
	('KES', 2),
	('KGS', 2),
	('KHR', 2),
	('KMF', 0),
	('KPW', 2),
	('KRW', 0),
	('KWD', 3),
	('KYD', 2),
	('KZT', 2),
	('LAK', 2),
	('LBP', 2),
	('LKR', 2),
	('LRD', 2),
	('LSL', 2),
	('LYD', 3),
	('MAD', 2),
	('MDL', 2),
	('MGA', 2),
	('MKD', 2),
	('MMK', 2),
	('MNT', 2),
	('MOP', 2),
	('MRU', 2),
	('MUR', 2),
	('MVR', 2),
	('MWK', 2),
	('MXN', 2),
	('MYR', 2),
	('MZN', 2),
	('NAD', 2),
	('NGN', 2),
	('NIO', 2),
	('NOK', 2),
	('NPR', 2),
	('NZD', 2),
	('OMR', 3),
	('PAB', 2),
	('PEN', 2),
	('PGK', 2),
	('PHP', 2),
	('PKR', 2),
	('PLN', 2),
	('PYG', 0),
	('QAR', 2),
	('RON', 2),
	('RSD', 2),
	('RUB', 2),
	('RWF', 0),
	('SAR', 2),
	('SBD', 2),
	('SCR', 2),
	('SDG', 2),
	('SEK', 2),
	('SGD', 2),
	('SHP', 2),
	('SLE', 2),
	('SOS', 2),
	('SRD', 2),
	('SSP', 2),
	('STN', 2),
	('SVC', 2),
	('SYP', 2),
	('SZL', 2),
	('THB', 2),
	('TJS', 2),
	('TMT', 2),
	('TND', 3),
	('TOP', 2),
	('TRY', 2),
	('TTD', 2),
	('TWD', 2),
	('TZS', 2),
	('UAH', 2),
	('UGX', 0),
	('USD', 2),
	('UYU', 2),
	('UZS', 2),
	('VES', 2),
	('VND', 0),
	('VUV', 0),
	('WST', 2),
	('XAF', 0),
	('XCD', 2),
	('XOF', 0),
	('XPF', 0),
	('YER', 2),
	('ZAR', 2),
	('ZMW', 2),
	('ZWL', 2);
UPDATE withdrawal.currency SET seed = 'default';

/*
 * Accounts: the application's users.
 *
 * Constraints whose index the C code opens by name (src/indexscan.h) are
 * named explicitly, here and in the other parts.
 */
CREATE TABLE withdrawal.account (
	account_id	withdrawal.account_ref CONSTRAINT account_pkey PRIMARY KEY,
	kyc_level	integer NOT NULL DEFAULT 0 CHECK (kyc_level >= 0),
	frozen		boolean NOT NULL DEFAULT false,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE withdrawal.account IS 'application users: KYC level and freeze flag';

/*
 * Wallets cache the ledger: available = sum of the wallet's "available"
 * entries, held = its "held" entries, paid_out = its "settled" entries.
 * The balance domain makes a negative balance impossible whatever the code
 * does.
 */
CREATE TABLE withdrawal.wallet (
	wallet_id	bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	account_id	withdrawal.account_ref NOT NULL REFERENCES withdrawal.account,
	currency	text NOT NULL REFERENCES withdrawal.currency,
	available	withdrawal.balance NOT NULL DEFAULT 0,
	held		withdrawal.balance NOT NULL DEFAULT 0,
	paid_out	withdrawal.balance NOT NULL DEFAULT 0,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CONSTRAINT wallet_account_id_currency_key UNIQUE (account_id, currency)
) WITH (fillfactor = 80);
COMMENT ON TABLE withdrawal.wallet IS 'per (account, currency) balances, a cache of the ledger kept in the same transaction';

/*
 * The ledger.  A transaction is the set of entries sharing a txn_id; its
 * amounts sum to zero.  Buckets: "available" and "held" are the wallet's own
 * accounts; "funding" (the reward source) and "settled" (money paid out) are
 * house accounts of the currency, and "held" summed over wallets is the
 * house payout clearing account.  House accounts are sums of entries, never
 * a row that every transaction would lock.  The entries name the wallet
 * they concern on every leg so that house balances can be attributed.
 *
 * balance_after is the wallet's balance in the bucket after the entry, a
 * running balance for statements (NULL on the house "funding" leg).
 *
 * The partial unique index makes each once-only effect (debit, refund,
 * settle, return) of a withdrawal impossible to post twice.  A
 * partial_return may come several times (a processor returns a payout in
 * parts); withdrawal.returned_amount, updated in the same statement and
 * CHECKed against the amount, bounds them, and the webhook event id (the
 * primary key of webhook_event) makes each event count once.
 */
CREATE SEQUENCE withdrawal.ledger_txn_seq;
CREATE TABLE withdrawal.ledger_entry (
	txn_id		bigint NOT NULL,
	leg			smallint NOT NULL,
	kind		withdrawal.ledger_kind NOT NULL,
	wallet_id	bigint NOT NULL,
	currency	text NOT NULL,
	bucket		withdrawal.ledger_bucket NOT NULL,
	amount		withdrawal.entry_amount NOT NULL,
	balance_after bigint,
	withdrawal_id uuid,
	credit_id	uuid,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CONSTRAINT ledger_entry_pkey PRIMARY KEY (txn_id, leg),
	CHECK (CASE WHEN kind = 'credit' THEN credit_id IS NOT NULL AND withdrawal_id IS NULL
				ELSE credit_id IS NULL AND withdrawal_id IS NOT NULL END)
);
CREATE UNIQUE INDEX ledger_entry_once ON withdrawal.ledger_entry (withdrawal_id, kind)
	WHERE leg = 1 AND withdrawal_id IS NOT NULL AND kind <> 'partial_return';
COMMENT ON TABLE withdrawal.ledger_entry IS 'append-only double-entry ledger; entries of one txn_id sum to zero';
COMMENT ON INDEX withdrawal.ledger_entry_once IS 'at most one debit, refund, settle and return per withdrawal';
CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON withdrawal.ledger_entry
	FOR EACH ROW EXECUTE FUNCTION withdrawal.append_only();
CREATE TRIGGER ledger_entry_no_truncate BEFORE TRUNCATE ON withdrawal.ledger_entry
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();

/*
 * Credits (rewards paid into wallets), with their idempotency keys.  Keys
 * are scoped per account, as Stripe scopes them per API account: a key
 * chosen by one user's client never blocks another user (a key format such
 * as "reward:checkin:<date>" is then safe to use for everyone).
 */
CREATE TABLE withdrawal.credit (
	transfer_id	uuid PRIMARY KEY,
	idempotency_key withdrawal.idempotency_key NOT NULL,
	account_id	withdrawal.account_ref NOT NULL,
	currency	text NOT NULL,
	amount		withdrawal.amount NOT NULL,
	reference	text CHECK (pg_catalog.octet_length(reference) <= 1024),
	metadata	withdrawal.json_object NOT NULL,
	txn_id		bigint NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CONSTRAINT credit_account_id_idempotency_key_key UNIQUE (account_id, idempotency_key)
);
COMMENT ON TABLE withdrawal.credit IS 'rewards credited to wallets; the idempotency key replays the first result';
CREATE TRIGGER credit_append_only BEFORE UPDATE OR DELETE ON withdrawal.credit
	FOR EACH ROW EXECUTE FUNCTION withdrawal.append_only();
CREATE TRIGGER credit_no_truncate BEFORE TRUNCATE ON withdrawal.credit
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();

/* Withdrawals; idempotency keys are scoped per account, as for credits. */
CREATE TABLE withdrawal.withdrawal (
	withdrawal_id uuid PRIMARY KEY,
	idempotency_key withdrawal.idempotency_key NOT NULL,
	account_id	withdrawal.account_ref NOT NULL,
	currency	text NOT NULL,
	amount		withdrawal.amount NOT NULL,
	channel		text NOT NULL,
	destination	withdrawal.json_object NOT NULL,
	context		withdrawal.json_object NOT NULL,
	device_id	text,
	ip			inet,
	status		withdrawal.status NOT NULL,
	reason		text,
	requested_by name NOT NULL,
	attempts	integer NOT NULL DEFAULT 0,
	last_error	text,
	processor_ref text,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	sent_at		timestamptz,
	refund_proof withdrawal.refund_proof,
	returned_amount bigint NOT NULL DEFAULT 0,
	CONSTRAINT withdrawal_account_id_idempotency_key_key UNIQUE (account_id, idempotency_key),
	CONSTRAINT withdrawal_returned_amount_check
		CHECK (returned_amount >= 0 AND returned_amount <= amount)
) WITH (fillfactor = 70);
CREATE INDEX withdrawal_account_created ON withdrawal.withdrawal (account_id, created_at);
CREATE INDEX withdrawal_open ON withdrawal.withdrawal (status, updated_at)
	WHERE status IN ('review', 'queued', 'dispatching', 'submitted', 'dead');
CREATE INDEX withdrawal_processor_ref ON withdrawal.withdrawal (processor_ref)
	WHERE processor_ref IS NOT NULL;
COMMENT ON TABLE withdrawal.withdrawal IS 'one row per withdrawal request, with its lifecycle status';
COMMENT ON COLUMN withdrawal.withdrawal.sent_at IS
	'when a create request for this payout could first have reached the processor; committed durably before it is sent, never cleared';
COMMENT ON COLUMN withdrawal.withdrawal.refund_proof IS
	'the proof that the processor did not and will not pay, required to refund a payout once sent_at is set';
COMMENT ON COLUMN withdrawal.withdrawal.returned_amount IS
	'the part of a paid payout the processor returned (partial returns), credited back to the wallet; the amount once returned';
/*
 * The guard refuses undocumented transitions, a sent_at that is cleared or
 * moved, and a refund of a payout that may have been sent without a proof
 * (SPEC section 5), whoever makes the change.
 */
CREATE TRIGGER withdrawal_status_guard BEFORE UPDATE OF status, sent_at ON withdrawal.withdrawal
	FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.sent_at IS DISTINCT FROM NEW.sent_at)
	EXECUTE FUNCTION withdrawal.status_guard();

/* Approvals of withdrawals held for manual review (four-eyes). */
CREATE TABLE withdrawal.approval (
	withdrawal_id uuid NOT NULL REFERENCES withdrawal.withdrawal,
	approver	name NOT NULL,
	note		text CHECK (pg_catalog.octet_length(note) <= 1024),
	approved_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (withdrawal_id, approver)
);
COMMENT ON TABLE withdrawal.approval IS 'manual-review approvals; two distinct approvers above the four-eyes threshold';
CREATE TRIGGER approval_append_only BEFORE UPDATE OR DELETE ON withdrawal.approval
	FOR EACH ROW EXECUTE FUNCTION withdrawal.append_only();
CREATE TRIGGER approval_no_truncate BEFORE TRUNCATE ON withdrawal.approval
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();

/*
 * Operators' resolutions of payouts that may have been sent and whose
 * outcome the dispatcher could not learn: each vote names the outcome the
 * processor confirmed and the evidence; two distinct operators voting for
 * the same outcome apply it (resolve()).
 */
CREATE TABLE withdrawal.resolution (
	withdrawal_id uuid NOT NULL REFERENCES withdrawal.withdrawal,
	approver	name NOT NULL,
	outcome		text NOT NULL CHECK (outcome IN ('paid', 'failed')),
	evidence	text NOT NULL CHECK (pg_catalog.octet_length(evidence) BETWEEN 1 AND 1024),
	voted_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (withdrawal_id, approver)
);
COMMENT ON TABLE withdrawal.resolution IS
	'operators'' votes resolving a payout of unknown outcome; two distinct approvers with the same outcome apply it';
CREATE TRIGGER resolution_append_only BEFORE UPDATE OR DELETE ON withdrawal.resolution
	FOR EACH ROW EXECUTE FUNCTION withdrawal.append_only();
CREATE TRIGGER resolution_no_truncate BEFORE TRUNCATE ON withdrawal.resolution
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();

/*
 * The audit log.  Rows are appended with the transaction that acts; a
 * sealer (the worker, or verify_audit()) later links them, in the order it
 * finds them committed, into a SHA-256 hash chain stored in audit_seal.
 * Chaining at insert time would make the chain head a lock that every
 * request holds until its commit is flushed, serialising all commits.
 */
CREATE TABLE withdrawal.audit_log (
	audit_id	bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	logged_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	actor		name NOT NULL,
	action		text NOT NULL,
	withdrawal_id uuid,
	account_id	text,
	before_status text,
	after_status text,
	detail		jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE withdrawal.audit_log IS 'append-only audit log, hash-chained through withdrawal.audit_seal';
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON withdrawal.audit_log
	FOR EACH ROW EXECUTE FUNCTION withdrawal.append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON withdrawal.audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();

CREATE TABLE withdrawal.audit_seal (
	seq			bigint PRIMARY KEY,
	audit_id	bigint NOT NULL UNIQUE,
	row_hash	bytea NOT NULL,
	chain_hash	bytea NOT NULL,
	sealed_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE withdrawal.audit_seal IS 'hash chain over audit_log: chain_hash = sha256(previous chain_hash || row_hash)';
CREATE TRIGGER audit_seal_append_only BEFORE UPDATE OR DELETE ON withdrawal.audit_seal
	FOR EACH ROW EXECUTE FUNCTION withdrawal.append_only();
CREATE TRIGGER audit_seal_no_truncate BEFORE TRUNCATE ON withdrawal.audit_seal
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();

/*
 * Rows that only the extension locks, in place of advisory locks, which
 * any role could take and hold to stall it.  Locking a row takes the
 * UPDATE privilege on the table, which no role but the owner has here.
 * Row 0 serialises the audit sealers; the policy part adds the hash
 * buckets of the request counters.  The extension's C code locks them
 * (src/lock.c) and never changes them.
 */
CREATE TABLE withdrawal.lock_slot (
	slot_id		integer CONSTRAINT lock_slot_pkey PRIMARY KEY,
	purpose		text NOT NULL
);
COMMENT ON TABLE withdrawal.lock_slot IS
	'rows locked by the extension to serialise audit sealers and requests sharing a policy counter; never locked or changed by anyone else';
INSERT INTO withdrawal.lock_slot (slot_id, purpose) VALUES (0, 'audit sealer');
