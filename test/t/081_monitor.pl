# The monitoring views under load, read by a role that is only a member of
# pg_monitor (and by withdrawal_ops; withdrawal_app is refused):
# - a processor that hangs on one channel while another is healthy: the
#   hung channel's requests on the wire in monitor_channels and in the
#   workers' in_flight, equal to what the processor holds;
# - a 429 with Retry-After on a rate-limited channel: the pause (blocked,
#   blocked_until), the throttle count, the bucket's tokens;
# - a disabled channel and one whose processor has no API key: due rows,
#   and why it cannot dispatch;
# - dead, failed (declined), parked (outcome cannot be recorded) and
#   review payouts: monitor_queue equals a direct count, the summary's
#   counts, one LOG line per failed or dead payout, the workers' counters,
#   last error and last send error;
# - the workers' pids equal those pg_stat_activity shows a superuser
#   (withdrawal_ops sees none there);
# - the audit chain's lag while the sealers' row is held, and its head;
# - the latest reconciliation;
# - every query of contrib/postgres_exporter/queries.yaml returns rows with
#   its labels set, as the pg_monitor member.
use strict;
use warnings FATAL => 'all';

use CPAN::Meta::YAML;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalDispatchTest;
use WithdrawalMock;

my $mock = WithdrawalMock->new();
my $hung = WithdrawalMock->new();
my $node = dispatch_node('monitor', $mock, workers => 2, conf => qq{
withdrawal.max_in_flight = 8
withdrawal.channel_share = 50
withdrawal.http_timeout = '10min'
withdrawal.lease = '5min'
withdrawal.max_attempts = 3
withdrawal.park_after = 3
lc_messages = 'C'
});
$node->safe_psql('postgres', qq{
	CREATE ROLE mon LOGIN IN ROLE pg_monitor;
	CREATE ROLE ops LOGIN IN ROLE withdrawal_ops;
	CREATE ROLE app LOGIN IN ROLE withdrawal_app;
	INSERT INTO withdrawal.processor (name, driver, base_url, request_timeout_ms) VALUES
		('hungproc', 'http', '@{[ $hung->url ]}', 600000);
	INSERT INTO withdrawal.processor (name, driver, base_url, api_secret) VALUES
		('keyless', 'http', '@{[ $mock->url ]}', 'missing_key');
	INSERT INTO withdrawal.channel (name, processor) VALUES
		('slowbank', 'hungproc'), ('off', 'mockhttp'), ('nokey', 'keyless');
	INSERT INTO withdrawal.channel (name, processor, rate_per_second, burst) VALUES ('metered', 'mockhttp', 2, 3);
	INSERT INTO withdrawal.policy (currency, review_threshold) VALUES ('USD', 500000);
	-- recording the outcome of 1666 always fails: the payout is parked
	CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS \$\$
	BEGIN
		IF NEW.amount = 1666 AND NEW.status IS DISTINCT FROM OLD.status
		   AND NEW.status IN ('submitted', 'paid', 'failed', 'dead') THEN
			RAISE EXCEPTION 'poison payout % cannot be recorded', NEW.withdrawal_id;
		END IF;
		RETURN NEW;
	END \$\$;
	CREATE TRIGGER poison BEFORE UPDATE ON withdrawal.withdrawal
		FOR EACH ROW EXECUTE FUNCTION public.poison();
});

sub mon { return $node->safe_psql('postgres', $_[0], extra_params => [ '-U', 'mon' ]); }

# The workers as pg_stat_activity shows them to a superuser
sub activity_pids
{
	return $node->safe_psql('postgres', q{
		SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
		 WHERE backend_type = 'withdrawal worker' AND usename = 'withdrawal_worker'});
}

# The workers: their pids are those pg_stat_activity shows a superuser.
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM withdrawal.monitor_workers WHERE state = 'dispatching'}),
	'both workers say they are dispatching');
