# Several workers share the outbox (FOR UPDATE SKIP LOCKED and leases):
# with 2 and then 4 workers and faults that make the processor pay while
# the answer is lost, no withdrawal is paid twice.  The shared per-channel
# token bucket holds the processor to rate + burst in every 1 s window, and
# the per-channel in-flight cap holds across workers.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalBooks;
use WithdrawalDispatchTest;
use WithdrawalMock;

my $mock = WithdrawalMock->new();

for my $workers (2, 4)
{
	$mock->post('/_control/reset');
	# The faults below are a count of answers, not a period of time: with
	# the circuit breaker on, its single probes would use them up one per
	# open period, minutes apart.  036_breaker tests the breaker.
	my $node = dispatch_node("workers$workers", $mock, workers => $workers,
		conf => "withdrawal.max_attempts = 100\nwithdrawal.max_in_flight = 16\nwithdrawal.batch_size = 20\n"
		  . "withdrawal.breaker_failures = 0\n");
	$node->poll_query_until('postgres',
		"SELECT count(*) = $workers FROM pg_stat_activity WHERE backend_type = 'withdrawal worker'")
	  or die 'workers missing';
	pass("$workers workers running");

	$mock->post('/_control/faults', { rules => [
		{ fault => 'truncated', times => 40 },
		{ fault => 'reset-after', times => 40 },
		{ fault => '502-after', times => 40 },
		{ fault => '500', times => 40 },
	] });
	request_many($node, 1500, 'bank', prefix => 'w');
	request_many($node, 300, 'stripe', prefix => 's');
	wait_all_settled($node, "$workers workers");
	is($node->safe_psql('postgres', q{SELECT status, count(*) FROM withdrawal.withdrawal GROUP BY 1}),
		'paid|1800', "$workers workers: every payout paid");
	my $s = no_double_payout($node, $mock, "$workers workers");
	books_match_processor($node, $mock, "$workers workers", settled => 1);
	is($s->{effective_payouts}, 1800, "$workers workers: exactly 1800 effective payouts at the processor");
	cmp_ok($s->{replays}, '>', 0, "$workers workers: lost answers were resent and replayed");
	$node->stop;
}

# Accepted payouts ("pending": no final word yet) are recorded in one
# statement per batch: every one ends submitted with the processor's
# reference and exactly one audit row, and no statement failed on the way.
{
	$mock->post('/_control/reset');
	my $node = dispatch_node('pending', $mock, workers => 2,
		conf => "withdrawal.batch_size = 50\nwithdrawal.poll_after = '1h'\n");
	$mock->post('/_control/faults', { rules => [ { fault => 'pending' } ] });
	request_many($node, 600, 'bank', prefix => 'p');
	$node->poll_query_until('postgres', q{
		SELECT count(*) = 0 FROM withdrawal.withdrawal WHERE status IN ('queued', 'dispatching')})
	  or die 'pending payouts not recorded';
	is($node->safe_psql('postgres', q{
		SELECT status, count(*), count(processor_ref) FROM withdrawal.withdrawal GROUP BY 1}),
		'submitted|600|600', 'pending answers: 600 submitted, each with its processor reference');
	is($node->safe_psql('postgres', q{
		SELECT count(*), count(DISTINCT withdrawal_id) FROM withdrawal.audit_log
		 WHERE action = 'dispatch_submitted'}),
		'600|600', 'pending answers: one audit row per submitted payout');
	my $s = no_double_payout($node, $mock, 'pending answers');
	books_match_processor($node, $mock, 'pending answers');
	is($s->{effective_payouts}, 600, 'pending answers: 600 effective payouts at the processor');

	# The worker seals the audit chain as rows commit.  A row whose
	# transaction commits after later rows were sealed (a straggler) is
	# sealed by the next look back, and the chain verifies.
	my $unsealed = q{SELECT count(*) FROM withdrawal.audit_log a
		WHERE NOT EXISTS (SELECT FROM withdrawal.audit_seal s WHERE s.audit_id = a.audit_id)};
	$node->poll_query_until('postgres', "SELECT ($unsealed) = 0")
	  or die 'the worker did not seal the audit log';
	my $bg = $node->background_psql('postgres');
	$bg->query_safe(q{BEGIN; SELECT withdrawal.set_account('acct1', kyc_level => 1)});
	$node->safe_psql('postgres', q{SELECT withdrawal.set_account('acct2', kyc_level => 1)});
	$node->poll_query_until('postgres', "SELECT ($unsealed) = 0")
	  or die 'the worker did not seal the row after the straggler';
	$bg->query_safe('COMMIT');
	$bg->quit;
	is($node->safe_psql('postgres', $unsealed), '1', 'audit: the straggler is not sealed by the routine pass');
	is($node->safe_psql('postgres', 'SELECT withdrawal.seal_audit()'), '1', 'audit: the look back seals the straggler');
	is($node->safe_psql('postgres', q{
		SELECT ok, checked = (SELECT count(*) FROM withdrawal.audit_log) FROM withdrawal.verify_audit()}),
		't|t', 'audit: the chain the worker sealed verifies, every row in it');
	$node->stop;
}

# Rate limit: 10/s with a burst of 3, in-flight cap 2, shared by 3 workers.
$mock->post('/_control/reset');
my $node = dispatch_node('rate', $mock, workers => 3);
$node->safe_psql('postgres',
	q{UPDATE withdrawal.channel SET rate_per_second = 10, burst = 3, max_in_flight = 2 WHERE name = 'bank'});
$mock->post('/_control/faults', { rules => [ { fault => 'slow', delay_ms => 50 } ] });
request_many($node, 50, 'bank', prefix => 'r');
wait_all_settled($node, 'rate limited');
my $s = no_double_payout($node, $mock, 'rate limit');
books_match_processor($node, $mock, 'rate limit', settled => 1);
cmp_ok($s->{max_payout_requests_per_second}, '<=', 13, 'no 1 s window above rate + burst (10 + 3)');
cmp_ok($s->{max_payout_requests_per_second}, '>=', 5, 'and the channel did run near its rate');
cmp_ok($s->{max_in_flight}, '<=', 2, 'in-flight cap of the channel held across workers');
my $log = $mock->get('/_control/requests');
my @t = sort { $a <=> $b } map { $_->{t_ms} } grep { $_->{method} eq 'POST' } @$log;
cmp_ok($t[-1] - $t[0], '>=', (50 - 3) / 10 * 1000 - 100, '50 payouts took at least (50 - burst) / rate seconds');
$node->stop;
$mock->stop;
done_testing();
