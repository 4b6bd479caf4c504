# The paypal driver (PayPal Payouts, one item per batch) against the mock
# processor, judged by what the mock really paid: the driver was added as
# docs/processors.md "Adding a driver" says (one file, one registry line,
# one CHECK value), and the generic code did not change for it.  Happy
# path with major units and JPY, the decline table, a denied item, an
# error that means the payout may exist, faults before and after the
# payout was made, "in progress", a pending payout settled by the status
# query, and the payouts that are never sent (no paypal_email, a currency
# PayPal counts differently than ISO).
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use JSON::PP;
use Test::More;
use WithdrawalBooks;
use WithdrawalDispatchTest;
use WithdrawalMock;

my $mock = WithdrawalMock->new(api_key => 'paypal_token_0123456789');
my $node = dispatch_node('paypal', $mock, conf => qq{
withdrawal.max_attempts = 6
withdrawal.max_busy_answers = 5
withdrawal.poll_after = '1s'
withdrawal.sweep_interval = '1s'
});
use_secrets($node, paypal_token => 'paypal_token_0123456789');
$node->safe_psql('postgres', qq{
	INSERT INTO withdrawal.processor (name, driver, base_url, api_secret, request_timeout_ms)
		VALUES ('mockpaypal', 'paypal', '$mock->{url}', 'paypal_token', 700);
	INSERT INTO withdrawal.channel (name, processor) VALUES ('paypal', 'mockpaypal');
	SELECT withdrawal.credit('acct1', c, 100000000, 'fund-' || c) FROM unnest(ARRAY['JPY', 'HUF']) c;
	CREATE TABLE w (label text PRIMARY KEY, id uuid);
	CREATE FUNCTION req(label text, amount bigint, currency text DEFAULT 'USD',
						dest jsonb DEFAULT '{"paypal_email": "payee\@example.com"}') RETURNS uuid
		LANGUAGE sql AS \$\$
		INSERT INTO w SELECT label, withdrawal_id
		  FROM withdrawal.request('acct1', currency, amount, 'paypal', dest, label) RETURNING id \$\$;
	CREATE FUNCTION row_of(lbl text) RETURNS withdrawal.withdrawal LANGUAGE sql AS \$\$
		SELECT x FROM withdrawal.withdrawal x JOIN w ON w.id = x.withdrawal_id WHERE w.label = lbl \$\$;
});
is($node->safe_psql('postgres', q{SELECT network AND bulk_submit AND NOT settles_by_itself
	FROM withdrawal.drivers() WHERE name = 'paypal'}), 't', 'the registry lists paypal as a network driver');

sub wait_status
{
	my ($label, $status) = @_;
	my $ok = $node->poll_query_until('postgres', "SELECT (row_of('$label')).status", $status);
	ok($ok, "$label: $status") or diag($node->safe_psql('postgres',
		"SELECT status, attempts, last_error FROM row_of('$label')"));
}

sub col
{
	my ($label, $expr) = @_;
	return $node->safe_psql('postgres', "SELECT $expr FROM row_of('$label')");
}

sub truth_of
{
	my ($label) = @_;
	my $id = $node->safe_psql('postgres', "SELECT id FROM w WHERE label = '$label'");
	return $mock->get("/_control/truth?ids=$id")->{withdrawals}{$id}
	  // { effective => 0, entries => 0 };
}

