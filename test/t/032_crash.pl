# Crashes in the middle of a large dispatch: kill -9 of a worker (the
# postmaster then resets every backend), and separately an immediate stop
# of the postmaster followed by a start.  Afterwards every withdrawal is
# terminal (paid) or dead, the processor saw at most one effective payout
# per withdrawal, and check_invariants() is clean.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalBooks;
use WithdrawalDispatchTest;
use WithdrawalMock;

my $mock = WithdrawalMock->new();
my $node = dispatch_node('crash', $mock, workers => 2,
	conf => "withdrawal.max_attempts = 100\nrestart_after_crash = on\n");

# Every answer takes 200 ms, so that many payouts are on the wire (and
# recorded by the processor but not yet by us) at any moment.
$mock->post('/_control/faults', { rules => [ { fault => 'slow', delay_ms => 200 } ] });

sub settle_and_check
{
	my ($what, $n) = @_;
	$node->poll_query_until('postgres', q{
		SELECT count(*) = 0 FROM withdrawal.withdrawal WHERE status NOT IN ('paid', 'failed', 'dead')})
	  or die "$what: not settled";
	pass("$what: every withdrawal terminal or dead");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.withdrawal WHERE status = 'paid'}),
		$n, "$what: all $n paid");
	no_double_payout($node, $mock, $what);
	books_match_processor($node, $mock, $what, settled => 1);
	is($node->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.outbox}), '0', "$what: outbox empty");
}

# 1. kill -9 of a worker mid-dispatch.
request_many($node, 1000, 'bank', prefix => 'a');
$node->poll_query_until('postgres', q{SELECT count(*) >= 100 FROM withdrawal.withdrawal WHERE status = 'paid'})
  or die 'no progress';
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'withdrawal worker' ORDER BY pid LIMIT 1});
my $dispatching = $node->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.withdrawal WHERE status = 'dispatching'});
cmp_ok($dispatching, '>', 0, "payouts on the wire when the worker is killed ($dispatching)");
kill 'KILL', $pid;
$node->wait_for_log(qr/all server processes terminated; reinitializing/);
settle_and_check('kill -9 of a worker', 1000);

# 2. the postmaster stops immediately mid-dispatch, then starts again.
request_many($node, 1000, 'bank', prefix => 'b');
$node->poll_query_until('postgres', q{SELECT count(*) >= 1100 FROM withdrawal.withdrawal WHERE status = 'paid'})
  or die 'no progress';
$node->stop('immediate');
$node->start;
settle_and_check('immediate stop of the postmaster', 2000);

my $s = $mock->get('/_control/stats?keys=0');
cmp_ok($s->{payout_requests}, '>', 2000, 'some payouts were re-sent after the crashes');
$node->stop;
$mock->stop;
done_testing();
