#!/bin/sh
# mobile-check.sh: the client SDK and its gomobile binding must build for
# Android and iOS. Run from the repository root; CI runs it on Linux.
#
# ios/* and android/amd64 can only be linked externally (with cgo), so the
# go command refuses to vet packages for them with CGO_ENABLED=0 ("requires
# external (cgo) linking"). For iOS, vet with cgo enabled works without an
# iOS C toolchain; for Android it would need the NDK, so only arm64 (which
# links internally) is vetted there. go build of library packages links
# nothing and works everywhere with CGO_ENABLED=0.
#
# If gomobile is installed (and ANDROID_HOME / Xcode are present), the
# binding is also bound for real: set MOBILE_BIND=1.
set -eu

# The SDK's packages for phones: client/web is a command for browsers (its
# native build only says so), and linking a command for ios/* or
# android/amd64 would need cgo; it is built for js/wasm below.
pkgs=$(go list ./client/... | grep -v '/client/web$')

run() {
	echo "+ $*" >&2
	env "$@"
}

# Android: arm64 links internally, so it can be vetted without the NDK;
# the other ABIs are compiled (vet would need the NDK's cgo toolchain).
run GOOS=android GOARCH=arm64 CGO_ENABLED=0 go vet $pkgs
run GOOS=android GOARCH=arm64 CGO_ENABLED=0 go build $pkgs
run GOOS=android GOARCH=amd64 CGO_ENABLED=0 go build $pkgs
run GOOS=android GOARCH=arm GOARM=7 CGO_ENABLED=0 go build $pkgs

# iOS: devices (arm64) and the simulator (amd64).
run GOOS=ios GOARCH=arm64 CGO_ENABLED=1 go vet $pkgs
run GOOS=ios GOARCH=arm64 CGO_ENABLED=0 go build $pkgs
run GOOS=ios GOARCH=amd64 CGO_ENABLED=1 go vet $pkgs

# Browsers: the SDK builds for WebAssembly, reaching nodes over the
# WebTransport API (client/transport_js.go), without quic-go. Only built:
# vet would also build the tests, which run real QUIC listeners.
run GOOS=js GOARCH=wasm go build ./client/...
run GOOS=js GOARCH=wasm go vet ./client/web
wasm=$(mktemp)
run GOOS=js GOARCH=wasm go build -o "$wasm" ./client/web
echo "mobile-check: client/web is $(gzip -9 -c "$wasm" | wc -c) bytes gzipped (target: 3 MB)" >&2
[ "$(gzip -9 -c "$wasm" | wc -c)" -le 3145728 ] || { echo "mobile-check: the WebAssembly module exceeds 3 MB gzipped" >&2; rm -f "$wasm"; exit 1; }
rm -f "$wasm"
if GOOS=js GOARCH=wasm go list -deps ./client/... | grep -q '^github.com/quic-go/'; then
	echo "mobile-check: the js/wasm SDK links quic-go" >&2
	exit 1
fi

# The binding's exported surface keeps to types gomobile accepts.
run go test -run TestBindableSurface ./client/mobile/

if [ "${MOBILE_BIND:-0}" = 1 ]; then
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
	if [ -n "${ANDROID_HOME:-}" ]; then
		run gomobile bind -target=android -androidapi 21 -javapkg=org.fedrec -o "$out/fedrec.aar" ./client/mobile
	fi
	if [ "$(uname)" = Darwin ]; then
		run gomobile bind -target=ios -prefix=FR -o "$out/Fedrec.xcframework" ./client/mobile
	fi
fi
echo "mobile-check: ok" >&2
