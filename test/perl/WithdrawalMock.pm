
# Copyright (c) 2026, withdrawal developers

=pod

=head1 NAME

WithdrawalMock - the mock payment processor (test/mock/processor.js) for TAP tests

=head1 SYNOPSIS

  use WithdrawalMock;

  my $mock = WithdrawalMock->new(api_key => 'sk_test_123');
  my $url = $mock->url;                 # http://127.0.0.1:PORT
  $mock->set_faults([ { fault => '503', times => 2 } ]);
  ...
  my $stats = $mock->stats;             # hashref of GET /_control/stats
  is($stats->{max_effective_per_key}, 1, 'never paid twice');
  my $log = $mock->requests;            # arrayref of GET /_control/requests
  my $t = $mock->get('/_control/truth'); # any control route
  $mock->poll_until(sub { $mock->truth->{held} == 1 }) or die 'not held';
  $mock->reset;
  $mock->stop;                          # also done on DESTROY and at END

=head1 DESCRIPTION

Starts C<node test/mock/processor.js --port 0> so that the kernel picks a
free loopback port, and reads the C<{"port":N}> line it prints once it
listens.  The mock's stderr goes to a log file (in the TAP log directory
when PostgreSQL::Test::Utils is loaded).  Every control call dies when the
mock does not answer 200.

This is the only module that starts the mock; WithdrawalDispatchTest.pm
(clusters wired to a mock) and WithdrawalBooks.pm (the mock's truth
against the ledger) take a WithdrawalMock.

=cut

package WithdrawalMock;

use strict;
use warnings FATAL => 'all';

use Carp;
use File::Basename qw(dirname);
use File::Spec;
use File::Temp ();
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use Scalar::Util qw(weaken);
use Time::HiRes ();

my $script = File::Spec->rel2abs(
	File::Spec->catfile(dirname(__FILE__), '..', 'mock', 'processor.js'));

# live instances, so that END stops whatever a test forgot
my %live;
my $instances = 0;

=pod

=head1 METHODS

=over

=item WithdrawalMock->new(%options)

Starts a mock.  Options: C<api_key> (bearer token required on every
processor route), C<status> (C<paid> or C<pending>: the status of a new
payout when no rule says otherwise), C<name> (used in the log file name),
C<start_timeout> (seconds to wait for the port line, default 30),
C<node> (the node binary, default C<$ENV{NODE}> or C<node>).

=cut

