package wire

import "testing"

// The parameters of a node's group name the node and the whole cohort,
// which holds the group; those of a whole cohort name neither.
func TestSecAggParamsGroupValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(p *SecAggParams)
		ok   bool
	}{
		{"whole cohort", func(*SecAggParams) {}, true},
		{"group", func(p *SecAggParams) { p.Group, p.Cohort = "n1", 9 }, true},
		{"group of the whole cohort", func(p *SecAggParams) { p.Group, p.Cohort = "n1", 3 }, true},
		{"group without its cohort", func(p *SecAggParams) { p.Group = "n1" }, false},
		{"cohort smaller than the group", func(p *SecAggParams) { p.Group, p.Cohort = "n1", 2 }, false},
		{"cohort beyond any", func(p *SecAggParams) { p.Group, p.Cohort = "n1", maxCohort+1 }, false},
		{"cohort without a group", func(p *SecAggParams) { p.Cohort = 9 }, false},
		{"group id too long", func(p *SecAggParams) { p.Group, p.Cohort = string(make([]byte, MaxIDLen+1)), 9 }, false},
		{"signed round of listed devices", func(p *SecAggParams) { p.Signed, p.Roster = true, true }, true},
		{"roster without signatures", func(p *SecAggParams) { p.Roster = true }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sampleSecAgg()
			tc.edit(p)
			if err := p.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
	p := sampleGroupSecAgg("n1")
	if p.SumClients() != 6 || sampleSecAgg().SumClients() != 3 {
		t.Errorf("SumClients = %d and %d, want the cohort's 6 and the clients' 3", p.SumClients(), sampleSecAgg().SumClients())
	}
	// The graph seed binds the node; the rotation is the round's.
	g1, r1 := p.WantSeeds(7, digest32(1), nil)
	p.Group = "n2"
	g2, r2 := p.WantSeeds(7, digest32(1), nil)
	_, r0 := SecAggSeeds(7, digest32(1))
	if g1 == g2 || r1 != r2 || r1 != r0 {
		t.Error("a group's graph seed ignores its node, or its rotation is not the round's")
	}
}
