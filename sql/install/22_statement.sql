
/* withdrawal: account statements (issue 13) */

/*
 * A statement pages through one wallet's ledger by txn_id, so it needs the
 * wallet's transactions in txn_id order: no other index leads with
 * wallet_id.  Every transaction has a leg 2 and concerns one wallet, so
 * indexing leg 2 only finds them all, at one index insert per movement
 * rather than two; the legs are then fetched by primary key.  Inserts go
 * to a leaf per wallet, not to the right edge like the primary key's:
 * that, and the full-page images after each checkpoint, is the cost on
 * credit() (test/bench/statement.sh measures it).
 */
CREATE INDEX ledger_entry_wallet ON withdrawal.ledger_entry (wallet_id, txn_id) WHERE leg = 2;
COMMENT ON INDEX withdrawal.ledger_entry_wallet IS
	'a wallet''s ledger transactions in txn_id order (by their leg 2), for statement()';

CREATE FUNCTION withdrawal.statement(account_id text, currency text,
									 after_txn_id bigint DEFAULT NULL,
									 page_size integer DEFAULT 100)
	RETURNS TABLE (txn_id bigint, kind text, bucket text, amount bigint,
				   balance_after bigint, withdrawal_id uuid, credit_id uuid,
				   withdrawal_status text, created_at timestamptz)
	AS 'MODULE_PATHNAME', 'withdrawal_statement'
	LANGUAGE C STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.statement(text, text, bigint, integer) IS
	'a wallet''s ledger movements after after_txn_id, page_size ledger transactions at a time, with running balances';

GRANT EXECUTE ON FUNCTION withdrawal.statement(text, text, bigint, integer)
	TO withdrawal_app, withdrawal_ops, withdrawal_auditor;
