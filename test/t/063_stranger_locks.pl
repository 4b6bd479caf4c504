# Locks that only the extension can take.  A login role with no rights at
# all holds every advisory lock the extension ever used (the audit
# sealers' lock, the counter locks on the hash of an account, a device and
# an IP) and more; seal_audit(), verify_audit() and request() for exactly
# those values still complete.  The rows the extension locks instead
# cannot be locked by that role, nor by members of the extension's own
# roles.  And the worker's sealing still never waits: while the sealers'
# row is held, payouts go on being paid, and the rows are sealed once it is
# released.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('stranger_locks');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'withdrawal'
withdrawal.database = 'postgres'
withdrawal.sandbox_settle_delay = '50ms'
lc_messages = 'C'
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION withdrawal;
	CREATE ROLE stranger LOGIN;
	CREATE ROLE app LOGIN IN ROLE withdrawal_app;
	CREATE ROLE ops LOGIN IN ROLE withdrawal_ops;
	CREATE ROLE auditor LOGIN IN ROLE withdrawal_auditor;
	-- every counter is configured, so request() serialises on all three
	INSERT INTO withdrawal.policy (currency, daily_count_limit, velocity_window,
		velocity_account_limit, velocity_device_limit, velocity_ip_limit)
	VALUES ('USD', 100, '1 hour', 100, 100, 100);
	SELECT withdrawal.credit('victim', 'USD', 100000, 'c1');
});

# The stranger takes, in one open transaction and at session level, the
# sealers' old lock and the old counter locks for the victim's account,
# device and IP (class "WDPA", "WDPD", "WDPI", object the value's hash),
# plus the same keys as one bigint and in shared mode.
my @keys = (
	'1464090965, 1',                               # sealers, "WDAU"
	q{1464094785, hashtext('victim')},             # account
	q{1464094788, hashtext('victim-device')},      # device
	q{1464094793, hashtext('198.51.100.7')},       # IP
);
my $stranger = $node->background_psql('postgres', on_error_stop => 1,
	extra_params => [ '-U', 'stranger' ]);
$stranger->query_safe('BEGIN');
for my $k (@keys)
{
	my ($class, $object) = split /, /, $k, 2;
	$stranger->query_safe("SELECT pg_advisory_lock($k)");
	$stranger->query_safe("SELECT pg_advisory_xact_lock($k)");
	$stranger->query_safe(
		"SELECT pg_advisory_lock((${class}::bigint << 32) | (($object)::bigint & 4294967295))");
}
$stranger->query_safe('SELECT pg_advisory_lock(0), pg_advisory_lock(1)');
is($stranger->query_safe(q{SELECT count(*) >= 10 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()}),
	't', 'the stranger holds the advisory locks');

# Each victim gets 10 s: on failure the test fails instead of hanging.
sub victim
{
	my ($user, $sql, $name) = @_;
	my ($ret, $stdout, $stderr) = $node->psql('postgres',
		"SET statement_timeout = '10s'; $sql", extra_params => [ '-U', $user ]);
	is($ret, 0, "$name completes while the stranger holds its locks")
	  or diag($stderr);
	return $stdout;
}

$node->safe_psql('postgres', q{SELECT withdrawal.set_account('victim', kyc_level => 1)});
victim('ops', 'SELECT withdrawal.seal_audit()', 'seal_audit()');
is(victim('auditor', 'SELECT ok FROM withdrawal.verify_audit()', 'verify_audit()'),
	't', 'verify_audit(): the chain verifies');
is(victim('app', q{SELECT status FROM withdrawal.request('victim', 'USD', 100, 'sandbox', '{"bank": "x"}', 'w1',
	'{"device_id": "victim-device", "ip": "198.51.100.7"}')}, 'request()'),
	'queued', 'request(): queued for the account, device and IP the stranger targets');
$stranger->query_safe('COMMIT');
$stranger->query_safe('SELECT pg_advisory_unlock_all()');

# The rows the extension locks instead: no one but the owner may lock them.
for my $user (qw(stranger app ops auditor))
{
	for my $sql ('SELECT FROM withdrawal.lock_slot FOR UPDATE',
		'SELECT FROM withdrawal.lock_slot FOR KEY SHARE',
		'BEGIN; LOCK TABLE withdrawal.lock_slot IN ACCESS SHARE MODE; COMMIT')
	{
		my ($ret, $stdout, $stderr) = $node->psql('postgres', $sql,
			extra_params => [ '-U', $user ]);
		like($stderr, qr/permission denied for (table lock_slot|schema withdrawal)/,
			"$user: $sql is refused");
	}
}
$stranger->quit;

