package coordinator

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// Failover scenarios in a testing/synctest bubble. hashicorp/raft over
// raft.InmemTransport with in-memory stores waits only on channels and
// timers, so the whole cluster runs on the bubble's fake clock: elections,
// heartbeats, leases and round deadlines take no real time and never fire
// early because a CI machine is slow. (A node on its bbolt log cannot run
// in a bubble: file I/O is not a durable block. TestFaultKillLeaderEachPhase
// covers disks.) Close must not hand leadership over in a bubble: raft v1.8.0's
// transfer goroutine outlives Shutdown, blocked on a channel for ever,
// which synctest reports as a deadlock; the scenarios crash their nodes.
//
// Each seed picks a fault: the leader is held in one phase of a round,
// then either crashes or is cut off by a partition that heals later. Every
// scenario checks: no committed round lost, at most one leader per term,
// the minority never commits, all nodes end with the same state.
// FEDREC_SYNCTEST_SEEDS sets how many seeds run (default 32).
func TestSynctestFailover(t *testing.T) {
	seeds := envInt(t, "FEDREC_SYNCTEST_SEEDS", 32)
	for seed := range uint64(seeds) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { failoverScenario(t, seed) })
		})
	}
}

func failoverScenario(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0xfa17))
	phases := []phase{phaseGathering, phaseSelected, phaseCollecting, phaseAggregating, phaseCommitting, phaseCommitted}
	p := phases[rng.IntN(len(phases))]
	partition := rng.IntN(2) == 0
	after := uint64(2 + rng.IntN(4))                           // version to reach before the fault
	cut := time.Duration(100+rng.IntN(900)) * time.Millisecond // how long a partition lasts
	fault := fmt.Sprintf("crash in %s after version %d", p, after)
	if partition {
		fault = fmt.Sprintf("partition of %v in %s after version %d", cut, p, after)
	}
	t.Log(fault)
	begin := time.Now()

	tr := testTraining()
	tr.RoundTimeout = time.Second
	hold := newPhaseHold()
	c := newTestClusterWith(t, 3, tr, func(i int, cfg *Config) {
		cfg.Seed = seed*8 + uint64(i) + 1
		cfg.onPhase = hold.hook(i)
	})
	// Cleanups run last first: this one runs before the nodes close.
	t.Cleanup(func() {
		hold.free()
		for _, n := range c.list() {
			n.crashed.Store(true)
		}
	})
	for i, n := range c.list() {
		hold.node(i, n)
	}
	c.pause = 20 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tw := watchTerms(c)
	crowdCtx, stop := context.WithCancel(ctx)
	wg := c.crowd(crowdCtx, 6)
	defer func() { stop(); wg.Wait() }()
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= after })

	l := c.holdLeader(ctx, hold, p)
	i := c.indexOf(l)
	var committed []RoundRecord
	l.View(func(s *State) {
		for _, r := range s.Rounds() {
			if r.Outcome == Committed {
				committed = append(committed, r)
			}
		}
	})
	last := committed[len(committed)-1].NewModel
	if partition {
		c.isolate(i)
		hold.free()
		time.Sleep(cut)
		if v := version(l); v > last {
			t.Errorf("the isolated leader committed version %d", v)
		}
		c.heal(i)
	} else {
		l.crashed.Store(true)
		c.trans[i].DisconnectAll()
		l.Close()
		// What it applied up to its death was committed too.
		committed = committed[:0]
		l.View(func(s *State) {
			for _, r := range s.Rounds() {
				if r.Outcome == Committed {
					committed = append(committed, r)
				}
			}
		})
	}
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= last+2 })
	for _, n := range c.live() {
		n.View(func(s *State) {
			for _, r := range committed {
				j, ok := slices.BinarySearchFunc(s.Rounds(), r.Round, func(x RoundRecord, id uint64) int { return cmp.Compare(x.Round, id) })
				if !ok || s.Rounds()[j] != r {
					t.Errorf("node %s lost committed round %d", n.ID(), r.Round)
				}
			}
		})
	}
	stop()
	wg.Wait()
	digest := c.converged(ctx)
	terms := tw.check(t)
	var rounds int
	c.live()[0].View(func(s *State) { rounds = len(s.Rounds()) })
	t.Logf("%v on the bubble's clock: %d terms with one leader each, %d rounds, state %s on every live node", time.Since(begin), terms, rounds, digest)
}
