package coordinator_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// replayTraining selects a cohort of exactly two as soon as two devices
// wait.
func replayTraining() coordinator.Training {
	tr := training()
	tr.ClientsPerRound, tr.OverSelect, tr.MinClients = 2, 0, 2
	tr.CheckInWindow = 20 * time.Second
	tr.RoundTimeout = 20 * time.Second
	return tr
}

// checkInAll checks every device in at once and returns their plans.
func checkInAll(t *testing.T, ctx context.Context, conns map[string]*quic.Conn) map[string]*wire.Plan {
	t.Helper()
	var mu sync.Mutex
	plans := map[string]*wire.Plan{}
	var wg sync.WaitGroup
	for id, conn := range conns {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 2*wire.MaxHold)
			defer cancel()
			err := wire.Exchange(cctx, conn, &wire.CheckIn{Version: wire.Version, ClientID: id}, wire.Limits{}, func(m wire.Message) (bool, error) {
				if p, ok := m.(*wire.Plan); ok {
					mu.Lock()
					plans[id] = p
					mu.Unlock()
				}
				return true, nil
			})
			if err != nil {
				t.Errorf("check-in of %s: %v", id, err)
			}
		})
	}
	wg.Wait()
	if len(plans) != len(conns) {
		t.Fatalf("%d of %d devices selected", len(plans), len(conns))
	}
	return plans
}

// update is id's upload for plan p, with n examples (which the committed
// round record sums, so that a counted duplicate would show).
func update(id string, p *wire.Plan, n int64) *wire.Upload {
	d := make(wire.Vec, model.Dim(20, 4))
	for i := range d {
		d[i] = 0.001 * float64(n)
	}
	return &wire.Upload{Version: wire.Version, Round: p.Round, ClientID: id, Ticket: p.Ticket, Model: p.Model, Loss: 1, N: n, Delta: d}
}

