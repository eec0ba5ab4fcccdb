package coordinator

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/aggregation/fixedpoint"
	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/fedrec/fedrec/coordinator/wire"
)

func secureTraining(cohort int) Training {
	tr := testTraining()
	tr.ClientsPerRound, tr.OverSelect, tr.MinClients = cohort, 0, 3
	// A phase waits this long only for the clients that drop out; honest
	// ones must make it on a loaded machine under the race detector.
	tr.Clip, tr.SecAgg, tr.SecAggPhase = 1, true, 1500*time.Millisecond
	// The first phase's deadline is RoundTimeout: every client answers
	// it, so a long one costs nothing but keeps a loaded machine's slow
	// clients in the round.
	tr.CheckInWindow, tr.RoundTimeout = 2*time.Second, 10*time.Second
	return tr
}

// secureParticipate checks in and, if selected for a secure round, runs
// its phases with input x through Handle, dropping out after phase
// `last` (secagg.PhaseUnmask: never). It returns the final reply.
func (c *testCluster) secureParticipate(ctx context.Context, id string, x []float64, last secagg.Phase) (*wire.Plan, wire.Message, error) {
	return secureParticipateAt(ctx, c.leader(ctx), id, x, last)
}

// secureParticipateAt is secureParticipate with node l.
func secureParticipateAt(ctx context.Context, l *Node, id string, x []float64, last secagg.Phase) (*wire.Plan, wire.Message, error) {
	var plan *wire.Plan
	for plan == nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		plan, _ = call(ctx, l, &wire.CheckIn{Version: wire.Version, ClientID: id})[0].(*wire.Plan)
	}
	sp := plan.SecAgg
	if sp == nil {
		return plan, nil, fmt.Errorf("plan without secagg")
	}
	in, err := secureEncode(sp, x, rand.New(rand.NewPCG(uint64(len(id)), uint64(id[len(id)-1]))))
	if err != nil {
		return plan, nil, err
	}
	sc, err := secagg.NewClient(sp.Config(plan.Round, len(in)), plan.SecAggID, nil)
	if err != nil {
		return plan, nil, err
	}
	hdr := wire.SecAggHeader{Version: wire.Version, Round: plan.Round, ClientID: id, Ticket: plan.Ticket}
	adv, _ := sc.AdvertiseKeys()
	rep := call(ctx, l, &wire.SecAggAdvert{SecAggHeader: hdr, Keys: wire.SecAggKeysOf(adv)})[0]
	pk, ok := rep.(*wire.SecAggPeerKeys)
	if !ok || last < secagg.PhaseShareKeys {
		return plan, rep, nil
	}
	up, err := sc.ShareKeys(pk.PeerKeys())
	if err != nil {
		return plan, nil, err
	}
	rep = call(ctx, l, &wire.SecAggShares{SecAggHeader: hdr, Shares: wire.SealedOf(up.Shares)})[0]
	dl, ok := rep.(*wire.SecAggDelivery)
	if !ok || last < secagg.PhaseMaskedInput {
		return plan, rep, nil
	}
	mi, err := sc.MaskedInput(secagg.ShareDelivery{Round: dl.Round, To: dl.To, Shares: wire.Sealed(dl.Shares)}, in)
	if err != nil {
		return plan, nil, err
	}
	w, vals := wire.PackWords(mi.Values, sp.Bits)
	rep = call(ctx, l, &wire.SecAggMasked{SecAggHeader: hdr, Width: w, Values: vals})[0]
	ur, ok := rep.(*wire.SecAggUnmaskRequest)
	if !ok || last < secagg.PhaseUnmask {
		return plan, rep, nil
	}
	um, err := sc.Unmask(secagg.UnmaskRequest{Round: ur.Round, To: ur.To, Survivors: ur.Survivors, Dropped: ur.Dropped})
	if err != nil {
		return plan, nil, err
	}
	return plan, call(ctx, l, &wire.SecAggUnmask{SecAggHeader: hdr, SelfMaskShares: wire.SharesOf(um.SelfMaskShares), MaskKeyShares: wire.SharesOf(um.MaskKeyShares)})[0], nil
}

// secureEncode is a device's input of update x to the secure round of sp.
func secureEncode(sp *wire.SecAggParams, x []float64, r *rand.Rand) ([]uint64, error) {
	rot := [32]byte(sp.RotationSeed)
	if sp.Quantized {
		q, err := fixedpoint.NewQuantizer(len(x), sp.Clip, rot)
		if err != nil {
			return nil, err
		}
		v := make([]int8, len(x))
		if _, _, err := q.Quantize(v, x, r); err != nil {
			return nil, err
		}
		in := make([]uint64, len(x))
		fixedpoint.WrapQuantized(in, v, uint(sp.Bits))
		return in, nil
	}
	enc, err := fixedpoint.NewEncoder(fixedpoint.Params{Dim: len(x), Clip: sp.Clip, Bits: uint(sp.Bits), MaxClients: sp.SumClients(), Seed: rot})
	if err != nil {
		return nil, err
	}
	xi := make([]int64, enc.PaddedDim())
	if _, err := enc.Encode(xi, x, r); err != nil {
		return nil, err
	}
	in := make([]uint64, len(xi))
	return in, enc.Wrap(in, xi)
}

