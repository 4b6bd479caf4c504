/* withdrawal: processor webhooks (signature verification, dedupe, settlement) */

/*
 * Every verified webhook event, applied or not, keyed by the processor's
 * event id: a second delivery of the same id is a duplicate and changes
 * nothing.  Events that were ignored (unknown withdrawal, unknown type,
 * nothing to change) or that disagree with the books (discrepancy) stay
 * here for inspection.  Events whose signature failed are never stored.
 */
CREATE TABLE withdrawal.webhook_event (
	processor	text NOT NULL,
	event_id	text NOT NULL CHECK (pg_catalog.octet_length(event_id) BETWEEN 1 AND 255),
	event_type	text,
	withdrawal_id uuid,
	result		text NOT NULL CHECK (result IN ('applied', 'ignored')),
	discrepancy	text,
	reason		text,
	status_before text,
	status_after text,
	payload		jsonb NOT NULL,
	received_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (processor, event_id),
	CHECK (discrepancy IS NULL OR result = 'ignored')
);
CREATE INDEX webhook_event_withdrawal ON withdrawal.webhook_event (withdrawal_id)
	WHERE withdrawal_id IS NOT NULL;
CREATE INDEX webhook_event_discrepancy ON withdrawal.webhook_event (received_at)
	WHERE discrepancy IS NOT NULL;
COMMENT ON TABLE withdrawal.webhook_event IS
	'verified processor webhook events, deduplicated on (processor, event_id), with what each did';
COMMENT ON INDEX withdrawal.webhook_event_withdrawal IS 'the events of a withdrawal';
COMMENT ON INDEX withdrawal.webhook_event_discrepancy IS
	'events that disagree with the books, for monitoring';
CREATE TRIGGER webhook_event_append_only BEFORE UPDATE OR DELETE ON withdrawal.webhook_event
	FOR EACH ROW EXECUTE FUNCTION withdrawal.append_only();
CREATE TRIGGER webhook_event_no_truncate BEFORE TRUNCATE ON withdrawal.webhook_event
	FOR EACH STATEMENT EXECUTE FUNCTION withdrawal.append_only();

CREATE FUNCTION withdrawal.receive_webhook(processor text, headers jsonb, body text)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'withdrawal_receive_webhook'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_seqscan = off;
COMMENT ON FUNCTION withdrawal.receive_webhook(text, jsonb, text) IS
	'verifies a processor webhook by the processor''s scheme (WD008), deduplicates it on its event id and applies it: {"result": "applied"|"duplicate"|"ignored", "withdrawal_id", "status"}';

GRANT EXECUTE ON FUNCTION withdrawal.receive_webhook(text, jsonb, text) TO withdrawal_app;
GRANT SELECT ON withdrawal.webhook_event TO withdrawal_ops, withdrawal_auditor;

/*
 * The fields receive_webhook() reads from an event whose signature it has
 * verified, in the shape of the processor's scheme: Stripe's data.object
 * (our id in metadata.withdrawal_id; the amount is amount_reversed for
 * transfer.reversed) or the http protocol's data (data.payout_id).  A
 * field of the wrong JSON type is NULL.
 *
 * jsonb keeps a number's value, not its spelling: 1.114e3 becomes 1114.
 * The amount is therefore taken as written, through the json type, which
 * keeps the text (and, like jsonb, takes the last of duplicate keys), so
 * that the C code sees the literal the processor sent and can refuse one
 * that is not an integer.  Granted to nobody: receive_webhook() calls it
 * as the owner.
 */
CREATE FUNCTION withdrawal._webhook_fields(payload jsonb, stripe boolean, body text,
										   OUT event_id text, OUT event_type text,
										   OUT withdrawal_id text, OUT processor_ref text,
										   OUT amount_type text, OUT amount text,
										   OUT currency text)
	LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	object jsonb := CASE WHEN stripe THEN payload->'data'->'object' ELSE payload->'data' END;
	amount_key text := CASE WHEN stripe AND payload->>'type' = 'transfer.reversed'
						   THEN 'amount_reversed' ELSE 'amount' END;
BEGIN
	event_id := CASE WHEN jsonb_typeof(payload->'id') = 'string' THEN payload->>'id' END;
	event_type := CASE WHEN jsonb_typeof(payload->'type') = 'string' THEN payload->>'type' END;
	withdrawal_id := CASE WHEN stripe THEN object->'metadata'->>'withdrawal_id'
						  ELSE object->>'payout_id' END;
	processor_ref := CASE WHEN jsonb_typeof(object->'id') = 'string' THEN object->>'id' END;
	amount_type := jsonb_typeof(object->amount_key);
	amount := CASE WHEN amount_type = 'number'
				   THEN (CASE WHEN stripe THEN body::json->'data'->'object'
							  ELSE body::json->'data' END)->>amount_key
				   ELSE object->>amount_key END;
	currency := CASE WHEN jsonb_typeof(object->'currency') = 'string' THEN object->>'currency' END;
END
$$;
COMMENT ON FUNCTION withdrawal._webhook_fields(jsonb, boolean, text) IS
	'internal (receive_webhook()): the fields of a verified event in the shape of its scheme, the amount as written';

/*
 * Webhook secret rotation: while processor.webhook_secret names the new
 * secret, webhook_secret_previous names the old one, accepted until
 * webhook_secret_previous_expires_at and refused from then on.  A
 * previous secret always has an expiry, so none is accepted for ever.
 * The columns belong to the processor table (10_config.sql); they are
 * added here, with the verification that reads them.
 */
ALTER TABLE withdrawal.processor
	ADD COLUMN webhook_secret_previous text,
	ADD COLUMN webhook_secret_previous_expires_at timestamptz,
	ADD CONSTRAINT processor_webhook_secret_previous_check
		CHECK ((webhook_secret_previous IS NULL) = (webhook_secret_previous_expires_at IS NULL));
COMMENT ON COLUMN withdrawal.processor.webhook_secret_previous IS
	'during a rotation, the name of the webhook secret used before webhook_secret, accepted until webhook_secret_previous_expires_at';
COMMENT ON COLUMN withdrawal.processor.webhook_secret_previous_expires_at IS
	'when webhook_secret_previous stops being accepted';

CREATE FUNCTION withdrawal.verify_webhook_signature(processor text, headers jsonb, body text,
													at timestamptz DEFAULT NULL)
	RETURNS text
	AS 'MODULE_PATHNAME', 'withdrawal_verify_webhook_signature'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION withdrawal.verify_webhook_signature(text, jsonb, text, timestamptz) IS
	'ops: verifies a webhook as receive_webhook() would have at time at (NULL: now) and returns which secret matched, "current" or "previous" (WD008 when none); stores and applies nothing';

GRANT EXECUTE ON FUNCTION withdrawal.verify_webhook_signature(text, jsonb, text, timestamptz)
	TO withdrawal_ops;
