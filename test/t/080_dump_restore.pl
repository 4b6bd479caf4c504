# Backup and restore: pg_dump -Fc of a database in use and pg_restore into
# another database of the same cluster and into another cluster, each the
# database its cluster's worker serves, with payouts queued for the mock
# processor.  After a restore the books and the configuration are those of
# the original (sequences go on after the restored rows, so request() and
# credit() work; a tightened '*' policy stays tight, a disabled sandbox
# channel stays disabled, an added currency, processor and channel are
# there), and, by the mock processor's own request log, nothing of the
# copy reaches the processor until an operator resumes dispatch there with
# resume_dispatch(); then its payouts are sent.  The original keeps
# dispatching without any resume, across restarts, and so does a promoted
# physical standby (same system identifier and database OID).
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use WithdrawalDispatchTest;
use WithdrawalMock;

my $mock = WithdrawalMock->new();
my $conf = qq{
shared_preload_libraries = 'withdrawal'
withdrawal.database = 'app'
withdrawal.allow_insecure_loopback = on
withdrawal.retry_base = '20ms'
withdrawal.retry_cap = '200ms'
withdrawal.http_timeout = '2s'
withdrawal.sandbox_settle_delay = '50ms'
lc_messages = 'C'
log_line_prefix = '%m [%p] %b '
};

# qry($node, $db, $sql): the output of $sql, or its error, without dying, so
# that every assertion below is reached (and counted) whatever fails.
sub qry
{
	my ($node, $db, $sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql, on_error_stop => 1);
	return $rc == 0 ? $out : "ERROR: $err";
}

# until_true($seconds, $sub): polls $sub every 0.1 s; false on timeout
sub until_true
{
	my ($seconds, $cond) = @_;
	for (1 .. 10 * $seconds)
	{
		return 1 if $cond->();
		sleep 0.1;
	}
	return 0;
}

# How many requests the mock received about any of the withdrawals @ids
sub mock_requests_for
{
	my (@ids) = @_;
	my %want = map { $_ => 1 } @ids;
	my $log = $mock->get('/_control/requests?limit=100000');
	$log = $log->{requests} if ref $log eq 'HASH';
	return scalar grep {
		my $r = $_;
		($r->{key} && $want{ $r->{key} })
		  || ($r->{withdrawal_id} && $want{ $r->{withdrawal_id} })
		  || grep { index($r->{path}, $_) >= 0 } @ids
	} @$log;
}

sub status_of
{
	my ($node, $db, $ids) = @_;
	return qry($node, $db, "SELECT string_agg(DISTINCT status, ',') FROM withdrawal.withdrawal WHERE withdrawal_id IN ("
		  . join(',', map { "'$_'" } @$ids) . ")");
}

# ---------- the original: a database in use, then hardened ----------

my $origin = PostgreSQL::Test::Cluster->new('origin');
$origin->init(allows_streaming => 1);
$origin->append_conf('postgresql.conf', $conf);
$origin->start;
$origin->safe_psql('postgres', q{
	CREATE DATABASE app;
});
$origin->safe_psql('app', qq{
	CREATE EXTENSION withdrawal;
	CREATE ROLE app_user LOGIN IN ROLE withdrawal_app;
	CREATE ROLE ops_user LOGIN IN ROLE withdrawal_ops;
	INSERT INTO withdrawal.processor (name, driver, base_url) VALUES ('acme', 'http', '@{[ $mock->url ]}');
	INSERT INTO withdrawal.channel (name, processor) VALUES ('bank', 'acme');
	SELECT withdrawal.credit('acct' || a, 'USD', 10000000, 'fund' || a) FROM generate_series(1, 5) a;
	SELECT withdrawal.request('acct1', 'USD', 1000 + i, 'bank', '{"iban": "DE00"}', 'paid-bank' || i)
	  FROM generate_series(1, 3) i;
	SELECT withdrawal.request('acct2', 'USD', 2000 + i, 'sandbox', '{"iban": "DE00"}', 'paid-sandbox' || i)
	  FROM generate_series(1, 2) i;
});
$origin->poll_query_until('app', q{
	SELECT count(*) = 5 FROM withdrawal.withdrawal WHERE status = 'paid'})
  or die 'the original did not pay';
