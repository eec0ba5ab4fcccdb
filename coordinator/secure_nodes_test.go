package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// newSteadyCluster is a three-node cluster whose Raft timeouts outlast a
// loaded machine's pauses: nine devices' key agreement under the race
// detector, or one follower gone (the leader then keeps its lease only
// through the other), must not elect another leader, which abandons the
// round.
func newSteadyCluster(t *testing.T, tr Training) *testCluster {
	return newTestClusterWith(t, 3, tr, func(_ int, cfg *Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
	})
}

// secureSpread runs a secure round of devices s0..s{n-1} on a three-node
// cluster, device i checking in at node i%3 and dropping out after
// last(i). It returns every device's plan and error, in device order.
func secureSpread(t *testing.T, c *testCluster, n int, input func(i int) []float64, last func(i int) secagg.Phase) ([]*wire.Plan, []error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	c.leader(ctx)
	nodes := c.list()
	plans := make([]*wire.Plan, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			plans[i], _, errs[i] = secureParticipateAt(ctx, nodes[i%3], fmt.Sprintf("s%d", i), input(i), last(i))
		})
	}
	wg.Wait()
	return plans, errs
}

// checkGroupPlans checks that every device's plan carries the secure
// aggregation of its node's group of size: the node's id bound into the
// params, the device's index in the group, and the whole cohort's size.
func checkGroupPlans(t *testing.T, c *testCluster, plans []*wire.Plan, size, cohort int) {
	t.Helper()
	nodes := c.list()
	for i, p := range plans {
		if p == nil {
			t.Fatalf("device s%d has no plan", i)
		}
		sp := p.SecAgg
		if sp == nil || sp.Group != nodes[i%3].ID() || sp.Clients != size || sp.Cohort != cohort || int(p.SecAggID) >= size {
			t.Errorf("device s%d at node %s: secagg %+v, id %d; want the node's group of %d in a cohort of %d", i, nodes[i%3].ID(), sp, p.SecAggID, size, cohort)
		}
	}
}

// checkMean checks that the committed model is one server step with the
// plaintext mean of the inputs of the devices survived.
func checkMean(t *testing.T, c *testCluster, input func(i int) []float64, survived []int) {
	t.Helper()
	dim := c.dim()
	mean := make([]float64, dim)
	for _, i := range survived {
		for j, x := range input(i) {
			mean[j] += x / float64(len(survived))
		}
	}
	want := expectStep(t, c, mean)
	c.leader(t.Context()).View(func(s *State) {
		got := s.Current().Model.Params
		for j := range want {
			if math.Abs(got[j]-want[j]) > 1e-6*(1+math.Abs(want[j])) {
				t.Fatalf("param %d = %v, want %v (plaintext mean)", j, got[j], want[j])
			}
		}
	})
}

// lastRound returns the leader's record of the last round, once there is
// one.
func lastRound(t *testing.T, c *testCluster) RoundRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l := c.leader(ctx)
	if err := l.WaitFor(ctx, func(s *State) bool { return len(s.Rounds()) >= 1 }); err != nil {
		t.Fatal(err)
	}
	var r RoundRecord
	l.View(func(s *State) { r = s.Rounds()[len(s.Rounds())-1] })
	return r
}

