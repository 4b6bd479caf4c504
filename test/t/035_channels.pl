# Channels do not hold each other up, and obey their switch and their
# processor's pauses:
# 1. a processor that hangs takes at most its share of a worker's slots
#    (withdrawal.channel_share): a healthy channel's payouts are paid while
#    the hung channel's first attempts are still on the wire;
# 2. a disabled channel sends nothing: its payouts stay queued, unsent,
#    and go once it is enabled again;
# 3. within a channel, new payouts go before status queries;
# 4. a 429's Retry-After pauses a channel that has no limits of its own;
# 5. a Retry-After given as a far HTTP date is capped by
#    withdrawal.retry_after_cap.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalDispatchTest;
use WithdrawalMock;

my $mock = WithdrawalMock->new();
my $hung = WithdrawalMock->new();
my $node = dispatch_node('channels', $mock, workers => 1, conf => qq{
withdrawal.max_in_flight = 8
withdrawal.channel_share = 50
withdrawal.http_timeout = '30s'
});
$node->safe_psql('postgres', qq{
	INSERT INTO withdrawal.processor (name, driver, base_url, request_timeout_ms)
		VALUES ('hungproc', 'http', '@{[ $hung->url ]}', 30000);
	INSERT INTO withdrawal.channel (name, processor) VALUES ('slowbank', 'hungproc'), ('kill', 'mockhttp');
	INSERT INTO withdrawal.channel (name, processor, rate_per_second, burst) VALUES ('polled', 'mockhttp', 5, 5);
});

sub requests_for
{
	my ($m, $amount, $method) = @_;
	return grep { ($_->{amount} // 0) == $amount && $_->{method} eq ($method // 'POST') }
	  @{ $m->get('/_control/requests') };
}

# 1. A hung processor and a healthy one.
$hung->post('/_control/faults', { rules => [ { fault => 'hang' } ] });
request_many($node, 30, 'slowbank', amount => '3000', prefix => 'slow');
wait_for('the hung processor to hold its share', sub { $hung->get('/_control/stats?keys=0')->{hung} >= 4 });
request_many($node, 20, 'bank', amount => '3001', prefix => 'fast');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 20 FROM withdrawal.withdrawal WHERE channel = 'bank' AND status = 'paid'}),
	'the healthy channel is paid while the other hangs');
is($node->safe_psql('postgres', q{SELECT max(attempts) FROM withdrawal.withdrawal WHERE channel = 'slowbank'}),
	'1', 'the hung channel\'s first attempts were still on the wire: nobody waited for their timeout');
is($hung->get('/_control/stats?keys=0')->{hung}, 4, 'the hung channel held no more than its share (4 of 8)');
$hung->post('/_control/reset', {});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 30 FROM withdrawal.withdrawal WHERE channel = 'slowbank' AND status = 'paid'}),
	'the hung channel\'s payouts are paid once its processor answers');

# 2. The kill switch: requests accepted while the channel was enabled, then
# the channel disabled in the same transaction.
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT withdrawal.request('acct1', 'USD', 4000 + i, 'kill', '{"iban": "x"}', 'kill' || i) FROM generate_series(1, 5) i;
	SELECT withdrawal.request('acct2', 'USD', 4100 + i, 'bank', '{"iban": "x"}', 'alive' || i) FROM generate_series(1, 10) i;
	UPDATE withdrawal.channel SET enabled = false WHERE name = 'kill';
	COMMIT;
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 10 FROM withdrawal.withdrawal WHERE idempotency_key LIKE 'alive%' AND status = 'paid'}),
	'the worker claimed after the commit');
is($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT status || ' ' || attempts || ' ' || (sent_at IS NULL), ',')
	  FROM withdrawal.withdrawal WHERE channel = 'kill'}),
	'queued 0 true', 'a disabled channel sends nothing: its payouts stay queued, unsent');