# The rows serialise what the advisory locks did: a request that shares an
# account, a device or an IP with one in an open transaction waits for it,
# then counts it, so the two cannot both take the last slot of a limit.
$node->safe_psql('postgres', q{
	INSERT INTO withdrawal.policy (currency, velocity_window, velocity_account_limit,
		velocity_device_limit, velocity_ip_limit)
	VALUES ('EUR', '1 hour', 1, 1, 1);
	SELECT withdrawal.credit('r' || a, 'EUR', 100000, 'race' || a) FROM generate_series(1, 6) a;
	CREATE TABLE outcome (key text PRIMARY KEY, sqlstate text);
	CREATE FUNCTION try_request(acct text, dev text, ip text, k text) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM withdrawal.request(acct, 'EUR', 100, 'sandbox', '{"bank": "x"}', k,
			jsonb_build_object('device_id', dev, 'ip', ip));
		INSERT INTO outcome VALUES (k, 'ok');
	EXCEPTION WHEN SQLSTATE 'WD003' THEN
		INSERT INTO outcome VALUES (k, SQLSTATE);
	END
	$$;
});
for my $race (
	[ 'account', [qw(r1 da1 203.0.113.1)], [qw(r1 db1 203.0.113.2)] ],
	[ 'device',  [qw(r2 shared 203.0.113.3)], [qw(r3 shared 203.0.113.4)] ],
	[ 'IP',      [qw(r4 da4 203.0.113.9)], [qw(r5 db5 203.0.113.9)] ])
{
	my ($kind, $first, $second) = @$race;
	my $a = $node->background_psql('postgres', on_error_stop => 1);
	my $b = $node->background_psql('postgres', on_error_stop => 1);
	$a->query_safe(sprintf(q{BEGIN; SELECT try_request('%s', '%s', '%s', '%s-a')}, @$first, $kind));
	$b->query_until(qr/sent/, sprintf(qq{\\echo sent\nSELECT try_request('%s', '%s', '%s', '%s-b');\n},
		@$second, $kind));
	# b either waits for a's row lock or, without one, is already done
	$node->poll_query_until('postgres', qq{
		SELECT EXISTS (SELECT FROM pg_stat_activity
						WHERE query LIKE '%$kind-b%' AND wait_event_type = 'Lock')
			OR EXISTS (SELECT FROM outcome WHERE key = '$kind-b')})
	  or die "no outcome for the second $kind request";
	is($node->safe_psql('postgres', "SELECT count(*) FROM outcome WHERE key = '$kind-b'"),
		'0', "$kind: the second request waits for the first");
	$a->query_safe('COMMIT');
	$node->poll_query_until('postgres', "SELECT EXISTS (SELECT FROM outcome WHERE key = '$kind-b')")
	  or die "the second $kind request did not finish";
	is($node->safe_psql('postgres', "SELECT sqlstate FROM outcome WHERE key = '$kind-b'"),
		'WD003', "$kind: then it counts the first and is refused");
	$a->quit;
	$b->quit;
}

# The owner holding the sealers' row does not stall the worker: it skips
# sealing (and says so at DEBUG1), goes on paying, and seals the rows once
# the row is free.
my $unsealed = q{SELECT count(*) FROM withdrawal.audit_log a
	WHERE NOT EXISTS (SELECT FROM withdrawal.audit_seal s WHERE s.audit_id = a.audit_id)};
$node->poll_query_until('postgres', "SELECT ($unsealed) = 0")
  or die 'the worker did not seal the audit log';
$node->safe_psql('postgres', 'ALTER SYSTEM SET log_min_messages = debug1; SELECT pg_reload_conf()');
my $holder = $node->background_psql('postgres', on_error_stop => 1);
$holder->query_safe(q{BEGIN; SELECT FROM withdrawal.lock_slot WHERE purpose = 'audit sealer' FOR UPDATE});
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{SELECT withdrawal.request('victim', 'USD', 200, 'sandbox', '{"bank": "x"}', 'w2')});
$node->wait_for_log(qr/withdrawal audit sealing skipped: another sealer is at work/, $log_offset);
pass('the worker skips sealing while the sealers\' row is held');
$node->safe_psql('postgres', q{SELECT withdrawal.request('victim', 'USD', 300, 'sandbox', '{"bank": "x"}', 'w3')});
$node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM withdrawal.withdrawals WHERE idempotency_key IN ('w2', 'w3') AND status = 'paid'})
  or die 'the worker stalled behind the sealers\' row';
pass('the worker pays after skipping');
cmp_ok($node->safe_psql('postgres', $unsealed), '>', 0, 'the worker did not seal meanwhile');
$holder->query_safe('COMMIT');
$holder->quit;
$node->poll_query_until('postgres', "SELECT ($unsealed) = 0")
  or die 'the worker did not seal after the row was released';
pass('the worker seals once the sealers\' row is free');

$node->stop;
done_testing();
