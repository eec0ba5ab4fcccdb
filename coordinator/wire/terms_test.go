package wire

import (
	"encoding/hex"
	"testing"
)

// A plan's terms digest is its manifest's, whatever the plan carries for
// one device alone, and changes with every term; its value is fixed (the
// devices keep it in their records).
func TestTermsDigest(t *testing.T) {
	sa := &SecAggParams{Clients: 5, Threshold: 3, MinSurvivors: 3, Bits: 32, Clip: 1, Seed: make([]byte, 32), RotationSeed: make([]byte, 32), PhaseMs: 1000, Signed: true}
	open := &OpenRound{Round: 7, Model: 3, Digest: make([]byte, 32), Cohort: []string{"a", "b", "c", "d", "e"}, Clip: 0.5,
		Privacy: PrivacyParams{NoiseMultiplier: 1.1, SamplingRate: 0.01}, Leader: "n1", SecAgg: sa}
	plan := &Plan{Round: 7, Model: 3, Digest: make([]byte, 32), Clip: 0.5, Privacy: open.Privacy, SecAgg: sa,
		Ticket: make([]byte, TicketLen), TimeLeftMs: 9000, SecAggID: 4, MinClients: 3, Cohort: open.Cohort}
	want := open.TermsDigest()
	if got := plan.TermsDigest(); got != want {
		t.Fatalf("Plan.TermsDigest = %x, the manifest's %x", got, want)
	}
	// Devices keep the digest: its value never changes.
	const golden = "4a8b933272339287298ed6015a2162835ee737758b007c7ff181c7a3de8b8c58"
	if hex.EncodeToString(want[:]) != golden {
		t.Errorf("TermsDigest = %x, want %s (unchanged)", want, golden)
	}
	for name, f := range map[string]func(p *Plan){
		"round":     func(p *Plan) { p.Round++ },
		"model":     func(p *Plan) { p.Model++ },
		"digest":    func(p *Plan) { p.Digest = append([]byte{1}, p.Digest[1:]...) },
		"clip":      func(p *Plan) { p.Clip = 0.6 },
		"noise":     func(p *Plan) { p.Privacy.NoiseMultiplier = 1 },
		"threshold": func(p *Plan) { s := *p.SecAgg; s.Threshold = 2; p.SecAgg = &s },
		"unsigned":  func(p *Plan) { s := *p.SecAgg; s.Signed = false; p.SecAgg = &s },
		"plaintext": func(p *Plan) { p.SecAgg = nil },
	} {
		p := *plan
		f(&p)
		if p.TermsDigest() == want {
			t.Errorf("%s: the terms digest does not change", name)
		}
	}
}
