# Reconciliation scheduled with pg_cron, as the README tells DBAs to do:
# pg_cron (Debian's postgresql-15-cron) runs reconcile('sandbox') every
# minute; the run is recorded, continues where the previous run ended, and
# a run that finds discrepancies notifies channel withdrawal_recon (and
# one that finds only differences within tolerance does not).
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('reconcile_cron');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
# jobs run in background workers: the test cluster listens on a socket
# directory of its own, not on localhost
cron.use_background_workers = on
max_worker_processes = 16
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION withdrawal;
	CREATE EXTENSION pg_cron;
	SELECT withdrawal.credit('dave', 'USD', 10000, 'cron-fund');
});

# A payout the ledger settled and no report mentions: a discrepancy.
$node->safe_psql('postgres', q{
	SELECT withdrawal.transition(withdrawal_id, 'dispatching'),
		   withdrawal.transition(withdrawal_id, 'submitted'),
		   withdrawal.transition(withdrawal_id, 'paid')
	  FROM withdrawal.request('dave', 'USD', 250, 'sandbox', '{"bank": "x"}', 'cron-w1');
});

# A run by hand: psql prints the notification it receives after the query.
my ($ret, $out, $err) = $node->psql('postgres', q{
	LISTEN withdrawal_recon;
	SELECT kind FROM withdrawal.reconcile('sandbox');
});
is($ret, 0, 'manual reconcile ran');
like($out, qr/missing_at_processor/, 'the unreported payout is missing at the processor');
like($out, qr/Asynchronous notification "withdrawal_recon" with payload "\{"run_id": \d+, "processor": "sandbox", "discrepancies": 1\}"/,
	'a run with discrepancies notifies withdrawal_recon');

# A clean run does not notify.
$node->safe_psql('postgres', q{
	SELECT withdrawal.import_settlement('sandbox',
		'processor_ref,withdrawal_id,amount,currency,status,settled_at' || E'\n'
		|| 'sb_1,' || withdrawal_id || ',250,USD,paid,' || now() || E'\n')
	  FROM withdrawal.withdrawal WHERE idempotency_key = 'cron-w1';
});
($ret, $out, $err) = $node->psql('postgres', q{
	LISTEN withdrawal_recon;
	SELECT count(*) FROM withdrawal.reconcile('sandbox', now() - interval '1 hour', now());
});
is($out, '0', 'the reported payout reconciles: no items');
unlike($out, qr/Asynchronous notification/, 'a clean run does not notify');

# pg_cron: schedule it every minute and wait for the run to be recorded.
$node->safe_psql('postgres', q{
	SELECT cron.schedule('withdrawal-reconcile', '* * * * *',
		$$SELECT count(*) FROM withdrawal.reconcile('sandbox')$$);
});
ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 3 FROM withdrawal.recon_run WHERE processor = 'sandbox'
	}), "pg_cron ran reconcile('sandbox') and the run is recorded")
  or diag($node->safe_psql('postgres', 'SELECT status, return_message FROM cron.job_run_details'));
ok($node->poll_query_until('postgres', q{
		SELECT bool_or(status = 'succeeded') FROM cron.job_run_details
	}), 'pg_cron reports the job succeeded');

# The scheduled run started where the previous run ended.
is($node->safe_psql('postgres', q{
	SELECT string_agg((period_start = prev_end)::text, ',' ORDER BY run_id)
	  FROM (SELECT run_id, period_start, lag(period_end) OVER (ORDER BY run_id) AS prev_end
			  FROM withdrawal.recon_run) r
	 WHERE prev_end IS NOT NULL
}), 'false,true', 'the scheduled run covers from the end of the previous run');
is($node->safe_psql('postgres', q{
	SELECT processor || ':' || discrepancies FROM withdrawal.recon_summary
}), 'sandbox:0', 'the summary shows the latest run, clean');

$node->safe_psql('postgres', q{SELECT cron.unschedule('withdrawal-reconcile')});

# A difference within the processor's tolerance is reported, but is no
# discrepancy: the run does not notify.
$node->safe_psql('postgres', q{
	INSERT INTO withdrawal.processor (name, driver, base_url, recon_tolerance_abs)
		VALUES ('tol', 'http', 'https://tol.example', 10);
	INSERT INTO withdrawal.channel (name, processor) VALUES ('tol', 'tol');
	SELECT withdrawal.transition(withdrawal_id, 'dispatching'),
		   withdrawal.transition(withdrawal_id, 'submitted'),
		   withdrawal.transition(withdrawal_id, 'paid')
	  FROM withdrawal.request('dave', 'USD', 300, 'tol', '{"bank": "x"}', 'tol-w1');
});
$node->safe_psql('postgres', q{
	SELECT withdrawal.import_settlement('tol',
		'processor_ref,withdrawal_id,amount,currency,status,settled_at' || E'\n'
		|| 'tol_1,' || withdrawal_id || ',295,USD,paid,' || now() || E'\n')
	  FROM withdrawal.withdrawal WHERE idempotency_key = 'tol-w1';
});
($ret, $out, $err) = $node->psql('postgres', q{
	LISTEN withdrawal_recon;
	SELECT kind FROM withdrawal.reconcile('tol', now() - interval '1 hour', now());
});
like($out, qr/^amount_within_tolerance$/m, 'a fee within tolerance is reported');
unlike($out, qr/Asynchronous notification/, 'a run with only differences within tolerance does not notify');
is($node->safe_psql('postgres', q{
	SELECT discrepancies || ' ' || amount_within_tolerance FROM withdrawal.recon_summary WHERE processor = 'tol'
}), '0 1', 'the run counts no discrepancy');
$node->stop;
done_testing();
