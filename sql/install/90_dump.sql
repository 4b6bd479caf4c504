
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
SELECT pg_catalog.pg_extension_config_dump('withdrawal.resolution', '');
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
