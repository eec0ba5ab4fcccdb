package coordinator

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func testTraining() Training {
	return Training{
		Items: 4, Rank: 2, Mean: 3.5, ClientsPerRound: 3, MinClients: 2, OverSelect: 0.5,
		CheckInWindow: 50 * time.Millisecond, RoundTimeout: 2 * time.Second, KeepModels: 3, Population: 10,
	}.withDefaults()
}

func initCommands(t testing.TB, tr Training) []wire.Command {
	m, err := model.New(tr.Kind, tr.Items, tr.Rank, tr.Mean, tr.InitStd, rand.New(rand.NewPCG(tr.Seed, 0x30de1)))
	if err != nil {
		t.Fatal(err)
	}
	d := wire.Digest(m)
	return []wire.Command{
		&wire.SetConfig{Config: tr.toWire()},
		&wire.InitModel{Kind: wire.KindOf(m.Kind), Items: m.Items, Rank: m.Rank, Params: m.Params, Digest: d[:]},
	}
}

// fsmApply feeds c to f as a committed log entry, as Raft would.
func fsmApply(t testing.TB, f *fsm, index uint64, c wire.Command) any {
	t.Helper()
	b, err := wire.EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: b})
}

// commitFor returns a commit of round on s's current model, moving every
// param by step.
func commitFor(s *State, round uint64, step float64) *wire.CommitRound {
	cur := s.Current()
	m := cur.Model.Clone()
	for i := range m.Params {
		m.Params[i] += step
	}
	d := wire.Digest(m)
	dim := len(m.Params)
	optM, optV := make([]float64, dim), make([]float64, dim)
	for i := range optV {
		optM[i], optV[i] = step, step*step
	}
	return &wire.CommitRound{Round: round, Model: cur.Version, Params: m.Params, Digest: d[:], OptM: optM, OptV: optV,
		Cohort: 3, Survivors: 2, Loss: 1.5, N: 20, Privacy: wire.PrivacyParams{SamplingRate: 0.3}}
}

func openFor(s *State, round uint64) *wire.OpenRound {
	cur := s.Current()
	return &wire.OpenRound{Round: round, Model: cur.Version, Digest: cur.Digest[:], Cohort: []string{"a", "b", "c"}, Leader: "n1"}
}

// history drives a state through a few committed and abandoned rounds.
func history(t testing.TB) *fsm {
	f := newFSM()
	idx := uint64(0)
	apply := func(c wire.Command) {
		idx++
		if res := fsmApply(t, f, idx, c); res != nil {
			if err, ok := res.(error); ok {
				t.Fatalf("apply %T: %v", c, err)
			}
		}
	}
	for _, c := range initCommands(t, testTraining()) {
		apply(c)
	}
	apply(&wire.RegisterNode{ID: "n2", ClientAddr: "127.0.0.1:7002"})
	apply(&wire.RegisterNode{ID: "n1", ClientAddr: "127.0.0.1:7001"})
	for r := uint64(1); r <= 5; r++ {
		apply(openFor(f.st, r))
		if r == 3 {
			apply(&wire.AbandonRound{Round: r, Survivors: 1, Reason: "too few survivors"})
			continue
		}
		apply(commitFor(f.st, r, 0.01*float64(r)))
	}
	apply(openFor(f.st, 6))
	return f
}

