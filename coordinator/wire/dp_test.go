package wire

import (
	"bytes"
	"reflect"
	"testing"
)

// TestSnapshotGoldenDP keeps the snapshot records with the appended
// privacy fields readable; snapshot.golden keeps the older shape.
func TestSnapshotGoldenDP(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewSnapshotWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	recs := sampleRecordsDP()
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	golden(t, "snapshot_dp.golden", buf.Bytes())
	if got := readSnapshot(t, buf.Bytes()); !reflect.DeepEqual(got, recs) {
		t.Errorf("records = %+v, want %+v", got, recs)
	}
}

func TestPrivacyParamsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    PrivacyParams
		ok   bool
	}{
		{"zero", PrivacyParams{}, true},
		{"central", PrivacyParams{NoiseMultiplier: 1, SamplingRate: 0.1}, true},
		{"distributed", PrivacyParams{NoiseMultiplier: 1, Mechanism: MechSkellam, NoiseClients: 3}, true},
		{"distributed without shares", PrivacyParams{NoiseMultiplier: 1, Mechanism: MechSkellam}, false},
		{"unknown mechanism", PrivacyParams{Mechanism: 9}, false},
		{"q > 1", PrivacyParams{SamplingRate: 1.5}, false},
		{"negative count noise", PrivacyParams{CountStddev: -1}, false},
		{"negative variance", PrivacyParams{Variance: -1}, false},
	} {
		if err := tc.p.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate(%+v) = %v, want ok %v", tc.name, tc.p, err, tc.ok)
		}
	}
}
