
/* withdrawal: audited configuration (docs/security.md#audited-configuration) */

/*
 * Every change of a configuration row (policy, channels, processors,
 * currencies, the blocklist) appends an audit row: action config_insert,
 * config_update or config_delete, actor session_user, and the row before
 * and after as jsonb (detail: table, before, after, and the columns an
 * UPDATE changed).  The tables hold no secret: processors name theirs
 * (api_secret, webhook_secret are names in withdrawal.secrets_file), and a
 * base_url's user information is replaced by [redacted] all the same.
 *
 * Not audited by the trigger:
 * - block() and unblock(), which audit their changes themselves (actions
 *   block, block_update, unblock);
 * - rows loaded by COPY: that is how a restore loads these tables, and the
 *   restored audit log already holds their changes (audit rows written
 *   during the load would also take identity values the restored log
 *   uses, and fail the restore).  The seeded row a restore replaces
 *   (60_restore.sql) is replaced under that COPY, and not audited either;
 * - UPDATEs that change nothing.
 * TRUNCATE is refused on the tables with seeded rows (config_seed) and
 * audited, with the number of rows, on the blocklist.
 *
 * The triggers are created after CREATE EXTENSION has written the seeded
 * rows, so that an installation starts with no configuration audit rows.
 */
CREATE FUNCTION withdrawal.config_audit() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_config_audit'
	LANGUAGE C SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.config_audit() IS
	'trigger: appends an audit row (config_insert, config_update, config_delete, config_truncate) with the row before and after for each change of a configuration table; not for COPY (restores) nor block()/unblock(), which audit themselves';

CREATE TRIGGER currency_audit AFTER INSERT OR UPDATE OR DELETE ON withdrawal.currency
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_audit();
CREATE TRIGGER processor_audit AFTER INSERT OR UPDATE OR DELETE ON withdrawal.processor
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_audit();
CREATE TRIGGER channel_audit AFTER INSERT OR UPDATE OR DELETE ON withdrawal.channel
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_audit();
CREATE TRIGGER policy_audit AFTER INSERT OR UPDATE OR DELETE ON withdrawal.policy
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_audit();
CREATE TRIGGER blocklist_audit AFTER INSERT OR UPDATE OR DELETE ON withdrawal.blocklist
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_audit();
CREATE TRIGGER blocklist_audit_truncate BEFORE TRUNCATE ON withdrawal.blocklist
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_audit();
