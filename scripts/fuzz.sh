#!/usr/bin/env bash
# A short pass over every fuzz target of the module, FUZZTIME each
# (default 3s): `make fuzz`, and part of `make test`.
#
# Go 1.26's fuzzing coordinator can end a run that found nothing with a bare
# "context deadline exceeded" at the -fuzztime boundary on a loaded machine
# (go.dev/issue/75804, fixed in Go 1.27). Such a run, with no failing input
# written, is run once more; any other failure, or the same one twice,
# fails the pass.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-3s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# coordinator_flake reports whether the log is that bare deadline failure.
coordinator_flake() {
	grep -q '^    context deadline exceeded$' "$log" && ! grep -q 'Failing input written' "$log"
}

for pkg in $($GO list ./...); do
	for target in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $target"
		for attempt in 1 2; do
			if $GO test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
				break
			fi
			if [ "$attempt" = 1 ] && coordinator_flake; then
				echo "  the fuzzing coordinator's deadline race (go.dev/issue/75804), no failing input: once more"
				continue
			fi
			cat "$log"
			exit 1
		done
	done
done
