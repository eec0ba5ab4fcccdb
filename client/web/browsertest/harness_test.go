//go:build !js

package browsertest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/proctest"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/sim"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// built holds the fedrec binary and the WebAssembly module, built once
// for all the tests.
var built struct {
	once sync.Once
	dir  string // fedrec, fedrec.wasm, wasm_exec.js
	err  error
}

// webDir is client/web: fedrec.js and the example pages.
var webDir = func() string { wd, _ := os.Getwd(); return filepath.Dir(wd) }()

// build builds fedrec and the WebAssembly module into one directory.
func build(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "fedrec-browser-"); built.err != nil {
			return
		}
		steps := []struct {
			env  []string
			args []string
		}{
			{nil, []string{"build", "-o", filepath.Join(built.dir, "fedrec"), "github.com/fedrec/fedrec/cmd/fedrec"}},
			{[]string{"GOOS=js", "GOARCH=wasm"}, []string{"build", "-o", filepath.Join(built.dir, "fedrec.wasm"), "github.com/fedrec/fedrec/client/web"}},
		}
		for _, s := range steps {
			cmd := exec.Command("go", s.args...)
			cmd.Env = append(os.Environ(), s.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				built.err = fmt.Errorf("go %s: %v\n%s", strings.Join(s.args, " "), err, out)
				return
			}
		}
		b, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "lib", "wasm", "wasm_exec.js"))
		if err != nil {
			built.err = err
			return
		}
		built.err = os.WriteFile(filepath.Join(built.dir, "wasm_exec.js"), b, 0o644)
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.dir
}

// chromiumPath finds Chromium, or skips the test (fails it when
// REQUIRE_BROWSER_TESTS=1).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM_BIN"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("REQUIRE_BROWSER_TESTS") == "1" {
		t.Fatal("REQUIRE_BROWSER_TESTS=1 but no Chromium found (apt-get install chromium, or set CHROMIUM_BIN)")
	}
	t.Skip("no Chromium found (apt-get install chromium, or set CHROMIUM_BIN); REQUIRE_BROWSER_TESTS=1 makes this a failure")
	return ""
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	proctest.WaitFor(t, ctx, what, cond)
}

var (
	reWebTransport = regexp.MustCompile(`webtransport https://([^/\s]+)/`)
	reClients      = regexp.MustCompile(`raft \S+, clients (\S+)`)
	reCommitted    = regexp.MustCompile(`msg="round committed" node=\S+ round=(\d+) model=(\d+) survivors=(\d+)`)
)

// shopConfig is what the example pages need (client/web/example/device.js);
// the test serves it as example/config.json, as a shop's backend would.
type shopConfig struct {
	Addrs      []string       `json:"addrs"`
	CertHashes []string       `json:"certHashes"`
	Items      []string       `json:"items"`
	Policy     map[string]any `json:"policy,omitempty"`
	Products   []product      `json:"products,omitempty"`
}

type product struct {
	Item  string `json:"item"`
	Name  string `json:"name"`
	Price int    `json:"price"`
}

// env is a coordinator node process serving WebTransport, the shop's web
// server (pages, module, config, device tokens) and a headless Chromium.
type env struct {
	t    *testing.T
	ctx  context.Context // the test's deadline
	dir  string
	bin  string
	node *proctest.Proc
	quic string // the node's QUIC client address
	web  *httptest.Server
	mux  *http.ServeMux
	tab  context.Context // a chromedp tab

	mu       sync.Mutex
	config   shopConfig         // guarded by mu
	tokenKey ed25519.PrivateKey // the shop backend's; guarded by mu
}

// envConfig shapes the cluster.
type envConfig struct {
	items int      // catalogue size
	users int      // users of the native devices' data set
	flags []string // extra coordinator flags
}

