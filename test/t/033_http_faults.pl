# The http and stripe drivers against the mock processor: happy paths, then
# one fault class at a time (5xx, 429 with Retry-After, hang past the
# timeout, connection reset, an answer lost after the payout was made, a
# truncated answer, definitive rejections, pending then a status query,
# a status query the processor cannot answer, max attempts and retry()),
# bearer authentication from the secrets file, and the refusal of plain
# http to non-loopback hosts.  Every fault class must end in the right
# status with at most one effective payout per withdrawal.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use JSON::PP;
use Test::More;
use WithdrawalBooks;
use WithdrawalDispatchTest;
use WithdrawalMock;

my $mock = WithdrawalMock->new(api_key => 'sk_test_0123456789abcdef');
my $node = dispatch_node('http_faults', $mock, conf => qq{
withdrawal.max_attempts = 6
withdrawal.max_busy_answers = 5
withdrawal.poll_after = '1s'
withdrawal.sweep_interval = '1s'
});
use_secrets($node, mock_key => 'sk_test_0123456789abcdef');
$node->safe_psql('postgres', q{
	UPDATE withdrawal.processor SET api_secret = 'mock_key', request_timeout_ms = 700;
	CREATE TABLE w (label text PRIMARY KEY, id uuid);
	CREATE FUNCTION req(label text, channel text, amount bigint) RETURNS uuid LANGUAGE sql AS $$
		INSERT INTO w SELECT label, withdrawal_id FROM withdrawal.request('acct1', 'USD', amount, channel,
			CASE WHEN channel = 'stripe' THEN '{"stripe_account": "acct_1"}' ELSE '{"iban": "x"}' END::jsonb,
			label) RETURNING id $$;
	CREATE FUNCTION st(lbl text) RETURNS text LANGUAGE sql AS $$
		SELECT x.status FROM withdrawal.withdrawal x JOIN w ON w.id = x.withdrawal_id WHERE w.label = lbl $$;
});

sub wait_status
{
	my ($label, $status) = @_;
	my $ok = $node->poll_query_until('postgres', "SELECT st('$label')", $status);
	ok($ok, "$label: $status") or diag($node->safe_psql('postgres',
		"SELECT status, attempts, last_error FROM withdrawal.withdrawal x JOIN w ON w.id = x.withdrawal_id WHERE label = '$label'"));
}

sub effective
{
	my ($label) = @_;
	my $id = $node->safe_psql('postgres', "SELECT id FROM w WHERE label = '$label'");
	return $mock->get('/_control/stats')->{withdrawals}{$id} // 0;
}

# Happy paths.
$node->safe_psql('postgres', q{SELECT req('http_ok', 'bank', 1000); SELECT req('stripe_ok', 'stripe', 1001);});
wait_status('http_ok', 'paid');
wait_status('stripe_ok', 'paid');
like($node->safe_psql('postgres', q{SELECT processor_ref FROM withdrawal.withdrawal x JOIN w ON w.id = x.withdrawal_id WHERE label = 'stripe_ok'}),
	qr/^tr_/, 'stripe transfer id stored as processor_ref');
my $log = $mock->get('/_control/requests');
my ($first) = grep { $_->{path} eq '/payouts' } @$log;
my $http_id = $node->safe_psql('postgres', q{SELECT id FROM w WHERE label = 'http_ok'});
is($first->{key}, $http_id, 'the withdrawal id is the Idempotency-Key');
is($mock->get('/_control/stats?keys=0')->{unauthorized}, 0, 'bearer key from the secrets file accepted');

# Faults, one amount each.
$mock->post('/_control/faults', { rules => [
	{ fault => '500', amount => 2001, times => 2 },
	{ fault => '503', amount => 2002, times => 1 },
	{ fault => '429', amount => 2003, times => 1, retry_after => 1 },
	{ fault => 'hang', amount => 2004, times => 1 },
	{ fault => 'reset', amount => 2005, times => 1 },
	{ fault => 'malformed', amount => 2006, times => 1 },
	{ fault => 'truncated', amount => 2007, times => 1 },
	{ fault => 'reject', amount => 2008, status => 400, code => 'account_closed' },
	{ fault => 'failed', amount => 2009 },
	{ fault => 'pending', amount => 2010 },
	{ fault => '500', amount => 2011 },
	{ fault => 'reset-after', amount => 2012, times => 1 },
	{ fault => 'reject', amount => 3001, status => 402, code => 'insufficient_funds', protocol => 'stripe' },
	{ fault => '502-after', amount => 3002, times => 1, protocol => 'stripe' },
	{ fault => 'slow', amount => 2014, times => 1, delay_ms => 800 },
] });
$node->safe_psql('postgres', q{
	SELECT req('500x2', 'bank', 2001), req('503', 'bank', 2002), req('429', 'bank', 2003),
	       req('hang', 'bank', 2004), req('reset', 'bank', 2005), req('malformed', 'bank', 2006),
	       req('truncated', 'bank', 2007), req('reject', 'bank', 2008), req('failed', 'bank', 2009),
	       req('pending', 'bank', 2010), req('always500', 'bank', 2011), req('reset_after', 'bank', 2012),
	       req('stripe_reject', 'stripe', 3001), req('stripe_502_after', 'stripe', 3002),
	       req('slow', 'bank', 2014);
});
$node->safe_psql('postgres', q{
	SELECT withdrawal.request('acct1', 'USD', 3004, 'stripe', '{"iban": "x"}', 'stripe_noacct');
	INSERT INTO w SELECT 'stripe_noacct', withdrawal_id FROM withdrawal.withdrawal WHERE idempotency_key = 'stripe_noacct';
});

