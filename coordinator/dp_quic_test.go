package coordinator_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/crowd"
	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// quicRound runs k participants over QUIC until each took part in one
// round, and returns their results and the leader.
func quicRound(t *testing.T, tr coordinator.Training, k int) ([]crowd.RoundResult, *coordinator.Node) {
	t.Helper()
	// Raft timeouts that outlast a loaded machine's pauses: a two-node
	// cluster keeps its leader only while each hears the other, and a new
	// leader abandons the round.
	c := newQUICClusterConf(t, 2, tr, steadyRaft)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cache := crowd.NewModelCache()
	var wg sync.WaitGroup
	errs := make([]error, k)
	res := make([]crowd.RoundResult, k)
	for i := range k {
		d, err := client.NewDialer(c.addrs, c.device(t, fmt.Sprintf("u%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		p, err := crowd.NewParticipant(crowd.ParticipantConfig{
			ID: fmt.Sprintf("u%d", i), Ratings: ratings(rand.New(rand.NewPCG(uint64(i), 2)), 20, 8),
			Dialer: d, Models: cache, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer d.Close()
			for ctx.Err() == nil {
				r, err := p.RunRound(ctx)
				if err == nil && r.Selected {
					res[i] = r
					return
				}
				errs[i] = err
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("participants did not finish a round: %v", errs)
	}
	l := c.leader(t, ctx)
	if err := l.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current().Version >= 2 }); err != nil {
		t.Fatal(err)
	}
	return res, l
}

// TestQUICDistributedDP runs a distributed-DP secure round over QUIC:
// every client adds its share of Skellam noise before masking, the leader
// none. The model moved by the noise the manifest announced, the ledger
// charges the Skellam mechanism of the survivors' shares (less one), and
// /v1/status reports the Skellam accountant's ε.
func TestQUICDistributedDP(t *testing.T) {
	const k, z, clip = 4, 10.0, 1.0
	tr := training()
	tr.Items = 200 // 1001 params: the noise's RMS is known within 2%
	tr.ClientsPerRound, tr.OverSelect, tr.MinClients, tr.Clip = k, 0, 3, clip
	tr.CheckInWindow = 5 * time.Second // select when all k have checked in
	tr.SecAgg, tr.SecAggPhase = true, 2*time.Second
	tr.Noise, tr.NoiseMultiplier, tr.Population = coordinator.NoiseDistributed, z, 1000
	tr.Optimizer = aggregation.OptimizerConfig{Name: "fedavg", LR: 1}
	_, l := quicRound(t, tr, k)

	var rec coordinator.RoundRecord
	var entry coordinator.LedgerEntry
	var before, after []float64
	l.View(func(s *coordinator.State) {
		rec, entry = committed(s), s.Ledger()[0]
		before, after = s.Model(1).Model.Params, s.Model(2).Model.Params
	})
	if rec.Outcome != coordinator.Committed || rec.Survivors != k || !rec.LossUnknown {
		t.Fatalf("round %+v, want committed with %d survivors and the loss unknown", rec, k)
	}
	// The plan every client built: NoiseClients = MinSurvivors = MinClients.
	dim := len(before)
	d, err := privacy.NewDistributed(privacy.DistributedConfig{Dim: dim, Clip: clip, Bits: 32, MaxClients: k, NoiseMultiplier: z, NoiseClients: tr.MinClients})
	if err != nil {
		t.Fatal(err)
	}
	want := d.Survivors(k)
	if entry.Mechanism != wire.MechSkellam || entry.Variance != want.Variance || entry.L1 != want.L1 || entry.L2 != want.L2 || entry.SamplingRate != float64(k)/1000 {
		t.Fatalf("ledger entry %+v, want Skellam %+v at q = %v", entry, want, float64(k)/1000)
	}
	acc, _ := privacy.NewAccountant(privacy.Config{})
	if err := acc.AddSkellam(float64(k)/1000, want, 1); err != nil {
		t.Fatal(err)
	}
	wantEps, _, _ := acc.Epsilon(coordinator.DefaultDelta)
	if st := l.Status(); st.Privacy.Epsilon == nil || *st.Privacy.Epsilon != wantEps {
		t.Errorf("status privacy %+v, want ε = %v", st.Privacy, wantEps)
	}

	// k shares of variance (z·c)²/n each, divided by ClientsPerRound; the
	// clipped updates add at most c·k/ClientsPerRound/√dim per coordinate.
	var ss float64
	for i := range before {
		ss += (after[i] - before[i]) * (after[i] - before[i])
	}
	rms := math.Sqrt(ss / float64(dim))
	wantRMS := z * clip * math.Sqrt(float64(k)/float64(tr.MinClients)) / k
	if math.Abs(rms/wantRMS-1) > 0.25 {
		t.Errorf("RMS change of the model = %.4g, want %.4g (the clients' noise)", rms, wantRMS)
	}
}

// TestQUICSecureAdaptiveClip runs a secure round with adaptive clipping
// (no noise) over QUIC: each client's bit rides in the secure sum, and the
// committed next clip is the geometric update of the clients' count.
func TestQUICSecureAdaptiveClip(t *testing.T) {
	const k = 5
	tr := training()
	tr.ClientsPerRound, tr.OverSelect, tr.MinClients, tr.Clip = k, 0, 3, 0.125 // 3 of 5 below
	tr.CheckInWindow = 5 * time.Second
	tr.SecAgg, tr.SecAggPhase, tr.AdaptiveClip = true, 2*time.Second, true
	res, l := quicRound(t, tr, k)
	below := 0
	for _, r := range res {
		if r.Norm <= tr.Clip {
			below++
		}
	}
	cl, err := privacy.NewQuantileClipper(privacy.QuantileClipperConfig{InitialClip: tr.Clip, ExpectedClients: k})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Observe(below, k, nil); err != nil {
		t.Fatal(err)
	}
	if below == 0 || below == k {
		t.Errorf("%d of %d updates below the clip, want a mix", below, k)
	}
	l.View(func(s *coordinator.State) {
		r := committed(s)
		if r.Clip != tr.Clip || r.NextClip != cl.Clip() || s.Clip() != cl.Clip() {
			t.Errorf("round clip %v → %v, state %v; want %v → %v (%d of %d below)", r.Clip, r.NextClip, s.Clip(), tr.Clip, cl.Clip(), below, k)
		}
	})
	t.Logf("%d of %d updates below the clip; clip %v → %v", below, k, tr.Clip, cl.Clip())
}

// committed returns the round that produced model version 2 (a round
// before it may have been abandoned, say while the cluster settled).
func committed(s *coordinator.State) coordinator.RoundRecord {
	for _, r := range s.Rounds() {
		if r.NewModel == 2 {
			return r
		}
	}
	return coordinator.RoundRecord{}
}
