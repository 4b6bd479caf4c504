# A randomized chaos soak judged by the processor's truth.  For about
# CHAOS_SECONDS (default 150) seconds it mixes, in random order and
# proportions: request() batches on the http channel "bank" and the stripe
# channel "stripe" (some above the review threshold); cancel() as the app,
# approve() and reject() as two operators, retry() of dead payouts,
# sweep() and sweep('1 second'); signed webhooks built from what the mock
# processor really did (delivered twice, and returned before paid); every
# fault the mock can inject; payouts the mock settles or returns later; and
# crashes while payouts are on the wire: kill -9 of a worker, an immediate
# stop of the postmaster, and lost asynchronous commits (the WAL writer
# stopped, then an immediate stop).  Then the faults are lifted, the mock
# settles what is pending, the workers finish, and books_match_processor()
# compares every withdrawal with the processor: never refunded when it was
# paid, never paid twice, books balanced, every withdrawal terminal or held
# with a reason.
#
# The seed (CHAOS_SEED, else the time) is printed first and named in every
# check, so that a run can be replayed (as far as timing allows).
# CHAOS_MAX_WITHDRAWALS (default 20000) bounds the number of requests.
use strict;
use warnings FATAL => 'all';

use Digest::SHA qw(hmac_sha256_hex);
use JSON::PP;
use List::Util qw(shuffle);
use Time::HiRes qw(sleep time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalBooks;
use WithdrawalDispatchTest;
use WithdrawalMock;

my $seed = $ENV{CHAOS_SEED} // (int(time) ^ $$) & 0x7fffffff;
srand($seed);
note("seed $seed");
my $budget = $ENV{CHAOS_SECONDS} // 150;
my $max_withdrawals = $ENV{CHAOS_MAX_WITHDRAWALS} // 20000;
my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $json = JSON::PP->new->canonical;

my %secret = (
	mockhttp => 'chaos-http-' . join('', map { ('a' .. 'z')[ rand 26 ] } 1 .. 24),
	mockstripe => 'whsec_' . join('', map { ('a' .. 'z', 0 .. 9)[ rand 36 ] } 1 .. 32));
my $secrets_file = PostgreSQL::Test::Utils::tempdir() . '/secrets';
PostgreSQL::Test::Utils::append_to_file($secrets_file,
	"chaos_http = $secret{mockhttp}\nchaos_stripe = $secret{mockstripe}\n");
chmod 0600, $secrets_file;

my $mock = WithdrawalMock->new();
my $node = dispatch_node('chaos', $mock, workers => 2, conf => qq{
withdrawal.max_attempts = 4
withdrawal.http_timeout = '1s'
withdrawal.poll_after = '3s'
withdrawal.sweep_interval = '2s'
withdrawal.secrets_file = '$secrets_file'
restart_after_crash = on
});

# Amounts from 4000 go to review; from 4600 they need two approvers.
$node->safe_psql('postgres', q{
	UPDATE withdrawal.processor SET webhook_secret = 'chaos_http' WHERE name = 'mockhttp';
	UPDATE withdrawal.processor SET webhook_secret = 'chaos_stripe', webhook_scheme = 'stripe'
	 WHERE name = 'mockstripe';
	UPDATE withdrawal.policy SET review_threshold = 4000, four_eyes_threshold = 4600;
	CREATE ROLE app LOGIN IN ROLE withdrawal_app;
	CREATE ROLE ops1 LOGIN IN ROLE withdrawal_ops;
	CREATE ROLE ops2 LOGIN IN ROLE withdrawal_ops;
	-- each call's SQLSTATE (and message), so that one refused call does
	-- not stop a batch and a stricter API only changes the counts
	CREATE FUNCTION public.chaos_try(sql text) RETURNS text LANGUAGE plpgsql AS $f$
	DECLARE
		r text;
	BEGIN
		EXECUTE sql INTO r;
		RETURN '00000 ' || coalesce(r, '');
	EXCEPTION WHEN OTHERS THEN
		RETURN SQLSTATE || ' ' || replace(SQLERRM, E'\n', ' ');
	END
	$f$;
});

my %calls;		# op => SQLSTATE (or "crash") => count
my %message;	# op => SQLSTATE => the first message
my @internal;	# internal errors and crashes we did not cause
my %crashes;	# kind => count
my %webhooks;	# result => count
my $requested = 0;

sub pick
{
	my ($n, @from) = @_;
	@from = shuffle(@from);
	return @from[ 0 .. ($n < @from ? $n : scalar(@from)) - 1 ];
}

# Runs statements as $role, each through chaos_try(), and counts their
# SQLSTATEs under $op; one outside the contract is an internal error.  A
# lost connection is a crash that we did not cause
# (ours happen between calls): it is recorded and the server awaited.
sub call
{
	my ($role, $op, @statements) = @_;
	return () unless @statements;
	my $sql = join("\n", map { "SELECT chaos_try(\$chaos\$$_\$chaos\$);" } @statements);
	my ($out, $err, $timed_out) = ('', '', 0);
	my $rc = $node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role ], timeout => $timeout, timed_out => \$timed_out);
	my @results = split /\n/, $out;
	for my $r (@results)
	{
		my ($state, $text) = split / /, $r, 2;
		$calls{$op}{$state}++;
		$message{$op}{$state} //= $text if $state ne '00000';
		# the contract's SQLSTATEs (SPEC section 3) and nothing else: a
		# unique violation, a deadlock or an internal error is a bug
		push @internal, "$op as $role: $r"
		  unless $state =~ /^(?:00000|WD00[1-8]|22023|22003|42501)$/;
	}
	if ($rc != 0 || $timed_out)
	{
		$calls{$op}{crash}++;
		push @internal, "$op as $role: psql exited with $rc" . ($timed_out ? ' (timed out)' : '') . ": $err";
		$node->poll_query_until('postgres', 'SELECT true')
		  or die "seed $seed: the server did not come back after: $err";
	}
	return @results;
}

