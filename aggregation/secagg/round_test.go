package secagg

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// cohort is a round size with parameters that tolerate 30% dropouts at any
// single point. The sparse thresholds are low (t ≈ k/4) so that small
// degrees survive 30% dropouts in tests; see doc.go for production values.
type cohort struct {
	n, d, bits, degree, threshold int
	heavy                         bool // one row under -race
}

var cohorts = []cohort{
	{n: 10, d: 257, bits: 32},                                         // complete graph, t = 5
	{n: 100, d: 64, bits: 64, degree: 16, threshold: 5},               // sparse
	{n: 1000, d: 16, bits: 20, degree: 20, threshold: 5, heavy: true}, // sparse
}

func TestRoundSum(t *testing.T) {
	type row struct {
		name string
		drop [numDropPoints]float64
	}
	rows := []row{{name: "no-dropouts"}}
	for p := range numDropPoints {
		for _, f := range []float64{0.10, 0.30} {
			var r row
			r.name = fmt.Sprintf("%s-%d%%", p, int(f*100))
			r.drop[p] = f
			rows = append(rows, r)
		}
	}
	for _, c := range cohorts {
		for _, r := range rows {
			t.Run(fmt.Sprintf("n=%d/%s", c.n, r.name), func(t *testing.T) {
				if c.heavy && raceEnabled && r.name != "after-share-30%" {
					t.Skip("n=1000: one row under -race (X25519 is 8x slower there); run without -race for all")
				}
				if c.heavy && testing.Short() {
					t.Skip("n=1000 skipped in -short mode")
				}
				t.Parallel()
				sim := simulation{
					cfg:      testConfig(c.n, c.d, c.bits, c.degree, c.threshold),
					drop:     r.drop,
					seed:     uint64(c.n)<<8 | 1,
					parallel: c.n >= 100,
					workers:  2,
				}
				checkRound(t, sim)
			})
		}
	}
}

// TestRoundSumEveryPhase drops clients at every point of one round.
func TestRoundSumEveryPhase(t *testing.T) {
	for _, c := range []cohort{
		{n: 10, d: 33, bits: 16, threshold: 3},
		{n: 100, d: 40, bits: 48, degree: 20, threshold: 5},
		{n: 1000, d: 16, bits: 32, degree: 24, threshold: 5, heavy: true},
	} {
		t.Run(fmt.Sprintf("n=%d", c.n), func(t *testing.T) {
			if c.heavy && (raceEnabled || testing.Short()) {
				t.Skip("n=1000 skipped under -race and -short")
			}
			t.Parallel()
			sim := simulation{
				cfg:      testConfig(c.n, c.d, c.bits, c.degree, c.threshold),
				drop:     [numDropPoints]float64{0.1, 0.1, 0.1, 0.1, 0.1},
				seed:     7,
				parallel: true,
			}
			checkRound(t, sim)
		})
	}
}

func checkRound(t *testing.T, sim simulation) {
	t.Helper()
	out, err := sim.run()
	if err != nil {
		t.Fatalf("round (dropped %v): %v", out.dropped, err)
	}
	if !slices.Equal(out.res.Clients, out.wantIDs) {
		t.Fatalf("Result.Clients = %v, want %v", out.res.Clients, out.wantIDs)
	}
	if out.res.Count != len(out.wantIDs) {
		t.Errorf("Result.Count = %d, want %d", out.res.Count, len(out.wantIDs))
	}
	if !slices.Equal(out.res.Sum, out.wantSum) {
		t.Fatalf("Result.Sum = %v..., want %v...", out.res.Sum[:min(4, len(out.res.Sum))], out.wantSum[:min(4, len(out.wantSum))])
	}
	// Pruning may remove a few clients whose neighbourhood became too
	// small, but not many.
	n := len(sim.cfg.Clients)
	expected := float64(n)
	for _, f := range sim.drop[:dropAfterMasked] {
		expected *= 1 - f
	}
	if float64(out.res.Count) < 0.95*expected-1 {
		t.Errorf("Result.Count = %d, want about %.0f (dropped %v)", out.res.Count, expected, out.dropped)
	}
}