wait_status('500x2', 'paid');
is($node->safe_psql('postgres', q{SELECT attempts FROM withdrawal.withdrawal x JOIN w ON w.id = x.withdrawal_id WHERE label = '500x2'}),
	'3', '500 twice: paid at the third attempt');
wait_status('503', 'paid');
wait_status('429', 'paid');
{
	my $id = $node->safe_psql('postgres', q{SELECT id FROM w WHERE label = '429'});
	my @t = map { $_->{t_ms} } grep { ($_->{withdrawal_id} // '') eq $id } @{ $mock->get('/_control/requests') };
	ok(@t >= 2 && $t[1] - $t[0] >= 990, '429: Retry-After (1 s) honoured before the resend')
	  or diag("times: @t");
}
wait_status('hang', 'paid');
wait_status('reset', 'paid');
wait_status('malformed', 'paid');
is(effective('malformed'), 1, 'malformed answer after the payout: resent, replayed, paid once');
wait_status('truncated', 'paid');
is(effective('truncated'), 1, 'truncated answer: paid once');
wait_status('reset_after', 'paid');
is(effective('reset_after'), 1, 'reset after the payout: paid once');
wait_status('slow', 'paid');
is(effective('slow'), 1, 'slow answer (past the timeout, then 409 while busy): paid once');
wait_status('reject', 'failed');
like($node->safe_psql('postgres', q{SELECT last_error FROM withdrawal.withdrawal x JOIN w ON w.id = x.withdrawal_id WHERE label = 'reject'}),
	qr/HTTP 400: account_closed/, 'definitive rejection kept in last_error');
wait_status('failed', 'failed');
wait_status('stripe_reject', 'failed');
wait_status('stripe_502_after', 'paid');
is(effective('stripe_502_after'), 1, 'stripe 502 after the transfer: resent, paid once');
# Nothing can be sent, but an earlier attempt could have been (through
# another configuration): no refund without proof, held for an operator.
wait_status('stripe_noacct', 'dead');
is(effective('stripe_noacct'), 0, 'stripe destination without an account: no request');
like($node->safe_psql('postgres', q{SELECT last_error FROM withdrawal.withdrawal x JOIN w ON w.id = x.withdrawal_id WHERE label = 'stripe_noacct'}),
	qr/destination has no stripe_account/, 'stripe destination without an account: dead, held, said why');
wait_status('always500', 'dead');
like($node->safe_psql('postgres', q{SELECT attempts || ' ' || last_error FROM withdrawal.withdrawal x JOIN w ON w.id = x.withdrawal_id WHERE label = 'always500'}),
	qr/^6 HTTP 500/, 'dead after withdrawal.max_attempts with the last error kept');

# pending, then the status query after poll_after finds it paid.
wait_status('pending', 'submitted');
$mock->post('/_control/settle', { id => $node->safe_psql('postgres', q{SELECT id FROM w WHERE label = 'pending'}), status => 'paid' });
wait_status('pending', 'paid');
ok((grep { $_->{method} eq 'GET' } @{ $mock->get('/_control/requests') }), 'submitted payout was queried with GET');

# Ops retry of the dead one, once the processor is healthy again.
$mock->post('/_control/faults', { rules => [] });
is($node->safe_psql('postgres', q{SELECT withdrawal.retry(id) FROM w WHERE label = 'always500'}), 'queued', 'retry() re-queues a dead payout');
wait_status('always500', 'paid');
my ($rc, $out, $err) = $node->psql('postgres', qq{\\set VERBOSITY verbose\nSELECT withdrawal.retry(id) FROM w WHERE label = 'http_ok'});
like($err, qr/WD005/, 'retry() of a paid payout: WD005') or diag($err);
($rc, $out, $err) = $node->psql('postgres', qq{\\set VERBOSITY verbose\nSELECT withdrawal.retry(NULL)});
like($err, qr/22023/, 'retry(NULL): 22023');

# A submitted payout the processor never received (status query: 404) is
# resent with the same key and paid.
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT req('lost', 'bank', 2020);
	SELECT withdrawal.transition(id, 'dispatching') FROM w WHERE label = 'lost';
	SELECT withdrawal.transition(id, 'submitted') FROM w WHERE label = 'lost';
	COMMIT;
});
wait_status('lost', 'paid');
is(effective('lost'), 1, 'unknown to the processor: resent after the 404, paid once');

