package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// Fault tests over raft.InmemTransport: a partition that isolates the
// leader, a disk that fails or fills, a follower that catches up by
// snapshot, and the leader crashing in each phase of a round.

// faultyLog is a raft.LogStore whose writes fail on demand: a disk that
// fails (EIO) or fills (ENOSPC). Reads keep working.
type faultyLog struct {
	raft.LogStore
	err     atomic.Pointer[error]
	refused atomic.Int64 // writes refused
}

// fail makes every write fail with err; nil heals the disk.
func (f *faultyLog) fail(err error) {
	if err == nil {
		f.err.Store(nil)
		return
	}
	f.err.Store(&err)
}

func (f *faultyLog) check() error {
	if p := f.err.Load(); p != nil {
		f.refused.Add(1)
		return *p
	}
	return nil
}

func (f *faultyLog) StoreLog(l *raft.Log) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.LogStore.StoreLog(l)
}

func (f *faultyLog) StoreLogs(ls []*raft.Log) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.LogStore.StoreLogs(ls)
}

func (f *faultyLog) DeleteRange(lo, hi uint64) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.LogStore.DeleteRange(lo, hi)
}

// IsMonotonic forwards raft.MonotonicLogStore, if the wrapped store is one.
func (f *faultyLog) IsMonotonic() bool {
	m, ok := f.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// isolate cuts node i off from every other node, both ways.
func (c *testCluster) isolate(i int) {
	c.trans[i].DisconnectAll()
	for j, o := range c.trans {
		if j != i {
			o.Disconnect(c.trans[i].LocalAddr())
		}
	}
}

// heal reconnects node i to every other node.
func (c *testCluster) heal(i int) {
	for j, o := range c.trans {
		if j != i {
			o.Connect(c.trans[i].LocalAddr(), c.trans[i])
			c.trans[i].Connect(o.LocalAddr(), o)
		}
	}
}

// converged waits until every live node holds the same replicated state
// with no round open (stop the clients first: an open round ends at its
// deadline) and returns the nodes' common digest.
func (c *testCluster) converged(ctx context.Context) string {
	c.t.Helper()
	for {
		var ds []string
		open := false
		for _, n := range c.live() {
			d, _ := n.StateDigest()
			ds = append(ds, string(d[:]))
			n.View(func(s *State) { open = open || s.Open() != nil })
		}
		if !open && len(slices.Compact(slices.Clone(ds))) == 1 {
			return fmt.Sprintf("%x", ds[0][:8])
		}
		select {
		case <-ctx.Done():
			slices.Sort(ds)
			c.t.Fatalf("the nodes' states did not converge (open round %v, %d distinct digests)", open, len(slices.Compact(ds)))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// termWatch samples every node's Raft state and term and records who led
// in each term, to check that no term ever has two leaders.
type termWatch struct {
	mu      sync.Mutex
	leaders map[uint64][]string
	samples int
	stop    func()
}

func watchTerms(c *testCluster) *termWatch {
	w := &termWatch{leaders: map[uint64][]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			for _, n := range c.list() {
				t1 := n.raft.CurrentTerm()
				st := n.raft.State()
				if t2 := n.raft.CurrentTerm(); st == raft.Leader && t1 == t2 {
					w.mu.Lock()
					if !slices.Contains(w.leaders[t1], n.ID()) {
						w.leaders[t1] = append(w.leaders[t1], n.ID())
					}
					w.mu.Unlock()
				}
			}
			w.mu.Lock()
			w.samples++
			w.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	})
	w.stop = func() { cancel(); wg.Wait() }
	return w
}

// check stops the watch and fails t if a term had two leaders. It returns
// the number of terms that had a leader.
func (w *termWatch) check(t *testing.T) int {
	t.Helper()
	w.stop()
	for term, ids := range w.leaders {
		if len(ids) > 1 {
			t.Errorf("term %d had %d leaders: %v", term, len(ids), ids)
		}
	}
	return len(w.leaders)
}

func (c *testCluster) indexOf(n *Node) int { return slices.Index(c.list(), n) }

func version(n *Node) (v uint64) {
	n.View(func(s *State) { v = s.Current().Version })
	return v
}

// A partition isolates the leader: the isolated minority refuses to
// commit (an entry it appends never reaches any state), the majority
// elects one leader and goes on, no term ever has two leaders, and once
// the partition heals every node holds the same state.
func TestFaultPartitionIsolatesLeader(t *testing.T) {
	tr := testTraining()
	tr.RoundTimeout = time.Second
	c := newTestCluster(t, 3, tr)
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	tw := watchTerms(c)
	crowdCtx, stop := context.WithCancel(ctx)
	wg := c.crowd(crowdCtx, 6)
	defer func() { stop(); wg.Wait() }()
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= 2 })

	old := c.leader(ctx)
	i := c.indexOf(old)
	c.isolate(i)
	cut := time.Now()
	ghost, _ := wire.EncodeCommand(&wire.RegisterNode{ID: "ghost", ClientAddr: "nowhere:1"})
	if err := old.raft.Apply(ghost, time.Second).Error(); err == nil {
		t.Fatal("the isolated leader committed an entry")
	}
	oldCommit, oldVersion := old.raft.CommitIndex(), version(old)

	// The majority elects a leader and commits two more rounds.
	var majority []*Node
	for _, n := range c.list() {
		if n != old {
			majority = append(majority, n)
		}
	}
	var failover time.Duration
	for failover == 0 {
		for _, n := range majority {
			if n.IsLeader() {
				failover = time.Since(cut)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("the majority elected no leader")
		case <-time.After(5 * time.Millisecond):
		}
	}
	target := oldVersion + 2
	for _, n := range majority {
		if err := n.WaitFor(ctx, func(s *State) bool { return s.Current().Version >= target }); err != nil {
			t.Fatalf("majority node %s: %v", n.ID(), err)
		}
	}
	if got := old.raft.CommitIndex(); got != oldCommit || version(old) != oldVersion {
		t.Errorf("isolated node's commit index %d → %d, version %d → %d: the minority committed", oldCommit, got, oldVersion, version(old))
	}
	if old.IsLeader() {
		t.Error("the isolated node still believes it leads")
	}
	// Its round loop has stopped: it holds no client in a round that
	// cannot commit.
	for old.lead.Load() != nil {
		select {
		case <-ctx.Done():
			t.Fatal("the isolated node still runs rounds")
		case <-time.After(5 * time.Millisecond):
		}
	}

	c.heal(i)
	if err := old.WaitFor(ctx, func(s *State) bool { return s.Current().Version >= target }); err != nil {
		t.Fatalf("the healed node did not catch up: %v", err)
	}
	stop()
	wg.Wait()
	digest := c.converged(ctx)
	for _, n := range c.list() {
		n.View(func(s *State) {
			if s.NodeAddr("ghost") != "" {
				t.Errorf("node %s applied the isolated leader's entry", n.ID())
			}
		})
	}
	terms := tw.check(t)
	t.Logf("new leader %.0f ms after the partition; %d terms with a leader, each with one; state %s on all nodes", failover.Seconds()*1000, terms, digest)
}

// A disk that fills (a follower's) or fails (the leader's): the node
// stops acknowledging entries rather than diverging, the other two keep
// committing, and once the disk works again the node catches up.
func TestFaultDiskFailsOrFills(t *testing.T) {
	tr := testTraining()
	tr.RoundTimeout = time.Second
	logs := make([]*faultyLog, 3)
	c := newTestClusterWith(t, 3, tr, func(i int, cfg *Config) {
		cfg.WrapLogStore = func(s raft.LogStore) raft.LogStore {
			logs[i] = &faultyLog{LogStore: s}
			return logs[i]
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	tw := watchTerms(c)
	crowdCtx, stop := context.WithCancel(ctx)
	wg := c.crowd(crowdCtx, 6)
	defer func() { stop(); wg.Wait() }()

	for _, tc := range []struct {
		name   string
		leader bool
		err    error
	}{
		{"follower's disk fills", false, syscall.ENOSPC},
		{"leader's disk fails", true, syscall.EIO},
	} {
		l := c.leader(ctx)
		bad := l
		if !tc.leader {
			bad = c.list()[(c.indexOf(l)+1)%3]
		}
		i := c.indexOf(bad)
		start := version(l)
		logs[i].fail(tc.err)
		var good []*Node
		for _, n := range c.list() {
			if n != bad {
				good = append(good, n)
			}
		}
		for _, n := range good {
			if err := n.WaitFor(ctx, func(s *State) bool { return s.Current().Version >= start+2 }); err != nil {
				t.Fatalf("%s: healthy node %s stopped committing: %v", tc.name, n.ID(), err)
			}
		}
		// The faulty node holds a prefix of the healthy nodes' history.
		var badRounds []RoundRecord
		var badLedger []LedgerEntry
		var badVersion uint64
		bad.View(func(s *State) {
			badRounds, badLedger, badVersion = slices.Clone(s.Rounds()), slices.Clone(s.Ledger()), s.Current().Version
		})
		good[0].View(func(s *State) {
			if len(badRounds) > len(s.Rounds()) || !slices.Equal(badRounds, s.Rounds()[:len(badRounds)]) {
				t.Errorf("%s: faulty node's round history is not a prefix of the healthy nodes'", tc.name)
			}
			if len(badLedger) > len(s.Ledger()) || !slices.Equal(badLedger, s.Ledger()[:len(badLedger)]) {
				t.Errorf("%s: faulty node's ledger is not a prefix of the healthy nodes'", tc.name)
			}
		})
		if bad.IsLeader() {
			t.Errorf("%s: the node whose disk fails still leads", tc.name)
		}
		for logs[i].refused.Load() == 0 {
			select {
			case <-ctx.Done():
				t.Fatalf("%s: the disk fault was never hit", tc.name)
			case <-time.After(10 * time.Millisecond):
			}
		}
		t.Logf("%s: healthy nodes went from version %d to %d, the faulty node stayed at %d (%d writes refused)",
			tc.name, start, version(good[0]), badVersion, logs[i].refused.Load())

		logs[i].fail(nil)
		want := version(good[0])
		if err := bad.WaitFor(ctx, func(s *State) bool { return s.Current().Version >= want }); err != nil {
			t.Fatalf("%s: the node did not recover: %v", tc.name, err)
		}
	}
	stop()
	wg.Wait()
	digest := c.converged(ctx)
	terms := tw.check(t)
	t.Logf("state %s on all nodes; %d terms, one leader each", digest, terms)
}

// A follower cut off while the leader compacts its log past the
// follower's last entry catches up by installing the leader's snapshot.
func TestFaultFollowerCatchesUpBySnapshot(t *testing.T) {
	tr := testTraining()
	tr.RoundTimeout = time.Second
	stores := make([]raft.LogStore, 3)
	c := newTestClusterWith(t, 3, tr, func(i int, cfg *Config) {
		cfg.SnapshotThreshold, cfg.TrailingLogs = 4, 2
		cfg.WrapLogStore = func(s raft.LogStore) raft.LogStore { stores[i] = s; return s }
	})
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	crowdCtx, stop := context.WithCancel(ctx)
	wg := c.crowd(crowdCtx, 6)
	defer func() { stop(); wg.Wait() }()
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= 2 })

	l := c.leader(ctx)
	f := c.list()[(c.indexOf(l)+1)%3]
	j := c.indexOf(f)
	c.isolate(j)
	behind := f.raft.LastIndex()
	start := version(f)
	for _, n := range c.list() {
		if n == f {
			continue
		}
		if err := n.WaitFor(ctx, func(s *State) bool { return s.Current().Version >= start+4 }); err != nil {
			t.Fatal(err)
		}
	}
	// Both nodes of the majority compact their logs (either may lead
	// when the partition heals: the follower's higher term forces an
	// election).
	for _, n := range c.list() {
		if n == f {
			continue
		}
		if err := n.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			t.Fatal(err)
		}
		first, err := stores[c.indexOf(n)].FirstIndex()
		if err != nil {
			t.Fatal(err)
		}
		if first <= behind+1 {
			t.Fatalf("node %s's log starts at %d, the follower is at %d: the log still holds what it misses", n.ID(), first, behind)
		}
	}
	c.heal(j)
	want := version(l)
	if err := f.WaitFor(ctx, func(s *State) bool { return s.Current().Version >= want }); err != nil {
		t.Fatalf("the follower did not catch up: %v", err)
	}
	// The state is restored before raft records the snapshot as installed.
	var installed uint64
	for installed <= behind {
		installed, _ = strconv.ParseUint(f.raft.Stats()["last_snapshot_index"], 10, 64)
		select {
		case <-ctx.Done():
			t.Fatalf("follower's last snapshot at %d, it was at %d when cut off: it did not catch up by snapshot", installed, behind)
		case <-time.After(5 * time.Millisecond):
		}
	}
	stop()
	wg.Wait()
	t.Logf("follower cut off at index %d (version %d), caught up by a snapshot at %d; state %s on all nodes", behind, start, installed, c.converged(ctx))
}

// phaseHold stops a node's leader loop when its round enters a chosen
// phase (Config.onPhase), until the test releases it or the node closes.
type phaseHold struct {
	mu      sync.Mutex
	want    map[int]phase
	nodes   map[int]*Node
	hit     chan held
	release chan struct{}
}

// held is a node stopped in a phase.
type held struct {
	i int
	p phase
}

func newPhaseHold() *phaseHold {
	return &phaseHold{want: map[int]phase{}, nodes: map[int]*Node{}, hit: make(chan held, 4), release: make(chan struct{})}
}

// node records that node i is n (after New, and after every restart).
func (h *phaseHold) node(i int, n *Node) {
	h.mu.Lock()
	h.nodes[i] = n
	h.mu.Unlock()
}

// hook is node i's Config.onPhase.
func (h *phaseHold) hook(i int) func(uint64, phase) {
	return func(_ uint64, p phase) {
		h.mu.Lock()
		want, ok := h.want[i]
		n, rel := h.nodes[i], h.release
		if ok && want == p {
			delete(h.want, i)
		}
		h.mu.Unlock()
		if !ok || want != p || n == nil {
			return
		}
		h.hit <- held{i, p}
		select {
		case <-rel:
		case <-n.ctx.Done():
		}
	}
}

// arm makes node i stop in phase p and waits until it does; false if ctx
// ends first (leadership moved, say), and then node i is disarmed. A
// node that a timed-out arm stopped after all is let go by the next arm.
func (h *phaseHold) arm(ctx context.Context, i int, p phase) bool {
	h.mu.Lock()
	h.want[i] = p
	h.mu.Unlock()
	for {
		select {
		case x := <-h.hit:
			if x == (held{i, p}) {
				return true
			}
			h.free()
		case <-ctx.Done():
			h.mu.Lock()
			delete(h.want, i)
			h.mu.Unlock()
			return false
		}
	}
}

// free lets a held leader loop go on.
func (h *phaseHold) free() {
	h.mu.Lock()
	close(h.release)
	h.release = make(chan struct{})
	h.mu.Unlock()
}

// holdLeader stops the current leader in phase p and returns it. A
// leader may lose office before its round gets there (a slow machine
// misses a heartbeat): then it tries the next leader.
func (c *testCluster) holdLeader(ctx context.Context, h *phaseHold, p phase) *Node {
	c.t.Helper()
	for ctx.Err() == nil {
		l := c.leader(ctx)
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok := h.arm(actx, c.indexOf(l), p)
		cancel()
		if ok && l.IsLeader() {
			return l
		}
		if ok {
			h.free()
		}
	}
	c.t.Fatalf("no leader reached %s", p)
	return nil
}

// envInt reads a test's size from the environment (soak runs set it),
// def when unset.
func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	k, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return k
}

// The leader crashes (no leadership transfer, its transport cut, Raft
// shut down) while its round is in each phase in turn, and restarts on
// its data directory (bbolt log, file snapshots) as a follower. After
// every crash: no round committed before it is lost on any node, no
// node's privacy ledger ever goes backwards, and once the clients stop
// every node holds the same state.
func TestFaultKillLeaderEachPhase(t *testing.T) {
	phases := []phase{phaseGathering, phaseSelected, phaseCollecting, phaseAggregating, phaseCommitting, phaseCommitted}
	// One crash per phase, or FEDREC_FAULT_KILLS for a soak.
	kills := envInt(t, "FEDREC_FAULT_KILLS", len(phases))
	tr := testTraining()
	tr.RoundTimeout = time.Second
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}

	hold := newPhaseHold()
	config := func(i int, cfg *Config) {
		cfg.InMemory, cfg.DataDir = false, dirs[i]
		cfg.onPhase = hold.hook(i)
	}
	c := newTestClusterWith(t, 3, tr, config)
	for i, n := range c.list() {
		hold.node(i, n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Duration(kills)*15*time.Second)
	defer cancel()

	// Watch every node's ledger: it may only grow, and no two nodes'
	// ledgers ever disagree (each is a prefix of the longest seen). A
	// restarted node starts from its last snapshot and replays the log
	// once a leader tells it what is committed: each incarnation is
	// watched on its own, and must get back every entry, checked below.
	maxLedger := map[*Node][]LedgerEntry{}
	var longest []LedgerEntry
	var ledgerErr atomic.Value
	watchCtx, stopWatch := context.WithCancel(ctx)
	var wwg sync.WaitGroup
	wwg.Go(func() {
		for watchCtx.Err() == nil {
			for _, n := range c.live() {
				n.View(func(s *State) {
					prev, cur := maxLedger[n], s.Ledger()
					switch {
					case len(cur) < len(prev) || !slices.Equal(cur[:len(prev)], prev):
						ledgerErr.Store(fmt.Sprintf("node %s: ledger went from %d entries to %d", n.ID(), len(prev), len(cur)))
					case !slices.Equal(cur[:min(len(cur), len(longest))], longest[:min(len(cur), len(longest))]):
						ledgerErr.Store(fmt.Sprintf("node %s: ledger of %d entries disagrees with another node's", n.ID(), len(cur)))
					}
					// Apply only appends: a prefix kept outside the lock
					// stays valid.
					maxLedger[n] = cur
					if len(cur) > len(longest) {
						longest = cur
					}
				})
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	defer func() { stopWatch(); wwg.Wait() }()

	crowdCtx, stop := context.WithCancel(ctx)
	wg := c.crowd(crowdCtx, 6)
	defer func() { stop(); wg.Wait() }()
	var failovers []time.Duration
	count := map[phase]int{}
	for k := range kills {
		p := phases[k%len(phases)]
		c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= 2 })
		l := c.holdLeader(ctx, hold, p)
		i := c.indexOf(l)
		if k%2 == 1 {
			// Every other restart begins from a snapshot of the node's
			// own (Restore, then the log after it), the others replay
			// the whole log.
			if err := l.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
				t.Fatalf("kill %d: snapshot: %v", k+1, err)
			}
		}
		var cut time.Time // when the leader was cut off, if before the crash
		if p == phaseCommitting {
			// The hook runs before the CommitRound is proposed. Every
			// other time, the leader is cut off first: the entry reaches
			// its log only, never commits, and the restarted node's log
			// loses that tail to the new leader's. Otherwise the entry is
			// on its way at the crash: sent to no follower, to some, or
			// committed already.
			if o := k / len(phases); o%2 == 0 {
				cut = time.Now()
				c.isolate(i)
				hold.free()
				for l.IsLeader() && ctx.Err() == nil {
					time.Sleep(time.Millisecond)
				}
			} else {
				hold.free()
				time.Sleep(time.Duration(o/2%4) * time.Millisecond)
			}
		}
		l.crashed.Store(true)
		c.trans[i].DisconnectAll()
		killed := time.Now()
		if !cut.IsZero() {
			killed = cut
		}
		l.Close()
		// Everything the dead leader had applied, up to its death, was
		// committed by a majority and must survive.
		var committed []RoundRecord
		var ledger []LedgerEntry
		l.View(func(s *State) {
			for _, r := range s.Rounds() {
				if r.Outcome == Committed {
					committed = append(committed, r)
				}
			}
			ledger = slices.Clone(s.Ledger())
		})
		for {
			if n := c.findLeader(ctx); n != nil && n != l {
				failovers = append(failovers, time.Since(killed))
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("kill %d (%s): no new leader", k+1, p)
			}
		}
		count[p]++

		// Restart the dead node on its data directory.
		cfg := l.cfg
		addr, tt := raft.NewInmemTransport(c.trans[i].LocalAddr())
		cfg.Transport = tt
		for j, o := range c.trans {
			if j != i {
				tt.Connect(o.LocalAddr(), o)
				o.Connect(addr, tt)
			}
		}
		t.Logf("kill %d: %s crashed in %s, new leader after %v; restarting it", k+1, cfg.ID, p, failovers[len(failovers)-1].Round(time.Millisecond))
		n, err := New(cfg)
		if err != nil {
			t.Fatalf("kill %d: restart %s: %v", k+1, cfg.ID, err)
		}
		hold.node(i, n)
		t.Cleanup(func() { n.Close() })
		c.mu.Lock()
		c.nodes[i], c.trans[i] = n, tt
		c.mu.Unlock()

		// No committed round and no ledger entry is lost on any node.
		last := committed[len(committed)-1]
		c.waitAll(ctx, func(s *State) bool { return s.Current() != nil && s.Current().Version >= last.NewModel })
		for _, n := range c.list() {
			n.View(func(s *State) {
				for _, r := range committed {
					j, ok := slices.BinarySearchFunc(s.Rounds(), r.Round, func(x RoundRecord, id uint64) int { return cmp.Compare(x.Round, id) })
					if !ok || s.Rounds()[j] != r {
						t.Errorf("kill %d (%s): node %s lost committed round %d", k+1, p, n.ID(), r.Round)
					}
				}
				if got := s.Ledger(); len(got) < len(ledger) || !slices.Equal(got[:len(ledger)], ledger) {
					t.Errorf("kill %d (%s): node %s's ledger (%d entries) lacks the %d the dead leader had", k+1, p, n.ID(), len(got), len(ledger))
				}
			})
		}
		if e := ledgerErr.Load(); e != nil {
			t.Fatalf("kill %d (%s): %v", k+1, p, e)
		}
	}
	stop()
	wg.Wait()
	digest := c.converged(ctx)
	stopWatch()
	wwg.Wait()
	if e := ledgerErr.Load(); e != nil {
		t.Fatal(e)
	}
	var rounds, ledger int
	c.list()[0].View(func(s *State) { rounds, ledger = len(s.Rounds()), len(s.Ledger()) })
	slices.Sort(failovers)
	t.Logf("%d crashes (%v): no committed round lost, no ledger went backwards, state %s on all 3 nodes (%d rounds, %d ledger entries); new leader after median %v, max %v",
		kills, count, digest, rounds, ledger, failovers[len(failovers)/2].Round(time.Millisecond), failovers[len(failovers)-1].Round(time.Millisecond))
}

// An OpenRound whose Apply failed (a timeout, say) may still commit: the
// leader then finds a round open that it holds no state for. It abandons
// it ("left open") and goes on, rather than failing every later round
// with ErrRoundOpen.
func TestLeaderAbandonsRoundLeftOpen(t *testing.T) {
	hold := newPhaseHold()
	c := newTestClusterWith(t, 1, testTraining(), func(i int, cfg *Config) { cfg.onPhase = hold.hook(i) })
	n := c.list()[0]
	hold.node(0, n)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	crowdCtx, stop := context.WithCancel(ctx)
	wg := c.crowd(crowdCtx, 6)
	defer func() { stop(); wg.Wait() }()
	if !hold.arm(ctx, 0, phaseGathering) {
		t.Fatal("no round")
	}
	// The round the leader is about to open commits behind its back.
	var open *wire.OpenRound
	var v uint64
	n.View(func(s *State) { open, v = openFor(s, s.LastRound()+1), s.Current().Version })
	if _, err := n.apply(open); err != nil {
		t.Fatal(err)
	}
	hold.free()
	if err := n.WaitFor(ctx, func(s *State) bool { return s.Current().Version > v }); err != nil {
		t.Fatalf("no round committed after a round was left open: %v", err)
	}
	n.View(func(s *State) {
		i := slices.IndexFunc(s.Rounds(), func(r RoundRecord) bool { return r.Round == open.Round })
		if i < 0 || s.Rounds()[i].Outcome != Abandoned || s.Rounds()[i].Reason != "left open" {
			t.Errorf("rounds %+v, want round %d abandoned as left open", s.Rounds(), open.Round)
		}
	})
}
