package wire

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fedrec/fedrec/aggregation/secagg"
)

// The upgrade rule (DESIGN.md, "Upgrades"): a newer node reads every
// entry, snapshot and message an older one wrote. testdata/v1/ holds the
// golden files of the first release, frozen: never regenerate them. Each
// must decode with the current code into the value it was made from (new
// fields zero), and re-encoding that value must give the same bytes, so
// that a node of this release still writes what a v1 node reads as long as
// no new field is set. The expected values are frozen here too, apart from
// the shared samples' helpers: do not edit them when the samples change.

const v1Dir = "testdata/v1"

func v1Digest(seed byte) []byte { return digest32(seed) }

func v1SecAgg() *SecAggParams {
	return &SecAggParams{Clients: 3, Threshold: 2, MinSurvivors: 2, Bits: 32, Clip: 0.5, Seed: v1Digest(9), RotationSeed: v1Digest(10), PhaseMs: 5000}
}

func v1Header() SecAggHeader {
	return SecAggHeader{Version: 1, Round: 7, ClientID: "user-42", Ticket: bytes.Repeat([]byte{0xab}, 16)}
}

func v1Keys(id uint32) SecAggKeys {
	return SecAggKeys{Client: id, ConfigDigest: v1Digest(byte(id)), CipherKey: v1Digest(byte(id) + 40), MaskKey: v1Digest(byte(id) + 80)}
}

func v1Config() TrainingConfig {
	return TrainingConfig{
		Kind: 1, Items: 3, Rank: 2, Mean: 3.5, InitStd: 0.1, Seed: 1,
		Train:     TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10},
		Optimizer: OptimizerParams{Name: "fedadam", LR: 0.1, Tau: 1e-3},
		Clip:      1, ClientsPerRound: 100, OverSelect: 0.3, MinClients: 10,
		CheckInWindowMs: 2000, RoundTimeoutMs: 30000, KeepModels: 5, Population: 610,
	}
}

func v1Messages() map[string]Message {
	tk := bytes.Repeat([]byte{0xab}, 16)
	train := TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10}
	return map[string]Message{
		"error":                &Error{Code: 6, Message: "ask the leader", Leader: "127.0.0.1:7001", RetryAfterMs: 100},
		"checkin":              &CheckIn{Version: 1, ClientID: "user-42", Examples: 17, Have: 3},
		"wait":                 &Wait{Round: 7, Model: 6, RetryAfterMs: 1500},
		"plan":                 &Plan{Round: 7, Model: 6, Digest: v1Digest(1), Kind: 1, Items: 3, Rank: 2, Train: train, Clip: 0.5, Privacy: PrivacyParams{NoiseMultiplier: 1.1, SamplingRate: 0.01}, TimeLeftMs: 30000, Ticket: tk},
		"getmodel":             &GetModel{Version: 1, Model: 6},
		"modelheader":          &ModelHeader{Model: 6, Round: 5, Digest: v1Digest(2), Kind: 1, Items: 3, Rank: 2, Chunks: 1},
		"modelchunk":           &ModelChunk{Index: 0, Params: Vec{0.1, -0.2, 0.3, 0, 1, 2, 3, 4, 5, 3.5}},
		"upload":               &Upload{Version: 1, Round: 7, ClientID: "user-42", Ticket: tk, Model: 6, Loss: 12.5, N: 17, Delta: Vec{0.01, -0.02, 0, 0, 0, 0, 0, 0, 0.5, math.SmallestNonzeroFloat64}},
		"uploadack":            &UploadAck{Round: 7},
		"join":                 &Join{Version: 1, ID: "b", RaftAddr: "127.0.0.1:8002", ClientAddr: "127.0.0.1:7002"},
		"joinack":              &JoinAck{Leader: "a"},
		"plan_secagg":          &Plan{Round: 7, Model: 6, Digest: v1Digest(1), Kind: 1, Items: 3, Rank: 2, Train: train, Clip: 0.5, TimeLeftMs: 30000, Ticket: tk, SecAgg: v1SecAgg(), SecAggID: 2},
		"secagg_advert":        &SecAggAdvert{SecAggHeader: v1Header(), Keys: v1Keys(2)},
		"secagg_peerkeys":      &SecAggPeerKeys{Round: 7, To: 2, Peers: []SecAggKeys{v1Keys(0), v1Keys(1)}},
		"secagg_shares":        &SecAggShares{SecAggHeader: v1Header(), Shares: []SealedShare{{Peer: 0, Ciphertext: bytes.Repeat([]byte{7}, secagg.SealedShareLen)}}},
		"secagg_delivery":      &SecAggDelivery{Round: 7, To: 2, Shares: []SealedShare{{Peer: 1, Ciphertext: bytes.Repeat([]byte{8}, secagg.SealedShareLen)}}},
		"secagg_masked":        &SecAggMasked{SecAggHeader: v1Header(), Width: 4, Values: []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}},
		"secagg_unmaskrequest": &SecAggUnmaskRequest{Round: 7, To: 2, Survivors: []uint32{0}, Dropped: []uint32{1}},
		"secagg_unmask":        &SecAggUnmask{SecAggHeader: v1Header(), SelfMaskShares: []Share{{Peer: 0, Value: []uint64{1, 2, 3, 4, 5}}}, MaskKeyShares: []Share{{Peer: 1, Value: []uint64{6, 7, 8, 9, 10}}}},
	}
}

