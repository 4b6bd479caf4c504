/*
 * withdrawal router: the SQL API of the withdrawal extension over N shard
 * databases, as PL/Proxy functions (docs/sharding.md).
 *
 * Install into the router database (not into a shard), as its owner:
 *
 *     CREATE EXTENSION plproxy;
 *     \i router/withdrawal_router.sql
 *     SELECT withdrawal_router.configure(ARRAY['host=a dbname=payouts', 'host=b dbname=payouts']);
 *
 * Routing.  There are 256 logical partitions (PL/Proxy's partitions of the
 * cluster "withdrawal"), mapped onto the shard databases by configure().
 * An account's partition is the first byte of SHA-256 of its id in UTF-8;
 * withdrawal and payout method ids carry their account's partition in
 * their first byte (the extension writes it there, WithdrawalNewAccountUuid),
 * so a call keyed by an id goes to one shard, never to all.  A webhook
 * goes where the withdrawal id in its body points.  reconcile(),
 * check_invariants(), monitor_summary(), import_settlement() and
 * credit_many() run on several shards and merge.
 *
 * Roles.  The functions are SECURITY INVOKER: PL/Proxy connects to the
 * shard as the calling role, so the shard checks the same grants and sees
 * the same session_user (the four-eyes rule of approve() and resolve()) as
 * on one server.  The router's grants mirror the extension's.
 *
 * Errors.  PL/Proxy raises a shard's error with its SQLSTATE; the message
 * is prefixed with the function and the shard's database name.
 */

/* the roles exist cluster-wide once a shard in this cluster installed them */
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdrawal_app') THEN
		CREATE ROLE withdrawal_app NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdrawal_ops') THEN
		CREATE ROLE withdrawal_ops NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'withdrawal_auditor') THEN
		CREATE ROLE withdrawal_auditor NOLOGIN;
	END IF;
END
$$;

CREATE SCHEMA withdrawal_router;
CREATE SCHEMA withdrawal;
COMMENT ON SCHEMA withdrawal_router IS 'the router''s partitioning: partition functions, the partition map';
COMMENT ON SCHEMA withdrawal IS 'the withdrawal API, routed to the shards by PL/Proxy';

/* ---------------------------------------------------------------- routing */

CREATE FUNCTION withdrawal_router.partitions() RETURNS integer
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS 'SELECT 256';
COMMENT ON FUNCTION withdrawal_router.partitions() IS
	'the number of logical partitions: one byte of the ids; fixed for the life of the cluster';

/*
 * A NULL or unusable key goes to partition 0, whose shard then answers
 * exactly as one server would (22023 for a NULL argument, WD007 for an
 * unknown id): the router validates nothing itself.
 */
CREATE FUNCTION withdrawal_router.account_partition(account_id text) RETURNS integer
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$SELECT coalesce(get_byte(sha256(convert_to(account_id, 'UTF8')), 0), 0)$$;
COMMENT ON FUNCTION withdrawal_router.account_partition(text) IS
	'an account''s logical partition: the first byte of SHA-256 of its id in UTF-8';

CREATE FUNCTION withdrawal_router.id_partition(id uuid) RETURNS integer
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$SELECT coalesce(get_byte(uuid_send(id), 0), 0)$$;
COMMENT ON FUNCTION withdrawal_router.id_partition(uuid) IS
	'the logical partition a withdrawal or payout method id carries in its first byte';

/*
 * The withdrawal a webhook names: Stripe's data.object.metadata.withdrawal_id
 * or the http protocol's data.payout_id.  Whatever the router cannot read
 * goes to partition 0, where the shard verifies and answers it (an invalid
 * signature, a body that is not JSON, an event of an unknown payout).
 */
CREATE FUNCTION withdrawal_router.webhook_partition(body text) RETURNS integer
	LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	b jsonb;
	id text;