my $pids = activity_pids();
like($pids, qr/^\d+,\d+$/, 'two workers in pg_stat_activity');
is(mon(q{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM withdrawal.monitor_workers}),
	$pids, 'monitor_workers: the pids of pg_stat_activity');
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'withdrawal worker'},
	extra_params => [ '-U', 'ops' ]),
	'0', 'pg_stat_activity shows withdrawal_ops no worker (it needs pg_read_all_stats)');
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM withdrawal.monitor_workers WHERE pid IS NOT NULL AND last_loop_at > now() - interval '1 minute'},
	extra_params => [ '-U', 'ops' ]),
	'2', 'monitor_workers shows withdrawal_ops both, recently looping');

# A channel whose processor cannot be used says why.
ok($node->poll_query_until('postgres', q{
	SELECT cannot_dispatch LIKE 'api secret "missing_key" of processor "keyless" is not in withdrawal.secrets_file'
	  FROM withdrawal.monitor_channels WHERE channel = 'nokey'}),
	'monitor_channels: why a channel cannot dispatch');

# The load.
$hung->post('/_control/faults', { rules => [ { fault => 'hang' } ] });
$mock->post('/_control/faults', { rules => [
	{ fault => '429', retry_after => 60, times => 1, amount => 5555 },
	{ fault => '503', amount => 7777 },
	{ fault => 'reject', amount => 8888, status => 400, code => 'account_closed' },
] });
request_many($node, 12, 'slowbank', amount => '3000', prefix => 'slow');
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT withdrawal.request('acct1', 'USD', 4000 + i, 'off', '{"iban": "x"}', 'off' || i) FROM generate_series(1, 3) i;
	UPDATE withdrawal.channel SET enabled = false WHERE name = 'off';
	COMMIT;
	SELECT withdrawal.request('acct2', 'USD', 5555, 'metered', '{"iban": "x"}', 'throttled');
	SELECT withdrawal.request('acct3', 'USD', 7777, 'bank', '{"iban": "x"}', 'dies');
	SELECT withdrawal.request('acct4', 'USD', 8888, 'bank', '{"iban": "x"}', 'declined');
	SELECT withdrawal.request('acct5', 'USD', 1666, 'bank', '{"iban": "x"}', 'poison');
	SELECT withdrawal.request('acct6', 'USD', 600000, 'bank', '{"iban": "x"}', 'big');
});
request_many($node, 20, 'bank', amount => '2000 + i', prefix => 'fast');

my %id = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
	SELECT idempotency_key, withdrawal_id FROM withdrawal.withdrawal
	 WHERE idempotency_key IN ('throttled', 'dies', 'declined', 'poison', 'big')});

ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 20 FROM withdrawal.withdrawal WHERE channel = 'bank' AND amount BETWEEN 2001 AND 2020 AND status = 'paid'}),
	'the healthy channel is paid while the other hangs');
ok($node->poll_query_until('postgres', qq{
	SELECT (SELECT status FROM withdrawal.withdrawal WHERE withdrawal_id = '$id{dies}') = 'dead'
	   AND (SELECT status FROM withdrawal.withdrawal WHERE withdrawal_id = '$id{declined}') = 'failed'
	   AND (SELECT parked_at IS NOT NULL FROM withdrawal.outbox WHERE withdrawal_id = '$id{poison}')}),
	'one payout dead, one declined, one parked');
# The parked payout's resends were not held up by the metered channel's
# pause (a resend after a failure to record is claimed when it falls due).

# The hung channel: its requests on the wire, as the processor holds them.
wait_for('the hung channel to fill its share', sub {
	my $held = $hung->get('/_control/stats?keys=0')->{hung};
	$held > 0 && mon(q{SELECT in_flight FROM withdrawal.monitor_channels WHERE channel = 'slowbank'}) eq $held;
});
my $held = $hung->get('/_control/stats?keys=0')->{hung};
cmp_ok($held, '>', 0, "the hung processor holds $held requests");
is(mon(q{SELECT in_flight FROM withdrawal.monitor_channels WHERE channel = 'slowbank'}),
	$held, 'monitor_channels: in_flight of the hung channel is what the processor holds');
