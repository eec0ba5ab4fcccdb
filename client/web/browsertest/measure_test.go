//go:build !js

package browsertest

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The measurements of the targets, logged, never asserted: run
//
//	go test -count=1 -run 'TestLocalStepInBrowser|TestFirstRecommendation' -v ./client/web/browsertest -measure
//
// (without -race, which slows the native side).
var measure = flag.Bool("measure", false, "run the browser measurements and log them")

// TestLocalStepInBrowser runs BenchmarkLocalStep compiled to WebAssembly
// in Chromium and natively in this process, interleaved, and logs both.
func TestLocalStepInBrowser(t *testing.T) {
	if !*measure {
		t.Skip("a measurement: run with -measure")
	}
	e := newBrowser(t)
	wasm := filepath.Join(e.dir, "bench.wasm")
	cmd := exec.CommandContext(e.ctx, "go", "test", "-c", "-o", wasm, ".")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test -c for js/wasm: %v\n%s", err, out)
	}
	e.serveFile("/bench.wasm", wasm)
	e.do(chromedp.Navigate(e.web.URL + "/example/"))
	const rounds = 5
	var browser, native []float64
	for range rounds {
		out := eval[string](e, `(async () => {
	if (!globalThis.Go) await new Promise((res, rej) => { const s = document.createElement("script"); s.src = "/wasm_exec.js"; s.onload = res; s.onerror = rej; document.head.appendChild(s); });
	const lines = [], log = console.log;
	console.log = (...a) => lines.push(a.join(" "));
	try {
		const go = new Go();
		go.argv = ["browsertest.test", "-test.run=^$", "-test.bench=^BenchmarkLocalStep$", "-test.benchtime=20x"];
		const r = await WebAssembly.instantiateStreaming(fetch("/bench.wasm"), go.importObject);
		await go.run(r.instance);
	} finally { console.log = log; }
	return lines.join("\n");
})()`)
		ns, ok := nsPerOp(out)
		if !ok {
			t.Fatalf("no benchmark result in the browser's output:\n%s", out)
		}
		browser = append(browser, ns)
		res := testing.Benchmark(BenchmarkLocalStep)
		native = append(native, float64(res.NsPerOp()))
	}
	b, n := median(browser), median(native)
	t.Logf("local step, 200 interactions, 10,000 items at rank 32: browser (Chromium, WebAssembly) %v, native %v, ratio %.2f (medians of %d; target ≤ 3)",
		time.Duration(b).Round(time.Microsecond), time.Duration(n).Round(time.Microsecond), b/n, rounds)
}

var reNsPerOp = regexp.MustCompile(`BenchmarkLocalStep\S*\s+\d+\s+(\d+(?:\.\d+)?) ns/op`)

func nsPerOp(out string) (float64, bool) {
	m := reNsPerOp.FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestFirstRecommendation loads the shop with a 10,000-item model (rank
// 32) and logs the time from page start to the first recommendations
// shown (performance.now() in the page): first with an empty IndexedDB
// (the module and the model downloaded), then on a return visit after a
// recorded view (the model kept on the device, a newer one fetched after
// the first recommendations).
func TestFirstRecommendation(t *testing.T) {
	if !*measure {
		t.Skip("a measurement: run with -measure")
	}
	e := newEnv(t, envConfig{items: 10_000, users: 50, flags: []string{"--rank", "32"}})
	for _, load := range []string{"first visit", "return visit"} {
		e.do(chromedp.Navigate(e.web.URL + "/example/shop.html"))
		e.waitPage(`document.body.dataset.ready === "1"`, "the first recommendations")
		if load == "first visit" {
			// A view creates the device's store, which then keeps the model.
			e.do(chromedp.Click(chromedp.CSS(`.card button[data-kind="view"]`)))
			e.waitPage(`document.body.dataset.recorded === "1"`, "the view to be recorded")
		}
		ms := eval[string](e, `document.body.dataset.firstRecMs`)
		marks := eval[string](e, `performance.getEntriesByType("mark").map((m) => m.name + " " + m.startTime.toFixed(0)).join(", ")`)
		// Each download's start and end, and its bytes over the network
		// (0: from the browser's cache).
		res := eval[string](e, `performance.getEntriesByType("resource").map((r) => r.name.replace(/.*\//, "") + " " + r.startTime.toFixed(0) + "-" + r.responseEnd.toFixed(0) + " (" + r.transferSize + " B)").join(", ")`)
		t.Logf("10,000 items, rank 32, %s: page start to first recommendation %s ms (target ≤ 1000); ms since page start: %s; downloads: %s", load, ms, marks, res)
	}
}
