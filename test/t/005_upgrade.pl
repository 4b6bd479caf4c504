# The upgrade path: a database created at every released version and
# brought up to date with ALTER EXTENSION withdrawal UPDATE has exactly the
# objects of a fresh CREATE EXTENSION (tables, columns, constraints,
# indexes, triggers, functions with their attributes and privileges, views,
# domains, sequences, comments, pg_dump registrations), and the data it
# held before the update is still consistent afterwards.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', "lc_messages = 'C'\n");
$node->start;

my @released = map { /withdrawal--([0-9.]+)\.sql/ ? $1 : () }
  split /\n/, slurp_file('sql/released.sha256');
ok(@released > 0, 'released versions: ' . join(', ', @released));

# Every object of the extension, one line each, independent of OIDs and of
# the order in which columns were added.
my $describe = q{
WITH ext AS (SELECT oid, extconfig, extcondition FROM pg_extension WHERE extname = 'withdrawal'),
nsp AS (SELECT oid FROM pg_namespace WHERE nspname = 'withdrawal'),
rels AS (SELECT c.* FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM nsp))
SELECT line FROM (
  SELECT 'relation ' || relname || ' ' || relkind::text || ' ' || coalesce(reloptions::text, '') ||
         ' acl=' || coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(relacl) a), '') ||
         ' comment=' || coalesce(obj_description(oid, 'pg_class'), '') AS line
    FROM rels
  UNION ALL
  SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ||
         CASE WHEN a.attnotnull THEN ' not null' ELSE '' END ||
         ' identity=' || a.attidentity::text || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') ||
         ' comment=' || coalesce(col_description(c.oid, a.attnum), '')
    FROM rels c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
  UNION ALL
  SELECT 'constraint ' || coalesce(c.relname, t.typname) || ' ' || o.conname || ' ' || pg_get_constraintdef(o.oid)
    FROM pg_constraint o LEFT JOIN rels c ON c.oid = o.conrelid LEFT JOIN pg_type t ON t.oid = o.contypid
   WHERE o.connamespace = (SELECT oid FROM nsp)
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid) || ' comment=' || coalesce(obj_description(i.indexrelid, 'pg_class'), '')
    FROM pg_index i JOIN rels c ON c.oid = i.indrelid
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(t.oid)
    FROM pg_trigger t JOIN rels c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal
  UNION ALL
  SELECT 'function ' || pg_get_functiondef(p.oid) ||
         ' acl=' || coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(p.proacl) a), '') ||
         ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
    FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM nsp) AND p.prokind <> 'a'
  UNION ALL
  SELECT 'view ' || c.relname || ' ' || pg_get_viewdef(c.oid) FROM rels c WHERE c.relkind = 'v'
  UNION ALL
  SELECT 'type ' || t.typname || ' ' || t.typtype::text || ' ' || format_type(t.typbasetype, t.typtypmod) ||
         ' comment=' || coalesce(obj_description(t.oid, 'pg_type'), '')
    FROM pg_type t WHERE t.typnamespace = (SELECT oid FROM nsp) AND t.typtype IN ('d', 'e', 'c')
     AND NOT EXISTS (SELECT FROM pg_class c WHERE c.reltype = t.oid)
  UNION ALL
  SELECT 'sequence ' || c.relname || ' ' || s.seqtypid::regtype || ' ' || s.seqstart || ' ' || s.seqincrement ||
         ' ' || s.seqmax || ' ' || s.seqmin || ' ' || s.seqcache || ' ' || s.seqcycle
    FROM pg_sequence s JOIN rels c ON c.oid = s.seqrelid
  UNION ALL
  SELECT 'dump ' || (SELECT relname FROM pg_class WHERE oid = cfg.rel) || ' ' || coalesce(cfg.cond, '')
    FROM ext, unnest(ext.extconfig, ext.extcondition) AS cfg(rel, cond)
  UNION ALL
  SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
    FROM pg_depend d, ext WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
  UNION ALL
  SELECT 'role ' || rolname || ' login=' || rolcanlogin || ' super=' || rolsuper || ' inherit=' || rolinherit
    FROM pg_roles WHERE rolname LIKE 'withdrawal%'
) x ORDER BY line COLLATE "C"};

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION withdrawal');
my $fresh = $node->safe_psql('fresh', $describe);
like($fresh, qr/^relation withdrawal /m, 'the description lists objects');

