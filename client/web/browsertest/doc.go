// Package browsertest drives the SDK's WebAssembly module in a real
// headless Chromium: the example shop and the privacy dashboard
// (client/web/example) against a coordinator node process on loopback
// serving WebTransport, in secure rounds with native devices. It holds
// only tests; they skip when no Chromium is installed unless
// REQUIRE_BROWSER_TESTS=1, which CI sets.
package browsertest