// TestRoundAborts checks that a round aborts, revealing no sum, whenever too
// few clients survive.
func TestRoundAborts(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		drop [numDropPoints]float64
		want error
	}{
		{"advertise", testConfig(10, 8, 16, 0, 0), [numDropPoints]float64{dropBeforeAdvert: 0.6}, ErrTooFewSurvivors},
		{"share-keys", testConfig(10, 8, 16, 0, 0), [numDropPoints]float64{dropAfterAdvert: 0.6}, ErrTooFewSurvivors},
		{"masked-input", testConfig(10, 8, 16, 0, 0), [numDropPoints]float64{dropAfterShare: 0.6}, ErrTooFewSurvivors},
		{"unmask", testConfig(10, 8, 16, 0, 0), [numDropPoints]float64{dropAfterMasked: 0.6}, ErrTooFewSurvivors},
		{"unmask-late", testConfig(10, 8, 16, 0, 0), [numDropPoints]float64{dropDuringUnmask: 0.6}, ErrTooFewSurvivors},
		{"min-survivors", func() Config {
			c := testConfig(20, 8, 16, 0, 0)
			c.MinSurvivors = 19
			return c
		}(), [numDropPoints]float64{dropAfterShare: 0.1}, ErrTooFewSurvivors},
		// With k = t = 6, any dropout leaves a neighbourhood too small.
		{"sparse-neighbourhood", testConfig(60, 8, 16, 6, 6), [numDropPoints]float64{dropAfterShare: 0.1}, ErrTooFewSurvivors},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := simulation{cfg: tt.cfg, drop: tt.drop, seed: 3}.run()
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrAborted) {
				t.Fatalf("round error = %v, want %v and %v", err, tt.want, ErrAborted)
			}
		})
	}
}

// TestDisconnectedAborts drops two runs of clients on the ring, each as long
// as half the degree, which splits the survivors in two. The round must
// abort rather than reveal each half's sum.
func TestDisconnectedAborts(t *testing.T) {
	cfg := testConfig(30, 8, 16, 4, 2)
	nc, err := cfg.normalize()
	if err != nil {
		t.Fatal(err)
	}
	g := newGraph(&nc)
	gone := map[uint32]bool{}
	for _, p := range []int{0, 1, 15, 16} {
		gone[g.ids[g.at[p]]] = true
	}
	srv, clients := newRound(t, cfg)
	advance(t, srv, clients, nil)           // advertise
	advance(t, srv, clients, nil)           // share keys
	err = advanceErr(t, srv, clients, gone) // masked input
	if !errors.Is(err, ErrDisconnected) || !errors.Is(err, ErrAborted) {
		t.Fatalf("ClosePhase() = %v, want ErrDisconnected", err)
	}
	if _, err := srv.Result(); !errors.Is(err, ErrAborted) {
		t.Errorf("Result() error = %v, want ErrAborted", err)
	}
	if p := srv.Phase(); p != PhaseAborted {
		t.Errorf("Phase() = %v, want %v", p, PhaseAborted)
	}
}

// TestDeterministic checks that with the same randomness a round produces
// the same messages, and that the sum does not depend on worker count or
// concurrency.
func TestDeterministic(t *testing.T) {
	cfg := testConfig(12, 5000, 64, 8, 3)
	for _, w := range []int{1, 3} {
		for _, par := range []bool{false, true} {
			out, err := simulation{cfg: cfg, seed: 9, workers: w, parallel: par,
				drop: [numDropPoints]float64{dropAfterShare: 0.2, dropAfterMasked: 0.2}}.run()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out.res.Sum, out.wantSum) {
				t.Fatalf("workers=%d parallel=%v: sum differs from plaintext sum", w, par)
			}
		}
	}
	a, b := maskedInputOf(t, cfg, 9), maskedInputOf(t, cfg, 9)
	if !slices.Equal(a, b) {
		t.Error("masked inputs differ with the same randomness")
	}
	if c := maskedInputOf(t, cfg, 10); slices.Equal(a, c) {
		t.Error("masked inputs equal with different randomness")
	}
}