for my $version (@released)
{
	my $db = "from_" . ($version =~ s/\./_/gr);
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION withdrawal VERSION '$version'");

	# Money in the states an older version leaves it in, written as that
	# version's functions would have: a credit, and withdrawals never sent,
	# waiting for a retry after an attempt, dead, and on the wire.  (The
	# functions themselves refuse to run on an older schema, see below.)
	$node->safe_psql($db, q{
		INSERT INTO withdrawal.account (account_id) VALUES ('u1');
		INSERT INTO withdrawal.wallet (account_id, currency, available, held) VALUES ('u1', 'USD', 96000, 4000);
		INSERT INTO withdrawal.credit (transfer_id, idempotency_key, account_id, currency, amount, metadata, txn_id)
			VALUES ('00000000-0000-4000-8000-000000000001', 'c1', 'u1', 'USD', 100000, '{}',
					nextval('withdrawal.ledger_txn_seq'));
		INSERT INTO withdrawal.ledger_entry (txn_id, leg, kind, wallet_id, currency, bucket, amount, balance_after, credit_id)
			SELECT c.txn_id, v.leg, 'credit', w.wallet_id, 'USD', v.bucket, v.amount, v.balance, c.transfer_id
			  FROM withdrawal.credit c, withdrawal.wallet w,
				   (VALUES (1::int2, 'funding', -100000, NULL::bigint), (2::int2, 'available', 100000, 100000)) v(leg, bucket, amount, balance);
		INSERT INTO withdrawal.withdrawal (withdrawal_id, idempotency_key, account_id, currency, amount, channel,
										   destination, context, status, requested_by, attempts)
			VALUES ('00000000-0000-4000-8000-00000000000a', 'r-unsent', 'u1', 'USD', 1000, 'sandbox', '{}', '{}', 'queued', 'app', 0),
				   ('00000000-0000-4000-8000-00000000000b', 'r-backoff', 'u1', 'USD', 1000, 'sandbox', '{}', '{}', 'queued', 'app', 2),
				   ('00000000-0000-4000-8000-00000000000c', 'r-dead', 'u1', 'USD', 1000, 'sandbox', '{}', '{}', 'dead', 'app', 8),
				   ('00000000-0000-4000-8000-00000000000d', 'r-wire', 'u1', 'USD', 1000, 'sandbox', '{}', '{}', 'dispatching', 'app', 1);
		WITH t AS (SELECT withdrawal_id, nextval('withdrawal.ledger_txn_seq') AS txn_id FROM withdrawal.withdrawal)
		INSERT INTO withdrawal.ledger_entry (txn_id, leg, kind, wallet_id, currency, bucket, amount, withdrawal_id)
			SELECT t.txn_id, v.leg, 'debit', w.wallet_id, 'USD', v.bucket, v.amount, t.withdrawal_id
			  FROM t, withdrawal.wallet w, (VALUES (1::int2, 'available', -1000), (2::int2, 'held', 1000)) v(leg, bucket, amount);
		INSERT INTO withdrawal.outbox (withdrawal_id, channel, lease_until)
			SELECT withdrawal_id, channel, CASE WHEN status = 'dispatching' THEN now() + interval '1 minute' END
			  FROM withdrawal.withdrawal WHERE status IN ('queued', 'dispatching');
		INSERT INTO withdrawal.blocklist (kind, value, list_name, added_by)
			VALUES ('ip', '::ffff:198.18.0.0/111', 'mapped', 'ops'), ('ip', '::ffff:198.19.0.5', 'mapped', 'ops'),
				   ('ip', '192.0.2.7/32', 'mapped', 'ops'), ('ip', '2001:db8::/32', 'mapped', 'ops'),
				   ('ip', '::ffff:203.0.113.9', 'dup', 'ops'), ('ip', '203.0.113.9', 'dup', 'ops');
	});
	my $before = $node->safe_psql($db,
		q{SELECT string_agg(idempotency_key || '=' || status, ' ' ORDER BY idempotency_key) FROM withdrawal.withdrawal});

	# The new library refuses to work on the old schema, and says why.
	my ($rc, $out, $err) = $node->psql($db, q{SELECT * FROM withdrawal.balance('u1', 'USD')});
	like($err, qr/extension "withdrawal" is at version \Q$version\E in this database, but its library is version/,
		"$version: before the update, calls stop with a clear error");
	# check_invariants() became SQL; the old version's C declaration still
	# finds its symbol, which stops with the same error
	($rc, $out, $err) = $node->psql($db, q{SELECT * FROM withdrawal.check_invariants()});
	like($err, qr/extension "withdrawal" is at version \Q$version\E in this database, but its library is version/,
		"$version: before the update, check_invariants() stops with the same error");

	$node->safe_psql($db, 'ALTER EXTENSION withdrawal UPDATE');
	is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'withdrawal'}),
		$node->safe_psql('fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'withdrawal'}),
		"$version: updated to the current version");
	my $updated = $node->safe_psql($db, $describe);
	if ($updated eq $fresh)
	{
		pass("$version: the updated schema is the fresh schema");
	}
	else
	{
		my %f = map { $_ => 1 } split /\n/, $fresh;
		my %u = map { $_ => 1 } split /\n/, $updated;
		fail("$version: the updated schema is the fresh schema");
		diag("only in the fresh install:\n  " . join("\n  ", grep { !$u{$_} } sort keys %f));
		diag("only after the update:\n  " . join("\n  ", grep { !$f{$_} } sort keys %u));
	}

	is($node->safe_psql($db,
		q{SELECT string_agg(idempotency_key || '=' || status, ' ' ORDER BY idempotency_key) FROM withdrawal.withdrawal}),
		$before, "$version: withdrawals keep their status");
	is($node->safe_psql($db, q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0}),
		'0', "$version: check_invariants() is clean after the update");
	# Payouts the old version may have sent are marked so: they are not
	# cancelable any more, and are refunded only with a proof.
	is($node->safe_psql($db,
		q{SELECT string_agg(idempotency_key || '=' || (sent_at IS NOT NULL), ' ' ORDER BY idempotency_key) FROM withdrawal.withdrawal}),
		'r-backoff=true r-dead=true r-unsent=false r-wire=true', "$version: payouts that may have been sent are marked sent");
	($rc, $out, $err) = $node->psql($db, q{SELECT withdrawal.cancel(withdrawal_id, 'x') FROM withdrawal.withdrawal WHERE idempotency_key = 'r-backoff'});
	like($err, qr/may have reached the processor and can no longer be canceled/, "$version: a payout the old version may have sent cannot be canceled");
	is($node->safe_psql($db, q{SELECT withdrawal.cancel(withdrawal_id, 'x') FROM withdrawal.withdrawal WHERE idempotency_key = 'r-unsent'}),
		'canceled', "$version: one it never sent can");

	# Blocklist IP entries take the spelling block() stores now: the IPv4
	# form of a mapped entry blocks the IPv4 clients it names.
	is($node->safe_psql($db,
		q{SELECT string_agg(list_name || ':' || value, ' ' ORDER BY list_name, value) FROM withdrawal.blocklist}),
		'dup:203.0.113.9 dup:::ffff:203.0.113.9 mapped:192.0.2.7 mapped:198.18.0.0/15 mapped:198.19.0.5 mapped:2001:db8::/32',
		"$version: blocklist IP entries are rewritten in their canonical spelling");
	is($node->safe_psql($db, q{SELECT withdrawal.unblock('ip', '::ffff:198.19.0.5', 'mapped')}),
		't', "$version: unblock() finds a rewritten entry");

	# After it, keys are scoped per account.
	is($node->safe_psql($db, q{SELECT replayed FROM withdrawal.credit('u2', 'USD', 1, 'c1')}),
		'f', "$version: after the update, another account's credit key is its own");
	is($node->safe_psql($db, q{SELECT status || ' ' || replayed FROM withdrawal.request('u2', 'USD', 1, 'sandbox', '{}', 'r1')}),
		'queued false', "$version: after the update, another account's request key is its own");
	is($node->safe_psql($db, q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0}),
		'0', "$version: check_invariants() is clean after the new requests");
}

$node->stop;
done_testing();
