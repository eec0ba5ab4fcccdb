package coordinator

import (
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// testLobby returns the lobby of a node that runs nothing else.
func testLobby() *lobby {
	n := &Node{rng: rand.New(rand.NewPCG(1, 2))}
	n.metrics = newMetrics(n)
	return newLobby(n)
}

// A device its node selected gets its plan even when its check-in has
// waited its whole MaxHold by then, whether the round has not opened yet
// (the device is held) or its node is making the plans (taken): the
// leader names it in the cohort, and such a device, sent away instead,
// held a secure round's first phase to its deadline (fedrec bench
// --clients 1000 --secagg: a device or so a node in some rounds, 60 s).
func TestLobbyHeldDeviceWaitsForItsPlan(t *testing.T) {
	for _, tc := range []struct {
		name      string
		takeFirst bool // the round opens before the check-in's MaxHold
	}{{"held", false}, {"taken", true}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := testLobby()
				reply := make(chan wire.Message, 1)
				go func() { reply <- b.checkIn(t.Context(), &wire.CheckIn{Version: wire.Version, ClientID: "d"}) }()
				synctest.Wait()
				time.Sleep(wire.MaxHold - time.Millisecond)
				ids := b.selectFor(7, 1, 1, time.Now().Add(time.Minute), 1)
				if len(ids) != 1 {
					t.Fatalf("selected %v, want the device", ids)
				}
				var ws []*waiter
				if tc.takeFirst {
					ws = b.take(7, ids)
				}
				time.Sleep(time.Second) // past the check-in's MaxHold, within heldFor
				synctest.Wait()
				if !tc.takeFirst {
					ws = b.take(7, ids)
				}
				if ws[0] == nil {
					t.Fatal("the selected device is no longer held")
				}
				ws[0].reply <- &wire.Plan{Round: 7}
				if p, ok := (<-reply).(*wire.Plan); !ok || p.Round != 7 {
					t.Errorf("the selected device got %v, want its plan of round 7", p)
				}
			})
		})
	}
}

// A device not selected is sent away at MaxHold, and a device held for a
// round that does not open is released within heldFor.
func TestLobbySendsAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := testLobby()
		reply := make(chan wire.Message, 1)
		start := time.Now()
		go func() { reply <- b.checkIn(t.Context(), &wire.CheckIn{Version: wire.Version, ClientID: "d"}) }()
		if _, ok := (<-reply).(*wire.Wait); !ok || time.Since(start) != wire.MaxHold {
			t.Errorf("a device not selected was answered after %v, want a Wait after %v", time.Since(start), wire.MaxHold)
		}
		start = time.Now()
		go func() { reply <- b.checkIn(t.Context(), &wire.CheckIn{Version: wire.Version, ClientID: "d"}) }()
		synctest.Wait()
		b.selectFor(8, 1, 1, time.Now().Add(time.Minute), 1)
		if _, ok := (<-reply).(*wire.Wait); !ok || time.Since(start) != heldFor {
			t.Errorf("a device held for a round that did not open was answered after %v, want a Wait after %v", time.Since(start), heldFor)
		}
	})
}
