package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// testCluster is a cluster over raft.InmemTransport with short timeouts.
type testCluster struct {
	t     *testing.T
	mu    sync.Mutex // guards nodes against restarts (fault tests)
	nodes []*Node
	trans []*raft.InmemTransport
	cfg   Training
	// pause is how long each client of crowd waits between rounds (a
	// synctest bubble's clock moves only when every goroutine waits).
	pause time.Duration
}

func newTestCluster(t *testing.T, size int, tr Training) *testCluster {
	t.Helper()
	return newTestClusterWith(t, size, tr, nil)
}

// newTestClusterWith is newTestCluster with each node's Config adjusted
// by opt (nil: none) before it starts.
func newTestClusterWith(t *testing.T, size int, tr Training, opt func(i int, cfg *Config)) *testCluster {
	t.Helper()
	c := startNodes(t, "raft-", size, tr, opt)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c.joinAll(ctx)
	c.waitAll(ctx, func(s *State) bool { return s.Current() != nil })
	return c
}

// startNodes starts size nodes over raft.InmemTransport, connected to each
// other, whose Raft addresses are prefix and their index: node n0
// bootstraps a cluster with tr, the others are not yet members. opt (nil:
// none) adjusts each node's Config before it starts. This is the package's
// one in-memory cluster: the QUIC, admin and backup tests start theirs
// with it too.
func startNodes(t *testing.T, prefix string, size int, tr Training, opt func(i int, cfg *Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, cfg: tr}
	for i := range size {
		addr, tt := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("%s%d", prefix, i)))
		for _, o := range c.trans {
			tt.Connect(o.LocalAddr(), o)
			o.Connect(addr, tt)
		}
		c.trans = append(c.trans, tt)
		cfg := Config{
			ID: fmt.Sprintf("n%d", i), InMemory: true, Transport: tt, AdvertiseClientAddr: fmt.Sprintf("client-%d", i),
			Bootstrap: i == 0, Training: tr, Seed: uint64(i + 1),
			Logger:           testLogger(t),
			HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
		}
		// The nodes' channel to each other, in memory like their Raft.
		cfg.call = c.call
		if opt != nil {
			opt(i, &cfg)
		}
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
		t.Cleanup(func() { n.Close() })
	}
	return c
}

// call is the in-memory channel between the cluster's nodes: req is
// handled by the node whose client address is addr, as from a node.
func (c *testCluster) call(ctx context.Context, addr string, req wire.Message) (wire.Message, error) {
	for _, n := range c.list() {
		if n.ClientAddr() != addr || n.closing.Load() {
			continue
		}
		var reply wire.Message
		err := n.Handle(ctx, req, Peer{Node: true}, func(m wire.Message) error {
			reply = m
			return nil
		})
		return reply, err
	}
	return nil, fmt.Errorf("node %s: not reachable", addr)
}

