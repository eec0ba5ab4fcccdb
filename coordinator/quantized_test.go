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
	tr.Clip, tr.UploadBits = 1, 8
	tr.Optimizer = aggregation.OptimizerConfig{Name: "fedavg", LR: 1}
	c, ctx, l, pa, pb := roundOfTwo(t, tr)
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

// A node sends a model as float64 to older devices, as float32 (about
// half the bytes) to devices that ask, checked by its Digest32, and only
// the header to a device that holds it already.
func TestModelDownloads(t *testing.T) {
	tr := testTraining()
	tr.Items, tr.Rank = 3000, 8 // several chunks
	c := newTestCluster(t, 1, tr)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	l := c.leader(ctx)
	var cur *Version
	l.View(func(s *State) { cur = s.Current() })
	size := func(reps []wire.Message) (n int) {
		for _, m := range reps {
			n += m.(*wire.Frame).Len()
		}
		return n
	}
	f64 := call(ctx, l, &wire.GetModel{Version: wire.Version})
	f32 := call(ctx, l, &wire.GetModel{Version: wire.Version, Float32: true})
	have := call(ctx, l, &wire.GetModel{Version: wire.Version, Float32: true, Have: cur.Version})
	dim := len(cur.Model.Params)
	if per := float64(size(f32)) / float64(dim); per > 4.1 || len(f32) != len(f64) {
		t.Errorf("float32 download: %.2f bytes a parameter in %d frames, want <= 4.1 in %d", per, len(f32), len(f64))
	}
	if per := float64(size(f64)) / float64(dim); per < 8 {
		t.Errorf("float64 download: %.2f bytes a parameter, want >= 8", per)
	}
	for name, reps := range map[string][]wire.Message{"float64": f64, "float32": f32} {
		h := decoded(t, reps[0]).(*wire.ModelHeader)
		b, err := wire.NewModelBuilder(h)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range reps[1:] {
			if err := b.Add(decoded(t, m).(*wire.ModelChunk)); err != nil {
				t.Fatal(err)
			}
		}
		m, err := b.Model()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, want := wire.Digest(m), wire.Digest(cur.Model)
		if h.Float32 {
			got, want = wire.Digest32(m), wire.Digest32(cur.Model)
		}
		if got != want || string(h.Digest) != string(want[:]) {
			t.Errorf("%s: received model does not match its digest", name)
		}
	}
	if h, ok := decoded(t, have[0]).(*wire.ModelHeader); len(have) != 1 || !ok || !h.Current || h.Model != cur.Version {
		t.Errorf("GetModel(have %d) = %d frames, header %+v; want the header alone, Current", cur.Version, len(have), h)
	}
}

// A download for a round whose group has every upload it wants is
// refused with CodeNoRound and a time to come back, so that a device that
// starts late spends nothing on it; before that, for another round, or
// for no round, the model is served.
func TestDownloadForFullRound(t *testing.T) {
	tr := testTraining()
	tr.ClientsPerRound, tr.OverSelect, tr.MinClients = 1, 1, 1 // a cohort of 2, closed by 1 upload
	tr.CheckInWindow = time.Hour                               // select only when both are here
	c := newTestCluster(t, 1, tr)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	l := c.leader(ctx)
	plans := make(chan *wire.Plan, 2)
	for _, id := range []string{"a", "b"} {
		go func() {
			p, _ := call(ctx, l, &wire.CheckIn{Version: wire.Version, ClientID: id})[0].(*wire.Plan)
			if p != nil {
				p.Cohort = []string{id} // who it is, for the test
			}
			plans <- p
		}()
	}
	pa, pb := <-plans, <-plans
	if pa == nil || pb == nil {
		t.Fatal("not selected")
	}
	get := func(round uint64) wire.Message {
		return decoded(t, call(ctx, l, &wire.GetModel{Version: wire.Version, Model: pa.Model, Float32: true, Round: round})[0])
	}
	if _, ok := get(pa.Round).(*wire.ModelHeader); !ok {
		t.Fatalf("download for round %d before any upload: %+v, want the model", pa.Round, get(pa.Round))
	}
	up := &wire.Upload{Version: wire.Version, Round: pa.Round, ClientID: pa.Cohort[0], Ticket: pa.Ticket, Model: pa.Model, N: 1, Delta: constDelta(c.dim(), 0.01)}
	if rep := call(ctx, l, up); rep[0].Type() != wire.TypeUploadAck {
		t.Fatalf("upload: %+v", rep[0])
	}
	if e, ok := get(pb.Round).(*wire.Error); !ok || e.Code != wire.CodeNoRound || e.RetryAfterMs <= 0 {
		t.Errorf("download for the full round %d: %+v, want CodeNoRound with a retry time", pb.Round, e)
	}
	for _, round := range []uint64{0, pb.Round + 5} {
		if m, ok := get(round).(*wire.ModelHeader); !ok || m.Model != pa.Model {
			t.Errorf("download for round %d: %+v, want model %d", round, m, pa.Model)
		}
	}
}
