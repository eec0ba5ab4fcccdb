package coordinator_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/crowd"
	"github.com/fedrec/fedrec/coordinator"
)

// oneRound runs k participants over QUIC until each took part in one round
// and returns the parameters of model version 2.
func oneRound(t *testing.T, tr coordinator.Training, k int) []float64 {
	t.Helper()
	// One node: the comparison needs both runs to commit their first round,
	// and a two-node cluster on a loaded machine can lose its leader
	// mid-round and commit a later one, trained with other random draws.
	c := newQUICClusterWith(t, 1, tr)
	return roundOn(t, c, k, func(int) []string { return c.addrs })
}

// roundOn is oneRound on cluster c, device i dialing addrs(i).
func roundOn(t *testing.T, c *quicCluster, k int, addrs func(i int) []string) []float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cache := crowd.NewModelCache()
	var wg sync.WaitGroup
	errs := make([]error, k)
	for i := range k {
		d, err := client.NewDialer(addrs(i), c.device(t, fmt.Sprintf("u%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		p, err := crowd.NewParticipant(crowd.ParticipantConfig{
			ID: fmt.Sprintf("u%d", i), Ratings: ratings(rand.New(rand.NewPCG(uint64(i), 1)), 20, 8),
			Dialer: d, Models: cache, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer d.Close()
			for ctx.Err() == nil {
				res, err := p.RunRound(ctx)
				if err == nil && res.Selected {
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
	var params []float64
	l.View(func(s *coordinator.State) {
		r := s.Rounds()[0]
		if r.Outcome != coordinator.Committed || r.Survivors != k {
			t.Errorf("round %+v, want committed with %d survivors", r, k)
		}
		params = s.Model(2).Model.Params
	})
	return params
}

// A secure round over QUIC commits the model the plaintext round commits
// on the same updates, up to fixed-point rounding.
func TestQUICSecureRoundMatchesPlaintext(t *testing.T) {
	const k = 5
	tr := training()
	tr.ClientsPerRound, tr.OverSelect, tr.MinClients, tr.Clip = k, 0, 3, 1
	tr.CheckInWindow = 5 * time.Second // select when all k have checked in
	plain := oneRound(t, tr, k)
	tr.SecAgg, tr.SecAggPhase = true, 2*time.Second
	secure := oneRound(t, tr, k)
	matchPlaintext(t, secure, plain)
}

// matchPlaintext checks that the secure round's model is the plaintext
// round's up to fixed-point rounding.
func matchPlaintext(t *testing.T, secure, plain []float64) {
	t.Helper()
	if len(plain) != len(secure) {
		t.Fatalf("%d params, want %d", len(secure), len(plain))
	}
	var worst float64
	for i := range plain {
		// The fixed-point step is about 2e-9 here; the server optimizer
		// (FedAdam) amplifies it near zero by up to LR·(1-β1)/τ = 10.
		d := math.Abs(secure[i]-plain[i]) / max(1, math.Abs(plain[i]))
		worst = max(worst, d)
		if d > 1e-6 {
			t.Fatalf("param %d = %v with secagg, %v in plaintext", i, secure[i], plain[i])
		}
	}
	t.Logf("largest relative difference %.3g", worst)
}

// A secure round whose devices check in at three nodes over QUIC: each
// node runs SecAgg+ over its own group and the leader adds the groups'
// sums, committing the model a one-node plaintext round commits on the
// same updates, up to fixed-point rounding.
func TestQUICSecureRoundOnEveryNode(t *testing.T) {
	const k = 9
	tr := training()
	tr.ClientsPerRound, tr.OverSelect, tr.MinClients, tr.Clip = k, 0, 3, 1
	tr.CheckInWindow = 10 * time.Second // select when all k have checked in
	plain := oneRound(t, tr, k)
	tr.SecAgg, tr.SecAggPhase = true, 2*time.Second
	// Raft timeouts that outlast a loaded machine's pauses: a new leader
	// would abandon the round, and the next trains other random draws.
	c := newQUICClusterConf(t, 3, tr, steadyRaft)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	groups := make(chan int, 1)
	l := c.leader(t, ctx)
	go func() {
		var g int
		l.WaitFor(ctx, func(s *coordinator.State) bool {
			if o := s.Open(); o != nil {
				g = len(o.Groups)
				return true
			}
			return false
		})
		groups <- g
	}()
	secure := roundOn(t, c, k, func(i int) []string { return c.addrs[i%3 : i%3+1] })
	if g := <-groups; g < 2 {
		t.Errorf("the round had %d groups, want one per node with devices", g)
	}
	matchPlaintext(t, secure, plain)
}

// steadyRaft sets Raft timeouts that outlast a loaded machine's pauses,
// for tests in which a change of leader (which abandons the round) would
// spoil the outcome.
func steadyRaft(cfg *coordinator.Config) {
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
}
