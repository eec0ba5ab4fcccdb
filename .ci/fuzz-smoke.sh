#!/bin/sh
# fuzz-smoke.sh: every fuzz target for a few seconds (FUZZTIME, default 3s),
# so that CI exercises the decoders of untrusted bytes beyond their seed
# corpora; `make fuzz` runs them longer.
set -eu
t=${FUZZTIME:-3s}
for p in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$p" | grep '^Fuzz' || true); do
		echo "+ fuzz $p $f ($t)" >&2
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$p" >/dev/null
	done
done
echo "fuzz-smoke: ok"
