package round

import (
	"context"
	"crypto/sha256"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// refuse is an Exchanger that fails the test if anything is sent.
type refuse struct{ t *testing.T }

func (r refuse) Exchange(context.Context, wire.Message, func(wire.Message) (bool, error)) error {
	r.t.Error("the device sent a message")
	return errors.New("sent")
}

// signedPlan is the plan of device 1 of a signed round of cohort a, b, c.
func signedPlan() *wire.Plan {
	digest := sha256.Sum256([]byte("model"))
	cohort := []string{"a", "b", "c"}
	graph := wire.SecAggSignedSeed(5, digest[:], cohort)
	_, rot := wire.SecAggSeeds(5, digest[:])
	return &wire.Plan{Round: 5, Model: 4, Digest: digest[:], Clip: 0.5, MinClients: 2, TimeLeftMs: 1000, Ticket: make([]byte, wire.TicketLen),
		SecAgg:   &wire.SecAggParams{Clients: 3, Threshold: 2, MinSurvivors: 2, Bits: 32, Clip: 0.5, Seed: graph[:], RotationSeed: rot[:], PhaseMs: 1000, Signed: true},
		SecAggID: 1, Cohort: cohort}
}

// A device refuses a signed round before it sends anything when it has no
// identity, when the plan's cohort does not put it at its index or does
// not match the round's graph seed, and when the threshold does not resist
// the colluders its policy expects.
func TestSecureSignedRefusals(t *testing.T) {
	ident := func([]string, bool) (secagg.Identity, error) { return nil, errors.New("no identity wanted here") }
	for _, tc := range []struct {
		name string
		edit func(p *wire.Plan)
		sign SecureOptions
		want string
	}{
		{"no identity", func(*wire.Plan) {}, SecureOptions{}, "no identity"},
		{"another device's index", func(p *wire.Plan) { p.SecAggID = 0 }, SecureOptions{Identity: ident}, "index 0"},
		{"cohort not bound by the seed", func(p *wire.Plan) { p.Cohort = []string{"c", "b", "a"} }, SecureOptions{Identity: ident}, "seeds"},
		{"no cohort", func(p *wire.Plan) { p.Cohort = nil }, SecureOptions{Identity: ident}, "cohort of 0"},
		{"threshold below the colluders", func(*wire.Plan) {}, SecureOptions{Identity: ident, Colluders: 2}, "Threshold"},
		{"the identity fails", func(*wire.Plan) {}, SecureOptions{Identity: ident}, "no identity wanted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := signedPlan()
			tc.edit(p)
			_, _, err := Secure(t.Context(), refuse{t}, "b", p, make([]float64, 8), false, rand.New(rand.NewPCG(1, 2)), tc.sign)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Secure() = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// models is an Exchanger that serves a model as a node does: its header,
// then its chunks while recv asks for more. It counts the chunks taken.
type models struct {
	hdr    *wire.ModelHeader
	chunks []*wire.ModelChunk
	taken  int
}

func (s *models) Exchange(_ context.Context, _ wire.Message, recv func(wire.Message) (bool, error)) error {
	if done, err := recv(s.hdr); done || err != nil {
		return err
	}
	for _, c := range s.chunks {
		s.taken++
		if done, err := recv(c); done || err != nil {
			return err
		}
	}
	return errors.New("the model ended early")
}

// Newer downloads only a model newer than the device's: for one it holds
// already it reads the header and no chunk.
func TestNewer(t *testing.T) {
	m, err := model.New(model.Implicit, 20_000, 8, 0, 0.1, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	hdr, chunks := wire.SplitModel(m, 7, 0)
	if len(chunks) < 2 {
		t.Fatalf("%d chunks, want several", len(chunks))
	}
	for _, tt := range []struct {
		have      uint64
		wantModel bool
	}{{0, true}, {6, true}, {7, false}, {8, false}} {
		s := &models{hdr: hdr, chunks: chunks}
		got, h, err := Newer(t.Context(), s, tt.have)
		switch {
		case err != nil:
			t.Fatalf("Newer(have %d): %v", tt.have, err)
		case h == nil || h.Model != 7:
			t.Errorf("Newer(have %d): header %+v, want model 7's", tt.have, h)
		case (got != nil) != tt.wantModel:
			t.Errorf("Newer(have %d) returned a model: %v, want %v", tt.have, got != nil, tt.wantModel)
		case tt.wantModel && s.taken != len(chunks):
			t.Errorf("Newer(have %d) read %d of %d chunks", tt.have, s.taken, len(chunks))
		case !tt.wantModel && s.taken != 0:
			t.Errorf("Newer(have %d) read %d chunks of a model it holds, want 0", tt.have, s.taken)
		}
	}
}

// NewUpload clips what it sends and says whether the update was within the
// clip: a float64 upload clipped in place (unless the caller clipped it
// already), an 8-bit one clipped by the quantizer, x then untouched.
func TestNewUploadClips(t *testing.T) {
	for _, tc := range []struct {
		name       string
		bits       uint8
		norm       float64
		preClipped bool
		wantBelow  bool
	}{
		{"float64 within the clip", 0, 0.3, false, true},
		{"float64 beyond it", 0, 2, false, false},
		{"float64 clipped already", 0, 0.5, true, false},
		{"8-bit within the clip", wire.UploadBits8, 0.3, false, true},
		{"8-bit beyond it", wire.UploadBits8, 2, false, false},
		{"8-bit clipped already", wire.UploadBits8, 0.5, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const clip = 0.5
			plan := &wire.Plan{Round: 3, Model: 2, Digest: make([]byte, 32), Clip: clip, UploadBits: tc.bits}
			x := []float64{3, 4, 0, 0, 0}
			for i := range x {
				x[i] *= tc.norm / 5
			}
			orig := append([]float64(nil), x...)
			up, norm, _, err := NewUpload(plan, "d", 0.1, 2, x, tc.preClipped, rand.New(rand.NewPCG(1, 2)), nil)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(norm-tc.norm) > 1e-12 || up.BelowClip != tc.wantBelow {
				t.Errorf("NewUpload: norm %v, BelowClip %v, want %v, %v", norm, up.BelowClip, tc.norm, tc.wantBelow)
			}
			wantX := orig
			if tc.bits == 0 && tc.norm > clip {
				wantX = []float64{0.3, 0.4, 0, 0, 0} // clipped to 0.5
			}
			for i := range x {
				if math.Abs(x[i]-wantX[i]) > 1e-12 {
					t.Fatalf("NewUpload left x = %v, want %v", x, wantX)
				}
			}
			if tc.bits == wire.UploadBits8 && len(up.Quantized) != len(x) {
				t.Errorf("NewUpload: %d bytes, want %d", len(up.Quantized), len(x))
			}
		})
	}
}

// A device's secure round computes within SecureOptions.Compute: when the
// gate refuses (its context ended while waiting for a core, say), the
// device stops before encoding its update or sending anything.
func TestSecureComputeGate(t *testing.T) {
	p := signedPlan()
	p.SecAgg.Signed, p.Cohort = false, nil
	graph, rot := p.SecAgg.WantSeeds(p.Round, p.Digest, nil)
	p.SecAgg.Seed, p.SecAgg.RotationSeed = graph[:], rot[:]
	calls := 0
	gate := func(context.Context) (func(), error) {
		calls++
		return nil, context.DeadlineExceeded
	}
	_, _, err := Secure(t.Context(), refuse{t}, "b", p, make([]float64, 8), false, rand.New(rand.NewPCG(1, 2)), SecureOptions{Compute: gate})
	if !errors.Is(err, context.DeadlineExceeded) || calls != 1 {
		t.Errorf("Secure() = %v after %d calls of the gate, want the gate's error after 1", err, calls)
	}
}
