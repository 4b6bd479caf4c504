# Concurrent webhook deliveries: eight clients deliver, over and over and
# at the same time, a "paid" and a "failed" event for each of 30 submitted
# withdrawals (processors retry, and events race).  Each event must be
# stored once, each withdrawal must end in a state that one of the two
# orders explains, and no money may move twice.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalBooks;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $secrets_file = "$tmp/secrets";
open(my $fh, '>', $secrets_file) or die "could not write $secrets_file: $!";
print $fh "race_http = race-secret\n";
close($fh);
chmod(0600, $secrets_file) or die "could not chmod $secrets_file: $!";

my $node = PostgreSQL::Test::Cluster->new('webhook_concurrency');
$node->init;
$node->append_conf('postgresql.conf', "withdrawal.secrets_file = '$secrets_file'\nmax_connections = 30\n");
$node->start;

my $n = 30;
$node->safe_psql('postgres', qq{
	CREATE EXTENSION withdrawal;
	CREATE EXTENSION pgcrypto;
	-- the discrepancy WARNINGs of late events would fill pgbench's stderr
	ALTER DATABASE postgres SET client_min_messages = error;
	INSERT INTO withdrawal.processor (name, driver, base_url, webhook_secret, webhook_scheme, webhook_tolerance)
		VALUES ('race', 'http', 'https://race.invalid', 'race_http', 'hmac-sha256', '1 hour');
	INSERT INTO withdrawal.channel (name, processor) VALUES ('race', 'race');
	SELECT withdrawal.credit('erin', 'USD', 1000000, 'race-fund');
	CREATE TABLE w AS
		SELECT g, (withdrawal.request('erin', 'USD', 100 + g, 'race', '{"b": 1}', 'race' || g)).withdrawal_id AS id
		  FROM generate_series(1, $n) g;
	SELECT count(withdrawal.transition(id, 'dispatching')) FROM w;
	SELECT count(withdrawal.transition(id, 'submitted')) FROM w;
	-- events 1..n: paid; n+1..2n: failed, for the same withdrawals
	CREATE TABLE hook AS
		SELECT i, jsonb_build_object('X-Withdrawal-Timestamp', t::text,
				   'X-Withdrawal-Signature', 'v1=' || encode(hmac(t || '.' || b, 'race-secret', 'sha256'), 'hex')) AS headers, b AS body
		  FROM (SELECT e.i, extract(epoch FROM now())::bigint AS t,
					   jsonb_build_object('id', 'evt' || e.i, 'type', CASE WHEN e.i <= $n THEN 'payout.paid' ELSE 'payout.failed' END,
						   'data', jsonb_build_object('payout_id', w.id))::text AS b
				  FROM generate_series(1, 2 * $n) e(i) JOIN w ON w.g = (e.i - 1) % $n + 1) s;
});

$node->pgbench(
	'--no-vacuum --client=8 --jobs=4 --transactions=150',
	0,
	[qr{processed: 1200/1200}],
	[qr{^$}],
	'concurrent, repeated deliveries of racing events',
	{
		'052_deliver' => qq{
			\\set i random(1, @{[2 * $n]})
			SELECT withdrawal.receive_webhook('race', headers, body) FROM hook WHERE i = :i;
		}
	});

is($node->safe_psql('postgres', 'SELECT count(*) FROM withdrawal.webhook_event'),
	2 * $n, 'every event is stored exactly once');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0
}), '0', 'the books are consistent');

# The final state of each withdrawal follows from which event came first:
# paid first -> paid, then failed = returned (settle and return once);
# failed first -> failed (refund once; the late paid is a discrepancy).
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM w JOIN withdrawal.withdrawal x ON x.withdrawal_id = w.id
	 WHERE NOT (
		(x.status = 'returned'
		 AND (SELECT count(*) FROM withdrawal.ledger_entry e WHERE e.withdrawal_id = w.id AND e.leg = 1 AND e.kind = 'settle') = 1
		 AND (SELECT count(*) FROM withdrawal.ledger_entry e WHERE e.withdrawal_id = w.id AND e.leg = 1 AND e.kind = 'return') = 1
		 AND (SELECT count(*) FROM withdrawal.ledger_entry e WHERE e.withdrawal_id = w.id AND e.leg = 1 AND e.kind = 'refund') = 0)
		OR
		(x.status = 'failed'
		 AND (SELECT count(*) FROM withdrawal.ledger_entry e WHERE e.withdrawal_id = w.id AND e.leg = 1 AND e.kind IN ('settle', 'return')) = 0
		 AND (SELECT count(*) FROM withdrawal.ledger_entry e WHERE e.withdrawal_id = w.id AND e.leg = 1 AND e.kind = 'refund') = 1
		 AND EXISTS (SELECT FROM withdrawal.webhook_event v WHERE v.withdrawal_id = w.id AND v.discrepancy = 'paid_after_refund')))
}), '0', 'each withdrawal ends returned (paid first) or failed (failed first), money moved once');
my ($available, $held, $paid_out) = split(/\|/,
	$node->safe_psql('postgres', "SELECT * FROM withdrawal.balance('erin', 'USD')"));
