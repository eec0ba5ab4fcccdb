package wire

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedrec/fedrec/aggregation/secagg"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func digest32(seed byte) []byte {
	d := make([]byte, 32)
	for i := range d {
		d[i] = seed + byte(i)
	}
	return d
}

func ticket() []byte { return bytes.Repeat([]byte{0xab}, TicketLen) }

// sampleMessages holds one filled-in message of every type, named for its
// golden file.
func sampleMessages() map[string]Message {
	return map[string]Message{
		"error":                &Error{Code: CodeNotLeader, Message: "ask the leader", Leader: "127.0.0.1:7001", RetryAfterMs: 100},
		"checkin":              &CheckIn{Version: Version, ClientID: "user-42", Examples: 17, Have: 3},
		"wait":                 &Wait{Round: 7, Model: 6, RetryAfterMs: 1500},
		"plan":                 &Plan{Round: 7, Model: 6, Digest: digest32(1), Kind: KindExplicit, Items: 3, Rank: 2, Train: TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10}, Clip: 0.5, Privacy: PrivacyParams{NoiseMultiplier: 1.1, SamplingRate: 0.01}, TimeLeftMs: 30000, Ticket: ticket()},
		"getmodel":             &GetModel{Version: Version, Model: 6},
		"modelheader":          &ModelHeader{Model: 6, Round: 5, Digest: digest32(2), Kind: KindExplicit, Items: 3, Rank: 2, Chunks: 1},
		"modelchunk":           &ModelChunk{Index: 0, Params: Vec{0.1, -0.2, 0.3, 0, 1, 2, 3, 4, 5, 3.5}},
		"upload":               &Upload{Version: Version, Round: 7, ClientID: "user-42", Ticket: ticket(), Model: 6, Loss: 12.5, N: 17, Delta: Vec{0.01, -0.02, 0, 0, 0, 0, 0, 0, 0.5, math.SmallestNonzeroFloat64}},
		"uploadack":            &UploadAck{Round: 7},
		"lobby":                &Lobby{Version: Version, Node: "b", Waiting: 120},
		"nodeack":              &NodeAck{Round: 7},
		"select":               &Select{Version: Version, Round: 7, Model: 6, Quota: 34},
		"select_redirect":      &Select{Version: Version, Round: 7, Model: 6, Redirect: "127.0.0.1:7002"},
		"selected":             &Selected{Round: 7, Clients: []string{"u1", "u2"}},
		"partial":              &Partial{Version: Version, Round: 7, Node: "b", Clients: 3, Clipped: 1, Below: 2, Loss: 4.5, N: 51, Sum: Vec{0.5, -0.25, 0}, QClients: 2, QSum: []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}},
		"join":                 &Join{Version: Version, ID: "b", RaftAddr: "127.0.0.1:8002", ClientAddr: "127.0.0.1:7002"},
		"join_admin":           &Join{Version: Version, ID: "b", RaftAddr: "127.0.0.1:8002", ClientAddr: "127.0.0.1:7002", AdminAddr: "127.0.0.1:9002"},
		"joinack":              &JoinAck{Leader: "a"},
		"plan_sizes":           &Plan{Round: 7, Model: 6, Digest: digest32(1), Kind: KindExplicit, Items: 3, Rank: 2, Train: TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10}, Clip: 0.5, Privacy: PrivacyParams{NoiseMultiplier: 1.1, SamplingRate: 0.01}, TimeLeftMs: 30000, Ticket: ticket(), DownloadBytes: 301, UploadBytes: 1109},
		"plan_secagg":          &Plan{Round: 7, Model: 6, Digest: digest32(1), Kind: KindExplicit, Items: 3, Rank: 2, Train: TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10}, Clip: 0.5, TimeLeftMs: 30000, Ticket: ticket(), SecAgg: sampleSecAgg(), SecAggID: 2},
		"secagg_advert":        &SecAggAdvert{SecAggHeader: sampleHeader(), Keys: sampleKeys(2)},
		"secagg_peerkeys":      &SecAggPeerKeys{Round: 7, To: 2, Peers: []SecAggKeys{sampleKeys(0), sampleKeys(1)}},
		"secagg_shares":        &SecAggShares{SecAggHeader: sampleHeader(), Shares: []SealedShare{{Peer: 0, Ciphertext: bytes.Repeat([]byte{7}, secagg.SealedShareLen)}}},
		"secagg_delivery":      &SecAggDelivery{Round: 7, To: 2, Shares: []SealedShare{{Peer: 1, Ciphertext: bytes.Repeat([]byte{8}, secagg.SealedShareLen)}}},
		"secagg_masked":        &SecAggMasked{SecAggHeader: sampleHeader(), Width: 4, Values: []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}},
		"secagg_unmaskrequest": &SecAggUnmaskRequest{Round: 7, To: 2, Survivors: []uint32{0}, Dropped: []uint32{1}},
		"secagg_unmaskrequest_signed": &SecAggUnmaskRequest{Round: 7, To: 2, Survivors: []uint32{0}, Dropped: []uint32{1},
			Tags: []SecAggTag{{Peer: 0, Tag: bytes.Repeat([]byte{0x30}, secagg.TagLen)}}},
		"secagg_checkrequest":    &SecAggCheckRequest{Round: 7, To: 2, Survivors: []uint32{0, 2}},
		"secagg_check":           &SecAggCheck{SecAggHeader: sampleHeader(), Tags: []SecAggTag{{Peer: 0, Tag: bytes.Repeat([]byte{0x31}, secagg.TagLen)}, {Peer: 1, Tag: bytes.Repeat([]byte{0x32}, secagg.TagLen)}}},
		"secagg_advert_signed":   &SecAggAdvert{SecAggHeader: sampleHeader(), Keys: sampleSignedKeys(2)},
		"secagg_peerkeys_signed": &SecAggPeerKeys{Round: 7, To: 2, Peers: []SecAggKeys{sampleSignedKeys(0), sampleSignedKeys(1)}},
		"plan_secagg_signed": &Plan{Round: 7, Model: 6, Digest: digest32(1), Kind: KindExplicit, Items: 3, Rank: 2, Train: TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10}, Clip: 0.5, TimeLeftMs: 30000, Ticket: ticket(),
			SecAgg: func() *SecAggParams { p := sampleSecAgg(); p.Signed = true; return p }(), SecAggID: 2},
		"plan_secagg_roster": &Plan{Round: 7, Model: 6, Digest: digest32(1), Kind: KindExplicit, Items: 3, Rank: 2, Train: TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10}, Clip: 0.5, TimeLeftMs: 30000, Ticket: ticket(),
			SecAgg: func() *SecAggParams { p := sampleSecAgg(); p.Signed, p.Roster = true, true; return p }(), SecAggID: 2, Cohort: []string{"user-40", "user-41", "user-42"}},
		"plan_secagg_cohort": &Plan{Round: 7, Model: 6, Digest: digest32(1), Kind: KindExplicit, Items: 3, Rank: 2, Train: TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10}, Clip: 0.5, TimeLeftMs: 30000, Ticket: ticket(),
			SecAgg: func() *SecAggParams { p := sampleSecAgg(); p.Signed = true; return p }(), SecAggID: 2, Cohort: []string{"user-40", "user-41", "user-42"}},
		"plan_distributed": &Plan{Round: 7, Model: 6, Digest: digest32(1), Kind: KindExplicit, Items: 3, Rank: 2, Train: TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10}, Clip: 0.5,
			Privacy: PrivacyParams{NoiseMultiplier: 1.1, SamplingRate: 0.01, Mechanism: MechSkellam, NoiseClients: 2}, MinClients: 2, TimeLeftMs: 30000, Ticket: ticket(), SecAgg: sampleSecAgg(), SecAggID: 2},
		"plan_adaptiveclip": &Plan{Round: 7, Model: 6, Digest: digest32(1), Kind: KindExplicit, Items: 3, Rank: 2, Train: TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10}, Clip: 0.43,
			Privacy: PrivacyParams{NoiseMultiplier: 1.1, SamplingRate: 0.01, CountStddev: 5}, MinClients: 2, TimeLeftMs: 30000, Ticket: ticket(), SecAgg: func() *SecAggParams { p := sampleSecAgg(); p.Clip, p.ClipBit = 0.43, true; return p }(), SecAggID: 2},
		"authenticate":     &Authenticate{Version: Version, Token: sampleToken()},
		"authenticated":    &Authenticated{Device: "user-42", ExpiresMs: sampleTokenTime.Add(time.Hour).UnixMilli()},
		"upload_belowclip": &Upload{Version: Version, Round: 7, ClientID: "user-42", Ticket: ticket(), Model: 6, Loss: 12.5, N: 17, Delta: Vec{0.01, -0.02, 0, 0, 0, 0, 0, 0, 0.5, 0}, BelowClip: true},
		"plan_implicit": &Plan{Round: 7, Model: 6, Digest: digest32(1), Kind: KindImplicit, Items: 3, Rank: 2, Train: implicitTrain(), Clip: 0.5,
			Privacy: PrivacyParams{NoiseMultiplier: 1.1, SamplingRate: 0.01}, MinClients: 2, TimeLeftMs: 30000, Ticket: ticket()},
		"modelheader_implicit": &ModelHeader{Model: 6, Round: 5, Digest: digest32(2), Kind: KindImplicit, Items: 3, Rank: 2, Chunks: 1, Events: sampleEvents()},
		"getmodel_f32":         &GetModel{Version: Version, Model: 6, Float32: true},
		"getmodel_have":        &GetModel{Version: Version, Float32: true, Have: 6},
		"getmodel_round":       &GetModel{Version: Version, Model: 6, Float32: true, Round: 9},
		"modelheader_current":  &ModelHeader{Model: 6, Round: 5, Digest: digest32(2), Kind: KindExplicit, Items: 3, Rank: 2, Chunks: 1, Float32: true, Current: true},
		"modelheader_f32":      &ModelHeader{Model: 6, Round: 5, Digest: digest32(2), Kind: KindExplicit, Items: 3, Rank: 2, Chunks: 1, Float32: true},
		"modelchunk_f32":       &ModelChunk{Index: 0, Params32: Vec32{0.1, -0.2, 0.3, 0, 1, 2, 3, 4, 5, 3.5}},
		"plan_upload8": &Plan{Round: 7, Model: 6, Digest: digest32(1), Kind: KindExplicit, Items: 3, Rank: 2, Train: TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10}, Clip: 0.5,
			TimeLeftMs: 30000, Ticket: ticket(), DownloadBytes: 201, UploadBytes: 1034, UploadBits: UploadBits8, Digest32: digest32(4)},
		"plan_secagg_quantized": &Plan{Round: 7, Model: 6, Digest: digest32(1), Kind: KindExplicit, Items: 3, Rank: 2, Train: TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10}, Clip: 0.5, TimeLeftMs: 30000, Ticket: ticket(),
			SecAgg: func() *SecAggParams { p := sampleSecAgg(); p.Quantized, p.Bits = true, 10; return p }(), SecAggID: 2},
		"plan_secagg_group": &Plan{Round: 7, Model: 6, Digest: digest32(1), Kind: KindExplicit, Items: 3, Rank: 2, Train: TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10}, Clip: 0.5, TimeLeftMs: 30000, Ticket: ticket(),
			SecAgg: sampleGroupSecAgg("b"), SecAggID: 2},
		"secagg_masked_w2":      &SecAggMasked{SecAggHeader: sampleHeader(), Width: 2, Values: []byte{1, 0, 0xff, 0x03}},
		"upload_quantized":      &Upload{Version: Version, Round: 7, ClientID: "user-42", Ticket: ticket(), Model: 6, Loss: 12.5, N: 17, Quantized: QuantizedOf([]int8{1, -2, 0, 0, 127, -127, 0, 0, 5, -1}), Step: 0.0125},
		"modelheader_catalogue": &ModelHeader{Model: 6, Round: 5, Digest: digest32(2), Kind: KindExplicit, Items: 3, Rank: 2, Chunks: 1, Catalogue: digest32(3)},
		"secagg_unmask":         &SecAggUnmask{SecAggHeader: sampleHeader(), SelfMaskShares: []Share{{Peer: 0, Value: []uint64{1, 2, 3, 4, 5}}}, MaskKeyShares: []Share{{Peer: 1, Value: []uint64{6, 7, 8, 9, 10}}}},
	}
}

