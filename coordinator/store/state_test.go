package store_test

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/store/storetest"
	"github.com/fedrec/fedrec/coordinator/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestApplyHistory(t *testing.T) {
	f := storetest.History(t)
	s := f.State()
	if got, want := s.Versions(), []uint64{3, 4, 5}; !reflect.DeepEqual(got, want) {
		t.Errorf("Versions() = %v, want %v (KeepModels 3)", got, want)
	}
	if cur := s.Current(); cur.Round != 5 {
		t.Errorf("current model from round %d, want 5", cur.Round)
	}
	if len(s.Rounds()) != 5 || s.Rounds()[2].Outcome != store.Abandoned {
		t.Errorf("rounds = %+v", s.Rounds())
	}
	if len(s.Ledger()) != 4 {
		t.Errorf("ledger has %d entries, want 4 (abandoned rounds spend nothing)", len(s.Ledger()))
	}
	if s.Open() == nil || s.Open().Round != 6 || s.LastRound() != 6 {
		t.Errorf("open = %+v, last round %d", s.Open(), s.LastRound())
	}
	if s.NodeAddr("n1") != "127.0.0.1:7001" {
		t.Errorf("NodeAddr(n1) = %q", s.NodeAddr("n1"))
	}
}

// Rejected commands are returned as results and change nothing.
func TestApplyRejections(t *testing.T) {
	f := storetest.History(t)
	var before bytes.Buffer
	f.State().WriteSnapshot(&before)
	s := f.State()
	stale := storetest.CommitFor(s, 6, 0.1)
	stale.Model = 4
	nan := storetest.CommitFor(s, 6, 0.1)
	nan.Delta = append(wire.Vec32(nil), nan.Delta...)
	nan.Delta[0] = float32(math.NaN())
	inf := storetest.CommitFor(s, 6, 0.1)
	inf.Delta = append(wire.Vec32(nil), inf.Delta...)
	inf.Delta[3] = float32(math.Inf(-1))
	short := storetest.CommitFor(s, 6, 0.1)
	short.Delta = short.Delta[1:]
	badDigest := storetest.CommitFor(s, 6, 0.1)
	badDigest.Digest = make([]byte, 32)
	// A node whose step gives other bits than the leader's refuses.
	otherStep := storetest.CommitFor(s, 6, 0.1)
	otherStep.Delta = append(wire.Vec32(nil), otherStep.Delta...)
	otherStep.Delta[1] = 0.2
	legacyNaN := storetest.LegacyCommitFor(s, 6, 0.1)
	legacyNaN.Params = append([]float64(nil), legacyNaN.Params...)
	legacyNaN.Params[0] = math.NaN()
	legacyShort := storetest.LegacyCommitFor(s, 6, 0.1)
	legacyShort.Params = legacyShort.Params[1:]
	legacyDigest := storetest.LegacyCommitFor(s, 6, 0.1)
	legacyDigest.Digest = make([]byte, 32)
	legacyOpt := storetest.LegacyCommitFor(s, 6, 0.1)
	legacyOpt.OptV = legacyOpt.OptV[1:]
	tests := []struct {
		name string
		c    wire.Command
		want error
	}{
		{"config again", &wire.SetConfig{Config: storetest.Training().ToWire()}, store.ErrConfigured},
		{"init again", storetest.InitCommands(t, storetest.Training())[1], store.ErrHasModel},
		{"open while open", storetest.OpenFor(s, 7), store.ErrRoundOpen},
		{"commit old round", storetest.CommitFor(s, 5, 0.1), store.ErrStaleRound},
		{"commit future round", storetest.CommitFor(s, 7, 0.1), store.ErrStaleRound},
		{"commit stale model", stale, store.ErrStaleModel},
		{"commit nan", nan, store.ErrBadCommand},
		{"commit infinity", inf, store.ErrBadCommand},
		{"commit wrong dimension", short, store.ErrBadCommand},
		{"commit bad digest", badDigest, store.ErrBadCommand},
		{"commit another step", otherStep, store.ErrBadCommand},
		{"legacy commit nan", legacyNaN, store.ErrBadCommand},
		{"legacy commit wrong dimension", legacyShort, store.ErrBadCommand},
		{"legacy commit bad digest", legacyDigest, store.ErrBadCommand},
		{"legacy commit bad optimizer", legacyOpt, store.ErrBadCommand},
		{"abandon other round", &wire.AbandonRound{Round: 5}, store.ErrStaleRound},
	}
	for i, tc := range tests {
		res := storetest.Apply(t, f, uint64(100+i), tc.c)
		err, _ := res.(error)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Apply = %v, want %v", tc.name, res, tc.want)
		}
	}
	var after bytes.Buffer
	f.State().WriteSnapshot(&after)
	if !bytes.Equal(before.Bytes(), after.Bytes()) {
		t.Error("rejected commands changed the state")
	}
}

