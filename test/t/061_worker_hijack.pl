# An attacker against the dispatcher worker's privileges (issue 10, "High").
#
# mallory is a plain login role, a member of withdrawal_app, and owns the
# database the worker runs in (so, in PG15, its public schema).  She plants,
# in public, an operator or function under every name the worker's SQL uses
# (src/worker.c, claim.c, record.c, ops.c and what they call in lifecycle.c, ledger.c, audit.c,
# processor_sandbox.c and cache.c), for every operand type it uses (text,
# name, uuid, timestamptz, interval, the integer types and the extension's
# domains), puts public before pg_catalog in the database's search_path,
# and plants the same, plus relations and domains named like the
# extension's, in her own pg_temp in a session that stays open.  Each
# planted object, when run, records who ran it (in public.pwned and in the
# server log) and tries ALTER ROLE mallory SUPERUSER; each computes what
# the built-in it hides would, so that a worker that runs it still works.
# Every planted object is first run once, in a transaction rolled back, to
# show that it does both.
#
# The worker is then driven through all its paths: claims, sandbox payouts
# paid, declined (..13) and returned (..42), a webhook, a cancel while
# queued behind a rate limit, review with approval and a cancel, retries
# to dead and retry(), sweep() by ops and the worker's own, audit sealing
# and verify_audit().  Then mallory sets default_transaction_read_only,
# lock_timeout and synchronous_commit on the database, the worker is
# restarted to pick them up, and it must still pay.
#
# Nothing planted may run; mallory stays a plain role; the worker is not a
# superuser session; every withdrawal ends as expected; the books balance;
# no worker statement fails; nothing is terminated by a signal.
use strict;
use warnings FATAL => 'all';

use Digest::SHA qw(hmac_sha256_hex);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $secrets_file = "$tmp/secrets";
open(my $fh, '>', $secrets_file) or die "could not write $secrets_file: $!";
print $fh "hooked_webhook = hook-secret\n";
close($fh);
chmod(0600, $secrets_file) or die "could not chmod $secrets_file: $!";

my $node = PostgreSQL::Test::Cluster->new('worker_hijack');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'withdrawal'
withdrawal.database = 'shop'
withdrawal.sandbox_settle_delay = '100ms'
withdrawal.sweep_interval = '1s'
withdrawal.max_attempts = 2
withdrawal.retry_base = '20ms'
withdrawal.retry_cap = '100ms'
withdrawal.http_timeout = '2s'
withdrawal.allow_insecure_loopback = on
withdrawal.secrets_file = '$secrets_file'
log_line_prefix = '%m [%p] %b '
});
$node->start;

# The test's own probes run as the bootstrap superuser: they must never
# resolve a planted name, nor suffer the database settings of phase 2.
$ENV{PGOPTIONS} = '-c search_path=pg_catalog -c default_transaction_read_only=off -c lock_timeout=0';

# mallory and olga keep the database's search_path: their statements
# below use no operator and call only schema-qualified functions.
my $app_options = '-c default_transaction_read_only=off -c lock_timeout=0';

sub as_role
{
	my ($role, $sql) = @_;
	local $ENV{PGUSER} = $role;
	local $ENV{PGOPTIONS} = $app_options;
	return $node->safe_psql('shop', $sql);
}

sub admin { return $node->safe_psql('shop', $_[0]); }

$node->safe_psql('postgres', q{
	CREATE ROLE mallory LOGIN NOSUPERUSER;
	CREATE ROLE olga LOGIN NOSUPERUSER;
	CREATE DATABASE shop OWNER mallory;
});
admin(q{
	CREATE EXTENSION withdrawal;
	GRANT withdrawal_app TO mallory;
	GRANT withdrawal_ops, withdrawal_auditor TO olga;
	INSERT INTO withdrawal.processor (name, driver, webhook_secret, webhook_scheme)
		VALUES ('hooked', 'sandbox', 'hooked_webhook', 'hmac-sha256');
	INSERT INTO withdrawal.processor (name, driver, base_url) VALUES ('down', 'http', 'http://127.0.0.1:9');
	INSERT INTO withdrawal.channel (name, processor) VALUES ('hooked', 'hooked'), ('down', 'down');
	-- one token, then one every 1000 s: the second payout stays queued
	INSERT INTO withdrawal.channel (name, processor, rate_per_second, burst) VALUES ('slow', 'sandbox', 0.001, 1);
	INSERT INTO withdrawal.policy (currency, review_threshold) VALUES ('EUR', 1);
});
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}),
	'f', 'mallory starts as a plain role');

