
/* withdrawal: pg_dump support */

/*
 * Tables of an extension are not dumped unless registered here (or, for
 * blocklist and sandbox_event, in their own parts), and neither are
 * sequences, those behind identity columns included: every table that
 * holds data or configuration is registered with all its rows, and every
 * sequence, so that a restored database goes on numbering after the
 * restored rows (an unregistered audit_log identity would start at 1 again
 * and fail on audit_log_pkey at the first request).
 *
 * The configuration tables are dumped whole, seeded rows included: a
 * restore's CREATE EXTENSION writes the seeds again with their install
 * values, and the dumped rows then replace them (config_seed(),
 * 60_restore.sql), so that a tightened '*' policy or a disabled sandbox
 * channel stays so.  withdrawal.installation is dumped so that a restored
 * copy holds dispatch until an operator resumes it there.
 *
 * Not dumped: lock_slot, rows CREATE EXTENSION writes and nothing ever
 * changes (the extension only locks them), so the restore's CREATE
 * EXTENSION recreates exactly what the dump would hold.
 * test/t/080_dump_restore.pl and the regression test restore check that
 * nothing else is left out.
 */
SELECT pg_catalog.pg_extension_config_dump('withdrawal.currency', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.account', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.wallet', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.wallet_wallet_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.ledger_entry', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.ledger_txn_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.credit', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.withdrawal', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.approval', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.resolution', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.audit_log_audit_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.audit_seal', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.processor', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.channel', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.policy', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.installation', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.webhook_event', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.settlement', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.settlement_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.settlement_batch', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.recon_run', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.recon_run_seq', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.recon_item', '');
SELECT pg_catalog.pg_extension_config_dump('withdrawal.recon_item_seq', '');
