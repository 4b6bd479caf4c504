# Concurrent requests racing for the last slots of the daily and velocity
# limits: 8 clients on few accounts, devices and IPs.  Afterwards no
# account, device or IP holds more withdrawals than its limit, and every
# request either succeeded or was refused with WD003.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('policy_race');
$node->init;
$node->append_conf('postgresql.conf', "max_connections = 40\n");
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION withdrawal;
	INSERT INTO withdrawal.policy (currency, daily_count_limit, daily_amount_limit,
		velocity_window, velocity_device_limit, velocity_ip_limit)
	VALUES ('USD', 5, 1000, '1 hour', 7, 9);
	SELECT withdrawal.credit('acct' || a, 'USD', 100000, 'open' || a) FROM generate_series(1, 12) a;
	CREATE TABLE outcome (key text, sqlstate text);
	CREATE FUNCTION try_request(acct int, dev int, ip int, k text, amt int) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM withdrawal.request('acct' || acct, 'USD', amt, 'sandbox', '{"bank": "x"}', k,
			jsonb_build_object('device_id', 'd' || dev, 'ip', '192.0.2.' || ip));
		INSERT INTO outcome VALUES (k, 'ok');
	EXCEPTION WHEN SQLSTATE 'WD003' THEN
		INSERT INTO outcome VALUES (k, SQLSTATE);
	END
	$$;
});

my $script = <<'EOS';
\set acct random(1, 12)
\set dev random(1, 6)
\set ip random(1, 4)
\set amt random(100, 300)
\set r random(1, 1000000000)
SELECT try_request(:acct, :dev, :ip, 'k-' || :client_id || '-' || :r, :amt);
EOS

$node->pgbench(
	'--no-vacuum --client=8 --jobs=4 --transactions=60',
	0,
	[qr{processed: 480/480}],
	[qr{^$}],
	'8 clients, 480 concurrent requests against tight limits',
	{ 'withdrawal_policy_race' => $script });

is($node->safe_psql('postgres', q{SELECT count(*) FROM outcome}),
	'480', 'every request succeeded or was refused with WD003');
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM outcome WHERE sqlstate = 'WD003'}),
	'>', 0, 'the limits were reached');

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT account_id FROM withdrawal.withdrawal
		GROUP BY account_id HAVING count(*) > 5 OR sum(amount) > 1000) s}),
	'0', 'no account exceeds its daily count or amount');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT device_id FROM withdrawal.withdrawal
		GROUP BY device_id HAVING count(*) > 7) s}),
	'0', 'no device exceeds its velocity limit');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT ip FROM withdrawal.withdrawal
		GROUP BY ip HAVING count(*) > 9) s}),
	'0', 'no IP exceeds its velocity limit');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM withdrawal.check_invariants() WHERE violations <> 0}),
	'0', 'the books balance');

$node->stop;
done_testing();