func TestApplyHistory(t *testing.T) {
	f := history(t)
	s := f.st
	if got, want := s.Versions(), []uint64{3, 4, 5}; !reflect.DeepEqual(got, want) {
		t.Errorf("Versions() = %v, want %v (KeepModels 3)", got, want)
	}
	if cur := s.Current(); cur.Round != 5 {
		t.Errorf("current model from round %d, want 5", cur.Round)
	}
	if len(s.Rounds()) != 5 || s.Rounds()[2].Outcome != Abandoned {
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
	f := history(t)
	var before bytes.Buffer
	f.st.WriteSnapshot(&before)
	s := f.st
	stale := commitFor(s, 6, 0.1)
	stale.Model = 4
	nan := commitFor(s, 6, 0.1)
	nan.Params = append([]float64(nil), nan.Params...)
	nan.Params[0] = math.NaN()
	short := commitFor(s, 6, 0.1)
	short.Params = short.Params[1:]
	badDigest := commitFor(s, 6, 0.1)
	badDigest.Digest = make([]byte, 32)
	badOpt := commitFor(s, 6, 0.1)
	badOpt.OptV = badOpt.OptV[1:]
	tests := []struct {
		name string
		c    wire.Command
		want error
	}{
		{"config again", &wire.SetConfig{Config: testTraining().toWire()}, ErrConfigured},
		{"init again", initCommands(t, testTraining())[1], ErrHasModel},
		{"open while open", openFor(s, 7), ErrRoundOpen},
		{"commit old round", commitFor(s, 5, 0.1), ErrStaleRound},
		{"commit future round", commitFor(s, 7, 0.1), ErrStaleRound},
		{"commit stale model", stale, ErrStaleModel},
		{"commit nan", nan, ErrBadCommand},
		{"commit wrong dimension", short, ErrBadCommand},
		{"commit bad digest", badDigest, ErrBadCommand},
		{"commit bad optimizer", badOpt, ErrBadCommand},
		{"abandon other round", &wire.AbandonRound{Round: 5}, ErrStaleRound},
	}
	for i, tc := range tests {
		res := fsmApply(t, f, uint64(100+i), tc.c)
		err, _ := res.(error)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Apply = %v, want %v", tc.name, res, tc.want)
		}
	}
	var after bytes.Buffer
	f.st.WriteSnapshot(&after)
	if !bytes.Equal(before.Bytes(), after.Bytes()) {
		t.Error("rejected commands changed the state")
	}
}

func TestApplyBeforeConfig(t *testing.T) {
	s := NewState()
	cmds := initCommands(t, testTraining())
	if err, _ := s.Apply(cmds[1]).(error); !errors.Is(err, ErrNotReady) {
		t.Errorf("InitModel before SetConfig = %v, want ErrNotReady", err)
	}
	bad := testTraining().toWire()
	bad.MinClients = 99
	if err, _ := s.Apply(&wire.SetConfig{Config: bad}).(error); !errors.Is(err, ErrBadCommand) {
		t.Errorf("SetConfig(MinClients > ClientsPerRound) = %v, want ErrBadCommand", err)
	}
}

func TestApplyUndecodablePanics(t *testing.T) {
	f := newFSM()
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
	f := history(t)
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
	g := newFSM()
	if err := g.Restore(readCloser{bytes.NewReader(a.Bytes())}); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := g.st.WriteSnapshot(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("snapshot → restore → snapshot changed the bytes")
	}
	// The restored state applies the next command like the original.
	c := commitFor(f.st, 6, 0.2)
	r1, r2 := fsmApply(t, f, 200, c), fsmApply(t, g, 200, c)
	if r1 != r2 {
		t.Errorf("after restore, Apply = %v, original %v", r2, r1)
	}
	old, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	st, err := ReadSnapshot(bytes.NewReader(old))
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
	f := history(t)
	snap, _ := f.Snapshot()
	var a bytes.Buffer
	fsmApply(t, f, 300, commitFor(f.st, 6, 0.3))
	fsmApply(t, f, 301, &wire.RegisterNode{ID: "n3", ClientAddr: "x"})
	snap.Persist(&memSink{Buffer: &a})
	st, err := ReadSnapshot(&a)
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
	imp := newFSM()
	for i, c := range initCommands(f, implicitTraining(EventWeights{View: 0.5, Purchase: 10})) {
		fsmApply(f, imp, uint64(i+1), c)
	}
	var buf bytes.Buffer
	if err := imp.st.WriteSnapshot(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ReadSnapshot(bytes.NewReader(b))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := st.WriteSnapshot(&out); err != nil {
			t.Fatal(err)
		}
	})
}
