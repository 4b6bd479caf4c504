# Webhook interoperability: payloads signed by the processors' own
# published SDKs (Stripe's webhooks.generateTestHeaderString, Standard
# Webhooks' Webhook.sign; node:crypto for the http driver's hmac-sha256
# scheme, which has no SDK) must verify in receive_webhook(), and every
# tampered variant (a body byte, the timestamp, the secret, the signature,
# an old timestamp) must fail with WD008 and store nothing.  Then a
# rotation of each processor's secret, with SDK-signed deliveries before,
# during and after it: none refused until the previous secret expires, and
# Svix's header names for the standard scheme.
use strict;
use warnings FATAL => 'all';

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IPC::Run;
use JSON::PP;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $signer = abs_path(dirname(__FILE__) . '/../interop/sign.js');
my $json = JSON::PP->new->canonical;

# Secrets, in a file the server accepts (owned by us, mode 0600).
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $secrets_file = "$tmp/secrets";
my $std_key = join('', map { chr(int(rand(256))) } 1 .. 32);
my %secret = (
	stripe => 'whsec_' . join('', map { ('a' .. 'z', 0 .. 9)[ int(rand(36)) ] } 1 .. 32),
	standard => 'whsec_' . encode_base64($std_key, ''),
	'hmac-sha256' => 'interop-' . join('', map { ('a' .. 'z')[ int(rand(26)) ] } 1 .. 24),
);
# the secrets each processor rotates to
my %new_secret = (
	stripe => 'whsec_' . join('', map { ('a' .. 'z', 0 .. 9)[ int(rand(36)) ] } 1 .. 32),
	standard => 'whsec_' . encode_base64(join('', map { chr(int(rand(256))) } 1 .. 32), ''),
	'hmac-sha256' => 'interop-' . join('', map { ('a' .. 'z')[ int(rand(26)) ] } 1 .. 24),
);
open(my $fh, '>', $secrets_file) or die "could not write $secrets_file: $!";
print $fh "interop_stripe = $secret{stripe}\n";
print $fh "interop_standard = $secret{standard}\n";
print $fh "interop_http = $secret{'hmac-sha256'}\n";
print $fh "interop_stripe_new = $new_secret{stripe}\n";
print $fh "interop_standard_new = $new_secret{standard}\n";
print $fh "interop_http_new = $new_secret{'hmac-sha256'}\n";
close($fh);
chmod(0600, $secrets_file) or die "could not chmod $secrets_file: $!";

my $node = PostgreSQL::Test::Cluster->new('webhook_interop');
$node->init;
$node->append_conf('postgresql.conf', "withdrawal.secrets_file = '$secrets_file'\n");
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION withdrawal;
	INSERT INTO withdrawal.processor (name, driver, base_url, webhook_secret, webhook_scheme) VALUES
		('stripe_i', 'stripe', 'https://stripe.invalid', 'interop_stripe', 'stripe'),
		('std_i', 'http', 'https://std.invalid', 'interop_standard', 'standard'),
		('http_i', 'http', 'https://http.invalid', 'interop_http', 'hmac-sha256');
	INSERT INTO withdrawal.channel (name, processor) VALUES
		('stripe_i', 'stripe_i'), ('std_i', 'std_i'), ('http_i', 'http_i');
	SELECT withdrawal.credit('carol', 'USD', 100000, 'interop-fund');
	CREATE FUNCTION try_receive(p text, h jsonb, b text) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		RETURN (withdrawal.receive_webhook(p, h, b))::text;
	EXCEPTION WHEN OTHERS THEN
		RETURN SQLSTATE;
	END
	$$;
	CREATE FUNCTION submitted(key text, channel text) RETURNS uuid LANGUAGE plpgsql AS $$
	DECLARE
		id uuid;
	BEGIN
		SELECT withdrawal_id INTO id FROM withdrawal.request('carol', 'USD', 1234, channel, '{"acct": "x"}', key);
		PERFORM withdrawal.transition(id, 'dispatching');
		PERFORM withdrawal.transition(id, 'submitted');
		RETURN id;
	END
	$$;
});

# Signs a list of {scheme, secret, body, timestamp, msg_id} with the SDKs.
sub sign_all
{
	my @cases = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'node', $signer ], '<', \$json->encode(\@cases), '>', \$out, '2>', \$err)
	  or die "signer failed: $err";
	return @{ decode_json($out) };
}