is(scalar(grep { ($_->{amount} // 0) > 4000 && $_->{amount} < 4010 } @{ $mock->get('/_control/requests') }),
	0, 'the processor saw none of them');
$node->safe_psql('postgres', q{UPDATE withdrawal.channel SET enabled = true WHERE name = 'kill'});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 5 FROM withdrawal.withdrawal WHERE channel = 'kill' AND status = 'paid'}),
	'enabled again: paid');

# 3. Thirty status queries due, then five new payouts on a 5/s channel: the
# first requests the processor sees are the new payouts.
$mock->post('/_control/faults', { rules => [ { fault => 'pending', amount => 4321 } ] });
request_many($node, 30, 'polled', amount => '4321', prefix => 'polled');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 30 FROM withdrawal.withdrawal WHERE channel = 'polled' AND status = 'submitted'}),
	'thirty payouts pending at the processor');
my $seen = scalar @{ $mock->get('/_control/requests') };
$node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO withdrawal.outbox (withdrawal_id, channel, kind, next_attempt_at)
		SELECT withdrawal_id, channel, 'query', now() - interval '1 minute'
		  FROM withdrawal.withdrawal WHERE channel = 'polled' AND status = 'submitted';
	SELECT withdrawal.request('acct3', 'USD', 4322, 'polled', '{"iban": "x"}', 'polled-new' || i) FROM generate_series(1, 5) i;
	COMMIT;
});
wait_for('five more requests', sub { scalar @{ $mock->get('/_control/requests') } >= $seen + 5 });
is(join(' ', map { $_->{method} } @{ $mock->get("/_control/requests?since=$seen&limit=5") }),
	'POST POST POST POST POST', 'new payouts go before the status queries');
$mock->post('/_control/faults', { rules => [] });

# 4. A 429 with Retry-After: 3 pauses the bank channel, which has no rate
# or in-flight limit.
$mock->post('/_control/faults', { rules => [ { fault => '429', retry_after => 3, times => 1, amount => 5555 } ] });
$node->safe_psql('postgres', q{SELECT withdrawal.request('acct4', 'USD', 5555, 'bank', '{"iban": "x"}', 'ra')});
wait_for('the 429', sub { grep { ($_->{status} // '') eq '429' } requests_for($mock, 5555) });
my ($t429) = map { $_->{t_ms} } grep { ($_->{status} // '') eq '429' } requests_for($mock, 5555);
request_many($node, 20, 'bank', amount => '5556', prefix => 'ra');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 21 FROM withdrawal.withdrawal WHERE amount IN (5555, 5556) AND status = 'paid'}),
	'paid after the pause');
my @after = map { $_->{t_ms} } requests_for($mock, 5556);
cmp_ok((sort { $a <=> $b } @after)[0], '>=', $t429 + 2900, 'nothing was sent on the channel during its Retry-After');

# 5. Retry-After as an HTTP date in the year 9999: capped.
$node->append_conf('postgresql.conf', "withdrawal.retry_after_cap = '2s'\n");
$node->reload;
$mock->post('/_control/faults', { rules => [
	{ fault => '429', retry_after => 'Fri, 31 Dec 9999 23:59:59 GMT', times => 1, amount => 6666 } ] });
$node->safe_psql('postgres', q{SELECT withdrawal.request('acct5', 'USD', 6666, 'bank', '{"iban": "x"}', 'far')});
wait_for('the far 429', sub { grep { ($_->{status} // '') eq '429' } requests_for($mock, 6666) });
($t429) = map { $_->{t_ms} } grep { ($_->{status} // '') eq '429' } requests_for($mock, 6666);
request_many($node, 5, 'bank', amount => '6667', prefix => 'far');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 6 FROM withdrawal.withdrawal WHERE amount IN (6666, 6667) AND status = 'paid'}),
	'a Retry-After in the year 9999 pauses the channel for withdrawal.retry_after_cap only');
@after = map { $_->{t_ms} } requests_for($mock, 6667);
cmp_ok((sort { $a <=> $b } @after)[0], '>=', $t429 + 1900, 'the capped pause was kept');

no_double_payout($node, $mock, 'channels');
$node->stop;
$mock->stop;
$hung->stop;
done_testing();