# A query as the superuser.  A server that does not answer (a crash we
# did not cause: ours are awaited) is recorded and awaited, then asked
# again.
sub query
{
	my ($sql) = @_;
	for my $try (1, 2)
	{
		my ($out, $err, $timed_out) = ('', '', 0);
		my $rc = $node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
			timeout => $timeout, timed_out => \$timed_out);
		return $out if $rc == 0 && !$timed_out;
		push @internal, "query: psql exited with $rc" . ($timed_out ? ' (timed out)' : '') . ": $err";
		$node->poll_query_until('postgres', 'SELECT true')
		  or die "seed $seed: the server did not come back after: $err";
	}
	die "seed $seed: query failed twice: $sql";
}

sub ids
{
	my ($where) = @_;
	return split /\n/, query(
		"SELECT withdrawal_id FROM withdrawal.withdrawal WHERE $where ORDER BY updated_at DESC LIMIT 300");
}

# The mock's truth about withdrawals: those whose latest payout has one of
# the statuses, of the ids when given; the ones in no request now.
sub truth
{
	my ($statuses, @ids) = @_;
	my $q = 'status=' . join(',', @$statuses);
	$q .= '&ids=' . join(',', @ids) if @ids;
	my $truth = $mock->get("/_control/truth?$q")->{withdrawals};
	delete $truth->{$_} for grep { $truth->{$_}{busy} } keys %$truth;
	return $truth;
}

# ---- the operations ----

sub op_request
{
	my ($n) = @_;
	$n //= 5 + int(rand(40));
	$n = $max_withdrawals - $requested if $requested + $n > $max_withdrawals;
	return if $n <= 0;
	my @statements;
	for (1 .. $n)
	{
		my $stripe = rand() < 0.35;
		my $r = rand();
		my $amount = $r < 0.85 ? 100 + int(rand(3900)) : $r < 0.93 ? 4000 + int(rand(600)) : 4600 + int(rand(900));
		my $account = 'acct' . (1 + int(rand(20)));
		$requested++;
		push @statements, sprintf(q{SELECT withdrawal.request('%s', 'USD', %d, '%s', '%s', 'chaos-%d-%d')},
			$account, $amount, $stripe ? 'stripe' : 'bank',
			$stripe ? '{"stripe_account": "acct_chaos"}' : '{"iban": "DE00"}', $seed, $requested);
	}
	call('app', 'request', @statements);
}

