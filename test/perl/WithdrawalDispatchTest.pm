# Helpers of the dispatcher TAP tests: a cluster with the library preloaded
# and a processor and channel pointing at a mock processor, requests in
# bulk, and the invariants every dispatch test checks.  The mock itself
# (starting it, its control routes, polling it) is WithdrawalMock.pm's.
package WithdrawalDispatchTest;

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalMock;

our @EXPORT = qw(dispatch_node request_many wait_all_settled no_double_payout
  wait_for use_secrets);

# dispatch_node($name, $mock, conf => "...", workers => N): a started
# cluster with the extension, an "http" processor and channel "bank", a
# "stripe" processor and channel "stripe" on the mock, and a funded wallet.
sub dispatch_node
{
	my ($name, $mock, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $workers = $opt{workers} // 1;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'withdrawal'
withdrawal.database = 'postgres'
withdrawal.workers = $workers
withdrawal.allow_insecure_loopback = on
withdrawal.retry_base = '20ms'
withdrawal.retry_cap = '200ms'
withdrawal.http_timeout = '2s'
withdrawal.lease = '5s'
max_connections = 40
log_line_prefix = '%m [%p] %b '
} . ($opt{conf} // ''));
	$node->start;
	my $base = $mock ? $mock->url : 'http://127.0.0.1:9';
	$node->safe_psql('postgres', qq{
		CREATE EXTENSION withdrawal;
		INSERT INTO withdrawal.processor (name, driver, base_url) VALUES
			('mockhttp', 'http', '$base'), ('mockstripe', 'stripe', '$base');
		INSERT INTO withdrawal.channel (name, processor) VALUES
			('bank', 'mockhttp'), ('stripe', 'mockstripe');
		SELECT withdrawal.credit('acct' || a, 'USD', 100000000, 'fund' || a) FROM generate_series(1, 20) a;
	});
	return $node;
}

# request_many($node, $n, $channel, amount => SQL expr of i, prefix => key prefix)
sub request_many
{
	my ($node, $n, $channel, %opt) = @_;
	my $amount = $opt{amount} // '100 + i % 50';
	my $prefix = $opt{prefix} // "k$channel";
	my $dest = $channel eq 'stripe' ? q('{"stripe_account": "acct_123"}') : q('{"iban": "DE00"}');
	$node->safe_psql('postgres', qq{
		-- wallets locked in the order the workers lock them (by account, "C")
		SELECT withdrawal.request(a, 'USD', $amount, '$channel', ${dest}::jsonb, '$prefix' || i)
		  FROM (SELECT i, 'acct' || (1 + i % 20) AS a FROM generate_series(1, $n) i
		         ORDER BY ('acct' || (1 + i % 20)) COLLATE "C", i) s;
	});
}

# Waits until no withdrawal is queued, dispatching or submitted.
sub wait_all_settled
{
	my ($node, $what) = @_;
	$node->poll_query_until('postgres', q{
		SELECT count(*) = 0 FROM withdrawal.withdrawal
		 WHERE status IN ('queued', 'dispatching', 'submitted')})
	  or die "not settled: $what: " . $node->safe_psql('postgres',
		q{SELECT status, count(*) FROM withdrawal.withdrawal GROUP BY 1});
}

# Invariants of every dispatch test: no key paid twice, books balanced,
# and a server log without failed worker statements (except those matching
# $opt{allow_errors}, for tests that make recording fail on purpose),
# deadlocks, or a process killed by a signal the test did not send (9).
sub no_double_payout
{
	my ($node, $mock, $what, %opt) = @_;
	my $s = $mock->stats(keys => 0);
	cmp_ok($s->{max_effective_per_key}, '<=', 1, "$what: at most one effective payout per key");
	cmp_ok($s->{max_effective_per_withdrawal}, '<=', 1, "$what: at most one effective payout per withdrawal");
	is($node->safe_psql('postgres',
		q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations > 0}),
		'0', "$what: check_invariants() is clean");
	my @log = split /\n/, PostgreSQL::Test::Utils::slurp_file($node->logfile);
	# a failed statement in a worker is a bug even when a fallback hides it
	my @errors = grep { /withdrawal worker ERROR:/ && !($opt{allow_errors} && /$opt{allow_errors}/) } @log;
	is(scalar(@errors), 0, "$what: no statement failed in a worker")
	  or diag(join("\n", @errors[0 .. ($#errors < 4 ? $#errors : 4)]));
	my @crashes = grep { /terminated by signal (?!9:)|deadlock detected/ } @log;
	is(scalar(@crashes), 0, "$what: no deadlock, no process died of a signal")
	  or diag(join("\n", @crashes[0 .. ($#crashes < 4 ? $#crashes : 4)]));
	return $s;
}

# wait_for($what, $cond): polls $cond (a sub) until it is true, for at
# most the TAP tests' default timeout (WithdrawalMock->poll_until); dies
# naming $what.
sub wait_for
{
	my ($what, $cond) = @_;
	WithdrawalMock->poll_until($cond) or die "timed out waiting for $what";
	return 1;
}

# use_secrets($node, name => value, ...): a secrets file of the node, owned
# by the server's user with mode 0600, named by withdrawal.secrets_file
# and loaded by a reload.
sub use_secrets
{
	my ($node, %secrets) = @_;
	my $file = $node->data_dir . '/withdrawal_secrets';
	PostgreSQL::Test::Utils::append_to_file($file, join('', map { "$_ = $secrets{$_}\n" } sort keys %secrets));
	chmod 0600, $file;
	$node->append_conf('postgresql.conf', "withdrawal.secrets_file = '$file'\n");
	$node->reload;
	return $file;
}

1;