// sampleEvents are event weights other than the defaults, with a zero.
func sampleEvents() *EventWeights {
	return &EventWeights{View: 0.5, Click: 0, Cart: 3, Purchase: 10}
}

func implicitTrain() TrainParams {
	return TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 40, Events: sampleEvents()}
}

func sampleSecAgg() *SecAggParams {
	return &SecAggParams{Clients: 3, Threshold: 2, MinSurvivors: 2, Bits: 32, Clip: 0.5, Seed: digest32(9), RotationSeed: digest32(10), PhaseMs: 5000}
}

// sampleGroupSecAgg is the secure aggregation of node's group of three
// in a cohort of six.
func sampleGroupSecAgg(node string) *SecAggParams {
	p := sampleSecAgg()
	p.Group, p.Cohort = node, 6
	return p
}

func sampleHeader() SecAggHeader {
	return SecAggHeader{Version: Version, Round: 7, ClientID: "user-42", Ticket: ticket()}
}

func sampleKeys(id uint32) SecAggKeys {
	return SecAggKeys{Client: id, ConfigDigest: digest32(byte(id)), CipherKey: digest32(byte(id) + 40), MaskKey: digest32(byte(id) + 80)}
}

func sampleSignedKeys(id uint32) SecAggKeys {
	k := sampleKeys(id)
	k.Signature = bytes.Repeat([]byte{0x30 + byte(id)}, 70)
	k.Credential = bytes.Repeat([]byte{0x82}, 300)
	return k
}