sub new
{
	my ($class, %opts) = @_;
	my $self = bless {
		api_key => $opts{api_key},
		name => $opts{name} // 'mock' . (++$instances),
		json => JSON::PP->new->utf8->canonical,
	}, $class;

	my @cmd = ($opts{node} // $ENV{NODE} // 'node', $script, '--port', '0');
	push @cmd, '--api-key', $opts{api_key} if defined $opts{api_key};
	push @cmd, '--status', $opts{status} if defined $opts{status};

	my $logdir;
	{
		no warnings 'once';
		$logdir = $PostgreSQL::Test::Utils::log_path;
	}
	if (defined $logdir && -d $logdir)
	{
		$self->{log_file} = "$logdir/$self->{name}_$$.log";
	}
	else
	{
		$self->{tmp} = File::Temp->newdir;
		$self->{log_file} = "$self->{tmp}/$self->{name}.log";
	}

	my ($in, $out) = ('', '');
	my $timeout = IPC::Run::timeout($opts{start_timeout} // 30);
	$self->{out} = \$out;
	$self->{handle} =
	  IPC::Run::start(\@cmd, '<', \$in, '>', \$out, '2>>', $self->{log_file},
		$timeout);
	my $ok = eval {
		$self->{handle}->pump until $out =~ /^\{"port":(\d+)\}$/m;
		1;
	};
	if (!$ok || $out !~ /^\{"port":(\d+)\}$/m)
	{
		my $err = $@;
		$self->{handle}->kill_kill;
		croak "mock processor did not start ($err); see $self->{log_file}";
	}
	$self->{port} = $1;
	# the start timeout must not fire later, while the mock runs
	$timeout->reset;
	$self->{url} = "http://127.0.0.1:$self->{port}";
	$self->{http} = HTTP::Tiny->new(keep_alive => 1, timeout => 30);

	$live{"$self"} = $self;
	weaken($live{"$self"});
	return $self;
}

=pod

=item $mock->url, $mock->port, $mock->api_key, $mock->log_file

The base URL (C<http://127.0.0.1:PORT>), port, API key and stderr log.

=cut

sub url { return $_[0]->{url} }
sub port { return $_[0]->{port} }
sub api_key { return $_[0]->{api_key} }
sub log_file { return $_[0]->{log_file} }

# _control($method, $path, $body_ref_or_undef): decoded JSON answer
sub _control
{
	my ($self, $method, $path, $body) = @_;
	croak 'mock processor is stopped' unless $self->{handle};
	my %args;
	if (defined $body)
	{
		$args{content} = $self->{json}->encode($body);
		$args{headers} = { 'Content-Type' => 'application/json' };
	}
	my $res = $self->{http}->request($method, $self->{url} . $path, \%args);
	croak "mock $method $path: $res->{status} $res->{reason}: $res->{content}"
	  unless $res->{status} == 200;
	return $self->{json}->decode($res->{content});
}

=pod

=item $mock->get($path), $mock->post($path, \%body)

Any control route (C</_control/...>), for what has no method of its own;
the decoded JSON answer.  C<post> sends C<{}> without a body.

=cut

sub get
{
	my ($self, $path) = @_;
	return $self->_control('GET', $path);
}

sub post
{
	my ($self, $path, $body) = @_;
	return $self->_control('POST', $path, $body // {});
}

=pod

=item $mock->poll_until($cond, interval => S, timeout => S), WithdrawalMock->poll_until(...)

Calls C<$cond> (a sub) every C<interval> seconds (default 0.1) until it
returns true, for at most C<timeout> seconds (default the TAP tests'
C<$PostgreSQL::Test::Utils::timeout_default>, else 180); returns whether
it did.  For states of the mock (a held or hung request) and anything
else that PostgreSQL's C<poll_query_until> cannot watch; it asserts
nothing about time.

=cut

sub poll_until
{
	my ($self, $cond, %opts) = @_;
	my $interval = $opts{interval} // 0.1;
	my $timeout;
	{
		no warnings 'once';
		$timeout = $opts{timeout} // $PostgreSQL::Test::Utils::timeout_default // 180;
	}
	my $deadline = Time::HiRes::time() + $timeout;
	while (1)
	{
		return 1 if $cond->();
		return 0 if Time::HiRes::time() >= $deadline;
		Time::HiRes::sleep($interval);
	}
}

=pod

=item $mock->set_faults(\@rules)

Replaces the fault rules (C<[]> clears them).  A rule is a hashref as
described at the top of processor.js, e.g.
C<< { fault => '429', retry_after => 2, times => 3, amount => 1300 } >>.

=cut

sub set_faults
{
	my ($self, $rules) = @_;
	croak 'set_faults needs an array reference' unless ref $rules eq 'ARRAY';
	return $self->_control('POST', '/_control/faults', { rules => $rules });
}

=pod

=item $mock->faults

The current rules, with the C<times> left and C<applied> counts.

=cut

sub faults
{
	my ($self) = @_;
	return $self->_control('GET', '/_control/faults')->{rules};
}

=pod

=item $mock->stats(keys => 0)

Counters: C<requests>, C<payout_requests>, C<status_requests>,
C<effective_payouts>, C<max_effective_per_key>,
C<max_effective_per_withdrawal>, C<replays>, C<mismatches>, C<conflicts>,
C<unauthorized>, C<by_status>, C<faults>, C<max_in_flight>,
C<max_payout_requests_per_second>, and (unless C<< keys => 0 >>) the maps
C<keys> (idempotency key to effective payouts) and C<withdrawals>.

=cut

sub stats
{
	my ($self, %opts) = @_;
	my $q = (defined $opts{keys} && !$opts{keys}) ? '?keys=0' : '';
	return $self->_control('GET', "/_control/stats$q");
}

=pod

=item $mock->requests(since => I, limit => N)

The request log: an arrayref of hashes with C<t_ms>, C<method>, C<path>,
C<protocol>, C<key>, C<amount>, C<withdrawal_id>, C<status> (the HTTP status
sent, or C<hang>, C<reset>, C<malformed>, C<truncated>), C<fault>,
C<replayed>, C<ref>.

=cut

sub requests
{
	my ($self, %opts) = @_;
	my @q;
	push @q, "since=" . int($opts{since}) if defined $opts{since};
	push @q, "limit=" . int($opts{limit}) if defined $opts{limit};
	my $q = @q ? '?' . join('&', @q) : '';
	return $self->_control('GET', "/_control/requests$q");
}

=pod

=item $mock->reset, $mock->release, $mock->settle($id, $status, $failure_code)

C<reset> forgets payouts, rules, counters and the log and drops hung
connections.  C<release> answers now every request that a C<slow> rule
holds and returns how many.  C<settle> changes the status that status
queries report for a payout (by withdrawal id, processor ref or key) the
way a processor may: C<pending> to C<paid> or C<failed>, C<paid> to
C<returned>; it dies on any other change (the mock answers 400).

=cut

sub reset
{
	my ($self) = @_;
	return $self->_control('POST', '/_control/reset', {});
}

sub release
{
	my ($self) = @_;
	return $self->_control('POST', '/_control/release', {})->{released};
}

sub settle
{
	my ($self, $id, $status, $failure_code) = @_;
	my %body = (id => $id, status => $status);
	$body{failure_code} = $failure_code if defined $failure_code;
	return $self->_control('POST', '/_control/settle', \%body);
}

=pod

=item $mock->truth(status => [S, ...], ids => [I, ...])

What the processor really did (GET C</_control/truth>): C<in_flight>,
C<held>, C<hung>, and C<withdrawals>, a hash by withdrawal id of
C<effective> (payouts made for it that did not fail), C<status> (of the
latest), C<returned>, C<busy> (a request for it is still processed or
held), C<entries>, C<ref>, C<amount> and C<protocol>; with C<status>, only
the withdrawals whose latest payout has one of these statuses, with C<ids>
only these withdrawals.

=cut

sub truth
{
	my ($self, %opts) = @_;
	my @q;
	push @q, 'status=' . join(',', @{ $opts{status} }) if $opts{status};
	push @q, 'ids=' . join(',', @{ $opts{ids} }) if $opts{ids};
	my $q = @q ? '?' . join('&', @q) : '';
	return $self->_control('GET', "/_control/truth$q");
}

=pod

=item $mock->stop

Stops the mock (SIGTERM, then SIGKILL after 10 s).  Idempotent.

=cut

sub stop
{
	my ($self) = @_;
	my $h = delete $self->{handle};
	return unless $h;
	delete $live{"$self"};
	local $@;
	eval {
		$h->signal('TERM');
		$h->finish;
		1;
	} or eval { $h->kill_kill(grace => 10); };
	return;
}

sub DESTROY
{
	my ($self) = @_;
	local ($., $@, $!, $^E, $?);
	$self->stop;
	return;
}

END
{
	local $?;
	for my $m (grep { defined } values %live)
	{
		$m->stop;
	}
}

=pod

=back

=cut

1;