func v1Commands() map[string]Command {
	params := Vec{0.1, -0.2, 0.3, 0, 1, 2, 3, 4, 5, 3.5}
	secaggCfg := v1Config()
	secaggCfg.SecAgg, secaggCfg.SecAggPhaseMs = true, 5000
	return map[string]Command{
		"setconfig":        &SetConfig{Config: v1Config()},
		"initmodel":        &InitModel{Kind: 1, Items: 3, Rank: 2, Params: params, Digest: v1Digest(3)},
		"registernode":     &RegisterNode{ID: "a", ClientAddr: "127.0.0.1:7001"},
		"openround":        &OpenRound{Round: 7, Model: 6, Digest: v1Digest(4), Cohort: []string{"u1", "u2"}, Clip: 1, Privacy: PrivacyParams{SamplingRate: 0.1}, Leader: "a"},
		"commitround":      &CommitRound{Round: 7, Model: 6, Params: params, Digest: v1Digest(5), OptM: make(Vec, 10), OptV: make(Vec, 10), Cohort: 2, Survivors: 2, Loss: 3, N: 30, Privacy: PrivacyParams{SamplingRate: 0.1}},
		"abandonround":     &AbandonRound{Round: 8, Survivors: 1, Reason: "too few survivors"},
		"openround_secagg": &OpenRound{Round: 7, Model: 6, Digest: v1Digest(4), Cohort: []string{"u1", "u2", "u3"}, Clip: 0.5, Leader: "a", SecAgg: v1SecAgg()},
		"setconfig_secagg": &SetConfig{Config: secaggCfg},
	}
}

func v1Records() []Record {
	cfg := v1Config()
	return []Record{
		&cfg,
		&RegisterNode{ID: "a", ClientAddr: "127.0.0.1:7001"},
		&ModelRecord{Version: 6, Round: 5, Digest: v1Digest(6), Kind: 1, Items: 3, Rank: 2, Params: Vec{0.1, -0.2, 0.3, 0, 1, 2, 3, 4, 5, 3.5}},
		&OptimizerRecord{M: make(Vec, 10), V: Vec{1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6}},
		&RoundRecord{Round: 5, Outcome: 1, Model: 5, NewModel: 6, Cohort: 10, Survivors: 9, Loss: 3, N: 100},
		&RoundRecord{Round: 6, Outcome: 2, Model: 6, Cohort: 10, Survivors: 2, Reason: "too few survivors"},
		&LedgerEntry{Round: 5, SamplingRate: 0.01, NoiseMultiplier: 1.1, Steps: 1},
		&OpenRound{Round: 7, Model: 6, Digest: v1Digest(4), Cohort: []string{"u1"}, Leader: "a"},
		&Counters{LastRound: 7},
	}
}

