package round

import (
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// groupPlan is the plan of device 1 of node n2's group a, b, c in a round
// whose cohort of 9 is split among the nodes.
func groupPlan(signed bool) *wire.Plan {
	digest := sha256.Sum256([]byte("model"))
	group := []string{"a", "b", "c"}
	sp := &wire.SecAggParams{Clients: 3, Threshold: 2, MinSurvivors: 2, Bits: 32, Clip: 0.5, PhaseMs: 1000, Signed: signed, Group: "n2", Cohort: 9}
	graph, rot := sp.WantSeeds(5, digest[:], group)
	sp.Seed, sp.RotationSeed = graph[:], rot[:]
	p := &wire.Plan{Round: 5, Model: 4, Digest: digest[:], Clip: 0.5, MinClients: 5, TimeLeftMs: 1000, Ticket: make([]byte, wire.TicketLen),
		SecAgg: sp, SecAggID: 1}
	if signed {
		p.Cohort = group
	}
	return p
}

// A device of a node's group refuses, before it sends anything, a plan
// whose graph seed does not bind the node (and, signed, the group), whose
// rotation is not the round's, or whose noise is split into more shares
// than the cohort has. A group smaller than the round's MinClients is
// fine: the leader counts the survivors over all groups.
func TestSecureGroupRefusals(t *testing.T) {
	other, _ := wire.SecAggSeeds(5, make([]byte, 32))
	for _, tc := range []struct {
		name   string
		signed bool
		edit   func(p *wire.Plan)
		want   string
	}{
		{"another node's seed", false, func(p *wire.Plan) { p.SecAgg.Group = "n3" }, "seeds"},
		{"the whole cohort's seed", false, func(p *wire.Plan) { g, _ := wire.SecAggSeeds(5, p.Digest); p.SecAgg.Seed = g[:] }, "seeds"},
		{"a rotation of its own", false, func(p *wire.Plan) { p.SecAgg.RotationSeed = other[:] }, "seeds"},
		{"signed, members reordered", true, func(p *wire.Plan) { p.Cohort = []string{"c", "b", "a"} }, "seeds"},
		{"signed, another device at its index", true, func(p *wire.Plan) { p.Cohort = []string{"a", "x", "c"} }, "index"},
		{"more noise shares than devices", false, func(p *wire.Plan) {
			p.Privacy = wire.PrivacyParams{NoiseMultiplier: 1, Mechanism: wire.MechSkellam, NoiseClients: 10}
		}, "shares"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := groupPlan(tc.signed)
			tc.edit(p)
			var ident SecureOptions
			if tc.signed {
				ident.Identity = func([]string, bool) (secagg.Identity, error) {
					t.Error("the device reached its identity")
					return nil, errors.New("no identity")
				}
			}
			_, _, err := Secure(t.Context(), refuse{t}, "b", p, make([]float64, 8), false, rand.New(rand.NewPCG(1, 2)), ident)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Secure() = %v, want an error with %q", err, tc.want)
			}
		})
	}
}