// runSecure runs a cohort of n clients, client i with input inputs(i) and
// dropping out after phase last(i), and waits for the round's outcome.
func runSecure(t *testing.T, c *testCluster, n int, inputs func(i int) []float64, last func(i int) secagg.Phase) RoundRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, _, errs[i] = c.secureParticipate(ctx, fmt.Sprintf("s%d", i), inputs(i), last(i)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	l := c.leader(ctx)
	if err := l.WaitFor(ctx, func(s *State) bool { return len(s.Rounds()) == 1 }); err != nil {
		t.Fatal(err)
	}
	var r RoundRecord
	l.View(func(s *State) { r = s.Rounds()[0] })
	return r
}

// sinInput is the test input of client i: 0.02·sin of distinct angles.
func sinInput(dim int) func(i int) []float64 {
	return func(i int) []float64 {
		x := make([]float64, dim)
		for j := range x {
			x[j] = 0.02 * math.Sin(float64(i*dim+j))
		}
		return x
	}
}

// expectStep is the model after one server-optimizer step with delta.
func expectStep(t *testing.T, c *testCluster, delta []float64) []float64 {
	var base []float64
	c.nodes[0].View(func(s *State) { base = append([]float64(nil), s.Model(1).Model.Params...) })
	opt, err := aggregation.NewOptimizer(c.cfg.WithDefaults().Optimizer, len(base))
	if err != nil {
		t.Fatal(err)
	}
	if err := opt.Step(base, delta); err != nil {
		t.Fatal(err)
	}
	return base
}

func TestSecureRound(t *testing.T) {
	const n = 10
	dim := 0
	input := func(i int) []float64 { return sinInput(dim)(i) }
	for _, tc := range []struct {
		name      string
		drops     int          // clients that drop out
		after     secagg.Phase // ... after this phase
		survivors int          // 0: abandoned
	}{
		{"all", 0, secagg.PhaseUnmask, n},
		{"30% drop after sharing keys", 3, secagg.PhaseShareKeys, n - 3},
		{"below threshold", 6, secagg.PhaseAdvertiseKeys, 0},
		{"below threshold after masked input", 6, secagg.PhaseMaskedInput, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, 1, secureTraining(n))
			dim = c.dim()
			// Client ids are s0..s9; the last tc.drops drop out.
			last := func(i int) secagg.Phase {
				if i >= n-tc.drops {
					return tc.after
				}
				return secagg.PhaseUnmask
			}
			r := runSecure(t, c, n, input, last)
			if tc.survivors == 0 {
				c.nodes[0].View(func(s *State) {
					if r.Outcome != Abandoned || s.Current().Version != 1 || len(s.Ledger()) != 0 {
						t.Errorf("round %+v, version %d; want abandoned, version 1", r, s.Current().Version)
					}
				})
				return
			}
			if r.Outcome != Committed || r.Survivors != tc.survivors || r.Cohort != n {
				t.Fatalf("round %+v, want committed with %d of %d", r, tc.survivors, n)
			}
			mean := make([]float64, dim)
			for i := range tc.survivors {
				for j, x := range input(i) {
					mean[j] += x / float64(tc.survivors)
				}
			}
			want := expectStep(t, c, mean)
			c.nodes[0].View(func(s *State) {
				got := s.Current().Model.Params
				for j := range want {
					if math.Abs(got[j]-want[j]) > 1e-6*(1+math.Abs(want[j])) {
						t.Fatalf("param %d = %v, want %v (plaintext mean)", j, got[j], want[j])
					}
				}
			})
		})
	}
}

