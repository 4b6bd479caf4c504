# The regress expectations through the router (issue 15: "idempotency,
# SQLSTATEs and roles behave exactly as on one server").  One script,
# test/router/parity.sql (the API calls of the regress tests that the
# router exposes), runs against one server and through the router over
# two shards, and the two outputs must be equal line for line: every
# result, every SQLSTATE and message, every role's grant.  Nothing is
# compared with a hand-written expectation, so nothing can drift.
#
# One difference is normalised, and only in the router's output: PL/Proxy
# prefixes a shard's error message with the function and the shard's
# database ("withdrawal.credit(6): [parity] REMOTE ERROR: ") and its
# detail, hint and context with "Remote detail: " and so on, keeping the
# SQLSTATE (docs/sharding.md, "Errors").  Removing exactly these prefixes
# is safe: the SQLSTATE before them and the shard's own text after them
# are still compared byte for byte, and a prefix is only recognised in its
# full form, naming a function of the router's API and a shard database.
# Also removed: the frames that the router's own SQL and PL/pgSQL functions
# (credit_many() and import_settlement() split a call by shard) append to
# the end of an error's CONTEXT, which try_detail() shows; the shard's
# context before them is compared.
#
# The two differences that are not normalised, documented in
# docs/sharding.md, are asserted at the end: the item number in the
# context of a credit_many() error, and SET ROLE to a group role.
use strict;
use warnings FATAL => 'all';

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WithdrawalShards;

# two shard clusters with the regress secrets of the "acme" processor;
# the single server and the router are databases of shard 0's cluster
# (roles are per cluster, so every role is created once in each)
my @shards = map { shard_node("shard$_", secrets => { regress_http => 'http-secret-1' }) } 0 .. 1;
my $config = PostgreSQL::Test::Utils::slurp_file('test/router/parity_config.sql');
my @targets = ([ $shards[0], 'single' ], [ $shards[0], 'parity' ], [ $shards[1], 'parity' ]);
for my $t (@targets)
{
	my ($node, $db) = @$t;
	$node->safe_psql('postgres', qq{CREATE DATABASE "$db"});
	$node->safe_psql($db, 'CREATE EXTENSION withdrawal');
	$node->safe_psql($db, $config);
}
for my $node (@shards)
{
	$node->safe_psql('postgres', q{
		CREATE ROLE parity_app LOGIN IN ROLE withdrawal_app;
		CREATE ROLE parity_ops LOGIN IN ROLE withdrawal_ops;
		CREATE ROLE parity_ops2 LOGIN IN ROLE withdrawal_ops;
		CREATE ROLE parity_auditor LOGIN IN ROLE withdrawal_auditor;
		CREATE ROLE parity_nobody LOGIN;
	});
}
is(install_router($shards[0], 'router', map { shard_connstr($_, 'parity') } @shards), '2',
	'router configured with 2 shards');
$shards[0]->safe_psql($_, 'CREATE EXTENSION pgcrypto') for qw(single router);

# psql as pg_regress runs it, statements echoed and errors in the output,
# but unaligned: the width of an aligned column would depend on the text
# that is normalised below
sub run_script
{
	my ($node, $db) = @_;
	my $out = '';
	IPC::Run::run([ 'psql', '-X', '-a', '-q', '-A', '-v', 'ON_ERROR_STOP=0', '-d', $node->connstr($db),
			'-f', 'test/router/parity.sql' ],
		'<', \undef, '>&', \$out)
	  or die "psql on $db failed: $out";
	return $out;
}

my $single = run_script($shards[0], 'single');
my $routed = run_script($shards[0], 'router');

# the router's functions: its API as PL/Proxy names them in its prefix,
# and those written in SQL or PL/pgSQL (the merging and splitting ones)
sub router_functions
{
	my ($langs) = @_;
	return join('|', map { quotemeta } split /\n/, $shards[0]->safe_psql('router', qq{
		SELECT DISTINCT n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		 WHERE n.nspname IN ('withdrawal', 'withdrawal_router')
		   AND p.prolang IN (SELECT oid FROM pg_language WHERE lanname IN ($langs))}));
}
my $remote = router_functions("'plproxy'");
my $local = router_functions("'plpgsql', 'sql'");
(my $local_short = $local) =~ s/withdrawal(?:_router)?\\\.//g;
my %normalised = (prefix => 0, context => 0);

