package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gonum.org/v1/gonum/floats"

	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/client/internal/step/steptest"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2025, 3, 1, 12, 30, 0, 0, time.UTC)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

// testConfig returns a config for a fresh directory with a fixed clock and
// seeded randomness.
func testConfig(t testing.TB) (Config, *fakeClock) {
	clk := &fakeClock{t: t0}
	return Config{
		Dir:   t.TempDir(),
		Key:   testKey(7),
		Clock: clk.Now,
		Rand:  rand.New(rand.NewPCG(1, 2)),
	}, clk
}

func open(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// handRelease is a tiny explicit model whose rankings are easy to reason
// about: items 0-2 point along the first axis, 3-5 along the second, and
// 3-5 have small positive biases, so a user with no data gets 5, 3, 4 first.
func handRelease(version uint64) Release {
	m := &model.Model{Kind: model.Explicit, Items: 6, Rank: 2, Params: []float64{
		1, 0, 0,
		1, 0, 0,
		1, 0, 0,
		0, 1, 0.2,
		0, 1, 0.1,
		0, 1, 0.3,
		3, // mean
	}}
	return Release{Version: version, Model: m, Items: itemIDs(6)}
}

func itemIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("item-%d", i)
	}
	return ids
}

// randomRelease is a random model over items IDs item-0...
func randomRelease(tb testing.TB, kind model.Kind, items, rank int, version uint64) Release {
	tb.Helper()
	m, err := model.New(kind, items, rank, 3, 0.1, rand.New(rand.NewPCG(version, 9)))
	if err != nil {
		tb.Fatal(err)
	}
	return Release{Version: version, Model: m, Items: itemIDs(items)}
}

func recordAll(t testing.TB, c *Client, xs ...Interaction) {
	t.Helper()
	for _, x := range xs {
		if err := c.Record(context.Background(), x); err != nil {
			t.Fatalf("Record(%+v): %v", x, err)
		}
	}
}

func rate(item int, v float64) Interaction {
	return Interaction{Item: fmt.Sprintf("item-%d", item), Kind: Rating, Value: v}
}

func items(rs []Recommendation) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Item
	}
	return out
}

func TestNewConfigErrors(t *testing.T) {
	good, _ := testConfig(t)
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no dir", func(c *Config) { c.Dir = "" }, "Dir"},
		{"short key", func(c *Config) { c.Key = c.Key[:16] }, "Key"},
		{"negative retention", func(c *Config) { c.Retention = -time.Hour }, "Retention"},
		{"negative max", func(c *Config) { c.MaxInteractions = -1 }, "MaxInteractions"},
		{"bad train", func(c *Config) { c.Train = model.TrainConfig{LR: -1} }, "Train"},
		{"cohort", func(c *Config) { c.Policy.MinCohort = -5 }, "MinCohort"},
		{"noise", func(c *Config) { c.Policy.MinNoiseMultiplier = math.NaN() }, "MinNoiseMultiplier"},
		{"clip", func(c *Config) { c.Policy.MaxClipNorm = math.Inf(1) }, "MaxClipNorm"},
		{"epsilon", func(c *Config) { c.Policy.Epsilon = -1 }, "Epsilon"},
		{"delta", func(c *Config) { c.Policy.Delta = 1 }, "Delta"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			cfg.Key = append([]byte(nil), good.Key...)
			tt.edit(&cfg)
			c, err := New(cfg)
			if err == nil {
				c.Close()
				t.Fatalf("New(%s) = nil error, want one naming %s", tt.name, tt.field)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("New(%s) = %v, want an error naming %s", tt.name, err, tt.field)
			}
		})
	}
}

func TestZeroConfigDefaults(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), Key: testKey(1)}.withDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatalf("defaulted zero config: %v", err)
	}
	if cfg.Policy != DefaultPolicy() {
		t.Errorf("Policy = %+v, want %+v", cfg.Policy, DefaultPolicy())
	}
	if cfg.Retention != DefaultRetention || cfg.MaxInteractions != DefaultMaxInteractions {
		t.Errorf("Retention, MaxInteractions = %v, %d", cfg.Retention, cfg.MaxInteractions)
	}
	for _, k := range []model.Kind{model.Explicit, model.Implicit} {
		if got := cfg.trainFor(k); got != model.Defaults(k).Train {
			t.Errorf("trainFor(%v) = %+v, want model.Defaults' %+v", k, got, model.Defaults(k).Train)
		}
	}
}

func TestNewLeavesNoFileUntilWrite(t *testing.T) {
	cfg, _ := testConfig(t)
	c := open(t, cfg)
	if _, err := c.Recommend(t.Context(), 3, Filter{}); !errors.Is(err, ErrNoModel) {
		t.Errorf("Recommend without model = %v, want ErrNoModel", err)
	}
	assertNoFiles(t, cfg.Dir)
	recordAll(t, c, rate(1, 4))
	if names, _ := storeFiles(cfg.Dir); len(names) == 0 {
		t.Errorf("no store file after Record")
	}
}