# ---------- what mallory plants ----------

# Operand types of the worker's SQL, grouped by the built-in type they are
# or are a domain over; operators are planted for every pair in a group.
my @text_types = qw(text name withdrawal.status withdrawal.account_ref
  withdrawal.idempotency_key withdrawal.ledger_kind withdrawal.ledger_bucket);
my @number_types = qw(int2 int4 int8 numeric float8 withdrawal.amount
  withdrawal.balance withdrawal.entry_amount);
my @json_types = qw(jsonb withdrawal.json_object);
my @groups = (\@text_types, \@number_types, ['uuid'], ['timestamptz'],
	['interval'], \@json_types, ['bool'], ['bytea']);

# Built-in types are qualified: mallory's pg_temp gets domains of her own.
sub sqltype { my ($t) = @_; return $t =~ /\./ ? $t : "pg_catalog.$t"; }

sub pairs
{
	my ($left, $right, @ops) = @_;
	my @out;
	for my $l (@$left)
	{
		for my $r (@$right)
		{
			push @out, [ $_, $l, $r ] for @ops;
		}
	}
	return @out;
}

# [operator, left type or undef for a prefix operator, right type]
my @operators;
push @operators, pairs($_, $_, qw(= <> < <= > >=)) for @groups;
push @operators, pairs(\@text_types, \@text_types, '||');
push @operators, pairs(\@text_types, ['text'], qw(~ ~~));
push @operators, pairs(\@number_types, \@number_types, qw(+ - * / %));
push @operators, map { my $t = $_; map { [ $_, undef, $t ] } qw(- +) } @number_types;
push @operators, [ '-', undef, 'interval' ];
push @operators,
  [ '+', 'timestamptz', 'interval' ], [ '-', 'timestamptz', 'interval' ],
  [ '-', 'timestamptz', 'timestamptz' ], [ '+', 'interval', 'timestamptz' ],
  [ '+', 'interval', 'interval' ], [ '-', 'interval', 'interval' ],
  [ '*', 'interval', 'float8' ], [ '*', 'float8', 'interval' ],
  [ '/', 'interval', 'float8' ];
push @operators, pairs(\@json_types, [qw(text int4)], qw(-> ->>));
push @operators, pairs(\@json_types, ['text'], '?');
push @operators, pairs(\@json_types, \@json_types, '@>');

