# Sharding by account behind a PL/Proxy router (router/withdrawal_router.sql,
# docs/sharding.md): two shard clusters, each with the extension and its
# worker, and a router database.
#
# 1. A storm of credits and requests through the router by four clients at
#    once, each sending the same idempotency keys in its own order: every
#    (account, key) is credited or requested once, every client gets the
#    same id back, and the accounts are spread over both shards.
# 2. Both shards dispatch to the mock (pending answers); webhooks delivered
#    through the router (twice each) find their shard by the withdrawal id;
#    a settlement report imported through the router is split by shard and
#    reconcile() through the router merges both shards' runs.  Invariants
#    are clean on every shard and through the router, and the mock made at
#    most one effective payout per withdrawal.
# 3. SQLSTATEs and roles through the router are those of one server.
# 4. A channel's cluster-wide rate is split between the shards by
#    configuration (rate / 2 each): the processor never sees more than the
#    cluster's rate + bursts in a 1 s window, and the payouts take at least
#    as long as the cluster's rate allows.
# 5. 2 -> 4 shards (docs/sharding.md): dispatch stops, the router closes
#    the old shards, each is copied (pg_dump / pg_restore; the copy holds
#    dispatch), each copy parks the payouts of the partitions it does
#    not own, the router maps the 256 partitions onto 4 shards, and the
#    payouts queued before the split are sent exactly once, by their new
#    owner; balances and withdrawals read through the router are those of
#    before.
use strict;
use warnings FATAL => 'all';

use Digest::SHA qw(hmac_sha256_hex);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalBooks;
use WithdrawalDispatchTest;
use WithdrawalMock;
use WithdrawalShards;

my $mock = WithdrawalMock->new(status => 'pending');
my $hook_secret = 'shard-hook-secret';
my $naccounts = 40;

# A shard (WithdrawalShards::shard_node, with the webhook secret); then
# install_shard(): the mock's "http" processor with that secret and channels
# "bank" (no limit) and "slow" (half of the cluster's 8/s), the same login
# roles as the router's cluster.
sub shard
{
	my ($name) = @_;
	return shard_node($name, secrets => { hook => $hook_secret });
}

sub install_shard
{
	my ($node) = @_;
	$node->safe_psql('postgres', qq{
		CREATE EXTENSION withdrawal;
		CREATE ROLE app LOGIN IN ROLE withdrawal_app;
		CREATE ROLE ops1 LOGIN IN ROLE withdrawal_ops;
		INSERT INTO withdrawal.processor (name, driver, base_url, webhook_secret, webhook_scheme, webhook_tolerance)
			VALUES ('mockhttp', 'http', '$mock->{url}', 'hook', 'hmac-sha256', '1 hour');
		INSERT INTO withdrawal.channel (name, processor) VALUES ('bank', 'mockhttp');
		INSERT INTO withdrawal.channel (name, processor, rate_per_second, burst)
			VALUES ('slow', 'mockhttp', 4, 1);
	});
}

# Runs @sqls at the same time, one psql each, on $db of $node; returns
# their outputs (dies if one fails).
sub parallel_psql
{
	my ($node, $db, @sqls) = @_;
	my @runs;
	for my $sql (@sqls)
	{
		my ($out, $err) = ('', '');
		my $h = IPC::Run::start(
			[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($db), '-c', $sql ],
			'>', \$out, '2>', \$err);
		push @runs, [ $h, \$out, \$err ];
	}
	my @outs;
	for my $r (@runs)
	{
		$r->[0]->finish or die "psql failed: ${ $r->[2] }";
		push @outs, ${ $r->[1] };
	}
	return @outs;
}

sub on_all
{
	my ($nodes, $sql) = @_;
	my $sum = 0;
	$sum += $_->safe_psql('postgres', $sql) for @$nodes;
	return $sum;
}

my @shards = map { shard("shard$_") } 0 .. 1;
install_shard($_) for @shards;
my $r = $shards[0];    # the router database lives in shard 0's cluster
is(install_router($r, 'router', map { shard_connstr($_) } @shards), '2', 'router configured with 2 shards');

