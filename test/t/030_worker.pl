# The dispatcher worker: it waits for CREATE EXTENSION without crashing,
# shows in pg_stat_activity, pays out through the sandbox (happy path, the
# declined amount ...13 refunded, the returned amount ...42 credited back),
# picks up a reloaded setting, releases freed memory once idle after work,
# and is restarted after pg_terminate_backend.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalBooks;

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'withdrawal'
withdrawal.database = 'postgres'
withdrawal.sandbox_settle_delay = '50ms'
});
$node->start;

# Not installed yet: the worker waits (and says so) instead of failing.
$node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'withdrawal worker'
	   AND query LIKE '%waiting for CREATE EXTENSION%'})
  or die 'worker does not wait for the extension';
pass('worker waits for CREATE EXTENSION');

$node->safe_psql('postgres', 'CREATE EXTENSION withdrawal');

# CREATE EXTENSION creates the worker's role; the worker restarts once to
# connect as it, and is never a superuser session.
ok($node->poll_query_until('postgres', q{
	SELECT a.application_name || ' ' || a.usename || ' ' || a.datname || ' ' || r.rolsuper
	  FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
	 WHERE a.backend_type = 'withdrawal worker'},
	'withdrawal withdrawal_worker postgres false'),
	'worker in pg_stat_activity with its backend type and application name, as a non-superuser role');

$node->safe_psql('postgres', q{
	SELECT withdrawal.credit('alice', 'USD', 100000, 'c1');
	CREATE TABLE w (label text, id uuid);
	INSERT INTO w SELECT 'ok', withdrawal_id FROM withdrawal.request('alice', 'USD', 1000, 'sandbox', '{"bank": "x"}', 'r1');
	INSERT INTO w SELECT 'declined', withdrawal_id FROM withdrawal.request('alice', 'USD', 2013, 'sandbox', '{"bank": "x"}', 'r2');
	INSERT INTO w SELECT 'returned', withdrawal_id FROM withdrawal.request('alice', 'USD', 3042, 'sandbox', '{"bank": "x"}', 'r3');
});

$node->poll_query_until('postgres', q{
	SELECT string_agg(w.label || '=' || x.status, ',' ORDER BY w.label)
	  FROM w JOIN withdrawal.withdrawals x ON x.withdrawal_id = w.id},
	'declined=failed,ok=paid,returned=returned')
  or die 'sandbox payouts did not settle';
pass('sandbox: paid, declined (13) and returned (42)');

is($node->safe_psql('postgres', q{SELECT available, held, paid_out FROM withdrawal.balance('alice', 'USD')}),
	'99000|0|1000', 'declined and returned amounts are back in the wallet, the paid one is paid out');
is($node->safe_psql('postgres', q{
	SELECT processor_ref IS NOT NULL AND attempts = 1 FROM withdrawal.withdrawals x JOIN w ON w.id = x.withdrawal_id
	 WHERE w.label = 'ok'}), 't', 'processor reference stored, one attempt');
is($node->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.outbox}), '0', 'outbox is empty');
is($node->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations > 0}),
	'0', 'invariants hold');

# A commit that queues work wakes the worker: the request is claimed
# without waiting for a poll (the idle wait is 5 s; the settle delay is
# long, so the payout stays submitted and we look at dispatch only).
$node->append_conf('postgresql.conf', "withdrawal.sandbox_settle_delay = '1h'\n");
$node->reload;
$node->wait_for_log(qr/withdrawal worker 0 reloaded its configuration/);
$node->safe_psql('postgres', q{
	INSERT INTO w SELECT 'slow', withdrawal_id FROM withdrawal.request('alice', 'USD', 500, 'sandbox', '{"bank": "x"}', 'r4');
});
$node->poll_query_until('postgres', q{
	SELECT x.status FROM withdrawal.withdrawals x JOIN w ON w.id = x.withdrawal_id WHERE w.label = 'slow'},
	'submitted') or die 'not submitted';
is($node->safe_psql('postgres', q{
	SELECT due_at > now() + interval '30 minutes' FROM withdrawal.sandbox_event e JOIN w ON w.id = e.withdrawal_id
	 WHERE w.label = 'slow'}), 't', 'SIGHUP: the worker uses the reloaded settle delay');

# Idle after payouts, the worker hands the memory it freed back to the
# kernel (worker.c): once per idle spell, not at every pass of its loop
# (counted at the end).  The timers' labels are logged at DEBUG2.
my $release_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "log_min_messages = debug2\n");
$node->reload;
$node->wait_for_log(qr/withdrawal worker 0 reloaded its configuration/, $release_offset);
$node->safe_psql('postgres', q{
	INSERT INTO w SELECT 'release', withdrawal_id FROM withdrawal.request('alice', 'USD', 600, 'sandbox', '{"bank": "x"}', 'r4-release');
});
$node->wait_for_log(qr/withdrawal worker 0: releasing freed memory/, $release_offset);
pass('idle after a payout, the worker releases the memory it freed');

# pg_terminate_backend: the postmaster starts the worker again.
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'withdrawal worker'});
ok($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)") eq 't', 'worker terminated');
$node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'withdrawal worker' AND pid <> $pid})
  or die 'worker not restarted';
pass('worker restarted after pg_terminate_backend');