// Every node runs secure aggregation over its own group: devices check
// in at all three nodes, each node's group of three runs SecAgg+ with the
// parameters the manifest commits for it, and the leader commits the
// plaintext mean up to fixed-point rounding.
func TestSecureEveryNodeServesDevices(t *testing.T) {
	const n = 9
	tr := secureTraining(n)
	tr.CheckInWindow = time.Hour // select only when all nine wait
	c := newSteadyCluster(t, tr)
	input := sinInput(c.dim())
	plans, errs := secureSpread(t, c, n, input, func(int) secagg.Phase { return secagg.PhaseUnmask })
	for i, err := range errs {
		if err != nil {
			t.Fatalf("device s%d: %v", i, err)
		}
	}
	checkGroupPlans(t, c, plans, 3, n)
	if r := lastRound(t, c); r.Outcome != Committed || r.Survivors != n || r.Cohort != n {
		t.Fatalf("round %+v, want committed with %d of %d", r, n, n)
	}
	// Each node counts its own group's masked inputs as its updates.
	for _, node := range c.nodes {
		if got := testutil.ToFloat64(node.metrics.uploads); got != 3 {
			t.Errorf("node %s counted %v updates, want its group's 3", node.ID(), got)
		}
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	checkMean(t, c, input, all)
}

// A follower that dies once its group's plans are out loses only its
// group: the other groups' sums commit.
func TestSecureNodeDiesMidRound(t *testing.T) {
	const n = 9
	tr := secureTraining(n)
	tr.CheckInWindow = time.Hour
	// The dead node's sum never comes: the leader waits for it until the
	// round's deadline, which the other groups' devices beat by far.
	tr.RoundTimeout = 5 * time.Second
	c := newSteadyCluster(t, tr)
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	l := c.leader(ctx)
	nodes := c.list()
	victim := slices.IndexFunc(nodes, func(x *Node) bool { return x != l })
	input := sinInput(c.dim())
	var wg sync.WaitGroup
	errs := make([]error, n)
	planned := make(chan struct{}, n)
	for i := range n {
		if i%3 == victim {
			// The victim's devices take their plans, then their node dies.
			wg.Go(func() {
				for ctx.Err() == nil {
					if _, ok := call(ctx, nodes[victim], &wire.CheckIn{Version: wire.Version, ClientID: fmt.Sprintf("s%d", i)})[0].(*wire.Plan); ok {
						planned <- struct{}{}
						return
					}
				}
			})
			continue
		}
		wg.Go(func() {
			_, _, errs[i] = secureParticipateAt(ctx, nodes[i%3], fmt.Sprintf("s%d", i), input(i), secagg.PhaseUnmask)
		})
	}
	for range n / 3 {
		select {
		case <-planned:
		case <-ctx.Done():
			t.Fatal("the victim's devices got no plans")
		}
	}
	v := nodes[victim]
	v.crashed.Store(true)
	c.trans[slices.Index(c.nodes, v)].DisconnectAll()
	v.Close()
	wg.Wait()
	var survived []int
	for i, err := range errs {
		if i%3 == victim {
			continue
		}
		if err != nil {
			t.Fatalf("device s%d: %v", i, err)
		}
		survived = append(survived, i)
	}
	if r := lastRound(t, c); r.Outcome != Committed || r.Survivors != len(survived) || r.Cohort != n {
		t.Fatalf("round %+v, want committed with %d of %d", r, len(survived), n)
	}
	checkMean(t, c, input, survived)
}

// A signed secure round on three nodes: each group's graph seed binds its
// node and its members, each device's plan lists its group, and the
// leader commits the plaintext mean of the groups' sums.
func TestSignedSecureEveryNodeServesDevices(t *testing.T) {
	const n, colluders = 9, 0
	tr := signedTraining(n, colluders)
	tr.CheckInWindow = time.Hour
	c := newSteadyCluster(t, tr)
	d := newDevices(t, deviceIDs(n)...)
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	c.leader(ctx)
	nodes := c.list()
	input := sinInput(c.dim())
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = signedParticipateAt(ctx, nodes[i%3], d, fmt.Sprintf("s%d", i), colluders, input(i), secagg.PhaseUnmask)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("device s%d: %v", i, err)
		}
	}
	if r := lastRound(t, c); r.Outcome != Committed || r.Survivors != n {
		t.Fatalf("round %+v, want committed with %d", r, n)
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	checkMean(t, c, input, all)
}