sub b64 { return encode_base64($_[0], '') }

# receive_webhook through SQL; the raw body travels base64-encoded so that
# no quoting can alter a byte of it.
sub receive
{
	my ($processor, $headers, $body) = @_;
	my $h = b64($json->encode($headers));
	my $b = b64($body);
	return $node->safe_psql('postgres',
		"SELECT try_receive('$processor', convert_from(decode('$h', 'base64'), 'UTF8')::jsonb,"
		  . " convert_from(decode('$b', 'base64'), 'UTF8'))");
}

sub events { return $node->safe_psql('postgres', 'SELECT count(*) FROM withdrawal.webhook_event') }

# Changes one character of a signature value (keeps its alphabet).
sub flip
{
	my ($sig) = @_;
	my $i = length($sig) - 3;
	my $c = substr($sig, $i, 1);
	substr($sig, $i, 1) = ($c eq 'a' ? 'b' : 'a');
	return $sig;
}

my %processor = (stripe => 'stripe_i', standard => 'std_i', 'hmac-sha256' => 'http_i');
my %sig_header = (
	stripe => 'Stripe-Signature',
	standard => 'webhook-signature',
	'hmac-sha256' => 'X-Withdrawal-Signature');
my %ts_header = (standard => 'webhook-timestamp', 'hmac-sha256' => 'X-Withdrawal-Timestamp');

for my $scheme ('stripe', 'standard', 'hmac-sha256')
{
	my $proc = $processor{$scheme};
	my $wid = $node->safe_psql('postgres', "SELECT submitted('interop-$scheme', '$proc')");
	my $body =
	  $scheme eq 'stripe'
	  ? $json->encode({ id => "evt_interop_1", object => 'event', type => 'transfer.paid',
			data => { object => { id => 'tr_interop_1', object => 'transfer', amount => 1234,
					currency => 'usd', metadata => { withdrawal_id => $wid } } } })
	  : $json->encode({ id => "evt_$scheme", type => 'payout.paid',
			data => { id => "ref_$scheme", payout_id => $wid, amount => 1234, currency => 'USD' } });
	my $now = time();
	my %base = (scheme => $scheme, body => $body, msg_id => "msg_$scheme", timestamp => $now);
	my $other_secret =
	  $scheme eq 'standard' ? 'whsec_' . b64('another key of 32 bytes.........')
	  : $scheme eq 'stripe' ? 'whsec_another' : 'another-secret';

	my ($good, $wrong_secret, $old, $rotated_old) = sign_all(
		{ %base, secret => $secret{$scheme} },
		{ %base, secret => $other_secret },
		{ %base, secret => $secret{$scheme}, timestamp => $now - 3600 },
		{ %base, secret => $other_secret });

	my %tampered;
	$tampered{'a body byte'} = [ $good, ($body =~ s/transfer|payout/Xayout/r) ];
	$tampered{'a body byte at the end'} = [ $good, $body . ' ' ];
	$tampered{'the secret'} = [ $wrong_secret, $body ];
	$tampered{'an old timestamp (SDK-signed)'} = [ $old, $body ];
	{
		my %h = %$good;
		if ($scheme eq 'stripe')
		{
			$h{'Stripe-Signature'} =~ s/t=(\d+)/'t=' . ($1 + 1)/e;
		}
		else
		{
			$h{ $ts_header{$scheme} } = $h{ $ts_header{$scheme} } + 1;
		}
		$tampered{'the timestamp'} = [ \%h, $body ];
	}
	{
		my %h = %$good;
		$h{ $sig_header{$scheme} } = flip($h{ $sig_header{$scheme} });
		$tampered{'the signature'} = [ \%h, $body ];
	}
	{
		my %h = %$good;
		delete $h{ $sig_header{$scheme} };
		$tampered{'no signature header'} = [ \%h, $body ];
	}

	my $before = events();
	for my $what (sort keys %tampered)
	{
		is(receive($proc, @{ $tampered{$what} }), 'WD008', "$scheme: tampered $what is refused with WD008");
	}
	is(events(), $before, "$scheme: refused webhooks store nothing");
	is($node->safe_psql('postgres', "SELECT status FROM withdrawal.withdrawal WHERE withdrawal_id = '$wid'"),
		'submitted', "$scheme: refused webhooks change nothing");

	# Secret rotation: a header carrying a signature by an old secret next
	# to the current one verifies (any v1 may match).
	my %rot = %$rotated_old;
	if ($scheme eq 'stripe')
	{
		my ($v1) = $good->{'Stripe-Signature'} =~ /(v1=[0-9a-f]+)/;
		my ($t) = $good->{'Stripe-Signature'} =~ /t=(\d+)/;
		my ($v1_old) = $rotated_old->{'Stripe-Signature'} =~ /(v1=[0-9a-f]+)/;
		%rot = ('Stripe-Signature' => "t=$t,$v1_old,$v1");
	}
	elsif ($scheme eq 'standard')
	{
		$rot{'webhook-signature'} .= ' ' . $good->{'webhook-signature'};
	}
	else
	{
		$rot{'X-Withdrawal-Signature'} .= ', ' . $good->{'X-Withdrawal-Signature'};
	}

	my $res = receive($proc, \%rot, $body);
	like($res, qr/"result": "applied"/, "$scheme: SDK-signed webhook (with a rotated signature beside it) applies");
	like($res, qr/"status": "paid"/, "$scheme: the withdrawal is paid");
	# header names in another case still verify; the event is a duplicate
	my %lower = map { lc($_) => $good->{$_} } keys %$good;
	like(receive($proc, \%lower, $body), qr/"result": "duplicate"/,
		"$scheme: the same event again, headers in lower case, is a duplicate");
	is(events(), $before + 1, "$scheme: one event stored");
}