// joinAll adds every node but the first as a voter. On a loaded machine
// the founder can lose leadership while it adds one: joinAll then asks
// whoever leads next (Join is idempotent).
func (c *testCluster) joinAll(ctx context.Context) {
	c.t.Helper()
	for _, n := range c.nodes[1:] {
		for {
			err := c.leader(ctx).Join(n.ID(), n.RaftAddr(), n.ClientAddr(), "")
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				c.t.Fatalf("add %s: %v", n.ID(), err)
			}
			c.t.Logf("add %s: %v; retrying", n.ID(), err)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// leader waits for a node that runs rounds; it fails the test if none
// shows up before ctx ends.
func (c *testCluster) leader(ctx context.Context) *Node {
	c.t.Helper()
	l := c.findLeader(ctx)
	if l == nil {
		c.t.Fatal("no leader")
	}
	return l
}

// list returns the current nodes.
func (c *testCluster) list() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

func (c *testCluster) findLeader(ctx context.Context) *Node {
	for {
		for _, n := range c.list() {
			if !n.closing.Load() && n.leaderOrNil() != nil {
				return n
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (c *testCluster) live() []*Node {
	var out []*Node
	for _, n := range c.list() {
		if !n.closing.Load() {
			out = append(out, n)
		}
	}
	return out
}

func (c *testCluster) waitAll(ctx context.Context, cond func(s *State) bool) {
	c.t.Helper()
	for _, n := range c.live() {
		if err := n.WaitFor(ctx, cond); err != nil {
			c.t.Fatalf("node %s: %v", n.ID(), err)
		}
	}
}

// call runs one request through Handle and returns the replies.
func call(ctx context.Context, n *Node, req wire.Message) []wire.Message {
	var out []wire.Message
	n.Handle(ctx, req, Peer{}, func(m wire.Message) error {
		out = append(out, m)
		return nil
	})
	return out
}

// participate checks in at the leader and, if selected, uploads what
// makeDelta returns (nil: drop out). It returns the plan or nil.
func (c *testCluster) participate(ctx context.Context, id string, makeDelta func(p *wire.Plan) []float64) (*wire.Plan, wire.Message) {
	for ctx.Err() == nil {
		l := c.findLeader(ctx)
		if l == nil {
			return nil, nil
		}
		rep := call(ctx, l, &wire.CheckIn{Version: wire.Version, ClientID: id})
		p, ok := rep[0].(*wire.Plan)
		if !ok {
			continue
		}
		d := makeDelta(p)
		if d == nil {
			return p, nil
		}
		up := &wire.Upload{Version: wire.Version, Round: p.Round, ClientID: id, Ticket: p.Ticket, Model: p.Model, N: 1, Delta: d}
		return p, call(ctx, l, up)[0]
	}
	return nil, nil
}

// roundOfTwo starts a one-node cluster of tr whose rounds want exactly two
// clients, checks clients a and b in at once and returns the plans of the
// round it selects them for, in the order they arrive.
func roundOfTwo(t *testing.T, tr Training) (*testCluster, context.Context, *Node, *wire.Plan, *wire.Plan) {
	t.Helper()
	tr.ClientsPerRound, tr.OverSelect, tr.MinClients = 2, 0, 2
	tr.CheckInWindow = time.Hour // select only when both are here
	c := newTestCluster(t, 1, tr)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	l := c.leader(ctx)
	plans := make(chan *wire.Plan, 2)
	for _, id := range []string{"a", "b"} {
		go func() {
			p, _ := call(ctx, l, &wire.CheckIn{Version: wire.Version, ClientID: id})[0].(*wire.Plan)
			plans <- p
		}()
	}
	pa, pb := <-plans, <-plans
	if pa == nil || pb == nil {
		t.Fatal("not selected")
	}
	return c, ctx, l, pa, pb
}

func constDelta(dim int, x float64) []float64 {
	d := make([]float64, dim)
	for i := range d {
		d[i] = x
	}
	return d
}

func (c *testCluster) dim() int { return c.cfg.Items*(c.cfg.Rank+1) + 1 }

// crowd runs k clients that keep participating until ctx ends.
func (c *testCluster) crowd(ctx context.Context, k int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range k {
		wg.Go(func() {
			for ctx.Err() == nil {
				c.participate(ctx, fmt.Sprintf("c%d", i), func(p *wire.Plan) []float64 { return constDelta(c.dim(), 0.01) })
				if c.pause > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(c.pause):
					}
				}
			}
		})
	}
	return &wg
}

func TestClusterCommitsRounds(t *testing.T) {
	c := newTestCluster(t, 3, testTraining())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	crowdCtx, stop := context.WithCancel(ctx)
	wg := c.crowd(crowdCtx, 6)
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= 4 })
	stop()
	wg.Wait()
	// Every node holds the newest version with the same digest.
	var last uint64
	c.leader(ctx).View(func(s *State) { last = s.Current().Version })
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= last })
	var ref []byte
	for _, n := range c.nodes {
		n.View(func(s *State) {
			v := s.Model(last)
			if v == nil {
				t.Errorf("node %s lacks version %d", n.ID(), last)
				return
			}
			if ref == nil {
				ref = v.Digest[:]
			} else if string(ref) != string(v.Digest[:]) {
				t.Errorf("node %s: version %d digest differs", n.ID(), last)
			}
			for _, r := range s.Rounds() {
				if r.Outcome == Committed && (r.Survivors < c.cfg.MinClients || r.Survivors > r.Cohort) {
					t.Errorf("round %+v", r)
				}
			}
			if m, _ := s.Optimizer(); m == nil {
				t.Error("optimizer state not replicated")
			}
		})
	}
}

// Close on the leader hands leadership to another voter.
func TestLeadershipTransferOnClose(t *testing.T) {
	c := newTestCluster(t, 3, testTraining())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	old := c.leader(ctx)
	old.Close()
	n := c.leader(ctx)
	if n == old {
		t.Fatal("closed node still leads")
	}
}