// roundRecord waits until round is over on n and returns its record.
func roundRecord(t *testing.T, ctx context.Context, n *coordinator.Node, round uint64) coordinator.RoundRecord {
	t.Helper()
	var rec coordinator.RoundRecord
	if err := n.WaitFor(ctx, func(s *coordinator.State) bool {
		for _, r := range s.Rounds() {
			if r.Round == round {
				rec = r
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("round %d did not end: %v", round, err)
	}
	return rec
}

// Every update is bound to its round, its device and the device's ticket:
// a replay, a second update, an update for another round and one from a
// device that was not selected are each refused with their code, and the
// committed round counts exactly one update per selected device.
func TestQUICUploadReplay(t *testing.T) {
	c := newQUICClusterWith(t, 1, replayTraining())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	alice := dialAs(t, ctx, c.addrs[0], c.device(t, "alice"))
	bob := dialAs(t, ctx, c.addrs[0], c.device(t, "bob"))
	carol := dialAs(t, ctx, c.addrs[0], c.device(t, "carol")) // never selected
	plans := checkInAll(t, ctx, map[string]*quic.Conn{"alice": alice, "bob": bob})
	pa, pb := plans["alice"], plans["bob"]

	first := update("alice", pa, 1)
	if _, err := exchange(ctx, alice, first); err != nil {
		t.Fatalf("alice's upload: %v", err)
	}
	otherRound := update("alice", pa, 1000)
	otherRound.Round++
	wrongTicket := update("alice", pa, 1000)
	wrongTicket.Ticket = append([]byte(nil), pb.Ticket...)
	stolenTicket := update("carol", pa, 1000)
	tests := []struct {
		name string
		conn *quic.Conn
		req  *wire.Upload
		code wire.Code
	}{
		{"replayed upload", alice, first, wire.CodeDuplicate},
		{"second upload in the round", alice, update("alice", pa, 1000), wire.CodeDuplicate},
		{"upload for another round", alice, otherRound, wire.CodeNoRound},
		{"another device's ticket", alice, wrongTicket, wire.CodeNotSelected},
		{"unselected device with a ticket", carol, stolenTicket, wire.CodeNotSelected},
		{"unselected device replays a selected one's upload", carol, first, wire.CodeForbidden},
	}
	for _, tc := range tests {
		_, err := exchange(ctx, tc.conn, tc.req)
		if got := wire.CodeOf(err); got != tc.code {
			t.Errorf("%s: %v, want code %v", tc.name, err, tc.code)
		}
	}
	if _, err := exchange(ctx, bob, update("bob", pb, 2)); err != nil {
		t.Fatalf("bob's upload: %v", err)
	}
	rec := roundRecord(t, ctx, c.nodes[0], pa.Round)
	if rec.Outcome != coordinator.Committed || rec.Cohort != 2 || rec.Survivors != 2 || rec.N != 3 {
		t.Errorf("round %+v, want committed with 2 of 2 updates over 1+2 examples", rec)
	}
	// After the round, its uploads are refused as over.
	if _, err := exchange(ctx, alice, first); wire.CodeOf(err) != wire.CodeNoRound {
		t.Errorf("replay after the commit: %v, want code %v", err, wire.CodeNoRound)
	}
}

// A leader change kills the old leader's round and its tickets: the new
// leader abandons the round in the replicated state, refuses its uploads,
// opens the next round under a new id with new tickets, and refuses an
// old ticket there too.
func TestQUICTicketsDieWithTheLeader(t *testing.T) {
	// Timeouts four times the other tests': no spurious election on a
	// loaded machine between the steps below.
	c := newQUICClusterConf(t, 3, replayTraining(), func(cfg *coordinator.Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	old := c.leader(t, ctx)
	conns := map[string]*quic.Conn{
		"alice": dialAs(t, ctx, old.ClientAddr(), c.device(t, "alice")),
		"bob":   dialAs(t, ctx, old.ClientAddr(), c.device(t, "bob")),
	}
	plans := checkInAll(t, ctx, conns)
	stale := plans["alice"]
	for i, n := range c.nodes {
		if n == old {
			c.trans[i].DisconnectAll()
		}
	}
	old.Close()

	// The new leader abandons the old round before it opens its own.
	var nl *coordinator.Node
	for nl == nil || nl == old {
		nl = c.leader(t, ctx)
	}
	if rec := roundRecord(t, ctx, nl, stale.Round); rec.Outcome != coordinator.Abandoned {
		t.Fatalf("old leader's round %+v, want abandoned", rec)
	}
	for id := range conns {
		conns[id] = dialAs(t, ctx, nl.ClientAddr(), c.device(t, id))
	}
	if _, err := exchange(ctx, conns["alice"], update("alice", stale, 1000)); wire.CodeOf(err) != wire.CodeNoRound {
		t.Errorf("old round's upload at the new leader: %v, want code %v", err, wire.CodeNoRound)
	}
	fresh := checkInAll(t, ctx, conns)
	pa := fresh["alice"]
	if pa.Round <= stale.Round || string(pa.Ticket) == string(stale.Ticket) {
		t.Fatalf("new round %d, ticket %x; old round %d, ticket %x: want a later round and a new ticket", pa.Round, pa.Ticket, stale.Round, stale.Ticket)
	}
	oldTicket := update("alice", pa, 1000)
	oldTicket.Ticket = stale.Ticket
	if _, err := exchange(ctx, conns["alice"], oldTicket); wire.CodeOf(err) != wire.CodeNotSelected {
		t.Errorf("old ticket in the new round: %v, want code %v", err, wire.CodeNotSelected)
	}
	for id, p := range fresh {
		n := int64(1)
		if id == "bob" {
			n = 2
		}
		if _, err := exchange(ctx, conns[id], update(id, p, n)); err != nil {
			t.Fatalf("%s's upload: %v", id, err)
		}
	}
	rec := roundRecord(t, ctx, nl, pa.Round)
	if rec.Outcome != coordinator.Committed || rec.Survivors != 2 || rec.N != 3 {
		t.Errorf("round %+v, want committed with 2 updates over 1+2 examples", rec)
	}
}
