package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/crowd"
	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/netfault"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// Clients behind a lossy, slow link (netfault: 20 % of datagrams lost
// and 200 ms added, each way): every selected client's upload is either
// acknowledged before the round's deadline or fails with a clear error (a
// deadline, or a wire code such as CodeNoRound), rounds still commit, and
// nothing leaks: once the nodes have closed, every goroutine the test
// started (participants, QUIC, the proxy) has ended.
func TestFaultLossyClients(t *testing.T) {
	// Registered first, run last: after the nodes' cleanups.
	leakOpts := []goleak.Option{goleak.IgnoreCurrent(),
		// See TestMain: raft's leadership transfer outlives Shutdown.
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*InmemTransport).makeRPC"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*Raft).leaderLoop.func2"),
	}
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpts...) })
	tr := training()
	tr.RoundTimeout = 6 * time.Second
	tr.CheckInWindow = 500 * time.Millisecond
	c := newQUICClusterWith(t, 1, tr)
	proxy, err := netfault.New("127.0.0.1:0", c.addrs[0], 1)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	lossy := netfault.Link{Loss: 0.2, Delay: 200 * time.Millisecond}
	proxy.Set(lossy)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const k = 4
	type outcome struct {
		round   uint64
		err     error
		elapsed time.Duration
		end     time.Time
	}
	var mu sync.Mutex
	var outcomes []outcome
	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	defer func() { stop(); wg.Wait() }()
	for i := range k {
		id := fmt.Sprintf("lossy%d", i)
		d, err := client.NewDialer([]string{proxy.Addr()}, c.device(t, id))
		if err != nil {
			t.Fatal(err)
		}
		p, err := crowd.NewParticipant(crowd.ParticipantConfig{
			ID: id, Ratings: ratings(rand.New(rand.NewPCG(uint64(i), 2)), 20, 8),
			Dialer: d, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer d.Close()
			for runCtx.Err() == nil {
				start := time.Now()
				res, err := p.RunRound(runCtx)
				if runCtx.Err() != nil {
					return
				}
				if !res.Selected {
					if err != nil {
						// Check-in failures (the handshake or the
						// request lost for good) are retried.
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				mu.Lock()
				outcomes = append(outcomes, outcome{round: res.Round, err: err, elapsed: time.Since(start), end: time.Now()})
				mu.Unlock()
			}
		})
	}
	// Two rounds commit through the lossy link; then, as soon as a round
	// opens, the link goes down from the clients to the leader only: the
	// cohort hears its plans (without loss, so that no plan comes a
	// retransmission late and stretches its client's deadline, which is
	// counted from its arrival) but can neither download nor upload. It
	// stays down for a while after the leader abandons the round: a
	// client still trying then must stop at its deadline, not when the
	// link returns. Then the link comes back (lossy) for one more round.
	n := c.nodes[0]
	err = n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current().Version >= 3 })
	var cut uint64
	if err == nil {
		err = n.WaitFor(ctx, func(s *coordinator.State) bool {
			if s.Open() != nil {
				cut = s.Open().Round
				return true
			}
			return false
		})
	}
	proxy.SetEach(netfault.Link{Down: true}, netfault.Link{Delay: lossy.Delay})
	if err == nil {
		err = n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Open() == nil || s.Open().Round != cut })
	}
	abandoned := time.Now()
	const downAfter = 4 * time.Second
	select {
	case <-ctx.Done():
	case <-time.After(downAfter):
	}
	proxy.Set(lossy)
	var after uint64
	n.View(func(s *coordinator.State) { after = s.Current().Version })
	if err == nil {
		err = n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current().Version > after })
	}
	stop()
	wg.Wait()
	if err != nil {
		t.Fatalf("rounds did not commit through the lossy link: %v", err)
	}
	var cutTimeouts int
	for _, o := range outcomes {
		if o.round == cut && o.err != nil {
			// The client's deadline is the plan's, counted from when
			// the plan arrived: one link delay after the leader's, which
			// abandoned the round at its own.
			if !errors.Is(o.err, context.DeadlineExceeded) {
				t.Errorf("round %d (link down): %v, want a deadline", cut, o.err)
			}
			if late := o.end.Sub(abandoned); late > downAfter/2 {
				t.Errorf("round %d (link down): the client gave up %v after the leader abandoned the round", cut, late.Round(time.Millisecond))
			}
			cutTimeouts++
		}
	}
	var ok, timedOut, coded int
	var slowest time.Duration
	for _, o := range outcomes {
		switch {
		case o.err == nil:
			ok++
		case errors.Is(o.err, context.DeadlineExceeded):
			timedOut++
		case wire.CodeOf(o.err) != 0:
			coded++
		default:
			t.Errorf("round %d: upload failed without a deadline or a wire code: %v", o.round, o.err)
		}
		// RunRound works under the plan's deadline (RoundTimeout after
		// selection): nothing may take much longer.
		if o.elapsed > tr.RoundTimeout+wire.MaxHold+5*time.Second {
			t.Errorf("round %d: the client took %v", o.round, o.elapsed)
		}
		slowest = max(slowest, o.elapsed)
	}
	st := proxy.Stats()
	t.Logf("link down in round %d: %d of its clients failed with a deadline", cut, cutTimeouts)
	t.Logf("%d selections: %d uploads acknowledged, %d timed out, %d refused with a code; slowest %v; %d datagrams forwarded, %d dropped (%.0f %%)",
		len(outcomes), ok, timedOut, coded, slowest.Round(time.Millisecond), st.Forwarded, st.Dropped, 100*float64(st.Dropped)/float64(st.Forwarded+st.Dropped))
	if ok == 0 {
		t.Error("no upload got through")
	}
	if cutTimeouts == 0 {
		t.Errorf("no client of round %d (link down) timed out", cut)
	}
}
