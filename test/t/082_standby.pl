# A streaming standby of a primary that keeps writing audit rows:
# - verify_audit(), audit_head() and every monitoring view work there (60
#   calls while WAL is replayed, all succeed), as withdrawal_auditor and as
#   a member of pg_monitor, and agree with the primary once caught up;
# - the dispatcher worker does nothing on a standby (it is registered to
#   start when recovery finishes): no worker process, no log line, no
#   error, while payouts wait in the replicated queue;
# - once promoted, the worker starts and dispatches them.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The primary dispatches nothing (withdrawal.workers = 0), so that its
# queued payouts are still queued when the standby is promoted.
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'withdrawal'
withdrawal.database = 'postgres'
withdrawal.workers = 0
withdrawal.sandbox_settle_delay = '50ms'
lc_messages = 'C'
log_line_prefix = '%m [%p] %b '
});
$primary->start;
$primary->safe_psql('postgres', q{
	CREATE EXTENSION withdrawal;
	CREATE ROLE mon LOGIN IN ROLE pg_monitor;
	CREATE ROLE aud LOGIN IN ROLE withdrawal_auditor;
	SELECT withdrawal.credit('acct' || i, 'USD', 1000000, 'fund' || i) FROM generate_series(1, 10) i;
	SELECT withdrawal.request('acct' || i, 'USD', 1000 + i, 'sandbox', '{}', 'r' || i) FROM generate_series(1, 10) i;
	SELECT withdrawal.seal_audit();
});
$primary->backup('backup');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->append_conf('postgresql.conf', "withdrawal.workers = 1\n");
$standby->start;
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');

# 60 calls on the standby while the primary appends and seals audit rows
# (a request, an account change and a seal before each call).
my @calls = (
	[ 'aud', 'SELECT ok FROM withdrawal.verify_audit()', qr/^t$/ ],
	[ 'aud', 'SELECT seq > 0 FROM withdrawal.audit_head()', qr/^t$/ ],
	[ 'mon', 'SELECT sum(payouts) > 0 FROM withdrawal.monitor_queue', qr/^t$/ ],
	[ 'mon', q{SELECT count(*) FROM withdrawal.monitor_channels WHERE channel = 'sandbox' AND in_flight IS NULL}, qr/^1$/ ],
	[ 'mon', q{SELECT worker || ' ' || coalesce(pid::text, 'none') || ' ' || state FROM withdrawal.monitor_workers},
	  qr/^0 none not started$/ ],
	[ 'mon', 'SELECT audit_head_seq > 0 AND workers = 1 AND workers_running = 0 FROM withdrawal.monitor_summary',
	  qr/^t$/ ],
);
my $log_start = -s $standby->logfile;
my @failures;
for my $i (1 .. 60)
{
	$primary->safe_psql('postgres', qq{
		SELECT withdrawal.request('acct' || (1 + $i % 10), 'USD', 2000 + $i, 'sandbox', '{}', 'more$i');
		SELECT withdrawal.set_account('acct' || (1 + $i % 10), kyc_level => $i);
		SELECT withdrawal.seal_audit();
	});
	my ($role, $sql, $expect) = @{ $calls[ $i % @calls ] };
	my ($ret, $out, $err) = $standby->psql('postgres', $sql, extra_params => [ '-U', $role ]);
	push @failures, "call $i ($sql): rc $ret, '$out', $err" unless $ret == 0 && $out =~ $expect;
}
is(scalar(@failures), 0, '60 calls of verify_audit(), audit_head() and the monitoring views on the standby succeed')
  or diag(join("\n", @failures[0 .. ($#failures < 4 ? $#failures : 4)]));

# Caught up, the standby says what the primary says.
$primary->wait_for_catchup($standby);
for my $sql (
	'SELECT seq, audit_id, chain_hash, sealed_at FROM withdrawal.audit_head()',
	'SELECT ok, checked, first_bad_id FROM withdrawal.verify_audit()')
{
	is($standby->safe_psql('postgres', $sql, extra_params => [ '-U', 'aud' ]),
		$primary->safe_psql('postgres', $sql, extra_params => [ '-U', 'aud' ]), "standby and primary agree: $sql");
}
for my $sql (
	'SELECT channel, status, payouts, oldest_created_at, oldest_updated_at FROM withdrawal.monitor_queue',
	'SELECT review, dead, parked, audit_head_seq, audit_head_sealed_at, audit_unsealed, last_reconcile_run_id FROM withdrawal.monitor_summary',
	'SELECT channel, enabled, outbox, parked FROM withdrawal.monitor_channels',
	'SELECT * FROM withdrawal.monitor_reconcile')
{
	is($standby->safe_psql('postgres', $sql, extra_params => [ '-U', 'mon' ]),
		$primary->safe_psql('postgres', $sql, extra_params => [ '-U', 'mon' ]), "standby and primary agree: $sql");
}
is($standby->safe_psql('postgres', q{SELECT ok, checked > 60 FROM withdrawal.verify_audit()}),
	't|t', 'the standby verifies the whole chain');

# The worker did nothing on the standby: no process, not a line in its log.
is($standby->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'withdrawal worker'}),
	'0', 'no worker runs on the standby');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.withdrawal WHERE status <> 'queued'}),
	'0', 'every payout still queued');
my $standby_log = substr(slurp_file($standby->logfile), $log_start);
unlike($standby_log, qr/\] (withdrawal worker|postmaster) .*withdrawal worker/,
	'the standby\'s log says nothing of a worker');
unlike($standby_log, qr/ERROR:/, 'the standby\'s log has no error');

# Promoted: the worker starts (once more to connect as its role) and pays.
$primary->stop;
$standby->promote;
# (the sandbox declines amounts ending in 13, and returns those in 42)
ok($standby->poll_query_until('postgres', q{
	SELECT string_agg(status || '=' || n, ' ' ORDER BY status)
	  FROM (SELECT status, count(*) AS n FROM withdrawal.withdrawal GROUP BY 1) s},
	'failed=1 paid=68 returned=1'),
	'once promoted, the worker dispatches the queued payouts');
is($standby->safe_psql('postgres', q{
	SELECT m.pid = a.pid AND m.state = 'dispatching'
	  FROM withdrawal.monitor_workers m, pg_stat_activity a WHERE a.backend_type = 'withdrawal worker'}),
	't', 'monitor_workers shows it, with the pid pg_stat_activity shows');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations > 0}),
	'0', 'check_invariants() is clean');
ok($standby->poll_query_until('postgres', q{
	SELECT audit_unsealed = 0 AND audit_head_seq = (SELECT seq FROM withdrawal.audit_head())
	  FROM withdrawal.monitor_summary}),
	'the promoted worker seals the audit chain');
is($standby->safe_psql('postgres', 'SELECT ok FROM withdrawal.verify_audit()'), 't', 'and it verifies');

$standby->stop;
done_testing();
