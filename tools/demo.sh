#!/usr/bin/env bash
# Local demo of withdrawal, end to end: builds the extension, starts a
# throwaway cluster (as an unprivileged user, on a free loopback port) with
# the library preloaded and the sandbox processor, runs tools/demo.sql, and
# removes the cluster.  Installs what it needs first (tools/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/setup.sh"
. "$here/common.sh"

work=$(make_workdir)
cleanup() {
	as_run_user "$bindir/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
bindir=$(build_private_install "$work")
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_run_user "$bindir/initdb" -D "$work/data" -A trust -U postgres >/dev/null
as_run_user tee -a "$work/data/postgresql.conf" >/dev/null <<EOC
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
shared_preload_libraries = 'withdrawal'
withdrawal.database = 'postgres'
withdrawal.sandbox_settle_delay = '300ms'
EOC
as_run_user "$bindir/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null
echo "demo: cluster on 127.0.0.1:$port (removed when the demo ends)"
as_run_user "$bindir/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
	-v ON_ERROR_STOP=1 -f "$work/tools/demo.sql"