func TestStateChangeTraining(t *testing.T) {
	noisy := storetest.Training()
	noisy.NoiseMultiplier, noisy.Clip = 1, 0.5
	tests := []struct {
		name  string
		base  store.Training
		c     wire.ChangeTraining
		check func(t store.Training) bool // nil: refused
	}{
		{"nothing", storetest.Training(), wire.ChangeTraining{Operator: "a", Reason: "r"}, nil},
		{"negative", storetest.Training(), wire.ChangeTraining{ClientsPerRound: -1}, nil},
		{"NaN noise", noisy, wire.ChangeTraining{NoiseMultiplier: math.NaN()}, nil},
		{"infinite noise", noisy, wire.ChangeTraining{NoiseMultiplier: math.Inf(1)}, nil},
		{"noise on", storetest.Training(), wire.ChangeTraining{NoiseMultiplier: 1}, nil},
		{"secagg phase without secagg", storetest.Training(), wire.ChangeTraining{SecAggPhaseMs: 5000}, nil},
		{"min above cohort", storetest.Training(), wire.ChangeTraining{MinClients: 4}, nil},
		{"long reason", storetest.Training(), wire.ChangeTraining{MinClients: 1, Reason: string(make([]byte, store.MaxReasonLen+1))}, nil},
		{"cohort", storetest.Training(), wire.ChangeTraining{ClientsPerRound: 5, MinClients: 4}, func(t store.Training) bool { return t.ClientsPerRound == 5 && t.MinClients == 4 }},
		{"deadlines", storetest.Training(), wire.ChangeTraining{CheckInWindowMs: 10, RoundTimeoutMs: 9000}, func(t store.Training) bool {
			return t.CheckInWindow == 10*time.Millisecond && t.RoundTimeout == 9*time.Second
		}},
		{"more noise", noisy, wire.ChangeTraining{NoiseMultiplier: 1.5}, func(t store.Training) bool { return t.NoiseMultiplier == 1.5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := store.NewState()
			for _, c := range storetest.InitCommands(t, tt.base) {
				if err, ok := s.Apply(c).(error); ok {
					t.Fatal(err)
				}
			}
			s.SetLastRound(4)
			err, _ := s.Apply(&tt.c).(error)
			got, _ := s.Config()
			if tt.check == nil {
				if !errors.Is(err, store.ErrBadCommand) || got != tt.base || len(s.Changes()) != 0 {
					t.Fatalf("Apply = %v, config changed %v, %d changes; want a refusal that changes nothing", err, got != tt.base, len(s.Changes()))
				}
				return
			}
			if err != nil || !tt.check(got) {
				t.Fatalf("Apply = %v, config %+v", err, got)
			}
			if ch := s.Changes(); len(ch) != 1 || ch[0].AfterRound != 4 || ch[0].Change != tt.c {
				t.Errorf("changes = %+v", ch)
			}
			// The change and the settings it made survive a snapshot.
			var buf bytes.Buffer
			if err := s.WriteSnapshot(&buf); err != nil {
				t.Fatal(err)
			}
			r, err := store.ReadSnapshot(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if rc, _ := r.Config(); rc != got || !reflect.DeepEqual(r.Changes(), s.Changes()) {
				t.Errorf("after a snapshot: config %+v, changes %+v", rc, r.Changes())
			}
		})
	}
}

func TestApplyBeforeConfig(t *testing.T) {
	s := store.NewState()
	cmds := storetest.InitCommands(t, storetest.Training())
	if err, _ := s.Apply(cmds[1]).(error); !errors.Is(err, store.ErrNotReady) {
		t.Errorf("InitModel before SetConfig = %v, want store.ErrNotReady", err)
	}
	bad := storetest.Training().ToWire()
	bad.MinClients = 99
	if err, _ := s.Apply(&wire.SetConfig{Config: bad}).(error); !errors.Is(err, store.ErrBadCommand) {
		t.Errorf("SetConfig(MinClients > ClientsPerRound) = %v, want store.ErrBadCommand", err)
	}
}

func TestApplyUndecodablePanics(t *testing.T) {
	f := storetest.NewFSM()
	defer func() {
		if recover() == nil {
			t.Error("undecodable committed entry did not panic")
		}
	}()
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{wire.CommandVersion, 99, 0x80}})
}

