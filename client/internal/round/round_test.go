package round

import (
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/fedrec/fedrec/coordinator/wire"
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
	ident := func([]string) (secagg.Identity, error) { return nil, errors.New("no identity wanted here") }
	for _, tc := range []struct {
		name string
		edit func(p *wire.Plan)
		sign Signing
		want string
	}{
		{"no identity", func(*wire.Plan) {}, Signing{}, "no identity"},
		{"another device's index", func(p *wire.Plan) { p.SecAggID = 0 }, Signing{Identity: ident}, "index 0"},
		{"cohort not bound by the seed", func(p *wire.Plan) { p.Cohort = []string{"c", "b", "a"} }, Signing{Identity: ident}, "seeds"},
		{"no cohort", func(p *wire.Plan) { p.Cohort = nil }, Signing{Identity: ident}, "cohort of 0"},
		{"threshold below the colluders", func(*wire.Plan) {}, Signing{Identity: ident, Colluders: 2}, "Threshold"},
		{"the identity fails", func(*wire.Plan) {}, Signing{Identity: ident}, "no identity wanted"},
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