# ---------------------------------------------------------------- the storm

my @credit_sql = map {
	qq{SELECT s.a || '|' || s.k || '|' || (withdrawal.credit(s.a, 'USD', 1000 * s.k, 'c' || s.k)).transfer_id
		 FROM (SELECT 'u' || i AS a, k FROM generate_series(1, $naccounts) i, generate_series(1, 5) k
				ORDER BY md5('$_' || i || '/' || k)) s}
} 1 .. 4;
my @credits = parallel_psql($r, 'router', @credit_sql);
my %transfer;
my $answers = 0;
for my $out (@credits)
{
	for my $line (split /\n/, $out)
	{
		my ($a, $k, $id) = split /\|/, $line;
		$transfer{"$a/$k"}{$id} = 1;
		$answers++;
	}
}
is($answers, 4 * 5 * $naccounts, 'every credit call answered');
is(scalar(keys %transfer), 5 * $naccounts, 'every (account, key) credited');
is(scalar(grep { keys %{ $transfer{$_} } != 1 } keys %transfer), 0,
	'the four clients got the same transfer for each (account, key)');
is(on_all(\@shards, 'SELECT count(*) FROM withdrawal.credit'), 5 * $naccounts,
	'the shards hold one credit per (account, key)');
my @wallets = map { $_->safe_psql('postgres', 'SELECT count(*) FROM withdrawal.wallet') } @shards;
ok($wallets[0] > 0 && $wallets[1] > 0, "the accounts are spread over both shards (@wallets)");
is($wallets[0] + $wallets[1], $naccounts, 'each account has one wallet, on one shard');
# the router's hash is the one the shards' ids carry: each wallet is where
# account_partition() sends it
for my $i (0, 1)
{
	my $accounts = $shards[$i]->safe_psql('postgres',
		q{SELECT string_agg(quote_literal(account_id), ',') FROM withdrawal.wallet});
	is($r->safe_psql('router', qq{SELECT count(*) FROM unnest(ARRAY[$accounts]::text[]) a
		WHERE withdrawal_router.account_partition(a) % 2 <> $i}), '0',
		"shard $i holds only accounts of its partitions");
}
is($r->safe_psql('router', qq{SELECT count(*) FROM generate_series(1, $naccounts) i
	WHERE (withdrawal.balance('u' || i, 'USD')).available <> 15000}), '0',
	'every balance read through the router is its five credits');

my @request_sql = map {
	qq{SELECT s.a || '|' || s.k || '|' || r.withdrawal_id || '|' || r.status
		 FROM (SELECT 'u' || i AS a, k FROM generate_series(1, $naccounts) i, generate_series(1, 3) k
				ORDER BY md5('$_' || k || '/' || i)) s,
			  LATERAL withdrawal.request(s.a, 'USD', 100 * s.k, 'bank', '{"iban": "DE00"}', 'r' || s.k) r}
} 1 .. 4;
my %wid;
$answers = 0;
for my $out (parallel_psql($r, 'router', @request_sql))
{
	for my $line (split /\n/, $out)
	{
		my ($a, $k, $id) = split /\|/, $line;
		$wid{"$a/$k"}{$id} = 1;
		$answers++;
	}
}
is($answers, 4 * 3 * $naccounts, 'every request call answered');
is(scalar(keys %wid), 3 * $naccounts, 'every (account, key) requested');
is(scalar(grep { keys %{ $wid{$_} } != 1 } keys %wid), 0,
	'the four clients got the same withdrawal for each (account, key)');
my @ids = sort map { (keys %{ $wid{$_} })[0] } keys %wid;
is(on_all(\@shards, 'SELECT count(*) FROM withdrawal.withdrawal'), 3 * $naccounts,
	'the shards hold one withdrawal per (account, key)');
for my $i (0, 1)
{
	is($shards[$i]->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.withdrawal
		WHERE get_byte(uuid_send(withdrawal_id), 0) <> get_byte(sha256(convert_to(account_id, 'UTF8')), 0)}),
		'0', "shard $i: every withdrawal id carries its account's partition");
}

# ------------------------------------------ dispatch, webhooks, reconcile

