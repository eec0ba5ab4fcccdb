package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/wire"
)

func TestNoiseTrainingValidate(t *testing.T) {
	sec := func(f func(*Training)) Training {
		tr := secureTraining(5)
		tr.NoiseMultiplier = 1
		f(&tr)
		return tr.WithDefaults()
	}
	tests := []struct {
		name  string
		tr    Training
		field string // "" = valid
	}{
		{"central by default", sec(func(*Training) {}), ""},
		{"distributed", sec(func(tr *Training) { tr.Noise = NoiseDistributed }), ""},
		{"distributed without secagg", sec(func(tr *Training) {
			tr.Noise, tr.SecAgg, tr.SecAggPhase = NoiseDistributed, false, 0
		}), "SecAgg"},
		{"distributed without noise", sec(func(tr *Training) { tr.Noise, tr.NoiseMultiplier = NoiseDistributed, 0 }), "NoiseMultiplier"},
		{"off with noise", sec(func(tr *Training) { tr.Noise = NoiseOff }), "NoiseMultiplier"},
		{"unknown mode", sec(func(tr *Training) { tr.Noise = 9 }), "Noise"},
		{"adaptive distributed", sec(func(tr *Training) { tr.Noise, tr.AdaptiveClip = NoiseDistributed, true }), "AdaptiveClip"},
		{"adaptive central secure", sec(func(tr *Training) { tr.AdaptiveClip, tr.ClipCountStddev = true, 1 }), ""},
		{"adaptive count noise too small", sec(func(tr *Training) { tr.AdaptiveClip, tr.ClipCountStddev = true, 0.4 }), "ClipCountStddev"},
		{"adaptive default count noise too small", sec(func(tr *Training) { tr.AdaptiveClip = true }), "ClipCountStddev"},
		{"quantile without adaptive", sec(func(tr *Training) { tr.ClipQuantile = 0.3 }), "AdaptiveClip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.tr.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.field != "" && (err == nil || !strings.Contains(err.Error(), tt.field)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
	for _, s := range []string{"off", "central", "distributed"} {
		if m, err := ParseNoiseMode(s); err != nil || m.String() != s {
			t.Errorf("ParseNoiseMode(%q) = %v, %v", s, m, err)
		}
	}
}

// ledgerEpsilon returns ε at delta of a ledger, +Inf if a round had no noise.
func ledgerEpsilon(ledger []LedgerEntry, delta float64) (float64, error) {
	a, err := privacy.NewAccountant(privacy.Config{})
	if err != nil {
		return 0, err
	}
	for _, e := range ledger {
		if err := a.Add(e.Entry()); err != nil {
			return math.NaN(), fmt.Errorf("coordinator: ledger round %d: %w", e.Round, err)
		}
	}
	eps, _, err := a.Epsilon(delta)
	return eps, err
}

// TestDistributedLedger drives the state with a distributed-DP round: the
// ledger entry carries the Skellam mechanism, survives a snapshot, and ε
// is the Skellam accountant's; a commit whose mechanism differs from the
// manifest's is refused.
func TestDistributedLedger(t *testing.T) {
	tr := secureTraining(5)
	tr.NoiseMultiplier, tr.Noise = 1.5, NoiseDistributed
	tr = tr.WithDefaults()
	f := newFSM()
	for i, c := range initCommands(t, tr) {
		if res := fsmApply(t, f, uint64(i+1), c); res != nil {
			t.Fatalf("apply %T: %v", c, res)
		}
	}
	open := openFor(f.State(), 1)
	open.SecAgg = secAggParams(tr, 1, open.Digest, open.Cohort, tr.Clip)
	open.Privacy = tr.Privacy(len(open.Cohort), open.SecAgg)
	if p := open.Privacy; p.Mechanism != wire.MechSkellam || p.NoiseClients != open.SecAgg.MinSurvivors {
		t.Fatalf("manifest privacy %+v, want Skellam split into %d shares", p, open.SecAgg.MinSurvivors)
	}
	if res := fsmApply(t, f, 10, open); res != nil {
		t.Fatal(res)
	}
	d, err := distributed(open.SecAgg, open.Privacy, len(f.State().Current().Model.Params))
	if err != nil {
		t.Fatal(err)
	}
	c := commitFor(f.State(), 1, 0.01)
	c.Privacy = open.Privacy
	if res := fsmApply(t, f, 11, c); !errors.Is(asErr(res), ErrBadCommand) {
		t.Fatalf("commit without the accountant's figures: Apply = %v, want ErrBadCommand", res)
	}
	c.Privacy.Mechanism = wire.MechGaussian
	if res := fsmApply(t, f, 11, c); !errors.Is(asErr(res), ErrBadCommand) {
		t.Fatalf("commit with another mechanism: Apply = %v, want ErrBadCommand", res)
	}
	sp := d.Survivors(c.Survivors)
	c.Privacy = open.Privacy
	c.Privacy.Variance, c.Privacy.L1, c.Privacy.L2 = sp.Variance, sp.L1, sp.L2
	if res := fsmApply(t, f, 12, c); asErr(res) != nil {
		t.Fatalf("Apply(commit) = %v", res)
	}
	e := f.State().Ledger()[0]
	if e.Entry().Mechanism != privacy.PoissonSkellam || e.Variance != sp.Variance || e.L2 != sp.L2 {
		t.Fatalf("ledger entry %+v, want Skellam with variance %v", e, sp.Variance)
	}
	if r := f.State().Rounds()[0]; !r.LossUnknown {
		t.Errorf("round record %+v, want LossUnknown (a secure round)", r)
	}
	acc, _ := privacy.NewAccountant(privacy.Config{})
	if err := acc.AddSkellam(open.Privacy.SamplingRate, sp, 1); err != nil {
		t.Fatal(err)
	}
	want, _, _ := acc.Epsilon(DefaultDelta)
	got, err := ledgerEpsilon(f.State().Ledger(), DefaultDelta)
	if err != nil || got != want || math.IsInf(got, 0) {
		t.Fatalf("ledgerEpsilon = %v, %v; want %v", got, err, want)
	}
	var buf bytes.Buffer
	if err := f.State().WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	st, err := store.ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ledgerEpsilon(st.Ledger(), DefaultDelta); got != want || st.Ledger()[0] != e || !st.Rounds()[0].LossUnknown {
		t.Errorf("after snapshot/restore: ε = %v (want %v), entry %+v, round %+v", got, want, st.Ledger()[0], st.Rounds()[0])
	}
}

// asErr returns res as an error, nil if it is not one.
func asErr(res any) error {
	err, _ := res.(error)
	return err
}

// adaptiveRound runs one plaintext round with a client per bit of below,
// each uploading a small update (below) or one beyond the clip, and
// returns the plans the clients received.
func adaptiveRound(t *testing.T, c *testCluster, round int, below []bool) []*wire.Plan {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	plans := make([]*wire.Plan, len(below))
	var wg sync.WaitGroup
	for i, b := range below {
		wg.Go(func() {
			id := fmt.Sprintf("r%dc%d", round, i)
			for ctx.Err() == nil {
				l := c.findLeader(ctx)
				if l == nil {
					return
				}
				p, ok := call(ctx, l, &wire.CheckIn{Version: wire.Version, ClientID: id})[0].(*wire.Plan)
				if !ok {
					continue
				}
				norm := p.Clip // as the client clipped it
				if b {
					norm = 0.01 * p.Clip
				}
				d := constDelta(c.dim(), norm/math.Sqrt(float64(c.dim())))
				plans[i] = p
				call(ctx, l, &wire.Upload{Version: wire.Version, Round: p.Round, ClientID: id, Ticket: p.Ticket, Model: p.Model, N: 1, Delta: d, BelowClip: b})
				return
			}
		})
	}
	wg.Wait()
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= uint64(round+1) })
	return plans
}