# Rotation: the processor keeps signing with the old secret for a while
# after the switch, then only with the new one; no delivery is refused
# until the previous secret expires, and from then on the old one is.
my %file_name = (stripe => 'interop_stripe', standard => 'interop_standard', 'hmac-sha256' => 'interop_http');
for my $scheme ('stripe', 'standard', 'hmac-sha256')
{
	my $proc = $processor{$scheme};
	my $n = 0;
	# an event of a type nothing acts on: verified, kept, changes nothing
	my $deliver = sub {
		my ($secret, $svix) = @_;
		$n++;
		my $body = $json->encode({ id => "evt_rot_$n", object => 'event', type => 'payout.note',
				data => { object => { id => "po_$n", object => 'payout' }, id => "po_$n" } });
		my ($h) = sign_all({ scheme => $scheme, body => $body, msg_id => "msg_rot_$n",
				timestamp => time(), secret => $secret });
		$h = { map { my $k = $_; (($k =~ s/^webhook-/svix-/r) => $h->{$_}) } keys %$h } if $svix;
		my $res = receive($proc, $h, $body);
		return $res =~ /"result": "ignored"/ ? 'verified' : $res;
	};

	is($deliver->($secret{$scheme}), 'verified', "$scheme rotation: before, the old secret verifies");
	$node->safe_psql('postgres', qq{
		UPDATE withdrawal.processor
		   SET webhook_secret = '$file_name{$scheme}_new', webhook_secret_previous = webhook_secret,
		       webhook_secret_previous_expires_at = now() + interval '1 hour'
		 WHERE name = '$proc'});
	is($deliver->($secret{$scheme}), 'verified', "$scheme rotation: during, the old secret verifies");
	is($deliver->($new_secret{$scheme}), 'verified', "$scheme rotation: during, the new secret verifies");
	if ($scheme eq 'standard')
	{
		is($deliver->($new_secret{$scheme}, 1), 'verified', "$scheme rotation: svix-* header names verify");
		is($deliver->($secret{$scheme}, 1), 'verified', "$scheme rotation: svix-* header names, old secret");
	}
	$node->safe_psql('postgres', qq{
		UPDATE withdrawal.processor SET webhook_secret_previous_expires_at = now() - interval '1 second'
		 WHERE name = '$proc'});
	is($deliver->($secret{$scheme}), 'WD008', "$scheme rotation: after the expiry, the old secret is refused");
	is($deliver->($new_secret{$scheme}), 'verified', "$scheme rotation: after the expiry, the new secret verifies");
}

is($node->safe_psql('postgres',
		'SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0'),
	'0', 'books consistent');
my ($available, $held, $paid_out) = split(/\|/,
	$node->safe_psql('postgres', "SELECT * FROM withdrawal.balance('carol', 'USD')"));
is($paid_out, 3 * 1234, 'three payouts settled once each');
is($held, 0, 'nothing left held');

$node->stop;
done_testing();
