package client

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"gonum.org/v1/gonum/floats"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// modelNode is a fake node that plans a round on the model with digest
// planned and serves served (its header's digest replaced by header when
// set), counting uploads.
func modelNode(t *testing.T, planned [32]byte, served *model.Model, header []byte) (string, *pki.CA, *atomic.Int32, *atomic.Uint64) {
	t.Helper()
	ca, _ := pki.NewCA("test", time.Hour)
	b, _ := ca.NodeBundle("fake")
	ln, err := wire.Listen("127.0.0.1:0", b.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	var uploads atomic.Int32
	var norm atomic.Uint64 // of the last upload, math.Float64bits
	plan := fakePlan(served, planned[:], 10_000)
	plan.Clip = planClip
	done := serveStreams(ln, func(st *quic.Stream) {
		switch req, _ := wire.Read(st, wire.Limits{}); req := req.(type) {
		case *wire.CheckIn:
			wire.Write(st, plan)
		case *wire.GetModel:
			writeModel(st, served, header)
		case *wire.Upload:
			uploads.Add(1)
			norm.Store(math.Float64bits(floats.Norm(req.Delta, 2)))
			wire.Write(st, &wire.UploadAck{Round: 1})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String(), ca, &uploads, &norm
}

// planClip is the clip norm of modelNode's plans: far below an update's
// norm, so that an unclipped update shows.
const planClip = 1e-6

// A client trains only on the model its round's plan names by digest: a
// node serving another model, with its own digest or under the plan's, is
// refused and nothing is uploaded. The update it does upload is clipped to
// the plan's norm.
func TestParticipantKeepsToPlan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	planned, _ := model.New(model.Explicit, 10, 2, 3.5, 0.1, r)
	other, _ := model.New(model.Explicit, 10, 2, 3.5, 0.1, r)
	pd, od := wire.Digest(planned), wire.Digest(other)
	tests := []struct {
		name   string
		served *model.Model
		header []byte
		ok     bool
	}{
		{"the planned model", planned, nil, true},
		{"another model", other, nil, false},
		{"another model under the plan's digest", other, pd[:], false},
		{"the planned model under another digest", planned, od[:], false},
	}
	for _, tc := range tests {
		addr, ca, uploads, norm := modelNode(t, pd, tc.served, tc.header)
		d, _ := NewDialer([]string{addr}, pki.ClientTLS(ca.Pool()))
		p, _ := NewParticipant(ParticipantConfig{ID: "u", Dialer: d, Ratings: []model.Rating{{Item: 1, Value: 4}, {Item: 3, Value: 2}}})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := p.RunRound(ctx)
		cancel()
		d.Close()
		if tc.ok && (err != nil || uploads.Load() != 1) {
			t.Errorf("%s: RunRound = %v with %d uploads, want one upload", tc.name, err, uploads.Load())
		}
		// The update leaves the client clipped to the plan's norm.
		if n := math.Float64frombits(norm.Load()); tc.ok && (n > planClip*(1+1e-9) || n == 0) {
			t.Errorf("%s: uploaded update of norm %g, want in (0, %g]", tc.name, n, planClip)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "digest") || uploads.Load() != 0) {
			t.Errorf("%s: RunRound = %v with %d uploads, want a digest error and none", tc.name, err, uploads.Load())
		}
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
	plan := fakePlan(m, d[:], 10_000)
	plan.Clip, plan.Privacy.NoiseMultiplier, plan.Train.Events = 0.5, 2, w
	var downloads, uploads atomic.Int32
	done := serveStreams(ln, func(st *quic.Stream) {
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