# Plain http to a host that is not loopback is refused: the channel does
# not dispatch, says why once, and its payouts stay queued and unsent, so
# that ops may still reject them.  Such a base_url is refused when written
# too (withdrawal.config_check()), so the row is written past that check,
# as a row from before it would be.
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	ALTER TABLE withdrawal.processor DISABLE TRIGGER processor_check;
	INSERT INTO withdrawal.processor (name, driver, base_url) VALUES ('remote', 'http', 'http://192.0.2.1:80');
	ALTER TABLE withdrawal.processor ENABLE TRIGGER processor_check;
	INSERT INTO withdrawal.channel (name, processor) VALUES ('remote', 'remote');
	INSERT INTO w SELECT 'remote', withdrawal_id FROM withdrawal.request('acct1', 'USD', 5000, 'remote', '{}', 'remote');
});
$node->wait_for_log(qr/withdrawal channel "remote" cannot dispatch: plain http is refused for non-loopback host/, $log_offset);
pass('plain http to a non-loopback host refused');
is($node->safe_psql('postgres', q{SELECT status || ' ' || attempts || ' ' || (sent_at IS NULL) FROM withdrawal.withdrawal x JOIN w ON w.id = x.withdrawal_id WHERE label = 'remote'}),
	'queued 0 true', 'refused channel: the payout stays queued, never sent');
is($node->safe_psql('postgres', q{SELECT withdrawal.reject(id, 'channel misconfigured') FROM w WHERE label = 'remote'}),
	'rejected', 'a payout that was never sent can be rejected');

# SIGHUP: with allow_insecure_loopback off, the loopback mock is refused
# too, until it is on again: then the payout goes without an operator.
$log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "withdrawal.allow_insecure_loopback = off\n");
$node->reload;
$node->wait_for_log(qr/withdrawal worker 0 reloaded its configuration/, $log_offset);
$node->safe_psql('postgres', q{SELECT req('insecure', 'bank', 2030)});
$node->wait_for_log(qr/withdrawal channel "bank" cannot dispatch: plain http is refused \(withdrawal.allow_insecure_loopback is off\)/, $log_offset);
pass('SIGHUP: allow_insecure_loopback off refuses plain http');
is($node->safe_psql('postgres', q{SELECT status || ' ' || attempts FROM withdrawal.withdrawal x JOIN w ON w.id = x.withdrawal_id WHERE label = 'insecure'}),
	'queued 0', 'refused: queued, no attempt');
$node->append_conf('postgresql.conf', "withdrawal.allow_insecure_loopback = on\n");
$node->reload;
$node->wait_for_log(qr/withdrawal channel "bank" can dispatch again/, $log_offset);
wait_status('insecure', 'paid');

