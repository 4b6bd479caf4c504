#!/usr/bin/env bash
# Installs what building and testing withdrawal needs on a Debian 12 machine:
# the PostgreSQL 15 server and its PGXS headers, libcurl and OpenSSL headers,
# Perl's IPC::Run for the TAP tests, pg_cron, and the Node.js packages of the
# mock processor and the webhook interoperability tests, wrk for the
# benchmarks, and PL/Proxy for the sharding router (router/, 090_sharded).
# Quiet when everything is already there; needs root only when something
# is missing.
set -euo pipefail

packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron
          libcurl4-openssl-dev libssl-dev libipc-run-perl
          build-essential nodejs npm ca-certificates wrk postgresql-15-plproxy)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# A machine may carry its own Node.js outside Debian's packages.
if command -v node >/dev/null && command -v npm >/dev/null; then
	missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
	read -r -a missing <<<"${missing[*]}"
fi

if [ "${#missing[@]}" -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "setup: missing packages: ${missing[*]}; run this script as root" >&2
		exit 1
	fi
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