// In a secure cluster every node takes check-ins: a follower whose
// devices make a group holds them and sends them plans for its own group;
// the devices of a node with too few for a group are sent to the node with
// the most (a NotLeader naming it, which devices follow).
func TestSecureFollowerHints(t *testing.T) {
	c := newTestCluster(t, 3, secureTraining(3))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	l := c.leader(ctx)
	var followers []*Node
	for _, n := range c.list() {
		if n != l {
			followers = append(followers, n)
		}
	}
	big, small := followers[0], followers[1]
	plans := make(chan *wire.Plan, 3)
	var wg sync.WaitGroup
	checkIn := func(n *Node, id string) {
		for ctx.Err() == nil {
			switch m := call(ctx, n, &wire.CheckIn{Version: wire.Version, ClientID: id})[0].(type) {
			case *wire.Plan:
				plans <- m
				return
			case *wire.Error:
				if m.Code != wire.CodeNotLeader || m.Leader != big.ClientAddr() {
					t.Errorf("CheckIn of %s at %s = %+v, want held, or sent to %s", id, n.ID(), m, big.ClientAddr())
					return
				}
				n = big // follow the hint, as devices do
			}
		}
	}
	wg.Go(func() { checkIn(big, "a") })
	wg.Go(func() { checkIn(big, "b") })
	// Wait for the leader to know of the two, so that the third is sent
	// to them.
	for {
		if ld := l.lead.Load(); ld != nil {
			if counts, _, _ := ld.counts(); counts[big.ID()] == 2 {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatal("the leader never learnt of the two devices")
		}
		time.Sleep(10 * time.Millisecond)
	}
	wg.Go(func() { checkIn(small, "c") })
	wg.Wait()
	close(plans)
	k := 0
	for p := range plans {
		k++
		if p.SecAgg == nil || p.SecAgg.Group != big.ID() || p.SecAgg.Clients != 3 {
			t.Errorf("plan secagg %+v, want the group of %s", p.SecAgg, big.ID())
		}
	}
	if k != 3 {
		t.Errorf("%d plans, want 3", k)
	}
}

// A group too small for secure aggregation gets none: the leader sends
// the devices of a node with fewer than Training.MinGroup waiting to the
// node with the most, and selects only groups of at least minGroup.
func TestGroupQuotas(t *testing.T) {
	for _, tc := range []struct {
		name   string
		want   int
		counts map[string]int
		out    map[string]int
	}{
		{"even", 9, map[string]int{"a": 3, "b": 3, "c": 3}, map[string]int{"a": 3, "b": 3, "c": 3}},
		{"small lobby left out", 9, map[string]int{"a": 5, "b": 5, "c": 2}, map[string]int{"a": 5, "b": 4}},
		{"small quota left out", 10, map[string]int{"a": 40, "b": 40, "c": 4}, map[string]int{"a": 5, "b": 5}},
		{"none big enough", 6, map[string]int{"a": 2, "b": 2}, map[string]int{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := groupQuotas(tc.want, tc.counts, 3)
			for id, q := range got {
				if q != tc.out[id] {
					t.Errorf("groupQuotas(%d, %v) = %v, want %v", tc.want, tc.counts, got, tc.out)
					break
				}
			}
			for id, q := range tc.out {
				if got[id] != q {
					t.Errorf("groupQuotas(%d, %v) = %v, want %v", tc.want, tc.counts, got, tc.out)
					break
				}
			}
		})
	}
}

// Every group of at least Training.MinGroup members gets valid SecAgg+
// parameters: a threshold below its size, resisting the colluders of a
// signed round, seeds bound to its node and, signed, its members.
func TestGroupSecAggParams(t *testing.T) {
	digest := make([]byte, 32)
	for _, colluders := range []int{-1, 0, 1, 3} {
		tr := secureTraining(100)
		if colluders >= 0 {
			tr = signedTraining(100, colluders)
			tr.MinClients = max(3, colluders+3)
		}
		tr = tr.WithDefaults()
		for g := tr.MinGroup(); g <= 60; g++ {
			ids := deviceIDs(g)
			p := groupSecAggParams(tr, 4, digest, "n1", ids, 100, 1)
			if err := p.Validate(); err != nil {
				t.Fatalf("colluders %d, group of %d: %+v: %v", colluders, g, p, err)
			}
			if colluders >= 0 {
				if err := p.Config(4, 8).CheckActive(colluders); err != nil {
					t.Errorf("colluders %d, group of %d: %v", colluders, g, err)
				}
			}
			graph, _ := p.WantSeeds(4, digest, ids)
			other := *p
			other.Group = "n2"
			graph2, _ := other.WantSeeds(4, digest, ids)
			if string(p.Seed) != string(graph[:]) || graph == graph2 {
				t.Errorf("colluders %d, group of %d: the graph seed does not bind the node", colluders, g)
			}
			if colluders >= 0 {
				swapped := slices.Clone(ids)
				swapped[0], swapped[1] = swapped[1], swapped[0]
				if g3, _ := p.WantSeeds(4, digest, swapped); g3 == graph {
					t.Errorf("colluders %d, group of %d: the graph seed ignores the members", colluders, g)
				}
			}
		}
	}
}

// A secure manifest is applied only if every group carries its own secure
// aggregation, of its size, with the round's settings and the seeds that
// the round, the model and the group determine.
func TestOpenRoundGroupSecAgg(t *testing.T) {
	tr := secureTraining(6).WithDefaults()
	cohort := deviceIDs(6)
	manifest := func(s *State) *wire.OpenRound {
		cur := s.Current()
		o := &wire.OpenRound{Round: 1, Model: cur.Version, Digest: cur.Digest[:], Cohort: cohort, Clip: 1, Leader: "n0",
			SecAgg: secAggParams(tr, 1, cur.Digest[:], cohort, 1)}
		for i, node := range []string{"n0", "n1"} {
			ids := cohort[3*i : 3*i+3]
			o.Groups = append(o.Groups, wire.RoundGroup{Node: node, Size: 3, Want: 3, SecAgg: groupSecAggParams(tr, 1, cur.Digest[:], node, ids, 6, 1)})
		}
		return o
	}
	for _, tc := range []struct {
		name string
		edit func(o *wire.OpenRound)
		ok   bool
	}{
		{"valid", func(*wire.OpenRound) {}, true},
		{"seed of another node", func(o *wire.OpenRound) { o.Groups[1].SecAgg.Seed = o.Groups[0].SecAgg.Seed }, false},
		{"rotation of its own", func(o *wire.OpenRound) { o.Groups[1].SecAgg.RotationSeed = make([]byte, 32) }, false},
		{"params of another group", func(o *wire.OpenRound) { o.Groups[1].SecAgg = o.Groups[0].SecAgg }, false},
		{"other clip", func(o *wire.OpenRound) { o.Groups[0].SecAgg.Clip = 2 }, false},
		{"whole cohort's size", func(o *wire.OpenRound) { o.Groups[0].SecAgg.Clients = 6 }, false},
		{"no group params", func(o *wire.OpenRound) { o.Groups[0].SecAgg = nil }, false},
		{"group params in a plaintext round", func(o *wire.OpenRound) { o.SecAgg = nil }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFSM()
			for i, c := range initCommands(t, tr) {
				fsmApply(t, f, uint64(i+1), c)
			}
			o := manifest(f.State())
			tc.edit(o)
			res := fsmApply(t, f, 3, o)
			err, _ := res.(error)
			if tc.ok != (err == nil) || !tc.ok && !errors.Is(err, ErrBadCommand) {
				t.Errorf("Apply = %v, want ok %v (or ErrBadCommand)", res, tc.ok)
			}
		})
	}
}

