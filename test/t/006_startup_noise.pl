# Quiet starts: a worker whose database does not exist yet says so once
# and waits, instead of a FATAL and a restart every 5 s, and connects once
# the database and the extension are there; a withdrawal.* setting left in
# postgresql.conf after the library left shared_preload_libraries does not
# warn in every session that uses the SQL API.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('noise');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'withdrawal'
withdrawal.database = 'payouts'
withdrawal.workers = 2
lc_messages = 'C'
});
$node->start;

# Both workers say once that the database is missing, then wait.
for my $worker (0, 1)
{
	$node->wait_for_log(qr/withdrawal worker $worker waits for database "payouts": it does not exist/);
}
pass('each worker says once that its database does not exist');
my $offset = -s $node->logfile;

# Long enough for several 5 s restarts if the worker still crash-looped;
# what ends the wait is the event, not the time: the database appears, and
# the workers, which were waiting all along, connect as their role.
$node->safe_psql('postgres', 'CREATE DATABASE payouts');
$node->safe_psql('payouts', 'CREATE EXTENSION withdrawal');
ok($node->poll_query_until('payouts', q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE backend_type = 'withdrawal worker' AND usename = 'withdrawal_worker' AND datname = 'payouts'}, '2'),
	'once the database and the extension exist, both workers connect as their role');

my $log = slurp_file($node->logfile);
my @fatal = $log =~ /(FATAL:.*)/g;
is(scalar @fatal, 0, 'no FATAL in the whole log') or diag(join("\n", @fatal[0 .. ($#fatal < 4 ? $#fatal : 4)]));
my @waits = $log =~ /(waits for database)/g;
is(scalar @waits, 2, 'the wait is said once per worker, not at every restart');

# Money moves: the workers that waited dispatch.
$node->safe_psql('payouts', q{
	SELECT withdrawal.credit('alice', 'USD', 10000, 'c1');
	SELECT withdrawal.request('alice', 'USD', 1000, 'sandbox', '{"bank": "x"}', 'r1');
});
ok($node->poll_query_until('payouts', q{SELECT status <> 'queued' FROM withdrawal.withdrawals}),
	'a request is dispatched by the workers that waited');

# The library taken out of shared_preload_libraries, its settings left in
# postgresql.conf: sessions using the SQL API load the library and must not
# warn about withdrawal.database and withdrawal.workers.
$node->stop;
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$node->start;
my ($rc, $out, $err) = $node->psql('payouts', q{SELECT available FROM withdrawal.balance('alice', 'USD')});
is($rc, 0, 'the SQL API works without the preload');
is($out, '9000', 'and reads the balance');
is($err, '', 'no WARNING about the settings left in postgresql.conf');
($rc, $out, $err) = $node->psql('payouts', q{SHOW withdrawal.workers});
is($out, '2', 'the setting is shown as set');

$node->stop;
done_testing();