sub requests_of
{
	my ($label) = @_;
	my $id = $node->safe_psql('postgres', "SELECT id FROM w WHERE label = '$label'");
	return grep { ($_->{withdrawal_id} // '') eq $id } @{ $mock->get('/_control/requests') };
}

$mock->post('/_control/faults', { rules => [
	{ fault => 'reject', status => 422, code => 'INSUFFICIENT_FUNDS', amount => 5002, protocol => 'paypal' },
	{ fault => 'failed', code => 'RECEIVER_UNREGISTERED', amount => 5003, protocol => 'paypal' },
	{ fault => 'reject', status => 400, code => 'USER_BUSINESS_ERROR', amount => 5004, protocol => 'paypal' },
	{ fault => '500', amount => 5005, times => 2, protocol => 'paypal' },
	{ fault => '502-after', amount => 5006, times => 1, protocol => 'paypal' },
	{ fault => 'in-progress', amount => 5007, times => 2, protocol => 'paypal' },
	{ fault => 'pending', amount => 5009, protocol => 'paypal' },
	{ fault => 'reject', status => 400, code => 'SOMETHING_NEW', amount => 5010, protocol => 'paypal' },
	# status queries of paypal payouts say "pending" until the test settles them
] });
$node->safe_psql('postgres', q{
	SELECT req('ok', 5000), req('jpy', 1234, 'JPY'), req('declined', 5002), req('item_failed', 5003),
	       req('business_error', 5004), req('two_500', 5005), req('lost_answer', 5006),
	       req('busy', 5007), req('pending', 5009), req('unknown_name', 5010),
	       req('no_email', 5011, 'USD', '{"iban": "DE00"}'), req('huf', 5012, 'HUF');
});

# Paid at once, in major units, with the withdrawal id as PayPal-Request-Id
# and sender_batch_id.
wait_status('ok', 'paid');
like(col('ok', 'processor_ref'), qr/^po_/, 'payout_batch_id stored as processor_ref');
is(truth_of('ok')->{amount}, 5000, 'USD 5000 minor units sent as "50.00"');
is(join(' ', map { "$_->{method} $_->{path} " . ($_->{key} eq col('ok', 'withdrawal_id') ? 'key' : 'other') }
	requests_of('ok')), 'POST /v1/payments/payouts key', 'one POST, keyed by the withdrawal id');
wait_status('jpy', 'paid');
is(truth_of('jpy')->{amount}, 1234, 'JPY 1234 sent as "1234"');

# The decline table, and PayPal's own final word on the item.
wait_status('declined', 'failed');
is(col('declined', q{refund_proof || ' ' || last_error}), 'declined HTTP 422: INSUFFICIENT_FUNDS: the payout was declined by the processor',
	'INSUFFICIENT_FUNDS: declined, refunded');
wait_status('item_failed', 'failed');
is(truth_of('item_failed')->{effective}, 0, 'item FAILED: nothing paid, refunded');
wait_status('business_error', 'dead');
like(col('business_error', 'last_error'), qr/USER_BUSINESS_ERROR.*a payout may exist/,
	'USER_BUSINESS_ERROR is no decline: held for an operator');
wait_status('unknown_name', 'dead');
is(col('unknown_name', 'attempts'), '6', 'an error name outside the table: retried to max_attempts, held');

# Faults: before the payout (retried, same id), after it (the resend gets
# the first answer), and "in progress" (asked again, not an attempt).
wait_status('two_500', 'paid');
is(truth_of('two_500')->{effective}, 1, 'two 500s, then paid once');
wait_status('lost_answer', 'paid');
is(truth_of('lost_answer')->{effective}, 1, 'paid, answer lost, resent with the same PayPal-Request-Id: paid once');
wait_status('busy', 'paid');
is(col('busy', 'attempts'), '1', 'REQUEST_IN_PROGRESS twice: asked again, one attempt');

# Pending: submitted, then the status query (GET by payout_batch_id) finds
# it paid once the processor has paid it.
wait_status('pending', 'submitted');
my $pending_ref = col('pending', 'processor_ref');
wait_for('a status query of the pending payout', sub {
	grep { $_->{method} eq 'GET' && $_->{path} eq "/v1/payments/payouts/$pending_ref" }
	  @{ $mock->get('/_control/requests') } });
is(col('pending', 'status'), 'submitted', 'still pending at PayPal: still submitted');
$mock->post('/_control/settle', { id => col('pending', 'withdrawal_id'), status => 'paid' });
wait_status('pending', 'paid');
like(col('pending', q{(SELECT string_agg(action, ' ' ORDER BY audit_id) FROM withdrawal.audit_log a
	WHERE a.withdrawal_id = (row_of('pending')).withdrawal_id)}), qr/dispatch_query_paid$/,
	'paid by the status query');

# Never sent: the driver cannot build the payout, and says why.
wait_status('no_email', 'dead');
like(col('no_email', 'last_error'), qr/^destination has no paypal_email; nothing was sent/, 'no paypal_email: held, not sent');
wait_status('huf', 'dead');
like(col('huf', 'last_error'), qr/^currency HUF is not paid through PayPal/, 'HUF (no decimals at PayPal): held, not sent');
is(scalar(requests_of('no_email')) + scalar(requests_of('huf')), 0, 'neither reached the processor');

$mock->post('/_control/faults', { rules => [] });
wait_all_settled($node, 'paypal');
no_double_payout($node, $mock, 'paypal');
books_match_processor($node, $mock, 'paypal', settled => 1);

$node->stop;
ok(!$node->log_contains('paypal_token_0123456789'), 'the access token is nowhere in the server log');
ok(!$node->log_contains('TRAP:'), 'no assertion failure');
$mock->stop;
done_testing();