func readV1(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(v1Dir, name))
	if err != nil {
		t.Fatalf("%v (testdata/v1 is frozen: restore it from git, never regenerate it)", err)
	}
	return b
}

// Every frozen file has an expected value, and every expected value a file.
func TestUpgradeV1Complete(t *testing.T) {
	want := map[string]bool{"snapshot.golden": true}
	for name := range v1Messages() {
		want["msg_"+name+".golden"] = true
	}
	for name := range v1Commands() {
		want["cmd_"+name+".golden"] = true
	}
	ents, err := os.ReadDir(v1Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !want[e.Name()] {
			t.Errorf("testdata/v1/%s has no expected value in upgrade_test.go", e.Name())
		}
		delete(want, e.Name())
	}
	for name := range want {
		t.Errorf("testdata/v1/%s is missing", name)
	}
}

func TestUpgradeV1Messages(t *testing.T) {
	for name, want := range v1Messages() {
		t.Run(name, func(t *testing.T) {
			b := readV1(t, "msg_"+name+".golden")
			got, err := Read(bytes.NewReader(b), Limits{})
			if err != nil {
				t.Fatalf("a v1 %s no longer reads: %v", name, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("v1 %s reads as %+v, want %+v", name, got, want)
			}
			if again, err := Encode(want); err != nil || !bytes.Equal(again, b) {
				t.Errorf("Encode(v1 %s) = %x, %v; want the v1 bytes %x (a field without omitempty was added?)", name, again, err, b)
			}
		})
	}
}

func TestUpgradeV1Commands(t *testing.T) {
	for name, want := range v1Commands() {
		t.Run(name, func(t *testing.T) {
			b := readV1(t, "cmd_"+name+".golden")
			got, err := DecodeCommand(b)
			if err != nil {
				t.Fatalf("a v1 %s log entry no longer decodes (a node would panic on it): %v", name, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("v1 %s decodes as %+v, want %+v", name, got, want)
			}
			if again, err := EncodeCommand(want); err != nil || !bytes.Equal(again, b) {
				t.Errorf("EncodeCommand(v1 %s) = %x, %v; want the v1 bytes %x", name, again, err, b)
			}
		})
	}
}

func TestUpgradeV1Snapshot(t *testing.T) {
	b := readV1(t, "snapshot.golden")
	got := readSnapshot(t, b)
	want := v1Records()
	if len(got) != len(want) {
		t.Fatalf("v1 snapshot holds %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("v1 snapshot record %d reads as %+v, want %+v", i, got[i], want[i])
		}
	}
	var buf bytes.Buffer
	w, err := NewSnapshotWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range want {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), b) {
		t.Error("writing the v1 records no longer gives the v1 snapshot's bytes")
	}
}

// Versions and type numbers only move forward: the v1 values still mean
// what they meant.
func TestUpgradeV1Numbers(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"CommandVersion", CommandVersion, 1},
		{"SnapshotVersion", SnapshotVersion, 1},
		{"Version", Version, 1},
		{"CmdAbandonRound", int(CmdAbandonRound), 6},
		{"RecEnd", int(RecEnd), 9},
		{"TypeSecAggUnmask", int(TypeSecAggUnmask), 18},
		{"CodeForbidden", int(CodeForbidden), 15},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, v1 had %d: a version bump needs a v%d directory and the upgrade rule's steps (DESIGN.md)", c.name, c.got, c.want, c.want+1)
		}
	}
	if !strings.HasSuffix(ALPN, "/1") {
		t.Errorf("ALPN = %q: a new major protocol needs its own v-directory of golden files", ALPN)
	}
}
