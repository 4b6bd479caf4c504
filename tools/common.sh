# Shared by tools/test.sh and tools/demo.sh; sourced, not run.
#
# Both build the extension in a private copy of the source tree owned by an
# unprivileged user (PostgreSQL refuses to run as root) and install it into
# a private copy of the PostgreSQL installation, so that nothing is written
# to the system's PostgreSQL directories and parallel runs cannot collide.

src_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The unprivileged user that builds and runs clusters.
if [ "$(id -u)" -eq 0 ]; then
	run_user=postgres
else
	run_user=$(id -un)
fi

as_run_user() {
	if [ "$(id -un)" = "$run_user" ]; then
		"$@"
	else
		runuser -u "$run_user" -- "$@"
	fi
}

# make_workdir: copies the source tree (tracked and untracked, not ignored
# files) into a fresh directory owned by $run_user and prints its path.
make_workdir() {
	local work
	work=$(mktemp -d "${TMPDIR:-/tmp}/withdrawal.XXXXXX")
	if git -C "$src_root" rev-parse --git-dir >/dev/null 2>&1; then
		(cd "$src_root" && git ls-files -z --cached --others --exclude-standard |
			xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' |
			tar --null -T - -cf -) | tar -C "$work" -xf -
	else
		(cd "$src_root" && tar --exclude=./tmp_check --exclude=./tmp_install -cf - .) | tar -C "$work" -xf -
	fi
	chmod 755 "$work"
	[ "$(id -u)" -eq 0 ] && chown -R "$run_user" "$work"
	echo "$work"
}

# build_private_install WORK: builds the extension in WORK and installs it
# into WORK/tmp_install next to a copy of the server binaries; prints the
# private bindir.
build_private_install() {
	local work=$1 pg_bindir pg_libdir pg_sharedir inst
	pg_bindir=$(pg_config --bindir)
	pg_libdir=$(pg_config --pkglibdir)
	pg_sharedir=$(pg_config --sharedir)
	inst=$work/tmp_install
	as_run_user mkdir -p "$inst$pg_bindir" "$inst$pg_libdir" "$inst$pg_sharedir"
	# The server finds share/ and lib/ relative to its own binary, so a
	# copy of the installation serves as a private one.
	as_run_user cp -a "$pg_bindir/." "$inst$pg_bindir/"
	as_run_user cp -a "$pg_libdir/." "$inst$pg_libdir/"
	as_run_user cp -a "$pg_sharedir/." "$inst$pg_sharedir/"
	# errexit does not reach into the command substitution that calls this:
	# a failed build must fail the caller, not test the installed copy
	as_run_user make -s -C "$work" -j"$(nproc)" ${PG_CFLAGS:+PG_CFLAGS="$PG_CFLAGS"} >&2 || return 1
	as_run_user make -s -C "$work" install DESTDIR="$inst" >&2 || return 1
	echo "$inst$pg_bindir"
}

# install_node_modules WORK: the mock processor's and the interoperability
# tests' npm packages, pinned by test/package-lock.json.
install_node_modules() {
	local work=$1
	[ -f "$work/test/package.json" ] || return 0
	as_run_user env npm_config_cache="$work/.npm" \
		npm ci --prefix "$work/test" --no-audit --no-fund --loglevel=error >&2
}
