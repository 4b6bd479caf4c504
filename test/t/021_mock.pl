
# Copyright (c) 2026, withdrawal developers

# The mock payment processor itself (test/mock/processor.js through
# WithdrawalMock.pm): idempotency the way Stripe does it, every fault it
# can inject, the Stripe shape, authentication and its counters.  The
# dispatcher's tests rely on all of this, so it is tested on its own first.
use strict;
use warnings FATAL => 'all';

use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;

use PostgreSQL::Test::Utils;
use Test::More;

use WithdrawalMock;

my $key = 'sk_test_' . join('', map { sprintf '%02x', int(rand(256)) } 1 .. 12);
my $mock = WithdrawalMock->new(api_key => $key, name => 'mock_021');
like($mock->url, qr{^http://127\.0\.0\.1:\d+$}, 'mock listens on loopback');

my $json = JSON::PP->new->utf8->canonical;
# no keep-alive: a reset must not be retried behind our back on a reused
# connection, so that every request counted here is one the mock saw
my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 30);
my $sent = 0;			# requests to processor routes, for the stats check
my %paid;				# keys that must have exactly one effective payout

sub decode_or_undef
{
	my ($text) = @_;
	my $v = eval { $json->decode($text) };
	return $v;
}

# payout(id, amount, key => K, auth => A, body => B, client => C)
sub payout
{
	my ($id, $amount, %o) = @_;
	my $body = $o{body} // $json->encode(
		{
			id => $id,
			account_id => 'acct1',
			amount => $amount,
			currency => 'USD',
			channel => 'bank',
			destination => { iban => 'DE89370400440532013000' },
		});
	my %h = ('Content-Type' => 'application/json');
	$h{Authorization} = $o{auth} // "Bearer $key";
	delete $h{Authorization} if defined $o{auth} && $o{auth} eq '';
	$h{'Idempotency-Key'} = $o{key} // $id unless defined $o{key} && $o{key} eq '';
	$sent++;
	my $res = ($o{client} // $http)
	  ->request('POST', $mock->url . '/payouts', { headers => \%h, content => $body });
	$res->{json} = decode_or_undef($res->{content});
	return $res;
}

sub get_payout
{
	my ($id) = @_;
	$sent++;
	my $res = $http->request('GET', $mock->url . "/payouts/$id",
		{ headers => { Authorization => "Bearer $key" } });
	$res->{json} = decode_or_undef($res->{content});
	return $res;
}

sub stripe
{
	my ($method, $path, $form, $idem) = @_;
	my %h = (Authorization => "Bearer $key");
	$h{'Idempotency-Key'} = $idem if defined $idem;
	my %args = (headers => \%h);
	if ($form)
	{
		$h{'Content-Type'} = 'application/x-www-form-urlencoded';
		$args{content} = $http->www_form_urlencode($form);
	}
	$sent++;
	my $res = $http->request($method, $mock->url . $path, \%args);
	$res->{json} = decode_or_undef($res->{content});
	return $res;
}

# the last logged request, which must be the one just made
sub last_logged
{
	my $log = $mock->requests(since => $sent - 1);
	return $log->[-1];
}

# ---- happy path and idempotency (http protocol) ----

my $r1 = payout('w-happy', 1000);
is($r1->{status}, 200, 'payout accepted');
is($r1->{json}{payout_id}, 'w-happy', 'answer names the withdrawal');
is($r1->{json}{status}, 'paid', 'default status is paid');
like($r1->{json}{id}, qr/^po_/, 'processor reference');
$paid{'w-happy'} = 1;

my $r2 = payout('w-happy', 1000);
is($r2->{status}, 200, 'same key, same body: accepted again');
is($r2->{content}, $r1->{content}, 'same key, same body: the first response');
is($r2->{headers}{'idempotent-replayed'}, 'true', 'replay is flagged');
ok(last_logged()->{replayed}, 'replay logged as such');

# the same parameters in another key order are the same request
my $r2b = payout('w-happy', 1000,
	body => '{"destination":{"iban":"DE89370400440532013000"},"currency":"USD","channel":"bank",'
	  . '"amount":1000,"account_id":"acct1","id":"w-happy"}');
is($r2b->{content}, $r1->{content}, 'same parameters in another order: replayed');

my $r3 = payout('w-happy', 1001);
is($r3->{status}, 422, 'same key, different amount: 422');
is($r3->{json}{error}{code}, 'idempotency_mismatch', 'mismatch error code');

my $st = $mock->stats;
is($st->{keys}{'w-happy'}, 1, 'one effective payout for the key after replays');
is($st->{effective_payouts}, 1, 'one effective payout in all');
is($st->{replays}, 2, 'replays counted');
is($st->{mismatches}, 1, 'mismatch counted');

my $g = get_payout('w-happy');
is($g->{status}, 200, 'status query finds the payout');
is($g->{json}{status}, 'paid', 'status query reports paid');
is($g->{json}{id}, $r1->{json}{id}, 'status query by withdrawal id');
is(get_payout($r1->{json}{id})->{json}{payout_id}, 'w-happy', 'status query by processor reference');
my $g404 = get_payout('w-never-sent');
is($g404->{status}, 404, 'unknown payout: 404');
is($g404->{json}{error}{code}, 'not_found', '404 error shape');

# ---- authentication and validation ----

is(payout('w-auth', 100, auth => '')->{status}, 401, 'no bearer token: 401');
is(payout('w-auth', 100, auth => 'Bearer wrong')->{status}, 401, 'wrong bearer token: 401');
is(payout('w-nokey', 100, key => '')->{status}, 400, 'no idempotency key: 400');
is(payout('w-badjson', 100, body => '{"id": "w-badjson", amount: ')->{status}, 400, 'malformed request body: 400');
is(payout('w-zero', 0)->{status}, 400, 'zero amount: 400');
is(get_payout('w-auth')->{status}, 404, 'refused requests record nothing');

ok(!eval { $mock->set_faults([ { fault => 'nonsense' } ]); 1 }, 'unknown fault rejected');
like($@, qr/unknown fault/, 'unknown fault: clear error');

# ---- faults before anything is recorded ----

$mock->set_faults([ { fault => '500', times => 2 } ]);
my $f = payout('w-500', 500);
is($f->{status}, 500, 'fault 500');
is($f->{json}{error}{code}, 'processor_unavailable', '500 error shape');
is(payout('w-500', 500)->{status}, 500, 'fault 500 again (times => 2)');
my $f3 = payout('w-500', 500);
is($f3->{status}, 200, 'rule exhausted: accepted');
ok(!$f3->{headers}{'idempotent-replayed'}, 'the 5xx answers recorded nothing');
my ($rule) = @{ $mock->faults };
is_deeply([ $rule->{times}, $rule->{applied} ], [ 0, 2 ], 'rule counts');
$paid{'w-500'} = 1;

$mock->set_faults([ { fault => '503' } ]);
is(payout('w-503', 503)->{status}, 503, 'fault 503 (unlimited)');
is(payout('w-503', 503)->{status}, 503, 'fault 503 still');
$mock->set_faults([]);
is(payout('w-503', 503)->{status}, 200, 'rules cleared: accepted');
$paid{'w-503'} = 1;

$mock->set_faults([ { fault => '429', retry_after => 7, times => 1 } ]);
my $f429 = payout('w-429', 429);
is($f429->{status}, 429, 'fault 429');
is($f429->{headers}{'retry-after'}, '7', '429 carries Retry-After');
is(payout('w-429', 429)->{status}, 200, 'after the 429: accepted');
$paid{'w-429'} = 1;

# only payouts of the named amount
$mock->set_faults([ { fault => '503', amount => 1313 } ]);
is(payout('w-amt-ok', 1312)->{status}, 200, 'amount filter: other amounts pass');
is(payout('w-amt', 1313)->{status}, 503, 'amount filter: the named amount fails');
$paid{'w-amt-ok'} = 1;

# GET rules leave POSTs alone
$mock->set_faults([ { fault => '503', method => 'GET' } ]);
is(get_payout('w-amt-ok')->{status}, 503, 'GET rule applies to status queries');
is(payout('w-get-rule', 100)->{status}, 200, 'GET rule leaves payouts alone');
$paid{'w-get-rule'} = 1;

# hang: never answers; the client's timeout ends it
my $short = HTTP::Tiny->new(keep_alive => 0, timeout => 1);
$mock->set_faults([ { fault => 'hang', times => 1 } ]);
my $fh = payout('w-hang', 100, client => $short);
is($fh->{status}, 599, 'hang: the client times out');
like($fh->{content}, qr/timed out/i, 'hang: a timeout, not an answer');
is(last_logged()->{status}, 'hang', 'hang logged');
is(get_payout('w-hang')->{status}, 404, 'hang: nothing recorded');

$mock->set_faults([ { fault => 'reset', times => 1 } ]);
my $fr = payout('w-reset', 100);
is($fr->{status}, 599, 'reset: no HTTP answer');
is(last_logged()->{status}, 'reset', 'reset logged');
is(get_payout('w-reset')->{status}, 404, 'reset: nothing recorded');

# ---- the processor paid but the answer was lost ----

for my $case (
	[ 'malformed', 200 ], [ 'truncated', 200 ], [ 'reset-after', 599 ],
	[ 'hang-after', 599 ], [ '502-after', 502 ])
{
	my ($fault, $code) = @$case;
	my $id = "w-$fault";
	$mock->set_faults([ { fault => $fault, times => 1 } ]);
	my $lost = payout($id, 700, client => $short);
	is($lost->{status}, $code, "$fault: answer status $code");
	ok(!defined $lost->{json} || $code != 200, "$fault: the answer is not usable JSON")
	  if $code == 200;
	is(get_payout($id)->{json}{status}, 'paid', "$fault: but the payout was recorded");
	my $again = payout($id, 700);
	is($again->{status}, 200, "$fault: resend with the same key is accepted");
	is($again->{headers}{'idempotent-replayed'}, 'true', "$fault: resend is a replay");
	is($mock->stats->{keys}{$id}, 1, "$fault: one effective payout");
	if ($fault eq 'truncated')
	{
		ok(length $lost->{content} > 0
			  && index($again->{content}, $lost->{content}) == 0
			  && length $lost->{content} < length $again->{content},
			'truncated: a prefix of the real answer');
	}
	$paid{$id} = 1;
}

# ---- decisions: reject, failed, pending ----

$mock->set_faults([ { fault => 'reject', times => 1 } ]);
my $rej = payout('w-reject', 100);
is($rej->{status}, 400, 'reject: 400');
is($rej->{json}{error}{code}, 'account_closed', 'reject: error code');
my $rej2 = payout('w-reject', 100);
is($rej2->{content}, $rej->{content}, 'reject: the decision is replayed');
is($rej2->{status}, 400, 'reject: replayed status');
is(get_payout('w-reject')->{json}{status}, 'failed', 'reject: status query says failed');

$mock->set_faults([ { fault => 'reject', status => 403, code => 'kyc_required', times => 1 } ]);
my $rej3 = payout('w-reject-403', 100);
is($rej3->{status}, 403, 'reject with a chosen status');
is($rej3->{json}{error}{code}, 'kyc_required', 'reject with a chosen code');

$mock->set_faults([ { fault => 'failed', times => 1 } ]);
my $fl = payout('w-failed', 100);
is($fl->{status}, 200, 'failed: 200');
is($fl->{json}{status}, 'failed', 'failed: status failed in the answer');

$mock->set_faults([ { fault => 'pending', times => 1 } ]);
my $pe = payout('w-pending', 100);
is($pe->{json}{status}, 'pending', 'pending: status pending in the answer');
is(get_payout('w-pending')->{json}{status}, 'pending', 'pending: status query says pending');
$mock->settle('w-pending', 'paid');
is(get_payout('w-pending')->{json}{status}, 'paid', 'settled: status query says paid');
is(payout('w-pending', 100)->{content}, $pe->{content}, 'settled: a resend still replays the first answer');
$paid{'w-pending'} = 1;

$st = $mock->stats;
is($st->{keys}{'w-reject'}, 0, 'a rejected payout is not effective');
is($st->{keys}{'w-failed'}, 0, 'a failed payout is not effective');

# ---- slow: a key in progress answers 409 ----

$mock->set_faults([ { fault => 'slow', delay_ms => 600000, times => 1 } ]);
my $slow_body = $json->encode({ id => 'w-slow', amount => 900, currency => 'USD' });
my $sock = IO::Socket::INET->new(
	PeerAddr => '127.0.0.1',
	PeerPort => $mock->port,
	Proto => 'tcp') or die "connect: $!";
$sent++;
print $sock "POST /payouts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer $key\r\n"
  . "Idempotency-Key: w-slow\r\nContent-Type: application/json\r\n"
  . "Content-Length: " . length($slow_body) . "\r\nConnection: close\r\n\r\n$slow_body";
ok($mock->poll_until(sub { $mock->stats(keys => 0)->{held} == 1 }), 'slow: the request is held');
my $busy = payout('w-slow', 900, body => $slow_body);
is($busy->{status}, 409, 'same key while the first is in progress: 409');
is($busy->{json}{error}{code}, 'idempotency_in_progress', '409 error code');
is($mock->release, 1, 'release answers the held request');
my $slow_answer = do { local $/; <$sock> };
close $sock;
like($slow_answer, qr{^HTTP/1\.1 200 }, 'slow: the held request is then accepted');
like($slow_answer, qr/"payout_id":"w-slow"/, 'slow: with its payout');
is(payout('w-slow', 900, body => $slow_body)->{status}, 200, 'after it: replayed');
is($mock->stats->{keys}{'w-slow'}, 1, 'slow: one effective payout');
$paid{'w-slow'} = 1;

# a short delay passes by itself
$mock->set_faults([ { fault => 'slow', delay_ms => 50, times => 1 } ]);
is(payout('w-slow-50', 100)->{status}, 200, 'slow with a short delay: accepted');
is(last_logged()->{fault}, 'slow', 'slow logged');
$paid{'w-slow-50'} = 1;

# ---- Stripe's shape ----

my %tr = (
	amount => 2500,
	currency => 'usd',
	destination => 'acct_1Abc',
	'metadata[withdrawal_id]' => 'w-stripe',
	transfer_group => 'w-stripe');
my $s1 = stripe('POST', '/v1/transfers', \%tr, 'w-stripe');
is($s1->{status}, 200, 'stripe: transfer created');
is($s1->{json}{object}, 'transfer', 'stripe: a transfer object');
like($s1->{json}{id}, qr/^tr_/, 'stripe: tr_ id');
is($s1->{json}{metadata}{withdrawal_id}, 'w-stripe', 'stripe: metadata kept');
my $s2 = stripe('POST', '/v1/transfers', \%tr, 'w-stripe');
is($s2->{content}, $s1->{content}, 'stripe: same key, same params: the first response');
is($s2->{headers}{'idempotent-replayed'}, 'true', 'stripe: replay flagged');
my $s3 = stripe('POST', '/v1/transfers', { %tr, amount => 2501 }, 'w-stripe');
is($s3->{status}, 400, 'stripe: same key, other params: 400');
is($s3->{json}{error}{type}, 'idempotency_error', 'stripe: idempotency_error');
is(stripe('GET', "/v1/transfers/$s1->{json}{id}")->{json}{id}, $s1->{json}{id}, 'stripe: GET transfer');
my $s404 = stripe('GET', '/v1/transfers/tr_nope');
is($s404->{status}, 404, 'stripe: unknown transfer 404');
is($s404->{json}{error}{code}, 'resource_missing', 'stripe: resource_missing');
my $smiss = stripe('POST', '/v1/transfers', { amount => 5, currency => 'usd' }, 'w-stripe-miss');
is($smiss->{status}, 400, 'stripe: missing destination 400');
is($smiss->{json}{error}{code}, 'parameter_missing', 'stripe: parameter_missing');
$paid{'w-stripe'} = 1;

$mock->set_faults([ { fault => '503', protocol => 'stripe', times => 1 }, { fault => '429', protocol => 'stripe', times => 1 } ]);
is(payout('w-http-untouched', 100)->{status}, 200, 'stripe-only rules leave http alone');
$paid{'w-http-untouched'} = 1;
my %tr2 = (%tr, 'metadata[withdrawal_id]' => 'w-stripe2', transfer_group => 'w-stripe2');
my $s5 = stripe('POST', '/v1/transfers', \%tr2, 'w-stripe2');
is($s5->{status}, 503, 'stripe: 503');
is($s5->{json}{error}{type}, 'api_error', 'stripe: api_error');
my $s6 = stripe('POST', '/v1/transfers', \%tr2, 'w-stripe2');
is($s6->{json}{error}{type}, 'rate_limit_error', 'stripe: rate_limit_error');
$mock->set_faults([ { fault => 'reject', protocol => 'stripe', times => 1 } ]);
my $s7 = stripe('POST', '/v1/transfers', \%tr2, 'w-stripe2');
is($s7->{status}, 400, 'stripe: rejection 400');
is($s7->{json}{error}{type}, 'invalid_request_error', 'stripe: invalid_request_error');

# ---- counters and the request log ----

$st = $mock->stats;
is($st->{requests}, $sent, 'every request counted');
is($st->{effective_payouts}, scalar(keys %paid), 'effective payouts as expected');
is($st->{max_effective_per_key}, 1, 'never two payouts for a key');
is($st->{max_effective_per_withdrawal}, 1, 'never two payouts for a withdrawal');
is_deeply([ sort grep { $st->{keys}{$_} } keys %{ $st->{keys} } ], [ sort keys %paid ],
	'exactly the expected keys were paid');
is($st->{unauthorized}, 2, 'unauthorized requests counted');
is($st->{conflicts}, 1, '409 counted');
ok($st->{by_status}{503} >= 3, 'answers counted by status');

my $log = $mock->requests;
is(scalar @$log, $sent, 'every request logged');
my ($first) = grep { $_->{key} && $_->{key} eq 'w-happy' } @$log;
is_deeply([ @{$first}{qw(method path amount status replayed)} ],
	[ 'POST', '/payouts', 1000, 200, JSON::PP::false ], 'log entry fields');
is(scalar @{ $mock->requests(since => 2, limit => 3) }, 3, 'log paging');

$mock->reset;
$st = $mock->stats;
is($st->{requests}, 0, 'reset: counters cleared');
is($st->{effective_payouts}, 0, 'reset: payouts forgotten');
is(scalar @{ $mock->faults }, 0, 'reset: rules cleared');
is(get_payout('w-happy')->{status}, 404, 'reset: payouts gone');

# ---- the processor's truth, and what it may do to a payout later ----

sub truth_of { return $mock->truth->{withdrawals}{ $_[0] } }

# a raw request whose answer the mock holds (slow) or never sends (hang-after)
sub held_request
{
	my ($id, $amount) = @_;
	my $body = $json->encode({ id => $id, amount => $amount, currency => 'USD' });
	my $sock = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $mock->port,
		Proto => 'tcp') or die "connect: $!";
	print $sock "POST /payouts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer $key\r\n"
	  . "Idempotency-Key: $id\r\nContent-Type: application/json\r\n"
	  . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
	return $sock;
}