cmp_ok(mon(q{SELECT sum(in_flight) FROM withdrawal.monitor_workers}), '>=', $held,
	'monitor_workers: the workers have them on the wire');
is(mon(q{SELECT in_flight FROM withdrawal.monitor_channels WHERE channel = 'bank'}),
	'0', 'the healthy channel has nothing on the wire');

# The 429: the metered channel is paused, counted, and its bucket shown.
ok($node->poll_query_until('postgres', q{
	SELECT blocked AND blocked_until > now() + interval '30 seconds' AND throttled = 1
	   AND rate_per_second = 2 AND burst = 3 AND tokens BETWEEN 0 AND 3
	  FROM withdrawal.monitor_channels WHERE channel = 'metered'}, 't'),
	'monitor_channels: a Retry-After of 60 s pauses the metered channel, counted once; its bucket shown');
is(mon(q{SELECT blocked::text || ' ' || throttled FROM withdrawal.monitor_channels WHERE channel = 'bank'}),
	'false 0', 'the other channels are not paused');

# The disabled channel: its payouts due, nothing it could say.
is(mon(q{SELECT enabled::text || ' ' || outbox || ' ' || due || ' ' || (oldest_due_at < now())::text || ' '
		  || coalesce(cannot_dispatch, 'none') FROM withdrawal.monitor_channels WHERE channel = 'off'}),
	'false 3 3 true none', 'monitor_channels: a disabled channel, its payouts due');

# The queue: exactly a direct count, seen in one snapshot.
my $diff = q{
	WITH direct AS (
		SELECT channel, status::text AS status, count(*) AS payouts, min(created_at) AS oldest_created_at,
			   min(updated_at) AS oldest_updated_at
		  FROM withdrawal.withdrawal
		 WHERE status IN ('review', 'queued', 'dispatching', 'submitted', 'dead') GROUP BY 1, 2),
	view AS (SELECT * FROM withdrawal.monitor_queue WHERE payouts > 0)
	SELECT count(*) FROM ((SELECT * FROM direct EXCEPT SELECT * FROM view)
						  UNION ALL (SELECT * FROM view EXCEPT SELECT * FROM direct)) d};
is($node->safe_psql('postgres', "BEGIN ISOLATION LEVEL REPEATABLE READ; $diff; COMMIT;"),
	'0', 'monitor_queue: the counts and oldest times of a direct count');
is(mon(q{SELECT string_agg(channel || ':' || status || '=' || payouts, ' ' ORDER BY channel, status)
		   FROM withdrawal.monitor_queue
		  WHERE payouts > 0 AND channel IN ('bank', 'off') AND status IN ('review', 'queued', 'dead')}),
	'bank:dead=1 bank:review=1 off:queued=3', 'monitor_queue: dead, review and queued payouts where they are');
is(mon(q{SELECT payouts > 0 AND oldest_created_at < now() AND oldest_updated_at < now()
		   FROM withdrawal.monitor_queue WHERE channel = 'slowbank' AND status = 'dispatching'}),
	't', 'monitor_queue: the hung payouts are dispatching, with their age');
is(mon(q{SELECT count(*) FROM withdrawal.monitor_queue}),
	mon(q{SELECT 5 * count(*) FROM withdrawal.monitor_channels}), 'monitor_queue: every open status of every channel');

# The summary.
is(mon(q{SELECT review || ' ' || dead || ' ' || parked || ' ' || workers || ' ' || workers_running
		   FROM withdrawal.monitor_summary}),
	'1 1 1 2 2', 'monitor_summary: review, dead, parked, workers');
is(mon(q{SELECT parked FROM withdrawal.monitor_channels WHERE channel = 'bank'}), '1',
	'monitor_channels: the parked payout on its channel');

