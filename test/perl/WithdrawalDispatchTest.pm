# Helpers of the dispatcher TAP tests: a mock processor on a loopback port
# (test/mock/processor.js), its control routes, and a cluster with the
# library preloaded and a processor and channel pointing at the mock.
package WithdrawalDispatchTest;

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(start_mock mock_get mock_post dispatch_node request_many
  wait_all_settled no_double_payout wait_for use_secrets);

my $mock_script = dirname(__FILE__) . '/../mock/processor.js';
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->canonical;

# start_mock(@args): starts the mock; returns a hash with port and base.
sub start_mock
{
	my @args = @_;
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start([ 'node', $mock_script, '--port', '0', @args ],
		\$in, \$out, \$err);
	$h->pump until $out =~ /\n/;
	my ($port) = $out =~ /"port":(\d+)/ or die "mock did not start: $err";
	my $mock = { handle => $h, port => $port, base => "http://127.0.0.1:$port" };
	return bless $mock, 'WithdrawalDispatchTest::Mock';
}

sub mock_get
{
	my ($mock, $path) = @_;
	my $r = $http->get("$mock->{base}$path");
	die "mock GET $path: $r->{status} $r->{content}" unless $r->{success};
	return $json->decode($r->{content});
}

sub mock_post
{
	my ($mock, $path, $body) = @_;
	my $r = $http->post("$mock->{base}$path",
		{ headers => { 'Content-Type' => 'application/json' }, content => $json->encode($body // {}) });
	die "mock POST $path: $r->{status} $r->{content}" unless $r->{success};
	return $json->decode($r->{content});
}

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
	my $base = $mock ? $mock->{base} : 'http://127.0.0.1:9';
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
	my $s = mock_get($mock, '/_control/stats?keys=0');
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

# wait_for($what, $cond): polls $cond (a sub) every 0.1 s until it is
# true, for at most the TAP tests' default timeout; dies naming $what.
sub wait_for
{
	my ($what, $cond) = @_;
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		return 1 if $cond->();
		select(undef, undef, undef, 0.1);
	}
	die "timed out waiting for $what";
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

package WithdrawalDispatchTest::Mock;

sub stop
{
	my ($self) = @_;
	return unless $self->{handle};
	$self->{handle}->signal('TERM');
	eval { $self->{handle}->finish; };
	delete $self->{handle};
}

sub DESTROY
{
	my ($self) = @_;
	$self->stop if $self->{handle};
}

1;
