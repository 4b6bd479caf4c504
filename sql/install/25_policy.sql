
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
	CONSTRAINT blocklist_pkey PRIMARY KEY (kind, value, list_name)
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

/*
 * Requests that share a counter are serialised on a row lock of the hash
 * bucket of their account, device or IP (4096 buckets per kind, slot_id
 * kind * 65536 + bucket; src/lock.h), taken before counting.
 */
INSERT INTO withdrawal.lock_slot (slot_id, purpose)
SELECT k.kind * 65536 + b, k.purpose
  FROM (VALUES (1, 'account counter'), (2, 'device counter'), (3, 'ip counter')) k(kind, purpose),
	   pg_catalog.generate_series(0, 4095) b;

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

/*
 * Daily caps of channels (withdrawal.channel.daily_count_cap and
 * daily_amount_cap): what request() accepted through each capped channel
 * on each channel day, one row per channel and day, updated in the
 * request's transaction.  A counter rather than a count at each request:
 * a channel's day may hold a hundred thousand withdrawals, an account's
 * only a few.  Rows of channels without caps are never written.  The
 * counter only grows during its day: a withdrawal refunded later keeps its
 * slot, so that a refund racing a request can never let the channel
 * accept more than its allocation.
 */
CREATE TABLE withdrawal.channel_usage (
	channel		text NOT NULL,
	day			date NOT NULL,
	requests	bigint NOT NULL CHECK (requests >= 0),
	amount		bigint NOT NULL CHECK (amount >= 0),
	CONSTRAINT channel_usage_pkey PRIMARY KEY (channel, day)
);
COMMENT ON TABLE withdrawal.channel_usage IS
	'withdrawals and amount (in cap_currency) accepted per capped channel and channel day; the daily caps are checked against it';

CREATE FUNCTION withdrawal.expire_reviews()
	RETURNS integer
	AS 'MODULE_PATHNAME', 'withdrawal_expire_reviews'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.expire_reviews() IS
	'ops: rejects and refunds the withdrawals left in review longer than their policy''s review_expires_after, each audited; returns how many; the worker runs it every minute';

SELECT pg_catalog.pg_extension_config_dump('withdrawal.channel_usage', '');

GRANT EXECUTE ON FUNCTION withdrawal.expire_reviews() TO withdrawal_ops;
GRANT SELECT ON withdrawal.channel_usage TO withdrawal_ops, withdrawal_auditor;
