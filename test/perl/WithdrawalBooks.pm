# Judges the books by the processor's truth.  check_invariants() compares
# the ledger with itself, so it cannot see a payout that the processor made
# and the ledger refunded (the user paid twice, the operator out of pocket).
# The mock processor knows which payouts it really made
# (GET /_control/truth); books_match_processor() compares that, withdrawal
# by withdrawal, with withdrawal.ledger_entry.
package WithdrawalBooks;

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

our @EXPORT = qw(books_match_processor);

my $json = JSON::PP->new->canonical;
my $max_examples = 10;

my %terminal = map { $_ => 1 } qw(paid failed rejected canceled returned);
my %held = map { $_ => 1 } qw(review queued dispatching submitted dead);

# The violation kinds, in the order they are checked and reported.
my @kinds = (
	[ processor_busy => 'the processor has nothing in flight or held' ],
	[ more_than_one => 'at most one effective payout per withdrawal at the processor' ],
	[ paid_and_refunded => 'no withdrawal both paid by the processor and refunded' ],
	[ invariants => 'check_invariants() all zero' ],
	[ conservation => 'money conserved: credits = available + held + paid_out, per currency' ],
	[ unsettled => 'every withdrawal terminal, or held with a stated reason', 'settled' ],
	[ paid_not_at_processor => 'paid or returned in the books only when the processor paid', 'settled' ],
);

# Waits until the mock has nothing in flight, held or hung and no busy
# withdrawal, releasing what "slow" faults hold.  Returns the last truth
# and whether it got quiet in time.
sub wait_processor_quiet
{
	my ($mock, $timeout) = @_;
	my $deadline = time + $timeout;
	my $truth;
	while (1)
	{
		$truth = $mock->get('/_control/truth');
		my $busy = grep { $_->{busy} } values %{ $truth->{withdrawals} };
		return ($truth, 1)
		  if !$truth->{in_flight} && !$truth->{held} && !$truth->{hung} && !$busy;
		return ($truth, 0) if time > $deadline;
		$mock->post('/_control/release') if $truth->{held};
		sleep 0.1;
	}
}

# Every withdrawal with what the ledger did to it, as JSON.
sub books
{
	my ($node) = @_;
	my $rows = $node->safe_psql('postgres', q{
		SELECT coalesce(json_agg(b ORDER BY b.created_at, b.id), '[]') FROM (
			SELECT w.withdrawal_id AS id, w.status, w.attempts, w.last_error, w.reason,
				   w.channel, w.amount, w.created_at,
				   coalesce((SELECT json_agg(e.kind ORDER BY e.txn_id) FROM withdrawal.ledger_entry e
							  WHERE e.withdrawal_id = w.withdrawal_id AND e.leg = 1), '[]') AS kinds
			  FROM withdrawal.withdrawal w) b});
	return $json->decode($rows);
}

# One line per audit row of a withdrawal: action (actor) before -> after.
sub audit_trail
{
	my ($node, $id) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(action || ' (' || actor || ') ' || coalesce(before_status, '-') || ' -> '
			   || coalesce(after_status, '-')
			   || coalesce(' [' || coalesce(detail->>'event_type', detail->>'reason') || ']', ''),
			   '; ' ORDER BY audit_id)
		  FROM withdrawal.audit_log WHERE withdrawal_id = '$id'});
}

# How the ledger came to refund withdrawals: the audit actions that moved
# them to failed, rejected or canceled, by the status they left and the
# action before (a bare "request" means nothing was recorded in between),
# counted.
sub refunded_by
{
	my ($node, @ids) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(how || ' ' || n, ', ' ORDER BY n DESC, how) FROM (
			SELECT action || ' from ' || coalesce(before_status, '-') || coalesce(' after ' || previous, '') AS how,
				   count(*) AS n
			  FROM (SELECT a.*, lag(action) OVER (PARTITION BY withdrawal_id ORDER BY audit_id) AS previous
					  FROM withdrawal.audit_log a
					 WHERE withdrawal_id = ANY ('{@{[ join(',', @ids) ]}}'::uuid[])) a
			 WHERE after_status IN ('failed', 'rejected', 'canceled')
			   AND before_status IS DISTINCT FROM after_status
			 GROUP BY 1) s});
}

