
/* withdrawal: ops-editable configuration (processors, channels, policy) */

/*
 * Values that would only fail later (a time zone PostgreSQL does not know,
 * a NaN or infinite rate, a base_url the dispatcher refuses, a review
 * expiry that is not positive, a daily cap without its currency, a
 * negative or NULL reconciliation tolerance) are
 * refused with 22023 when written; on UPDATE, only the columns that change.
 */
CREATE FUNCTION withdrawal.config_check() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_config_check'
	LANGUAGE C;
COMMENT ON FUNCTION withdrawal.config_check() IS
	'trigger: refuses configuration values that would fail later (time zones, rates, processor URLs, review expiry, daily caps, reconciliation tolerances)';

/*
 * Payment processors.  Secrets are never stored here: api_secret and
 * webhook_secret name entries of the file set by withdrawal.secrets_file.
 */
CREATE TABLE withdrawal.processor (
	name		text PRIMARY KEY CHECK (name OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_]{0,62}$'),
	driver		text NOT NULL CHECK (driver IN ('sandbox', 'http', 'stripe', 'paypal')),
	base_url	text CHECK (pg_catalog.octet_length(base_url) <= 2048),
	api_secret	text,
	webhook_secret text,
	webhook_scheme text NOT NULL DEFAULT 'hmac-sha256'
				CHECK (webhook_scheme IN ('stripe', 'standard', 'hmac-sha256')),
	webhook_tolerance interval NOT NULL DEFAULT '300 seconds'
				CHECK (webhook_tolerance > '0'::interval),
	connect_timeout_ms integer NOT NULL DEFAULT 2000 CHECK (connect_timeout_ms > 0),
	request_timeout_ms integer NOT NULL DEFAULT 10000 CHECK (request_timeout_ms > 0),
	seed		withdrawal.seed_state,
	recon_tolerance_abs bigint NOT NULL DEFAULT 0 CHECK (recon_tolerance_abs >= 0),
	recon_tolerance_bps integer NOT NULL DEFAULT 0
				CHECK (recon_tolerance_bps BETWEEN 0 AND 10000),
	CHECK (driver = 'sandbox' OR base_url IS NOT NULL)
);
COMMENT ON TABLE withdrawal.processor IS 'payment processors: driver, endpoint, secret names, webhook scheme, timeouts';
COMMENT ON COLUMN withdrawal.processor.seed IS
	'default or changed for the sandbox processor CREATE EXTENSION installs (it cannot be deleted), NULL for processors operators added; maintained by the extension';
COMMENT ON COLUMN withdrawal.processor.recon_tolerance_abs IS
	'reconcile(): an amount difference of at most this many minor units (or within recon_tolerance_bps) is amount_within_tolerance, not a discrepancy; 0: exact';
COMMENT ON COLUMN withdrawal.processor.recon_tolerance_bps IS
	'reconcile(): an amount difference of at most this many basis points of the ledger amount (or within recon_tolerance_abs) is amount_within_tolerance, not a discrepancy; 0 to 10000';

/*
 * Channels: how a user is paid (bank, alipay, paypal, stripe...), each
 * through one processor, with flow control, an opening window and staged
 * release.  rate_per_second NULL means no rate limit; open_from/open_until
 * NULL means always open; a window whose end is before its start crosses
 * midnight.  daily_count_cap and daily_amount_cap are the processor's
 * allocation for a channel day (from local midnight in timezone), counted
 * when requests are accepted (withdrawal.channel_usage); a channel with a
 * cap pays one currency, cap_currency, since an amount cap in minor units
 * means nothing across currencies.
 */
