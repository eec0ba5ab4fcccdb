package wire

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// adminSamples are one filled-in body of each admin API type, by golden
// file name.
func adminSamples() map[string]any {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	eps := 2.5
	next := uint64(42)
	node := func(id string, leader bool) StatusNode {
		return StatusNode{ID: id, RaftAddr: id + ":8001", ClientAddr: id + ":7001", AdminAddr: id + ":9001", Suffrage: "voter", Leader: leader}
	}
	a, b := node("a", true), node("b", false)
	build := Build{Version: "v1.2.0", Revision: "abc123", Modified: true, Time: "2026-02-01T00:00:00Z", GoVersion: "go1.26.8"}
	return map[string]any{
		"admin_status.json": &Status{
			Node: "a", State: "leader", Term: 3, Commit: 120, Applied: 120, LeaderCommit: 120, LastContact: 0, Ready: true,
			Leader: &a, Nodes: []StatusNode{a, b},
			Model:     &StatusModel{Version: 7, Round: 6, Digest: strings.Repeat("ab", 32)},
			Round:     &StatusRound{Round: 7, Model: 7, Cohort: 130, Leader: "a"},
			LastRound: 7, Privacy: StatusPrivacy{Epsilon: &eps, Delta: 1e-5, Rounds: 6},
			Build: build,
			Certs: &StatusCerts{Node: at, NodeSerial: "01ff", CA: at.AddDate(1, 0, 0), DeviceCA: &at},
		},
		"admin_status_follower.json": &Status{
			Node: "b", State: "follower", Term: 3, Commit: 119, Applied: 118, LeaderCommit: 120, LastContact: 0.2,
			NotReady: "applied 118 of 120", Nodes: []StatusNode{a, b}, InsecureDevices: true, Build: build,
		},
		"admin_rounds.json": &RoundsPage{Rounds: []RoundJSON{
			{Round: 6, Outcome: "committed", Model: 6, NewModel: 7, Cohort: 130, Survivors: 101, Clipped: 3, Loss: 0.81, N: 2400, Clip: 0.5, NextClip: 0.47},
			{Round: 7, Outcome: "abandoned", Model: 7, Cohort: 130, Survivors: 2, Reason: "2 survivors, fewer than 50", LossUnknown: true},
		}, Next: &next},
		"admin_model.json": &ModelManifest{Version: 7, Round: 6, Kind: "explicit", KindCode: 1, Items: 9742, Rank: 32, Params: 321487,
			Digest: strings.Repeat("cd", 32), Layout: "item i's factor at [i*(rank+1), i*(rank+1)+rank), its bias at i*(rank+1)+rank, the global mean last"},
		"admin_cluster.json":      &Cluster{Node: "b", Leader: &a, Nodes: []StatusNode{a, b}},
		"admin_clustererror.json": &ClusterError{Error: "not the leader", Leader: &a},
		"admin_training.json": &TrainingDoc{
			Settings: TrainingSettings{Objective: "explicit", Items: 9742, Rank: 32, Clip: 0.5, Population: 610, Noise: "central", SecAgg: true,
				ClientsPerRound: 100, MinClients: 50, CheckInWindow: "2s", RoundTimeout: "1m0s", SecAggPhase: "10s", NoiseMultiplier: 1.1},
			Changes: []TrainingChangeJSON{{AfterRound: 5, Time: at, Operator: "ops", Reason: "more clients", Set: map[string]any{"clients_per_round": 120.0}}},
		},
		"admin_build.json": &build,
	}
}

// TestAdminGolden: the admin API's bodies encode as their golden files,
// which DecodeAdmin reads back to the same values.
func TestAdminGolden(t *testing.T) {
	for name, v := range adminSamples() {
		t.Run(name, func(t *testing.T) {
			b, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name, append(b, '\n'))
			got, err := decodeAdminAs(v, b)
			if err != nil {
				t.Fatalf("DecodeAdmin(%s) = %v", name, err)
			}
			if !reflect.DeepEqual(got, v) {
				t.Errorf("DecodeAdmin(%s) = %+v, want %+v", name, got, v)
			}
		})
	}
}

// decodeAdminAs decodes b as the type of v.
func decodeAdminAs(v any, b []byte) (any, error) {
	switch v.(type) {
	case *Status:
		return DecodeAdmin[Status](b)
	case *RoundsPage:
		return DecodeAdmin[RoundsPage](b)
	case *ModelManifest:
		return DecodeAdmin[ModelManifest](b)
	case *Cluster:
		return DecodeAdmin[Cluster](b)
	case *ClusterError:
		return DecodeAdmin[ClusterError](b)
	case *TrainingDoc:
		return DecodeAdmin[TrainingDoc](b)
	case *Build:
		return DecodeAdmin[Build](b)
	}
	panic("decodeAdminAs: not an admin body")
}

func TestDecodeAdminRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", ``, "EOF"},
		{"not an object", `[1, 2]`, "cannot unmarshal"},
		{"wrong type", `{"term": "three"}`, "cannot unmarshal"},
		{"two objects", `{"term": 3} {"term": 4}`, "data after"},
		{"truncated", `{"term": 3`, "unexpected EOF"},
		{"too large", `{"node": "` + strings.Repeat("x", MaxAdminBody) + `"}`, "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeAdmin[Status]([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("DecodeAdmin[Status](%.40q) = %v, want an error with %q", tc.in, err, tc.want)
			}
		})
	}
	// A newer node's fields are ignored.
	st, err := DecodeAdmin[Status]([]byte(`{"term": 3, "field_of_v1_9": {"x": 1}}`))
	if err != nil || st.Term != 3 {
		t.Errorf("DecodeAdmin with an unknown field = %+v, %v; want term 3", st, err)
	}
}

// FuzzDecodeAdmin: any bytes either fail to decode as each admin body or
// decode to a value that encodes and decodes to itself.
func FuzzDecodeAdmin(f *testing.F) {
	for _, b := range goldenFiles(f, "admin_*.json") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, proto := range adminSamples() {
			v, err := decodeAdminAs(proto, b)
			if err != nil {
				continue
			}
			enc, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("Marshal(decoded %T) = %v", v, err)
			}
			again, err := decodeAdminAs(proto, enc)
			if err != nil {
				t.Fatalf("DecodeAdmin(Marshal(decoded %T)) = %v", v, err)
			}
			enc2, _ := json.Marshal(again)
			if !bytes.Equal(enc, enc2) {
				t.Fatalf("round trip changed %s to %s", enc, enc2)
			}
		}
	})
}

// The golden files are the admin API's documentation by example too:
// every one is named for a body.
func TestAdminGoldenFilesKnown(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "admin_*.json"))
	samples := adminSamples()
	for _, p := range paths {
		if _, ok := samples[filepath.Base(p)]; !ok {
			t.Errorf("%s has no sample in adminSamples", p)
		}
	}
}