is_deeply($mock->truth, { in_flight => 0, held => 0, hung => 0, withdrawals => {} },
	'truth: nothing after a reset');

$mock->set_faults([ { fault => 'pending', times => 2 } ]);
payout('t-pending', 100);
payout('t-pending2', 100);
is_deeply(truth_of('t-pending'),
	{ effective => 1, status => 'pending', returned => JSON::PP::false, busy => JSON::PP::false,
	  entries => 1, ref => get_payout('t-pending')->{json}{id}, amount => 100, protocol => 'http' },
	'truth: a pending payout is effective (it may still be paid)');
is($mock->settle('t-pending', 'failed', 'insufficient_funds')->{status}, 'failed', 'settle: pending -> failed');
is(truth_of('t-pending')->{effective}, 0, 'truth: a pending payout that failed is not effective');
is(get_payout('t-pending')->{json}{failure_code}, 'insufficient_funds', 'settle: failure code kept');
$st = $mock->stats;
is($st->{keys}{'t-pending'}, 0, 'stats: the failed payout no longer counts for its key');
is($st->{effective_payouts}, 1, 'stats: effective payouts decreased');
ok(!eval { $mock->settle('t-pending', 'paid'); 1 }, 'settle: failed -> paid refused');
like($@, qr/400.*a payout cannot go from failed to paid/, 'settle: refused with 400 invalid_transition');
is($mock->settle('t-pending2', 'paid')->{status}, 'paid', 'settle: pending -> paid');
is($mock->settle('t-pending2', 'paid')->{status}, 'paid', 'settle: to the current status is a no-op');
ok(!eval { $mock->settle('t-pending2', 'failed'); 1 }, 'settle: paid -> failed refused (a processor never un-pays)');
ok(!eval { $mock->settle('t-pending2', 'pending'); 1 }, 'settle: paid -> pending refused');
is(truth_of('t-pending2')->{effective}, 1, 'truth: a refused change changes nothing');

