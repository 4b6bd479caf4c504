# The audit chain head is published and verify_audit() only reads.
#
# Each seal that advances the chain, the worker's included, logs the new
# head (seq and hex chain hash) once committed and notifies channel
# withdrawal_audit_head with "<seq>:<hex>"; audit_head() returns the same
# head.  A seal that is rolled back, or whose subtransaction is, publishes
# nothing.  On a streaming standby, verify_audit(), audit_head() and
# verify_audit_anchor() work, while the primary has rows not sealed yet.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'withdrawal'
withdrawal.database = 'postgres'
withdrawal.sandbox_settle_delay = '50ms'
lc_messages = 'C'
});
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION withdrawal');
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

is($primary->safe_psql('postgres', q{
	SELECT seq, audit_id IS NULL, chain_hash = '\x0000000000000000000000000000000000000000000000000000000000000000',
		   sealed_at IS NULL FROM withdrawal.audit_head()}),
	'0|t|t|t', 'before the first seal the head is seq 0 and the zero hash');

my $listener = $primary->background_psql('postgres', on_error_stop => 1);
$listener->query_safe('LISTEN withdrawal_audit_head');

# psql prints the notifications it has received after each statement
my $notified = '';
sub notifications
{
	$notified .= $listener->query_safe('SELECT 1');
	return $notified;
}

my $unsealed = q{SELECT count(*) FROM withdrawal.audit_log a
	WHERE NOT EXISTS (SELECT FROM withdrawal.audit_seal s WHERE s.audit_id = a.audit_id)};

# The worker seals a paid payout's rows and publishes each new head.
my $log_offset = -s $primary->logfile;
$primary->safe_psql('postgres', q{
	SELECT withdrawal.credit('alice', 'USD', 100000, 'c1');
	SELECT withdrawal.request('alice', 'USD', 1000, 'sandbox', '{"bank": "x"}', 'w1')});
$primary->poll_query_until('postgres', qq{
	SELECT status = 'paid' AND ($unsealed) = 0 FROM withdrawal.withdrawals WHERE idempotency_key = 'w1'})
  or die 'the worker did not pay and seal';
my ($seq, $hex) = split /\|/, $primary->safe_psql('postgres', q{
	SELECT h.seq, encode(h.chain_hash, 'hex') FROM withdrawal.audit_head() h
	  JOIN withdrawal.audit_seal s USING (seq) WHERE s.audit_id = (SELECT max(audit_id) FROM withdrawal.audit_log)});
ok($seq > 0 && $hex =~ /^[0-9a-f]{64}$/, "audit_head() is the last seal: seq $seq");
$primary->wait_for_log(qr/LOG:  withdrawal audit chain head: seq $seq, chain hash $hex/, $log_offset);
pass('the worker logged the head after its seal');
my $found = 0;
for (my $i = 0; $i < 10 * $PostgreSQL::Test::Utils::timeout_default && !$found; $i++)
{
	$found = notifications() =~ /notification "withdrawal_audit_head" with payload "$seq:$hex"/;
	$listener->query_safe('SELECT pg_sleep(0.1)') unless $found;
}
ok($found, 'the worker notified withdrawal_audit_head with seq:hex');
is($primary->safe_psql('postgres', "SELECT withdrawal.verify_audit_anchor($seq, '\\x$hex')"),
	't', 'the published head anchors the chain');

# A seal rolled back, whole or by its subtransaction, publishes nothing.
# The session seals its own uncommitted row, which the worker cannot see.
for my $case (['rollback', 'BEGIN', 'ROLLBACK'], ['savepoint', 'BEGIN; SAVEPOINT s', 'ROLLBACK TO s; COMMIT'])
{
	my ($name, $begin, $end) = @$case;
	my $s = $primary->background_psql('postgres', on_error_stop => 1);
	$s->query_safe($begin);
	$s->query_safe(qq{SELECT withdrawal.request('alice', 'USD', 1000, 'sandbox', '{"bank": "x"}', 'w-$name')});
	is($s->query_safe('SELECT withdrawal.seal_audit()'), '1', "$name: the session seals its own row");
	my $gone = $s->query_safe(q{SELECT encode(chain_hash, 'hex') FROM withdrawal.audit_head()});
	$s->query_safe($end);
	$s->quit;
	ok(!$primary->log_contains(qr/chain hash $gone/, $log_offset), "$name: no LOG line for the head");
	$primary->safe_psql('postgres', 'SELECT 1');
	unlike(notifications(), qr/$gone/, "$name: no notification of the head");
}

# The standby verifies while the primary has committed rows that no one
# may seal yet (the owner holds the sealers' row).
my $holder = $primary->background_psql('postgres', on_error_stop => 1);
$holder->query_safe(q{BEGIN; SELECT FROM withdrawal.lock_slot WHERE purpose = 'audit sealer' FOR UPDATE});
$primary->safe_psql('postgres',
	q{SELECT withdrawal.request('alice', 'USD', 2000, 'sandbox', '{"bank": "x"}', 'w2')});
cmp_ok($primary->safe_psql('postgres', $unsealed), '>', 0, 'the primary has rows not sealed yet');
$primary->wait_for_catchup($standby);
my $sealed = $primary->safe_psql('postgres', 'SELECT count(*) FROM withdrawal.audit_seal');
my ($ret, $stdout, $stderr) = $standby->psql('postgres',
	'SELECT ok, checked, first_bad_id IS NULL FROM withdrawal.verify_audit()');
is($stdout, "t|$sealed|t", 'verify_audit() on the standby checks the sealed chain')
  or diag($stderr);
is($standby->safe_psql('postgres', "SELECT seq >= $seq FROM withdrawal.audit_head()"),
	't', 'audit_head() on the standby');
is($standby->safe_psql('postgres', "SELECT withdrawal.verify_audit_anchor($seq, '\\x$hex')"),
	't', 'verify_audit_anchor() on the standby');
$holder->query_safe('COMMIT');
$holder->quit;
$listener->quit;

$standby->stop;
$primary->stop;
done_testing();
