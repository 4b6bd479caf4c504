#!/usr/bin/env bash
# Fails when the documentation drifts from the SQL API or the README grows
# past a front page:
#   - every function and view that sql/install/*.sql creates in schema
#     withdrawal (trigger functions aside) must be named in docs/api.md as
#     withdrawal.NAME;
#   - README.md must stay at most 17 KB.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0

# NAME for each CREATE FUNCTION / CREATE VIEW withdrawal.NAME; a function is
# skipped when its header (up to AS or LANGUAGE) says RETURNS trigger.
objects=$(perl -0777 -ne '
	while (/CREATE\s+(?:OR\s+REPLACE\s+)?(FUNCTION|VIEW)\s+withdrawal\.(\w+)(.*?)(?:\bAS\b|\bLANGUAGE\b|;)/gis) {
		my ($kind, $name, $head) = ($1, $2, $3);
		next if uc($kind) eq "FUNCTION" && $head =~ /\bRETURNS\s+trigger\b/i;
		print "$name\n";
	}' sql/install/*.sql | sort -u)

if [ -z "$objects" ]; then
	echo "check-docs: found no function or view in sql/install/*.sql" >&2
	exit 1
fi

missing=()
for name in $objects; do
	grep -q "withdrawal\.$name\b" docs/api.md || missing+=("$name")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "check-docs: not documented in docs/api.md: ${missing[*]}" >&2
	status=1
fi

limit=$((17 * 1024))
size=$(wc -c <README.md)
if [ "$size" -gt "$limit" ]; then
	echo "check-docs: README.md is $size bytes, over $limit: move details to docs/" >&2
	status=1
fi

exit $status