// A group whose secure aggregation aborts (too few of its devices
// survive) contributes nothing, at once: its node sends an empty sum, and
// the leader commits the other groups' when they reach the round's
// minimum, without waiting for the deadline.
func TestSecureGroupAborts(t *testing.T) {
	const n = 9
	tr := secureTraining(n)
	tr.CheckInWindow = time.Hour
	tr.RoundTimeout = time.Minute // the round must not wait for it
	c := newSteadyCluster(t, tr)
	input := sinInput(c.dim())
	// Two of node 1's three devices drop after advertising their keys:
	// its group of three, threshold 2, aborts.
	last := func(i int) secagg.Phase {
		if i%3 == 1 && i != 1 {
			return secagg.PhaseAdvertiseKeys
		}
		return secagg.PhaseUnmask
	}
	start := time.Now()
	_, errs := secureSpread(t, c, n, input, last)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("device s%d: %v", i, err)
		}
	}
	r := lastRound(t, c)
	var survived []int
	for i := range n {
		if i%3 != 1 {
			survived = append(survived, i)
		}
	}
	if r.Outcome != Committed || r.Survivors != len(survived) || r.Cohort != n {
		t.Fatalf("round %+v, want committed with %d of %d", r, len(survived), n)
	}
	if d := time.Since(start); d > tr.RoundTimeout {
		t.Errorf("the round took %v, past its deadline: the leader waited for the aborted group", d)
	}
	checkMean(t, c, input, survived)
}
