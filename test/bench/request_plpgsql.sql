-- The baseline of test/bench/request.sh: withdrawal.request() written
-- plainly in PL/pgSQL, doing the same work in the same tables (validation,
-- idempotency, account, channel and policy reads, the conditional debit,
-- ledger entries, outbox and audit rows), with the same security
-- attributes.  Configuration is read from the tables on every call, as a
-- PL/pgSQL function naturally does.
CREATE SCHEMA bench;
CREATE FUNCTION bench.request_plpgsql(p_account text, p_currency text, p_amount bigint,
									  p_channel text, p_destination jsonb, p_key text,
									  p_context jsonb DEFAULT '{}',
									  OUT withdrawal_id uuid, OUT status text, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	w record;
	a record;
	ch record;
	pol record;
	v_id uuid := gen_random_uuid();
	v_status text := 'queued';
	v_reason text;
	v_wallet bigint;
	v_txn bigint;
BEGIN
	IF p_account IS NULL OR octet_length(p_account) NOT BETWEEN 1 AND 64 THEN
		RAISE EXCEPTION 'invalid account_id' USING ERRCODE = '22023';
	END IF;
	IF p_amount IS NULL OR p_amount <= 0 THEN
		RAISE EXCEPTION 'amount must be positive' USING ERRCODE = '22023';
	END IF;
	IF p_key IS NULL OR octet_length(p_key) NOT BETWEEN 1 AND 255 THEN
		RAISE EXCEPTION 'invalid idempotency_key' USING ERRCODE = '22023';
	END IF;
	IF p_currency IS NULL OR p_currency !~ '^[A-Z]{3}$'
	   OR NOT EXISTS (SELECT FROM withdrawal.currency WHERE code = p_currency) THEN
		RAISE EXCEPTION 'invalid currency' USING ERRCODE = '22023';
	END IF;
	IF p_destination IS NULL OR jsonb_typeof(p_destination) <> 'object' THEN
		RAISE EXCEPTION 'destination must be a JSON object' USING ERRCODE = '22023';
	END IF;
	IF p_context IS NULL OR jsonb_typeof(p_context) <> 'object' THEN
		RAISE EXCEPTION 'context must be a JSON object' USING ERRCODE = '22023';
	END IF;

	SELECT * INTO w FROM withdrawal.withdrawal x WHERE x.account_id = p_account AND x.idempotency_key = p_key;
	IF FOUND THEN
		IF w.currency = p_currency AND w.amount = p_amount
		   AND w.channel = p_channel AND w.destination = p_destination THEN
			withdrawal_id := w.withdrawal_id; status := w.status; replayed := true;
			RETURN;
		END IF;
		RAISE EXCEPTION 'idempotency key reused' USING ERRCODE = 'WD002';
	END IF;

	SELECT * INTO a FROM withdrawal.account x WHERE x.account_id = p_account;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown account' USING ERRCODE = 'WD007';
	END IF;
	IF a.frozen THEN
		RAISE EXCEPTION 'account frozen' USING ERRCODE = 'WD006';
	END IF;
	SELECT * INTO ch FROM withdrawal.channel x WHERE x.name = p_channel;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown channel' USING ERRCODE = 'WD007';
	END IF;
	IF NOT ch.enabled THEN
		RAISE EXCEPTION 'channel closed' USING ERRCODE = 'WD004';
	END IF;
	SELECT * INTO pol FROM withdrawal.policy x WHERE x.currency IN (p_currency, '*')
	 ORDER BY x.currency = '*' LIMIT 1;
	IF p_amount < pol.min_amount OR p_amount > pol.max_amount THEN
		RAISE EXCEPTION 'amount out of policy' USING ERRCODE = 'WD003';
	END IF;
	IF p_amount >= pol.review_threshold THEN
		v_status := 'review';
		v_reason := 'review_threshold';
	END IF;

	INSERT INTO withdrawal.withdrawal AS x (withdrawal_id, idempotency_key, account_id, currency,
		amount, channel, destination, context, device_id, ip, status, reason, requested_by)
	VALUES (v_id, p_key, p_account, p_currency, p_amount, p_channel, p_destination, p_context,
		p_context->>'device_id', (p_context->>'ip')::inet, v_status, v_reason, session_user)
	ON CONFLICT (account_id, idempotency_key) DO NOTHING;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'concurrent request with the same key' USING ERRCODE = '40001';
	END IF;

	UPDATE withdrawal.wallet x SET available = x.available - p_amount, held = x.held + p_amount,
		updated_at = now()
	 WHERE x.account_id = p_account AND x.currency = p_currency AND x.available >= p_amount
	RETURNING x.wallet_id INTO v_wallet;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'insufficient funds' USING ERRCODE = 'WD001';
	END IF;

	v_txn := nextval('withdrawal.ledger_txn_seq');
	INSERT INTO withdrawal.ledger_entry (txn_id, leg, kind, wallet_id, currency, bucket, amount, withdrawal_id)
	VALUES (v_txn, 1, 'debit', v_wallet, p_currency, 'available', -p_amount, v_id),
		   (v_txn, 2, 'debit', v_wallet, p_currency, 'held', p_amount, v_id);
	IF v_status = 'queued' THEN
		INSERT INTO withdrawal.outbox (withdrawal_id, channel) VALUES (v_id, p_channel);
	END IF;
	INSERT INTO withdrawal.audit_log (actor, action, withdrawal_id, account_id, after_status, detail)
	VALUES (session_user, 'request', v_id, p_account, v_status,
			jsonb_build_object('amount', p_amount, 'currency', p_currency, 'channel', p_channel, 'reason', v_reason));

	withdrawal_id := v_id; status := v_status; replayed := false;
END
$$;

-- The naive two-statement transaction: a conditional debit and an insert.
CREATE TABLE bench.naive_wallet (account_id text PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE bench.naive_payout (id bigserial PRIMARY KEY, account_id text NOT NULL,
								 amount bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
