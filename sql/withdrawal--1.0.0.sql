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
	'trigger: refuses withdrawal status changes that are not documented transitions (WD005)';

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
	CHECK (VALUE IN ('credit', 'debit', 'refund', 'settle', 'return'));
COMMENT ON DOMAIN withdrawal.ledger_kind IS 'the kind of money movement a ledger transaction is';
CREATE DOMAIN withdrawal.ledger_bucket AS text
	CHECK (VALUE IN ('funding', 'available', 'held', 'settled'));
COMMENT ON DOMAIN withdrawal.ledger_bucket IS 'the account a ledger entry posts to';
CREATE DOMAIN withdrawal.entry_amount AS bigint CHECK (VALUE <> 0);
COMMENT ON DOMAIN withdrawal.entry_amount IS 'a signed, non-zero ledger amount';

/* ISO 4217 currencies with their number of minor-unit digits. */
CREATE TABLE withdrawal.currency (
	code		text PRIMARY KEY CHECK (code OPERATOR(pg_catalog.~) '^[A-Z]{3}$'),
	minor_unit	smallint NOT NULL CHECK (minor_unit BETWEEN 0 AND 4)
);
COMMENT ON TABLE withdrawal.currency IS 'ISO 4217 alphabetic codes accepted by the ledger';
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

/* Accounts: the application's users. */
CREATE TABLE withdrawal.account (
	account_id	withdrawal.account_ref PRIMARY KEY,
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
	UNIQUE (account_id, currency)
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
 * settle, return) of a withdrawal impossible to post twice.
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
	PRIMARY KEY (txn_id, leg),
	CHECK (CASE WHEN kind = 'credit' THEN credit_id IS NOT NULL AND withdrawal_id IS NULL
				ELSE credit_id IS NULL AND withdrawal_id IS NOT NULL END)
);
CREATE UNIQUE INDEX ledger_entry_once ON withdrawal.ledger_entry (withdrawal_id, kind)
	WHERE leg = 1 AND withdrawal_id IS NOT NULL;
COMMENT ON TABLE withdrawal.ledger_entry IS 'append-only double-entry ledger; entries of one txn_id sum to zero';
COMMENT ON INDEX withdrawal.ledger_entry_once IS 'at most one debit, refund, settle and return per withdrawal';
CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON withdrawal.ledger_entry
	FOR EACH ROW EXECUTE FUNCTION withdrawal.append_only();
CREATE TRIGGER ledger_entry_no_truncate BEFORE TRUNCATE ON withdrawal.ledger_entry
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();