is($held + $paid_out, 0, 'nothing held or paid out: every payout came back exactly once');
is($available, 1000000, 'the wallet is whole again');

# What the processor did, as its events tell it: it paid each payout
# (payout.paid, events 1..n) and the payout then failed (events n+1..2n),
# i.e. came back; the money did leave, so the books must not refund it.
my %truth = map { $_ => { effective => 1, status => 'returned', returned => 1 } }
  split /\n/, $node->safe_psql('postgres', 'SELECT id FROM w');
books_match_processor($node, undef, 'racing webhooks', truth => { withdrawals => \%truth });

# Partial returns racing (issue 13): each of 20 paid payouts of 1000 comes
# back in four parts (100, 200, 300, 400), each part an event delivered
# over and over by eight clients at once.  Whatever the order, the three
# first parts are partial returns and the last one the return of what is
# left: the row lock orders them, the event id counts each once, and the
# CHECK on returned_amount would refuse a part past the amount.
my $m = 20;
$node->safe_psql('postgres', qq{
	CREATE TABLE pw AS
		SELECT g, (withdrawal.request('erin', 'USD', 1000, 'race', '{"b": 1}', 'part' || g)).withdrawal_id AS id
		  FROM generate_series(1, $m) g;
	SELECT count(withdrawal.transition(id, 'dispatching')) FROM pw;
	SELECT count(withdrawal.transition(id, 'paid')) FROM pw;
	CREATE TABLE parts AS
		SELECT i, jsonb_build_object('X-Withdrawal-Timestamp', t::text,
				   'X-Withdrawal-Signature', 'v1=' || encode(hmac(t || '.' || b, 'race-secret', 'sha256'), 'hex')) AS headers, b AS body
		  FROM (SELECT e.i, extract(epoch FROM now())::bigint AS t,
					   jsonb_build_object('id', 'part' || e.i, 'type', 'payout.returned',
						   'data', jsonb_build_object('payout_id', pw.id,
							   'amount', 100 * ((e.i - 1) / $m + 1)))::text AS b
				  FROM generate_series(1, 4 * $m) e(i) JOIN pw ON pw.g = (e.i - 1) % $m + 1) s;
});
$node->pgbench(
	'--no-vacuum --client=8 --jobs=4 --transactions=100',
	0,
	[qr{processed: 800/800}],
	[qr{^$}],
	'concurrent, repeated deliveries of partial returns',
	{
		'052_parts' => qq{
			\\set i random(1, @{[4 * $m]})
			SELECT withdrawal.receive_webhook('race', headers, body) FROM parts WHERE i = :i;
		}
	});
# pgbench picks events at random: deliver each once more, in order, so
# that every part has arrived at least once
$node->safe_psql('postgres',
	"SELECT count(withdrawal.receive_webhook('race', headers, body)) FROM parts");
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pw JOIN withdrawal.withdrawal x ON x.withdrawal_id = pw.id
	 WHERE NOT (x.status = 'returned' AND x.returned_amount = 1000
		AND (SELECT count(*) FROM withdrawal.ledger_entry e WHERE e.withdrawal_id = pw.id
			  AND e.leg = 1 AND e.kind = 'partial_return') = 3
		AND (SELECT count(*) FROM withdrawal.ledger_entry e WHERE e.withdrawal_id = pw.id
			  AND e.leg = 1 AND e.kind = 'return') = 1
		AND (SELECT count(*) FROM withdrawal.webhook_event v WHERE v.withdrawal_id = pw.id
			  AND v.result = 'applied' AND v.event_type = 'payout.returned') = 4)
}), '0', 'each payout returned in four parts, each part booked once');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0
}), '0', 'the books are consistent after racing partial returns');
($available, $held, $paid_out) = split(/\|/,
	$node->safe_psql('postgres', "SELECT * FROM withdrawal.balance('erin', 'USD')"));
is("$available $held $paid_out", '1000000 0 0', 'every part came back to the wallet exactly once');

$node->stop;
done_testing();