for my $node (@shards)
{
	$node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM withdrawal.withdrawal
		WHERE status IN ('queued', 'dispatching')}) or die 'payouts not dispatched';
}
is(on_all(\@shards, q{SELECT count(*) FROM withdrawal.withdrawal WHERE status = 'submitted'}),
	3 * $naccounts, 'both shards dispatched every payout to the processor (pending)');
ok(!grep({ $_->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.withdrawal WHERE status = 'submitted'}) == 0 } @shards),
	'each shard dispatched its own');

# one in ten fails at the processor, the others are paid; each event is
# delivered twice through the router
my (@values, %fate);
my $t = time;
for my $n (0 .. $#ids)
{
	my $id = $ids[$n];
	my $status = $n % 10 == 0 ? 'failed' : 'paid';
	$fate{$id} = $status;
	$mock->post('/_control/settle', { id => $id, status => $status });
	my $body = qq({"id": "evt-$id", "type": "payout.$status", "data": {"payout_id": "$id"}});
	my $sig = 'v1=' . hmac_sha256_hex("$t.$body", $hook_secret);
	my $headers = qq({"X-Withdrawal-Timestamp": "$t", "X-Withdrawal-Signature": "$sig"});
	push @values, "('$headers', '$body')";
}
my $deliver = 'SELECT withdrawal.receive_webhook(\'mockhttp\', h::jsonb, b)->>\'result\' FROM (VALUES '
  . join(', ', @values) . ') v(h, b)';
is($r->safe_psql('router', "SELECT string_agg(DISTINCT r, ',') FROM ($deliver) x(r)"), 'applied',
	'every webhook applied through the router');
is($r->safe_psql('router', "SELECT string_agg(DISTINCT r, ',') FROM ($deliver) x(r)"), 'duplicate',
	'every webhook delivered again is a duplicate');
is(on_all(\@shards, 'SELECT count(*) FROM withdrawal.webhook_event'), scalar(@ids),
	'each event stored once, on its withdrawal\'s shard');
my $failed = grep { $fate{$_} eq 'failed' } @ids;
is(on_all(\@shards, q{SELECT count(*) FROM withdrawal.withdrawal WHERE status = 'paid'}),
	@ids - $failed, 'the paid events settled their withdrawals');
is(on_all(\@shards, q{SELECT count(*) FROM withdrawal.withdrawal WHERE status = 'failed'}),
	$failed, 'the failed events refunded theirs');

# a settlement report of every paid payout, one amount wrong
my @paid = grep { $fate{$_} eq 'paid' } @ids;
my $csv = "processor_ref,withdrawal_id,amount,currency,status,settled_at\n";
my %ref = map { split /\|/ } split /\n/, $r->safe_psql('router',
	'SELECT w.withdrawal_id || \'|\' || w.processor_ref FROM unnest(ARRAY[' . join(',', map { "'$_'::uuid" } @paid)
	  . ']) i, LATERAL withdrawal.get(i) w');
my %amount = map { split /\|/ } split /\n/, $r->safe_psql('router',
	'SELECT w.withdrawal_id || \'|\' || w.amount FROM unnest(ARRAY[' . join(',', map { "'$_'::uuid" } @paid)
	  . ']) i, LATERAL withdrawal.get(i) w');
my $wrong = $paid[3];
my $now = $r->safe_psql('router', 'SELECT now()');
for my $id (@paid)
{
	my $amount = $amount{$id} + ($id eq $wrong ? 1 : 0);
	$csv .= "$ref{$id},$id,$amount,USD,paid,$now\n";
}
is($r->safe_psql('router', "SELECT withdrawal.import_settlement('mockhttp', \$csv\$$csv\$csv\$)"),
	scalar(@paid), 'the settlement report is imported, split by shard');
ok(!grep({ $_->safe_psql('postgres', 'SELECT count(*) FROM withdrawal.settlement') == 0 } @shards),
	'each shard got its part of the report');
is($r->safe_psql('router', q{SELECT string_agg(kind || ' ' || withdrawal_id, ',')
	FROM withdrawal.reconcile('mockhttp')}),
	"amount_mismatch $wrong", 'reconcile() through the router finds exactly the wrong amount');
is($r->safe_psql('router', q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0}),
	'0', 'check_invariants() through the router is clean');
