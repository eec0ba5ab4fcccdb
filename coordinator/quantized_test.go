package coordinator

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/aggregation/fixedpoint"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// A round of 8-bit uploads: its plans say so, the leader refuses quantized
// updates of the wrong length, the wrong step or beyond the clip with
// CodeShape, counts an older device's float64 update alongside a quantized
// one, and commits their mean.
func TestQuantizedUploads(t *testing.T) {
	tr := testTraining()
	tr.ClientsPerRound, tr.OverSelect, tr.MinClients = 2, 0, 2
	tr.CheckInWindow = time.Hour // select only when both are here
	tr.Clip, tr.UploadBits = 1, 8
	tr.Optimizer = aggregation.OptimizerConfig{Name: "fedavg", LR: 1}
	c := newTestCluster(t, 1, tr)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
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
	dim := c.dim()
	if pa.UploadBits != wire.UploadBits8 || len(pa.Digest32) != 32 || pa.UploadBytes != wire.UploadBytes(dim, wire.UploadBits8) {
		t.Fatalf("plan: upload bits %d, digest32 %x, upload bytes %d; want 8, a digest, %d", pa.UploadBits, pa.Digest32, pa.UploadBytes, wire.UploadBytes(dim, 8))
	}
	q, err := fixedpoint.NewQuantizer(dim, pa.Clip, wire.UploadSeed(pa.Round, pa.Digest))
	if err != nil {
		t.Fatal(err)
	}
	v := make([]int8, dim)
	if _, _, err := q.Quantize(v, constDelta(dim, 0.01), rand.New(rand.NewPCG(1, 2))); err != nil {
		t.Fatal(err)
	}
	good := func(p *wire.Plan, id string) *wire.Upload {
		return &wire.Upload{Version: wire.Version, Round: p.Round, ClientID: id, Ticket: p.Ticket, Model: p.Model, N: 1, Quantized: wire.QuantizedOf(v), Step: q.Step()}
	}
	// Tickets are per client; find whose is whose by trying.
	ida := ""
	for _, id := range []string{"a", "b"} {
		up := good(pa, id)
		up.Quantized = up.Quantized[1:] // wrong length: checked after the ticket
		if e := call(ctx, l, up)[0].(*wire.Error); e.Code == wire.CodeShape {
			ida = id
		}
	}
	if ida == "" {
		t.Fatal("no ticket matched")
	}
	idb := map[string]string{"a": "b", "b": "a"}[ida]
	loud := good(pa, ida)
	for i := range loud.Quantized {
		loud.Quantized[i] = fixedpoint.QuantMax
	}
	for _, tc := range []struct {
		name, msg string
		up        *wire.Upload
	}{
		{"long", "update of", func() *wire.Upload { u := good(pa, ida); u.Quantized = append(u.Quantized, 0); return u }()},
		{"another step", "step", func() *wire.Upload { u := good(pa, ida); u.Step *= 2; return u }()},
		{"beyond the clip", "norm", loud},
	} {
		e, ok := call(ctx, l, tc.up)[0].(*wire.Error)
		if !ok || e.Code != wire.CodeShape || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: reply %+v, want CodeShape saying %q", tc.name, e, tc.msg)
		}
	}
	var base []float64
	l.View(func(s *State) { base = s.Current().Model.Params })
	if rep := call(ctx, l, good(pa, ida)); rep[0].Type() != wire.TypeUploadAck {
		t.Fatalf("quantized upload: %+v", rep[0])
	}
	old := &wire.Upload{Version: wire.Version, Round: pb.Round, ClientID: idb, Ticket: pb.Ticket, Model: pb.Model, N: 1, Delta: constDelta(dim, 0.01)}
	if rep := call(ctx, l, old); rep[0].Type() != wire.TypeUploadAck {
		t.Fatalf("an older device's float64 upload: %+v", rep[0])
	}
	if err := l.WaitFor(ctx, func(s *State) bool { return s.Current().Version == 2 }); err != nil {
		t.Fatal(err)
	}
	l.View(func(s *State) {
		// FedAvg at LR 1 adds the mean update: 0.01 everywhere, within
		// half of one client's rounding error.
		for i, x := range s.Current().Model.Params {
			if d := x - base[i]; math.Abs(d-0.01) > q.Step() {
				t.Errorf("param %d moved by %v, want 0.01 ± %v", i, d, q.Step())
			}
		}
	})
}