// newEnv starts a node with an implicit model over a shop catalogue of
// cfg.items items, secure aggregation and central noise, serving
// WebTransport with a certificate browsers accept by its hash; the shop's
// server; and Chromium.
func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	e := newBrowser(t)

	// Node certificates valid for less than 14 days: browsers then
	// accept them by hash (serverCertificateHashes), as in development.
	e.run("cert", "--dir", "certs", "--nodes", "a", "--days", "10")
	// The device policy accepts the test's small cohorts, and a budget for
	// several rounds charged at sampling rate 1 (about ε 5 each).
	sc := shopConfig{CertHashes: []string{e.certHash("a")}, Policy: map[string]any{"minCohort": 3, "epsilon": 50}}

	// The shop's data: users' purchases of catalogue items, two columns
	// (user,item), so an implicit data set. Every item appears, so that
	// the data set's catalogue is the shop's.
	var csv bytes.Buffer
	for i := range cfg.items {
		fmt.Fprintf(&csv, "u%d,sku-%05d\n", i%cfg.users, i+1)
	}
	r := rand.New(rand.NewPCG(7, 15))
	for u := range cfg.users {
		for range 12 {
			fmt.Fprintf(&csv, "u%d,sku-%05d\n", u, 1+r.IntN(cfg.items))
		}
	}
	data := filepath.Join(e.dir, "shop.csv")
	if err := os.WriteFile(data, csv.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// The model's items are in the data set's order.
	ds, err := sim.LoadCSV(data)
	if err != nil {
		t.Fatal(err)
	}
	sc.Items = ds.ItemIDs
	sc.Products = products(sc.Items)

	args := append([]string{"coordinator", "--id", "a", "--data-dir", "a", "--certs", "certs", "--bootstrap",
		"--raft-addr", "127.0.0.1:0", "--client-addr", "127.0.0.1:0", "--webtransport-addr", "127.0.0.1:0",
		"--heartbeat", "200ms", "--log-level", "info",
		"--dataset", "shop.csv", "--objective", "implicit", "--rank", "8",
		"--secagg", "--clip", "1", "--noise-multiplier", "1", "--population", "1000",
		"--min-clients", "3", "--over-select", "0", "--checkin-window", "1s", "--round-timeout", "60s", "--secagg-phase", "30s"},
		cfg.flags...)
	e.node = proctest.Start(t, e.bin, e.dir, "node-a", args...)
	waitFor(t, e.ctx, "the node's addresses", func() bool {
		select {
		case <-e.node.Done:
			t.Fatalf("the node exited:\n%s", proctest.Tail(proctest.Read(e.node.Log), 3000))
		default:
		}
		out := proctest.Read(e.node.Out)
		w, q := reWebTransport.FindStringSubmatch(out), reClients.FindStringSubmatch(out)
		if w == nil || q == nil {
			return false
		}
		sc.Addrs, e.quic = []string{w[1]}, q[1]
		return true
	})

	key, err := pki.LoadTokenKey(filepath.Join(e.dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.config, e.tokenKey = sc, key
	e.mu.Unlock()
	return e
}

// products names items as a shop would, for the pages and screenshots.
func products(items []string) []product {
	adj := []string{"Linen", "Oak", "Blue", "Wool", "Copper", "Stone", "Cotton", "Walnut"}
	noun := []string{"mug", "scarf", "lamp", "bowl", "throw", "vase", "tote", "tray", "candle"}
	out := make([]product, len(items))
	for i, it := range items {
		out[i] = product{Item: it, Name: adj[i%len(adj)] + " " + noun[i%len(noun)], Price: 8 + (i*13)%60}
	}
	return out
}

// newBrowser starts the shop's web server and Chromium, without a node.
func newBrowser(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: builds fedrec and the WebAssembly module, runs a node and Chromium")
	}
	chrome := chromiumPath(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	t.Cleanup(cancel)
	bdir := build(t)
	e := &env{t: t, ctx: ctx, dir: t.TempDir(), bin: filepath.Join(bdir, "fedrec")}
	e.serve()
	e.browser(chrome)
	return e
}

// run runs a fedrec command in the test's directory and returns its
// output.
func (e *env) run(args ...string) string {
	e.t.Helper()
	cmd := exec.CommandContext(e.ctx, e.bin, args...)
	cmd.Dir = e.dir
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			stderr = ee.Stderr
		}
		e.t.Fatalf("fedrec %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// certHash is the SHA-256 of node name's certificate, in hex, as a page
// passes it in certHashes.
func (e *env) certHash(name string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, "certs", pki.CertFile(name)))
	if err != nil {
		e.t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		e.t.Fatalf("%s: no PEM block", pki.CertFile(name))
	}
	h := sha256.Sum256(blk.Bytes)
	return hex.EncodeToString(h[:])
}

// serve starts the shop's web server: client/web (fedrec.js, the example
// pages), the built module, and beside the pages config.json and token,
// which issues a device token for the device in its query (?device=ID,
// default "browser-1") the way a shop's backend would after logging the
// shopper in.
func (e *env) serve() {
	e.mux = http.NewServeMux()
	mux := e.mux
	for _, f := range []string{"fedrec.wasm", "wasm_exec.js"} {
		mux.HandleFunc("/"+f, func(w http.ResponseWriter, r *http.Request) {
			http.ServeFile(w, r, filepath.Join(built.dir, f))
		})
	}
	mux.HandleFunc("/example/config.json", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		c := e.config
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(c)
	})
	mux.HandleFunc("/example/token", func(w http.ResponseWriter, r *http.Request) {
		device := r.URL.Query().Get("device")
		if device == "" {
			device = "browser-1"
		}
		e.mu.Lock()
		key := e.tokenKey
		e.mu.Unlock()
		if key == nil {
			http.Error(w, "no node", http.StatusNotFound)
			return
		}
		tok, err := wire.IssueToken(key, device, time.Now(), time.Hour, crand.Reader)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, wire.TokenText(tok))
	})
	mux.Handle("/", http.FileServer(http.Dir(webDir)))
	e.web = httptest.NewServer(mux)
	e.t.Cleanup(e.web.Close)
}

