package client

import (
	"context"
	"crypto/tls"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
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

func TestNewDialerValidates(t *testing.T) {
	if _, err := NewDialer(nil, &tls.Config{}); err == nil {
		t.Error("NewDialer(no addresses) = nil error")
	}
}

// A check-in at a follower is redirected to the leader it names.
func TestDialerFollowsLeaderHint(t *testing.T) {
	ca, _ := pki.NewCA("test", time.Hour)
	leader, leaderHits := fakenode.Answering(t, ca, func(wire.Message) wire.Message { return &wire.Wait{RetryAfterMs: 7} })
	follower, _ := fakenode.Answering(t, ca, func(wire.Message) wire.Message {
		return &wire.Error{Code: wire.CodeNotLeader, Leader: leader}
	})
	d, _ := NewDialer([]string{follower}, pki.ClientTLS(ca.Pool()))
	defer d.Close()
	rep, err := round.CheckIn(t.Context(), d, &wire.CheckIn{Version: wire.Version, ClientID: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if w, ok := rep.(*wire.Wait); !ok || w.RetryAfterMs != 7 || leaderHits.Load() != 1 {
		t.Errorf("CheckIn = %+v (leader hit %d times), want a Wait of 7ms from the leader", rep, leaderHits.Load())
	}
}

// eventNode is a fake node whose plans and model downloads carry the
// event weights w (nil: none), counting downloads and uploads.
func eventNode(t *testing.T, m *model.Model, w *wire.EventWeights) (*Dialer, *atomic.Int32, *atomic.Int32) {
	t.Helper()
	ca, _ := pki.NewCA("test", time.Hour)
	b, _ := ca.NodeBundle("fake")
	ln, err := wire.Listen("127.0.0.1:0", b.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	d := wire.Digest(m)
	plan := fakenode.Plan(m, d[:], 10_000)
	plan.Clip, plan.Privacy.NoiseMultiplier, plan.Train.Events = 0.5, 2, w
	var downloads, uploads atomic.Int32
	done := fakenode.ServeStreams(ln, func(st *quic.Stream) {
		switch req, _ := wire.Read(st, wire.Limits{}); req.(type) {
		case *wire.CheckIn:
			wire.Write(st, plan)
		case *wire.GetModel:
			downloads.Add(1)
			h, chunks := wire.SplitModel(m, 2, 1)
			h.Events = w
			wire.Write(st, h)
			for _, c := range chunks {
				wire.Write(st, c)
			}
		case *wire.Upload:
			uploads.Add(1)
			wire.Write(st, &wire.UploadAck{Round: 1})
		}
	})
	dl, err := NewDialer([]string{ln.Addr().String()}, pki.ClientTLS(ca.Pool()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dl.Close()
		ln.Close()
		<-done
	})
	return dl, &downloads, &uploads
}

// optedInOn returns an opted-in client of "dev", with a view and a
// purchase recorded, on the network of d (a catalogue of 6 items).
func optedInOn(t *testing.T, d *Dialer) *Client {
	t.Helper()
	fed, err := NewNetwork(NetworkConfig{ClientID: "dev", Dialer: d, Items: itemIDs(6)})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := testConfig(t)
	cfg.Federation, cfg.Policy = fed, Policy{MinCohort: 1, Epsilon: 100}
	c := open(t, cfg)
	recordAll(t, c, Interaction{Item: "item-1", Kind: View}, Interaction{Item: "item-2", Kind: Purchase})
	if err := c.OptIn(); err != nil {
		t.Fatal(err)
	}
	return c
}

// A device takes the cluster's event weights from the model it downloads
// and from the round's plan, and refuses weights that are not finite,
// negative or all zero before it downloads or sends anything.
func TestNetworkEventWeights(t *testing.T) {
	m, _ := model.New(model.Implicit, 6, 2, 0, 0.1, rand.New(rand.NewPCG(1, 2)))
	custom := &wire.EventWeights{View: 0.5, Click: 1, Cart: 3, Purchase: 10}
	tests := []struct {
		name string
		w    *wire.EventWeights
		want EventWeights // the installed release's, without err
		err  string       // what the refusal says
	}{
		{"none: the defaults", nil, EventWeights{}, ""},
		{"the cluster's", custom, EventWeights{View: 0.5, Click: 1, Cart: 3, Purchase: 10}, ""},
		{"nan", &wire.EventWeights{View: math.NaN(), Purchase: 8}, EventWeights{}, "event weights"},
		{"negative", &wire.EventWeights{View: 1, Cart: -4}, EventWeights{}, "event weights"},
		{"all zero", &wire.EventWeights{}, EventWeights{}, "event weights are all zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, downloads, uploads := eventNode(t, m, tt.w)
			c := optedInOn(t, d)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			_, perr := c.Participate(ctx)
			_, serr := c.Sync(ctx)
			if tt.err != "" {
				for what, err := range map[string]error{"Participate": perr, "Sync": serr} {
					if err == nil || !strings.Contains(err.Error(), tt.err) {
						t.Errorf("%s = %v, want an error about %q", what, err, tt.err)
					}
				}
				if downloads.Load() != 1 || uploads.Load() != 0 {
					t.Errorf("%d downloads (the refused Sync's), %d uploads; want 1 and 0", downloads.Load(), uploads.Load())
				}
				return
			}
			if perr != nil || serr != nil || uploads.Load() != 1 {
				t.Fatalf("Participate = %v, Sync = %v with %d uploads; want one upload", perr, serr, uploads.Load())
			}
			c.mu.Lock()
			got := c.model.rel.EventWeights
			c.mu.Unlock()
			if got != tt.want {
				t.Errorf("installed release's event weights = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Dialers sharing a Transport dial from its one socket; a Dialer that
// released its connection dials again for its next request.
func TestDialersShareTransport(t *testing.T) {
	ca, _ := pki.NewCA("test", time.Hour)
	b, _ := ca.NodeBundle("fake")
	ln, err := wire.Listen("127.0.0.1:0", b.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	from := map[string]int{} // connections by the client's address
	done := fakenode.ServeConns(ln, func(conn *quic.Conn) func(*quic.Stream) {
		mu.Lock()
		from[conn.RemoteAddr().String()]++
		mu.Unlock()
		return func(st *quic.Stream) {
			if _, err := wire.Read(st, wire.Limits{}); err == nil {
				wire.Write(st, &wire.Wait{RetryAfterMs: 1000})
			}
		}
	})
	t.Cleanup(func() { ln.Close(); <-done })
	tr, err := NewTransport()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var ds []*Dialer
	for range 3 {
		d, err := NewDialerConfig(DialerConfig{Addrs: []string{ln.Addr().String()}, TLS: pki.ClientTLS(ca.Pool()), Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		ds = append(ds, d)
	}
	checkIn := func(d *Dialer) {
		t.Helper()
		if _, err := round.CheckIn(t.Context(), d, &wire.CheckIn{Version: wire.Version, ClientID: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range ds {
		checkIn(d)
		checkIn(d) // on the same connection
	}
	ds[0].Release()
	checkIn(ds[0]) // dials again
	mu.Lock()
	defer mu.Unlock()
	if len(from) != 1 {
		t.Errorf("connections from %d addresses %v, want 1 (the shared socket)", len(from), from)
	}
	for a, n := range from {
		if n != 4 {
			t.Errorf("%d connections from %s, want 4 (one per Dialer, one after Release)", n, a)
		}
	}
}

// A new Dialer starts at DialerConfig.Start when it is set, at a random
// address otherwise, and refuses a Start outside Addrs.
func TestDialerStart(t *testing.T) {
	addrs := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}
	conf := &tls.Config{MinVersion: tls.VersionTLS13}
	for _, tt := range []struct {
		start string
		want  string // "" means any of addrs
	}{{"", ""}, {addrs[1], addrs[1]}, {addrs[2], addrs[2]}} {
		d, err := NewDialerConfig(DialerConfig{Addrs: addrs, Start: tt.start, TLS: conf})
		if err != nil {
			t.Fatalf("Start %q: %v", tt.start, err)
		}
		if got := d.prefer; tt.want != "" && got != tt.want || !slices.Contains(addrs, got) {
			t.Errorf("Start %q: starts at %q, want %q", tt.start, got, tt.want)
		}
		d.Close()
	}
	if _, err := NewDialerConfig(DialerConfig{Addrs: addrs, Start: "127.0.0.1:4", TLS: conf}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Start outside Addrs = %v, want ErrInvalidArgument", err)
	}
}

// A device turned away from its round's download (the round has every
// update it needs) gets ErrNoRound with the node's time to come back, and
// sends nothing.
func TestNetworkRoundFull(t *testing.T) {
	m, _ := model.New(model.Implicit, 6, 2, 0, 0.1, rand.New(rand.NewPCG(1, 2)))
	dg := wire.Digest(m)
	plan := fakenode.Plan(m, dg[:], 10_000)
	plan.Clip, plan.Privacy.NoiseMultiplier = 0.5, 2
	ca, _ := pki.NewCA("test", time.Hour)
	addr, uploads := fakenode.RoundFull(t, ca, plan)
	d, err := NewDialer([]string{addr}, pki.ClientTLS(ca.Pool()))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c := optedInOn(t, d)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = c.Participate(ctx)
	var nr *NoRoundError
	if !errors.As(err, &nr) || nr.RetryAfter < 630*time.Millisecond || nr.RetryAfter > 770*time.Millisecond || uploads.Load() != 0 {
		t.Errorf("Participate = %v with %d uploads; want a NoRoundError of 700ms ±10%% and none", err, uploads.Load())
	}
}