# cancel() as the app: half of them in the dispatch window, where an
# answer may have been lost
sub op_cancel
{
	my @w = rand() < 0.5 ? ids(q{status IN ('queued', 'dispatching', 'submitted', 'dead')}) : ids('true');
	my @targets = pick(1 + int(rand(8)), @w);
	push @targets, '00000000-0000-4000-8000-000000000000' if rand() < 0.05;
	call('app', 'cancel', map { "SELECT withdrawal.cancel('$_', 'changed my mind')" } @targets);
}

sub op_reject
{
	my @targets = pick(1 + int(rand(5)), ids(q{status IN ('review', 'queued', 'dispatching', 'submitted', 'dead')}));
	call(rand() < 0.5 ? 'ops1' : 'ops2', 'reject', map { "SELECT withdrawal.reject('$_', 'risk')" } @targets);
}

# approve() by ops1 then (mostly) ops2: two approvers above four-eyes;
# now and then the app tries, which it may not
sub op_approve
{
	my @targets = pick(1 + int(rand(6)), ids(q{status = 'review'}));
	return unless @targets;
	my @first = rand() < 0.5 ? ('ops1', 'ops2') : ('ops2', 'ops1');
	call($first[0], 'approve', map { "SELECT withdrawal.approve('$_', 'looks fine')" } @targets);
	call($first[1], 'approve', map { "SELECT withdrawal.approve('$_', 'agreed')" } @targets) if rand() < 0.7;
	call('app', 'approve', "SELECT withdrawal.approve('$targets[0]', 'self')") if rand() < 0.1;
}

# retry() of dead payouts, sometimes with a sweep right behind it
sub op_retry
{
	my @targets = pick(1 + int(rand(6)), ids(q{status = 'dead'}));
	return unless @targets;
	if (rand() < 0.3)
	{
		# in one transaction: the worker cannot claim it in between
		call('ops1', 'retry+sweep', map { "SELECT withdrawal.retry('$_'), withdrawal.sweep('1 second')" } @targets);
		return;
	}
	call('ops1', 'retry', map { "SELECT withdrawal.retry('$_')" } @targets);
	call('ops2', 'sweep', q{SELECT withdrawal.sweep('1 second')}) if rand() < 0.5;
}

sub op_sweep
{
	call(rand() < 0.5 ? 'ops1' : 'ops2', 'sweep',
		rand() < 0.6 ? q{SELECT withdrawal.sweep('1 second')} : q{SELECT withdrawal.sweep()});
}

# A signed webhook of $processor for withdrawal $id, event $type.
sub webhook
{
	my ($id, $t, $event) = @_;
	my ($processor, $body, %headers);
	my $ts = sprintf("%d", time());
	if ($t->{protocol} eq 'stripe')
	{
		$processor = 'mockstripe';
		my %type = (paid => 'transfer.paid', failed => 'transfer.failed', returned => 'transfer.reversed');
		my %object = (id => $t->{ref}, object => 'transfer', amount => $t->{amount}, currency => 'usd',
			metadata => { withdrawal_id => $id });
		$object{amount_reversed} = $t->{amount} if $event eq 'returned';
		$body = $json->encode({ id => "evt_${event}_$id", object => 'event', type => $type{$event},
				data => { object => \%object } });
		$headers{'Stripe-Signature'} = "t=$ts,v1=" . hmac_sha256_hex("$ts.$body", $secret{$processor});
	}
	else
	{
		$processor = 'mockhttp';
		$body = $json->encode({ id => "evt_${event}_$id", type => "payout.$event",
				data => { id => $t->{ref}, payout_id => $id, amount => $t->{amount}, currency => 'USD' } });
		$headers{'X-Withdrawal-Timestamp'} = $ts;
		$headers{'X-Withdrawal-Signature'} = 'v1=' . hmac_sha256_hex("$ts.$body", $secret{$processor});
	}
	return sprintf(q{SELECT withdrawal.receive_webhook('%s', '%s', '%s')},
		$processor, $json->encode(\%headers), $body);
}