is($r->safe_psql('router', q{SELECT count(*) FROM withdrawal.check_invariants()}),
	$shards[0]->safe_psql('postgres', 'SELECT count(*) FROM withdrawal.check_invariants()'),
	'check_invariants() through the router has one row per check');
is($r->safe_psql('router', q{SELECT workers || ' ' || last_reconcile_discrepancies FROM withdrawal.monitor_summary}),
	'2 1', 'monitor_summary through the router sums the shards');
for my $i (0, 1)
{
	no_double_payout($shards[$i], $mock, "shard $i");
	books_match_processor($shards[$i], $mock, "shard $i", settled => 1);
}

# ------------------------------------------------ SQLSTATEs and roles

my ($ret, $stdout, $stderr) = $r->psql('router',
	"SELECT withdrawal.get('00000000-0000-4000-8000-000000000000')", extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/WD007/, 'an unknown withdrawal is WD007 through the router');
($ret, $stdout, $stderr) = $r->psql('router',
	"SELECT withdrawal.credit(NULL, 'USD', 1, 'k')", extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/22023/, 'a NULL account is 22023 through the router');
($ret, $stdout, $stderr) = $r->psql('router',
	"SELECT withdrawal.credit('u1', 'USD', 1001, 'c1')", extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/ERROR:  (\w{5}):/, 'a reused key with other arguments is refused through the router');
my ($code) = $stderr =~ /ERROR:  (\w{5}):/;
my (undef, undef, $direct) = $shards[ $r->safe_psql('router', "SELECT withdrawal_router.account_partition('u1') % 2") ]
  ->psql('postgres', "SELECT withdrawal.credit('u1', 'USD', 1001, 'c1')", extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($direct, qr/ERROR:  \Q$code\E:/, "with the SQLSTATE of one server ($code)");
$r->safe_psql('router', 'GRANT withdrawal_app TO app');
($ret, $stdout, $stderr) = $r->psql('router', "SELECT withdrawal.approve('$ids[1]')",
	extra_params => [ '-U', 'app' ]);
like($stderr, qr/permission denied/, 'withdrawal_app may not approve through the router');
is($r->safe_psql('router', "SELECT (withdrawal.balance('u2', 'USD')).available",
	extra_params => [ '-U', 'app' ]) ne '', 1, 'withdrawal_app reads a balance through the router');
is($r->safe_psql('router', "SELECT (withdrawal.request('u2', 'USD', 5, 'bank', '{\"iban\": \"DE00\"}', 'as-app')).status",
	extra_params => [ '-U', 'app' ]), 'queued', 'and requests, as itself on the shard');
is(on_all(\@shards, q{SELECT count(*) FROM withdrawal.withdrawal WHERE idempotency_key = 'as-app' AND requested_by = 'app'}),
	1, 'the shard saw the caller\'s role');

# the other routed calls: a payout method's id carries its account's
# partition, so verifying and removing it reach the account's shard
my $method = $r->safe_psql('router', q{SELECT withdrawal.add_payout_method('u3', 'bank', '{"iban": "DE11"}')});
is($r->safe_psql('router', "SELECT withdrawal_router.id_partition('$method') = withdrawal_router.account_partition('u3')"),
	't', 'a payout method id carries its account\'s partition');
is($r->safe_psql('router', "SELECT withdrawal.verify_payout_method('$method')"), 'verified',
	'verify_payout_method() through the router');
is($r->safe_psql('router', "SELECT withdrawal.remove_payout_method('$method')"), 'removed',
	'remove_payout_method() through the router');
$r->safe_psql('router', q{SELECT withdrawal.set_account('u4', 2)});
is(on_all(\@shards, q{SELECT count(*) FROM withdrawal.account WHERE account_id = 'u4' AND kyc_level = 2}), 1,
	'set_account() through the router');
is($r->safe_psql('router', q{SELECT count(*) FROM withdrawal.statement('u4', 'USD')}),
	$shards[ $r->safe_psql('router', "SELECT withdrawal_router.account_partition('u4') % 2") ]->safe_psql('postgres',
		q{SELECT count(*) FROM withdrawal.statement('u4', 'USD')}), 'statement() through the router');

# ------------------------------------------------ the cluster-wide rate

for my $node (@shards)
{
	$node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM withdrawal.withdrawal
		WHERE status IN ('queued', 'dispatching')}) or die 'payouts not dispatched';
}
$mock->post('/_control/reset');
$r->safe_psql('router', qq{SELECT withdrawal.request('u' || i, 'USD', 7, 'slow', '{"iban": "DE00"}', 'slow')
	FROM generate_series(1, $naccounts) i});
