//go:build !js

package browsertest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var screenshots = flag.Bool("screenshots", false, "write docs/browser-shop.png and docs/browser-dashboard.png")

// The example shop in Chromium against a node process: it shows
// recommendations, records the shopper's events, opts in and joins a
// secure round with native devices (fedrec client over QUIC); the round
// commits and the page shows the newer model's recommendations. Then the
// privacy dashboard shows the round; opting out stops participation;
// deleting the data leaves IndexedDB and the report empty.
func TestShopAndDashboard(t *testing.T) {
	e := newEnv(t, envConfig{items: 60, users: 12})
	e.natives(5)

	// The shop opens the device and shows the initial model's
	// recommendations.
	e.do(chromedp.Navigate(e.web.URL + "/example/shop.html"))
	e.waitPage(`document.body.dataset.ready === "1"`, "the shop's first recommendations")
	v0 := e.bodyInt("modelVersion")
	if n := eval[int](e, `document.querySelectorAll("#recs li").length`); n != 10 {
		t.Fatalf("the shop shows %d recommendations, want 10", n)
	}

	// The shopper looks at, carts and buys products.
	ps := e.config.Products
	for i, kind := range []string{"view", "cart", "purchase", "purchase"} {
		e.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`.card[data-item=%q] button[data-kind=%q]`, ps[i].Item, kind))))
		e.waitPage(fmt.Sprintf(`document.body.dataset.recorded === "%d"`, i+1), "the event to be recorded")
	}

	// Opting in joins a secure round with the native devices.
	e.do(chromedp.Click(chromedp.CSS(`#optin:not([disabled])`)))
	e.waitPage(`Number(document.body.dataset.rounds) >= 1`, "the browser to give an update to a round")
	e.waitPage(fmt.Sprintf(`Number(document.body.dataset.modelVersion) > %d`, v0), "the page to install a newer model")
	if n := eval[int](e, `document.querySelectorAll("#recs li").length`); n != 10 {
		t.Errorf("after the round the shop shows %d recommendations, want 10", n)
	}
	e.screenshot("browser-shop.png")

	// The dashboard shows the round the device joined.
	e.do(chromedp.Navigate(e.web.URL + "/example/dashboard.html"))
	e.waitPage(`document.body.dataset.ready === "1"`, "the dashboard")
	rep := eval[report](e, `JSON.parse(document.body.dataset.report)`)
	if rep.Interactions != 4 || !rep.OptedIn || len(rep.Rounds) == 0 {
		t.Fatalf("report = %+v, want 4 interactions, opted in, a round", rep)
	}
	round := rep.Rounds[len(rep.Rounds)-1]
	if !round.Acknowledged || round.NoiseMultiplier < 1 || round.ClipNorm != 1 {
		t.Errorf("the device's round = %+v, want acknowledged, noise ≥ 1, clip 1", round)
	}
	waitFor(t, e.ctx, fmt.Sprintf("round %d to commit", round.Round), func() bool { return e.committed()[round.Round] >= 3 })
	t.Logf("the browser gave an update to round %d (model %d, noise ×%.2g, ε %.3g), committed with %d survivors",
		round.Round, round.ModelVersion, round.NoiseMultiplier, round.Epsilon, e.committed()[round.Round])
	if rows := eval[int](e, `document.querySelectorAll("#rounds tr").length`); rows != len(rep.Rounds) {
		t.Errorf("the dashboard lists %d rounds, the report %d", rows, len(rep.Rounds))
	}
	e.screenshot("browser-dashboard.png")

	// Opting out stops participation: back in the shop the device no
	// longer joins rounds, which commit without it.
	e.do(chromedp.Click(chromedp.CSS(`#optout`)))
	e.waitPage(`document.body.dataset.ready === "2"`, "the dashboard after opting out")
	if got := eval[string](e, `document.getElementById("optedin").textContent`); got != "no" {
		t.Errorf("after opting out the dashboard says opted in: %q", got)
	}
	e.do(chromedp.Navigate(e.web.URL + "/example/shop.html"))
	e.waitPage(`document.body.dataset.ready === "1" && !document.getElementById("optin").disabled`, "the shop")
	if eval[bool](e, `document.getElementById("optin").checked`) {
		t.Error("after opting out the shop's opt-in box is checked")
	}
	joined := len(rep.Rounds)
	last := maxRound(e.committed())
	waitFor(t, e.ctx, "two more rounds to commit", func() bool { return maxRound(e.committed()) >= last+2 })
	e.do(chromedp.Navigate(e.web.URL + "/example/dashboard.html"))
	e.waitPage(`document.body.dataset.ready === "1"`, "the dashboard")
	if rep := eval[report](e, `JSON.parse(document.body.dataset.report)`); len(rep.Rounds) != joined || rep.OptedIn {
		t.Errorf("after opting out: %d rounds (opted in %v), want %d, out", len(rep.Rounds), rep.OptedIn, joined)
	}

	// Deleting the data empties the report and IndexedDB.
	e.do(chromedp.Click(chromedp.CSS(`#delete`)))
	e.waitPage(`document.body.dataset.ready === "2"`, "the dashboard after deleting the data")
	rep = eval[report](e, `JSON.parse(document.body.dataset.report)`)
	if rep.Interactions != 0 || len(rep.Rounds) != 0 || rep.Totals.Epsilon != 0 || rep.OptedIn {
		t.Errorf("report after delete = %+v, want empty", rep)
	}
	if n := e.bodyInt("storedBytes"); n != 0 {
		t.Errorf("storedBytes after delete = %d, want 0", n)
	}
	stores := eval[map[string]int](e, idbCounts)
	if len(stores) == 0 {
		t.Error("no IndexedDB object stores found")
	}
	for s, n := range stores {
		if n != 0 {
			t.Errorf("after delete, IndexedDB %s holds %d records", s, n)
		}
	}
}