// A follower's leader context ends when the leader changes: its lobby
// reports to a leader that died are cut off by the election, not left to
// their timeout, so the new leader's first cohort counts its devices.
func TestLeaderContextEndsOnChange(t *testing.T) {
	c := newTestCluster(t, 3, testTraining())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	old := c.leader(ctx)
	var follower *Node
	for _, n := range c.list() {
		if n != old {
			follower = n
			break
		}
	}
	term := follower.leaderContext()
	if term.Err() != nil {
		t.Fatalf("leader context ended before any change: %v", term.Err())
	}
	old.Close()
	select {
	case <-term.Done():
	case <-ctx.Done():
		t.Fatal("the follower's leader context outlived its leader")
	}
	if n := c.leader(ctx); n == old {
		t.Fatal("closed node still leads")
	}
}

// Every node serves devices: devices check in and upload at their own
// node, each node selects its share of the cohort, and the leader commits
// the sum of the nodes' partial sums. Every node serves committed models.
func TestEveryNodeServesDevices(t *testing.T) {
	tr := testTraining()
	tr.ClientsPerRound, tr.OverSelect, tr.MinClients = 6, 0, 6
	tr.CheckInWindow = time.Hour // select only when all six wait
	tr.RoundTimeout = time.Minute
	c := newTestCluster(t, 3, tr)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l := c.leader(ctx)
	nodes := c.list()
	type result struct {
		node  int
		plan  *wire.Plan
		reply wire.Message
	}
	results := make(chan result, 6)
	for i := range 6 {
		n := nodes[i%3]
		go func() {
			id := fmt.Sprintf("d%d", i)
			p, _ := call(ctx, n, &wire.CheckIn{Version: wire.Version, ClientID: id})[0].(*wire.Plan)
			if p == nil {
				results <- result{node: i % 3}
				return
			}
			up := &wire.Upload{Version: wire.Version, Round: p.Round, ClientID: id, Ticket: p.Ticket, Model: p.Model, N: 1, Delta: constDelta(c.dim(), 0.01)}
			results <- result{i % 3, p, call(ctx, n, up)[0]}
		}()
	}
	var round uint64
	for range 6 {
		r := <-results
		if r.plan == nil {
			t.Fatalf("a device of node %d was not selected", r.node)
		}
		if _, ok := r.reply.(*wire.UploadAck); !ok {
			t.Fatalf("upload at node %d: %+v", r.node, r.reply)
		}
		round = r.plan.Round
	}
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version == 2 })
	l.View(func(s *State) {
		rec := s.Rounds()[len(s.Rounds())-1]
		if rec.Round != round || rec.Outcome != Committed || rec.Survivors != 6 || rec.Cohort != 6 {
			t.Errorf("round record %+v, want round %d committed with 6 of 6", rec, round)
		}
	})
	for _, n := range nodes {
		rep := call(ctx, n, &wire.GetModel{Version: wire.Version})
		h, ok := decoded(t, rep[0]).(*wire.ModelHeader)
		if !ok || h.Model != 2 || len(rep) != 1+h.Chunks {
			t.Errorf("GetModel at %s = %v", n.ID(), rep)
		}
		rep = call(ctx, n, &wire.GetModel{Version: wire.Version, Model: 99})
		if e, ok := rep[0].(*wire.Error); !ok || e.Code != wire.CodeUnknownModel {
			t.Errorf("GetModel(99) at %s = %+v, want CodeUnknownModel", n.ID(), rep[0])
		}
	}
}

