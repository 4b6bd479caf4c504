# Status events on the dispatch path: the workers' set-based claims and
# outcomes (as withdrawal_worker) append a status_event row for each
# change, and with withdrawal.notify_status on every change is a NOTIFY on
# channel withdrawal_status carrying "<withdrawal id> <status>" and
# nothing else, sent at commit, never for a change rolled back; a dump
# restores the events as they were.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('status_events');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'withdrawal'
withdrawal.database = 'postgres'
withdrawal.sandbox_settle_delay = '50ms'
withdrawal.notify_status = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION withdrawal');
$node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'withdrawal worker' AND usename = 'withdrawal_worker'})
  or die 'worker did not connect as its role';

$node->safe_psql('postgres', q{
	SELECT withdrawal.credit('alice', 'USD', 100000, 'c1');
	CREATE TABLE w (label text, id uuid);
	CREATE FUNCTION history(l text) RETURNS text LANGUAGE sql AS $$
		SELECT string_agg(e.status, ' ' ORDER BY e.event_id)
		  FROM withdrawal.status_event e JOIN w ON w.id = e.withdrawal_id WHERE w.label = l
	$$;
});

# One session listens, asks for payouts, waits for the workers to settle
# them, and prints what it was notified of (psql prints the notifications
# it received after each command).
my ($ret, $out, $err) = $node->psql('postgres', q{
LISTEN withdrawal_status;
INSERT INTO w SELECT 'ok', withdrawal_id FROM withdrawal.request('alice', 'USD', 1000, 'sandbox', '{"bank": "x"}', 'r1');
INSERT INTO w SELECT 'declined', withdrawal_id FROM withdrawal.request('alice', 'USD', 2013, 'sandbox', '{"bank": "x"}', 'r2');
INSERT INTO w SELECT 'returned', withdrawal_id FROM withdrawal.request('alice', 'USD', 3042, 'sandbox', '{"bank": "x"}', 'r3');
BEGIN;
INSERT INTO w SELECT 'rolled_back', withdrawal_id FROM withdrawal.request('alice', 'USD', 4000, 'sandbox', '{"bank": "x"}', 'r4');
ROLLBACK;
DO $$
BEGIN
	FOR i IN 1 .. 1200 LOOP
		EXIT WHEN (SELECT string_agg(w.label || '=' || x.status, ',' ORDER BY w.label)
					 FROM w JOIN withdrawal.withdrawal x ON x.withdrawal_id = w.id)
				  = 'declined=failed,ok=paid,returned=returned';
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;
SELECT 'settled';
SELECT 'done';
});
is($ret, 0, 'listener session ran') or diag($err);
like($out, qr/settled/, 'the sandbox payouts settled');

my %id = map { split /\|/ } split /\n/, $node->safe_psql('postgres', 'SELECT label, id FROM w');
my %by_id = reverse %id;
my @notes = $out =~ /Asynchronous notification "withdrawal_status" with payload "([^"]*)" received/g;
my %seen;
my $well_formed = 1;
for my $note (@notes)
{
	my ($wid, $status) = $note =~ /^([0-9a-f-]{36}) ([a-z]+)$/ or do { $well_formed = 0; next };
	push @{ $seen{ $by_id{$wid} // 'unknown' } }, $status;
}
ok(@notes > 0 && $well_formed, 'every payload is "<withdrawal id> <status>", nothing else')
  or diag(join("\n", @notes));
ok(!exists $seen{unknown}, 'no notification for a withdrawal rolled back');
like(join(' ', @{ $seen{ok} // [] }), qr/^queued dispatching .*paid$/,
	'the paid payout: queued from the request, then the workers\' changes, paid last')
  or diag(join(' ', @{ $seen{ok} // [] }));
like(join(' ', @{ $seen{declined} // [] }), qr/^queued dispatching failed$/, 'the declined payout: failed');
like(join(' ', @{ $seen{returned} // [] }), qr/paid returned$/, 'the returned payout: paid, then returned');

# The table has the same history, written by the workers as their role.
is($node->safe_psql('postgres', q{SELECT history('ok')}), join(' ', @{ $seen{ok} // [] }),
	'status_event rows match the notifications');
like($node->safe_psql('postgres', q{SELECT history('returned')}), qr/^queued dispatching .*paid returned$/,
	'status_event: the returned payout');
is($node->safe_psql('postgres', q{SELECT history('declined')}), 'queued dispatching failed',
	'status_event: the declined payout');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM withdrawal.status_event e
	 WHERE NOT EXISTS (SELECT FROM withdrawal.withdrawal x WHERE x.withdrawal_id = e.withdrawal_id)}),
	'0', 'no event of the rolled back request');
is($node->safe_psql('postgres',
		'SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0'),
	'0', 'books consistent');
unlike(slurp_file($node->logfile), qr/(ERROR|WARNING):  [^\n]*(permission denied|status_event)/,
	'the workers wrote their events without an error');

# A dump restores the events as they were: the rows of the withdrawals it
# copies in add none (request() writes the first event, not a trigger).
my $dump = PostgreSQL::Test::Utils::tempdir . '/dump.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $dump ],
	'the dump restores');
my $events = q{SELECT count(*) || ' ' || max(event_id) || ' ' || md5(string_agg(withdrawal_id || status, ',' ORDER BY event_id))
	FROM withdrawal.status_event};
is($node->safe_psql('restored', $events), $node->safe_psql('postgres', $events),
	'the restored database has the same events, no more');

$node->stop;
done_testing();
