
# Copyright (c) 2026, withdrawal developers

# The secrets file (withdrawal.secrets_file): read when its mode is 0600,
# refused with a clear log line when group or others may read it, re-read
# when it changes or the setting points elsewhere, and no secret value ever
# reaches the server log, whatever goes wrong.  The file's path reaches
# the server log only, never a client that is not a superuser.
use strict;
use warnings FATAL => 'all';

use Digest::SHA qw(sha256_hex);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

sub random_token
{
	my ($prefix) = @_;
	return $prefix . join('', map { sprintf '%02x', int(rand(256)) } 1 .. 20);
}

sub write_file
{
	my ($path, $mode, $content) = @_;
	open my $fh, '>', $path or die "could not write $path: $!";
	print $fh $content;
	close $fh or die "could not close $path: $!";
	chmod $mode, $path or die "could not chmod $path: $!";
	return;
}

my $api = random_token('sk_test_');
my $api_v2 = random_token('sk_test_v2_') . 'x';
my $api_other = random_token('sk_live_');
my $hook = random_token('whsec_');
my $leak_bad_line = random_token('leak_line_');
my $leak_bad_name = random_token('leak_name_');
my $leak_dup = random_token('leak_dup_');
my @all_secrets = ($api, $api_v2, $api_other, $hook, $leak_bad_line, $leak_bad_name, $leak_dup);

my $node = PostgreSQL::Test::Cluster->new('secrets');
$node->init;

my $dir = $node->basedir . '/secrets';
mkdir $dir or die "mkdir $dir: $!";
chmod 0700, $dir;
my $file = "$dir/processors.conf";
my $other = "$dir/other.conf";

sub contents
{
	my ($api_value) = @_;
	return <<"EOF";
# processor secrets for the test cluster

mock_api = $api_value
	mock_webhook =  "$hook"  
dup = $leak_dup
dup = second-definition-wins
$leak_bad_line
bad name! = $leak_bad_name
empty =
EOF
}
write_file($file, 0600, contents($api));
write_file($other, 0600, "mock_api = $api_other\n");

$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'withdrawal'
withdrawal.workers = 0
withdrawal.secrets_file = '$file'
log_min_messages = debug1
log_statement = 'all'
log_error_verbosity = verbose
# the refusals are WARNINGs; keep them out of psql's stderr, which
# poll_query_until wants empty (they still go to the server log)
client_min_messages = error
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION withdrawal');

sub fingerprint
{
	my ($name) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(withdrawal.secret_fingerprint('$name'), 'NULL')");
}

# ---- a 0600 file is read ----

my $offset = -s $node->logfile;
is(fingerprint('mock_api'), sha256_hex($api), 'mode 0600: secret visible through its fingerprint');
is(fingerprint('mock_webhook'), sha256_hex($hook), 'quoted value, blanks around name and value dropped');
is(fingerprint('dup'), sha256_hex('second-definition-wins'), 'the last definition of a name wins');
is(fingerprint('no_such_secret'), 'NULL', 'unknown name: NULL');
is(fingerprint('empty'), 'NULL', 'empty value: ignored');
$node->wait_for_log(qr/invalid line 7 in the secrets file\n.*DETAIL: .* The secrets file is "\Q$file\E"\./, $offset);
$node->wait_for_log(qr/invalid secret name on line 8 of the secrets file\n.*DETAIL: .* The secrets file is "\Q$file\E"\./, $offset);
$node->wait_for_log(qr/secret "dup" is defined more than once in the secrets file\n.*DETAIL: .* The secrets file is "\Q$file\E"\./, $offset);
$node->wait_for_log(qr/secret "empty" on line 9 of the secrets file is empty\n.*DETAIL: .* The secrets file is "\Q$file\E"\./, $offset);
ok(1, 'bad lines reported by line number');

# ---- the function is the owner's only ----

is( $node->safe_psql(
		'postgres', q{
	SELECT has_function_privilege(r, 'withdrawal.secret_fingerprint(text)', 'EXECUTE')
	FROM unnest(ARRAY['public', 'withdrawal_app', 'withdrawal_ops', 'withdrawal_auditor']) r}),
	"f\nf\nf\nf",
	'no role but the owner may call secret_fingerprint');
