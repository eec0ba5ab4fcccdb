package coordinator

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Two of three voters are lost for good and there is no backup: the
// survivor's directory, recovered alone, starts a one-voter cluster with
// every committed model and ledger entry, which trains on and takes a new
// member.
func TestRecoverAloneAfterLosingMajority(t *testing.T) {
	tr := testTraining()
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	c := newTestClusterWith(t, 3, tr, func(i int, cfg *Config) { cfg.InMemory, cfg.DataDir = false, dirs[i] })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	c.runRounds(ctx, 3)

	// Everything dies; the leader's directory is the freshest.
	l := c.leader(ctx)
	survivor := c.indexOf(l)
	var version uint64
	var ledger []LedgerEntry
	l.View(func(s *State) { version, ledger = s.Current().Version, s.Ledger() })
	for _, n := range c.list() {
		n.crashed.Store(true)
		n.Close()
	}

	for _, tt := range []struct{ name, dir, id, addr string }{
		{"no directory", "", "n0", "raft-new"},
		{"directory without state", t.TempDir(), "n0", "raft-new"},
		{"no id", dirs[survivor], "", "raft-new"},
		{"no address", dirs[survivor], "n0", ""},
	} {
		if _, err := RecoverAlone(tt.dir, tt.id, tt.addr); err == nil {
			t.Errorf("%s: RecoverAlone succeeded", tt.name)
		}
	}

	id := l.ID()
	rec, err := RecoverAlone(dirs[survivor], id, "raft-new")
	if err != nil {
		t.Fatal(err)
	}
	if rec.ModelVersion != version || rec.LedgerRounds != len(ledger) || len(rec.Dropped) != 2 || slices.Contains(rec.Dropped, id) {
		t.Errorf("recovered %+v, want model %d, %d ledger rounds, the two others dropped", rec, version, len(ledger))
	}

	addr, tt := raft.NewInmemTransport("raft-new")
	cfg := Config{
		ID: id, DataDir: dirs[survivor], Transport: tt, AdvertiseClientAddr: "client-new", Training: tr, Seed: 9,
		Logger:           testLogger(t),
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	// A running node's directory cannot be recovered under it.
	if _, err := RecoverAlone(dirs[survivor], id, "raft-new"); err == nil {
		t.Error("RecoverAlone on a running node's directory succeeded")
	}

	// A new member joins with an empty directory.
	addr2, tt2 := raft.NewInmemTransport("raft-new2")
	tt.Connect(addr2, tt2)
	tt2.Connect(addr, tt)
	cfg2 := cfg
	cfg2.ID, cfg2.DataDir, cfg2.Transport, cfg2.AdvertiseClientAddr = "fresh", t.TempDir(), tt2, "client-new2"
	n2, err := New(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })

	c2 := &testCluster{t: t, cfg: tr, nodes: []*Node{n, n2}, trans: []*raft.InmemTransport{tt, tt2}}
	if got := c2.leader(ctx); got != n {
		t.Fatalf("leader %s, want the recovered %s", got.ID(), id)
	}
	if err := n.Join(n2.ID(), n2.RaftAddr(), n2.ClientAddr(), ""); err != nil {
		t.Fatal(err)
	}
	crowdCtx, stop := context.WithCancel(ctx)
	wg := c2.crowd(crowdCtx, 6)
	c2.waitAll(ctx, func(s *State) bool { return s.Current() != nil && s.Current().Version >= version+2 })
	stop()
	wg.Wait()
	n2.View(func(s *State) {
		if got := s.Ledger(); len(got) < len(ledger) || !slices.Equal(got[:len(ledger)], ledger) {
			t.Errorf("the new member's ledger does not start with the survivor's %d entries", len(ledger))
		}
	})
}