for my $node (@shards)
{
	$node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM withdrawal.withdrawal
		WHERE status IN ('queued', 'dispatching')}) or die 'slow payouts not dispatched';
}
my $s = $mock->get('/_control/stats');
is($s->{payout_requests}, $naccounts, 'every slow payout sent once');
cmp_ok($s->{max_payout_requests_per_second}, '<=', 2 * (4 + 1),
	'no 1 s window above the cluster rate + bursts (2 shards x (4 + 1))');
cmp_ok($s->{last_payout_ms} - $s->{first_payout_ms}, '>=', ($naccounts - 2 * 2) / 8 * 1000 - 100,
	'the payouts took at least (n - bursts) / cluster rate');

# ------------------------------------------------ 2 -> 4 shards

$mock->post('/_control/reset');
# 1. dispatch stops on the old shards (channels disabled) in the transaction
#    that queues a payout for each account, so that queued payouts are
#    copied: each shard requests for the accounts it holds
my %queued;
for my $node (@shards)
{
	%queued = (%queued, map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
		BEGIN;
		CREATE TEMP TABLE q AS
			SELECT r.withdrawal_id || '|' || r.status AS line
			  FROM (SELECT account_id FROM withdrawal.wallet ORDER BY account_id) a,
				   LATERAL withdrawal.request(a.account_id, 'USD', 11, 'bank', '{"iban": "DE00"}', 'split') r;
		UPDATE withdrawal.channel SET enabled = false;
		COMMIT;
		SELECT line FROM q}));
}
is(scalar(grep { $_ eq 'queued' } values %queued), $naccounts, 'a payout queued for every account before the split');
my %balance_before = map { split /\|/ } split /\n/, $r->safe_psql('router', qq{
	SELECT 'u' || i || '|' || b.available || '/' || b.held || '/' || b.paid_out
	  FROM generate_series(1, $naccounts) i, LATERAL withdrawal.balance('u' || i, 'USD') b});
for my $node (@shards)
{
	$node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM withdrawal.outbox
		WHERE lease_until > now()}) or die 'a lease still open';
}
# 2. the router closes the old shards' partitions while they are copied, so
#    that nothing written after the copy's snapshot is left behind; a call
#    fails as when a shard is down, and a client retries it later
is($r->safe_psql('router', "SELECT withdrawal_router.configure(ARRAY['"
	  . join("', '", map { shard_connstr($_) . '_closed_for_split' } @shards) . "'])"), '2',
	'router: the shards being split are closed');
($ret, $stdout, $stderr) = $r->psql('router', "SELECT withdrawal.balance('u1', 'USD')");
like($stderr, qr/postgres_closed_for_split/, 'a call to a closed shard fails');
# 3. each old shard i is copied to new shard i + 2 (the copy holds dispatch)
my @new;
for my $i (0, 1)
{
	my $dump = PostgreSQL::Test::Utils::tempdir . "/shard$i.dump";
	$shards[$i]->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $shards[$i]->connstr('postgres') ],
		"pg_dump of shard $i");
	my $node = shard('shard' . ($i + 2));
	ok($node->run_log([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('postgres'), $dump ]),
		"shard $i restored as shard " . ($i + 2));
	$node->safe_psql('postgres', q{CREATE ROLE app LOGIN IN ROLE withdrawal_app;
		CREATE ROLE ops1 LOGIN IN ROLE withdrawal_ops});
	is($node->safe_psql('postgres', 'SELECT held FROM withdrawal.dispatch_binding()'), 't',
		'the copy holds dispatch');
	push @new, $node;
}
# 4. each copy parks the payouts of the partitions it does not own
my $fence = q{
	INSERT INTO withdrawal.outbox (withdrawal_id, channel, kind, parked_at, park_reason)
	SELECT w.withdrawal_id, w.channel,
		   CASE WHEN w.status IN ('queued', 'dispatching') THEN 'send' ELSE 'query' END,
		   now(), 'partition moved to another shard'
	  FROM withdrawal.withdrawal w
	 WHERE get_byte(uuid_send(w.withdrawal_id), 0) %% 4 = %d
	   AND w.status IN ('queued', 'dispatching', 'submitted', 'dead')
	ON CONFLICT (withdrawal_id) DO UPDATE SET parked_at = now(), park_reason = excluded.park_reason};