func sampleConfig() TrainingConfig {
	return TrainingConfig{
		Kind: KindExplicit, Items: 3, Rank: 2, Mean: 3.5, InitStd: 0.1, Seed: 1,
		Train:     TrainParams{LR: 0.01, Reg: 0.12, Epochs: 1, Alpha: 10},
		Optimizer: OptimizerParams{Name: "fedadam", LR: 0.1, Tau: 1e-3},
		Clip:      1, ClientsPerRound: 100, OverSelect: 0.3, MinClients: 10,
		CheckInWindowMs: 2000, RoundTimeoutMs: 30000, KeepModels: 5, Population: 610,
	}
}

func sampleCommands() map[string]Command {
	cfg := sampleConfig()
	params := Vec{0.1, -0.2, 0.3, 0, 1, 2, 3, 4, 5, 3.5}
	return map[string]Command{
		"setconfig":          &SetConfig{Config: cfg},
		"initmodel":          &InitModel{Kind: KindExplicit, Items: 3, Rank: 2, Params: params, Digest: digest32(3)},
		"registernode":       &RegisterNode{ID: "a", ClientAddr: "127.0.0.1:7001"},
		"registernode_admin": &RegisterNode{ID: "a", ClientAddr: "127.0.0.1:7001", AdminAddr: "127.0.0.1:9001"},
		"openround":          &OpenRound{Round: 7, Model: 6, Digest: digest32(4), Cohort: []string{"u1", "u2"}, Clip: 1, Privacy: PrivacyParams{SamplingRate: 0.1}, Leader: "a"},
		"commitround":        &CommitRound{Round: 7, Model: 6, Params: params, Digest: digest32(5), OptM: make(Vec, 10), OptV: make(Vec, 10), Cohort: 2, Survivors: 2, Loss: 3, N: 30, Privacy: PrivacyParams{SamplingRate: 0.1}},
		"abandonround":       &AbandonRound{Round: 8, Survivors: 1, Reason: "too few survivors"},
		"commitupdate":       &CommitUpdate{Round: 7, Model: 6, Delta: Vec32{0.01, -0.02, 0, 0, 0, 0, 0, 0, 0.5, -1e-9}, Digest: digest32(5), Cohort: 3, Survivors: 2, Clipped: 1, Loss: 3, N: 30, Privacy: PrivacyParams{NoiseMultiplier: 1.1, SamplingRate: 0.1, CountStddev: 5}, NextClip: 0.47},
		"openround_groups":   &OpenRound{Round: 7, Model: 6, Digest: digest32(4), Cohort: []string{"u1", "u2", "u3"}, Clip: 1, Privacy: PrivacyParams{SamplingRate: 0.1}, Leader: "a", Groups: []RoundGroup{{Node: "a", Size: 1, Want: 1}, {Node: "b", Size: 2, Want: 1}}},
		"openround_secagg_groups": &OpenRound{Round: 7, Model: 6, Digest: digest32(4), Cohort: []string{"u1", "u2", "u3", "u4", "u5", "u6"}, Clip: 0.5, Leader: "a",
			SecAgg: sampleSecAgg(), Groups: []RoundGroup{{Node: "a", Size: 3, Want: 3, SecAgg: sampleGroupSecAgg("a")}, {Node: "b", Size: 3, Want: 3, SecAgg: sampleGroupSecAgg("b")}}},
		"openround_secagg": &OpenRound{Round: 7, Model: 6, Digest: digest32(4), Cohort: []string{"u1", "u2", "u3"}, Clip: 0.5, Leader: "a", SecAgg: sampleSecAgg()},
		"openround_distributed": &OpenRound{Round: 7, Model: 6, Digest: digest32(4), Cohort: []string{"u1", "u2", "u3"}, Clip: 0.5, Leader: "a", SecAgg: sampleSecAgg(),
			Privacy: PrivacyParams{NoiseMultiplier: 1.1, SamplingRate: 0.1, Mechanism: MechSkellam, NoiseClients: 2}},
		"commitround_distributed": &CommitRound{Round: 7, Model: 6, Params: params, Digest: digest32(5), OptM: make(Vec, 10), OptV: make(Vec, 10), Cohort: 3, Survivors: 3,
			Privacy: PrivacyParams{NoiseMultiplier: 1.1, SamplingRate: 0.1, Mechanism: MechSkellam, NoiseClients: 2, Variance: 1e12, L1: 4.5e6, L2: 1.1e6}},
		"commitround_adaptiveclip": &CommitRound{Round: 7, Model: 6, Params: params, Digest: digest32(5), OptM: make(Vec, 10), OptV: make(Vec, 10), Cohort: 2, Survivors: 2, Loss: 3, N: 30,
			Privacy: PrivacyParams{NoiseMultiplier: 1.1, SamplingRate: 0.1, CountStddev: 5}, NextClip: 0.47},
		"setconfig_distributed": &SetConfig{Config: func() TrainingConfig {
			c := sampleConfig()
			c.NoiseMultiplier, c.SecAgg, c.SecAggPhaseMs, c.NoiseMode = 1.1, true, 5000, 3
			return c
		}()},
		"setconfig_adaptiveclip": &SetConfig{Config: func() TrainingConfig {
			c := sampleConfig()
			c.NoiseMultiplier, c.NoiseMode, c.AdaptiveClip, c.ClipQuantile, c.ClipLearningRate, c.ClipCountStddev = 1.1, 2, true, 0.5, 0.2, 5
			return c
		}()},
		"setconfig_implicit": &SetConfig{Config: func() TrainingConfig {
			c := sampleConfig()
			c.Kind, c.Mean, c.Train = KindImplicit, 0, implicitTrain()
			return c
		}()},
		"changetraining":      &ChangeTraining{ClientsPerRound: 200, RoundTimeoutMs: 90000, NoiseMultiplier: 1.3, Operator: "alice", Reason: "more devices", TimeMs: 1796601600000},
		"setconfig_upload8":   &SetConfig{Config: func() TrainingConfig { c := sampleConfig(); c.UploadBits = UploadBits8; return c }()},
		"setconfig_catalogue": &SetConfig{Config: func() TrainingConfig { c := sampleConfig(); c.Catalogue = digest32(4); return c }()},
		"setconfig_secagg":    &SetConfig{Config: func() TrainingConfig { c := sampleConfig(); c.SecAgg, c.SecAggPhaseMs = true, 5000; return c }()},
		"setconfig_secagg_signed": &SetConfig{Config: func() TrainingConfig {
			c := sampleConfig()
			c.SecAgg, c.SecAggPhaseMs, c.SecAggSigned, c.SecAggColluders = true, 5000, true, 2
			return c
		}()},
		"setconfig_secagg_roster": &SetConfig{Config: func() TrainingConfig {
			c := sampleConfig()
			c.SecAgg, c.SecAggPhaseMs, c.SecAggSigned, c.SecAggRoster = true, 5000, true, true
			return c
		}()},
	}
}