pass('the original pays through the mock and the sandbox');

# Go-live hardening: a tight default policy, the sandbox off, a currency
# of our own (with a wallet in it), a blocklist entry.
$origin->safe_psql('app', q{
	UPDATE withdrawal.policy SET max_amount = 50000 WHERE currency = '*';
	UPDATE withdrawal.channel SET enabled = false WHERE name = 'sandbox';
	INSERT INTO withdrawal.currency (code, minor_unit) VALUES ('XTS', 2);
	SELECT withdrawal.credit('acct3', 'XTS', 5000, 'xts1');
	SELECT withdrawal.block('device', 'rooted-1', 'fraud');
});

# Payouts queued and not sent yet when the dump is taken: the workers are
# stopped (withdrawal.workers = 0) so that the original sends them only
# at the end of this test.
$origin->append_conf('postgresql.conf', "withdrawal.workers = 0\n");
$origin->restart;
my @queued = split /\n/, $origin->safe_psql('app', q{
	SELECT r.withdrawal_id
	  FROM generate_series(1, 4) i,
		   withdrawal.request('acct' || (1 + i % 5), 'USD', 3000 + i, 'bank', '{"iban": "DE00"}', 'queued' || i) r
	 ORDER BY 1});
is(scalar(@queued), 4, 'four payouts queued in the original');
$origin->safe_psql('app', q{SELECT withdrawal.seal_audit()});
my $origin_audit = $origin->safe_psql('app', q{SELECT max(audit_id) FROM withdrawal.audit_log});

my $dump = $PostgreSQL::Test::Utils::tmp_check . '/app.dump';
$origin->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', 'app' ], 'pg_dump -Fc of the database in use');

# A serial restore loads the binding before the queue, so that a worker
# serving the database being restored finds nothing to claim before it
# holds dispatch.  (Restoring in one transaction, as the documentation
# advises and (b) below does, needs no order at all.)
my ($toc) = run_command([ 'pg_restore', '-l', $dump ]);
my @order = map { /TABLE DATA withdrawal (installation|outbox) / ? $1 : () } split /\n/, $toc;
is(join(' ', @order), 'installation outbox', 'the dump loads the binding before the queue');