// serveFile serves file at path on the shop's server.
func (e *env) serveFile(path, file string) {
	e.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, file) })
}

// browser starts headless Chromium with one tab.
func (e *env) browser(path string) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", "new"),
		chromedp.UserDataDir(filepath.Join(e.dir, "chromium")),
		chromedp.WindowSize(1200, 900),
		// A container's /dev/shm is often 64 MiB, too small for Chromium's
		// shared memory; Debian's launcher adds this only when it can
		// measure /dev/shm.
		chromedp.Flag("disable-dev-shm-usage", true),
		// A loaded CI machine can take longer than chromedp's default 20 s
		// to start the browser.
		chromedp.WSURLReadTimeout(2*time.Minute),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to sandbox as root
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	e.t.Cleanup(cancel)
	tab, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(e.t.Logf))
	e.t.Cleanup(cancelTab)
	// The first Run starts the browser, which lives as long as tab.
	if err := chromedp.Do(tab); err != nil {
		e.t.Fatalf("start Chromium: %v", err)
	}
	e.tab = tab
}

// eval evaluates a JavaScript expression in the tab, awaiting a promise,
// and decodes its value into T.
func eval[T any](e *env, expr string) T {
	e.t.Helper()
	ctx, cancel := e.tabCtx()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		e.t.Fatalf("%s: %v", firstLine(expr), err)
	}
	return v
}

// do runs chromedp actions in the tab under the test's deadline.
func (e *env) do(steps ...chromedp.Action[chromedp.Void]) {
	e.t.Helper()
	ctx, cancel := e.tabCtx()
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		e.t.Fatal(err)
	}
}

// tabCtx is the tab under the test's deadline.
func (e *env) tabCtx() (context.Context, context.CancelFunc) {
	d, _ := e.ctx.Deadline()
	return context.WithDeadline(e.tab, d)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// committed returns the node's committed rounds: round → survivors.
func (e *env) committed() map[uint64]int {
	out := map[uint64]int{}
	for _, m := range reCommitted.FindAllStringSubmatch(proctest.Read(e.node.Log), -1) {
		r, _ := strconv.ParseUint(m[1], 10, 64)
		n, _ := strconv.Atoi(m[3])
		out[r] = n
	}
	return out
}

// natives starts n native devices (fedrec client, over QUIC with device
// certificates) training on the shop's data set.
func (e *env) natives(n int) *proctest.Proc {
	return proctest.Start(e.t, e.bin, e.dir, "natives", "client", "--data", "shop.csv", "--clients", strconv.Itoa(n),
		"--coordinators", e.quic, "--certs", "certs", "--eval=false", "--log-level", "warn")
}
