package wire

import (
	"bytes"
	"reflect"
	"testing"
)

// TestSnapshotGoldenDP keeps the snapshot records with the appended
// privacy fields readable; snapshot.golden keeps the older shape.
func TestSnapshotGoldenDP(t *testing.T) { snapshotGolden(t, "snapshot_dp.golden", sampleRecordsDP()) }

// TestSnapshotGoldenChanges pins the audit trail of training changes.
func TestSnapshotGoldenChanges(t *testing.T) {
	snapshotGolden(t, "snapshot_changes.golden", []Record{
		&TrainingChange{Change: ChangeTraining{MinClients: 5, Operator: "bob", Reason: "fewer devices at night", TimeMs: 1796601600000}, AfterRound: 6},
		&TrainingChange{Change: ChangeTraining{NoiseMultiplier: 1.3, Operator: "alice", TimeMs: 1796601700000}, AfterRound: 9},
		&Counters{LastRound: 9},
	})
}

func snapshotGolden(t *testing.T, name string, recs []Record) {
	t.Helper()
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
	golden(t, name, buf.Bytes())
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