# The checks every restored copy must pass before and after its resume.
sub check_copy
{
	my ($node, $db, $what) = @_;

	is(qry($node, $db, q{SELECT count(*) FROM withdrawal.audit_log WHERE audit_id <= } . $origin_audit),
		$origin_audit, "$what: the audit log is restored");
	is(qry($node, $db, q{SELECT ok FROM withdrawal.verify_audit()}), 't', "$what: verify_audit() is ok");
	is(qry($node, $db, q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0}),
		'0', "$what: check_invariants() is clean");
	is(qry($node, $db, q{SELECT max_amount || ' ' || seed FROM withdrawal.policy WHERE currency = '*'}),
		'50000 changed', "$what: the tightened '*' policy is restored");
	is(qry($node, $db, q{SELECT enabled FROM withdrawal.channel WHERE name = 'sandbox'}),
		'f', "$what: the sandbox channel stays disabled");
	is(qry($node, $db, q{SELECT string_agg(name, ',' ORDER BY name) FROM withdrawal.channel}),
		'bank,sandbox', "$what: the added channel is restored");
	is(qry($node, $db, q{SELECT minor_unit || ' ' || (seed IS NULL) FROM withdrawal.currency WHERE code = 'XTS'}),
		'2 true', "$what: the added currency is restored");
	is(qry($node, $db, q{SELECT count(*) FROM withdrawal.currency}), '156',
		"$what: the installed currencies once each");
	is(qry($node, $db, q{SELECT count(*) FROM withdrawal.blocklist}), '1', "$what: the blocklist is restored");

	# request() and credit() work: every sequence goes on after the restored rows
	is(qry($node, $db, q{SELECT replayed FROM withdrawal.credit('new-' || current_database(), 'USD', 100000, 'c-new')}),
		'f', "$what: credit() to a new account");
	is(qry($node, $db, q{SELECT available FROM withdrawal.credit('acct3', 'XTS', 100, 'xts2')}),
		'5100', "$what: credit() in the added currency");
	is(qry($node, $db, q{SELECT status FROM withdrawal.request('new-' || current_database(), 'USD', 4000, 'bank', '{"iban": "DE01"}', 'r-new')}),
		'queued', "$what: request() queues a payout");
	like(qry($node, $db, q{SELECT withdrawal.request('acct1', 'USD', 50001, 'bank', '{"iban": "DE00"}', 'r-big')}),
		qr/ERROR: .*above the maximum withdrawal of 50000/, "$what: a request above the tightened maximum is refused");
	is(qry($node, $db, q{
		DO $$ BEGIN
			PERFORM withdrawal.request('acct1', 'USD', 50001, 'bank', '{}', 'r-big2');
			RAISE EXCEPTION 'accepted';
		EXCEPTION WHEN SQLSTATE 'WD003' THEN NULL; END $$;
		SELECT 'refused'}),
		'refused', "$what: ... with WD003");
	like(qry($node, $db, q{SELECT withdrawal.request('acct1', 'USD', 100, 'sandbox', '{}', 'r-sandbox')}),
		qr/ERROR: .*channel "sandbox" are closed/, "$what: the disabled sandbox refuses requests");
	is(qry($node, $db, q{SELECT status FROM withdrawal.request('acct2', 'USD', 100, 'bank', '{}', 'r-dev', '{"device_id": "rooted-1"}')}),
		'rejected', "$what: the restored blocklist applies");
	is(qry($node, $db, q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0}),
		'0', "$what: check_invariants() is clean after the new requests");
}

# Restores $dump into database $db of $node, whose worker serves it, and
# checks that nothing leaves until ops_user resumes dispatch there.
sub restore_and_resume
{
	my ($node, $db, $what, @restore_options) = @_;
	my $log_offset = -s $node->logfile;
	my $sent_before = mock_requests_for(@queued);

	$node->safe_psql('postgres', "CREATE DATABASE $db");
	ok($node->run_log([ 'pg_restore', '--exit-on-error', @restore_options, '-d', $db, $dump ]),
		"$what: pg_restore @restore_options");
	$node->restart if $node->{_restart_to_serve};

	ok(until_true(60, sub { $node->log_contains(
		qr/withdrawal workers hold dispatch in database "$db": its payouts are bound to another installation/, $log_offset) }),
		"$what: the worker holds dispatch and says why");
	is(qry($node, $db, q{SELECT held FROM withdrawal.dispatch_binding()}), 't', "$what: dispatch_binding() says held");
	is(qry($node, $db, q{SELECT bound_database_name || ' ' || (bound_database_oid <> database_oid)
		  FROM withdrawal.dispatch_binding()}), 'app true', "$what: bound to the original database");

	check_copy($node, $db, $what);
	my @new = split /\n/, qry($node, $db, q{SELECT withdrawal_id FROM withdrawal.withdrawal WHERE idempotency_key = 'r-new'});

	# The worker runs, is woken by the requests above, and still sends
	# nothing.  Proving an absence takes a window: a few of its claims.
	ok(until_true(30, sub { qry($node, $db, q{SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'withdrawal worker' AND query LIKE '%dispatch held%'}) eq '1' }),
		"$what: the worker shows that dispatch is held");
	qry($node, $db, q{UPDATE withdrawal.channel SET burst = 2 WHERE name = 'bank'});
	sleep 3;
	is(mock_requests_for(@queued, @new) - $sent_before, 0,
		"$what: by the mock's log, nothing of the copy reached the processor");
	is(status_of($node, $db, [ @queued, @new ]), 'queued', "$what: its payouts stay queued, unsent");
	is(qry($node, $db, q{SELECT count(*) FROM withdrawal.withdrawal WHERE sent_at IS NOT NULL AND status = 'queued'}),
		'0', "$what: none marked sent");
	my @held_logs = grep { /hold dispatch/ } split /\n/, substr(slurp_file($node->logfile), $log_offset);
	is(scalar(@held_logs), 1, "$what: the hold is logged once");

	# resume_dispatch(): ops only, audited, wakes the worker
	like(qry($node, $db, q{SET SESSION AUTHORIZATION app_user; SELECT withdrawal.resume_dispatch('app')}),
		qr/permission denied/, "$what: the app cannot resume dispatch");
	is(qry($node, $db, q{SET SESSION AUTHORIZATION ops_user;
		SELECT withdrawal.resume_dispatch('restore drill: this copy takes over')}), 't', "$what: ops resumes dispatch");
	ok(until_true(60, sub { status_of($node, $db, [ @queued, @new ]) eq 'paid' }),
		"$what: after the resume its payouts are sent and paid");
	cmp_ok(mock_requests_for(@queued, @new) - $sent_before, '>=', scalar(@queued) + scalar(@new),
		"$what: ... through the mock processor");
	ok($node->log_contains(qr/withdrawal workers resume dispatch in database "$db"/, $log_offset),
		"$what: the resume is logged");
	is(qry($node, $db, q{SELECT actor || ' ' || (detail->>'reason') || ' ' || (detail->>'bound_database_name')
		  FROM withdrawal.audit_log WHERE action = 'resume_dispatch'}),
		'ops_user restore drill: this copy takes over app', "$what: the resume is audited");
	is(qry($node, $db, q{SELECT held FROM withdrawal.dispatch_binding()}), 'f', "$what: no longer held");
	is(qry($node, $db, q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0}),
		'0', "$what: check_invariants() is clean after dispatch");
	qry($node, $db, q{SELECT withdrawal.seal_audit()});
	is(qry($node, $db, q{SELECT ok FROM withdrawal.verify_audit()}), 't', "$what: verify_audit() is ok after dispatch");
}

