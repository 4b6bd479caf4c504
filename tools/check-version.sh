#!/usr/bin/env bash
# Fails when the version in the Makefile, the control file and META.json
# drift apart: EXTVERSION is the single source of truth.
set -euo pipefail
cd "$(dirname "$0")/.."
mk=$(sed -n 's/^EXTVERSION *= *//p' Makefile)
ctl=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" withdrawal.control)
meta=$(sed -n 's/^   "version": "\(.*\)",/\1/p' META.json)
prov=$(sed -n 's/^         "version": "\(.*\)"/\1/p' META.json)
metafile=$(sed -n 's/^         "file": "\(.*\)",/\1/p' META.json)
for v in "$ctl" "$meta" "$prov"; do
	if [ "$v" != "$mk" ]; then
		echo "check-version: Makefile says $mk, control says $ctl, META.json says $meta / $prov" >&2
		exit 1
	fi
done
if [ "$metafile" != "sql/withdrawal--$mk.sql" ]; then
	echo "check-version: META.json provides file $metafile, expected sql/withdrawal--$mk.sql" >&2
	exit 1
fi
# Released install scripts are never edited: a change goes into an upgrade
# script (and the install parts of the next version).
if ! sha256sum --quiet -c sql/released.sha256; then
	echo "check-version: a released install script was edited (sql/released.sha256)" >&2
	exit 1
fi