# The router's output with what PL/Proxy adds removed: the prefix of a
# shard's message, detail, hint and context; and, at the end of an
# error's context as try_detail() shows it, the frames of the router's own
# SQL and PL/pgSQL functions (credit_many() and import_settlement() split
# a call into one call per shard; docs/sharding.md, "Errors").  The
# shard's context before those frames is compared.
sub normalise
{
	my ($out) = @_;
	$out =~ s/(?:$remote)\(\d+\): \[parity\] REMOTE ERROR: |Remote (?:detail|hint|context): /$normalised{prefix}++; ''/ge;
	my $frame = qr{(?: / SQL statement ".*?")? / (?:PL/pgSQL function (?:$local)\([^)]*\) line \d+ at [A-Za-z ]+|SQL function "(?:$local_short)" statement \d+)};
	$out =~ s/(?:$frame)+(?=\]$)/$normalised{context}++; ''/gme;
	return $out;
}
my $normalised = normalise($routed);

# kept in tmp_check, to read after a failure (or with TEST_KEEP=1)
my $dir = $PostgreSQL::Test::Utils::tmp_check;
unlink "$dir/091_$_.out" for qw(single router router-normalised);
PostgreSQL::Test::Utils::append_to_file("$dir/091_single.out", $single);
PostgreSQL::Test::Utils::append_to_file("$dir/091_router.out", $routed);
PostgreSQL::Test::Utils::append_to_file("$dir/091_router-normalised.out", $normalised);
my $diff = '';
IPC::Run::run([ 'diff', '-u', "$dir/091_single.out", "$dir/091_router-normalised.out" ], '>', \$diff);
is($diff, '', 'parity.sql through the router prints what it prints on one server')
  or diag($diff);

# the comparison is not vacuous: it ran every statement, most errors
# came from a shard, and both shards answered
my $statements = () = $single =~ /^SELECT /mg;
my %states;
$states{$1}++ while $single =~ /^(?:\w+\|)?([0-9A-Z]{5}): /mg;
note("statements: $statements; PL/Proxy prefixes removed: $normalised{prefix}; "
	  . "router context frames removed: $normalised{context}; SQLSTATEs compared: "
	  . join(', ', map { "$_ x$states{$_}" } sort keys %states));
cmp_ok($statements, '>=', 200, 'the script ran its statements');
ok(!grep({ !$states{$_} } qw(WD001 WD002 WD003 WD004 WD005 WD006 WD007 WD008 22023 22003 42501)),
	'it compared every SQLSTATE of the contract');
unlike($single, qr/^(?:ERROR|psql):/m, 'no statement of the script itself failed');
cmp_ok($normalised{prefix}, '>=', 100, 'the errors it compared came from the shards');
for my $i (0, 1)
{
	cmp_ok($shards[$i]->safe_psql('parity', 'SELECT count(*) FROM withdrawal.wallet'), '>', 0,
		"shard $i holds some of the script's accounts");
}
is($shards[$_]->safe_psql('parity', q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0}),
	'0', "shard $_: invariants clean") for 0, 1;

# A known difference (docs/sharding.md, "Errors"): an error of an item of
# credit_many() names the item by its place in the part of the batch sent
# to its shard, not in the caller's arrays.  "a" is on shard 0, "ann" on
# shard 1: the bad item is the caller's second and shard 1's first.
my $cross = q{SELECT try_detail($$SELECT withdrawal.credit_many(ARRAY['a', 'ann'], ARRAY['USD', 'USD'],
	ARRAY[1, -5]::bigint[], ARRAY['x', 'y'])$$)};
my $one = $shards[0]->safe_psql('single', $cross);
like($one, qr/^22023: amount must be positive .*\[item 2 of credit_many\(\)\]$/,
	'one server: a bad item of credit_many() is named by its place in the call');
my $through = normalise($shards[0]->safe_psql('router', $cross));
(my $expected = $one) =~ s/item 2/item 1/;
is($through, $expected, 'through the router: the same error, the item named by its place on its shard');

# A known difference (docs/sharding.md, "Roles"): PL/Proxy connects to the
# shard as current_user, so a session that SET ROLE to a group role that
# cannot log in (withdrawal_app) is refused by the shard, where one server
# runs the call with the group role's grants.
my $set_role = q{SET ROLE withdrawal_app; SELECT available FROM withdrawal.balance('alice', 'USD')};
is($shards[0]->safe_psql('single', $set_role), '14000', 'one server: a call after SET ROLE withdrawal_app');
my ($ret, $stdout, $stderr) = $shards[0]->psql('router', $set_role);
like($stderr, qr/role "withdrawal_app" is not permitted to log in/,
	'through the router: the shard refuses the connection as the group role');

done_testing();