payout('t-paid', 300);
is($mock->settle('t-paid', 'returned')->{status}, 'returned', 'settle: paid -> returned');
is_deeply([ @{ truth_of('t-paid') }{qw(effective status returned)} ], [ 1, 'returned', JSON::PP::true ],
	'truth: a returned payout stays effective (the money did leave)');
is(get_payout('t-paid')->{json}{status}, 'returned', 'status query: returned');
ok(!eval { $mock->settle('t-paid', 'paid'); 1 }, 'settle: returned -> paid refused');

my $tr = stripe('POST', '/v1/transfers', { %tr, 'metadata[withdrawal_id]' => 't-stripe', transfer_group => 't-stripe' }, 't-stripe');
$mock->settle('t-stripe', 'returned');
my $reversed = stripe('GET', "/v1/transfers/$tr->{json}{id}")->{json};
is_deeply([ @{$reversed}{qw(reversed amount_reversed)} ], [ JSON::PP::true, 2500 ], 'stripe: a returned transfer is reversed');

payout('t-twice', 400, key => 't-twice-a');
payout('t-twice', 400, key => 't-twice-b');
is_deeply([ @{ truth_of('t-twice') }{qw(effective entries)} ], [ 2, 2 ],
	'truth: two keys for one withdrawal are two effective payouts');