BEGIN
	BEGIN
		b := body::jsonb;
	EXCEPTION WHEN others THEN
		RETURN 0;
	END;
	IF jsonb_typeof(b) <> 'object' THEN
		RETURN 0;
	END IF;
	id := coalesce(b #>> '{data,object,metadata,withdrawal_id}', b #>> '{data,payout_id}');
	IF id IS NULL OR id !~* '^\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$' THEN
		RETURN 0;
	END IF;
	RETURN withdrawal_router.id_partition(id::uuid);
END
$$;
COMMENT ON FUNCTION withdrawal_router.webhook_partition(text) IS
	'the logical partition of the withdrawal a webhook body names (0 when it names none)';

/*
 * configure(shards): maps partition p onto shards[p % n + 1] in the SQL/MED
 * server "withdrawal" (created on first use).  With n a power of two,
 * going from n to 2n shards moves each partition either nowhere or from
 * shard i to shard i + n: every old shard hands half of its partitions to
 * exactly one new shard (docs/sharding.md, "Adding shards").  PL/Proxy
 * reads the map again at the next call of every session.
 */
CREATE FUNCTION withdrawal_router.configure(shards text[]) RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	n integer := cardinality(shards);
	opts text;
BEGIN
	IF n IS NULL OR n < 1 OR n > withdrawal_router.partitions()
	   OR array_position(shards, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'shards must be 1 to % connection strings', withdrawal_router.partitions()
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT 1 FROM pg_foreign_server WHERE srvname = 'withdrawal') THEN
		SELECT string_agg(format('SET p%s %L', p, shards[p % n + 1]), ', ')
		  INTO opts FROM generate_series(0, withdrawal_router.partitions() - 1) p;
		EXECUTE 'ALTER SERVER withdrawal OPTIONS (' || opts || ')';
	ELSE
		SELECT string_agg(format('p%s %L', p, shards[p % n + 1]), ', ')
		  INTO opts FROM generate_series(0, withdrawal_router.partitions() - 1) p;
		EXECUTE 'CREATE SERVER withdrawal FOREIGN DATA WRAPPER plproxy OPTIONS ('
			|| 'connection_lifetime ''1800'', ' || opts || ')';
		/* no password here: each role authenticates to the shards itself */
		CREATE USER MAPPING FOR PUBLIC SERVER withdrawal;
		GRANT USAGE ON FOREIGN SERVER withdrawal TO withdrawal_app, withdrawal_ops, withdrawal_auditor;
	END IF;
	RETURN n;
END
$$;
COMMENT ON FUNCTION withdrawal_router.configure(text[]) IS
	'maps the 256 logical partitions onto the shards'' connection strings (p % n); returns n';

CREATE FUNCTION withdrawal_router.partition_map(OUT part integer, OUT shard text)
	RETURNS SETOF record
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT substr(o, 2, strpos(o, '=') - 2)::integer, substr(o, strpos(o, '=') + 1)
	  FROM pg_foreign_server s, unnest(s.srvoptions) o
	 WHERE s.srvname = 'withdrawal' AND o ~ '^p[0-9]+='
	 ORDER BY 1
$$;
COMMENT ON FUNCTION withdrawal_router.partition_map() IS
	'the partition map: each logical partition with its shard''s connection string';

/* --------------------------------------------------- account-keyed calls */

CREATE FUNCTION withdrawal.credit(account_id text, currency text, amount bigint,
								  idempotency_key text, reference text DEFAULT NULL,
								  metadata jsonb DEFAULT '{}',
								  OUT transfer_id uuid, OUT available bigint, OUT replayed boolean)
	RETURNS record LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.account_partition(account_id);
$$;

CREATE FUNCTION withdrawal.balance(account_id text, currency text,
								   OUT available bigint, OUT held bigint, OUT paid_out bigint)
	RETURNS record LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.account_partition(account_id);
$$;

CREATE FUNCTION withdrawal.set_account(account_id text, kyc_level integer DEFAULT NULL,
									   frozen boolean DEFAULT NULL)
	RETURNS void LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.account_partition(account_id);
$$;

CREATE FUNCTION withdrawal.request(account_id text, currency text, amount bigint, channel text,
								   destination jsonb, idempotency_key text,
								   context jsonb DEFAULT '{}',
								   OUT withdrawal_id uuid, OUT status text, OUT replayed boolean)
	RETURNS record LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.account_partition(account_id);
$$;

CREATE FUNCTION withdrawal.statement(account_id text, currency text,
									 after_txn_id bigint DEFAULT NULL,
									 page_size integer DEFAULT 100)
	RETURNS TABLE (txn_id bigint, kind text, bucket text, amount bigint,
				   balance_after bigint, withdrawal_id uuid, credit_id uuid,
				   withdrawal_status text, created_at timestamptz)
	LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.account_partition(account_id);
$$;

CREATE FUNCTION withdrawal.add_payout_method(account_id text, channel text, destination jsonb,
											 label text DEFAULT NULL)
	RETURNS uuid LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.account_partition(account_id);
$$;

/* ------------------------------------------------------ id-keyed calls */

CREATE FUNCTION withdrawal.cancel(withdrawal_id uuid, reason text)
	RETURNS text LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.id_partition(withdrawal_id);
$$;

CREATE FUNCTION withdrawal.approve(withdrawal_id uuid, note text DEFAULT NULL)
	RETURNS text LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.id_partition(withdrawal_id);
$$;

CREATE FUNCTION withdrawal.reject(withdrawal_id uuid, reason text)
	RETURNS text LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.id_partition(withdrawal_id);
$$;

CREATE FUNCTION withdrawal.resolve(withdrawal_id uuid, outcome text, evidence text)
	RETURNS text LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.id_partition(withdrawal_id);
$$;

CREATE FUNCTION withdrawal.retry(withdrawal_id uuid)
	RETURNS text LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.id_partition(withdrawal_id);
$$;

/* the row type of get(), as the shards' view withdrawal.withdrawals has it */
CREATE TYPE withdrawal.withdrawals AS (
	withdrawal_id uuid, account_id text, currency text, amount bigint, channel text,
	idempotency_key text, status text, reason text, attempts integer, last_error text,
	processor_ref text, created_at timestamptz, updated_at timestamptz);

CREATE FUNCTION withdrawal.get(withdrawal_id uuid)
	RETURNS withdrawal.withdrawals LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.id_partition(withdrawal_id);
$$;

CREATE FUNCTION withdrawal.verify_payout_method(method_id uuid)
	RETURNS text LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.id_partition(method_id);
$$;

CREATE FUNCTION withdrawal.remove_payout_method(method_id uuid)
	RETURNS text LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.id_partition(method_id);
$$;

/* ------------------------------------------------------------- webhooks */

CREATE FUNCTION withdrawal.receive_webhook(processor text, headers jsonb, body text)
	RETURNS jsonb LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.webhook_partition(body);
$$;

CREATE FUNCTION withdrawal.verify_webhook_signature(processor text, headers jsonb, body text,
													at timestamptz DEFAULT NULL)
	RETURNS text LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON withdrawal_router.webhook_partition(body);
$$;

/* ------------------------------------------------- every shard, merged */

/* reconcile(): each shard's run over its own payouts, rows concatenated */
CREATE FUNCTION withdrawal.reconcile(processor text, period_start timestamptz, period_end timestamptz,
									 OUT run_id bigint, OUT kind text, OUT withdrawal_id uuid,
									 OUT processor_ref text, OUT ledger_amount bigint,
									 OUT processor_amount bigint, OUT ledger_status text,
									 OUT processor_status text)
	RETURNS SETOF record LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON ALL;
$$;

CREATE FUNCTION withdrawal.reconcile(processor text,
									 OUT run_id bigint, OUT kind text, OUT withdrawal_id uuid,
									 OUT processor_ref text, OUT ledger_amount bigint,
									 OUT processor_amount bigint, OUT ledger_status text,
									 OUT processor_status text)
	RETURNS SETOF record LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON ALL;
$$;

CREATE FUNCTION withdrawal_router.shard_check_invariants()
	RETURNS TABLE (check_name text, violations bigint, detail text)
	LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	TARGET withdrawal.check_invariants;
	RUN ON ALL;
$$;

/* one row per check: violations summed over the shards, their details joined */
CREATE FUNCTION withdrawal.check_invariants()
	RETURNS TABLE (check_name text, violations bigint, detail text)
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT c.check_name, sum(c.violations)::bigint, string_agg(c.detail, '; ')
	  FROM withdrawal_router.shard_check_invariants() WITH ORDINALITY c
	 GROUP BY c.check_name
	 ORDER BY min(c.ordinality)
$$;

CREATE FUNCTION withdrawal_router.shard_monitor_summary(OUT review bigint, OUT dead bigint, OUT parked bigint,
										   OUT workers integer, OUT workers_running integer,
										   OUT audit_head_seq bigint, OUT audit_head_sealed_at timestamptz,
										   OUT audit_unsealed bigint,
										   OUT audit_oldest_unsealed_at timestamptz,
										   OUT last_reconcile_run_id bigint,
										   OUT last_reconcile_processor text,
										   OUT last_reconcile_finished_at timestamptz,
										   OUT last_reconcile_discrepancies bigint)
	RETURNS SETOF record LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	TARGET withdrawal.monitor_summary;
	RUN ON ALL;
$$;

/*
 * One row for the whole cluster: counts summed; for the audit seal and the
 * latest reconciliation, the shard that is furthest behind (the oldest
 * seal, the oldest latest run), since that is the one to look at.
 */
CREATE FUNCTION withdrawal.monitor_summary(OUT review bigint, OUT dead bigint, OUT parked bigint,
										   OUT workers integer, OUT workers_running integer,
										   OUT audit_head_seq bigint, OUT audit_head_sealed_at timestamptz,
										   OUT audit_unsealed bigint,
										   OUT audit_oldest_unsealed_at timestamptz,
										   OUT last_reconcile_run_id bigint,
										   OUT last_reconcile_processor text,
										   OUT last_reconcile_finished_at timestamptz,
										   OUT last_reconcile_discrepancies bigint)
	RETURNS record
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	AS $$
	WITH s AS (SELECT * FROM withdrawal_router.shard_monitor_summary())
	SELECT (SELECT sum(review)::bigint FROM s), (SELECT sum(dead)::bigint FROM s),
		   (SELECT sum(parked)::bigint FROM s), (SELECT sum(workers)::integer FROM s),
		   (SELECT sum(workers_running)::integer FROM s),
		   a.audit_head_seq, a.audit_head_sealed_at,
		   (SELECT sum(audit_unsealed)::bigint FROM s), (SELECT min(audit_oldest_unsealed_at) FROM s),
		   r.last_reconcile_run_id, r.last_reconcile_processor, r.last_reconcile_finished_at,
		   (SELECT sum(last_reconcile_discrepancies)::bigint FROM s)
	  FROM (SELECT 1) one
	  LEFT JOIN LATERAL (SELECT s.audit_head_seq, s.audit_head_sealed_at FROM s
						  ORDER BY s.audit_head_sealed_at NULLS FIRST LIMIT 1) a ON true
	  LEFT JOIN LATERAL (SELECT s.last_reconcile_run_id, s.last_reconcile_processor,
								s.last_reconcile_finished_at FROM s
						  ORDER BY s.last_reconcile_finished_at NULLS FIRST LIMIT 1) r ON true
$$;
CREATE VIEW withdrawal.monitor_summary AS SELECT * FROM withdrawal.monitor_summary();

/* the payouts of one shard's connection string; the grouping is the caller's */
CREATE FUNCTION withdrawal_router.shard_import_settlement(part integer, processor text, report text)
	RETURNS bigint LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON part;
	SELECT withdrawal.import_settlement(processor, report);
$$;

/*
 * A settlement report is split by the withdrawal id of each line (its
 * second field) and each shard imports its own lines under the header, so
 * that each shard's reconcile() compares its own payouts.  A line the
 * router cannot place (no id, a quoted field spanning lines) goes to the
 * shard of partition 0, which reports it as missing_in_ledger if nothing
 * matches.  Each shard's import is all or nothing; the shards are not one
 * transaction, and the import is idempotent, so a failed call is repeated.
 */
CREATE FUNCTION withdrawal.import_settlement(processor text, report text)
	RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	header text;
	total bigint := 0;
	g record;
BEGIN
	IF report IS NULL OR strpos(report, E'\n') = 0 THEN
		RETURN withdrawal_router.shard_import_settlement(0, processor, report);
	END IF;
	header := split_part(report, E'\n', 1);
	FOR g IN
		WITH lines AS (
			SELECT l.line, l.n,
				   (regexp_match(l.line, '^(?:"(?:[^"]|"")*"|[^,"]*),"?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"?(,|$)'))[1] AS id
			  FROM regexp_split_to_table(report, E'\n') WITH ORDINALITY l(line, n)
			 WHERE l.n > 1 AND l.line <> ''),
		placed AS (
			SELECT l.line, l.n, m.shard
			  FROM lines l
			  JOIN withdrawal_router.partition_map() m
				ON m.part = CASE WHEN l.id IS NULL THEN 0 ELSE withdrawal_router.id_partition(l.id::uuid) END)
		SELECT min(m.part) AS part, string_agg(p.line, E'\n' ORDER BY p.n) AS body
		  FROM placed p JOIN withdrawal_router.partition_map() m ON m.shard = p.shard
		 GROUP BY p.shard
	LOOP
		total := total + withdrawal_router.shard_import_settlement(g.part, processor,
																	header || E'\n' || g.body || E'\n');
	END LOOP;
	RETURN total;
END
$$;

CREATE FUNCTION withdrawal_router.shard_credit_many(part integer, account_ids text[], currencies text[],
													amounts bigint[], idempotency_keys text[],
													refs text[], metadata jsonb[])
	RETURNS TABLE (item integer, transfer_id uuid, available bigint, result text)
	LANGUAGE plproxy AS $$
	CLUSTER 'withdrawal';
	RUN ON part;
	SELECT * FROM withdrawal.credit_many(account_ids, currencies, amounts, idempotency_keys,
										 refs, metadata);
$$;

/*
 * credit_many(): the items are grouped by shard, each shard credits its
 * items in one call (all or nothing on that shard), and the item numbers
 * are those of the caller's arrays.  Not atomic across shards; each item
 * is idempotent, so a failed batch is sent again whole and the items that
 * were credited replay.  Arrays the router cannot split (NULL, different
 * lengths, more than one dimension, a NULL account) go whole to one
 * shard, which refuses them as one server would.
 */
CREATE FUNCTION withdrawal_router.credit_many_by_shard(account_ids text[], currencies text[], amounts bigint[],
									   idempotency_keys text[], "references" text[], metadata jsonb[])
	RETURNS TABLE (item integer, transfer_id uuid, available bigint, result text)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	n integer := cardinality(account_ids);
	g record;
BEGIN
	IF n IS NULL OR n = 0
	   OR coalesce(array_ndims(account_ids), 1) <> 1 OR coalesce(array_ndims(currencies), 1) <> 1
	   OR coalesce(array_ndims(amounts), 1) <> 1 OR coalesce(array_ndims(idempotency_keys), 1) <> 1
	   OR coalesce(array_ndims("references"), 1) <> 1 OR coalesce(array_ndims(metadata), 1) <> 1
	   /* array_position() refuses a multidimensional array (0A000): only after the above */
	   OR (CASE WHEN array_ndims(account_ids) = 1 THEN array_position(account_ids, NULL) IS NOT NULL END)
	   OR cardinality(currencies) IS DISTINCT FROM n OR cardinality(amounts) IS DISTINCT FROM n
	   OR cardinality(idempotency_keys) IS DISTINCT FROM n
	   OR ("references" IS NOT NULL AND cardinality("references") <> n)
	   OR (metadata IS NOT NULL AND cardinality(metadata) <> n) THEN
		RETURN QUERY SELECT * FROM withdrawal_router.shard_credit_many(0, account_ids, currencies,
			amounts, idempotency_keys, "references", metadata);
		RETURN;
	END IF;
	FOR g IN
		WITH items AS (
			SELECT i, m.shard
			  FROM generate_series(1, n) i
			  JOIN withdrawal_router.partition_map() m
				ON m.part = withdrawal_router.account_partition(account_ids[i]))
		SELECT min(withdrawal_router.account_partition(account_ids[i])) AS part,
			   array_agg(i ORDER BY i) AS idx
		  FROM items GROUP BY shard
	LOOP
		RETURN QUERY
			SELECT g.idx[r.item], r.transfer_id, r.available, r.result
			  FROM withdrawal_router.shard_credit_many(g.part,
					   ARRAY(SELECT account_ids[i] FROM unnest(g.idx) WITH ORDINALITY u(i, o) ORDER BY o),
					   ARRAY(SELECT currencies[i] FROM unnest(g.idx) WITH ORDINALITY u(i, o) ORDER BY o),
					   ARRAY(SELECT amounts[i] FROM unnest(g.idx) WITH ORDINALITY u(i, o) ORDER BY o),
					   ARRAY(SELECT idempotency_keys[i] FROM unnest(g.idx) WITH ORDINALITY u(i, o) ORDER BY o),
					   CASE WHEN "references" IS NOT NULL THEN
						   ARRAY(SELECT "references"[i] FROM unnest(g.idx) WITH ORDINALITY u(i, o) ORDER BY o) END,
					   CASE WHEN metadata IS NOT NULL THEN
						   ARRAY(SELECT metadata[i] FROM unnest(g.idx) WITH ORDINALITY u(i, o) ORDER BY o) END) r;
	END LOOP;
END
$$;

CREATE FUNCTION withdrawal.credit_many(account_ids text[], currencies text[], amounts bigint[],
									   idempotency_keys text[], "references" text[] DEFAULT NULL,
									   metadata jsonb[] DEFAULT NULL)
	RETURNS TABLE (item integer, transfer_id uuid, available bigint, result text)
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT * FROM withdrawal_router.credit_many_by_shard(account_ids, currencies, amounts,
		idempotency_keys, "references", metadata) c
	 ORDER BY c.item
$$;

/* ------------------------------------------------------------ privileges */

/* as in the extension's 20_api, 22_statement, 27_methods, 30_dispatch, 40_webhook, 50_reconcile, 60_monitor */
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA withdrawal, withdrawal_router FROM PUBLIC;
GRANT USAGE ON SCHEMA withdrawal, withdrawal_router TO withdrawal_app, withdrawal_ops, withdrawal_auditor;
GRANT EXECUTE ON FUNCTION withdrawal_router.account_partition(text), withdrawal_router.id_partition(uuid),
	withdrawal_router.webhook_partition(text), withdrawal_router.partitions(),
	withdrawal_router.partition_map()
	TO withdrawal_app, withdrawal_ops, withdrawal_auditor;
GRANT EXECUTE ON FUNCTION withdrawal.credit(text, text, bigint, text, text, jsonb),
	withdrawal.credit_many(text[], text[], bigint[], text[], text[], jsonb[]),
	withdrawal_router.credit_many_by_shard(text[], text[], bigint[], text[], text[], jsonb[]),
	withdrawal_router.shard_credit_many(integer, text[], text[], bigint[], text[], text[], jsonb[]),
	withdrawal.balance(text, text),
	withdrawal.request(text, text, bigint, text, jsonb, text, jsonb),
	withdrawal.cancel(uuid, text),
	withdrawal.get(uuid),
	withdrawal.receive_webhook(text, jsonb, text),
	withdrawal.statement(text, text, bigint, integer),
	withdrawal.add_payout_method(text, text, jsonb, text),
	withdrawal.remove_payout_method(uuid)
	TO withdrawal_app;
GRANT EXECUTE ON FUNCTION withdrawal.approve(uuid, text),
	withdrawal.reject(uuid, text),
	withdrawal.resolve(uuid, text, text),
	withdrawal.retry(uuid),
	withdrawal.set_account(text, integer, boolean),
	withdrawal.balance(text, text),
	withdrawal.get(uuid),
	withdrawal.check_invariants(),
	withdrawal_router.shard_check_invariants(),
	withdrawal.statement(text, text, bigint, integer),
	withdrawal.add_payout_method(text, text, jsonb, text),
	withdrawal.verify_payout_method(uuid),
	withdrawal.remove_payout_method(uuid),
	withdrawal.verify_webhook_signature(text, jsonb, text, timestamptz),
	withdrawal.import_settlement(text, text),
	withdrawal_router.shard_import_settlement(integer, text, text),
	withdrawal.reconcile(text, timestamptz, timestamptz),
	withdrawal.reconcile(text),
	withdrawal.monitor_summary(),
	withdrawal_router.shard_monitor_summary()
	TO withdrawal_ops;
GRANT EXECUTE ON FUNCTION withdrawal.balance(text, text),
	withdrawal.get(uuid),
	withdrawal.check_invariants(),
	withdrawal_router.shard_check_invariants(),
	withdrawal.statement(text, text, bigint, integer),
	withdrawal.monitor_summary(),
	withdrawal_router.shard_monitor_summary()
	TO withdrawal_auditor;
GRANT SELECT ON withdrawal.monitor_summary TO withdrawal_ops, withdrawal_auditor;