// TestAdaptiveClip runs plaintext rounds with adaptive clipping: without
// noise the clip follows the geometric update exactly, round after round,
// each round's manifest and plans carry it, and it survives a snapshot.
// Under central noise the ledger charges the configured multiplier and the
// manifest announces the count's noise.
func TestAdaptiveClip(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		tr := testTraining()
		tr.ClientsPerRound, tr.MinClients, tr.OverSelect, tr.CheckInWindow = 3, 3, 0, 2*time.Second
		tr.Clip, tr.AdaptiveClip = 1, true
		tr = tr.WithDefaults()
		c := newTestCluster(t, 1, tr)
		clip := 1.0
		for round, below := range [][]bool{{true, true, false}, {true, true, true}, {false, false, false}} {
			plans := adaptiveRound(t, c, round+1, below)
			for _, p := range plans {
				if p.Clip != clip {
					t.Fatalf("round %d plan clip %v, want %v", round+1, p.Clip, clip)
				}
			}
			k := 0
			for _, b := range below {
				if b {
					k++
				}
			}
			cl, err := tr.Clipper(clip)
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.Observe(k, len(below), nil); err != nil {
				t.Fatal(err)
			}
			var rec RoundRecord
			var state float64
			c.nodes[0].View(func(s *State) { rec, state = s.Rounds()[round], s.Clip() })
			if rec.Clip != clip || rec.NextClip != cl.Clip() || state != cl.Clip() {
				t.Fatalf("round %d record clip %v → %v, state %v; want %v → %v", round+1, rec.Clip, rec.NextClip, state, clip, cl.Clip())
			}
			clip = cl.Clip()
		}
		var buf bytes.Buffer
		c.nodes[0].View(func(s *State) {
			if err := s.WriteSnapshot(&buf); err != nil {
				t.Fatal(err)
			}
		})
		st, err := store.ReadSnapshot(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if st.Clip() != clip {
			t.Errorf("clip after snapshot/restore = %v, want %v", st.Clip(), clip)
		}
	})
	t.Run("central", func(t *testing.T) {
		tr := testTraining()
		tr.ClientsPerRound, tr.MinClients, tr.OverSelect, tr.CheckInWindow = 3, 3, 0, 2*time.Second
		tr.Clip, tr.AdaptiveClip, tr.NoiseMultiplier, tr.Population = 1, true, 0.1, 100
		tr = tr.WithDefaults()
		c := newTestCluster(t, 1, tr)
		plans := adaptiveRound(t, c, 1, []bool{true, false, true})
		if p := plans[0].Privacy; p.CountStddev != 3.0/20 || p.NoiseMultiplier != 0.1 {
			t.Errorf("plan privacy %+v, want count noise 0.15 and multiplier 0.1", p)
		}
		c.nodes[0].View(func(s *State) {
			if e := s.Ledger()[0]; e.NoiseMultiplier != 0.1 || e.Entry().Mechanism != privacy.PoissonGaussian {
				t.Errorf("ledger entry %+v, want the effective multiplier 0.1", e)
			}
			if r := s.Rounds()[0]; !(r.NextClip > 0) || r.NextClip == r.Clip {
				t.Errorf("round %+v, want a new clip", r)
			}
		})
	})
}
