//go:build !js

package browsertest

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// The WebAssembly module in Chromium reaches the node over WebTransport,
// authenticates with a device token and downloads the committed model.
func TestBrowserModel(t *testing.T) {
	e := newEnv(t, envConfig{items: 40, users: 8})
	e.do(chromedp.Navigate(e.web.URL + "/example/"))
	got := eval[map[string]any](e, `(async () => {
	await new Promise((res, rej) => { const s = document.createElement("script"); s.src = "/wasm_exec.js"; s.onload = res; s.onerror = rej; document.head.appendChild(s); });
	const go = new Go();
	const r = await WebAssembly.instantiateStreaming(fetch("/fedrec.wasm"), go.importObject);
	go.run(r.instance);
	const cfg = await (await fetch("/example/config.json")).json();
	const c = await fedrec.connect({addrs: cfg.addrs, certHashes: cfg.certHashes, token: async () => (await fetch("/example/token")).text()});
	const m = await c.model();
	c.close();
	return {version: m.version, items: m.items};
})()`)
	if got["items"] != float64(40) {
		t.Errorf("model = %v, want 40 items", got)
	}
}
