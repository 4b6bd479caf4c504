
/* withdrawal: bound payout methods (issue 13) */

/*
 * A payout method is a destination bound to an account and a channel
 * ahead of time, so that a request can name it ({"method_id": ...}) instead
 * of carrying a destination of its own: a stolen application session can
 * then only pay to destinations the account already bound and ops
 * verified.  Removed methods stay (withdrawals and the audit log refer to
 * them); the partial unique index makes add_payout_method() idempotent
 * over live methods only, so a removed destination can be bound again.
 * The cooling-off period is not stored here: it is per currency
 * (policy.method_cooling_off) and a method is not, so request() adds it to
 * verified_at.
 */
CREATE TABLE withdrawal.payout_method (
	method_id	uuid CONSTRAINT payout_method_pkey PRIMARY KEY,
	account_id	withdrawal.account_ref NOT NULL,
	channel		text NOT NULL,
	destination withdrawal.json_object NOT NULL
				CHECK (pg_catalog.octet_length(destination::text) <= 2048),
	label		text CHECK (pg_catalog.octet_length(label) BETWEEN 1 AND 128),
	status		text NOT NULL DEFAULT 'pending'
				CHECK (status IN ('pending', 'verified', 'removed')),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	verified_at timestamptz,
	removed_at	timestamptz,
	CHECK ((status = 'pending') = (verified_at IS NULL AND removed_at IS NULL)
		   OR status = 'removed'),
	CHECK ((status = 'removed') = (removed_at IS NOT NULL))
);
CREATE UNIQUE INDEX payout_method_live ON withdrawal.payout_method
	(account_id, channel, pg_catalog.md5(destination::text)) WHERE status <> 'removed';
COMMENT ON TABLE withdrawal.payout_method IS
	'payout destinations bound to an account and a channel; requests name them by method_id';
COMMENT ON COLUMN withdrawal.payout_method.status IS
	'pending (added, not yet usable), verified (usable after the policy''s method_cooling_off) or removed (never usable again)';

ALTER TABLE withdrawal.withdrawal ADD COLUMN method_id uuid;
COMMENT ON COLUMN withdrawal.withdrawal.method_id IS
	'the payout method the request named (destination holds its destination as resolved then), or NULL for a free destination';

ALTER TABLE withdrawal.policy ADD COLUMN free_destinations boolean NOT NULL DEFAULT true;
ALTER TABLE withdrawal.policy ADD COLUMN method_cooling_off interval
	CHECK (method_cooling_off >= '0'::interval);
COMMENT ON COLUMN withdrawal.policy.free_destinations IS
	'whether request() accepts a destination that is not a payout method (default true for compatibility; set false before going live)';
COMMENT ON COLUMN withdrawal.policy.method_cooling_off IS
	'how long after its verification a payout method can first be paid to; NULL: at once';

CREATE FUNCTION withdrawal.add_payout_method(account_id text, channel text, destination jsonb,
											 label text DEFAULT NULL)
	RETURNS uuid
	AS 'MODULE_PATHNAME', 'withdrawal_add_payout_method'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.add_payout_method(text, text, jsonb, text) IS
	'binds a destination to an account and a channel as a pending payout method; the same live destination returns its method';

CREATE FUNCTION withdrawal.verify_payout_method(method_id uuid)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_verify_payout_method'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.verify_payout_method(uuid) IS
	'ops: marks a pending payout method verified; it is usable once the policy''s cooling-off is over';

CREATE FUNCTION withdrawal.remove_payout_method(method_id uuid)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_remove_payout_method'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.remove_payout_method(uuid) IS
	'removes a payout method for good; requests naming it get WD007, replays still replay';

GRANT EXECUTE ON FUNCTION withdrawal.add_payout_method(text, text, jsonb, text),
	withdrawal.remove_payout_method(uuid)
	TO withdrawal_app, withdrawal_ops;
GRANT EXECUTE ON FUNCTION withdrawal.verify_payout_method(uuid) TO withdrawal_ops;
GRANT SELECT ON withdrawal.payout_method TO withdrawal_ops, withdrawal_auditor;
/* PUBLIC gets nothing (95_privileges does the same for a fresh install) */
REVOKE ALL ON FUNCTION withdrawal.add_payout_method(text, text, jsonb, text),
	withdrawal.verify_payout_method(uuid),
	withdrawal.remove_payout_method(uuid) FROM PUBLIC;
REVOKE ALL ON withdrawal.payout_method FROM PUBLIC;

/* Dumped with all its rows (see 90_dump.sql) */
SELECT pg_catalog.pg_extension_config_dump('withdrawal.payout_method', '');
