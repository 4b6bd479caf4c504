# Poison payouts: outcomes that cannot be recorded, and payouts on the wire
# when a worker dies, must never crash the worker (or, through it, reset
# the whole cluster), and must not be taken again at once after a restart.
#
# 1. 1000 good and 1000 poison payouts mixed: recording a poison payout's
#    outcome always fails (a trigger refuses it).  Every good one is paid;
#    every poison one is parked after withdrawal.park_after failures, with
#    its reason, shown in withdrawal.parked_payouts, still held and paid at
#    most once by the processor; retry() resumes them once fixed.
# 2. A payout that is on the wire each time a worker dies is re-queued with
#    a backoff, each death counted, and parked at withdrawal.park_after.
# 3. The audit chain is sealed correctly while sealing keeps failing.
# No process may die of a signal it was not sent.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalDispatchTest;
use WithdrawalMock;

my $mock = WithdrawalMock->new();
# The hung payout of part 2 must stay on the wire until the test kills the
# worker, however slow the machine: a timeout far beyond the test's
# reaction time, and a lease longer than the timeout.
my $node = dispatch_node('poison', $mock, workers => 2,
	conf => "withdrawal.park_after = 3\nrestart_after_crash = on\n"
	  . "withdrawal.http_timeout = '60s'\nwithdrawal.lease = '90s'\n");

# Recording the outcome of an amount ending in 666 always fails.
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.amount % 1000 = 666 AND NEW.status IN ('submitted', 'paid', 'failed', 'dead')
		   AND NEW.status IS DISTINCT FROM OLD.status THEN
			RAISE EXCEPTION 'poison payout % cannot be recorded', NEW.withdrawal_id;
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER poison BEFORE UPDATE ON withdrawal.withdrawal
		FOR EACH ROW EXECUTE FUNCTION public.poison();
});

# 1. 2000 payouts, every other one poison.
request_many($node, 2000, 'bank', amount => 'CASE WHEN i % 2 = 0 THEN 1666 ELSE 1000 + i % 50 END',
	prefix => 'mix');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) FILTER (WHERE w.status = 'paid') = 1000
	   AND count(*) FILTER (WHERE o.parked_at IS NOT NULL) = 1000
	  FROM withdrawal.withdrawal w LEFT JOIN withdrawal.outbox o USING (withdrawal_id)}),
	'1000 good payouts paid and 1000 poison payouts parked')
  or diag($node->safe_psql('postgres', q{
	SELECT w.status, o.parked_at IS NOT NULL AS parked, count(*)
	  FROM withdrawal.withdrawal w LEFT JOIN withdrawal.outbox o USING (withdrawal_id) GROUP BY 1, 2}));
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM withdrawal.parked_payouts
	 WHERE amount = 1666 AND failures = 3 AND status = 'dispatching'
	   AND park_reason LIKE 'could not record outcome paid: poison payout % cannot be recorded'}),
	'1000', 'each poison payout parked after 3 failures, with its reason, in parked_payouts');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM withdrawal.withdrawal WHERE amount = 1666
	   AND last_error LIKE 'could not record outcome paid: poison payout%'}),
	'1000', "the reason is in the withdrawal's last_error as well");
is($node->safe_psql('postgres', q{SELECT held FROM withdrawal.wallet WHERE account_id = 'acct1'}),
	$node->safe_psql('postgres', q{SELECT sum(amount) FROM withdrawal.withdrawal WHERE account_id = 'acct1' AND amount = 1666}),
	'parked payouts keep their funds held');
my $s = no_double_payout($node, $mock, 'poison mix', allow_errors => qr/poison payout .* cannot be recorded/);
is($s->{effective_payouts}, 2000, 'the processor paid every payout once (parked ones included)');
ok(!$node->log_contains('terminated by signal'), 'no process died of a signal');
ok(!$node->log_contains('reinitializing'), 'the cluster was never reset');

# Fixed, then resumed by ops: paid once, by the processor's replay.
$node->safe_psql('postgres', q{DROP TRIGGER poison ON withdrawal.withdrawal});
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM withdrawal.parked_payouts p, withdrawal.retry(p.withdrawal_id) r WHERE r = 'dispatching'}),
	'1000', 'retry() resumes every parked payout');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2000 FROM withdrawal.withdrawal WHERE status = 'paid'}),
	'resumed payouts paid');