my @all = (@shards, @new);
for my $k (0 .. 3)
{
	# shard k keeps the partitions p % 4 = k; its copy's sibling owns the others
	my $other = ($k + 2) % 4;
	$all[$k]->safe_psql('postgres', sprintf($fence, $other));
}
# 5. the router maps partition p onto shard p % 4
is($r->safe_psql('router', "SELECT withdrawal_router.configure(ARRAY['"
	  . join("', '", map { shard_connstr($_) } @all) . "'])"), '4', 'router configured with 4 shards');
is($r->safe_psql('router', q{SELECT count(DISTINCT shard) FROM withdrawal_router.partition_map()}), '4',
	'the partitions are on 4 shards');
# 6. dispatch resumes: the new shards are bound to themselves, channels enabled
$_->safe_psql('postgres', q{SELECT withdrawal.resume_dispatch('split from 2 to 4 shards')}) for @new;
$_->safe_psql('postgres', 'UPDATE withdrawal.channel SET enabled = true') for @all;

my %balance_after = map { split /\|/ } split /\n/, $r->safe_psql('router', qq{
	SELECT 'u' || i || '|' || b.available || '/' || b.held || '/' || b.paid_out
	  FROM generate_series(1, $naccounts) i, LATERAL withdrawal.balance('u' || i, 'USD') b});
is_deeply(\%balance_after, \%balance_before, 'every balance through the router is as before the split');
for my $node (@all)
{
	$node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM withdrawal.withdrawal w
		WHERE status IN ('queued', 'dispatching')
		  AND NOT EXISTS (SELECT 1 FROM withdrawal.outbox o WHERE o.withdrawal_id = w.withdrawal_id
						   AND o.parked_at IS NOT NULL)}) or die 'split payouts not dispatched';
}
is($r->safe_psql('router', 'SELECT count(*) FROM unnest(ARRAY[' . join(',', map { "'$_'::uuid" } keys %queued)
	  . q{]) i, LATERAL withdrawal.get(i) w WHERE w.status = 'submitted'}), $naccounts,
	'every payout queued before the split was sent by its new owner, read through the router');
$s = $mock->get('/_control/stats?keys=0');
is($s->{payout_requests}, $naccounts, 'each sent once: no copy sent a payout it does not own');
is($s->{replays}, 0, 'and the processor never saw a key twice');
cmp_ok($s->{max_effective_per_withdrawal}, '<=', 1, 'at most one effective payout per withdrawal');
# new business lands on all four shards
$r->safe_psql('router', qq{SELECT withdrawal.credit('u' || i, 'USD', 5, 'after') FROM generate_series(1, $naccounts) i});
my @after = map { $_->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.credit WHERE idempotency_key = 'after'}) } @all;
ok(!grep({ $_ == 0 } @after), "credits after the split land on all four shards (@after)");
my $total = 0;
$total += $_ for @after;
is($total, $naccounts, 'each once');
for my $k (0 .. 3)
{
	is($all[$k]->safe_psql('postgres', q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0}),
		'0', "shard $k: check_invariants() is clean after the split");
}
is($r->safe_psql('router', q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0}),
	'0', 'check_invariants() through the router is clean after the split');

$mock->stop;
done_testing();