/* Credits (rewards paid into wallets), with their idempotency keys. */
CREATE TABLE withdrawal.credit (
	transfer_id	uuid PRIMARY KEY,
	idempotency_key withdrawal.idempotency_key NOT NULL UNIQUE,
	account_id	withdrawal.account_ref NOT NULL,
	currency	text NOT NULL,
	amount		withdrawal.amount NOT NULL,
	reference	text CHECK (pg_catalog.octet_length(reference) <= 1024),
	metadata	withdrawal.json_object NOT NULL,
	txn_id		bigint NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE withdrawal.credit IS 'rewards credited to wallets; the idempotency key replays the first result';
CREATE TRIGGER credit_append_only BEFORE UPDATE OR DELETE ON withdrawal.credit
	FOR EACH ROW EXECUTE FUNCTION withdrawal.append_only();

/* Withdrawals. */
CREATE TABLE withdrawal.withdrawal (
	withdrawal_id uuid PRIMARY KEY,
	idempotency_key withdrawal.idempotency_key NOT NULL UNIQUE,
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
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
) WITH (fillfactor = 70);
CREATE INDEX withdrawal_account_created ON withdrawal.withdrawal (account_id, created_at);
CREATE INDEX withdrawal_open ON withdrawal.withdrawal (status, updated_at)
	WHERE status IN ('review', 'queued', 'dispatching', 'submitted', 'dead');
CREATE INDEX withdrawal_processor_ref ON withdrawal.withdrawal (processor_ref)
	WHERE processor_ref IS NOT NULL;
COMMENT ON TABLE withdrawal.withdrawal IS 'one row per withdrawal request, with its lifecycle status';
CREATE TRIGGER withdrawal_status_guard BEFORE UPDATE OF status ON withdrawal.withdrawal
	FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
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

/* withdrawal: ops-editable configuration (processors, channels, policy) */

/*
 * Payment processors.  Secrets are never stored here: api_secret and
 * webhook_secret name entries of the file set by withdrawal.secrets_file.
 */
CREATE TABLE withdrawal.processor (
	name		text PRIMARY KEY CHECK (name OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_]{0,62}$'),
	driver		text NOT NULL CHECK (driver IN ('sandbox', 'http', 'stripe')),
	base_url	text CHECK (pg_catalog.octet_length(base_url) <= 2048),
	api_secret	text,
	webhook_secret text,
	webhook_scheme text NOT NULL DEFAULT 'hmac-sha256'
				CHECK (webhook_scheme IN ('stripe', 'standard', 'hmac-sha256')),
	webhook_tolerance interval NOT NULL DEFAULT '300 seconds'
				CHECK (webhook_tolerance > '0'::interval),
	connect_timeout_ms integer NOT NULL DEFAULT 2000 CHECK (connect_timeout_ms > 0),
	request_timeout_ms integer NOT NULL DEFAULT 10000 CHECK (request_timeout_ms > 0),
	settings	jsonb NOT NULL DEFAULT '{}' CHECK (pg_catalog.jsonb_typeof(settings) = 'object'),
	CHECK (driver = 'sandbox' OR base_url IS NOT NULL)
);
COMMENT ON TABLE withdrawal.processor IS 'payment processors: driver, endpoint, secret names, webhook scheme, timeouts';

/*
 * Channels: how a user is paid (bank, alipay, paypal, stripe...), each
 * through one processor, with flow control, an opening window and staged
 * release.  rate_per_second NULL means no rate limit; open_from/open_until
 * NULL means always open; a window whose end is before its start crosses
 * midnight.
 */
CREATE TABLE withdrawal.channel (
	name		text PRIMARY KEY CHECK (name OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_]{0,62}$'),
	processor	text NOT NULL REFERENCES withdrawal.processor,
	enabled		boolean NOT NULL DEFAULT true,
	rate_per_second double precision CHECK (rate_per_second > 0),
	burst		integer NOT NULL DEFAULT 1 CHECK (burst >= 1),
	max_in_flight integer CHECK (max_in_flight >= 1),
	open_from	time,
	open_until	time,
	timezone	text NOT NULL DEFAULT 'UTC',
	release_percent integer NOT NULL DEFAULT 100 CHECK (release_percent BETWEEN 0 AND 100),
	CHECK ((open_from IS NULL) = (open_until IS NULL))
);
COMMENT ON TABLE withdrawal.channel IS 'payout channels: processor, rate limit, in-flight cap, opening window, staged release';

/*
 * Risk policy per currency; the row with currency '*' applies to currencies
 * without a row of their own.  NULL limits are off.
 */
CREATE TABLE withdrawal.policy (
	currency	text PRIMARY KEY CHECK (currency = '*' OR currency OPERATOR(pg_catalog.~) '^[A-Z]{3}$'),
	min_amount	bigint NOT NULL DEFAULT 1 CHECK (min_amount >= 1),
	max_amount	bigint CHECK (max_amount >= 1),
	daily_amount_limit bigint CHECK (daily_amount_limit >= 1),
	daily_count_limit integer CHECK (daily_count_limit >= 1),
	velocity_window interval NOT NULL DEFAULT '1 hour' CHECK (velocity_window > '0'::interval),
	velocity_account_limit integer CHECK (velocity_account_limit >= 1),
	velocity_device_limit integer CHECK (velocity_device_limit >= 1),
	velocity_ip_limit integer CHECK (velocity_ip_limit >= 1),
	review_threshold bigint CHECK (review_threshold >= 1),
	kyc_threshold bigint CHECK (kyc_threshold >= 1),
	kyc_level_required integer NOT NULL DEFAULT 1 CHECK (kyc_level_required >= 0),
	four_eyes_threshold bigint CHECK (four_eyes_threshold >= 1),
	timezone	text NOT NULL DEFAULT 'UTC',
	CHECK (max_amount IS NULL OR max_amount >= min_amount)
);
COMMENT ON TABLE withdrawal.policy IS 'risk policy per currency (''*'' is the default); NULL limits are off';

/*
 * A fresh install works out of the box through the sandbox processor, with
 * a permissive policy.  Operators must set their own policy before going
 * live.
 */
INSERT INTO withdrawal.processor (name, driver, webhook_scheme) VALUES ('sandbox', 'sandbox', 'hmac-sha256');
INSERT INTO withdrawal.channel (name, processor) VALUES ('sandbox', 'sandbox');
INSERT INTO withdrawal.policy (currency) VALUES ('*');

CREATE TRIGGER processor_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON withdrawal.processor
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_changed();
CREATE TRIGGER channel_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON withdrawal.channel
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_changed();
CREATE TRIGGER policy_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON withdrawal.policy
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_changed();
CREATE TRIGGER currency_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON withdrawal.currency
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_changed();


/* withdrawal: core SQL API (wallets, credits, withdrawals, integrity) */

/*
 * Every entry point is SECURITY DEFINER with a pinned search_path: callers
 * hold EXECUTE only, never rights on the tables.  None is STRICT, so that a
 * NULL argument is an error (22023) rather than a silent NULL result.
 */

CREATE FUNCTION withdrawal.credit(account_id text, currency text, amount bigint,
								  idempotency_key text, reference text DEFAULT NULL,
								  metadata jsonb DEFAULT '{}',
								  OUT transfer_id uuid, OUT available bigint, OUT replayed boolean)
	RETURNS record
	AS 'MODULE_PATHNAME', 'withdrawal_credit'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
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

CREATE FUNCTION withdrawal.set_account(account_id text, kyc_level integer DEFAULT NULL,
									   frozen boolean DEFAULT NULL)
	RETURNS void
	AS 'MODULE_PATHNAME', 'withdrawal_set_account'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.set_account(text, integer, boolean) IS
	'ops: records an account''s KYC level and freezes or unfreezes it (NULL leaves a field as is)';

CREATE FUNCTION withdrawal.request(account_id text, currency text, amount bigint, channel text,
								   destination jsonb, idempotency_key text,
								   context jsonb DEFAULT '{}',
								   OUT withdrawal_id uuid, OUT status text, OUT replayed boolean)
	RETURNS record
	AS 'MODULE_PATHNAME', 'withdrawal_request'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.request(text, text, bigint, text, jsonb, text, jsonb) IS
	'requests a withdrawal: screens it, holds the funds and queues the payout, idempotently per key';

CREATE FUNCTION withdrawal.cancel(withdrawal_id uuid, reason text)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_cancel'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.cancel(uuid, text) IS
	'cancels a withdrawal that has not been dispatched yet and refunds it';

CREATE FUNCTION withdrawal.approve(withdrawal_id uuid, note text DEFAULT NULL)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_approve'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.approve(uuid, text) IS
	'ops: approves a withdrawal held for review as session_user; returns the resulting status';

CREATE FUNCTION withdrawal.reject(withdrawal_id uuid, reason text)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_reject'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.reject(uuid, text) IS
	'ops: rejects a withdrawal that has not been paid and refunds it';

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
	SET search_path = pg_catalog, pg_temp;
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
	'seals pending audit rows, then recomputes every row hash and the chain; reports the first tampered row';

CREATE FUNCTION withdrawal.check_invariants()
	RETURNS TABLE (check_name text, violations bigint, detail text)
	AS 'MODULE_PATHNAME', 'withdrawal_check_invariants'
	LANGUAGE C STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.check_invariants() IS
	'integrity checks of the books; a clean database reports zero violations on every row';

/* Privileges: EXECUTE only, per role (PUBLIC loses everything in 95_privileges). */

GRANT EXECUTE ON FUNCTION withdrawal.credit(text, text, bigint, text, text, jsonb),
	withdrawal.balance(text, text),
	withdrawal.request(text, text, bigint, text, jsonb, text, jsonb),
	withdrawal.cancel(uuid, text),
	withdrawal.get(uuid)
	TO withdrawal_app;

GRANT EXECUTE ON FUNCTION withdrawal.approve(uuid, text),
	withdrawal.reject(uuid, text),
	withdrawal.set_account(text, integer, boolean),
	withdrawal.balance(text, text),
	withdrawal.get(uuid),
	withdrawal.check_invariants(),
	withdrawal.seal_audit()
	TO withdrawal_ops;
GRANT SELECT ON withdrawal.withdrawals TO withdrawal_ops;

GRANT EXECUTE ON FUNCTION withdrawal.balance(text, text),
	withdrawal.get(uuid),
	withdrawal.check_invariants(),
	withdrawal.verify_audit()
	TO withdrawal_auditor;
GRANT SELECT ON withdrawal.withdrawals, withdrawal.audit_log, withdrawal.audit_seal,
	withdrawal.ledger_entry, withdrawal.policy, withdrawal.channel, withdrawal.processor
	TO withdrawal_auditor;

/* withdrawal: risk policy helpers (blocklist, counter indexes, window and release checks) */

/*
 * Blocklist loaded by ops (sanctions and fraud lists).  A request whose
 * account id, device id, IP or any top-level value of its destination is
 * listed is recorded as rejected with reason 'blocklist:<list_name>'.
 * IP entries may be single addresses or CIDR networks (the generated
 * column net, GiST-indexed, answers "which listed network contains this
 * address").  Entries past expires_at are ignored.  Rows are written only
 * through block() and unblock(), which audit every change.
 */
CREATE TABLE withdrawal.blocklist (
	kind		text NOT NULL CHECK (kind IN ('destination', 'device', 'ip', 'account')),
	value		text NOT NULL CHECK (pg_catalog.octet_length(value) BETWEEN 1 AND 256),
	list_name	text NOT NULL CHECK (list_name OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_.-]{0,62}$'),
	note		text CHECK (pg_catalog.octet_length(note) <= 1024),
	expires_at	timestamptz,
	added_by	name NOT NULL,
	added_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	net			inet GENERATED ALWAYS AS
				(CASE WHEN kind OPERATOR(pg_catalog.=) 'ip' THEN CAST(value AS pg_catalog.inet) END) STORED,
	PRIMARY KEY (kind, value, list_name)
);
CREATE INDEX blocklist_net ON withdrawal.blocklist USING gist (net inet_ops) WHERE kind = 'ip';
COMMENT ON TABLE withdrawal.blocklist IS
	'ops-loaded block lists: destination tokens, device ids, IPs or networks, account ids';
COMMENT ON INDEX withdrawal.blocklist_net IS 'containment lookups of a request IP in listed networks';
COMMENT ON COLUMN withdrawal.blocklist.net IS 'the value as inet for kind ip (address or network)';

/* Each backend caches which kinds have entries; changes flush that cache. */
CREATE TRIGGER blocklist_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON withdrawal.blocklist
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_changed();

/*
 * Counter indexes.  Daily and velocity limits are counted with index range
 * scans bounded by the window (account: the core's withdrawal_account_created;
 * device and IP: these two), so a request's cost depends on the activity in
 * the window, never on the account's whole history.
 */
CREATE INDEX withdrawal_device_created ON withdrawal.withdrawal (device_id, created_at)
	WHERE device_id IS NOT NULL;
CREATE INDEX withdrawal_ip_created ON withdrawal.withdrawal (ip, created_at)
	WHERE ip IS NOT NULL;
COMMENT ON INDEX withdrawal.withdrawal_device_created IS 'velocity limit per device: range scan over the window';
COMMENT ON INDEX withdrawal.withdrawal_ip_created IS 'velocity limit per IP: range scan over the window';

CREATE FUNCTION withdrawal.block(kind text, value text, list_name text, note text DEFAULT NULL,
								 expires_at timestamptz DEFAULT NULL)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'withdrawal_block'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.block(text, text, text, text, timestamptz) IS
	'ops: adds (true) or updates (false) a blocklist entry; audited';

CREATE FUNCTION withdrawal.unblock(kind text, value text, list_name text)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'withdrawal_unblock'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.unblock(text, text, text) IS
	'ops: removes a blocklist entry; returns whether there was one; audited';

CREATE FUNCTION withdrawal.channel_open_at(channel text, at timestamptz)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'withdrawal_channel_open_at'
	LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.channel_open_at(text, timestamptz) IS
	'whether the channel''s opening window (in its time zone) contains the instant at; the check request() applies at now()';

CREATE FUNCTION withdrawal.channel_released(channel text, account_id text)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'withdrawal_channel_released'
	LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.channel_released(text, text) IS
	'whether the channel''s staged release (release_percent, stable SHA-256 bucket of the account) includes the account';

CREATE FUNCTION withdrawal.policy_day_start(currency text, at timestamptz)
	RETURNS timestamptz
	AS 'MODULE_PATHNAME', 'withdrawal_policy_day_start'
	LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.policy_day_start(text, timestamptz) IS
	'start of the policy day containing at, in the time zone of the currency''s policy (daily limits count from it)';

SELECT pg_catalog.pg_extension_config_dump('withdrawal.blocklist', '');

GRANT EXECUTE ON FUNCTION withdrawal.block(text, text, text, text, timestamptz),
	withdrawal.unblock(text, text, text),
	withdrawal.channel_open_at(text, timestamptz),
	withdrawal.channel_released(text, text),
	withdrawal.policy_day_start(text, timestamptz)
	TO withdrawal_ops;
GRANT EXECUTE ON FUNCTION withdrawal.channel_open_at(text, timestamptz),
	withdrawal.channel_released(text, text),
	withdrawal.policy_day_start(text, timestamptz)
	TO withdrawal_auditor;
GRANT SELECT ON withdrawal.blocklist TO withdrawal_ops, withdrawal_auditor;

/* withdrawal: the payout outbox drained by the dispatcher workers */

/*
 * One row per payout waiting for (or on) the wire.  Rows leave when the
 * payout reaches a status that needs no dispatch, so the table stays small
 * and VACUUM keeps up.  kind 'send' rows belong to queued and dispatching
 * withdrawals; kind 'query' rows are status queries for submitted ones
 * (added by sweep()).  lease_until is set when a worker claims the row:
 * until it passes, no other worker sends the payout; after it passes, the
 * payout is re-sent with the same idempotency key.  claimed_by is the
 * worker number, so that a restarted worker releases its own leases.
 * Only lease_until and claimed_by change on a claim, and neither is
 * indexed, so claims are HOT updates.
 */
CREATE TABLE withdrawal.outbox (
	withdrawal_id uuid PRIMARY KEY,
	channel		text NOT NULL,
	next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	lease_until	timestamptz,
	enqueued_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	kind		text NOT NULL DEFAULT 'send' CHECK (kind IN ('send', 'query')),
	claimed_by	integer
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.01,
		autovacuum_vacuum_insert_scale_factor = 0.01);
CREATE INDEX outbox_due ON withdrawal.outbox (next_attempt_at);
COMMENT ON TABLE withdrawal.outbox IS 'payouts waiting for the dispatcher; the hot queue table';
COMMENT ON INDEX withdrawal.outbox_due IS 'the dispatcher claims due rows in next_attempt_at order';

/*
 * The sandbox processor's delayed events: a payout it accepted is paid
 * withdrawal.sandbox_settle_delay later; one whose amount ends in 42 is
 * then returned after the same delay.
 */
CREATE TABLE withdrawal.sandbox_event (
	withdrawal_id uuid NOT NULL,
	event		text NOT NULL CHECK (event IN ('paid', 'returned')),
	due_at		timestamptz NOT NULL,
	PRIMARY KEY (withdrawal_id, event)
);
CREATE INDEX sandbox_event_due ON withdrawal.sandbox_event (due_at);
COMMENT ON TABLE withdrawal.sandbox_event IS 'settlements and returns the sandbox processor will report, and when';
COMMENT ON INDEX withdrawal.sandbox_event_due IS 'the worker applies sandbox events in due order';

SELECT pg_catalog.pg_extension_config_dump('withdrawal.sandbox_event', '');

CREATE FUNCTION withdrawal.retry(withdrawal_id uuid)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_retry'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.retry(uuid) IS
	'ops: puts a dead-lettered payout back on the queue (same idempotency key, fresh attempt budget); returns the new status';

CREATE FUNCTION withdrawal.sweep(older_than interval DEFAULT '4 hours')
	RETURNS integer
	AS 'MODULE_PATHNAME', 'withdrawal_sweep'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.sweep(interval) IS
	'ops: re-sends payouts whose lease expired, queries the processor about payouts submitted longer than withdrawal.poll_after ago, re-queues payouts missing from the outbox, and fails and refunds payouts queued longer than older_than that were never sent; returns how many it moved';

GRANT EXECUTE ON FUNCTION withdrawal.retry(uuid), withdrawal.sweep(interval) TO withdrawal_ops;
GRANT SELECT ON withdrawal.outbox TO withdrawal_auditor;

/* withdrawal: secrets (values live in withdrawal.secrets_file, never here) */

/*
 * Owner only: 95_privileges revokes EXECUTE from PUBLIC and no role of the
 * extension is granted it.  Returns a digest, never the value.
 */
CREATE FUNCTION withdrawal.secret_fingerprint(name text)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_secret_fingerprint'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.secret_fingerprint(text) IS
	'owner only: hex SHA-256 of the secret called name in withdrawal.secrets_file, NULL when there is none';
/* withdrawal: processor webhooks (signature verification, dedupe, settlement) */

/*
 * Every verified webhook event, applied or not, keyed by the processor's
 * event id: a second delivery of the same id is a duplicate and changes
 * nothing.  Events that were ignored (unknown withdrawal, unknown type,
 * nothing to change) or that disagree with the books (discrepancy) stay
 * here for inspection.  Events whose signature failed are never stored.
 */
CREATE TABLE withdrawal.webhook_event (
	processor	text NOT NULL,
	event_id	text NOT NULL CHECK (pg_catalog.octet_length(event_id) BETWEEN 1 AND 255),
	event_type	text,
	withdrawal_id uuid,
	result		text NOT NULL CHECK (result IN ('applied', 'ignored')),
	discrepancy	text,
	reason		text,
	status_before text,
	status_after text,
	payload		jsonb NOT NULL,
	received_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (processor, event_id),
	CHECK (discrepancy IS NULL OR result = 'ignored')
);
CREATE INDEX webhook_event_withdrawal ON withdrawal.webhook_event (withdrawal_id)
	WHERE withdrawal_id IS NOT NULL;
CREATE INDEX webhook_event_discrepancy ON withdrawal.webhook_event (received_at)
	WHERE discrepancy IS NOT NULL;
COMMENT ON TABLE withdrawal.webhook_event IS
	'verified processor webhook events, deduplicated on (processor, event_id), with what each did';
COMMENT ON INDEX withdrawal.webhook_event_withdrawal IS 'the events of a withdrawal';
COMMENT ON INDEX withdrawal.webhook_event_discrepancy IS
	'events that disagree with the books, for monitoring';
CREATE TRIGGER webhook_event_append_only BEFORE UPDATE OR DELETE ON withdrawal.webhook_event
	FOR EACH ROW EXECUTE FUNCTION withdrawal.append_only();

CREATE FUNCTION withdrawal.receive_webhook(processor text, headers jsonb, body text)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'withdrawal_receive_webhook'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.receive_webhook(text, jsonb, text) IS
	'verifies a processor webhook by the processor''s scheme (WD008), deduplicates it on its event id and applies it: {"result": "applied"|"duplicate"|"ignored", "withdrawal_id", "status"}';

GRANT EXECUTE ON FUNCTION withdrawal.receive_webhook(text, jsonb, text) TO withdrawal_app;
GRANT SELECT ON withdrawal.webhook_event TO withdrawal_ops, withdrawal_auditor;
/* withdrawal: reconciliation of the ledger with processor settlement reports */

/*
 * Processor settlement reports, one row per payout event the processor
 * reports (paid, failed, returned).  Loaded by import_settlement() or by
 * COPY (as the owner).  A row is identified by (processor, processor_ref,
 * status): loading the same report twice adds nothing, while a transfer
 * that is paid on one report and returned on a later one has two rows.
 * withdrawal_id may be NULL when the processor could not attribute the
 * payout; such rows are reported as missing_in_ledger.
 */
CREATE SEQUENCE withdrawal.settlement_seq;
COMMENT ON SEQUENCE withdrawal.settlement_seq IS 'settlement row ids';
CREATE TABLE withdrawal.settlement (
	settlement_id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('withdrawal.settlement_seq'::pg_catalog.regclass),
	processor	text NOT NULL REFERENCES withdrawal.processor,
	processor_ref text NOT NULL CHECK (pg_catalog.octet_length(processor_ref) BETWEEN 1 AND 255),
	withdrawal_id uuid,
	amount		withdrawal.amount NOT NULL,
	currency	text NOT NULL REFERENCES withdrawal.currency,
	status		text NOT NULL CHECK (status IN ('paid', 'failed', 'returned')),
	settled_at	timestamptz NOT NULL,
	imported_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	UNIQUE (processor, processor_ref, status)
);
CREATE INDEX settlement_period ON withdrawal.settlement (processor, settled_at);
CREATE INDEX settlement_withdrawal ON withdrawal.settlement (withdrawal_id);
COMMENT ON INDEX withdrawal.settlement_period IS 'a processor''s settlement rows by time, for reconcile() periods';
COMMENT ON INDEX withdrawal.settlement_withdrawal IS 'the settlement rows of a withdrawal, in any period';
COMMENT ON TABLE withdrawal.settlement IS
	'processor settlement report rows (import_settlement() or COPY), compared with the ledger by reconcile()';

/*
 * When the ledger settled a payout is the time of its "settle" movement;
 * reconcile() selects a period's payouts by it.
 */
CREATE INDEX ledger_entry_settled_at ON withdrawal.ledger_entry (created_at)
	WHERE kind = 'settle' AND leg = 1;
COMMENT ON INDEX withdrawal.ledger_entry_settled_at IS
	'settle movements by time, for reconcile() periods';

/* Reconciliation runs; only successful runs are recorded (one transaction). */
CREATE SEQUENCE withdrawal.recon_run_seq;
COMMENT ON SEQUENCE withdrawal.recon_run_seq IS 'reconciliation run ids';
CREATE TABLE withdrawal.recon_run (
	run_id		bigint PRIMARY KEY DEFAULT pg_catalog.nextval('withdrawal.recon_run_seq'::pg_catalog.regclass),
	processor	text NOT NULL REFERENCES withdrawal.processor,
	period_start timestamptz NOT NULL,
	period_end	timestamptz NOT NULL,
	started_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	finished_at	timestamptz,
	discrepancies bigint,
	run_by		name NOT NULL DEFAULT SESSION_USER,
	CHECK (period_start < period_end)
);
CREATE INDEX recon_run_processor ON withdrawal.recon_run (processor, run_id);
COMMENT ON INDEX withdrawal.recon_run_processor IS 'the runs of a processor, latest last';
COMMENT ON TABLE withdrawal.recon_run IS
	'reconciliation runs: processor, period [period_start, period_end) and how many discrepancies were found';

CREATE SEQUENCE withdrawal.recon_item_seq;
COMMENT ON SEQUENCE withdrawal.recon_item_seq IS 'reconciliation item numbers';
CREATE TABLE withdrawal.recon_item (
	run_id		bigint NOT NULL REFERENCES withdrawal.recon_run,
	item_no		bigint NOT NULL DEFAULT pg_catalog.nextval('withdrawal.recon_item_seq'::pg_catalog.regclass),
	kind		text NOT NULL CHECK (kind IN ('missing_at_processor', 'missing_in_ledger',
										  'amount_mismatch', 'currency_mismatch',
										  'status_mismatch', 'duplicate_at_processor')),
	withdrawal_id uuid,
	processor_ref text,
	ledger_amount bigint,
	processor_amount bigint,
	ledger_currency text,
	processor_currency text,
	ledger_status text,
	processor_status text,
	PRIMARY KEY (run_id, item_no)
);
CREATE INDEX recon_item_withdrawal ON withdrawal.recon_item (withdrawal_id);
COMMENT ON INDEX withdrawal.recon_item_withdrawal IS 'the discrepancies reported for a withdrawal';
COMMENT ON TABLE withdrawal.recon_item IS 'the discrepancies found by a reconciliation run';

CREATE FUNCTION withdrawal.import_settlement(processor text, report text)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'withdrawal_import_settlement'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.import_settlement(text, text) IS
	'loads a CSV settlement report (header processor_ref,withdrawal_id,amount,currency,status,settled_at) into withdrawal.settlement; all rows or none (22023 names the line); returns the number of new rows';

/*
 * jit is off for reconcile(): it is one statement run once per call, whose
 * cost estimate (inflated by the gated per-row lookups) would otherwise
 * buy JIT compilation that takes longer than it saves.
 */
CREATE FUNCTION withdrawal.reconcile(processor text, period_start timestamptz, period_end timestamptz,
									 OUT run_id bigint, OUT kind text, OUT withdrawal_id uuid,
									 OUT processor_ref text, OUT ledger_amount bigint,
									 OUT processor_amount bigint, OUT ledger_status text,
									 OUT processor_status text)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdrawal_reconcile'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET jit = off;
COMMENT ON FUNCTION withdrawal.reconcile(text, timestamptz, timestamptz) IS
	'compares the payouts the ledger settled in [period_start, period_end) with the processor''s settlement rows of the period; records the run and returns its discrepancies';

CREATE FUNCTION withdrawal.reconcile(processor text,
									 OUT run_id bigint, OUT kind text, OUT withdrawal_id uuid,
									 OUT processor_ref text, OUT ledger_amount bigint,
									 OUT processor_amount bigint, OUT ledger_status text,
									 OUT processor_status text)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdrawal_reconcile_since'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET jit = off;
COMMENT ON FUNCTION withdrawal.reconcile(text) IS
	'reconcile() from the end of the processor''s last recorded run (or the beginning) until now, so that a missed night is covered by the next run';

/* The latest run per processor, with its discrepancies counted by kind. */
CREATE VIEW withdrawal.recon_summary AS
	SELECT r.processor, r.run_id, r.period_start, r.period_end, r.started_at, r.finished_at,
		   r.run_by, r.discrepancies,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'missing_at_processor') AS missing_at_processor,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'missing_in_ledger') AS missing_in_ledger,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'amount_mismatch') AS amount_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'currency_mismatch') AS currency_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'status_mismatch') AS status_mismatch,
		   pg_catalog.count(i.item_no) FILTER (WHERE i.kind = 'duplicate_at_processor') AS duplicate_at_processor
	  FROM (SELECT DISTINCT ON (processor) *
			  FROM withdrawal.recon_run
			 ORDER BY processor, run_id DESC) r
	  LEFT JOIN withdrawal.recon_item i ON i.run_id = r.run_id
	 GROUP BY r.processor, r.run_id, r.period_start, r.period_end, r.started_at, r.finished_at,
			  r.run_by, r.discrepancies;