# Delivers the true story of some withdrawals: paid only when the mock
# paid, failed only when it failed, returned only after it returned one
# (then sometimes before its paid event); some events twice.
sub deliver
{
	my ($truth, @targets) = @_;
	my @statements;
	for my $id (@targets)
	{
		my $t = $truth->{$id};
		my @events =
			$t->{status} eq 'returned' ? (rand() < 0.5 ? ('returned', 'paid') : ('paid', 'returned'))
		  : $t->{status} =~ /^(paid|failed)$/ ? ($t->{status})
		  : ();
		for my $event (@events)
		{
			push @statements, webhook($id, $t, $event);
			push @statements, webhook($id, $t, $event) if rand() < 0.3;
		}
	}
	for my $r (call('app', 'webhook', @statements))
	{
		$webhooks{$1}++ if $r =~ /"result": "(\w+)"/;
	}
}

sub op_webhook
{
	my @ids = pick(1 + int(rand(10)), ids(q{status <> 'review'}));
	my $truth = truth([ 'paid', 'failed', 'returned' ], @ids);
	deliver($truth, grep { $truth->{$_} } @ids);
}

# Settles a payout at the mock; a refusal (400) is counted, not fatal.
sub settle
{
	my ($id, $status) = @_;
	my $ok = eval {
		$mock->post('/_control/settle', { id => $id, status => $status, failure_code => 'account_closed' });
		1;
	};
	$calls{"settle at the processor"}{ $ok ? $status : 'refused' }++;
	return $ok;
}

# The processor returns payouts it paid, and tells us (or not, yet).
sub op_return
{
	my @ids = pick(30, ids(q{status NOT IN ('review', 'failed', 'rejected', 'canceled', 'returned')}));
	my $truth = truth(['paid'], @ids);
	my @paid = grep { settle($_, 'returned') } pick(1 + int(rand(3)), grep { $truth->{$_} } @ids);
	$truth->{$_}{status} = 'returned' for @paid;
	deliver($truth, grep { rand() < 0.7 } @paid);
}

# The processor makes up its mind about pending payouts.
sub settle_pending
{
	my ($share, $tell) = @_;
	my $truth = truth(['pending']);
	my @pending = sort keys %$truth;
	@pending = pick(int(@pending * $share) + 1, @pending) if $share < 1;
	for my $id (@pending)
	{
		my $status = rand() < 0.7 ? 'paid' : 'failed';
		$truth->{$id}{status} = $status if settle($id, $status);
	}
	deliver($truth, grep { rand() < 0.5 } @pending) if $tell;
	return scalar @pending;
}

my @fault_kinds = qw(500 502 503 504 429 hang reset reject failed pending paid slow
  malformed truncated reset-after hang-after 500-after 502-after 503-after);

# A random mix of fault rules, after @first.
sub op_faults
{
	my (@first) = @_;
	my @rules = @first;
	if (rand() < 0.8)
	{
		for (0 .. int(rand(5)))
		{
			my $fault = $fault_kinds[ rand @fault_kinds ];
			my %rule = (fault => $fault, times => 1 + int(rand(15)));
			my $m = rand();
			$rule{method} = $m < 0.7 ? 'POST' : $m < 0.85 ? 'GET' : '*';
			my $p = rand();
			$rule{protocol} = $p < 0.3 ? 'http' : 'stripe' if $p < 0.5;
			$rule{delay_ms} = 100 + int(rand(2500)) if $fault eq 'slow';
			$rule{retry_after} = 1 + int(rand(2)) if $fault eq '429';
			if ($fault eq 'reject')
			{
				$rule{status} = (400, 402, 403)[ rand 3 ];
				$rule{code} = ('account_closed', 'invalid_account', 'insufficient_funds')[ rand 3 ];
			}
			# a Stripe transfer is final when created: "failed" is http's
			$rule{protocol} = 'http' if $fault eq 'failed';
			push @rules, \%rule;
		}
	}
	$mock->post('/_control/faults', { rules => \@rules });
	$calls{faults}{ @rules ? 'set' : 'cleared' }++;
}

# ---- crashes, while payouts are on the wire ----

