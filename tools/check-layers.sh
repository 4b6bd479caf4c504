#!/usr/bin/env bash
# Fails when src/ has an include that points up the layer order.
#
# tools/layers.txt lists every module of src/ bottom-up, one per line: a
# bare name covers NAME.c and NAME.h, a name with a suffix covers that one
# file (withdrawal.h is a leaf, withdrawal.c the top).  A file may include
# its own module's header and the headers of modules listed before it;
# anything else, and any src/ file the list does not name, is an error.
# Because the list is a total order, the include graph has no cycle.
set -euo pipefail
cd "$(dirname "$0")/.."

perl -e '
	my (%rank, $n);
	open(my $list, "<", "tools/layers.txt") or die "check-layers: $!\n";
	while (<$list>) {
		s/#.*//; s/^\s+|\s+$//g;
		next if $_ eq "";
		die "check-layers: $_ is listed twice\n" if exists $rank{$_};
		$rank{$_} = ++$n;
	}
	sub rank_of {
		my ($file) = @_;
		(my $module = $file) =~ s/\.[ch]$//;
		return $rank{$file} // $rank{$module};
	}
	my $bad = 0;
	for my $path (sort glob("src/*.c src/*.h")) {
		(my $file = $path) =~ s{^src/}{};
		(my $module = $file) =~ s/\.[ch]$//;
		my $own = rank_of($file);
		if (!defined $own) {
			print STDERR "check-layers: $path is not in tools/layers.txt\n";
			$bad = 1;
			next;
		}
		open(my $src, "<", $path) or die "check-layers: $path: $!\n";
		while (<$src>) {
			next unless /^\s*#\s*include\s+"([^"]+\.h)"/;
			my $header = $1;
			next unless -e "src/$header";	# PostgreSQL and system headers
			next if $header eq "$module.h";
			my $theirs = rank_of($header);
			if (!defined $theirs) {
				print STDERR "check-layers: $path:$.: $header is not in tools/layers.txt\n";
				$bad = 1;
			} elsif ($theirs >= $own) {
				print STDERR "check-layers: $path:$.: includes $header, which is not below it\n";
				$bad = 1;
			}
		}
	}
	exit $bad;
'
