package wire

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fedrec/fedrec/aggregation/secagg"
)

func TestPackWords(t *testing.T) {
	for _, bits := range []int{8, 10, 16, 17, 32, 33, 64} {
		v := []uint64{0, 1, 1<<bits - 1, 12345 & (1<<bits - 1)}
		if bits == 64 {
			v[2] = ^uint64(0)
		}
		w, b := PackWords(v, bits)
		m := &SecAggMasked{SecAggHeader: sampleHeader(), Width: w, Values: b}
		if err := m.Validate(); err != nil || int(w) != (bits+7)/8 {
			t.Fatalf("bits %d: width %d, %v; want %d", bits, w, err, (bits+7)/8)
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
		"unsigned cohort":  plan(func(p *Plan) { p.Cohort = []string{"a", "b", "c"} }),
		"short cohort":     plan(func(p *Plan) { p.SecAgg.Signed, p.Cohort = true, []string{"a", "b"} }),
		"empty cohort id":  plan(func(p *Plan) { p.SecAgg.Signed, p.Cohort = true, []string{"a", "", "c"} }),
		"bad width":        &SecAggMasked{SecAggHeader: sampleHeader(), Width: 9, Values: make([]byte, 9)},
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

// TestSecAggSignedValidate checks the bounds of the signed rounds' fields
// and messages.
func TestSecAggSignedValidate(t *testing.T) {
	tag := make([]byte, secagg.TagLen)
	tags := []SecAggTag{{Peer: 0, Tag: tag}}
	for name, m := range map[string]Message{
		"check with short tag":     &SecAggCheck{SecAggHeader: sampleHeader(), Tags: []SecAggTag{{Peer: 0, Tag: tag[1:]}}},
		"check with long tag":      &SecAggCheck{SecAggHeader: sampleHeader(), Tags: []SecAggTag{{Peer: 0, Tag: append(tag, 0)}}},
		"check with many tags":     &SecAggCheck{SecAggHeader: sampleHeader(), Tags: make([]SecAggTag, MaxSecAggPeers+1)},
		"check without ticket":     &SecAggCheck{SecAggHeader: SecAggHeader{Version: Version, Round: 7, ClientID: "c"}, Tags: tags},
		"check request too large":  &SecAggCheckRequest{Round: 7, To: 1, Survivors: make([]uint32, secagg.MaxClients+1)},
		"unmask request empty tag": &SecAggUnmaskRequest{Round: 7, To: 1, Tags: []SecAggTag{{Peer: 0}}},
		"unmask request long tag":  &SecAggUnmaskRequest{Round: 7, To: 1, Tags: []SecAggTag{{Peer: 0, Tag: make([]byte, secagg.TagLen+1)}}},
		"unmask request many tags": &SecAggUnmaskRequest{Round: 7, To: 1, Tags: make([]SecAggTag, MaxSecAggPeers+1)},
		"advert long credential": &SecAggAdvert{SecAggHeader: sampleHeader(), Keys: func() SecAggKeys {
			k := sampleKeys(1)
			k.Credential = make([]byte, secagg.MaxCredentialLen+1)
			return k
		}()},
	} {
		if err := m.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil, want an error", name)
		}
	}
}

// TestSecAggSignedConversions round-trips the signed fields through the
// secagg types.
func TestSecAggSignedConversions(t *testing.T) {
	k := sampleSignedKeys(3)
	if got := SecAggKeysOf(k.KeyAdvert(7)); !reflect.DeepEqual(got, k) {
		t.Errorf("SecAggKeysOf(KeyAdvert(k)) = %+v, want %+v", got, k)
	}
	cr := &SecAggCheckRequest{Round: 7, To: 2, Survivors: []uint32{0, 2}}
	if got := CheckRequestOf(cr.ConsistencyRequest()); !reflect.DeepEqual(got, cr) {
		t.Errorf("CheckRequestOf(ConsistencyRequest()) = %+v, want %+v", got, cr)
	}
	ts := []SecAggTag{{Peer: 1, Tag: []byte{9}}}
	if got := TagsOf(ConsistencyTags(ts)); !reflect.DeepEqual(got, ts) {
		t.Errorf("TagsOf(ConsistencyTags(s)) = %+v, want %+v", got, ts)
	}
	if p := (&SecAggParams{Signed: true, Clients: 3}).Config(7, 4); !p.Signed {
		t.Error("SecAggParams.Config drops Signed")
	}
}

// TestQuantizedSecAggBits: a quantized round's parameters need enough bits
// for its cohort's sum.
func TestQuantizedSecAggBits(t *testing.T) {
	p := sampleSecAgg()
	p.Quantized, p.Bits = true, 9 // 3 clients' bytes sum to ±381: 10 bits
	if err := p.Validate(); CodeOf(err) != CodeMalformed {
		t.Errorf("Validate(9 bits for 3 quantized clients) = %v, want CodeMalformed", err)
	}
	p.Bits = 10
	if err := p.Validate(); err != nil {
		t.Errorf("Validate(10 bits for 3 quantized clients) = %v", err)
	}
}