is_deeply([ sort keys %{ $mock->truth(status => [ 'returned', 'failed' ])->{withdrawals} } ],
	[ 't-paid', 't-pending', 't-stripe' ], 'truth: only the withdrawals with the statuses asked for');
is_deeply([ sort keys %{ $mock->truth(ids => [ 't-paid', 't-twice', 't-unknown' ], status => ['returned'])->{withdrawals} } ],
	['t-paid'], 'truth: only the withdrawals asked for');

$mock->set_faults([ { fault => 'slow', delay_ms => 600000, times => 1 } ]);
my $slow_sock = held_request('t-slow', 500);
ok($mock->poll_until(sub { $mock->truth->{held} == 1 }), 'truth: a held request is counted');
ok(truth_of('t-slow')->{busy}, 'truth: the withdrawal of a held request is busy');
$mock->release;
{ local $/; <$slow_sock>; }
close $slow_sock;
ok($mock->poll_until(sub { !truth_of('t-slow')->{busy} && $mock->truth->{in_flight} == 0 }),
	'truth: released and answered, not busy any more');

$mock->set_faults([ { fault => 'hang-after', times => 1 } ]);
my $hung_sock = held_request('t-hang', 600);
ok($mock->poll_until(sub { $mock->truth->{hung} == 1 }), 'truth: a hung request is counted');
ok(truth_of('t-hang')->{busy}, 'truth: the withdrawal of a hung request is busy');
is(truth_of('t-hang')->{effective}, 1, 'truth: paid although the answer hangs');
close $hung_sock;
ok($mock->poll_until(sub { $mock->truth->{hung} == 0 && !truth_of('t-hang')->{busy} }),
	'truth: the client gave up, not busy any more');
$mock->set_faults([]);

# ---- a second instance with pending as default, then stop ----

my $mock2 = WithdrawalMock->new(status => 'pending', name => 'mock_021_pending');
isnt($mock2->port, $mock->port, 'second instance on its own port');
my $p = $http->request('POST', $mock2->url . '/payouts',
	{
		headers => { 'Idempotency-Key' => 'p1', 'Content-Type' => 'application/json' },
		content => '{"id":"p1","amount":10,"currency":"EUR"}'
	});
is($json->decode($p->{content})->{status}, 'pending', '--status pending: new payouts pending');
my $url2 = $mock2->url;
$mock2->stop;
is($http->get("$url2/_control/stats")->{status}, 599, 'stopped: nothing listens');

$mock->stop;
done_testing();