# Slow answers (up to $max_delay ms) keep payouts on the wire (the
# processor has made them, we have not heard) when we strike.
sub on_the_wire
{
	my ($max_delay) = @_;
	op_faults({ fault => 'slow', delay_ms => 100 + int(rand($max_delay - 100)), times => 10 + int(rand(40)) });
	op_request(20 + int(rand(80)));
	my $deadline = time + 10;
	while (time < $deadline)
	{
		return 1 if $mock->get('/_control/stats?keys=0')->{in_flight} > 0;
		sleep 0.02;
	}
	return 0;
}

sub crash
{
	my $r = rand();
	my $kind = $r < 0.3 ? 'kill9' : $r < 0.6 ? 'immediate' : 'lost_commit';
	my $walwriter;

	if ($kind eq 'lost_commit')
	{
		# The workers commit asynchronously: what the stopped WAL writer
		# has not written is lost, as in an OS crash.  The requests commit
		# (synchronously) after it stopped, so that their claims, sends and
		# outcomes are all in the window.
		$walwriter = query(
			q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'});
		kill 'STOP', $walwriter;
	}
	$crashes{"$kind (nothing on the wire)"}++ unless on_the_wire($kind eq 'lost_commit' ? 800 : 1800);
	sleep($kind eq 'lost_commit' ? 0.5 + rand(0.7) : rand(0.3));
	note("seed $seed: crash: $kind");
	# what the books say now, to count what the crash makes them forget
	# (reading commits nothing, so it flushes nothing)
	my %before;
	%before = recent_books() if $kind eq 'lost_commit';

	if ($kind eq 'kill9')
	{
		my @pids = split /\n/, query(
			q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'withdrawal worker'});
		return unless @pids;
		my $offset = -s $node->logfile;
		return unless kill 'KILL', $pids[ rand @pids ];
		$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
		$node->poll_query_until('postgres', 'SELECT true')
		  or die "seed $seed: no restart after kill -9";
	}
	else
	{
		$node->stop('immediate');
		kill 'CONT', $walwriter if $walwriter;
		$node->start;
	}
	$crashes{$kind}++;

	if ($kind eq 'lost_commit')
	{
		# Outcomes and claims the books forgot: a status that went back to
		# queued or dispatching, fewer attempts (at least: the workers may
		# have claimed some again already).
		my %after = recent_books();
		for my $id (keys %before)
		{
			my ($s0, $a0) = @{ $before{$id} };
			my ($s1, $a1) = @{ $after{$id} // next };
			$crashes{'lost_commit: outcomes forgotten'}++
			  if $s1 =~ /^(queued|dispatching)$/ && $s0 !~ /^(queued|dispatching)$/;
			$crashes{'lost_commit: claims forgotten'}++ if $a1 < $a0;
		}
	}

	# users cancel their latest requests, operators sweep, at once
	my @latest = ids(q{status = 'queued'});
	splice(@latest, 50) if @latest > 50;
	call('app', 'cancel', map { "SELECT withdrawal.cancel('$_', 'changed my mind')" }
		  pick(1 + int(rand(20)), @latest))
	  if rand() < 0.5;
	op_sweep() if rand() < 0.3;
}

# Status and attempts of the withdrawals changed in the last minute.
sub recent_books
{
	return map { my ($id, @v) = split /\|/; ($id => \@v) } split /\n/, query(
		q{SELECT withdrawal_id, status, attempts FROM withdrawal.withdrawal
		   WHERE updated_at > now() - interval '1 minute'});
}

# ---- the soak ----

my @ops = (
	[ \&op_request, 30 ], [ \&op_cancel, 10 ], [ \&op_reject, 5 ], [ \&op_approve, 6 ],
	[ \&op_retry, 5 ], [ \&op_sweep, 4 ], [ \&op_webhook, 10 ], [ \&op_return, 3 ],
	[ sub { settle_pending(0.5, 1) }, 5 ], [ \&op_faults, 6 ],
	[ sub { sleep(0.1 + rand(0.6)) }, 8 ]);
my $total_weight = 0;
$total_weight += $_->[1] for @ops;

my $t0 = time;
my $next_crash = $t0 + 5 + rand(15);
while (time < $t0 + $budget)
{
	if (time >= $next_crash)
	{
		crash();
		$next_crash = time + 5 + rand(15);
		next;
	}
	my $r = rand($total_weight);
	for my $op (@ops)
	{
		next if ($r -= $op->[1]) >= 0;
		$op->[0]->();
		last;
	}
}
my $soak = time - $t0;

# ---- settle: no more faults, the mock decides, the workers finish ----

$mock->post('/_control/faults', { rules => [] });
my $settle_deadline = time + $timeout;
my $settled = 0;
while (time < $settle_deadline)
{
	$mock->post('/_control/release');
	settle_pending(1, 0);
	my $returned = truth(['returned']);
	my @open = split /\n/, query(
		q{SELECT withdrawal_id || ' ' || status FROM withdrawal.withdrawal
		   WHERE status IN ('queued', 'dispatching', 'submitted')});
	# a submitted payout the processor has a final word for is asked again
	# after poll_after; one it returned stays submitted with an error
	my @moving = grep {
		my ($id, $status) = split / /;
		$status ne 'submitted' || !$returned->{$id}
	} @open;
	my $quiet = $mock->get('/_control/stats?keys=0');
	if (!@moving && !$quiet->{in_flight} && !$quiet->{held} && !$quiet->{hung})
	{
		$settled = 1;
		last;
	}
	sleep 0.2;
}
ok($settled, "seed $seed: the workers finished once the faults were lifted")
  or diag(query(
	q{SELECT status, count(*), max(last_error) FROM withdrawal.withdrawal
	   WHERE status IN ('queued', 'dispatching', 'submitted') GROUP BY 1}));

my $counts = books_match_processor($node, $mock, "seed $seed", settled => 1);

# ---- what happened ----

is(scalar(@internal), 0, "seed $seed: no internal error and no crash we did not cause")
  or diag(join("\n", @internal[ 0 .. ($#internal < 9 ? $#internal : 9) ]));
my @signals = grep { !/signal 9:/ }
  (PostgreSQL::Test::Utils::slurp_file($node->logfile) =~ /^.*terminated by signal \d+.*$/mg);
is(scalar(@signals), 0, "seed $seed: no server process terminated by a signal other than our kill -9")
  or diag(join("\n", @signals));
ok(!$node->log_contains('TRAP:'), "seed $seed: no assertion failure");
my @deadlocks = (PostgreSQL::Test::Utils::slurp_file($node->logfile) =~ /^.*deadlock detected.*$/mg);
is(scalar(@deadlocks), 0, "seed $seed: no deadlock") or diag(join("\n", @deadlocks[0 .. ($#deadlocks < 4 ? $#deadlocks : 4)]));

my $n = query('SELECT count(*) FROM withdrawal.withdrawal');
note(sprintf('seed %d: soak %.0f s, %d withdrawals; statuses: %s', $seed, $soak, $n,
	join(', ', split /\n/, query(
		q{SELECT status || ' ' || count(*) FROM withdrawal.withdrawal GROUP BY status ORDER BY 1}))));
note("seed $seed: crashes: " . join(', ', map { "$_ $crashes{$_}" } sort keys %crashes));
note("seed $seed: webhooks: " . join(', ', map { "$_ $webhooks{$_}" } sort keys %webhooks));
for my $op (sort keys %calls)
{
	note("seed $seed: $op: " . join(', ', map { "$_ $calls{$op}{$_}" } sort keys %{ $calls{$op} }));
	note("    $_: $message{$op}{$_}") for sort keys %{ $message{$op} // {} };
}
my $s = $mock->get('/_control/stats?keys=0');
note("seed $seed: processor: $s->{payout_requests} payout requests, $s->{status_requests} status queries, "
	  . "$s->{effective_payouts} effective payouts, $s->{replays} replays, $s->{conflicts} conflicts; faults: "
	  . join(', ', map { "$_ $s->{faults}{$_}" } sort keys %{ $s->{faults} }));
note("seed $seed: violations: " . join(', ', map { "$_ $counts->{$_}" } sort keys %$counts));

$node->stop;
$mock->stop;
done_testing();