# What the mock saw for each withdrawal: method, answer and fault per request.
sub requests_by_withdrawal
{
	my ($mock) = @_;
	my %by;
	my %ref_to_id;
	my $log = $mock->get('/_control/requests');
	for my $r (@$log)
	{
		$ref_to_id{ $r->{ref} } = $r->{withdrawal_id}
		  if defined $r->{ref} && defined $r->{withdrawal_id} && $r->{method} eq 'POST';
	}
	for my $r (@$log)
	{
		my $id = $r->{withdrawal_id} // next;
		$id = $ref_to_id{$id} // $id;
		push @{ $by{$id} }, $r->{method} . ' ' . ($r->{status} // 'no answer')
		  . ($r->{fault} ? " ($r->{fault})" : '')
		  . ($r->{replayed} ? ' replayed' : '');
	}
	return \%by;
}

# books_match_processor($node, $mock, $what, %opt): compares the books of
# $node with what the processor really did, for every withdrawal.  $mock is
# the mock (a WithdrawalMock); it is first given time to finish what is
# in flight (held requests are released), and the test fails when that does
# not happen within $opt{timeout} seconds (default: the TAP tests' default
# timeout).  Without a mock, truth => {withdrawals => {id => {effective =>
# N, status => S}}} says what the processor did (the sandbox's documented
# amounts, or the webhooks a test sent).  A withdrawal the processor never
# saw has no effective payout.
#
# Checks, one "is" each so that the counts appear in the TAP output: at
# most one effective payout per withdrawal; none both effective (and not
# returned) and refunded in the ledger; check_invariants() all zero; credits equal to the
# wallets' available + held + paid_out per currency.  With settled => 1
# also: every withdrawal terminal, or held (review, queued, dispatching,
# submitted, dead) with a last_error or reason; paid or returned in the
# books only when the processor has an effective payout.  Each failing kind
# is explained by up to 10 examples with the withdrawal's status, attempts,
# last error, audit trail and the requests the mock saw.  Returns a hashref
# of the counts.
sub books_match_processor
{
	my ($node, $mock, $what, %opt) = @_;
	my %count = map { $_->[0] => 0 } @kinds;
	my %examples;
	my @refunded;
	my $truth = $opt{truth} // { withdrawals => {} };

	if ($mock)
	{
		my ($t, $quiet) = wait_processor_quiet($mock,
			$opt{timeout} // $PostgreSQL::Test::Utils::timeout_default);
		$count{processor_busy} = $quiet ? 0 : 1;
		push @{ $examples{processor_busy} }, sprintf('in flight %d, held %d, hung %d, busy: %s',
			$t->{in_flight}, $t->{held}, $t->{hung},
			join(' ', grep { $t->{withdrawals}{$_}{busy} } sort keys %{ $t->{withdrawals} }) || 'none')
		  unless $quiet;
	}

	# the books first: the processor's truth only grows while we read
	my $books = books($node);
	$truth = $mock->get('/_control/truth') if $mock;
	my $seen = $truth->{withdrawals};

	for my $w (@$books)
	{
		my $t = $seen->{ $w->{id} } // { effective => 0, status => 'unknown' };
		my %kind = map { $_ => 1 } @{ $w->{kinds} };
		my @hits;
		push @hits, 'more_than_one' if $t->{effective} > 1;
		# A payout the processor made and that came back (returned) is out
		# no more: the wallet gets it back once, by a refund or by settle
		# and return (out-of-order events cannot always tell which), and
		# check_invariants() sees that it is once.
		push @hits, 'paid_and_refunded' if $t->{effective} >= 1 && !$t->{returned} && $kind{refund};
		if ($opt{settled})
		{
			my $why = ($w->{last_error} // '') ne '' || ($w->{reason} // '') ne '';
			push @hits, 'unsettled' unless $terminal{ $w->{status} } || ($held{ $w->{status} } && $why);
			push @hits, 'paid_not_at_processor' if $t->{effective} == 0 && $kind{settle};
		}
		push @refunded, $w->{id} if grep { $_ eq 'paid_and_refunded' } @hits;
		for my $k (@hits)
		{
			$count{$k}++;
			push @{ $examples{$k} }, { w => $w, t => $t } if @{ $examples{$k} // [] } < $max_examples;
		}
	}

	my $bad = $node->safe_psql('postgres', q{
		SELECT coalesce(sum(violations), 0), coalesce(string_agg(check_name || ': ' || violations
			   || coalesce(' (' || detail || ')', ''), '; '), '')
		  FROM withdrawal.check_invariants() WHERE violations <> 0});
	my ($violations, $detail) = split /\|/, $bad, 2;
	$count{invariants} = $violations;
	push @{ $examples{invariants} }, $detail if $violations;

	my $money = $node->safe_psql('postgres', q{
		SELECT currency || ': credits ' || c || ', wallets ' || coalesce(b, 0)
		  FROM (SELECT currency, sum(amount) AS c FROM withdrawal.credit GROUP BY 1) cr
		  FULL JOIN (SELECT currency, sum(available + held + paid_out) AS b FROM withdrawal.wallet GROUP BY 1) wa
		 USING (currency)
		 WHERE c IS DISTINCT FROM b AND NOT (c IS NULL AND b = 0)});
	my @unbalanced = grep { $_ ne '' } split /\n/, $money;
	$count{conservation} = scalar @unbalanced;
	push @{ $examples{conservation} }, @unbalanced;

	my $requests;
	for my $k (map { $_->[0] } @kinds)
	{
		next unless $count{$k} && ref $examples{$k}[0];
		$requests //= $mock ? requests_by_withdrawal($mock) : {};
		for my $e (@{ $examples{$k} })
		{
			my ($w, $t) = ($e->{w}, $e->{t});
			$e = sprintf("%s %s: %s, attempts %d, amount %d, channel %s, last_error %s, reason %s\n"
				  . "      ledger: %s; processor: effective %d, status %s%s\n"
				  . "      audit: %s%s",
				$k, $w->{id}, $w->{status}, $w->{attempts}, $w->{amount}, $w->{channel},
				$w->{last_error} // '-', $w->{reason} // '-',
				join(' ', @{ $w->{kinds} }) || '-', $t->{effective}, $t->{status} // '-',
				$t->{returned} ? ', returned' : '',
				audit_trail($node, $w->{id}) || '-',
				$mock ? "\n      requests: " . (join(', ', @{ $requests->{ $w->{id} } // [] }) || '-') : '');
		}
	}

	my @checked = grep { (!$_->[2] || $opt{ $_->[2] }) && ($mock || $_->[0] ne 'processor_busy') } @kinds;
	diag("$what: " . join(', ', map { "$_->[0] $count{$_->[0]}" } @checked)
		  . ' (' . scalar(@$books) . ' withdrawals)')
	  if grep { $count{$_} } keys %count;
	my %summary;
	$summary{paid_and_refunded} = ' (refunded by: ' . refunded_by($node, @refunded) . ')' if @refunded;
	for my $k (@checked)
	{
		my ($name, $label) = @$k;
		is($count{$name}, 0, "$what: $label")
		  or diag(join("\n", "$name: $count{$name}" . ($summary{$name} // ''),
			map { "  $_" } @{ $examples{$name} // [] }));
	}
	return \%count;
}

1;