my ($ret, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT withdrawal.secret_fingerprint(NULL)");
like($err, qr/ERROR:  22023: /, 'NULL name: 22023');
($ret, $out, $err) = $node->psql('postgres',
	"SELECT withdrawal.secret_fingerprint(repeat('n', 300))");
isnt($ret, 0, 'over-long name: an error');

# ---- an edit is picked up ----

write_file($file, 0600, contents($api_v2));
is(fingerprint('mock_api'), sha256_hex($api_v2), 'edited file re-read');

# ---- group or world access: refused ----

$offset = -s $node->logfile;
chmod 0644, $file or die "chmod: $!";
$node->reload;
is(fingerprint('mock_api'), 'NULL', 'mode 0644: no secret');
is(fingerprint('mock_webhook'), 'NULL', 'mode 0644: no secret at all');
$node->wait_for_log(
	qr/WARNING:  .*secrets file has group or world access\n.*DETAIL:  The file is refused and no secrets are available: its permissions are 0644, .* The secrets file is "\Q$file\E"\./,
	$offset);
ok(1, 'mode 0644: refused with a clear log line');

$offset = -s $node->logfile;
chmod 0640, $file or die "chmod: $!";
is(fingerprint('mock_api'), 'NULL', 'mode 0640: no secret');
$node->wait_for_log(qr/secrets file has group or world access\n.*DETAIL: .* The secrets file is "\Q$file\E"\./, $offset);

chmod 0600, $file or die "chmod: $!";
$node->reload;
is(fingerprint('mock_api'), sha256_hex($api_v2), 'back to 0600: secret visible again');

chmod 0400, $file or die "chmod: $!";
is(fingerprint('mock_api'), sha256_hex($api_v2), 'mode 0400 (stricter): accepted');
chmod 0600, $file or die "chmod: $!";

# ---- the setting points elsewhere: re-read on reload ----

$node->safe_psql('postgres', "ALTER SYSTEM SET withdrawal.secrets_file = '$other'");
$node->reload;
ok( $node->poll_query_until(
		'postgres',
		"SELECT withdrawal.secret_fingerprint('mock_api') = '" . sha256_hex($api_other) . "'"),
	'new file read after the setting changed');
is(fingerprint('mock_webhook'), 'NULL', 'secrets of the old file are gone');

$offset = -s $node->logfile;
$node->safe_psql('postgres', "ALTER SYSTEM SET withdrawal.secrets_file = '$dir/missing.conf'");
$node->reload;
ok( $node->poll_query_until(
		'postgres', "SELECT withdrawal.secret_fingerprint('mock_api') IS NULL"),
	'missing file: no secret');
$node->wait_for_log(
	qr/could not stat the secrets file: No such file or directory\n.*DETAIL: .* The secrets file is "\Q$dir\E\/missing\.conf"\./,
	$offset);

$offset = -s $node->logfile;
$node->safe_psql('postgres', "ALTER SYSTEM SET withdrawal.secrets_file = '$dir'");
$node->reload;
ok( $node->poll_query_until(
		'postgres', "SELECT withdrawal.secret_fingerprint('mock_api') IS NULL"),
	'a directory: no secret');
$node->wait_for_log(qr/secrets file is not a regular file\n.*DETAIL: .* The secrets file is "\Q$dir\E"\./, $offset);

$node->safe_psql('postgres', "ALTER SYSTEM RESET withdrawal.secrets_file");
$node->reload;
ok( $node->poll_query_until(
		'postgres',
		"SELECT withdrawal.secret_fingerprint('mock_api') = '" . sha256_hex($api_v2) . "'"),
	'back to the first file');

# only superusers see or set the setting
$node->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
($ret, $out, $err) = $node->psql('postgres', 'SHOW withdrawal.secrets_file',
	extra_params => [ '-U', 'plain' ]);
like($err, qr/permission denied|must be superuser|privileges of pg_read_all_settings/,
	'the setting is hidden from ordinary roles');

# ---- a role that is not a superuser is never told where the file is ----

# The application role looks secrets up through receive_webhook(); the
# refusal reaches it as a WARNING, the file's path only the server log.
$node->safe_psql(
	'postgres', q{
	CREATE ROLE app_user LOGIN IN ROLE withdrawal_app;
	INSERT INTO withdrawal.processor (name, driver, base_url, webhook_secret)
	VALUES ('hooked', 'http', 'https://hooked.example', 'mock_webhook');
});
chmod 0644, $file or die "chmod: $!";
$offset = -s $node->logfile;
($ret, $out, $err) = $node->psql(
	'postgres',
	"SET client_min_messages = warning;\n"
	  . "SELECT withdrawal.receive_webhook('hooked', '{}', '{}')",
	extra_params => [ '-U', 'app_user' ]);
like($err, qr/WARNING:  secrets file has group or world access/,
	'non-superuser: told that the secrets file is refused');
like($err, qr/ERROR:  webhook secret "mock_webhook" of processor "hooked" is not in withdrawal.secrets_file/,
	'non-superuser: the call fails for want of the secret');
unlike($err, qr/\Q$dir\E/, 'non-superuser: the path of the file is not in the messages');
$node->wait_for_log(
	qr/secrets file has group or world access\n.*DETAIL: .* The secrets file is "\Q$file\E"\./,
	$offset);
ok(1, 'the server log names the file');
chmod 0600, $file or die "chmod: $!";

# ---- no secret value anywhere in the server log ----

$node->stop;
my $log = slurp_file($node->logfile);
ok(length($log) > 0, 'server log read');
for my $s (@all_secrets)
{
	unlike($log, qr/\Q$s\E/, 'a secret value never appears in the server log');
}
unlike($log, qr/second-definition-wins/, 'not even an overridden duplicate');

done_testing();