func TestRecord(t *testing.T) {
	cfg, clk := testConfig(t)
	c := open(t, cfg)
	bad := []struct {
		name string
		in   Interaction
	}{
		{"empty item", Interaction{Kind: View}},
		{"long item", Interaction{Item: strings.Repeat("x", 257), Kind: View}},
		{"bad utf8", Interaction{Item: "\xff", Kind: View}},
		{"no kind", Interaction{Item: "a"}},
		{"unknown kind", Interaction{Item: "a", Kind: 99}},
		{"nan", Interaction{Item: "a", Kind: Rating, Value: math.NaN()}},
		{"negative weight", Interaction{Item: "a", Kind: Click, Value: -1}},
		{"rating above the scale", Interaction{Item: "a", Kind: Rating, Value: 99}},
		{"rating just above", Interaction{Item: "a", Kind: Rating, Value: math.Nextafter(MaxRating, 11)}},
		{"negative rating", Interaction{Item: "a", Kind: Rating, Value: -0.5}},
		{"infinite weight", Interaction{Item: "a", Kind: Purchase, Value: math.Inf(1)}},
	}
	for _, tt := range bad {
		if err := c.Record(t.Context(), tt.in); !errors.Is(err, ErrInvalidInteraction) {
			t.Errorf("Record(%s) = %v, want ErrInvalidInteraction", tt.name, err)
		}
	}
	for _, v := range []float64{MinRating, 0.5, 5, MaxRating} {
		if err := c.Record(t.Context(), Interaction{Item: "a", Kind: Rating, Value: v}); err != nil {
			t.Errorf("Record(rating %v) = %v, want nil", v, err)
		}
	}
	if err := c.DeleteMyData(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Past the retention window: accepted, not kept.
	recordAll(t, c, Interaction{Item: "old", Kind: View, Time: clk.Now().Add(-100 * 24 * time.Hour)})
	// In the future: kept as now.
	recordAll(t, c, Interaction{Item: "future", Kind: View, Time: clk.Now().Add(time.Hour)})
	c.mu.Lock()
	got := append([]stored(nil), c.st.interactions...)
	c.mu.Unlock()
	want := []stored{{Item: "future", Kind: View, Time: t0.Truncate(time.Hour).Unix()}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("interactions = %v, want %v", got, want)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Record(ctx, rate(1, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Record(cancelled ctx) = %v, want context.Canceled", err)
	}
}

func TestRecommend(t *testing.T) {
	cfg, _ := testConfig(t)
	fed := &fakeFed{}
	cfg.Federation = fed
	c := open(t, cfg)
	ctx := t.Context()
	if err := c.SetModel(ctx, handRelease(1)); err != nil {
		t.Fatal(err)
	}
	cold, err := c.Recommend(ctx, 3, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(items(cold)), "[item-5 item-3 item-4]"; got != want {
		t.Errorf("cold start Recommend = %s, want %s", got, want)
	}
	// Loving items 0 and 1 and disliking 3 turns the user towards 0-2.
	recordAll(t, c, rate(0, 5), rate(1, 5), rate(3, 1))
	tests := []struct {
		name string
		k    int
		f    Filter
		want string
	}{
		{"unseen", 1, Filter{}, "[item-2]"},
		{"all unseen", 10, Filter{}, "[item-2 item-5 item-4]"},
		{"include seen", 3, Filter{IncludeSeen: true}, "[item-0 item-1 item-2]"},
		{"exclude", 2, Filter{Exclude: []string{"item-2", "unknown"}}, "[item-5 item-4]"},
		{"allow", 2, Filter{Allow: func(id string) bool { return id != "item-5" }}, "[item-2 item-4]"},
		{"allow none", 2, Filter{Allow: func(string) bool { return false }}, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Recommend(ctx, tt.k, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprint(items(got)); s != tt.want {
				t.Errorf("Recommend(%d, %s) = %s, want %s", tt.k, tt.name, s, tt.want)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Score > got[i-1].Score {
					t.Errorf("Recommend(%d, %s) not sorted: %v", tt.k, tt.name, got)
				}
			}
		})
	}
	if _, err := c.Recommend(ctx, 0, Filter{}); err == nil {
		t.Errorf("Recommend(k=0) = nil error")
	}
	if n := fed.calls(); n != 0 {
		t.Errorf("Record/SetModel/Recommend made %d Federation calls, want 0", n)
	}
}

func TestRecommendImplicit(t *testing.T) {
	cfg, _ := testConfig(t)
	c := open(t, cfg)
	rel := handRelease(1)
	rel.Model.Kind = model.Implicit
	if err := c.SetModel(t.Context(), rel); err != nil {
		t.Fatal(err)
	}
	recordAll(t, c,
		Interaction{Item: "item-3", Kind: Purchase},
		Interaction{Item: "item-4", Kind: View},
		Interaction{Item: "item-4", Kind: Click},
	)
	got, err := c.Recommend(t.Context(), 1, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprint(items(got)); s != "[item-5]" {
		t.Errorf("Recommend = %s, want [item-5]", s)
	}
}

func TestRatingsFor(t *testing.T) {
	ix := map[string]int32{"a": 0, "b": 1, "c": 2, "d": 3}
	xs := []stored{
		{Item: "b", Kind: Rating, Value: 2, Time: 10},
		{Item: "b", Kind: Rating, Value: 4, Time: 20},
		{Item: "b", Kind: Rating, Value: 3, Time: 15}, // older, recorded later
		{Item: "a", Kind: View},
		{Item: "a", Kind: Purchase},
		{Item: "c", Kind: Click, Value: 0.5},
		{Item: "d", Kind: Cart},
		{Item: "zzz", Kind: Rating, Value: 5}, // not in the catalogue
	}
	log2 := func(x float64) float32 { return float32(math.Log2(x)) }
	tests := []struct {
		name string
		kind model.Kind
		w    EventWeights
		want []model.Rating
	}{
		{"explicit", model.Explicit, DefaultEventWeights(), []model.Rating{{Item: 1, Value: 4}}},
		{"explicit ignores weights", model.Explicit, EventWeights{View: 100}, []model.Rating{{Item: 1, Value: 4}}},
		{"implicit defaults", model.Implicit, DefaultEventWeights(), []model.Rating{
			{Item: 0, Value: log2(10)}, // view 1 + purchase 8
			{Item: 1, Value: log2(10)}, // ratings 2 + 4 + 3
			{Item: 2, Value: 1},        // click 2 × 0.5
			{Item: 3, Value: log2(5)},  // cart 4
		}},
		{"implicit cluster weights", model.Implicit, EventWeights{View: 0, Click: 6, Cart: 1, Purchase: 31}, []model.Rating{
			{Item: 0, Value: 5},        // view 0 + purchase 31
			{Item: 1, Value: log2(10)}, // ratings keep their values
			{Item: 2, Value: 2},        // click 6 × 0.5
			{Item: 3, Value: 1},        // cart 1
		}},
	}
	for _, tt := range tests {
		got := ratingsFor(xs, ix, tt.kind, tt.w)
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("ratingsFor(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// The event weights a release carries decide the user's factor, and so
// the ranking: the same events rank items differently under other weights.
func TestRecommendEventWeights(t *testing.T) {
	rel := handRelease(1)
	rel.Model.Kind = model.Implicit
	events := []Interaction{
		{Item: "item-0", Kind: View}, {Item: "item-0", Kind: View}, {Item: "item-0", Kind: View},
		{Item: "item-3", Kind: Purchase},
	}
	top := func(w EventWeights) string {
		cfg, _ := testConfig(t)
		c := open(t, cfg)
		r := rel
		r.EventWeights = w
		if err := c.SetModel(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		recordAll(t, c, events...)
		got, err := c.Recommend(t.Context(), 1, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(items(got))
	}
	byPurchase := top(EventWeights{})
	byViews := top(EventWeights{View: 20, Click: 1, Cart: 1, Purchase: 0.1})
	if byPurchase == byViews {
		t.Errorf("Recommend = %s under default weights and under view-heavy ones; want the weights to matter", byPurchase)
	}
	for _, bad := range []EventWeights{{View: math.NaN()}, {Cart: -1, Purchase: 8}, {Purchase: math.Inf(1)}} {
		cfg, _ := testConfig(t)
		c := open(t, cfg)
		r := rel
		r.EventWeights = bad
		if err := c.SetModel(t.Context(), r); err == nil || !strings.Contains(err.Error(), "event weights") {
			t.Errorf("SetModel(event weights %+v) = %v, want an error about them", bad, err)
		}
	}
}

func TestSetModel(t *testing.T) {
	cfg, _ := testConfig(t)
	c := open(t, cfg)
	ctx := t.Context()
	bad := handRelease(1)
	bad.Items = bad.Items[:5]
	dup := handRelease(1)
	dup.Items[1] = dup.Items[0]
	nan := handRelease(1)
	nan.Model.Params[0] = math.NaN()
	for name, r := range map[string]Release{"short catalogue": bad, "duplicate id": dup, "nan": nan, "version 0": handRelease(0)} {
		if err := c.SetModel(ctx, r); err == nil {
			t.Errorf("SetModel(%s) = nil, want an error", name)
		}
	}
	if err := c.SetModel(ctx, handRelease(2)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetModel(ctx, randomRelease(t, model.Explicit, 6, 2, 1)); err != nil {
		t.Fatal(err)
	}
	if v := c.ModelVersion(); v != 2 {
		t.Errorf("ModelVersion after an older SetModel = %d, want 2", v)
	}
	// The model is cached and comes back after a restart.
	recordAll(t, c, rate(0, 5))
	c.Close()
	c = open(t, cfg)
	if v := c.ModelVersion(); v != 2 {
		t.Errorf("ModelVersion after reopening = %d, want 2", v)
	}
}

func TestSync(t *testing.T) {
	cfg, _ := testConfig(t)
	rel := handRelease(3)
	fed := &fakeFed{release: &rel}
	cfg.Federation = fed
	c := open(t, cfg)
	for i, want := range []bool{true, false} {
		got, err := c.Sync(t.Context())
		if err != nil || got != want {
			t.Errorf("Sync #%d = %v, %v, want %v, nil", i, got, err, want)
		}
	}
	if v := c.ModelVersion(); v != 3 {
		t.Errorf("ModelVersion = %d, want 3", v)
	}
	cfg2, _ := testConfig(t)
	if _, err := open(t, cfg2).Sync(t.Context()); !errors.Is(err, ErrNoFederation) {
		t.Errorf("Sync without Federation = %v, want ErrNoFederation", err)
	}
}

// fakeFed is an in-process coordinator implementing Federation: it offers
// one round per Join, "downloads" its release when the device lacks it,
// and uploads the payload in chunks, checking ctx between them as a real
// transport must.
type fakeFed struct {
	offer   Offer
	release *Release
	noRound bool
	chunks  int // default 4
	// hooks, run on the round's goroutine
	afterAccept func(ctx context.Context)
	midUpload   func(ctx context.Context) // after the first chunk

	mu        sync.Mutex
	nLatest   int
	nJoin     int
	downloads int
	sent      int // chunks sent, over all rounds
	payloads  []Payload
}

func (f *fakeFed) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nLatest + f.nJoin
}

func (f *fakeFed) sentChunks() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent
}

func (f *fakeFed) Latest(ctx context.Context, have uint64) (*Release, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nLatest++
	if f.release == nil || f.release.Version <= have {
		return nil, nil
	}
	return f.release, nil
}

func (f *fakeFed) Join(ctx context.Context, k *Contribution) error {
	f.mu.Lock()
	f.nJoin++
	f.mu.Unlock()
	if f.noRound {
		return ErrNoRound
	}
	if err := k.Accept(f.offer); err != nil {
		return err
	}
	if f.afterAccept != nil {
		f.afterAccept(ctx)
	}
	var rel *Release
	if k.Have() != f.offer.ModelVersion {
		rel = f.release
		f.mu.Lock()
		f.downloads++
		f.mu.Unlock()
	}
	p, err := k.Update(ctx, rel)
	if err != nil {
		return err
	}
	chunks := f.chunks
	if chunks == 0 {
		chunks = 4
	}
	for i := range chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		f.mu.Lock()
		f.sent++
		f.mu.Unlock()
		if i == 0 && f.midUpload != nil {
			f.midUpload(ctx)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	k.Sent(int64(4 * len(p.Delta))) // as if float32 on the wire
	f.mu.Lock()
	f.payloads = append(f.payloads, p)
	f.mu.Unlock()
	return nil
}

// goodOffer meets the default policy.
func goodOffer(round uint64) Offer {
	return Offer{Round: round, ModelVersion: 1, CohortSize: 100, NoiseMultiplier: 2, ClipNorm: 0.5, SamplingRate: 0.01}
}

// roundClient is a client with data, a model and consent, and a fake
// federation offering goodOffer rounds on the same model.
func roundClient(t *testing.T) (*Client, *fakeFed, Config) {
	cfg, _ := testConfig(t)
	rel := handRelease(1)
	fed := &fakeFed{offer: goodOffer(1), release: &rel}
	cfg.Federation = fed
	c := open(t, cfg)
	recordAll(t, c, rate(0, 5), rate(1, 4), rate(3, 1))
	if err := c.OptIn(); err != nil {
		t.Fatal(err)
	}
	return c, fed, cfg
}

func TestParticipate(t *testing.T) {
	c, fed, cfg := roundClient(t)
	rep, err := c.Participate(t.Context())
	if err != nil {
		t.Fatalf("Participate: %v", err)
	}
	if fed.downloads != 1 || len(fed.payloads) != 1 {
		t.Fatalf("downloads, payloads = %d, %d, want 1, 1", fed.downloads, len(fed.payloads))
	}
	p := fed.payloads[0]
	if n := floats.Norm(p.Delta, 2); n > 0.5+1e-12 || n == 0 {
		t.Errorf("|payload| = %v, want in (0, 0.5]", n)
	}
	if len(p.Delta) != model.Dim(6, 2) {
		t.Errorf("len(payload) = %d, want %d", len(p.Delta), model.Dim(6, 2))
	}
	if c.ModelVersion() != 1 {
		t.Errorf("the round's model was not installed")
	}
	want := RoundReport{Round: 1, ModelVersion: 1, Time: t0.Truncate(time.Second), BytesSent: 4 * 19, Params: 19,
		ClipNorm: 0.5, NoiseMultiplier: 2, SamplingRate: 1, Acknowledged: true, Mechanism: MechGaussian}
	got := rep
	got.Epsilon, got.EpsilonTotal, got.Terms = 0, 0, nil
	if got != want {
		t.Errorf("Participate = %+v\nwant %+v", got, want)
	}
	// The terms the device checked: a cohort of 100, not secure.
	if wt := (RoundTerms{MinCohort: 100, SecAggColluders: -1}); rep.Terms == nil || *rep.Terms != wt {
		t.Errorf("Participate terms = %+v, want %+v", rep.Terms, wt)
	}
	if math.Abs(rep.Epsilon-2.419) > 0.01 || rep.Epsilon != rep.EpsilonTotal {
		t.Errorf("ε = %v (total %v), want ≈ 2.419 (one Gaussian round at z = 2, no sampling, δ = 1e-6)", rep.Epsilon, rep.EpsilonTotal)
	}
	// A second round needs no download.
	fed.offer = goodOffer(2)
	if _, err := c.Participate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fed.downloads != 1 {
		t.Errorf("downloads = %d after a round on the held model, want 1", fed.downloads)
	}
	// The ledger and report survive a restart.
	r1, err := c.Report()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c2 := open(t, cfg)
	r2, err := c2.Report()
	if err != nil {
		t.Fatal(err)
	}
	j1, _ := json.Marshal(r1)
	j2, _ := json.Marshal(r2)
	if !bytes.Equal(j1, j2) {
		t.Errorf("report after restart differs:\n%s\n%s", j1, j2)
	}
	if !c2.OptedIn() {
		t.Errorf("consent lost in restart")
	}
}

// A round trains with the weights its offer announces (the cluster's),
// and with the release's when it announces none.
func TestParticipateEventWeights(t *testing.T) {
	w := EventWeights{View: 3, Click: 1, Cart: 1, Purchase: 0.5}
	delta := func(offered, released EventWeights) []float64 {
		cfg, _ := testConfig(t)
		rel := handRelease(1)
		rel.Model.Kind, rel.EventWeights = model.Implicit, released
		o := goodOffer(1)
		o.EventWeights = offered
		fed := &fakeFed{offer: o, release: &rel}
		cfg.Federation = fed
		c := open(t, cfg)
		recordAll(t, c,
			Interaction{Item: "item-0", Kind: View}, Interaction{Item: "item-0", Kind: View},
			Interaction{Item: "item-3", Kind: Purchase}, Interaction{Item: "item-4", Kind: Cart})
		if err := c.OptIn(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Participate(t.Context()); err != nil {
			t.Fatalf("Participate: %v", err)
		}
		return fed.payloads[0].Delta
	}
	fromRelease := delta(EventWeights{}, w)
	fromOffer := delta(w, EventWeights{})
	defaults := delta(EventWeights{}, EventWeights{})
	if !slices.Equal(fromRelease, fromOffer) {
		t.Errorf("update with the offer's weights %v differs from the one with the same weights from the release %v", fromOffer, fromRelease)
	}
	if slices.Equal(fromOffer, defaults) {
		t.Errorf("update with weights %+v equals the one with the defaults", w)
	}
}

func TestParticipateNeedsOptIn(t *testing.T) {
	c, fed, _ := roundClient(t)
	if err := c.OptOut(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Participate(t.Context()); !errors.Is(err, ErrNotOptedIn) {
		t.Errorf("Participate opted out = %v, want ErrNotOptedIn", err)
	}
	cfg, _ := testConfig(t)
	cfg.Federation = fed
	fresh := open(t, cfg)
	if fresh.OptedIn() {
		t.Errorf("a new Client is opted in")
	}
	if _, err := fresh.Participate(t.Context()); !errors.Is(err, ErrNotOptedIn) {
		t.Errorf("Participate on a new Client = %v, want ErrNotOptedIn", err)
	}
	if n := fed.calls(); n != 0 {
		t.Errorf("Federation called %d times without consent", n)
	}
}

func TestParticipateNoRound(t *testing.T) {
	c, fed, _ := roundClient(t)
	fed.noRound = true
	if _, err := c.Participate(t.Context()); !errors.Is(err, ErrNoRound) {
		t.Errorf("Participate = %v, want ErrNoRound", err)
	}
}

func TestPolicyDeclines(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		edit   func(*Offer)
		reason Reason
	}{
		{"small cohort", Policy{}, func(o *Offer) { o.CohortSize = 99 }, ReasonCohort},
		{"little noise", Policy{}, func(o *Offer) { o.NoiseMultiplier = 0.9 }, ReasonNoise},
		{"no noise", Policy{}, func(o *Offer) { o.NoiseMultiplier = 0 }, ReasonNoise},
		{"large clip", Policy{}, func(o *Offer) { o.ClipNorm = 1.5 }, ReasonClip},
		{"no clip", Policy{}, func(o *Offer) { o.ClipNorm = 0 }, ReasonClip},
		{"nan noise", Policy{}, func(o *Offer) { o.NoiseMultiplier = math.NaN() }, ReasonInvalid},
		{"rate above 1", Policy{}, func(o *Offer) { o.SamplingRate = 2 }, ReasonInvalid},
		{"bad train", Policy{}, func(o *Offer) { o.Train = model.TrainConfig{LR: -1} }, ReasonInvalid},
		{"nan event weight", Policy{}, func(o *Offer) { o.EventWeights = EventWeights{View: math.NaN(), Purchase: 8} }, ReasonInvalid},
		{"negative event weight", Policy{}, func(o *Offer) { o.EventWeights = EventWeights{Click: -2, Purchase: 8} }, ReasonInvalid},
		{"infinite event weight", Policy{}, func(o *Offer) { o.EventWeights = EventWeights{Cart: math.Inf(1)} }, ReasonInvalid},
		{"over budget", Policy{Epsilon: 1}, func(*Offer) {}, ReasonBudget},
		{"stricter app", Policy{MinCohort: 1000}, func(*Offer) {}, ReasonCohort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			rel := handRelease(1)
			o := goodOffer(7)
			tt.edit(&o)
			fed := &fakeFed{offer: o, release: &rel}
			cfg.Federation, cfg.Policy = fed, tt.policy
			c := open(t, cfg)
			recordAll(t, c, rate(0, 5))
			if err := c.OptIn(); err != nil {
				t.Fatal(err)
			}
			_, err := c.Participate(t.Context())
			var d *DeclineError
			if !errors.As(err, &d) || !errors.Is(err, ErrDeclined) {
				t.Fatalf("Participate = %v, want a *DeclineError", err)
			}
			if d.Reason != tt.reason || d.Round != 7 {
				t.Errorf("declined round %d for %v, want round 7 for %v", d.Round, d.Reason, tt.reason)
			}
			if got := errors.Is(err, ErrBudgetExhausted); got != (tt.reason == ReasonBudget) {
				t.Errorf("errors.Is(%v, ErrBudgetExhausted) = %v", err, got)
			}
			if fed.downloads != 0 || len(fed.payloads) != 0 || fed.sentChunks() != 0 {
				t.Errorf("declined round still downloaded %d, sent %d chunks", fed.downloads, fed.sentChunks())
			}
			rep, err := c.Report()
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Rounds) != 0 || rep.Totals.Epsilon != 0 || len(rep.Declined) != 1 || rep.Declined[0].Reason != tt.reason {
				t.Errorf("report after decline = %+v", rep)
			}
		})
	}
}

func TestDeclineNoData(t *testing.T) {
	cfg, _ := testConfig(t)
	rel := handRelease(1)
	fed := &fakeFed{offer: goodOffer(1), release: &rel}
	cfg.Federation = fed
	c := open(t, cfg)
	if err := c.OptIn(); err != nil {
		t.Fatal(err)
	}
	_, err := c.Participate(t.Context())
	if d := (*DeclineError)(nil); !errors.As(err, &d) || d.Reason != ReasonNoData {
		t.Errorf("Participate without data = %v, want ReasonNoData", err)
	}
	// Data, but none about this model's items.
	recordAll(t, c, Interaction{Item: "elsewhere", Kind: View})
	_, err = c.Participate(t.Context())
	if d := (*DeclineError)(nil); !errors.As(err, &d) || d.Reason != ReasonNoData {
		t.Errorf("Participate with unrelated data = %v, want ReasonNoData", err)
	}
	if len(fed.payloads) != 0 {
		t.Errorf("payload sent without data")
	}
	if rep, _ := c.Report(); len(rep.Rounds) != 0 {
		t.Errorf("charged a round without data: %+v", rep.Rounds)
	}
}

func TestLedgerStopsAtBudget(t *testing.T) {
	cfg, _ := testConfig(t)
	rel := handRelease(1)
	fed := &fakeFed{offer: goodOffer(1), release: &rel}
	cfg.Federation = fed
	cfg.Policy = Policy{Epsilon: 8}
	c := open(t, cfg)
	recordAll(t, c, rate(0, 5), rate(1, 4))
	if err := c.OptIn(); err != nil {
		t.Fatal(err)
	}
	var rounds int
	var err error
	for round := uint64(1); round < 100; round++ {
		// The coordinator keeps offering, whatever the device has spent.
		fed.offer = goodOffer(round)
		if _, err = c.Participate(t.Context()); err != nil {
			break
		}
		rounds++
	}
	if !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("Participate after %d rounds = %v, want ErrBudgetExhausted", rounds, err)
	}
	// z = 2 without amplification: ε(8 rounds) ≈ 7.8, ε(9) > 8.
	if rounds != 8 || len(fed.payloads) != 8 {
		t.Errorf("rounds = %d, payloads = %d, want 8, 8", rounds, len(fed.payloads))
	}
	rep, err := c.Report()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Totals.Epsilon > 8 || rep.Totals.Epsilon < 7 || rep.Totals.Rounds != 8 {
		t.Errorf("totals = %+v, want 8 rounds and 7 < ε ≤ 8", rep.Totals)
	}
	var sum float64
	for _, r := range rep.Rounds {
		sum += r.Epsilon
	}
	if math.Abs(sum-rep.Totals.Epsilon) > 1e-9 {
		t.Errorf("per-round ε sums to %v, total %v", sum, rep.Totals.Epsilon)
	}
	// After a restart with a smaller budget the ledger refuses at once,
	// without asking the network.
	c.Close()
	cfg.Policy = Policy{Epsilon: 5}
	c = open(t, cfg)
	before := fed.calls()
	if _, err := c.Participate(t.Context()); !errors.Is(err, ErrBudgetExhausted) {
		t.Errorf("Participate after restart = %v, want ErrBudgetExhausted", err)
	}
	if fed.calls() != before {
		t.Errorf("an exhausted ledger still contacted the Federation")
	}
}

func TestTrustSamplingRate(t *testing.T) {
	c, fed, _ := roundClient(t)
	c.cfg.Policy.TrustSamplingRate = true
	rep, err := c.Participate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rep.SamplingRate != fed.offer.SamplingRate || !(rep.Epsilon < 0.5) {
		t.Errorf("trusted q: rate %v, ε %v; want %v and far below the unsampled 2.4", rep.SamplingRate, rep.Epsilon, fed.offer.SamplingRate)
	}
}

func TestDeviceNoise(t *testing.T) {
	c, fed, _ := roundClient(t)
	fed.offer.DeviceNoise = true
	rep, err := c.Participate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := 2 * 0.5 / 10.0 // z·C/√cohort
	if math.Abs(rep.DeviceNoiseStd-want) > 1e-12 {
		t.Errorf("DeviceNoiseStd = %v, want %v", rep.DeviceNoiseStd, want)
	}
	if n := floats.Norm(fed.payloads[0].Delta, 2); n <= 0.5 {
		t.Logf("|noised payload| = %v (noise can shrink it, but rarely)", n)
	}
}

// distributedOffer is a distributed-DP round as the network Federation
// announces it (announcedNoise): 100 devices at clip 0.5 and z = 2, the
// noise split into 80 shares, as few as 80 survivors, so that the ledger
// charges 79 shares.
func distributedOffer(t testing.TB, round uint64) Offer {
	t.Helper()
	d, err := privacy.NewDistributed(privacy.DistributedConfig{Dim: model.Dim(6, 2), Clip: 0.5, Bits: 20, MaxClients: 100, NoiseMultiplier: 2, NoiseClients: 80})
	if err != nil {
		t.Fatal(err)
	}
	o := goodOffer(round)
	o.Skellam, o.SkellamScale = d.Survivors(80), d.Encoder.Params().Scale
	o.NoiseMultiplier, o.DistributedNoise = o.Skellam.NoiseMultiplier(), true
	return o
}

// accountantEpsilon is ε at δ = 1e-6 of the entries, by the accountant.
func accountantEpsilon(t testing.TB, entries ...privacy.Entry) float64 {
	t.Helper()
	a, err := privacy.Rebuild(privacy.Config{}, entries)
	if err != nil {
		t.Fatal(err)
	}
	eps, _, err := a.Epsilon(1e-6)
	if err != nil {
		t.Fatal(err)
	}
	return eps
}

// TestDistributedCharge: a distributed-DP round is charged as the Skellam
// mechanism, exactly as the accountant (and the coordinator's ledger)
// charges it, and reported with the device's own share of the noise; the
// charge survives a snapshot and a restart.
func TestDistributedCharge(t *testing.T) {
	c, fed, cfg := roundClient(t)
	fed.offer = distributedOffer(t, 1)
	s := fed.offer.Skellam
	rep, err := c.Participate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	skellam := privacy.Entry{Mechanism: privacy.PoissonSkellam, SamplingRate: 1, Variance: s.Variance, L1: s.L1, L2: s.L2, Steps: 1}
	want := accountantEpsilon(t, skellam)
	if rep.Epsilon != want || rep.EpsilonTotal != want {
		t.Errorf("ε = %v (total %v), want the Skellam accountant's %v", rep.Epsilon, rep.EpsilonTotal, want)
	}
	gauss := privacy.Entry{Mechanism: privacy.PoissonGaussian, SamplingRate: 1, NoiseMultiplier: s.NoiseMultiplier(), Steps: 1}
	if g := accountantEpsilon(t, gauss); !(g < want) {
		t.Errorf("Gaussian at the effective multiplier: ε = %v, want below the Skellam %v", g, want)
	}
	if rep.Mechanism != MechSkellam || rep.NoiseMultiplier != s.NoiseMultiplier() {
		t.Errorf("mechanism, noise = %v, %v, want skellam, %v", rep.Mechanism, rep.NoiseMultiplier, s.NoiseMultiplier())
	}
	if share := 2 * 0.5 / math.Sqrt(80); math.Abs(rep.DeviceNoiseStd/share-1) > 1e-9 { // z·C/√shares
		t.Errorf("DeviceNoiseStd = %v, want %v", rep.DeviceNoiseStd, share)
	}
	// The Skellam noise is the Federation's to add: the SDK adds none.
	if n := floats.Norm(fed.payloads[0].Delta, 2); n > 0.5+1e-12 {
		t.Errorf("|payload| = %v, want clipped to 0.5 and not noised", n)
	}

	// A central round after it composes with it.
	fed.offer = goodOffer(2)
	if _, err := c.Participate(t.Context()); err != nil {
		t.Fatal(err)
	}
	r1, err := c.Report()
	if err != nil {
		t.Fatal(err)
	}
	central := privacy.Entry{Mechanism: privacy.PoissonGaussian, SamplingRate: 1, NoiseMultiplier: 2, Steps: 1}
	if want := accountantEpsilon(t, skellam, central); r1.Totals.Epsilon != want {
		t.Errorf("total ε = %v, want %v", r1.Totals.Epsilon, want)
	}
	if len(r1.Rounds) != 2 || r1.Rounds[1].Mechanism != MechGaussian || r1.Rounds[1].DeviceNoiseStd != 0 {
		t.Errorf("rounds = %+v, want a second, central one", r1.Rounds)
	}
	c.mu.Lock()
	err = c.store.compact(c.st)
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	r2, err := open(t, cfg).Report()
	if err != nil {
		t.Fatal(err)
	}
	j1, _ := json.Marshal(r1)
	j2, _ := json.Marshal(r2)
	if !bytes.Equal(j1, j2) {
		t.Errorf("report after restart differs:\n%s\n%s", j1, j2)
	}
	for _, key := range []string{`"mechanism":"skellam"`, `"mechanism":"gaussian"`, fmt.Sprintf(`"device_noise_std":%v`, rep.DeviceNoiseStd)} {
		if !bytes.Contains(j2, []byte(key)) {
			t.Errorf("report JSON lacks %s: %s", key, j2)
		}
	}
	var back Report
	if err := json.Unmarshal(j2, &back); err != nil || back.Rounds[0].Mechanism != MechSkellam {
		t.Errorf("report JSON reads back as %+v, %v", back.Rounds, err)
	}
}

// TestDistributedBudget: the budget check charges the Skellam mechanism,
// not the (slightly cheaper) Gaussian of the effective multiplier.
func TestDistributedBudget(t *testing.T) {
	c, fed, _ := roundClient(t)
	fed.offer = distributedOffer(t, 1)
	s := fed.offer.Skellam
	skellam := accountantEpsilon(t, privacy.Entry{Mechanism: privacy.PoissonSkellam, SamplingRate: 1, Variance: s.Variance, L1: s.L1, L2: s.L2, Steps: 1})
	gauss := accountantEpsilon(t, privacy.Entry{Mechanism: privacy.PoissonGaussian, SamplingRate: 1, NoiseMultiplier: s.NoiseMultiplier(), Steps: 1})
	c.cfg.Policy.Epsilon = (skellam + gauss) / 2
	_, err := c.Participate(t.Context())
	var de *DeclineError
	if !errors.As(err, &de) || de.Reason != ReasonBudget {
		t.Fatalf("Participate = %v, want a decline for budget (ε %v > %v)", err, skellam, c.cfg.Policy.Epsilon)
	}
}

// TestDistributedOfferInvalid: the ledger cannot charge a distributed
// round without a sound Skellam plan; such offers are declined before
// anything is charged.
func TestDistributedOfferInvalid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(o *Offer)
	}{
		{"no plan", func(o *Offer) { o.Skellam = privacy.SkellamPlan{} }},
		{"no scale", func(o *Offer) { o.SkellamScale = 0 }},
		{"negative variance", func(o *Offer) { o.Skellam.Variance = -1 }},
		{"NaN variance", func(o *Offer) { o.Skellam.ClientVariance = math.NaN() }},
		{"Gaussian shares too", func(o *Offer) { o.DeviceNoise = true }},
		{"more noise than the plan", func(o *Offer) { o.NoiseMultiplier *= 1.01 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, fed, _ := roundClient(t)
			fed.offer = distributedOffer(t, 1)
			tc.spoil(&fed.offer)
			_, err := c.Participate(t.Context())
			var de *DeclineError
			if !errors.As(err, &de) || de.Reason != ReasonInvalid {
				t.Errorf("Participate = %v, want a decline as invalid", err)
			}
			if rep, _ := c.Report(); len(rep.Rounds) != 0 || len(fed.payloads) != 0 {
				t.Errorf("charged %d rounds, sent %d payloads", len(rep.Rounds), len(fed.payloads))
			}
		})
	}
}

// TestAnnouncedNoise: the network Federation's offer for a distributed
// round carries the plan of the fewest survivors less the device's own
// share, and the scale that gives the device's share in parameter units.
func TestAnnouncedNoise(t *testing.T) {
	const z, clip, clients, shares = 2.0, 0.5, 100, 80
	plan := &wire.Plan{Items: 6, Rank: 2, Clip: clip, MinClients: shares,
		Privacy: wire.PrivacyParams{NoiseMultiplier: z, SamplingRate: 0.01, Mechanism: wire.MechSkellam, NoiseClients: shares},
		SecAgg:  &wire.SecAggParams{Clients: clients, MinSurvivors: shares, Bits: 20, Clip: clip, RotationSeed: make([]byte, 32)}}
	s, scale, err := announcedNoise(plan)
	if err != nil {
		t.Fatal(err)
	}
	if want := distributedOffer(t, 1); s != want.Skellam || scale != want.SkellamScale {
		t.Errorf("announcedNoise = %+v, %v, want %+v, %v", s, scale, want.Skellam, want.SkellamScale)
	}
	if got, want := s.NoiseMultiplier(), z*math.Sqrt((shares-1.0)/shares); math.Abs(got/want-1) > 0.01 {
		t.Errorf("effective multiplier %v, want about %v", got, want)
	}
	if got, want := math.Sqrt(s.ClientVariance)/scale, z*clip/math.Sqrt(shares); math.Abs(got/want-1) > 1e-9 {
		t.Errorf("device share std %v, want %v", got, want)
	}
	plan.Privacy.Mechanism = wire.MechGaussian
	if _, _, err := announcedNoise(plan); err == nil {
		t.Errorf("announcedNoise of a central round: no error")
	}
}

func TestOptOutMidUpload(t *testing.T) {
	c, fed, _ := roundClient(t)
	started := make(chan struct{})
	// A slow network: after the first chunk the transport blocks until
	// its context is cancelled.
	fed.midUpload = func(ctx context.Context) {
		close(started)
		<-ctx.Done()
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Participate(context.Background())
		errc <- err
	}()
	<-started
	if err := c.OptOut(t.Context()); err != nil {
		t.Fatalf("OptOut: %v", err)
	}
	sent := fed.sentChunks()
	if err := <-errc; !errors.Is(err, ErrOptedOut) {
		t.Errorf("Participate = %v, want ErrOptedOut", err)
	}
	if got := fed.sentChunks(); got != 1 || sent != 1 {
		t.Errorf("chunks sent = %d at OptOut, %d after; want 1, 1", sent, got)
	}
	if len(fed.payloads) != 0 {
		t.Errorf("upload completed after OptOut")
	}
	if c.OptedIn() {
		t.Errorf("still opted in")
	}
	// The round is charged (bytes may have left) but not acknowledged.
	rep, err := c.Report()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rounds) != 1 || rep.Rounds[0].Acknowledged {
		t.Errorf("report rounds = %+v, want one unacknowledged", rep.Rounds)
	}
	if _, err := c.Participate(t.Context()); !errors.Is(err, ErrNotOptedIn) {
		t.Errorf("Participate after OptOut = %v, want ErrNotOptedIn", err)
	}
}

func TestOptOutBeforeUpdate(t *testing.T) {
	c, fed, _ := roundClient(t)
	accepted := make(chan struct{})
	// A transport that keeps going after cancellation: the SDK itself must
	// refuse to release the update.
	fed.afterAccept = func(ctx context.Context) {
		close(accepted)
		<-ctx.Done()
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Participate(context.Background())
		errc <- err
	}()
	<-accepted
	if err := c.OptOut(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrOptedOut) {
		t.Errorf("Participate = %v, want ErrOptedOut", err)
	}
	if fed.sentChunks() != 0 || len(fed.payloads) != 0 {
		t.Errorf("sent %d chunks after opting out before the update", fed.sentChunks())
	}
	if rep, _ := c.Report(); len(rep.Rounds) != 0 {
		t.Errorf("charged a round whose update was never released: %+v", rep.Rounds)
	}
}

func TestParticipateBusy(t *testing.T) {
	c, fed, _ := roundClient(t)
	started := make(chan struct{})
	fed.afterAccept = func(ctx context.Context) {
		close(started)
		<-ctx.Done()
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Participate(ctx)
		errc <- err
	}()
	<-started
	if _, err := c.Participate(t.Context()); !errors.Is(err, ErrBusy) {
		t.Errorf("second Participate = %v, want ErrBusy", err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Participate = %v, want context.Canceled", err)
	}
}

func TestReport(t *testing.T) {
	c, fed, _ := roundClient(t)
	if _, err := c.Participate(t.Context()); err != nil {
		t.Fatal(err)
	}
	fed.offer = goodOffer(2)
	fed.offer.CohortSize = 3
	c.Participate(t.Context())
	rep, err := c.Report()
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OptedIn || rep.Interactions != 3 || rep.RetentionDays != 90 || len(rep.Rounds) != 1 || len(rep.Declined) != 1 {
		t.Errorf("report = %+v", rep)
	}
	tot := rep.Totals
	if tot.Rounds != 1 || tot.BytesSent != 4*19 || tot.Budget != 10 || tot.Delta != 1e-6 ||
		tot.Declined != 1 || math.Abs(tot.Remaining-(10-tot.Epsilon)) > 1e-12 {
		t.Errorf("totals = %+v", tot)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range itemIDs(6) {
		if bytes.Contains(b, []byte(id)) {
			t.Errorf("report JSON names item %s: %s", id, b)
		}
	}
	for _, key := range []string{`"rounds":`, `"model_version":1`, `"bytes_sent":76`, `"clip_norm":0.5`, `"noise_multiplier":2`, `"epsilon":`, `"reason":"cohort_too_small"`, `"epsilon_budget":10`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("report JSON lacks %s: %s", key, b)
		}
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Errorf("report JSON does not read back: %v", err)
	}
}

func TestDeleteMyData(t *testing.T) {
	c, fed, cfg := roundClient(t)
	ctx := t.Context()
	if _, err := c.Participate(ctx); err != nil {
		t.Fatal(err)
	}
	// A stranger's file in the app's directory is not ours to delete.
	other := cfg.Dir + "/app-settings.json"
	if err := os.WriteFile(other, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := c.StoredBytes(); err != nil || n == 0 {
		t.Errorf("StoredBytes before DeleteMyData = %d, %v, want > 0", n, err)
	}
	if err := c.DeleteMyData(ctx); err != nil {
		t.Fatal(err)
	}
	if names, _ := storeFiles(cfg.Dir); len(names) != 0 {
		t.Errorf("files left after DeleteMyData: %v", names)
	}
	// The app's own file is not the store's.
	if n, err := c.StoredBytes(); err != nil || n != 0 {
		t.Errorf("StoredBytes after DeleteMyData = %d, %v, want 0", n, err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("DeleteMyData removed the app's own file: %v", err)
	}
	// Memory: no interactions, no factor, no ledger, no key, opted out.
	c.mu.Lock()
	if len(c.st.interactions) != 0 || c.st.user != nil || len(c.st.charges) != 0 || c.model.user != nil || c.store.dek != nil {
		t.Errorf("state after DeleteMyData: %+v, user %v, dek %v", c.st, c.model.user, c.store.dek)
	}
	c.mu.Unlock()
	rep, err := c.Report()
	if err != nil {
		t.Fatal(err)
	}
	if rep.OptedIn || rep.Interactions != 0 || len(rep.Rounds) != 0 || rep.Totals.Epsilon != 0 {
		t.Errorf("report after DeleteMyData = %+v", rep)
	}
	// Still usable: cold-start recommendations, and a new store on write.
	recs, err := c.Recommend(ctx, 3, Filter{})
	if err != nil || fmt.Sprint(items(recs)) != "[item-5 item-3 item-4]" {
		t.Errorf("Recommend after DeleteMyData = %v, %v; want the cold-start ranking", items(recs), err)
	}
	if _, err := c.Participate(ctx); !errors.Is(err, ErrNotOptedIn) {
		t.Errorf("Participate after DeleteMyData = %v, want ErrNotOptedIn", err)
	}
	recordAll(t, c, rate(2, 3))
	c.Close()
	c = open(t, cfg)
	rep, _ = c.Report()
	if rep.Interactions != 1 || len(rep.Rounds) != 0 || c.ModelVersion() != 1 {
		t.Errorf("after DeleteMyData, a write and a restart: %d interactions, %d rounds, model %d; want 1, 0, 1",
			rep.Interactions, len(rep.Rounds), c.ModelVersion())
	}
	_ = fed
}

func TestDeleteMyDataMidRound(t *testing.T) {
	c, fed, cfg := roundClient(t)
	started := make(chan struct{})
	fed.midUpload = func(ctx context.Context) {
		close(started)
		<-ctx.Done()
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Participate(context.Background())
		errc <- err
	}()
	<-started
	if err := c.DeleteMyData(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrOptedOut) {
		t.Errorf("Participate = %v, want ErrOptedOut", err)
	}
	assertNoFiles(t, cfg.Dir)
	if fed.sentChunks() != 1 {
		t.Errorf("chunks sent = %d, want 1", fed.sentChunks())
	}
}

func assertNoFiles(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("files in %s: %v, want none", dir, names)
	}
}

func TestRetention(t *testing.T) {
	cfg, clk := testConfig(t)
	cfg.MaxInteractions = 10
	c := open(t, cfg)
	for i := range 15 {
		recordAll(t, c, Interaction{Item: fmt.Sprintf("item-%d", i), Kind: View})
	}
	c.mu.Lock()
	n, first := len(c.st.interactions), c.st.interactions[0].Item
	c.mu.Unlock()
	if n != 10 || first != "item-5" {
		t.Errorf("kept %d, oldest %s; want 10, item-5", n, first)
	}
	clk.Add(60 * 24 * time.Hour)
	recordAll(t, c, Interaction{Item: "recent", Kind: View})
	c.Close()
	clk.Add(31 * 24 * time.Hour) // the first 15 are now 91 days old
	c = open(t, cfg)
	rep, _ := c.Report()
	if rep.Interactions != 1 {
		t.Errorf("after 91 days: %d interactions, want 1", rep.Interactions)
	}
	// Expired data left the disk: the store was compacted at open.
	c.Close()
	st := loadRaw(t, cfg)
	if len(st.interactions) != 1 {
		t.Errorf("on disk after expiry: %d interactions, want 1", len(st.interactions))
	}
}

// loadRaw reads the store in cfg.Dir without pruning.
func loadRaw(t *testing.T, cfg Config) *state {
	t.Helper()
	s, st, err := openDirStore(cfg.Dir, cfg.Key)
	if err != nil {
		t.Fatal(err)
	}
	s.close()
	return st
}

func TestClosed(t *testing.T) {
	c, _, _ := roundClient(t)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	ctx := t.Context()
	_, errRecommend := c.Recommend(ctx, 1, Filter{})
	_, errParticipate := c.Participate(ctx)
	_, errReport := c.Report()
	for name, err := range map[string]error{
		"Record":       c.Record(ctx, rate(1, 1)),
		"Recommend":    errRecommend,
		"SetModel":     c.SetModel(ctx, handRelease(5)),
		"OptIn":        c.OptIn(),
		"OptOut":       c.OptOut(ctx),
		"DeleteMyData": c.DeleteMyData(ctx),
		"Participate":  errParticipate,
		"Report":       errReport,
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	c, fed, _ := roundClient(t)
	if err := c.SetModel(t.Context(), handRelease(1)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20 {
				ctx := context.Background()
				switch g {
				case 0:
					c.Record(ctx, rate(i%6, float64(1+i%5)))
				case 1:
					c.Recommend(ctx, 3, Filter{Allow: func(string) bool { return true }})
				case 2:
					c.Report()
				case 3:
					fed.offer = goodOffer(uint64(i + 1))
					c.Participate(ctx)
				}
			}
		})
	}
	wg.Wait()
}

// Benchmarks at the sizes of the issue: 10,000 items at rank 32, a user
// with 200 interactions.

const (
	benchItems = 10_000
	benchRank  = 32
	benchUser  = 200
)

// benchClient returns a client holding a random benchItems × benchRank
// model of the given kind and a user with n rated or purchased items.
func benchClient(b *testing.B, kind model.Kind, n int) (*Client, Release) {
	b.Helper()
	cfg, _ := testConfig(b)
	cfg.MaxInteractions = max(n, 1)
	c := open(b, cfg)
	rel := randomRelease(b, kind, benchItems, benchRank, 1)
	if err := c.SetModel(b.Context(), rel); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	c.mu.Lock()
	for _, i := range r.Perm(benchItems)[:n] {
		x := stored{Item: rel.Items[i], Kind: Rating, Value: float64(1 + r.IntN(5)), Time: storedTime(t0)}
		if kind == model.Implicit {
			x.Kind, x.Value = Purchase, 0
		}
		c.st.apply(x)
	}
	c.model.stale()
	c.mu.Unlock()
	return c, rel
}

func BenchmarkRecommend(b *testing.B) {
	for _, kind := range []model.Kind{model.Explicit, model.Implicit} {
		b.Run(kind.String(), func(b *testing.B) {
			c, _ := benchClient(b, kind, benchUser)
			ctx := b.Context()
			if _, err := c.Recommend(ctx, 10, Filter{}); err != nil { // fits the user
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(8 * model.Dim(benchItems, benchRank)))
			for b.Loop() {
				if _, err := c.Recommend(ctx, 10, Filter{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRefreshUser is Recommend right after an interaction arrived:
// the user's factor is fitted again first.
func BenchmarkRefreshUser(b *testing.B) {
	for _, kind := range []model.Kind{model.Explicit, model.Implicit} {
		b.Run(kind.String(), func(b *testing.B) {
			c, _ := benchClient(b, kind, benchUser)
			ctx := b.Context()
			c.Recommend(ctx, 10, Filter{}) // builds the trainer once per model
			b.ReportAllocs()
			for b.Loop() {
				c.mu.Lock()
				c.model.stale()
				c.mu.Unlock()
				if _, err := c.Recommend(ctx, 10, Filter{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLocalStep is the device's training step in a round, with a
// fresh trainer: fit the user, one local pass, clip, add its noise share
// (steptest.Benchmark, which client/web/browsertest's BenchmarkLocalStep
// runs compiled to WebAssembly in Chromium).
func BenchmarkLocalStep(b *testing.B) {
	for _, kind := range []model.Kind{model.Explicit, model.Implicit} {
		b.Run(kind.String(), func(b *testing.B) { steptest.Benchmark(b, kind) })
	}
}

// BenchmarkLocalStepInstalled is the step of a round of the model the
// device has installed (and recommends from): the model's trainer, and
// its Gramian, are there already.
func BenchmarkLocalStepInstalled(b *testing.B) {
	for _, kind := range []model.Kind{model.Explicit, model.Implicit} {
		b.Run(kind.String(), func(b *testing.B) {
			c, rel := benchClient(b, kind, benchUser)
			c.mu.Lock()
			rs := ratingsFor(c.st.interactions, c.model.index, kind, DefaultEventWeights())
			t, err := c.trainerLocked()
			c.mu.Unlock()
			if err != nil {
				b.Fatal(err)
			}
			r := rand.New(rand.NewPCG(5, 6))
			b.ReportAllocs()
			b.SetBytes(int64(8 * len(rel.Model.Params)))
			for b.Loop() {
				if _, _, err := localStep(t, rs, 1, 0.01, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRecord is one durable write (an encrypted log append and an
// fsync); it measures the disk as much as the SDK.
func BenchmarkRecord(b *testing.B) {
	cfg, _ := testConfig(b)
	c := open(b, cfg)
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := c.Record(ctx, Interaction{Item: fmt.Sprint("item-", i%benchItems), Kind: View}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkMemoryAtRest reports the heap a Client holds with the model
// installed, a full store (10,000 interactions) and the user fitted,
// after a garbage collection.
func BenchmarkMemoryAtRest(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		c, _ := benchClient(b, model.Explicit, DefaultMaxInteractions)
		if _, err := c.Recommend(b.Context(), 10, Filter{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc), "heap-B")
		b.ReportMetric(float64(8*model.Dim(benchItems, benchRank)), "model-B")
		runtime.KeepAlive(c)
		c.Close()
		b.StartTimer()
	}
}