// Bad uploads get clear codes, the node keeps serving, and the committed
// state reflects only the good ones.
func TestBadUploads(t *testing.T) {
	c, ctx, l, pa, pb := roundOfTwo(t, testTraining())
	dim := c.dim()
	good := func(p *wire.Plan, id string) *wire.Upload {
		return &wire.Upload{Version: wire.Version, Round: p.Round, ClientID: id, Ticket: p.Ticket, Model: p.Model, N: 1, Delta: constDelta(dim, 0.01)}
	}
	idOf := func(p *wire.Plan) string {
		if string(p.Ticket) == string(pa.Ticket) {
			return "?" // fixed below
		}
		return "?"
	}
	_ = idOf
	// Tickets are per client; find whose is whose by trying.
	var ida, idb string
	for _, id := range []string{"a", "b"} {
		up := good(pa, id)
		up.Delta = constDelta(dim-1, 0) // wrong dimension: checked after the ticket
		if e := call(ctx, l, up)[0].(*wire.Error); e.Code == wire.CodeShape {
			ida = id
		}
	}
	idb = map[string]string{"a": "b", "b": "a"}[ida]
	if ida == "" {
		t.Fatal("no ticket matched")
	}
	var before []uint64
	l.View(func(s *State) { before = s.Versions() })

	stale := good(pa, ida)
	stale.Model++
	wrongRound := good(pa, ida)
	wrongRound.Round++
	stolen := good(pa, "mallory")
	swapped := good(pb, ida) // b's ticket, a's name
	tests := []struct {
		name string
		up   *wire.Upload
		code wire.Code
	}{
		{"wrong dimension", func() *wire.Upload { u := good(pa, ida); u.Delta = u.Delta[1:]; return u }(), wire.CodeShape},
		{"stale model", stale, wire.CodeStaleModel},
		{"round not open", wrongRound, wire.CodeNoRound},
		{"not selected", stolen, wire.CodeNotSelected},
		{"someone else's ticket", swapped, wire.CodeNotSelected},
	}
	for _, tc := range tests {
		rep := call(ctx, l, tc.up)
		if e, ok := rep[0].(*wire.Error); !ok || e.Code != tc.code {
			t.Errorf("%s: reply %+v, want code %v", tc.name, rep[0], tc.code)
		}
	}
	if rep := call(ctx, l, good(pa, ida)); rep[0].Type() != wire.TypeUploadAck {
		t.Fatalf("good upload: %+v", rep[0])
	}
	if e, ok := call(ctx, l, good(pa, ida))[0].(*wire.Error); !ok || e.Code != wire.CodeDuplicate {
		t.Errorf("second upload = %+v, want CodeDuplicate", e)
	}
	var mid []uint64
	l.View(func(s *State) { mid = s.Versions() })
	if !slices.Equal(before, mid) {
		t.Errorf("versions changed before the round ended: %v → %v", before, mid)
	}
	if rep := call(ctx, l, good(pb, idb)); rep[0].Type() != wire.TypeUploadAck {
		t.Fatalf("second good upload: %+v", rep[0])
	}
	if err := l.WaitFor(ctx, func(s *State) bool { return s.Current().Version == 2 }); err != nil {
		t.Fatal(err)
	}
	l.View(func(s *State) {
		r := s.Rounds()[len(s.Rounds())-1]
		if r.Survivors != 2 || r.Outcome != Committed {
			t.Errorf("round record %+v, want 2 survivors, committed", r)
		}
	})
	// After the round: an upload for it is refused, the node still serves.
	if e, ok := call(ctx, l, good(pa, ida))[0].(*wire.Error); !ok || e.Code != wire.CodeNoRound {
		t.Errorf("upload after commit = %+v, want CodeNoRound", e)
	}
	if _, ok := decoded(t, call(ctx, l, &wire.GetModel{Version: wire.Version})[0]).(*wire.ModelHeader); !ok {
		t.Error("node stopped serving models")
	}
}

// A round with fewer than MinClients survivors is abandoned, never
// committed.
func TestAbandonTooFewSurvivors(t *testing.T) {
	tr := testTraining()
	tr.ClientsPerRound, tr.OverSelect, tr.MinClients = 2, 0, 2
	tr.RoundTimeout = 200 * time.Millisecond
	c := newTestCluster(t, 1, tr)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { c.participate(ctx, "a", func(p *wire.Plan) []float64 { return constDelta(c.dim(), 0.01) }) })
	wg.Go(func() { c.participate(ctx, "b", func(p *wire.Plan) []float64 { return nil }) }) // drops out
	wg.Wait()
	l := c.leader(ctx)
	if err := l.WaitFor(ctx, func(s *State) bool { return len(s.Rounds()) == 1 }); err != nil {
		t.Fatal(err)
	}
	l.View(func(s *State) {
		r := s.Rounds()[0]
		if r.Outcome != Abandoned || r.Survivors != 1 || s.Current().Version != 1 || len(s.Ledger()) != 0 {
			t.Errorf("round %+v, current version %d, ledger %v; want abandoned with 1 survivor, version 1, empty ledger", r, s.Current().Version, s.Ledger())
		}
	})
}