// Snapshot then restore gives the same state, byte for byte, and the
// golden snapshot stays readable.
func TestSnapshotRestore(t *testing.T) {
	f := storetest.History(t)
	var a bytes.Buffer
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{Buffer: &a}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "snapshot.golden")
	if *update {
		if err := os.WriteFile(golden, a.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g := storetest.NewFSM()
	if err := g.Restore(readCloser{bytes.NewReader(a.Bytes())}); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := g.State().WriteSnapshot(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("snapshot → restore → snapshot changed the bytes")
	}
	// The restored state applies the next command like the original.
	c := storetest.CommitFor(f.State(), 6, 0.2)
	r1, r2 := storetest.Apply(t, f, 200, c), storetest.Apply(t, g, 200, c)
	if r1 != r2 {
		t.Errorf("after restore, Apply = %v, original %v", r2, r1)
	}
	old, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	st, err := store.ReadSnapshot(bytes.NewReader(old))
	if err != nil {
		t.Fatalf("golden snapshot no longer reads: %v", err)
	}
	var c2 bytes.Buffer
	st.WriteSnapshot(&c2)
	if !bytes.Equal(c2.Bytes(), old) {
		t.Error("golden snapshot does not round-trip byte for byte")
	}
}

func TestSnapshotIsolation(t *testing.T) {
	f := storetest.History(t)
	snap, _ := f.Snapshot()
	var a bytes.Buffer
	storetest.Apply(t, f, 300, storetest.CommitFor(f.State(), 6, 0.3))
	storetest.Apply(t, f, 301, &wire.RegisterNode{ID: "n3", ClientAddr: "x"})
	snap.Persist(&memSink{Buffer: &a})
	st, err := store.ReadSnapshot(&a)
	if err != nil {
		t.Fatal(err)
	}
	if st.Open() == nil || st.NodeAddr("n3") != "" || len(st.Rounds()) != 5 {
		t.Error("a snapshot saw changes applied after it was taken")
	}
}

type memSink struct{ *bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func FuzzReadSnapshot(f *testing.F) {
	old, err := os.ReadFile(filepath.Join("testdata", "snapshot.golden"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(old)
	// An implicit cluster's state, whose configuration has event weights.
	imp := storetest.NewFSM()
	for i, c := range storetest.InitCommands(f, storetest.Implicit(store.EventWeights{View: 0.5, Purchase: 10})) {
		storetest.Apply(f, imp, uint64(i+1), c)
	}
	var buf bytes.Buffer
	if err := imp.State().WriteSnapshot(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := store.ReadSnapshot(bytes.NewReader(b))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := st.WriteSnapshot(&out); err != nil {
			t.Fatal(err)
		}
	})
}

// A log written before CommitUpdate carries CommitRound entries, with the
// new model and moments themselves; they still apply as they did.
func TestApplyLegacyCommit(t *testing.T) {
	f := storetest.History(t)
	c := storetest.LegacyCommitFor(f.State(), 6, 0.25)
	if res := storetest.Apply(t, f, 100, c); res != uint64(6) {
		t.Fatalf("Apply = %v, want version 6", res)
	}
	s := f.State()
	cur := s.Current()
	optM, optV := s.Optimizer()
	if !reflect.DeepEqual(cur.Model.Params, []float64(c.Params)) || !bytes.Equal(cur.Digest[:], c.Digest) ||
		!reflect.DeepEqual(optM, []float64(c.OptM)) || !reflect.DeepEqual(optV, []float64(c.OptV)) {
		t.Error("the legacy commit's model or moments were not stored as sent")
	}
}

// Every node steps to the same model and moments as the leader: two
// states applying the same CommitUpdate agree to the bit with NextModel.
func TestApplyCommitUpdate(t *testing.T) {
	f := storetest.History(t)
	s := f.State()
	cfg, _ := s.Config()
	m0, v0 := s.Optimizer()
	c := storetest.CommitFor(s, 6, -0.05)
	want, wantM, wantV, err := store.NextModel(cfg.Optimizer, s.Current().Model, m0, v0, c.Delta.Float64s())
	if err != nil {
		t.Fatal(err)
	}
	if res := storetest.Apply(t, f, 100, c); res != uint64(6) {
		t.Fatalf("Apply = %v, want version 6", res)
	}
	s = f.State()
	optM, optV := s.Optimizer()
	if !reflect.DeepEqual(s.Current().Model.Params, want.Params) || !reflect.DeepEqual(optM, wantM) || !reflect.DeepEqual(optV, wantV) {
		t.Error("the applied commit differs from the leader's step")
	}
	if r := s.Rounds()[len(s.Rounds())-1]; r.Round != 6 || r.Survivors != c.Survivors || r.NewModel != 6 {
		t.Errorf("round record %+v", r)
	}
}
