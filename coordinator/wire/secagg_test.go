package wire

import (
	"slices"
	"strings"
	"testing"
)

func TestPackWords(t *testing.T) {
	for _, bits := range []int{8, 32, 33, 64} {
		v := []uint64{0, 1, 1<<bits - 1, 12345 & (1<<bits - 1)}
		if bits == 64 {
			v[2] = ^uint64(0)
		}
		w, b := PackWords(v, bits)
		m := &SecAggMasked{SecAggHeader: sampleHeader(), Width: w, Values: b}
		if err := m.Validate(); err != nil {
			t.Fatalf("bits %d: %v", bits, err)
		}
		if got := m.Words(); !slices.Equal(got, v) {
			t.Errorf("Words(PackWords(%v, %d)) = %v", v, bits, got)
		}
	}
}

func TestSecAggValidate(t *testing.T) {
	plan := func(f func(p *Plan)) *Plan {
		m := sampleMessages()["plan_secagg"].(*Plan)
		f(m)
		return m
	}
	for name, m := range map[string]Message{
		"two clients":      plan(func(p *Plan) { p.SecAgg.Clients = 2 }),
		"odd degree":       plan(func(p *Plan) { p.SecAgg.Degree = 3 }),
		"threshold 1":      plan(func(p *Plan) { p.SecAgg.Threshold = 1 }),
		"few survivors":    plan(func(p *Plan) { p.SecAgg.MinSurvivors = 1 }),
		"zero clip":        plan(func(p *Plan) { p.SecAgg.Clip = 0 }),
		"short seed":       plan(func(p *Plan) { p.SecAgg.Seed = p.SecAgg.Seed[:16] }),
		"id out of cohort": plan(func(p *Plan) { p.SecAggID = 3 }),
		"bad width":        &SecAggMasked{SecAggHeader: sampleHeader(), Width: 3, Values: []byte{1, 2, 3}},
		"ragged values":    &SecAggMasked{SecAggHeader: sampleHeader(), Width: 4, Values: []byte{1, 2, 3}},
		"no ticket":        &SecAggAdvert{SecAggHeader: SecAggHeader{Version: Version, Round: 1, ClientID: "a"}, Keys: sampleKeys(0)},
		"short key":        &SecAggAdvert{SecAggHeader: sampleHeader(), Keys: SecAggKeys{ConfigDigest: digest32(0), CipherKey: digest32(1)[:31], MaskKey: digest32(2)}},
		"short ciphertext": &SecAggShares{SecAggHeader: sampleHeader(), Shares: []SealedShare{{Peer: 1, Ciphertext: []byte{1}}}},
		"short share":      &SecAggUnmask{SecAggHeader: sampleHeader(), MaskKeyShares: []Share{{Peer: 1, Value: []uint64{1}}}},
	} {
		err := m.Validate()
		if CodeOf(err) != CodeMalformed {
			t.Errorf("%s: Validate() = %v, want CodeMalformed", name, err)
		}
	}
}

func TestSecAggSeeds(t *testing.T) {
	g1, r1 := SecAggSeeds(7, digest32(1))
	g2, r2 := SecAggSeeds(8, digest32(1))
	g3, _ := SecAggSeeds(7, digest32(2))
	if g1 == r1 || g1 == g2 || r1 == r2 || g1 == g3 {
		t.Error("seeds of different rounds, models or purposes coincide")
	}
	if !strings.Contains(TypeSecAggUnmask.String(), "SecAgg") {
		t.Errorf("TypeSecAggUnmask.String() = %q", TypeSecAggUnmask.String())
	}
}
