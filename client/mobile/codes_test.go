package mobile

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/internal/fakenode"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// bundle is a model bundled with an app: 6 items at rank 2, version 3, and
// its catalogue.
func bundle(t *testing.T) ([]byte, string) {
	t.Helper()
	m, _ := model.New(model.Explicit, 6, 2, 3.5, 0.1, rand.New(rand.NewPCG(1, 2)))
	items := []string{"a", "b", "c", "d", "e", "f"}
	var buf bytes.Buffer
	if err := client.WriteModel(&buf, client.Release{Version: 3, Model: m, Items: items}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), strings.Join(items, "\n")
}

type filterFunc func(string) bool

func (f filterFunc) Allow(item string) bool { return f(item) }

type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Log(level int, msg, attrs string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("%d %s %s", level, msg, attrs))
}

// The binding never panics: a list read out of range gives "" and 0, a
// cold start installs a bundled model, and calls after Close fail with
// the code "closed".
func TestBindingNeverPanics(t *testing.T) {
	o := &Options{Dir: t.TempDir(), Key: bytes.Repeat([]byte{3}, 32)}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	var logs logLines
	c.SetLogger(&logs)
	b, cat := bundle(t)
	if err := c.SetModel(b, "a\nc\nb\nd\ne\nf"); ErrorCode(errString(err)) != CodeCatalogueMismatch {
		t.Errorf("SetModel with a reordered catalogue = %v, want code %s", err, CodeCatalogueMismatch)
	}
	if err := c.SetModel(b[:10], cat); ErrorCode(errString(err)) != CodeInvalid {
		t.Errorf("SetModel of a truncated bundle = %v, want code %s", err, CodeInvalid)
	}
	if err := c.SetModel(b, cat); err != nil {
		t.Fatalf("SetModel(bundled model) = %v", err)
	}
	if v := c.ModelVersion(); v != 3 {
		t.Errorf("ModelVersion = %d, want 3", v)
	}
	if err := c.Record("a", View, 0, 0); err != nil {
		t.Fatal(err)
	}
	recs, err := c.Recommend(3, false)
	if err != nil || recs.Len() != 3 {
		t.Fatalf("Recommend = %v, %v; want 3 items", recs, err)
	}
	for _, i := range []int{-1, 3, 99} {
		if item, score := recs.Item(i), recs.Score(i); item != "" || score != 0 {
			t.Errorf("Item(%d), Score(%d) = %q, %v; want \"\", 0", i, i, item, score)
		}
	}
	// The app's filter and exclusions: never "b" nor "c", nor anything
	// the filter refuses; the list holds what is left.
	noD := filterFunc(func(item string) bool { return item != "d" })
	got, err := c.RecommendFiltered(6, false, "b\nc", noD)
	if err != nil {
		t.Fatal(err)
	}
	var items []string
	for i := range got.Len() {
		items = append(items, got.Item(i))
	}
	if strings.Join(items, ",") == "" || strings.ContainsAny(strings.Join(items, ","), "abcd") || len(items) != 2 {
		t.Errorf("RecommendFiltered excluding a (seen), b, c and d = %v, want e and f", items)
	}
	var none *Recommendations
	if none.Len() != 0 || none.Item(0) != "" {
		t.Errorf("a nil list is not empty")
	}
	c.Close()
	if _, err := c.Recommend(3, false); ErrorCode(errString(err)) != CodeClosed {
		t.Errorf("Recommend after Close = %v, want code %s", err, CodeClosed)
	}
	if err := c.Record("a", View, 0, 0); ErrorCode(errString(err)) != CodeClosed {
		t.Errorf("Record after Close = %v, want code %s", err, CodeClosed)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	for _, l := range logs.lines {
		if strings.Contains(l, "sku") {
			t.Errorf("log line about the user's data: %s", l)
		}
	}
}

// A second Client on the same directory gets the code "locked".
func TestLockedCode(t *testing.T) {
	o := &Options{Dir: t.TempDir(), Key: bytes.Repeat([]byte{3}, 32)}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c2, err := New(o); ErrorCode(errString(err)) != CodeLocked {
		if err == nil {
			c2.Close()
		}
		t.Errorf("second New = %v, want code %s", err, CodeLocked)
	}
}

// Coordinators that do not answer surface as "unavailable", not
// "invalid", within the budget.
func TestUnavailableCode(t *testing.T) {
	dir := t.TempDir()
	if err := pki.WriteDir(dir, nil, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	dead, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close() // bound, never read: a black hole
	o := &Options{Dir: filepath.Join(dir, "sdk"), Key: make([]byte, 32), Coordinators: dead.LocalAddr().String(), CACertPEM: ca,
		ClientID: "device-1", Catalogue: "a\nb\n", BudgetMillis: 300, TimeoutMillis: 30_000}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Sync(); ErrorCode(errString(err)) != CodeUnavailable {
		t.Errorf("Sync with the coordinator dead = %v, want code %s", err, CodeUnavailable)
	}
}

// Cancel stops a call under way with the code "cancelled"; the Client
// stays usable.
func TestCancel(t *testing.T) {
	dir := t.TempDir()
	if err := pki.WriteDir(dir, nil, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(filepath.Join(dir, pki.CAFile))
	dead, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	o := &Options{Dir: filepath.Join(dir, "sdk"), Key: make([]byte, 32), Coordinators: dead.LocalAddr().String(), CACertPEM: ca,
		ClientID: "device-1", Catalogue: "a\nb\n", BudgetMillis: 60_000, TimeoutMillis: 60_000}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errs := make(chan error, 1)
	go func() {
		_, err := c.Sync()
		errs <- err
	}()
	// Cancel until the call has started and returned: a Cancel before
	// the call starts cancels nothing.
	var got error
	for got == nil {
		c.Cancel()
		select {
		case got = <-errs:
		case <-time.After(20 * time.Millisecond):
		}
	}
	if ErrorCode(got.Error()) != CodeCancelled {
		t.Errorf("Sync cancelled = %v, want code %s", got, CodeCancelled)
	}
	if err := c.Record("a", View, 0, 0); err != nil {
		t.Errorf("Record after Cancel = %v", err)
	}
}

type memAnchor struct{ b []byte }

func (a *memAnchor) Load() ([]byte, error) { return a.b, nil }
func (a *memAnchor) Save(b []byte) error   { a.b = append([]byte(nil), b...); return nil }

// An emptied directory is "missing" with an anchor; ResetStore starts over.
func TestAnchorCodes(t *testing.T) {
	o := &Options{Dir: t.TempDir(), Key: bytes.Repeat([]byte{3}, 32)}
	a := &memAnchor{}
	c, err := NewWithAnchor(o, a)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Record("a", View, 0, 0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	ents, _ := os.ReadDir(o.Dir)
	for _, e := range ents {
		os.Remove(filepath.Join(o.Dir, e.Name()))
	}
	if _, err := NewWithAnchor(o, a); ErrorCode(errString(err)) != CodeMissing {
		t.Fatalf("NewWithAnchor on an emptied directory = %v, want code %s", err, CodeMissing)
	}
	if err := ResetStore(o.Dir, a); err != nil {
		t.Fatal(err)
	}
	c, err = NewWithAnchor(o, a)
	if err != nil {
		t.Fatalf("NewWithAnchor after ResetStore = %v", err)
	}
	c.Close()
}

type phone struct{ unmetered, charging, idle bool }

func (p phone) Unmetered() bool { return p.unmetered }
func (p phone) Charging() bool  { return p.charging }
func (p phone) Idle() bool      { return p.idle }

// A device outside the conditions its Options require declines with the
// code "declined" without contacting the cluster; in them, it checks in
// (here: to a coordinator that never answers, so "unavailable").
func TestDeviceConditions(t *testing.T) {
	dir := t.TempDir()
	if err := pki.WriteDir(dir, nil, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(filepath.Join(dir, pki.CAFile))
	dead, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	o := &Options{Dir: filepath.Join(dir, "sdk"), Key: make([]byte, 32), Coordinators: dead.LocalAddr().String(), CACertPEM: ca,
		ClientID: "device-1", Catalogue: "a\nb\n", BudgetMillis: 300, RequireUnmetered: true, RequireCharging: true}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Record("a", View, 0, 0); err != nil {
		t.Fatal(err)
	}
	c.OptIn()
	for _, tc := range []struct {
		dev  Device
		code string
	}{
		{nil, CodeDeclined},
		{phone{unmetered: true}, CodeDeclined},
		{phone{unmetered: true, charging: true}, CodeUnavailable},
	} {
		c.SetDevice(tc.dev)
		if err := c.Participate(); ErrorCode(errString(err)) != tc.code {
			t.Errorf("Participate on %+v = %v, want code %s", tc.dev, err, tc.code)
		}
	}
}

// Code gives an SDK error the code its message would carry.
func TestCode(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{client.ErrNotOptedIn, CodeNotOptedIn},
		{fmt.Errorf("sync: %w", client.ErrUnavailable), CodeUnavailable},
		{os.ErrNotExist, CodeInternal},
	} {
		if got := Code(tt.err); got != tt.want {
			t.Errorf("Code(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// A cluster that does not select the device answers no_round, and
// RetryAfterMs says when it asked the device to come back (with the
// device's own ±10 %).
func TestNoRoundRetryAfter(t *testing.T) {
	dir := t.TempDir()
	if err := pki.WriteDir(dir, nil, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := fakenode.Answering(t, ca, func(wire.Message) wire.Message { return &wire.Wait{Round: 3, Model: 2, RetryAfterMs: 60_000} })
	c, err := New(&Options{Dir: filepath.Join(dir, "sdk"), Key: make([]byte, 32), Coordinators: addr, CACertPEM: caPEM,
		ClientID: "device-1", Catalogue: "a\nb\n", TimeoutMillis: 30_000})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.OptIn(); err != nil {
		t.Fatal(err)
	}
	if err := c.Participate(); ErrorCode(errString(err)) != CodeNoRound {
		t.Fatalf("Participate = %v, want code %s", err, CodeNoRound)
	}
	if ms := c.RetryAfterMs(); ms < 54_000 || ms > 66_000 {
		t.Errorf("RetryAfterMs() = %d, want 60000 ± 10 %%", ms)
	}
}