$s = no_double_payout($node, $mock, 'poison resumed', allow_errors => qr/poison payout .* cannot be recorded/);
is($s->{effective_payouts}, 2000, 'resuming paid nothing twice');

# 2. A worker dies each time a payout is on the wire: hang it at the
# processor, kill -9 the workers, three times.
$mock->post('/_control/faults', { rules => [ { fault => 'hang', amount => 7777 } ] });
$node->safe_psql('postgres', q{SELECT withdrawal.request('acct1', 'USD', 7777, 'bank', '{"iban": "x"}', 'killer')});
for my $death (1 .. 3)
{
	wait_for("the payout hung at the processor before death $death",
		sub { $mock->get('/_control/stats?keys=0')->{hung} >= 1 });
	my $log_offset = -s $node->logfile;
	kill 'KILL', $_ for split /\n/, $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'withdrawal worker'});
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
	$node->wait_for_log(qr/re-queued 1 payouts claimed before it restarted/, $log_offset);
	is($node->safe_psql('postgres', q{
		SELECT failures FROM withdrawal.outbox o JOIN withdrawal.withdrawal w USING (withdrawal_id)
		 WHERE w.idempotency_key = 'killer'}), $death, "death $death counted against the payout");
	# the hung connection died with the worker
	wait_for('the mock to notice', sub { $mock->get('/_control/stats?keys=0')->{hung} == 0 });
}
is($node->safe_psql('postgres', q{
	SELECT p.status || ' ' || (p.park_reason LIKE 'a worker died 3 times%') FROM withdrawal.parked_payouts p
	  JOIN withdrawal.withdrawal w USING (withdrawal_id) WHERE w.idempotency_key = 'killer'}),
	'dispatching true', 'parked after the third death, with the reason');
$mock->post('/_control/faults', { rules => [] });
$mock->post('/_control/reset', {});

# 3. Sealing fails every other time; the chain is still right.
$node->safe_psql('postgres', q{
	CREATE SEQUENCE public.flaky;
	CREATE FUNCTION public.flaky_seal() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF nextval('public.flaky') % 2 = 0 THEN
			RAISE EXCEPTION 'sealing fails this time';
		END IF;
		RETURN NULL;
	END $$;
	GRANT USAGE ON SEQUENCE public.flaky TO PUBLIC;
	CREATE TRIGGER flaky BEFORE INSERT ON withdrawal.audit_seal
		FOR EACH STATEMENT EXECUTE FUNCTION public.flaky_seal();
});
request_many($node, 300, 'sandbox', amount => '100', prefix => 'seal');
$node->poll_query_until('postgres', q{
	SELECT count(*) = 300 FROM withdrawal.withdrawal WHERE idempotency_key LIKE 'seal%' AND status = 'paid'})
  or die 'sandbox payouts not paid: ' . $node->safe_psql('postgres', q{
	SELECT string_agg(s, E'\n') FROM (
	  SELECT status || ' ' || count(*) AS s FROM withdrawal.withdrawal WHERE idempotency_key LIKE 'seal%' GROUP BY status
	  UNION ALL SELECT 'outbox ' || kind || ' ' || (lease_until IS NULL) || ' ' || (next_attempt_at <= now()) || ' ' || count(*)
	    FROM withdrawal.outbox GROUP BY kind, lease_until IS NULL, next_attempt_at <= now()
	  UNION ALL SELECT 'worker ' || pid || ' ' || coalesce(wait_event, '-') || ' ' || coalesce(query, '-')
	    FROM pg_stat_activity WHERE backend_type = 'withdrawal worker'
	  UNION ALL SELECT 'events ' || count(*) || ' due ' || count(*) FILTER (WHERE due_at <= now()) FROM withdrawal.sandbox_event) x});
$node->poll_query_until('postgres', q{
	SELECT (SELECT count(*) FROM withdrawal.audit_seal) = (SELECT count(*) FROM withdrawal.audit_log)})
  or die 'audit log not sealed';
ok($node->log_contains('sealing fails this time'), 'sealing failed on the way');
is($node->safe_psql('postgres', q{SELECT ok || ' ' || checked FROM withdrawal.verify_audit()}),
	'true ' . $node->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.audit_log}),
	'the chain verifies over every audit row');

ok(!$node->log_contains(qr/terminated by signal (?!9:)/), 'no process died of a signal it was not sent');
$node->stop;
$mock->stop;
done_testing();
