# Helpers of the sharding TAP tests (090_sharded, 091_router_regress): a
# shard cluster with the library preloaded and its worker, the connection
# string the router uses for a shard database, and a router database with
# PL/Proxy and router/withdrawal_router.sql configured over given shards
# (docs/sharding.md).  What each test installs in its shards (processors,
# channels, policies) is the test's own.
package WithdrawalShards;

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use WithdrawalDispatchTest qw(use_secrets);

our @EXPORT = qw(shard_node shard_connstr install_router);

# shard_node($name, secrets => { name => value, ... }): a started cluster
# with the library preloaded and one worker on database "postgres", which
# dispatches to loopback processors quickly and polls them rarely; the
# secrets, if any, in its secrets file.
sub shard_node
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'withdrawal'
withdrawal.database = 'postgres'
withdrawal.workers = 1
withdrawal.allow_insecure_loopback = on
withdrawal.retry_base = '20ms'
withdrawal.retry_cap = '200ms'
withdrawal.http_timeout = '2s'
withdrawal.lease = '5s'
withdrawal.poll_after = '1h'
max_connections = 40
log_line_prefix = '%m [%p] %b '
});
	$node->start;
	use_secrets($node, %{ $opt{secrets} }) if $opt{secrets};
	return $node;
}

# shard_connstr($node, $db): the connection string of database $db
# (default "postgres") of $node, as the router's partition map holds it
sub shard_connstr
{
	my ($node, $db) = @_;
	$db //= 'postgres';
	return 'host=' . $node->host . ' port=' . $node->port . " dbname=$db";
}

# install_router($node, $db, @connstrs): creates database $db on $node with
# PL/Proxy and the router, mapped onto the shards @connstrs; returns what
# configure() returns (the number of shards)
sub install_router
{
	my ($node, $db, @connstrs) = @_;
	$node->safe_psql('postgres', qq{CREATE DATABASE "$db"});
	$node->safe_psql($db, 'CREATE EXTENSION plproxy');
	$node->safe_psql($db, PostgreSQL::Test::Utils::slurp_file('router/withdrawal_router.sql'));
	return $node->safe_psql($db, 'SELECT withdrawal_router.configure(ARRAY['
		  . join(', ', map { "'$_'" } @connstrs) . '])');
}

1;