// A secure round of 8-bit inputs: the manifest's field is just wide
// enough for the cohort's sum of bytes, and the committed step is the
// plaintext mean within the quantization step.
func TestSecureRoundQuantized(t *testing.T) {
	const n = 10
	tr := secureTraining(n)
	tr.UploadBits = 8
	tr.Optimizer = aggregation.OptimizerConfig{Name: "fedavg", LR: 1}
	if p := secAggParams(tr.WithDefaults(), 1, make([]byte, 32), make([]string, n), 1); !p.Quantized || p.Bits != 12 || p.Validate() != nil {
		t.Fatalf("secAggParams of 10 devices: quantized %v, %d bits, %v; want 8-bit inputs in 12 bits", p.Quantized, p.Bits, p.Validate())
	}
	c := newTestCluster(t, 1, tr)
	dim := c.dim()
	input := sinInput(dim)
	last := func(i int) secagg.Phase {
		if i >= n-2 {
			return secagg.PhaseShareKeys // two drop out
		}
		return secagg.PhaseUnmask
	}
	var base []float64
	c.nodes[0].View(func(s *State) { base = append([]float64(nil), s.Current().Model.Params...) })
	if r := runSecure(t, c, n, input, last); r.Outcome != Committed || r.Survivors != n-2 {
		t.Fatalf("round %+v, want committed with %d", r, n-2)
	}
	q, err := fixedpoint.NewQuantizer(dim, 1, [32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[0].View(func(s *State) {
		for j, got := range s.Current().Model.Params {
			var mean float64
			for i := range n - 2 {
				mean += input(i)[j] / (n - 2)
			}
			if d := got - base[j]; math.Abs(d-mean) > q.Step() {
				t.Errorf("param %d moved by %v, want the mean %v ± %v", j, d, mean, q.Step())
			}
		}
	})
}

// The leader dies while clients are held in a secure round's share-keys
// phase: the held requests are answered, the new leader abandons the round
// ("leader change"), and the next secure round commits.
func TestSecureRoundFailover(t *testing.T) {
	const n = 5
	tr := secureTraining(n)
	tr.SecAggPhase = 10 * time.Second
	c := newSteadyCluster(t, tr) // the crash must be the only change of leader
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	old := c.leader(ctx)
	dim := c.dim()
	x := func(int) []float64 { return constDelta(dim, 0.01) }
	var wg sync.WaitGroup
	replies := make([]wire.Message, n)
	for i := range n {
		last := secagg.PhaseUnmask
		if i >= 3 {
			last = secagg.PhaseAdvertiseKeys // two never share keys: the phase waits
		}
		wg.Go(func() { _, replies[i], _ = c.secureParticipate(ctx, fmt.Sprintf("s%d", i), x(i), last) })
	}
	// Wait until three clients are held in share-keys.
	var openRound uint64
	for openRound == 0 {
		if ctx.Err() != nil {
			t.Fatal("no secure round in share-keys")
		}
		if r := old.part.Load(); r != nil {
			if r.sec != nil {
				r.mu.Lock()
				ph := r.phase
				r.mu.Unlock()
				if ph == phaseSharing && len(r.sec.srv.Awaiting()) == 2 {
					openRound = r.id
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	old.crashed.Store(true)
	c.trans[slices.Index(c.nodes, old)].DisconnectAll()
	old.Close()
	wg.Wait() // every held request was answered
	for i, m := range replies[:3] {
		if e, ok := m.(*wire.Error); !ok || (e.Code != wire.CodeNoRound && e.Code != wire.CodeNotLeader && e.Code != wire.CodeUnavailable) {
			t.Errorf("client %d held in share-keys got %v, want an error", i, m)
		}
	}
	// The next secure round, at the new leader, commits.
	r := func() RoundRecord {
		for i := range n {
			wg.Go(func() {
				if _, _, err := c.secureParticipate(ctx, fmt.Sprintf("t%d", i), x(i), secagg.PhaseUnmask); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		l := c.leader(ctx)
		if err := l.WaitFor(ctx, func(s *State) bool { return s.Current().Version == 2 }); err != nil {
			t.Fatal(err)
		}
		var out RoundRecord
		l.View(func(s *State) { out = s.Rounds()[len(s.Rounds())-1] })
		return out
	}()
	if r.Outcome != Committed || r.Survivors != n {
		t.Errorf("round after failover %+v, want committed with %d", r, n)
	}
	for _, nd := range c.live() {
		nd.View(func(s *State) {
			var abandoned bool
			for _, r := range s.Rounds() {
				abandoned = abandoned || (r.Round == openRound && r.Outcome == Abandoned && r.Reason == "leader change")
			}
			if !abandoned {
				t.Errorf("node %s: round %d not abandoned by the new leader: %+v", nd.ID(), openRound, s.Rounds())
			}
		})
	}
}

func TestSecureTrainingValidate(t *testing.T) {
	for name, f := range map[string]func(tr *Training){
		"Clip":        func(tr *Training) { tr.Clip = 0 },
		"MinClients":  func(tr *Training) { tr.MinClients = 2 },
		"SecAggPhase": func(tr *Training) { tr.SecAggPhase = time.Microsecond },
	} {
		tr := secureTraining(10)
		f(&tr)
		if err := tr.Validate(); err == nil || !strings.Contains(err.Error(), "Training."+name) {
			t.Errorf("Validate() with bad %s = %v, want an error naming it", name, err)
		}
	}
	if err := secureTraining(10).Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}
