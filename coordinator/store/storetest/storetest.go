// Package storetest holds the replicated state's test fixtures, shared by
// the tests of package store and of the coordinator: a small training
// configuration, the commands that found a cluster, rounds to open and
// commit, and a state driven through a short history. Commands go through
// their wire encoding and the FSM, as Raft would apply them.
package storetest

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// Training is a small explicit configuration: 4 items of rank 2, 3 clients
// a round, defaults applied.
func Training() store.Training {
	return store.Training{
		Items: 4, Rank: 2, Mean: 3.5, ClientsPerRound: 3, MinClients: 2, OverSelect: 0.5,
		CheckInWindow: 50 * time.Millisecond, RoundTimeout: 2 * time.Second, KeepModels: 3, Population: 10,
	}.WithDefaults()
}

// Implicit is Training for an implicit model with the event weights events.
func Implicit(events store.EventWeights) store.Training {
	tr := Training()
	tr.Kind, tr.Mean, tr.Events = model.Implicit, 0, events
	return tr.WithDefaults()
}

// InitCommands are the commands that found a cluster training tr: its
// configuration and its seeded initial model.
func InitCommands(t testing.TB, tr store.Training) []wire.Command {
	m, err := model.New(tr.Kind, tr.Items, tr.Rank, tr.Mean, tr.InitStd, rand.New(rand.NewPCG(tr.Seed, 0x30de1)))
	if err != nil {
		t.Fatal(err)
	}
	d := wire.Digest(m)
	return []wire.Command{
		&wire.SetConfig{Config: tr.ToWire()},
		&wire.InitModel{Kind: wire.KindOf(m.Kind), Items: m.Items, Rank: m.Rank, Params: m.Params, Digest: d[:]},
	}
}

// Apply feeds c to f as a committed log entry, as Raft would.
func Apply(t testing.TB, f raft.FSM, index uint64, c wire.Command) any {
	t.Helper()
	b, err := wire.EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: b})
}

// CommitFor returns a commit of round on s's current model whose mean
// update moves every param by step.
func CommitFor(s *store.State, round uint64, step float64) *wire.CommitUpdate {
	cur := s.Current()
	delta := make(wire.Vec32, len(cur.Model.Params))
	for i := range delta {
		delta[i] = float32(step)
	}
	cfg, _ := s.Config()
	optM, optV := s.Optimizer()
	m, _, _, err := store.NextModel(cfg.Optimizer, cur.Model, optM, optV, delta.Float64s())
	if err != nil {
		panic(err) // a fixture's own mistake
	}
	d := wire.Digest(m)
	return &wire.CommitUpdate{Round: round, Model: cur.Version, Delta: delta, Digest: d[:],
		Cohort: 3, Survivors: 2, Loss: 1.5, N: 20, Privacy: wire.PrivacyParams{SamplingRate: 0.3}}
}

// LegacyCommitFor is CommitFor as an older log has it: a CommitRound with
// the whole new model and moments.
func LegacyCommitFor(s *store.State, round uint64, step float64) *wire.CommitRound {
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

// OpenFor returns the opening of round on s's current model.
func OpenFor(s *store.State, round uint64) *wire.OpenRound {
	cur := s.Current()
	return &wire.OpenRound{Round: round, Model: cur.Version, Digest: cur.Digest[:], Cohort: []string{"a", "b", "c"}, Leader: "n1"}
}

// FSM is a store.FSM whose state a test reads between the entries it
// applies.
type FSM struct{ *store.FSM }

// NewFSM returns an FSM with an empty state.
func NewFSM() *FSM { return &FSM{store.NewFSM()} }

// State returns f's state. The test must not apply entries while it uses
// it.
func (f *FSM) State() *store.State {
	var st *store.State
	f.Read(func(s *store.State) { st = s })
	return st
}

// History drives a state through a few committed and abandoned rounds:
// rounds 1 to 5 (3 abandoned, KeepModels 3 of Training), two nodes
// registered, round 6 open.
func History(t testing.TB) *FSM {
	f := NewFSM()
	idx := uint64(0)
	apply := func(c wire.Command) {
		idx++
		if res := Apply(t, f, idx, c); res != nil {
			if err, ok := res.(error); ok {
				t.Fatalf("apply %T: %v", c, err)
			}
		}
	}
	for _, c := range InitCommands(t, Training()) {
		apply(c)
	}
	apply(&wire.RegisterNode{ID: "n2", ClientAddr: "127.0.0.1:7002"})
	apply(&wire.RegisterNode{ID: "n1", ClientAddr: "127.0.0.1:7001"})
	for r := uint64(1); r <= 5; r++ {
		apply(OpenFor(f.State(), r))
		if r == 3 {
			apply(&wire.AbandonRound{Round: r, Survivors: 1, Reason: "too few survivors"})
			continue
		}
		apply(CommitFor(f.State(), r, 0.01*float64(r)))
	}
	apply(OpenFor(f.State(), 6))
	return f
}
