package wire

import (
	"bytes"
	"math"
	"reflect"
	"testing"
)

// TestSnapshotGoldenImplicit keeps an implicit cluster's configuration,
// with its event weights, readable from snapshots.
func TestSnapshotGoldenImplicit(t *testing.T) {
	cfg := sampleCommands()["setconfig_implicit"].(*SetConfig).Config
	recs := []Record{&cfg, &Counters{LastRound: 7}}
	var buf bytes.Buffer
	w, err := NewSnapshotWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	golden(t, "snapshot_implicit.golden", buf.Bytes())
	if got := readSnapshot(t, buf.Bytes()); !reflect.DeepEqual(got, recs) {
		t.Errorf("records = %+v, want %+v", got, recs)
	}
}

func TestEventWeightsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    EventWeights
		ok   bool
	}{
		{"defaults", DefaultEventWeights(), true},
		{"one kind", EventWeights{Purchase: 1}, true},
		{"all zero", EventWeights{}, false},
		{"negative", EventWeights{View: -1, Purchase: 8}, false},
		{"nan", EventWeights{View: math.NaN(), Purchase: 8}, false},
		{"inf", EventWeights{Cart: math.Inf(1)}, false},
	} {
		if err := tc.w.Validate(); (err == nil) != tc.ok || (err != nil && CodeOf(err) != CodeMalformed) {
			t.Errorf("%s: Validate(%+v) = %v, want ok %v (else CodeMalformed)", tc.name, tc.w, err, tc.ok)
		}
	}
}

// badEventFrames are a plan and a model header whose event weights a
// device must refuse.
func badEventFrames() map[string][]byte {
	out := map[string][]byte{}
	for name, w := range map[string]EventWeights{
		"nan":      {View: math.NaN(), Purchase: 8},
		"negative": {View: 1, Click: -2},
		"zero":     {},
	} {
		p := *sampleMessages()["plan_implicit"].(*Plan)
		p.Train.Events = &w
		h := *sampleMessages()["modelheader_implicit"].(*ModelHeader)
		h.Events = &w
		for kind, m := range map[string]Message{"plan": &p, "header": &h} {
			b, err := Encode(m)
			if err != nil {
				panic(err)
			}
			out[kind+" "+name] = b
		}
	}
	return out
}

// Event weights are checked where the bytes arrive: a plan or model header
// carrying weights that are not finite, negative or all zero is refused.
func TestReadBadEventWeights(t *testing.T) {
	for name, b := range badEventFrames() {
		if _, err := Read(bytes.NewReader(b), Limits{}); CodeOf(err) != CodeMalformed {
			t.Errorf("Read(%s) = %v, want CodeMalformed", name, err)
		}
	}
}

// Plans, headers and configurations of explicit models, and those written
// before the field existed, carry no event weights: their bytes are the old
// ones.
func TestEventWeightsOmitted(t *testing.T) {
	for name, m := range map[string]Message{"plan": sampleMessages()["plan"], "modelheader": sampleMessages()["modelheader"]} {
		if b := mustEncode(t, m); bytes.Contains(b, []byte("events")) {
			t.Errorf("%s without event weights encodes an events key", name)
		}
	}
	b, err := EncodeCommand(sampleCommands()["setconfig"])
	if err != nil || bytes.Contains(b, []byte("events")) {
		t.Errorf("EncodeCommand(explicit config) = %v; holds an events key: %v", err, bytes.Contains(b, []byte("events")))
	}
}
