/* withdrawal 1.0.0 -> 1.1.0 */

\echo Use "ALTER EXTENSION withdrawal UPDATE TO '1.1.0'" to load this file. \quit

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
