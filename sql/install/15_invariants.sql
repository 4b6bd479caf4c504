
/* withdrawal: the integrity checks of the books (check_invariants) */

/*
 * The integrity checks of the books, for auditors and monitoring: one row
 * per check, in this order; violations = 0 when it holds, and detail names
 * the first ten offenders.  Each check is one SELECT over the tables,
 * which only reads (in the caller's snapshot, so all nine see the same
 * books).  Which statuses hold funds is status_info()'s answer, read from
 * the table lifecycle.c moves money by.
 */
CREATE FUNCTION withdrawal.check_invariants()
	RETURNS TABLE (check_name text, violations bigint, detail text)
	LANGUAGE sql STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
SELECT c.check_name, c.violations, c.detail FROM (
	/* each wallet's balances are the sums of its ledger entries */
	SELECT 1, 'wallet_matches_ledger', count(*),
		   string_agg(wallet_id::text, ', ' ORDER BY wallet_id) FILTER (WHERE n <= 10)
	  FROM (SELECT coalesce(w.wallet_id, l.wallet_id) AS wallet_id, row_number() OVER () AS n
			  FROM withdrawal.wallet w
			  FULL JOIN (SELECT wallet_id,
								sum(amount) FILTER (WHERE bucket = 'available') AS available,
								sum(amount) FILTER (WHERE bucket = 'held') AS held,
								sum(amount) FILTER (WHERE bucket = 'settled') AS settled
						   FROM withdrawal.ledger_entry GROUP BY wallet_id) l USING (wallet_id)
			 WHERE w.wallet_id IS NULL
				OR w.available <> coalesce(l.available, 0)
				OR w.held <> coalesce(l.held, 0)
				OR w.paid_out <> coalesce(l.settled, 0)) bad
	UNION ALL
	/* a transaction balances, has two legs or more, one currency, kind and wallet */
	SELECT 2, 'transactions_sum_to_zero', count(*),
		   string_agg(txn_id::text, ', ' ORDER BY txn_id) FILTER (WHERE n <= 10)
	  FROM (SELECT txn_id, row_number() OVER () AS n
			  FROM withdrawal.ledger_entry GROUP BY txn_id
			HAVING sum(amount) <> 0 OR count(*) < 2
				OR count(DISTINCT currency) > 1 OR count(DISTINCT kind) > 1
				OR count(DISTINCT wallet_id) > 1) bad
	UNION ALL
	/* a withdrawal is debited once, of its amount (a rejection before any entry aside) */
	SELECT 3, 'one_debit_per_withdrawal', count(*),
		   string_agg(withdrawal_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT w.withdrawal_id, row_number() OVER () AS n
			  FROM withdrawal.withdrawal w
			  LEFT JOIN (SELECT withdrawal_id, count(*) AS debits, sum(amount) AS amount
						   FROM withdrawal.ledger_entry WHERE kind = 'debit' AND leg = 2
						  GROUP BY withdrawal_id) d USING (withdrawal_id)
			 WHERE coalesce(d.debits, 0) > 1
				OR (d.debits = 1 AND d.amount <> w.amount)
				OR (d.debits IS NULL AND NOT (w.status = 'rejected'
					AND NOT EXISTS (SELECT FROM withdrawal.ledger_entry e
									 WHERE e.withdrawal_id = w.withdrawal_id)))) bad
	UNION ALL
	/* refunded, settled and returned at most once each, never both refunded and settled */
	SELECT 4, 'at_most_one_refund_per_withdrawal', count(*),
		   string_agg(withdrawal_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT withdrawal_id, row_number() OVER () AS n
			  FROM withdrawal.ledger_entry WHERE kind IN ('refund', 'settle', 'return') AND leg = 1
			 GROUP BY withdrawal_id
			HAVING count(*) FILTER (WHERE kind = 'refund') > 1
				OR count(*) FILTER (WHERE kind = 'settle') > 1
				OR count(*) FILTER (WHERE kind = 'return') > 1
				OR (count(*) FILTER (WHERE kind = 'refund') = 1
					AND count(*) FILTER (WHERE kind = 'settle') = 1)) bad
	UNION ALL
	/* held while open, settled (less what came back) once paid, else neither */
	SELECT 5, 'status_matches_money', count(*),
		   string_agg(withdrawal_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT w.withdrawal_id, row_number() OVER () AS n
			  FROM withdrawal.withdrawal w
			  LEFT JOIN (SELECT withdrawal_id, sum(amount) FILTER (WHERE bucket = 'held') AS held,
								sum(amount) FILTER (WHERE bucket = 'settled') AS settled
						   FROM withdrawal.ledger_entry WHERE withdrawal_id IS NOT NULL
						  GROUP BY withdrawal_id) m USING (withdrawal_id)
			 WHERE coalesce(m.held, 0) <> CASE WHEN w.status IN
					   (SELECT i.status FROM withdrawal.status_info() i WHERE i.holds_funds)
					   THEN w.amount ELSE 0 END
				OR coalesce(m.settled, 0) <> CASE WHEN w.status = 'paid'
					   THEN w.amount - w.returned_amount ELSE 0 END) bad
	UNION ALL
	/*
	 * What came back of a payout is in the ledger as its return entries,
	 * never more than the amount, all of it once returned, and nothing of a
	 * payout that was not paid.
	 */
	SELECT 6, 'returns_match_withdrawal', count(*),
		   string_agg(withdrawal_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT w.withdrawal_id, row_number() OVER () AS n
			  FROM withdrawal.withdrawal w
			  LEFT JOIN (SELECT withdrawal_id, sum(amount) AS returned
						   FROM withdrawal.ledger_entry
						  WHERE kind IN ('return', 'partial_return') AND bucket = 'available'
						  GROUP BY withdrawal_id) r USING (withdrawal_id)
			 WHERE coalesce(r.returned, 0) <> w.returned_amount
				OR w.returned_amount < 0 OR w.returned_amount > w.amount
				OR (w.status = 'returned') <> (w.returned_amount = w.amount)
				OR (w.returned_amount > 0 AND w.status NOT IN ('paid', 'returned'))) bad
	UNION ALL
	/* no wallet balance below zero */
	SELECT 7, 'no_negative_balances', count(*),
		   string_agg(wallet_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT wallet_id, row_number() OVER () AS n FROM withdrawal.wallet
			 WHERE available < 0 OR held < 0 OR paid_out < 0) bad
	UNION ALL
	/* every credit is one ledger transaction of its amount, and the other way round */
	SELECT 8, 'credits_match_ledger', count(*),
		   string_agg(transfer_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT c.transfer_id, row_number() OVER () AS n
			  FROM withdrawal.credit c
			  FULL JOIN (SELECT credit_id, txn_id,
								sum(amount) FILTER (WHERE bucket = 'available') AS amount
						   FROM withdrawal.ledger_entry WHERE kind = 'credit'
						  GROUP BY credit_id, txn_id) l ON l.credit_id = c.transfer_id
			 WHERE c.transfer_id IS NULL OR l.credit_id IS NULL
				OR l.txn_id <> c.txn_id OR l.amount <> c.amount) bad
	UNION ALL
	/* an entry of a withdrawal is in that withdrawal's account and currency */
	SELECT 9, 'entries_reference_withdrawals', count(*),
		   string_agg(txn_id::text, ', ') FILTER (WHERE n <= 10)
	  FROM (SELECT e.txn_id, row_number() OVER () AS n
			  FROM withdrawal.ledger_entry e
			 WHERE e.withdrawal_id IS NOT NULL AND e.leg = 1 AND NOT EXISTS
				   (SELECT FROM withdrawal.withdrawal w WHERE w.withdrawal_id = e.withdrawal_id
					   AND w.account_id = (SELECT account_id FROM withdrawal.wallet x
											WHERE x.wallet_id = e.wallet_id)
					   AND w.currency = e.currency)) bad
) c(rank, check_name, violations, detail)
ORDER BY c.rank
$$;
COMMENT ON FUNCTION withdrawal.check_invariants() IS
	'integrity checks of the books; a clean database reports zero violations on every row';

GRANT EXECUTE ON FUNCTION withdrawal.check_invariants() TO withdrawal_ops, withdrawal_auditor;