# ---------- (a) another database of the same cluster ----------

# Its worker is made to serve the copy (a restart: withdrawal.database)
# once it is restored.
$origin->append_conf('postgresql.conf', "withdrawal.workers = 1\nwithdrawal.database = 'app_copy'\n");
$origin->{_restart_to_serve} = 1;
restore_and_resume($origin, 'app_copy', 'same cluster');
delete $origin->{_restart_to_serve};

# ---------- (b) another cluster ----------

my $other = PostgreSQL::Test::Cluster->new('other');
$other->init;
$other->append_conf('postgresql.conf', $conf);
$other->start;
# roles are global objects: pg_dumpall --roles-only (its CREATE ROLE of the
# bootstrap superuser fails, as it exists already)
my $roles = $PostgreSQL::Test::Utils::tmp_check . '/roles.sql';
$origin->command_ok([ 'pg_dumpall', '--roles-only', '-f', $roles ], 'pg_dumpall --roles-only');
$other->psql('postgres', slurp_file($roles), on_error_stop => 0);
# Its worker serves the database while it is being restored.
restore_and_resume($other, 'app', 'other cluster', '--single-transaction');

# ---------- (c) a restore in pieces, its worker serving it ----------

# Not one transaction, so the copy's worker sees the rows before the
# original's binding: CREATE EXTENSION wrote a fresh binding, which matches.
# Stopped between the two (everything restored but withdrawal.installation's
# data), the copy must still send nothing: its payouts were queued before
# its installation was created.
my $log_offset = -s $other->logfile;
my $sent_before = mock_requests_for(@queued);
$other->append_conf('postgresql.conf', "withdrawal.database = 'pieces'\n");
$other->restart;
$other->safe_psql('postgres', 'CREATE DATABASE pieces');
my $list = $PostgreSQL::Test::Utils::tmp_check . '/pieces.list';
my ($list_out) = run_command([ 'pg_restore', '-l', $dump ]);
open my $fh, '>', $list or die "cannot write $list: $!";
print $fh join("\n", grep { !/TABLE DATA withdrawal installation / } split /\n/, $list_out), "\n";
close $fh;
ok($other->run_log([ 'pg_restore', '--exit-on-error', '-L', $list, '-d', 'pieces', $dump ]),
	'in pieces: everything but the binding restored');
