# The circuit breaker of a channel (docs/processors.md#circuit-breaker):
# 1. a processor that answers 503 on one channel: after
#    withdrawal.breaker_failures consecutive failures the breaker opens
#    (monitor_channels, one LOG line), and by the processor's own request
#    log nothing more is sent on the channel while it is open, while a
#    healthy channel keeps paying; the channel's payouts stay queued,
#    none failed or refunded;
# 2. once the open time is over the breaker is half-open and lets exactly
#    one request through, across both workers, although the channel has
#    no in-flight cap and ten payouts are due; the probe fails, and the
#    breaker opens again for twice as long, capped by
#    withdrawal.breaker_max_open_time;
# 3. the processor healed, the next probe closes the breaker and the
#    channel drains: every payout paid once, the books as the processor's.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalBooks;
use WithdrawalDispatchTest;
use WithdrawalMock;

my $mock = WithdrawalMock->new();
my $node = dispatch_node('breaker', $mock, workers => 2, conf => qq{
withdrawal.breaker_failures = 5
withdrawal.breaker_open_time = '4s'
withdrawal.breaker_max_open_time = '6s'
withdrawal.max_attempts = 30
});
# The flaky channel has its own processor row on the same mock, and sends
# one request at a time at first, so that the failures come one by one.
$node->safe_psql('postgres', qq{
	INSERT INTO withdrawal.processor (name, driver, base_url) VALUES ('flakyproc', 'http', '@{[ $mock->url ]}');
	INSERT INTO withdrawal.channel (name, processor, max_in_flight) VALUES ('flaky', 'flakyproc', 1);
});

# The requests the processor received for the flaky channel's payouts
# (amount 7000), in order, and those of the healthy channel (7100).
sub requests_of
{
	my ($amount) = @_;
	return grep { ($_->{amount} // 0) == $amount && $_->{method} eq 'POST' }
	  @{ $mock->get('/_control/requests') };
}

# The breaker's columns of monitor_channels (an error says it has none)
sub breaker
{
	my ($rc, $out, $err) = $node->psql('postgres', q{
		SELECT breaker || ' ' || breaker_failures || ' ' || breaker_opens
		  FROM withdrawal.monitor_channels WHERE channel = 'flaky'});
	return $rc == 0 ? $out : "ERROR: $err";
}

sub log_count
{
	my ($re) = @_;
	return scalar grep { /$re/ } split /\n/, slurp_file($node->logfile);
}

# Waits until the server log after $offset matches $re, or $give_up (a
# sub) says it never will; returns whether it matched.  Without a breaker
# the channel is retried every few milliseconds, so the processor's count
# passing what the breaker allows ends the wait at once.  The log is read
# again once $give_up is true: the server logs before it acts, so a line
# written between the first read and $give_up is seen.
sub log_or_give_up
{
	my ($re, $offset, $give_up) = @_;
	my $seen = 0;
	wait_for("$re in the server log", sub {
		$seen = slurp_file($node->logfile, $offset) =~ $re;
		return 1 if $seen;
		return 0 unless $give_up->();
		$seen = slurp_file($node->logfile, $offset) =~ $re;
		return 1;
	});
	return $seen;
}

# 1. The processor is down for the flaky channel.
$mock->post('/_control/faults', { rules => [ { fault => '503', amount => 7000 } ] });
my $offset = -s $node->logfile;
request_many($node, 10, 'flaky', amount => '7000', prefix => 'flaky');
ok(log_or_give_up(qr/withdrawal channel "flaky" circuit breaker opened after 5 consecutive failures/, $offset,
	sub { requests_of(7000) > 5 }), 'the breaker opened (LOG)');
like(slurp_file($node->logfile, $offset),
	qr/circuit breaker opened after 5 consecutive failures\n.*DETAIL:  Nothing is sent on the channel for 4000 ms; its payouts stay queued.  Last failure: HTTP 503/,
	'the breaker opened after withdrawal.breaker_failures failures, for withdrawal.breaker_open_time, and said why');
my @flaky = requests_of(7000);
is(scalar(@flaky), 5, 'the processor received exactly the five failed requests');
is(breaker(), 'open 5 1', 'monitor_channels: the breaker is open after 5 failures');
{
	my ($rc, $out) = $node->psql('postgres', q{
		SELECT breaker_until > now() - interval '1 minute' FROM withdrawal.monitor_channels WHERE channel = 'flaky'});
	is($out, 't', 'monitor_channels: breaker_until is set');
}
my $t5 = $flaky[-1]{t_ms};

# From now on only the breaker limits the channel: a half-open breaker
# that let more than one request through would show.
$node->safe_psql('postgres', q{UPDATE withdrawal.channel SET max_in_flight = NULL WHERE name = 'flaky'});

# A healthy channel keeps paying meanwhile.
request_many($node, 20, 'bank', amount => '7100', prefix => 'healthy');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 20 FROM withdrawal.withdrawal WHERE channel = 'bank' AND status = 'paid'}),
	'the healthy channel is paid while the breaker of the other is open');
