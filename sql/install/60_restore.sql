
/* withdrawal: backup and restore (seeded rows, the dispatch binding) */

/*
 * A restore (pg_restore, or psql of a plain dump) runs CREATE EXTENSION,
 * which writes the seeded rows again with their install values, and then
 * loads the dumped rows of every table registered in 90_dump.sql, the
 * configuration tables included.  The dumped row of a seeded key must win
 * over the re-seeded default, or a restore would undo every change made to
 * the defaults (a tightened '*' policy, a disabled sandbox channel).
 *
 * The trigger config_seed() does it: an INSERT of a key whose row is still
 * as installed (seed 'default') updates that row in place with the
 * inserted values and inserts nothing.  pg_restore's COPY fires row
 * triggers, so the dumped row replaces the default whatever order the
 * tables are loaded in; it is an UPDATE and not a DELETE and INSERT
 * because other rows reference the seeded ones (the sandbox channel its
 * processor, wallets their currency).  The dumped row carries its own seed
 * state, so a row that was changed stays 'changed' after the restore.
 *
 * An UPDATE that changes a seeded row marks it 'changed'; from then on an
 * INSERT of its key is a unique violation, as for any other row, and not a
 * silent reset.  Deleting a seeded row (or changing its key, or TRUNCATE)
 * is refused with 55000: nothing in a dump can say that a row is gone, so
 * the next restore would bring the default back, enabled and permissive.
 * Operators disable the sandbox channel and tighten the '*' policy instead.
 */
CREATE FUNCTION withdrawal.config_seed() RETURNS trigger
	AS 'MODULE_PATHNAME', 'withdrawal_config_seed'
	LANGUAGE C;
COMMENT ON FUNCTION withdrawal.config_seed() IS
	'trigger: an INSERT of a key whose row is as CREATE EXTENSION wrote it replaces that row (restores); an UPDATE marks a seeded row changed; seeded rows cannot be deleted (55000)';

CREATE TRIGGER currency_seed BEFORE INSERT OR UPDATE OR DELETE ON withdrawal.currency
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER currency_seed_truncate BEFORE TRUNCATE ON withdrawal.currency
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER processor_seed BEFORE INSERT OR UPDATE OR DELETE ON withdrawal.processor
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER processor_seed_truncate BEFORE TRUNCATE ON withdrawal.processor
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER channel_seed BEFORE INSERT OR UPDATE OR DELETE ON withdrawal.channel
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER channel_seed_truncate BEFORE TRUNCATE ON withdrawal.channel
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER policy_seed BEFORE INSERT OR UPDATE OR DELETE ON withdrawal.policy
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER policy_seed_truncate BEFORE TRUNCATE ON withdrawal.policy
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_seed();

/*
 * The installation whose workers may dispatch this database's payouts:
 * the database system (pg_control_system().system_identifier) and the
 * database (its OID; the name is for people), written by CREATE EXTENSION
 * and dumped with the data.  A copy restored elsewhere (another database,
 * another cluster) loads the binding of the original over its own, and its
 * workers hold dispatch, sending nothing, until an operator calls
 * resume_dispatch() there.  A physical standby, once promoted, keeps both
 * identifiers and dispatches on; pg_upgrade creates a new system
 * identifier, so dispatch is held after it until resumed
 * (docs/backup-restore.md).
 */
CREATE TABLE withdrawal.installation (
	singleton	boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	system_identifier bigint NOT NULL,
	database_oid oid NOT NULL,
	database_name name NOT NULL,
	bound_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	bound_by	name NOT NULL DEFAULT SESSION_USER,
	seed		withdrawal.seed_state
);
COMMENT ON TABLE withdrawal.installation IS
	'the database system and database whose workers may dispatch these payouts; one row, dumped, rebound by resume_dispatch()';
COMMENT ON COLUMN withdrawal.installation.seed IS
	'default while the row is the one CREATE EXTENSION wrote, changed after resume_dispatch(); maintained by the extension';
INSERT INTO withdrawal.installation (system_identifier, database_oid, database_name, seed)
SELECT s.system_identifier, d.oid, d.datname, 'default'
  FROM pg_catalog.pg_control_system() s, pg_catalog.pg_database d
 WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database();
CREATE TRIGGER installation_seed BEFORE INSERT OR UPDATE OR DELETE ON withdrawal.installation
	FOR EACH ROW EXECUTE FUNCTION withdrawal.config_seed();
CREATE TRIGGER installation_seed_truncate BEFORE TRUNCATE ON withdrawal.installation
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_seed();
/* the workers re-read the binding when it changes, and wake */
CREATE TRIGGER installation_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON withdrawal.installation
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.config_changed();

CREATE FUNCTION withdrawal.dispatch_binding(OUT held boolean,
											OUT bound_system_identifier bigint,
											OUT bound_database_oid oid,
											OUT bound_database_name name,
											OUT bound_at timestamptz,
											OUT bound_by name,
											OUT system_identifier bigint,
											OUT database_oid oid,
											OUT database_name name)
	RETURNS record
	AS 'MODULE_PATHNAME', 'withdrawal_dispatch_binding'
	LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.dispatch_binding() IS
	'the installation the payouts are bound to and the current one; held is true when they differ and the workers send nothing';

CREATE FUNCTION withdrawal.resume_dispatch(reason text)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'withdrawal_resume_dispatch'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.resume_dispatch(text) IS
	'ops: binds the payouts to this installation so that its workers dispatch them (after a restore or pg_upgrade); audited with the reason; false when dispatch was not held';

GRANT EXECUTE ON FUNCTION withdrawal.dispatch_binding() TO withdrawal_ops, withdrawal_auditor;
GRANT EXECUTE ON FUNCTION withdrawal.resume_dispatch(text) TO withdrawal_ops;