# The decline tables: only a documented decline refunds; everything else
# keeps the funds held (SPEC section 5, docs/processors.md).
$mock->post('/_control/faults', { rules => [
	# Stripe: "a request with this key is in progress", as 400 and as 409:
	# asked again with the same key, not counted as attempts
	{ fault => 'in-progress', status => 400, amount => 3101, times => 3, protocol => 'stripe' },
	{ fault => 'in-progress', amount => 3102, protocol => 'stripe' },
	# a decline code, but Stripe says to retry: not a decline
	{ fault => 'reject', status => 400, code => 'balance_insufficient', should_retry => JSON::PP::true,
	  amount => 3103, times => 1, protocol => 'stripe' },
	# a 500 that Stripe says not to retry: held for an operator at once
	{ fault => '500', should_retry => JSON::PP::false, amount => 3104, protocol => 'stripe' },
	# the transfer is made, and every answer is lost: dead, then the status
	# query (the transfer group's list) finds it paid
	{ fault => '502-after', amount => 3105, protocol => 'stripe' },
	# http: a 404 on a create and an unknown 4xx code are not declines
	{ fault => 'reject', status => 404, code => 'not_found', amount => 2101 },
	{ fault => 'reject', status => 400, code => 'something_new', amount => 2102 },
	# paid, with a reference too long to store
	{ fault => 'paid', ref_length => 8000, amount => 2103 },
	# status queries of http payouts get no answer meanwhile, so that the
	# dead ones keep the reason they died for
	{ fault => '503', method => 'GET', protocol => 'http' },
] });
$node->safe_psql('postgres', q{
	SELECT req('stripe_busy400', 'stripe', 3101), req('stripe_busy409', 'stripe', 3102),
	       req('stripe_should_retry', 'stripe', 3103), req('stripe_no_retry', 'stripe', 3104),
	       req('stripe_lost', 'stripe', 3105),
	       req('http_404', 'bank', 2101), req('http_unknown_code', 'bank', 2102), req('huge_ref', 'bank', 2103);
});
sub row
{
	my ($label, $columns) = @_;
	return $node->safe_psql('postgres',
		"SELECT $columns FROM withdrawal.withdrawal x JOIN w ON w.id = x.withdrawal_id WHERE label = '$label'");
}
wait_status('stripe_busy400', 'paid');
is(row('stripe_busy400', 'attempts'), '1', 'stripe 400 idempotency_key_in_use: asked again, not counted, paid');
wait_status('stripe_busy409', 'dead');
like(row('stripe_busy409', q{attempts || ' ' || last_error}),
	qr/^0 HTTP 409: idempotency_key_in_use: Stripe is still processing a request with this idempotency key.*\(5 times; held for an operator\)/,
	'stripe 409 in progress: never an attempt; after withdrawal.max_busy_answers, held and said why');
wait_status('stripe_should_retry', 'paid');
is(effective('stripe_should_retry'), 1, 'a decline code with Stripe-Should-Retry: true is retried, paid once');
wait_status('stripe_no_retry', 'dead');
like(row('stripe_no_retry', q{attempts || ' ' || last_error}), qr/^1 HTTP 500.*Stripe-Should-Retry is false/,
	'Stripe-Should-Retry: false on a 500: held for an operator after one attempt');
wait_status('stripe_lost', 'paid');
like(row('stripe_lost', q{(SELECT string_agg(action, ' ' ORDER BY audit_id) FROM withdrawal.audit_log a
	WHERE a.withdrawal_id = x.withdrawal_id)}), qr/dispatch_dead dispatch_query_paid$/,
	'every answer lost: dead, then found paid by the status query');
is(effective('stripe_lost'), 1, 'paid once');
ok((grep { $_->{method} eq 'GET' && $_->{path} eq '/v1/transfers' } @{ $mock->get('/_control/requests') }),
	'the stripe status query lists the transfer group, it creates nothing');
{
	my @stripe = grep { $_->{protocol} eq 'stripe' } @{ $mock->get('/_control/requests') };
	ok(@stripe > 0 && !(grep { ($_->{stripe_version} // '') ne '2024-06-20' } @stripe),
		'every stripe request, create or query, pins Stripe-Version: 2024-06-20');
}
wait_status('http_404', 'dead');
is(effective('http_404'), 0, 'a 404 on a create is not a decline: dead, held');
wait_status('http_unknown_code', 'dead');
like(row('http_unknown_code', 'last_error'), qr/HTTP 400: something_new \(not a documented decline/,
	'an undocumented 4xx code is not a decline: dead, held, said why');
wait_status('huge_ref', 'paid');
like(row('huge_ref', q{coalesce(processor_ref, '(none)') || ' ' || last_error}),
	qr/^\(none\) processor reference not stored: 8000 bytes/, 'a reference of 8000 bytes: paid, not stored, said so');
$mock->post('/_control/faults', { rules => [] });

wait_all_settled($node, 'all faults');
no_double_payout($node, $mock, 'faults');
books_match_processor($node, $mock, 'faults', settled => 1);
is($node->safe_psql('postgres', q{SELECT available || ' ' || held || ' ' || paid_out FROM withdrawal.balance('acct1', 'USD')}),
	$node->safe_psql('postgres', q{
		SELECT 100000000 - sum(amount) FILTER (WHERE status IN ('paid', 'dead'))
		       || ' ' || coalesce(sum(amount) FILTER (WHERE status = 'dead'), 0)
		       || ' ' || sum(amount) FILTER (WHERE status = 'paid')
		  FROM withdrawal.withdrawal WHERE account_id = 'acct1'}),
	'failed payouts refunded, paid ones paid out, dead ones still held');
is($node->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.outbox WHERE kind = 'send'}), '0', 'nothing left to send');

# The API key never reaches the server log.
$node->stop;
ok(!$node->log_contains('sk_test_0123456789abcdef'), 'the API key is nowhere in the server log');
ok(!$node->log_contains('TRAP:'), 'no assertion failure');
$mock->stop;
done_testing();
