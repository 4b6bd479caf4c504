# Concurrent credits and withdrawal requests with duplicated and mismatched
# idempotency keys: afterwards the books balance, no balance is negative,
# and every accepted key produced exactly one withdrawal or credit.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('concurrency');
$node->init;
$node->append_conf('postgresql.conf', "max_connections = 40\n");
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION withdrawal;
	-- the amount of a key is a function of the key, so a duplicate
	-- matches and a deliberately mismatched call differs
	CREATE TABLE accepted (kind text, key text, id uuid, replayed boolean);
	CREATE TABLE refused (kind text, key text, sqlstate text);

	CREATE FUNCTION try_request(acct int, k int, mismatch boolean) RETURNS void
	LANGUAGE plpgsql AS $$
	DECLARE
		r record;
		key text := 'w' || k;
	BEGIN
		SELECT * INTO r FROM withdrawal.request('acct' || acct, 'USD',
			100 + k % 50 + CASE WHEN mismatch THEN 1 ELSE 0 END,
			'sandbox', '{"bank": "x"}', key, jsonb_build_object('device_id', 'd' || acct));
		INSERT INTO accepted VALUES ('request', key, r.withdrawal_id, r.replayed);
	EXCEPTION WHEN SQLSTATE 'WD001' OR SQLSTATE 'WD002' THEN
		INSERT INTO refused VALUES ('request', key, SQLSTATE);
	END
	$$;

	CREATE FUNCTION try_credit(acct int, k int, mismatch boolean) RETURNS void
	LANGUAGE plpgsql AS $$
	DECLARE
		r record;
		key text := 'c' || k;
	BEGIN
		SELECT * INTO r FROM withdrawal.credit('acct' || acct, 'USD',
			1000 + k % 7 + CASE WHEN mismatch THEN 1 ELSE 0 END, key);
		INSERT INTO accepted VALUES ('credit', key, r.transfer_id, r.replayed);
	EXCEPTION WHEN SQLSTATE 'WD002' THEN
		INSERT INTO refused VALUES ('credit', key, SQLSTATE);
	END
	$$;
});

# A few dozen accounts with an opening balance.
$node->safe_psql('postgres', q{
	SELECT withdrawal.credit('acct' || a, 'USD', 2000, 'open' || a) FROM generate_series(1, 36) a;
});

# A key determines its account and amount.  Keys are drawn from a space
# that makes about one call in five reuse a key; one call in twenty-five
# changes the amount and so mismatches.
my $script = <<'EOS';
\set k random(1, 5600)
\set acct 1 + :k % 36
\set mismatch random(1, 25)
\set op random(1, 10)
SELECT CASE WHEN :op <= 7 THEN try_request(:acct, :k, :mismatch = 1) ELSE try_credit(:acct, :k, :mismatch = 1) END;
EOS

$node->pgbench(
	'--no-vacuum --client=8 --jobs=4 --transactions=500',
	0,
	[qr{processed: 4000/4000}],
	[qr{^$}],
	'8 clients, 4000 concurrent credits and requests',
	{ 'withdrawal_concurrency' => $script });

my $accepted = $node->safe_psql('postgres',
	q{SELECT count(*) FROM accepted WHERE kind = 'request'});
my $replays = $node->safe_psql('postgres',
	q{SELECT count(*) FROM accepted WHERE replayed});
my $mismatches = $node->safe_psql('postgres',
	q{SELECT count(*) FROM refused WHERE sqlstate = 'WD002'});
note "accepted requests $accepted, replays $replays, WD002 $mismatches";
cmp_ok($replays, '>', 200, 'duplicated keys were exercised');
cmp_ok($mismatches, '>', 10, 'mismatched keys were exercised');

is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0}),
	'0',
	'check_invariants() reports nothing');

is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM withdrawal.wallet WHERE available < 0 OR held < 0 OR paid_out < 0}),
	'0',
	'no balance is negative');

is( $node->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.withdrawal}),
	$node->safe_psql('postgres',
		q{SELECT count(DISTINCT key) FROM accepted WHERE kind = 'request'}),
	'one withdrawal per distinct accepted key');

is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM withdrawal.credit WHERE idempotency_key LIKE 'c%'}),
	$node->safe_psql('postgres',
		q{SELECT count(DISTINCT key) FROM accepted WHERE kind = 'credit'}),
	'one credit per distinct accepted key');

is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM (SELECT key FROM accepted GROUP BY kind, key HAVING count(DISTINCT id) > 1) s}),
	'0',
	'every call with the same key got the same id');

is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM accepted a JOIN withdrawal.withdrawal w ON w.idempotency_key = a.key
		   WHERE a.kind = 'request' AND w.withdrawal_id <> a.id}),
	'0',
	'the ids returned are the stored withdrawals');

is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM withdrawal.outbox o JOIN withdrawal.withdrawal w USING (withdrawal_id)
		   WHERE w.status <> 'queued'}),
	'0',
	'the outbox holds only queued withdrawals');

is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM withdrawal.withdrawal WHERE status = 'queued'}),
	$node->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.outbox}),
	'every queued withdrawal has its outbox row');

$node->stop;
done_testing();