# Keep the combinations the built-in operator accepts, with its result type.
{
	my $probe = '';
	for my $i (0 .. $#operators)
	{
		my ($op, $l, $r) = @{ $operators[$i] };
		my $lhs = defined $l ? 'NULL::' . sqltype($l) : '';
		$probe .= "SELECT '$i|' || pg_catalog.pg_typeof($lhs OPERATOR(pg_catalog.$op) NULL::"
		  . sqltype($r) . ");\n";
	}
	my ($ret, $out, $err) = $node->psql('shop', $probe, on_error_stop => 0);
	my %result = map { split /\|/, $_, 2 } split /\n/, $out;
	@operators = map { [ @{ $operators[$_] }, $result{$_} ] }
	  grep { defined $result{$_} } 0 .. $#operators;
}
cmp_ok(scalar(@operators), '>', 900, 'operators to plant: ' . scalar(@operators));

# [name, [argument types], result type, argument names, arguments to
# calibrate with], each hiding a pg_catalog function of the same name that
# the worker's SQL calls, or one that an exact match on a domain or
# literal type would win over.
my @interval_args = (qw(int4 int4 int4 int4 int4 int4 float8));
my @functions = (
	[ 'now', [], 'timestamptz' ],
	[ 'clock_timestamp', [], 'timestamptz' ],
	[ 'statement_timestamp', [], 'timestamptz' ],
	[ 'transaction_timestamp', [], 'timestamptz' ],
	[ 'gen_random_uuid', [], 'uuid' ],
	[ 'nextval', ['regclass'], 'int8' ],
	[ 'nextval', ['text'], 'int8', undef, [q{'public.wd_seq'::pg_catalog.text}] ],
	[ 'make_interval', \@interval_args, 'interval',
		[qw(years months weeks days hours mins secs)] ],
	[ 'make_interval', ['numeric'], 'interval', ['secs'] ],
	[ 'make_interval', ['int4'], 'interval', ['secs'] ],
	[ 'make_interval', ['int8'], 'interval', ['secs'] ],
	(map { [ 'unnest', ["$_\[\]"], "SETOF $_" ] } qw(uuid timestamptz text int8 int4 bytea)),
	[ 'jsonb_build_object', [qw(text text)], 'jsonb' ],
	[ 'jsonb_build_object',
		[qw(text uuid text withdrawal.account_ref text withdrawal.amount text text text text
			text withdrawal.json_object)], 'jsonb' ],
	[ 'jsonb_typeof', ['jsonb'], 'text' ],
	[ 'jsonb_typeof', ['withdrawal.json_object'], 'text' ],
	[ 'texteq', [qw(withdrawal.status text)], 'bool' ],
	[ 'texteq', [qw(text text)], 'bool' ],
	[ 'octet_length', ['text'], 'int4' ],
	[ 'octet_length', ['withdrawal.account_ref'], 'int4' ],
	[ 'hashtext', ['text'], 'int4' ],
	[ 'set_config', [qw(text text bool)], 'text', undef,
		[ q{'wd.x'::pg_catalog.text}, q{'1'::pg_catalog.text}, 'true' ] ],
	[ 'current_setting', ['text'], 'text', undef, [q{'wd.x'::pg_catalog.text}] ],
	[ 'current_setting', [qw(text bool)], 'text', undef, [ q{'wd.x'::pg_catalog.text}, 'true' ] ],
	[ 'pg_advisory_xact_lock', [qw(int4 int4)], 'void' ],
	[ 'pg_try_advisory_xact_lock', [qw(int4 int4)], 'bool' ],
	[ 'pg_advisory_xact_lock', ['int8'], 'void' ],
	[ 'pg_try_advisory_xact_lock', ['int8'], 'bool' ],
	[ 'pg_notify', [qw(text text)], 'void' ]);

# [aggregate, input type or '*', state type] (min, max and sum take the
# state type of the built-in they hide)
my @aggregates = (
	(map { [ 'min', @$_ ], [ 'max', @$_ ] }
		[ 'timestamptz', 'timestamptz' ], [ 'int8', 'int8' ], [ 'int4', 'int4' ],
		[ 'text', 'text' ], [ 'numeric', 'numeric' ],
		[ 'withdrawal.amount', 'int8' ], [ 'withdrawal.balance', 'int8' ],
		[ 'withdrawal.entry_amount', 'int8' ]),
	[ 'sum', 'int8', 'numeric' ], [ 'sum', 'int4', 'int8' ], [ 'sum', 'numeric', 'numeric' ],
	[ 'sum', 'withdrawal.amount', 'numeric' ], [ 'sum', 'withdrawal.balance', 'numeric' ],
	[ 'sum', 'withdrawal.entry_amount', 'numeric' ],
	[ 'count', '*', 'int8' ],
	(map { [ 'count', $_, 'int8' ] } qw(uuid text int8)));

sub short { my ($t) = @_; $t =~ s/^pg_catalog\.//; return $t; }

# A plpgsql function that records it ran, then does what "$body" does.
sub pwn_function
{
	my ($schema, $name, $args, $returns, $label, $body, $strict) = @_;
	$label =~ s/'/''/g;
	return "CREATE FUNCTION $schema.$name($args) RETURNS $returns LANGUAGE plpgsql"
	  . ($strict ? ' STRICT' : '')
	  . " SET search_path = pg_catalog, pg_temp AS \$f\$ BEGIN"
	  . " PERFORM public.wd_pwn('$label'); $body END \$f\$;\n";
}

# The CREATE statements of every planted operator, function and aggregate
sub plant_sql
{
	my ($schema) = @_;
	my $sql = '';
	my $n = 0;

	for my $o (@operators)
	{
		my ($op, $l, $r, $result) = @$o;
		my $f = 'wd_op_' . $n++;
		my $label = "operator $schema.$op(" . (defined $l ? short($l) : 'NONE') . ', ' . short($r) . ')';
		my $args = (defined $l ? sqltype($l) . ', ' : '') . sqltype($r);
		my $expr = defined $l ? "\$1 OPERATOR(pg_catalog.$op) \$2" : "OPERATOR(pg_catalog.$op) \$1";
		$sql .= pwn_function($schema, $f, $args, $result, $label, "RETURN $expr;", 1);
		$sql .= "CREATE OPERATOR $schema.$op ("
		  . (defined $l ? 'LEFTARG = ' . sqltype($l) . ', ' : '')
		  . 'RIGHTARG = ' . sqltype($r) . ", FUNCTION = $schema.$f);\n";
	}

	for my $f (@functions)
	{
		my ($name, $types, $returns, $names) = @$f;
		my @args = map { sqltype($_) } @$types;
		my @params = map { ($names ? "$names->[$_] " : '') . $args[$_]
			  . ($names && @args > 1 ? ' DEFAULT 0' : '') } 0 .. $#args;
		my $call = "pg_catalog.$name(" . join(', ', map { "\$$_" } 1 .. @args) . ')';
		$call = "pg_catalog.make_interval(secs => \$1)" if $name eq 'make_interval' && @args == 1;
		my $body = $returns =~ /^SETOF/ ? "RETURN QUERY SELECT $call;"
		  : $returns eq 'void' ? "PERFORM $call;" : "RETURN $call;";
		$returns = $returns =~ /^SETOF (.*)$/ ? 'SETOF ' . sqltype($1)
		  : $returns eq 'void' ? 'void' : sqltype($returns);
		$sql .= pwn_function($schema, $name, join(', ', @params), $returns,
			"function $schema.$name(" . join(', ', map { short($_) } @$types) . ')', $body, 0);
	}

	for my $a (@aggregates)
	{
		my ($name, $input, $state) = @$a;
		my $f = 'wd_agg_' . $n++;
		my $label = "aggregate $schema.$name(" . short($input) . ')';
		my ($args, $body, $strict, $init) = ('', '', 1, undef);
		if ($name eq 'count')
		{
			$args = 'pg_catalog.int8' . ($input eq '*' ? '' : ', ' . sqltype($input));
			$body = 'RETURN $1 OPERATOR(pg_catalog.+) 1;';
			$init = '0';
		}
		elsif ($name eq 'sum')
		{
			$args = sqltype($state) . ', ' . sqltype($input);
			$body = 'IF $2 IS NULL THEN RETURN $1; END IF; IF $1 IS NULL THEN RETURN $2; END IF;'
			  . ' RETURN $1 OPERATOR(pg_catalog.+) $2;';
			$strict = 0;
		}
		else
		{
			my $cmp = $name eq 'min' ? '<' : '>';
			$args = sqltype($state) . ', ' . sqltype($input);
			$body = "IF \$2 OPERATOR(pg_catalog.$cmp) \$1 THEN RETURN \$2; END IF; RETURN \$1;";
		}
		$sql .= pwn_function($schema, $f, $args, sqltype($state), $label, $body, $strict);
		$sql .= "CREATE AGGREGATE $schema.$name(" . ($input eq '*' ? '*' : sqltype($input))
		  . ") (SFUNC = $schema.$f, STYPE = " . sqltype($state)
		  . (defined $init ? ", INITCOND = '$init'" : '') . ");\n";
	}
	return $sql;
}

# A value of each operand type, to run every planted object once
my %sample = (
	text => q{'queued'}, name => q{'queued'}, 'withdrawal.status' => q{'queued'},
	'withdrawal.account_ref' => q{'alice'}, 'withdrawal.idempotency_key' => q{'k1'},
	'withdrawal.ledger_kind' => q{'debit'}, 'withdrawal.ledger_bucket' => q{'held'},
	int2 => '7', int4 => '7', int8 => '7', numeric => '2.5', float8 => '2.5',
	'withdrawal.amount' => '7', 'withdrawal.balance' => '7', 'withdrawal.entry_amount' => '7',
	uuid => q{'00000000-0000-4000-8000-000000000001'},
	timestamptz => q{'2026-01-01 00:00:00+00'}, interval => q{'1 hour'},
	jsonb => q{'{"a": 1}'}, 'withdrawal.json_object' => q{'{"a": 1}'},
	bool => 'true', bytea => q{'\x01'}, regclass => q{'public.wd_seq'});

sub sample
{
	my ($t) = @_;
	return "ARRAY[$sample{$1}]::" . sqltype($t) if $t =~ /^(.*)\[\]$/;
	return "$sample{$t}::" . sqltype($t);
}

# Runs every object planted in $schema once, in a transaction rolled back:
# the operators must agree with the built-ins they hide, and every object
# must record that it ran.  Returns the operators that disagree and how
# many objects recorded.
sub calibrate
{
	my ($session, $schema) = @_;
	my @checks;
	my $calls = "CREATE SEQUENCE public.wd_seq;\n";

	for my $o (@operators)
	{
		my ($op, $l, $r) = @$o;
		my $lhs = defined $l ? sample($l) : '';
		my $label = "$op(" . ($l // 'NONE') . ", $r)";
		push @checks, "('$label', ($lhs OPERATOR($schema.$op) " . sample($r)
		  . ") IS NOT DISTINCT FROM ($lhs OPERATOR(pg_catalog.$op) " . sample($r) . '))';
	}
	for my $f (@functions)
	{
		my ($name, $types, $returns, $names, $args) = @$f;
		my @args = $args ? @$args : map { sample($_) } @$types;

		# make_interval(7) would be ambiguous: the 7-argument one has defaults
		@args = ("$names->[0] => $args[0]") if $names && @args == 1;
		$calls .= "SELECT $schema.$name(" . join(', ', @args) . ");\n";
	}
	for my $a (@aggregates)
	{
		my ($name, $input) = @$a;
		my $x = sample($input eq '*' ? 'int4' : $input);
		$calls .= "SELECT $schema.$name(" . ($input eq '*' ? '*' : 'x')
		  . ") FROM (VALUES ($x), ($x)) v(x);\n";
	}

	$session->query_safe('BEGIN; SET LOCAL search_path = pg_catalog');
	my $wrong = $session->query_safe("SELECT label FROM (VALUES\n"
		  . join(",\n", @checks) . ") v(label, same) WHERE NOT same");
	$session->query_safe($calls);
	my $ran = $session->query_safe(
		"SELECT count(DISTINCT obj) FROM public.pwned WHERE obj LIKE '% $schema.%'");
	$session->query_safe('ROLLBACK');
	return ($wrong, $ran);
}

# What every planted object runs: a record that survives a rollback (the
# log), one for the final check (the table) and the escalation attempt.
as_role('mallory', q{
	CREATE TABLE public.pwned (
		obj text NOT NULL,
		cur name NOT NULL,
		sess name NOT NULL,
		backend text,
		at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp());
	GRANT INSERT ON public.pwned TO PUBLIC;
	CREATE FUNCTION public.wd_pwn(obj text) RETURNS void LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp AS $$
	DECLARE
		backend text := (SELECT a.backend_type FROM pg_catalog.pg_stat_activity a
						  WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid());
	BEGIN
		RAISE LOG 'worker-hijack: % ran as current_user %, session_user % in %',
			obj, current_user, session_user, backend;
		BEGIN
			INSERT INTO public.pwned (obj, cur, sess, backend)
				VALUES (obj, current_user, session_user, backend);
		EXCEPTION WHEN OTHERS THEN NULL;
		END;
		BEGIN
			ALTER ROLE mallory SUPERUSER;
		EXCEPTION WHEN OTHERS THEN NULL;
		END;
	END
	$$;
	-- the body of the pg_temp relations below: no rows, but it ran
	CREATE FUNCTION public.wd_pwn_rows(obj text) RETURNS SETOF int LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp AS $$
	BEGIN
		PERFORM public.wd_pwn(obj);
	END
	$$;
	CREATE FUNCTION public.wd_pwn_check(obj text) RETURNS bool LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp AS $$
	BEGIN
		PERFORM public.wd_pwn(obj);
		RETURN true;
	END
	$$;
	CREATE FUNCTION public.wd_pwn_trigger() RETURNS trigger LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp AS $$
	BEGIN
		PERFORM public.wd_pwn('relation pg_temp.' || TG_TABLE_NAME || ' ' || TG_OP);
		RETURN NULL;
	END
	$$;
} . plant_sql('public') . q{
	ALTER DATABASE shop SET search_path = public, pg_catalog;
});
is(admin(q{
	SELECT count(*) FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
	 WHERE n.nspname = 'public'}), scalar(@operators), 'operators planted in public');

# Her session that stays open, with the same objects in her pg_temp and
# relations and domains named like the extension's: rows come from
# nowhere, but reading, writing or casting them runs wd_pwn.
my $mallory = do
{
	local $ENV{PGUSER} = 'mallory';
	local $ENV{PGOPTIONS} = $app_options;
	# it waits through the polls below, each bounded by timeout_default
	$node->background_psql('shop', timeout => 3 * $PostgreSQL::Test::Utils::timeout_default);
};
$mallory->set_query_timer_restart();
$mallory->query_safe('SET client_min_messages = warning');
{
	my $temp = plant_sql('pg_temp');
	my $relations = admin(q{
		SELECT c.relname || '|' || pg_catalog.string_agg(
				pg_catalog.format('NULL::%s AS %I', pg_catalog.format_type(a.atttypid, a.atttypmod), a.attname),
				', ' ORDER BY a.attnum)
		  FROM pg_catalog.pg_class c
		  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		 WHERE n.nspname = 'withdrawal' AND c.relkind IN ('r', 'v', 'p')
		 GROUP BY c.relname});
	for my $line (split /\n/, $relations)
	{
		my ($rel, $columns) = split /\|/, $line, 2;
		$temp .= "CREATE TEMP VIEW $rel AS SELECT $columns FROM public.wd_pwn_rows('relation pg_temp.$rel');\n"
		  . "CREATE TRIGGER wd_pwn INSTEAD OF INSERT OR UPDATE OR DELETE ON pg_temp.$rel"
		  . " FOR EACH ROW EXECUTE FUNCTION public.wd_pwn_trigger();\n";
	}
	for my $domain (split /\n/, admin(q{
		SELECT t.typname || '|' || b.typname
		  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
		  JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype
		 WHERE n.nspname = 'withdrawal' AND t.typtype = 'd'}))
	{
		my ($name, $base) = split /\|/, $domain;
		$temp .= "CREATE DOMAIN pg_temp.$name AS pg_catalog.$base"
		  . " CHECK (public.wd_pwn_check('domain pg_temp.$name'));\n";
	}
	$mallory->query_safe($temp);
}
is($mallory->query_safe(q{
	SELECT pg_catalog.count(*) FROM pg_catalog.pg_operator
	 WHERE oprnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()}),
	scalar(@operators), 'operators planted in pg_temp');
cmp_ok($mallory->query_safe(q{
	SELECT pg_catalog.count(*) FROM pg_catalog.pg_class
	 WHERE relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()}),
	'>', 10, 'relations planted in pg_temp');

# Each planted object works like what it hides, and records when it runs.
for my $schema (qw(public pg_temp))
{
	my ($wrong, $ran) = calibrate($mallory, $schema);
	is($wrong, '', "$schema: planted operators compute what the built-ins do");
	is($ran, @operators + @functions + @aggregates, "$schema: every planted object records that it ran");
}
# From here on, nothing planted may run.
my $log_start = -s $node->logfile;

# The worker connected before the search_path was set: restart it so that
# it picks up the database's settings, as it would after any restart.
sub restart_worker
{
	my $old = admin(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'withdrawal worker'});
	die 'no worker' unless $old;
	admin("SELECT pg_terminate_backend($old)");
	$node->poll_query_until('shop', qq{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE backend_type = 'withdrawal worker' AND datname = 'shop' AND pid <> $old})
	  or die 'worker not restarted';
}
$node->poll_query_until('shop', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'withdrawal worker' AND datname = 'shop'})
  or die 'worker not running in shop';
restart_worker();

# ---------- phase 1: every path of the worker ----------

sub request
{
	my ($account, $currency, $amount, $channel, $key) = @_;
	return $mallory->query_safe(qq{
		SELECT withdrawal_id FROM withdrawal.request('$account', '$currency', $amount, '$channel',
			'{"bank": "x"}', '$key')});
}

sub statuses
{
	my ($prefix) = @_;
	return qq{
		SELECT pg_catalog.string_agg(idempotency_key || '=' || status, ',' ORDER BY idempotency_key COLLATE "C")
		  FROM withdrawal.withdrawals WHERE idempotency_key LIKE '$prefix%' AND channel <> 'slow'};
}

$mallory->query_safe(q{
	SELECT available FROM withdrawal.credit('alice', 'USD', 1000000, 'fund-alice');
	SELECT available FROM withdrawal.credit('bob', 'USD', 1000000, 'fund-bob');
	SELECT available FROM withdrawal.credit('carol', 'EUR', 1000000, 'fund-carol');
});
my %id;
$id{$_->[4]} = request(@$_) for (
	[ 'alice', 'USD', 1000, 'sandbox', 'p1-ok' ],
	[ 'alice', 'USD', 2013, 'sandbox', 'p1-declined' ],
	[ 'alice', 'USD', 3042, 'sandbox', 'p1-returned' ],
	[ 'bob', 'USD', 4000, 'hooked', 'p1-hook' ],
	[ 'bob', 'USD', 5001, 'slow', 'p1-slow-a' ],
	[ 'bob', 'USD', 5002, 'slow', 'p1-slow-b' ],
	[ 'carol', 'EUR', 6000, 'sandbox', 'p1-review-approve' ],
	[ 'carol', 'EUR', 6001, 'sandbox', 'p1-review-cancel' ],
	[ 'alice', 'USD', 7000, 'down', 'p1-down' ]);

is($mallory->query_safe("SELECT withdrawal.cancel('$id{'p1-review-cancel'}', 'changed my mind')"),
	'canceled', 'a withdrawal in review is canceled by the app');
is(as_role('olga', "SELECT withdrawal.approve('$id{'p1-review-approve'}', 'fine')"),
	'queued', 'ops approve a withdrawal in review');

# A signed webhook returns a payout that the sandbox paid.
$node->poll_query_until('shop', qq{
	SELECT status FROM withdrawal.withdrawal WHERE withdrawal_id = '$id{'p1-hook'}'}, 'paid')
  or die 'hooked payout not paid';
{
	my $body = qq({"id": "evt-hijack-1", "type": "payout.returned", "data": {"payout_id": "$id{'p1-hook'}"}});
	my $t = time();
	my $sig = hmac_sha256_hex("$t.$body", 'hook-secret');
	like($mallory->query_safe(qq{
		SELECT withdrawal.receive_webhook('hooked',
			'{"X-Withdrawal-Timestamp": "$t", "X-Withdrawal-Signature": "v1=$sig"}', '$body')}),
		qr/"result": "applied"/, 'a signed webhook is applied');
}

# Behind the rate limit, one payout is sent and the other waits: cancel it.
$node->poll_query_until('shop', q{
	SELECT string_agg(status, ',' ORDER BY status COLLATE "C") FROM withdrawal.withdrawal
	 WHERE channel = 'slow'}, 'paid,queued')
  or die 'rate-limited payouts not as expected';
my $queued = admin(q{SELECT withdrawal_id FROM withdrawal.withdrawal WHERE channel = 'slow' AND status = 'queued'});

# Its outbox row lost: the worker's own sweep puts it back (and says so).
my $offset = -s $node->logfile;
admin("DELETE FROM withdrawal.outbox WHERE withdrawal_id = '$queued'");
$node->wait_for_log(qr/withdrawal worker swept \d+ stuck payouts/, $offset);
is(admin("SELECT count(*) FROM withdrawal.outbox WHERE withdrawal_id = '$queued'"),
	'1', 'the worker\'s sweep re-queued a payout that lost its outbox row');
is($mallory->query_safe("SELECT withdrawal.cancel('$queued', 'too slow')"),
	'canceled', 'a payout queued behind the rate limit is canceled');

# Unreachable processor: retried, dead; retry() by ops, dead again.
my $dead_twice = qq{
	SELECT w.status = 'dead' AND (SELECT count(*) FROM withdrawal.audit_log a
		WHERE a.withdrawal_id = w.withdrawal_id AND a.action = 'dispatch_dead') = %d
	  FROM withdrawal.withdrawal w WHERE w.withdrawal_id = '$id{'p1-down'}'};
$node->poll_query_until('shop', sprintf($dead_twice, 1)) or die 'unreachable payout not dead';
is(as_role('olga', "SELECT withdrawal.retry('$id{'p1-down'}')"), 'queued', 'ops retry a dead payout');
$node->poll_query_until('shop', sprintf($dead_twice, 2)) or die 'retried payout not dead again';

like(as_role('olga', q{SELECT withdrawal.sweep()}), qr/^\d+$/, 'ops run sweep()');

ok($node->poll_query_until('shop', statuses('p1-'),
		'p1-declined=failed,p1-down=dead,p1-hook=returned,p1-ok=paid,p1-returned=returned,'
		  . 'p1-review-approve=paid,p1-review-cancel=canceled'),
	'phase 1: every withdrawal reached its expected status');
is(admin(q{SELECT string_agg(status, ',' ORDER BY status COLLATE "C") FROM withdrawal.withdrawal WHERE channel = 'slow'}),
	'canceled,paid', 'phase 1: rate-limited channel: one paid, one canceled');

# The worker seals the audit log on its own; then the auditor verifies it.
ok($node->poll_query_until('shop', q{
	SELECT (SELECT count(*) FROM withdrawal.audit_log) = (SELECT count(*) FROM withdrawal.audit_seal)}),
	'the worker sealed every audit row');
is(as_role('olga', q{SELECT ok FROM withdrawal.verify_audit()}), 't', 'verify_audit() is ok');

# ---------- phase 2: database settings against the worker ----------

as_role('mallory', q{
	ALTER DATABASE shop SET default_transaction_read_only = on;
	ALTER DATABASE shop SET lock_timeout = '1ms';
	ALTER DATABASE shop SET synchronous_commit = off;
});
restart_worker();
request(@$_) for (
	[ 'alice', 'USD', 1100, 'sandbox', 'p2-ok' ],
	[ 'alice', 'USD', 2113, 'sandbox', 'p2-declined' ],
	[ 'alice', 'USD', 3142, 'sandbox', 'p2-returned' ]);
ok($node->poll_query_until('shop', statuses('p2-'), 'p2-declined=failed,p2-ok=paid,p2-returned=returned'),
	'phase 2: the worker still pays under the database owner\'s settings');

# ---------- checks ----------

my $fired = admin(q{
	SELECT obj || ' as ' || cur || ' (session ' || sess || ', ' || coalesce(backend, '?') || '): ' || count(*)
	  FROM public.pwned GROUP BY obj, cur, sess, backend ORDER BY 1});
is($fired, '', 'no planted object ran (public.pwned is empty)') or diag("fired:\n$fired");

# The log also has what ran in transactions that rolled back.
my $log = slurp_file($node->logfile, $log_start);
my %logged;
$logged{"$1 as $2 (session $3, $4)"}++
  while $log =~ /LOG:  worker-hijack: (.*) ran as current_user (\S+), session_user (\S+) in (.*)$/mg;
is(scalar(keys %logged), 0, 'no planted object ran (server log)')
  or diag("logged:\n" . join("\n", map { "$_: $logged{$_}" } sort keys %logged));

is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}),
	'f', 'mallory is not superuser');

is(admin(q{
	SELECT count(*) || ' worker, ' || count(*) FILTER (WHERE r.rolsuper IS DISTINCT FROM false) || ' superuser'
	  FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid
	 WHERE a.backend_type = 'withdrawal worker'}),
	'1 worker, 0 superuser', 'the worker is not a superuser session');

is(admin(q{SELECT count(*) FROM withdrawal.check_invariants() WHERE violations > 0}),
	'0', 'check_invariants() is clean');

my @errors = grep {
	/withdrawal worker (ERROR|FATAL):/
	  && !/database "shop" does not exist|due to administrator command/
} split /\n/, $log;
is(scalar(@errors), 0, 'no statement failed in the worker')
  or diag(join("\n", @errors[0 .. ($#errors < 9 ? $#errors : 9)]));

$mallory->quit;
$node->stop;
ok(!$node->log_contains('TRAP:|terminated by signal'),
	'no assertion failure or crash');
done_testing();
