# Holds the worker enforces (issue 13):
# 1. a daily cap lowered below what a channel accepted today holds the
#    channel's queued payouts, unsent, until the channel's next day; the
#    worker says so once, and sends them when the day turns (here: the
#    channel moves to a time zone where it is another date);
# 2. the first worker rejects and refunds withdrawals left in review
#    longer than their policy's review_expires_after, by itself (every
#    minute), each audited.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalDispatchTest;

my $node = dispatch_node('holds', undef, workers => 1);
$node->safe_psql('postgres', q{
	CREATE ROLE holds_ops LOGIN IN ROLE withdrawal_ops;
	INSERT INTO withdrawal.channel (name, processor, daily_count_cap, cap_currency)
		VALUES ('nightly', 'sandbox', 3, 'USD');
	-- 5000 and more waits for review; review holds expire after an hour
	UPDATE withdrawal.policy SET review_threshold = 5000, review_expires_after = '1 hour'
	 WHERE currency = '*';
});

# 2 (set up first: the worker looks once a minute). Requested two hours
# ago, as far as the books know.
$node->safe_psql('postgres', q{
	SELECT withdrawal.request('acct5', 'USD', 7000, 'bank', '{"iban": "x"}', 'stale');
	UPDATE withdrawal.withdrawal SET created_at = now() - interval '2 hours'
	 WHERE idempotency_key = 'stale';
});

# 1. Three withdrawals held for review fill the day's cap of three.
$node->safe_psql('postgres', q{
	SELECT withdrawal.request('acct1', 'USD', 6000 + i, 'nightly', '{"iban": "x"}', 'night' || i)
	  FROM generate_series(1, 3) i;
});
my ($rc, $out, $err) = $node->psql('postgres',
	q{SELECT withdrawal.request('acct2', 'USD', 100, 'nightly', '{"iban": "x"}', 'night4')});
like($err, qr/daily count cap is reached/, 'a fourth request of the day is refused (WD004)');

# The bank cuts tonight's allocation to one; then operators approve all
# three, which were accepted before.
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	UPDATE withdrawal.channel SET daily_count_cap = 1 WHERE name = 'nightly';
	SET SESSION AUTHORIZATION holds_ops;
	SELECT withdrawal.approve(withdrawal_id) FROM withdrawal.withdrawals
	 WHERE channel = 'nightly' ORDER BY withdrawal_id;
});
$node->wait_for_log(qr/withdrawal channel "nightly" cannot dispatch: its daily count cap \(1\) is below the 3 withdrawals it accepted on \d{4}-\d{2}-\d{2}; its payouts wait for the next day/,
	$log_offset);
ok(1, 'the worker says why the channel waits');
# a payout on another channel is paid meanwhile: the worker did claim
$node->safe_psql('postgres',
	q{SELECT withdrawal.request('acct3', 'USD', 100, 'sandbox', '{"iban": "x"}', 'other')});
ok($node->poll_query_until('postgres', q{
	SELECT status = 'paid' FROM withdrawal.withdrawal WHERE idempotency_key = 'other'}),
	'other channels are paid meanwhile');
is($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT status || ' ' || attempts || ' ' || (sent_at IS NULL), ',')
	  FROM withdrawal.withdrawal WHERE channel = 'nightly'}),
	'queued 0 true', 'the capped channel\'s payouts stay queued, never sent');

# The next channel day: a time zone where it is already (or still) another
# date.  Its counter starts at zero, so the held payouts go.
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	UPDATE withdrawal.channel SET timezone =
		CASE WHEN (now() AT TIME ZONE 'Etc/GMT-14')::date <> (now() AT TIME ZONE 'UTC')::date
			 THEN 'Etc/GMT-14' ELSE 'Etc/GMT+12' END
	 WHERE name = 'nightly';
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 3 FROM withdrawal.withdrawal WHERE channel = 'nightly' AND status = 'paid'}),
	'the next day, the held payouts are paid');
$node->wait_for_log(qr/withdrawal channel "nightly" can dispatch again/, $log_offset);
ok(1, 'the worker says the channel dispatches again');

# 2. The stale review is expired by the worker within a minute.
ok($node->poll_query_until('postgres', q{
	SELECT status = 'rejected' AND reason = 'review expired after 01:00:00'
	  FROM withdrawal.withdrawal WHERE idempotency_key = 'stale'}),
	'the worker rejected the withdrawal whose review expired');
is($node->safe_psql('postgres', q{
	SELECT a.actor || ' ' || a.action || ' ' || a.before_status || '->' || a.after_status
	  FROM withdrawal.audit_log a JOIN withdrawal.withdrawal w USING (withdrawal_id)
	 WHERE w.idempotency_key = 'stale' AND a.action = 'expire_review'}),
	'withdrawal_worker expire_review review->rejected', 'audited as the worker');
is($node->safe_psql('postgres', q{SELECT available, held FROM withdrawal.balance('acct5', 'USD')}),
	'100000000|0', 'refunded');
is($node->safe_psql('postgres', q{
	SELECT coalesce(string_agg(check_name || '=' || violations, ', '), 'clean')
	  FROM withdrawal.check_invariants() WHERE violations <> 0}),
	'clean', 'the books are clean');

$node->stop;
done_testing();
