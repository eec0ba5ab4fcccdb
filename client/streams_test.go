package client

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/client/internal/fakenode"
	"github.com/fedrec/fedrec/client/internal/round"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// A node gives each connection wire.MaxStreams (8) streams, and counts a
// stream until both its directions are done. A crowd of 200 devices
// stalled after 35 to 55 rounds, 92 of them waiting to open a stream: the
// node answered without reading its request to the end (the FIN, when it
// came in a packet of its own) and never cancelled reading, so a few of
// each device's requests kept a slot for good; once all 8 were gone the
// device waited on the same live connection at every check-in, forever.
//
// TestStreamSlotsLost runs 2·MaxStreams sequential requests, answers and
// errors, through one Dialer against a node that loses the slot of every
// stream: none may hang. The Dialer gives up on a connection with no
// stream free within wire.StreamWait and dials again.
func TestStreamSlotsLost(t *testing.T) {
	ca, _ := pki.NewCA("test", time.Hour)
	b, _ := ca.NodeBundle("leaky")
	ln, err := wire.Listen("127.0.0.1:0", b.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	m, _ := model.New(model.Explicit, 6, 2, 3.5, 0.1, rand.New(rand.NewPCG(1, 2)))
	var conns atomic.Int64
	done := fakenode.ServeConns(ln, func(*quic.Conn) func(*quic.Stream) {
		conns.Add(1)
		return func(st *quic.Stream) {
			// The header only: the body and the FIN are never read, and
			// reading is never cancelled.
			t, _, err := wire.ReadHeader(st, wire.Limits{})
			if err != nil || t != wire.TypeGetModel {
				return
			}
			if conns.Load()%2 == 0 {
				wire.Write(st, &wire.Error{Code: wire.CodeUnknownModel, Message: "not here"})
				return
			}
			fakenode.WriteModel(st, m, nil)
		}
	})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	d, err := NewDialer([]string{ln.Addr().String()}, pki.ClientTLS(ca.Pool()))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i := range 2 * wire.MaxStreams {
		// A held check-in's time: a device that hangs fails here.
		ctx, cancel := context.WithTimeout(t.Context(), round.CheckInTimeout)
		_, _, err := d.Model(ctx, 0)
		cancel()
		if code := wire.CodeOf(err); err != nil && code != wire.CodeUnknownModel {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	t.Logf("%d requests over %d connections", 2*wire.MaxStreams, conns.Load())
}