ok(until_true(60, sub { $other->log_contains(
	qr/withdrawal worker 0 does not send payouts queued before this installation was created/, $log_offset) }),
	'in pieces: the worker refuses the payouts queued before its installation, and says why');
is(qry($other, 'pieces', q{SELECT held FROM withdrawal.dispatch_binding()}), 't',
	'in pieces: dispatch_binding() says held');
qry($other, 'pieces', q{UPDATE withdrawal.channel SET burst = 2 WHERE name = 'bank'});
sleep 3;
is(mock_requests_for(@queued) - $sent_before, 0,
	'in pieces: by the mock\'s log, nothing of the copy reached the processor');
is(status_of($other, 'pieces', \@queued), 'queued', 'in pieces: its payouts stay queued');

# The rest of the restore: the original's binding, then held as any copy.
ok($other->run_log([ 'pg_restore', '--exit-on-error', '--data-only', '-n', 'withdrawal', '-t', 'installation',
	'-d', 'pieces', $dump ]), 'in pieces: the binding restored last');
ok(until_true(60, sub { $other->log_contains(
	qr/withdrawal workers hold dispatch in database "pieces": its payouts are bound to another installation/, $log_offset) }),
	'in pieces: then the worker holds dispatch as for any copy');
is(mock_requests_for(@queued) - $sent_before, 0, 'in pieces: still nothing sent');
is(qry($other, 'pieces', q{SELECT withdrawal.resume_dispatch('drill: the copy takes over')}), 't',
	'in pieces: resumed');
ok(until_true(60, sub { status_of($other, 'pieces', \@queued) eq 'paid' }),
	'in pieces: after the resume its payouts are paid');

# A binding still as created, with no older payouts, has nothing to resume.
is(qry($other, 'app', q{SELECT withdrawal.resume_dispatch('nothing to do')}), 'f',
	'resume_dispatch() of a database that is not held changes nothing');

# ---------- the original dispatches without any resume ----------

$log_offset = -s $origin->logfile;
$origin->append_conf('postgresql.conf', "withdrawal.database = 'app'\n");
$origin->restart;
ok(until_true(60, sub { status_of($origin, 'app', \@queued) eq 'paid' }),
	'the original sends its queued payouts without a resume');
$origin->restart;
$origin->safe_psql('app', q{SELECT withdrawal.request('acct4', 'USD', 4444, 'bank', '{}', 'after-restart')});
ok($origin->poll_query_until('app', q{SELECT status FROM withdrawal.withdrawal WHERE idempotency_key = 'after-restart'}, 'paid'),
	'the original dispatches after another restart');
is(qry($origin, 'app', q{SELECT held FROM withdrawal.dispatch_binding()}), 'f', 'the original is not held');
ok(!$origin->log_contains(qr/hold dispatch in database "app"/, $log_offset), 'the original never held dispatch');

# A promoted physical standby is the same installation: no false alarm.
# (Its workers stay off: it is a copy of the original's queue.)
$origin->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($origin, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf', "withdrawal.workers = 0\n");
$standby->start;
$standby->promote;
$standby->poll_query_until('app', 'SELECT NOT pg_is_in_recovery()') or die 'standby not promoted';
is(qry($standby, 'app', q{SELECT held FROM withdrawal.dispatch_binding()}), 'f',
	'a promoted physical standby is not held');
$standby->stop;

# Never paid twice, by the processor's truth.
cmp_ok($mock->get('/_control/stats?keys=0')->{max_effective_per_key}, '<=', 1,
	'the processor paid no key twice');

$mock->stop;
$other->stop;
$origin->stop;
ok(!$origin->log_contains('TRAP|server process .* was terminated by signal'), 'no assertion failure or crash');
done_testing();
