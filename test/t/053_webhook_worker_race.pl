# Webhooks racing the workers: while two workers record the answers of 2000
# payouts of two accounts, eight clients deliver the processor's signed "paid" events for
# the same payouts, over and over (only for payouts already sent: an event
# is the processor's word, never ahead of it).  Every path takes its row locks in one
# order (withdrawal rows first, then outbox rows, then wallets), so no
# transaction deadlocks; every payout ends paid once, at the processor and
# in the books.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalBooks;
use WithdrawalDispatchTest;
use WithdrawalMock;

my $n = 2000;
my $mock = WithdrawalMock->new(status => 'pending');
my $node = dispatch_node('race', $mock, workers => 2, conf => "max_connections = 60\n");
use_secrets($node, race_hook => 'race-secret');
$node->safe_psql('postgres', q{
	CREATE EXTENSION pgcrypto;
	-- the discrepancy WARNINGs of late events would fill pgbench's stderr
	ALTER DATABASE postgres SET client_min_messages = error;
	UPDATE withdrawal.processor SET webhook_secret = 'race_hook', webhook_tolerance = '1 hour'
	 WHERE name = 'mockhttp';
});

# Every answer ("pending": accepted, recorded set-based) takes a while, so
# that hundreds of outcomes are recorded while the events arrive.
$mock->post('/_control/faults', { rules => [ { fault => 'slow', delay_ms => 150 } ] });
# Two accounts only, so that every batch a worker records moves the same
# wallets as the events do.
$node->safe_psql('postgres', qq{
	SELECT withdrawal.request('acct' || (1 + i % 2), 'USD', 1000 + i, 'bank', '{"iban": "x"}', 'race' || i)
	  FROM generate_series(1, $n) i ORDER BY 1 + i % 2, i;
});
$node->safe_psql('postgres', q{
	CREATE TABLE hook AS
		SELECT row_number() OVER () AS i, id,
			   jsonb_build_object('X-Withdrawal-Timestamp', t::text,
				   'X-Withdrawal-Signature', 'v1=' || encode(hmac(t || '.' || b, 'race-secret', 'sha256'), 'hex')) AS headers,
			   b AS body
		  FROM (SELECT withdrawal_id AS id, extract(epoch FROM now())::bigint AS t,
					   jsonb_build_object('id', 'evt-' || withdrawal_id, 'type', 'payout.paid',
						   'data', jsonb_build_object('payout_id', withdrawal_id, 'amount', amount,
													  'currency', currency))::text AS b
				  FROM withdrawal.withdrawal) s;
});

$node->pgbench(
	'--no-vacuum --client=8 --jobs=4 --transactions=1500',
	0,
	[qr{processed: 12000/12000}],
	[qr{^$}],
	'events delivered while the workers record the same payouts',
	{
		'053_deliver' => qq{
			\\set i random(1, $n)
			SELECT withdrawal.receive_webhook('mockhttp', h.headers, h.body)
			  FROM hook h JOIN withdrawal.withdrawal w ON w.withdrawal_id = h.id
			 WHERE h.i = :i AND w.status <> 'queued';
		}
	});

# The events of the payouts that no client picked, once everything is sent.
$node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM withdrawal.withdrawal WHERE status IN ('queued', 'dispatching')})
  or die 'payouts not sent';
$node->safe_psql('postgres', q{
	SELECT count(withdrawal.receive_webhook('mockhttp', h.headers, h.body))
	  FROM hook h JOIN withdrawal.withdrawal w ON w.withdrawal_id = h.id WHERE w.status = 'submitted'});
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT status, ',') FROM withdrawal.withdrawal}),
	'paid', 'every payout paid');
ok(!$node->log_contains('deadlock detected'), 'no transaction deadlocked');
no_double_payout($node, $mock, 'webhooks racing the workers');
books_match_processor($node, $mock, 'webhooks racing the workers', settled => 1);

$node->stop;
$mock->stop;
done_testing();
