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

	"github.com/fedrec/fedrec/client/internal/step/steptest"
	"github.com/fedrec/fedrec/model"
)

// The measurements of the targets, logged, never asserted: run
//
//	go test -count=1 -run 'TestLocalStepInBrowser|TestFirstRecommendation' -v ./client/web/browsertest -measure
//
// (without -race, which slows the native side).
var measure = flag.Bool("measure", false, "run the browser measurements and log them")

// TestLocalStepInBrowser runs BenchmarkLocalStep compiled to WebAssembly
// in Chromium and natively in this process, interleaved, and logs both
// for each kind of model.
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
	const rounds = 7
	kinds := []model.Kind{model.Explicit, model.Implicit}
	browser, native := map[model.Kind][]float64{}, map[model.Kind][]float64{}
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
		for _, k := range kinds {
			ns, ok := nsPerOp(out, k)
			if !ok {
				t.Fatalf("no %v benchmark result in the browser's output:\n%s", k, out)
			}
			browser[k] = append(browser[k], ns)
			res := testing.Benchmark(func(b *testing.B) { steptest.Benchmark(b, k) })
			native[k] = append(native[k], float64(res.NsPerOp()))
		}
	}
	// On a loaded machine the fastest of the runs is the least disturbed.
	ms := func(ns float64) string { return time.Duration(ns).Round(10 * time.Microsecond).String() }
	for _, k := range kinds {
		b, n := slices.Min(browser[k]), slices.Min(native[k])
		t.Logf("local step, %v model, 200 interactions, 10,000 items at rank 32: browser (Chromium, WebAssembly) %s, native %s, ratio %.2f (fastest of %d; target ≤ 3); medians %s and %s",
			k, ms(b), ms(n), b/n, rounds, ms(median(browser[k])), ms(median(native[k])))
	}
}

// nsPerOp finds BenchmarkLocalStep/kind's time in benchmark output.
func nsPerOp(out string, k model.Kind) (float64, bool) {
	re := regexp.MustCompile(`BenchmarkLocalStep/` + k.String() + `\S*\s+\d+\s+(\d+(?:\.\d+)?) ns/op`)
	m := re.FindStringSubmatch(out)
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
