#!/usr/bin/env bash
# Runs every test of withdrawal: the version and documentation checks, the
# pg_regress suite, the isolation specs and the TAP suite, each against
# throwaway clusters.  Installs what it needs first (tools/setup.sh).
#
#   tools/test.sh                   everything
#   tools/test.sh regress [NAME…]   pg_regress only (optionally some tests)
#   tools/test.sh isolation [NAME…] isolation specs only (optionally some)
#   tools/test.sh tap [FILE…]       TAP only (optionally some files)
#
# On failure the private work directory is kept and its path printed;
# TEST_KEEP=1 keeps it after a success too (the TAP logs are in
# tmp_check/log there).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/setup.sh"
. "$here/common.sh"

what=${1:-all}
[ $# -gt 0 ] && shift
case $what in
all | regress | isolation | tap) ;;
*)
	echo "usage: tools/test.sh [all | regress [NAME…] | isolation [NAME…] | tap [FILE…]]" >&2
	exit 2
	;;
esac

"$here/check-version.sh"
"$here/check-docs.sh"
"$here/check-layers.sh"

work=$(make_workdir)
trap 'echo "test: work directory kept at $work" >&2' ERR
export PG_CFLAGS=${PG_CFLAGS:-"-Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers -Werror -DUSE_ASSERT_CHECKING"}
bindir=$(build_private_install "$work")
# withdrawal.secrets_file must be owned by the server user with mode 0600
# (git keeps no such mode); test/regress.conf points at this file.
[ -f "$work/test/regress-secrets" ] && chmod 600 "$work/test/regress-secrets"
install_node_modules "$work"

status=0
# PGXS's installcheck runs the pg_regress tests (REGRESS) and then the
# isolation specs (ISOLATION), each suite on a temporary instance of its
# own; it is run once per suite, the other's list emptied, so that a
# failure in one does not hide the other's result.
for suite in regress isolation; do
	[ "$what" = all ] || [ "$what" = "$suite" ] || continue
	if [ "$suite" = regress ]; then
		check_args=(ISOLATION=)
		[ "$what" = regress ] && [ $# -gt 0 ] && check_args+=(REGRESS="$*")
		diffs=$work/regression.diffs
	else
		check_args=(REGRESS=)
		[ "$what" = isolation ] && [ $# -gt 0 ] && check_args+=(ISOLATION="$*")
		diffs=$work/output_iso/regression.diffs
	fi
	if ! as_run_user make -s -C "$work" installcheck bindir="$bindir" "${check_args[@]}"; then
		[ -f "$diffs" ] && head -c 20000 "$diffs"
		status=1
	fi
done
if [ "$what" = all ] || [ "$what" = tap ]; then
	tap_args=()
	[ "$what" = tap ] && [ $# -gt 0 ] && tap_args=(PROVE_TESTS="$*")
	if ! as_run_user make -s -C "$work" prove-installcheck bindir="$bindir" "${tap_args[@]}"; then
		for f in "$work"/tmp_check/log/regress_log_*; do
			[ -f "$f" ] && grep -q "not ok" "$f" && { echo "== $f"; tail -n 60 "$f"; }
		done
		status=1
	fi
	# Whatever a test checks, no server may have crashed: a process killed
	# by a signal the tests do not send (they send 9), a failed assertion,
	# a PANIC.
	if crashes=$(grep -HE 'terminated by signal ([0-8]|[1-9][0-9]+)[^0-9]|TRAP:|PANIC:' \
			"$work"/tmp_check/log/*.log 2>/dev/null); then
		echo "$crashes" | head -n 20
		echo "test: a server crashed during the TAP tests" >&2
		status=1
	fi
fi

if [ $status -ne 0 ]; then
	echo "test: FAILED; work directory kept at $work" >&2
	exit 1
fi
if [ "${TEST_KEEP:-0}" = 1 ]; then
	echo "test: work directory kept at $work"
else
	rm -rf "$work"
fi
echo "test: all passed"