func sampleRecords() []Record {
	cfg := sampleConfig()
	return []Record{
		&cfg,
		&RegisterNode{ID: "a", ClientAddr: "127.0.0.1:7001"},
		&ModelRecord{Version: 6, Round: 5, Digest: digest32(6), Kind: KindExplicit, Items: 3, Rank: 2, Params: Vec{0.1, -0.2, 0.3, 0, 1, 2, 3, 4, 5, 3.5}},
		&OptimizerRecord{M: make(Vec, 10), V: Vec{1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6}},
		&RoundRecord{Round: 5, Outcome: OutcomeCommitted, Model: 5, NewModel: 6, Cohort: 10, Survivors: 9, Loss: 3, N: 100},
		&RoundRecord{Round: 6, Outcome: OutcomeAbandoned, Model: 6, Cohort: 10, Survivors: 2, Reason: "too few survivors"},
		&LedgerEntry{Round: 5, SamplingRate: 0.01, NoiseMultiplier: 1.1, Steps: 1},
		&OpenRound{Round: 7, Model: 6, Digest: digest32(4), Cohort: []string{"u1"}, Leader: "a"},
		&Counters{LastRound: 7},
	}
}

// sampleRecordsDP holds the snapshot records with the fields appended for
// distributed DP, adaptive clipping and secure rounds' unknown loss.
func sampleRecordsDP() []Record {
	return []Record{
		&RoundRecord{Round: 5, Outcome: OutcomeCommitted, Model: 5, NewModel: 6, Cohort: 10, Survivors: 9, LossUnknown: true},
		&RoundRecord{Round: 6, Outcome: OutcomeCommitted, Model: 6, NewModel: 7, Cohort: 10, Survivors: 9, Loss: 3, N: 100, Clip: 0.5, NextClip: 0.47},
		&LedgerEntry{Round: 5, SamplingRate: 0.01, NoiseMultiplier: 1.1, Steps: 1, Mechanism: MechSkellam, Variance: 1e12, L1: 4.5e6, L2: 1.1e6},
		&LedgerEntry{Round: 6, SamplingRate: 0.01, NoiseMultiplier: 1.1, Steps: 1},
		&OpenRound{Round: 7, Model: 7, Digest: digest32(4), Cohort: []string{"u1", "u2", "u3"}, Clip: 0.47, Leader: "a", SecAgg: sampleSecAgg(),
			Privacy: PrivacyParams{NoiseMultiplier: 1.1, SamplingRate: 0.01, Mechanism: MechSkellam, NoiseClients: 2}},
		&Counters{LastRound: 7},
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed:\n got %x\nwant %x\nA change to an existing encoding breaks old peers and logs; append a field or a type instead (or run -update if intended).", name, got, want)
	}
}

// goldenFiles returns the contents of testdata files matching pattern, for
// fuzz seeds.
func goldenFiles(f *testing.F, pattern string) [][]byte {
	paths, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no golden files %s: %v", pattern, err)
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
