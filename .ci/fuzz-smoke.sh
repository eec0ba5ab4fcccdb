#!/bin/sh
# fuzz-smoke.sh: every fuzz target for a few seconds (FUZZTIME, default 3s),
# so that CI exercises the decoders of untrusted bytes beyond their seed
# corpora; `make fuzz` runs them longer.
set -eu
t=${FUZZTIME:-3s}
for p in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$p" | grep '^Fuzz' || true); do
		echo "+ fuzz $p $f ($t)" >&2
		# A failing input fails at once, with go test's report (it names the
		# input). A run that failed without one (a fuzz worker starved on a
		# loaded machine) is tried once more.
		for try in 1 2; do
			if out=$(go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$p" 2>&1); then
				break
			fi
			printf '%s\n' "$out" | tail -40 >&2
			case "$out" in *"Failing input written to"*) exit 1 ;; esac
			[ "$try" = 2 ] && exit 1
			echo "+ fuzz $p $f: failed without a failing input; once more" >&2
		done
	done
done
echo "fuzz-smoke: ok"