# The log: one line per failed or dead payout, with id, channel, reason.
my $log = slurp_file($node->logfile);
my @dead = $log =~ /LOG:  withdrawal \Q$id{dies}\E on channel "bank" is dead, its funds held for an operator: (.*)/g;
is(scalar(@dead), 1, 'one LOG line for the dead payout');
like($dead[0] // '', qr/503/, 'it gives the reason');
my @failed = $log =~ /LOG:  withdrawal \Q$id{declined}\E on channel "bank" failed and was refunded: (.*)/g;
is(scalar(@failed), 1, 'one LOG line for the declined payout');
like($failed[0] // '', qr/account_closed/, 'it gives the reason');
unlike($log, qr/withdrawal \Q$id{poison}\E on channel "bank" (failed|is dead)/,
	'nothing said of a transition that was rolled back');

# The workers' counters and last errors.
is(mon(q{SELECT sum(failed) || ' ' || sum(dead) FROM withdrawal.monitor_workers}), '1 1',
	'monitor_workers: one failed and one dead payout counted');
is(mon(q{SELECT sum(sent) >= 20 AND sum(recorded) >= 20 AND sum(send_errors) >= 4 FROM withdrawal.monitor_workers}),
	't', 'monitor_workers: requests sent, outcomes recorded, failed attempts (3 times 503, one 429)');
like(mon(q{SELECT string_agg(last_error, ' | ') FROM withdrawal.monitor_workers WHERE last_error_at <= now()}),
	qr/withdrawal: recording an outcome: poison payout \Q$id{poison}\E cannot be recorded/,
	'monitor_workers: the last error, with what the worker was doing');
like(mon(q{SELECT string_agg(last_send_error, ' | ') FROM withdrawal.monitor_workers WHERE last_send_error_at <= now()}),
	qr/channel "(bank|metered)": HTTP (503|429)/, 'monitor_workers: the last failed attempt, with its channel');

# The audit chain: its lag while the sealers' row is held, then sealed.
ok($node->poll_query_until('postgres', q{
	SELECT audit_unsealed = 0 AND audit_head_seq = (SELECT seq FROM withdrawal.audit_head())
	  FROM withdrawal.monitor_summary}),
	'monitor_summary: the audit chain is sealed by the worker, its head as audit_head() says');
my $holder = $node->background_psql('postgres', on_error_stop => 1);
$holder->query_safe('BEGIN');
$holder->query_safe('SELECT 1 FROM withdrawal.lock_slot WHERE slot_id = 0 FOR UPDATE');
$node->safe_psql('postgres', q{SELECT withdrawal.set_account('acct' || i, kyc_level => 1) FROM generate_series(1, 5) i});
my $lag = q{
	BEGIN ISOLATION LEVEL REPEATABLE READ;
	SELECT m.audit_unsealed = d.n AND m.audit_oldest_unsealed_at = d.oldest AND m.audit_unsealed >= 5
		   AND m.audit_oldest_unsealed_at < now()
	  FROM withdrawal.monitor_summary m,
		   (SELECT count(*) AS n, min(logged_at) AS oldest FROM withdrawal.audit_log
			 WHERE audit_id > (SELECT max(audit_id) FROM withdrawal.audit_seal)) d;
	COMMIT;};
is($node->safe_psql('postgres', $lag), 't',
	'monitor_summary: while nothing can seal, the unsealed rows and the oldest one, as counted directly');
my $seq = mon(q{SELECT audit_head_seq FROM withdrawal.monitor_summary});
$holder->query_safe('COMMIT');
$holder->quit;
ok($node->poll_query_until('postgres', qq{
	SELECT audit_unsealed = 0 AND audit_oldest_unsealed_at IS NULL AND audit_head_seq > $seq
	  FROM withdrawal.monitor_summary}),
	'monitor_summary: sealed again once released, the head moved on');

# The latest reconciliation.
my $found = $node->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.reconcile('mockhttp')});
cmp_ok($found, '>=', 20, "a reconciliation without a settlement report finds $found payouts missing");
is(mon(q{SELECT last_reconcile_processor || ' ' || last_reconcile_discrepancies || ' ' || (last_reconcile_finished_at <= now())::text
		   FROM withdrawal.monitor_summary}),
	"mockhttp $found true", 'monitor_summary: the latest reconciliation and its discrepancies');