my ($last_healthy) = sort { $b <=> $a } map { $_->{t_ms} } requests_of(7100);
cmp_ok($last_healthy, '<', $t5 + 4000, 'the healthy channel was paid within the open period');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) FILTER (WHERE status <> 'queued') = 0 AND count(*) FILTER (WHERE sent_at IS NOT NULL) > 0
	  FROM withdrawal.withdrawal WHERE channel = 'flaky'}),
	'the open channel\'s payouts stay queued: none failed or refunded, the sent ones keep sent_at');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM withdrawal.ledger_entry e JOIN withdrawal.withdrawal w USING (withdrawal_id)
	 WHERE w.channel = 'flaky' AND e.kind = 'refund'}),
	'0', 'nothing was refunded');

# 2. Half-open: one probe, which fails.
ok(log_or_give_up(qr/withdrawal channel "flaky" circuit breaker opened again: the probe failed/, $offset,
	sub { requests_of(7000) > 6 }), 'the probe failed: opened again (LOG)');
@flaky = requests_of(7000);
is(scalar(@flaky), 6, 'half-open: exactly one probe reached the processor, across both workers');
cmp_ok($flaky[5]{t_ms} - $t5, '>=', 3900, 'nothing was sent on the channel while the breaker was open');
like(slurp_file($node->logfile, $offset),
	qr/opened again: the probe failed\n.*DETAIL:  Nothing is sent on the channel for 6000 ms/,
	'opened again for twice as long, capped by withdrawal.breaker_max_open_time');
is(breaker(), 'open 6 2', 'monitor_channels: open again, opened twice');
my $t6 = $flaky[5]{t_ms};

# 3. The processor heals: the next probe closes the breaker; the channel drains.
$mock->post('/_control/faults', { rules => [] });
ok(log_or_give_up(qr/withdrawal channel "flaky" circuit breaker closed: the probe was answered/, $offset,
	sub { $node->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE status NOT IN ('queued', 'dispatching')) = 10
		  FROM withdrawal.withdrawal WHERE channel = 'flaky'}) eq 't' }),
	'the probe was answered: closed (LOG)');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 10 FROM withdrawal.withdrawal WHERE channel = 'flaky' AND status = 'paid'}),
	'closed: the channel drains');
@flaky = requests_of(7000);
cmp_ok($flaky[6]{t_ms} - $t6, '>=', 5900, 'nothing was sent during the second open period');
is(breaker(), 'closed 0 2', 'monitor_channels: closed');
is(log_count(qr/circuit breaker opened after/) . ' ' . log_count(qr/circuit breaker half-open: sending one probe/)
	  . ' ' . log_count(qr/circuit breaker opened again/) . ' ' . log_count(qr/circuit breaker closed/),
	'1 2 1 1', 'each change of state logged once, by one of the two workers');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM withdrawal.withdrawal WHERE channel = 'flaky' AND attempts > 1}) > 0 ? 'resent' : 'not resent',
	'resent', 'payouts sent during the outage were sent again with the same key');

no_double_payout($node, $mock, 'breaker');
books_match_processor($node, $mock, 'breaker', settled => 1);
$node->stop;
$mock->stop;
done_testing();