// The leader dies mid-round: a new leader abandons the round, runs new
// ones, and nothing committed is lost.
func TestFailoverMidRound(t *testing.T) {
	tr := testTraining()
	tr.RoundTimeout = 3 * time.Second // ends rounds the stopped crowd leaves behind
	c := newTestCluster(t, 3, tr)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// Commit a couple of rounds first.
	crowdCtx, stop := context.WithCancel(ctx)
	wg := c.crowd(crowdCtx, 6)
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= 3 })
	stop()
	wg.Wait()
	old := c.leader(ctx)
	// Open a round in which nobody uploads.
	silentCtx, silence := context.WithCancel(ctx)
	var swg sync.WaitGroup
	silentRound := make(chan uint64, 100)
	for i := range 3 {
		swg.Go(func() {
			for silentCtx.Err() == nil {
				c.participate(silentCtx, fmt.Sprintf("s%d", i), func(p *wire.Plan) []float64 {
					select {
					case silentRound <- p.Round:
					default:
					}
					return nil
				})
			}
		})
	}
	// Wait for a round that only silent clients were selected for (a
	// round may also hold the last of the crowd, and end).
	var committed []uint64
	var openRound uint64
	for openRound == 0 {
		var r uint64
		select {
		case r = <-silentRound:
		case <-ctx.Done():
			t.Fatal("no silent round")
		}
		old.View(func(s *State) {
			if s.Open() != nil && s.Open().Round == r {
				committed, openRound = s.Versions(), r
			}
		})
	}
	silence()
	swg.Wait()
	old.crashed.Store(true) // dies without handing leadership over
	c.trans[slices.Index(c.nodes, old)].DisconnectAll()
	old.Close()

	crowdCtx, stop = context.WithCancel(ctx)
	wg = c.crowd(crowdCtx, 6)
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= committed[len(committed)-1]+2 })
	stop()
	wg.Wait()
	for _, n := range c.live() {
		n.View(func(s *State) {
			var abandoned bool
			for _, r := range s.Rounds() {
				if r.Round == openRound && r.Outcome == Abandoned && r.Reason == "leader change" {
					abandoned = true
				}
			}
			if !abandoned {
				t.Errorf("node %s: round %d not abandoned by the new leader: %+v", n.ID(), openRound, s.Rounds())
			}
			last := committed[len(committed)-1]
			if s.Model(last) == nil && s.Current().Version < last {
				t.Errorf("node %s lost version %d", n.ID(), last)
			}
		})
	}
}

// testLogger logs to stderr when FEDREC_TEST_LOG is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("FEDREC_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
}

// A node restarted on its data directory (raft.db log, file snapshots)
// comes back with everything it had committed, and keeps going.
func TestRestartFromDisk(t *testing.T) {
	dir := t.TempDir()
	tr := testTraining()
	open := func() (*Node, *raft.InmemTransport) {
		_, tt := raft.NewInmemTransport("raft-0")
		n, err := New(Config{
			ID: "n0", DataDir: dir, Transport: tt, AdvertiseClientAddr: "client-0", Bootstrap: true, Training: tr, Seed: 1,
			Logger: testLogger(t), HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		return n, tt
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	n, tt := open()
	c := &testCluster{t: t, nodes: []*Node{n}, trans: []*raft.InmemTransport{tt}, cfg: tr}
	crowdCtx, stop := context.WithCancel(ctx)
	wg := c.crowd(crowdCtx, 5)
	if err := n.WaitFor(ctx, func(s *State) bool { return s.Current() != nil && s.Current().Version >= 3 }); err != nil {
		t.Fatal(err)
	}
	stop()
	wg.Wait()
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	// One more round after the snapshot, so that restart replays the log
	// on top of the snapshot.
	crowdCtx, stop = context.WithCancel(ctx)
	wg = c.crowd(crowdCtx, 5)
	var want uint64
	n.View(func(s *State) { want = s.Current().Version + 1 })
	if err := n.WaitFor(ctx, func(s *State) bool { return s.Current().Version >= want }); err != nil {
		t.Fatal(err)
	}
	stop()
	wg.Wait()
	n.Close()

	n2, tt2 := open()
	defer n2.Close()
	c.nodes, c.trans = []*Node{n2}, []*raft.InmemTransport{tt2}
	// Wait until the log is replayed (the state stops changing once the
	// new term's barrier passed and rounds resume).
	if err := n2.WaitFor(ctx, func(s *State) bool { return s.Current() != nil && s.Current().Version >= want }); err != nil {
		t.Fatal(err)
	}
	n2.View(func(s *State) {
		for _, v := range []uint64{want - 1, want} {
			if s.Model(v) == nil {
				t.Errorf("version %d lost across the restart", v)
			}
		}
	})
	crowdCtx, stop = context.WithCancel(ctx)
	wg = c.crowd(crowdCtx, 5)
	defer func() { stop(); wg.Wait() }()
	if err := n2.WaitFor(ctx, func(s *State) bool { return s.Current().Version >= want+1 }); err != nil {
		t.Fatalf("no round after the restart: %v", err)
	}
}

// decoded turns an encoded frame back into its message.
func decoded(t *testing.T, m wire.Message) wire.Message {
	t.Helper()
	if f, ok := m.(*wire.Frame); ok {
		d, err := f.Message()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	return m
}
