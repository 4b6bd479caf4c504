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

	# Money in every state the old version could leave it in: credited,
	# queued, held for review, canceled, and "dispatching" as a worker of
	# the old version would have left it after a crash.
	$node->safe_psql($db, q{
		UPDATE withdrawal.policy SET review_threshold = 50000;
		SELECT withdrawal.credit('u' || i, 'USD', 100000, 'c' || i) FROM generate_series(1, 4) i;
		SELECT withdrawal.request('u1', 'USD', 1000, 'sandbox', '{}', 'r1');
		SELECT withdrawal.request('u2', 'USD', 60000, 'sandbox', '{}', 'r2');
		SELECT withdrawal.cancel(withdrawal_id, 'test')
		  FROM withdrawal.request('u3', 'USD', 1000, 'sandbox', '{}', 'r3');
		SELECT withdrawal.transition(withdrawal_id, 'dispatching', NULL)
		  FROM withdrawal.request('u4', 'USD', 1000, 'sandbox', '{}', 'r4');
	});
	my $before = $node->safe_psql($db,
		q{SELECT string_agg(idempotency_key || '=' || status, ' ' ORDER BY idempotency_key) FROM withdrawal.withdrawal});

	# The new library on the old schema: idempotency keys stay global until
	# the update, so another account's key is still WD002.
	my ($ret, $out, $err) = $node->psql($db, q{SELECT withdrawal.credit('u2', 'USD', 1, 'c1')});
	like($err, qr/idempotency key "c1" was already used/, "$version: before the update, a credit key is global");
	($ret, $out, $err) = $node->psql($db, q{SELECT withdrawal.request('u2', 'USD', 1, 'sandbox', '{}', 'r1')});
	like($err, qr/idempotency key "r1" was already used/, "$version: before the update, a request key is global");

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
