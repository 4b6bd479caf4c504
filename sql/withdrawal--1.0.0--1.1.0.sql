/* withdrawal 1.0.0 -> 1.1.0 */

\echo Use "ALTER EXTENSION withdrawal UPDATE TO '1.1.0'" to load this file. \quit

/*
 * Idempotency keys are scoped per account (credits and withdrawals): a key
 * chosen by one user's client no longer blocks another user.  Every 1.0.0
 * key is unique, so it is unique per account too.
 */
ALTER TABLE withdrawal.credit
	DROP CONSTRAINT credit_idempotency_key_key,
	ADD CONSTRAINT credit_account_id_idempotency_key_key UNIQUE (account_id, idempotency_key);
ALTER TABLE withdrawal.withdrawal
	DROP CONSTRAINT withdrawal_idempotency_key_key,
	ADD CONSTRAINT withdrawal_account_id_idempotency_key_key UNIQUE (account_id, idempotency_key);

/*
 * Configuration values that would only fail later are refused when
 * written.  Rows written by 1.0.0 are not rechecked: only the columns an
 * UPDATE changes are.
 */
CREATE FUNCTION withdrawal.config_check() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_config_check'
	LANGUAGE C;
COMMENT ON FUNCTION withdrawal.config_check() IS
	'trigger: refuses configuration values that would fail later (time zones, rates, processor URLs)';
REVOKE ALL ON FUNCTION withdrawal.config_check() FROM PUBLIC;
CREATE TRIGGER processor_check BEFORE INSERT OR UPDATE ON withdrawal.processor
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_check();
CREATE TRIGGER channel_check BEFORE INSERT OR UPDATE ON withdrawal.channel
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_check();
CREATE TRIGGER policy_check BEFORE INSERT OR UPDATE ON withdrawal.policy
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_check();