# ... and it works after the restart.
$node->append_conf('postgresql.conf', "withdrawal.sandbox_settle_delay = '0'\n");
$node->reload;
$node->safe_psql('postgres', q{
	INSERT INTO w SELECT 'after', withdrawal_id FROM withdrawal.request('alice', 'USD', 700, 'sandbox', '{"bank": "x"}', 'r5');
});
$node->poll_query_until('postgres', q{
	SELECT x.status FROM withdrawal.withdrawals x JOIN w ON w.id = x.withdrawal_id WHERE w.label = 'after'},
	'paid') or die 'not paid after restart';
pass('payouts flow after the restart');

# The worker's audit rows name its own role, which no login can imitate
# (there was a literal "withdrawal worker" before).
is($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT actor, ',') FROM withdrawal.audit_log
	 WHERE action LIKE 'dispatch%' OR action LIKE 'sandbox%'}),
	'withdrawal_worker', 'the worker acts as withdrawal_worker in the audit log');

# A sandbox event that cannot be applied holds up no other: it is
# postponed with its error, once, and the others settle.
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.refuse_777() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.amount = 777 AND NEW.status = 'paid' THEN
			RAISE EXCEPTION 'this settlement cannot be recorded';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER refuse_777 BEFORE UPDATE ON withdrawal.withdrawal
		FOR EACH ROW EXECUTE FUNCTION public.refuse_777();
	INSERT INTO w SELECT 'stuck', withdrawal_id FROM withdrawal.request('alice', 'USD', 777, 'sandbox', '{"bank": "x"}', 'r6');
	INSERT INTO w SELECT 'fine' || i, withdrawal_id
	  FROM generate_series(1, 5) i, withdrawal.request('alice', 'USD', 800 + i, 'sandbox', '{"bank": "x"}', 'r7-' || i);
});
$node->poll_query_until('postgres', q{
	SELECT count(*) = 5 FROM withdrawal.withdrawals x JOIN w ON w.id = x.withdrawal_id
	 WHERE w.label LIKE 'fine%' AND x.status = 'paid'})
  or die 'one bad sandbox event held up the others';
pass('one sandbox event that cannot be applied holds up no other');
$node->poll_query_until('postgres', q{
	SELECT attempts >= 1 AND last_error LIKE '%this settlement cannot be recorded%' AND due_at > now() + interval '30 seconds'
	  FROM withdrawal.sandbox_event e JOIN w ON w.id = e.withdrawal_id WHERE w.label = 'stuck'})
  or die 'the bad sandbox event was not postponed';
pass('it is postponed with its error');
$node->wait_for_log(qr/postponed the sandbox events of withdrawal/);
$node->safe_psql('postgres', q{DROP TRIGGER refuse_777 ON withdrawal.withdrawal});

# The sandbox is this test's processor: by its documented amounts it paid
# every payout it was sent except the one ending in 13 (and the one ending
# in 42 came back after it was paid).
my %sandbox = map {
	my ($id, $amount) = split /\|/;
	$id => $amount % 100 == 13 ? { effective => 0, status => 'failed' }
	  : { effective => 1, status => $amount % 100 == 42 ? 'returned' : 'paid' }
} split /\n/, $node->safe_psql('postgres',
	q{SELECT x.withdrawal_id, x.amount FROM w JOIN withdrawal.withdrawal x ON x.withdrawal_id = w.id});
books_match_processor($node, undef, 'sandbox', truth => { withdrawals => \%sandbox });

# A handful of idle spells after work since the release above (a payout,
# a restart, a few more payouts), so a handful of releases; a worker that
# released at every pass of its loop would have logged thousands.
my $releases = () = substr(slurp_file($node->logfile), $release_offset) =~ /releasing freed memory/g;
ok($releases >= 1 && $releases <= 20, "memory released once per idle spell ($releases times)");

# DROP EXTENSION under a running worker: it goes back to waiting, quietly,
# and picks the extension up again after CREATE EXTENSION.
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'DROP EXTENSION withdrawal CASCADE');
$node->wait_for_log(qr/withdrawal worker 0 stops dispatching: the extension is no longer installed/, $log_offset);
$node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'withdrawal worker' AND query LIKE '%waiting for CREATE EXTENSION%'})
  or die 'the worker does not wait for the extension again';
$node->safe_psql('postgres', q{
	CREATE EXTENSION withdrawal;
	SELECT withdrawal.credit('bob', 'USD', 1000, 'b1');
	SELECT withdrawal.request('bob', 'USD', 100, 'sandbox', '{}', 'again');
});
$node->poll_query_until('postgres', q{SELECT status FROM withdrawal.withdrawal WHERE idempotency_key = 'again'}, 'paid')
  or die 'not paid after CREATE EXTENSION again';
my @errors = grep { /withdrawal worker ERROR/ } split /\n/, substr(slurp_file($node->logfile), $log_offset);
cmp_ok(scalar(@errors), '<=', 2, 'DROP EXTENSION under the worker: back to waiting, without an ERROR at every pass')
  or diag(join("\n", @errors[0 .. 4]));

$node->stop;
ok(!$node->log_contains('TRAP|server process .* was terminated by signal'), 'no assertion failure or crash');
done_testing();
