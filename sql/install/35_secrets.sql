
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
