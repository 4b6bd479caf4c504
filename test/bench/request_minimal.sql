-- The third baseline of test/bench/request.sh (issue 16): the minimal
-- competent withdrawal transaction, copied from the issue's reference
-- (idempotency key, conditional debit, two ledger rows, outbox row) with
-- its function unchanged.  Only the seed is adapted: the account count is
-- the bench's (psql variable accounts), the reference's own naive tables
-- are left out (request.sh has its naive baseline) and request.sh runs
-- the VACUUM ANALYZE after seeding.
DROP SCHEMA IF EXISTS ref CASCADE;
CREATE SCHEMA ref;
CREATE TABLE ref.account (
  account_id bigint PRIMARY KEY,
  currency char(3) NOT NULL DEFAULT 'USD',
  available bigint NOT NULL CHECK (available >= 0),
  held bigint NOT NULL DEFAULT 0 CHECK (held >= 0)
);
CREATE TABLE ref.withdrawal (
  id bigserial PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES ref.account,
  amount bigint NOT NULL CHECK (amount > 0),
  currency char(3) NOT NULL,
  idempotency_key text NOT NULL,
  request_hash bytea NOT NULL,
  status text NOT NULL DEFAULT 'requested',
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (account_id, idempotency_key)
);
CREATE TABLE ref.ledger_entry (
  id bigserial PRIMARY KEY,
  account_id bigint NOT NULL,
  withdrawal_id bigint,
  kind text NOT NULL,
  amount bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE ref.outbox (
  id bigserial PRIMARY KEY,
  withdrawal_id bigint NOT NULL,
  event_type text NOT NULL,
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION ref.request_withdrawal(p_account bigint, p_amount bigint, p_currency text, p_key text)
RETURNS TABLE (withdrawal_id bigint, status text, replayed boolean)
LANGUAGE plpgsql AS $$
DECLARE
  h bytea := sha256(convert_to(p_account::text || '|' || p_amount::text || '|' || p_currency, 'UTF8'));
  w ref.withdrawal;
BEGIN
  SELECT * INTO w FROM ref.withdrawal WHERE account_id = p_account AND idempotency_key = p_key;
  IF FOUND THEN
    IF w.request_hash <> h THEN
      RAISE EXCEPTION 'idempotency key reused with different parameters' USING ERRCODE = 'P0002';
    END IF;
    RETURN QUERY SELECT w.id, w.status, true; RETURN;
  END IF;
  UPDATE ref.account SET available = available - p_amount, held = held + p_amount
   WHERE account_id = p_account AND available >= p_amount AND currency = p_currency;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'insufficient funds' USING ERRCODE = 'P0001';
  END IF;
  INSERT INTO ref.withdrawal (account_id, amount, currency, idempotency_key, request_hash)
  VALUES (p_account, p_amount, p_currency, p_key, h) RETURNING * INTO w;
  INSERT INTO ref.ledger_entry (account_id, withdrawal_id, kind, amount) VALUES
    (p_account, w.id, 'debit_available', -p_amount), (p_account, w.id, 'credit_held', p_amount);
  INSERT INTO ref.outbox (withdrawal_id, event_type, payload)
  VALUES (w.id, 'withdrawal.requested', jsonb_build_object('withdrawal_id', w.id, 'account_id', p_account, 'amount', p_amount, 'currency', p_currency, 'idempotency_key', p_key));
  RETURN QUERY SELECT w.id, w.status, false;
END $$;
INSERT INTO ref.account (account_id, available) SELECT g, 1000000000 FROM generate_series(1, :accounts) g;