CREATE TABLE withdrawal.channel (
	name		text CONSTRAINT channel_pkey PRIMARY KEY
				CHECK (name OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_]{0,62}$'),
	processor	text NOT NULL REFERENCES withdrawal.processor,
	enabled		boolean NOT NULL DEFAULT true,
	rate_per_second double precision CHECK (rate_per_second > 0),
	burst		integer NOT NULL DEFAULT 1 CHECK (burst >= 1),
	max_in_flight integer CHECK (max_in_flight >= 1),
	open_from	time,
	open_until	time,
	timezone	text NOT NULL DEFAULT 'UTC',
	release_percent integer NOT NULL DEFAULT 100 CHECK (release_percent BETWEEN 0 AND 100),
	seed		withdrawal.seed_state,
	daily_count_cap integer CHECK (daily_count_cap >= 1),
	daily_amount_cap bigint CHECK (daily_amount_cap >= 1),
	cap_currency text REFERENCES withdrawal.currency,
	CHECK ((open_from IS NULL) = (open_until IS NULL)),
	CONSTRAINT channel_cap_currency
		CHECK ((cap_currency IS NULL) = (daily_count_cap IS NULL AND daily_amount_cap IS NULL))
);
COMMENT ON TABLE withdrawal.channel IS 'payout channels: processor, rate limit, in-flight cap, opening window, staged release, daily caps';
COMMENT ON COLUMN withdrawal.channel.seed IS
	'default or changed for the sandbox channel CREATE EXTENSION installs (it cannot be deleted: disable it), NULL for channels operators added; maintained by the extension';
COMMENT ON COLUMN withdrawal.channel.daily_count_cap IS
	'most withdrawals accepted per channel day (local midnight in timezone); NULL: no cap';
COMMENT ON COLUMN withdrawal.channel.daily_amount_cap IS
	'most money accepted per channel day, in minor units of cap_currency; NULL: no cap';
COMMENT ON COLUMN withdrawal.channel.cap_currency IS
	'the one currency a channel with a daily cap pays (others get WD004); set exactly when a cap is';

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
	seed		withdrawal.seed_state,
	review_expires_after interval CHECK (review_expires_after > '0'::interval),
	CHECK (max_amount IS NULL OR max_amount >= min_amount)
);
COMMENT ON TABLE withdrawal.policy IS 'risk policy per currency (''*'' is the default); NULL limits are off';
COMMENT ON COLUMN withdrawal.policy.review_expires_after IS
	'a withdrawal left in review this long after its request is rejected and refunded by expire_reviews(); NULL: never';
COMMENT ON COLUMN withdrawal.policy.seed IS
	'default or changed for the ''*'' policy CREATE EXTENSION installs (it cannot be deleted: tighten it), NULL for policies operators added; maintained by the extension';

/*
 * A fresh install works out of the box through the sandbox processor, with
 * a permissive policy.  Operators must set their own policy before going
 * live.
 */
INSERT INTO withdrawal.processor (name, driver, webhook_scheme, seed) VALUES ('sandbox', 'sandbox', 'hmac-sha256', 'default');
INSERT INTO withdrawal.channel (name, processor, seed) VALUES ('sandbox', 'sandbox', 'default');
INSERT INTO withdrawal.policy (currency, seed) VALUES ('*', 'default');

CREATE TRIGGER processor_check BEFORE INSERT OR UPDATE ON withdrawal.processor
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_check();
CREATE TRIGGER channel_check BEFORE INSERT OR UPDATE ON withdrawal.channel
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_check();
CREATE TRIGGER policy_check BEFORE INSERT OR UPDATE ON withdrawal.policy
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_check();

CREATE TRIGGER processor_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON withdrawal.processor
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_changed();
CREATE TRIGGER channel_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON withdrawal.channel
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_changed();
CREATE TRIGGER policy_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON withdrawal.policy
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_changed();
CREATE TRIGGER currency_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON withdrawal.currency
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_changed();


/*
 * The processor drivers this library knows (its registry, processor.c), and
 * what the dispatcher does differently for each.  The regress test
 * "dispatch" compares the names with the CHECK list of
 * withdrawal.processor.driver, so that a driver cannot be added to one
 * without the other.
 */
CREATE FUNCTION withdrawal.drivers(OUT name text, OUT network boolean,
								   OUT settles_by_itself boolean, OUT bulk_submit boolean)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'withdrawal_drivers'
	LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.drivers() IS
	'the processor drivers of the loaded library: whether each sends over the network, settles by itself (sandbox), has its accepted sends recorded in bulk';
GRANT EXECUTE ON FUNCTION withdrawal.drivers() TO withdrawal_ops, withdrawal_auditor;