// report is the part of client.Report the test reads, as the page gets it.
type report struct {
	OptedIn      bool `json:"opted_in"`
	Interactions int  `json:"interactions_stored"`
	Rounds       []struct {
		Round           uint64  `json:"round"`
		ModelVersion    uint64  `json:"model_version"`
		Epsilon         float64 `json:"epsilon"`
		Acknowledged    bool    `json:"acknowledged"`
		NoiseMultiplier float64 `json:"noise_multiplier"`
		ClipNorm        float64 `json:"clip_norm"`
	} `json:"rounds"`
	Totals struct {
		Epsilon float64 `json:"epsilon"`
	} `json:"totals"`
}

// idbCounts counts the records of every object store of every IndexedDB
// database of the page's origin, keyed "database/store".
const idbCounts = `(async () => {
	const req = (r) => new Promise((res, rej) => { r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
	const out = {};
	for (const { name } of await indexedDB.databases()) {
		const db = await req(indexedDB.open(name));
		for (const s of db.objectStoreNames) out[name + "/" + s] = await req(db.transaction(s).objectStore(s).count());
		db.close();
	}
	return out;
})()`

func maxRound(m map[uint64]int) uint64 {
	var r uint64
	for k := range m {
		r = max(r, k)
	}
	return r
}

// waitPage waits until a JavaScript condition on the page holds, failing
// with the page's error message if it shows one.
func (e *env) waitPage(cond, what string) {
	e.t.Helper()
	waitFor(e.t, e.ctx, what, func() bool {
		if msg := eval[string](e, `(() => { const el = document.getElementById("error"); return el && !el.hidden ? el.textContent : ""; })()`); msg != "" {
			e.t.Fatalf("waiting for %s, the page shows an error: %s", what, msg)
		}
		return eval[bool](e, `!!(`+cond+`)`)
	})
}

// bodyInt reads a numeric data attribute of the page's body.
func (e *env) bodyInt(name string) int {
	e.t.Helper()
	s := eval[string](e, `document.body.dataset.`+name+` ?? ""`)
	n, err := strconv.Atoi(s)
	if err != nil {
		e.t.Fatalf("body data-%s = %q, want a number", name, s)
	}
	return n
}

// screenshot writes the page to docs/name with -screenshots.
func (e *env) screenshot(name string) {
	e.t.Helper()
	if !*screenshots {
		return
	}
	ctx, cancel := e.tabCtx()
	defer cancel()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(webDir, "..", "..", "docs", name), b, 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.t.Logf("wrote docs/%s at %s", name, time.Now().Format(time.TimeOnly))
}