COMMENT ON VIEW withdrawal.recon_summary IS
	'the latest reconciliation run of each processor with its discrepancies counted by kind';

GRANT EXECUTE ON FUNCTION withdrawal.import_settlement(text, text),
	withdrawal.reconcile(text, timestamptz, timestamptz),
	withdrawal.reconcile(text)
	TO withdrawal_ops;
GRANT SELECT ON withdrawal.settlement, withdrawal.recon_run, withdrawal.recon_item,
	withdrawal.recon_summary
	TO withdrawal_ops, withdrawal_auditor;

/* withdrawal: pg_dump support */

/*
 * Tables of an extension are not dumped unless registered here; the seeded
 * configuration rows are recreated by CREATE EXTENSION, so only the rows
 * added by operators are dumped.
 */
SELECT pg_catalog.pg_extension_config_dump('withdrawal.account', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.wallet', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.ledger_entry', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.ledger_txn_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.credit', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.withdrawal', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.approval', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.audit_seal', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.processor', 'WHERE name <> ''sandbox''');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.channel', 'WHERE name <> ''sandbox''');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.policy', 'WHERE currency <> ''*''');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.webhook_event', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.settlement', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.settlement_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.recon_run', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.recon_run_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.recon_item', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.recon_item_seq', '');

/* withdrawal: nothing of the extension is usable by PUBLIC */

/*
 * Runs last so that it covers every object the parts above created;
 * each part grants its own objects to withdrawal_app, withdrawal_ops and
 * withdrawal_auditor.
 */
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA withdrawal FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA withdrawal FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA withdrawal FROM PUBLIC;