is(mon(q{SELECT string_agg(processor || '=' || coalesce(discrepancies::text, 'never'), ' ' ORDER BY processor)
		   FROM withdrawal.monitor_reconcile}),
	"hungproc=never keyless=never mockhttp=$found mockstripe=never sandbox=never",
	'monitor_reconcile: the latest run of each processor');
is($node->safe_psql('postgres', q{
	SELECT m.run_id = r.run_id AND m.finished_at = r.finished_at AND m.period_end = r.period_end
	  FROM withdrawal.monitor_reconcile m JOIN withdrawal.recon_run r USING (run_id)
	 WHERE m.processor = 'mockhttp'}), 't', 'monitor_reconcile: that run, as recorded');

# Who may read.
for my $view (qw(monitor_queue monitor_channels monitor_workers monitor_summary monitor_reconcile))
{
	for my $role (qw(mon ops))
	{
		my ($ret, $out, $err) = $node->psql('postgres', "SELECT count(*) > 0 FROM withdrawal.$view",
			extra_params => [ '-U', $role ]);
		is("$ret $out", '0 t', "$view: readable by $role");
	}
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT count(*) FROM withdrawal.$view",
		extra_params => [ '-U', 'app', '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  42501: permission denied for view $view/, "$view: refused to withdrawal_app (42501)");
}
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT * FROM withdrawal.channel_state()',
	extra_params => [ '-U', 'mon', '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  42501: permission denied for function channel_state/,
	'the raw shared state is read through monitor_channels only');

# The postgres_exporter queries, as the pg_monitor member.
my $yaml = CPAN::Meta::YAML->read('contrib/postgres_exporter/queries.yaml')
  or die CPAN::Meta::YAML->errstr;
my $queries = $yaml->[0];
my $json = JSON::PP->new;
is(join(' ', sort keys %$queries),
	'withdrawal_channel withdrawal_queue withdrawal_reconcile withdrawal_summary withdrawal_worker',
	'queries.yaml: the five queries');
for my $name (sort keys %$queries)
{
	my $q = $queries->{$name};
	my @metrics = map { my ($col) = keys %$_; [ $col, $_->{$col}{usage} ] } @{ $q->{metrics} };
	my @rows = map { $json->decode($_) } split /\n/,
	  mon("SELECT row_to_json(q) FROM ($q->{query}) q");
	cmp_ok(scalar(@rows), '>=', 1, "$name: returns rows");
	my @bad;
	for my $row (@rows)
	{
		for my $m (@metrics)
		{
			my ($col, $usage) = @$m;
			if (!exists $row->{$col})
			{
				push @bad, "$col missing";
			}
			elsif ($usage eq 'LABEL')
			{
				push @bad, "label $col is null" unless defined $row->{$col};
			}
			elsif ($usage eq 'GAUGE' || $usage eq 'COUNTER')
			{
				push @bad, "$col is not a number: $row->{$col}"
				  if defined $row->{$col} && $row->{$col} !~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/i;
			}
			else
			{
				push @bad, "$col has usage $usage";
			}
		}
		push @bad, 'columns without a metric: ' . join(',', grep { my $c = $_; !grep { $_->[0] eq $c } @metrics } keys %$row)
		  if keys %$row != @metrics;
	}
	is(join('; ', @bad), '', "$name: every metric column, labels set, values numeric");
}

# Released: the hung channel empties.
$hung->post('/_control/reset', {});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 12 FROM withdrawal.withdrawal WHERE channel = 'slowbank' AND status = 'paid'}),
	'the hung channel is paid once its processor answers');
is(mon(q{SELECT in_flight FROM withdrawal.monitor_channels WHERE channel = 'slowbank'}), '0',
	'monitor_channels: nothing of it on the wire any more');
is(mon(q{SELECT payouts FROM withdrawal.monitor_queue WHERE channel = 'slowbank' AND status = 'dispatching'}), '0',
	'monitor_queue: nothing of it dispatching');

no_double_payout($node, $mock, 'monitor', allow_errors => qr/poison payout .* cannot be recorded/);
$node->stop;
$mock->stop;
$hung->stop;
done_testing();
