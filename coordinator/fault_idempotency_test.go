package coordinator

import (
	"bytes"
	"errors"
	"testing"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// hashicorp/raft's Apply can fail (a timeout, lost leadership) and the
// entry still commit, so a caller that retries may commit a command twice.
// Every command must be keyed so that its duplicate changes nothing: the
// configuration and the initial model are set once, a node's address is
// set (not appended), and the round commands carry the round id, which
// must be the open round (commit, abandon) or the next one (open). So the
// round history and the privacy ledger get one entry per round, however
// often its commit is applied.
func TestApplyTwiceChangesNothing(t *testing.T) {
	tr := testTraining()
	var log []wire.Command
	f := newFSM()
	idx := uint64(0)
	apply := func(c wire.Command) any {
		idx++
		return fsmApply(t, f, idx, c)
	}
	snap := func() []byte {
		var b bytes.Buffer
		if err := f.State().WriteSnapshot(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	mustApply := func(c wire.Command) {
		t.Helper()
		if err, ok := apply(c).(error); ok {
			t.Fatalf("apply %s: %v", c.CommandType(), err)
		}
		log = append(log, c)
	}
	// dup applies c again at once, as a retry right after an Apply
	// that failed but committed.
	dup := func(c wire.Command, want error) {
		t.Helper()
		before := snap()
		res := apply(c)
		if err, _ := res.(error); want != nil && !errors.Is(err, want) || want == nil && err != nil {
			t.Errorf("second %s = %v, want %v", c.CommandType(), res, want)
		}
		if !bytes.Equal(before, snap()) {
			t.Errorf("second %s changed the state", c.CommandType())
		}
	}
	init := initCommands(t, tr)
	mustApply(init[0])
	dup(init[0], ErrConfigured)
	mustApply(init[1])
	dup(init[1], ErrHasModel)
	reg := &wire.RegisterNode{ID: "n1", ClientAddr: "127.0.0.1:7001"}
	mustApply(reg)
	dup(reg, nil) // a set, not an append
	for r := uint64(1); r <= 4; r++ {
		open := openFor(f.State(), r)
		mustApply(open)
		dup(open, ErrRoundOpen)
		if r == 3 {
			ab := &wire.AbandonRound{Round: r, Survivors: 1, Reason: "too few survivors"}
			mustApply(ab)
			dup(ab, ErrStaleRound)
			continue
		}
		c := commitFor(f.State(), r, 0.01)
		mustApply(c)
		dup(c, ErrStaleRound)
	}
	if got := len(f.State().Ledger()); got != 3 {
		t.Errorf("ledger has %d entries, want 3", got)
	}
	// Late duplicates: every command applied again after the rest of the
	// history (a retry that lands rounds later) is refused, except the
	// address, which is the same set again.
	end := snap()
	for _, c := range log {
		apply(c)
	}
	if !bytes.Equal(end, snap()) {
		t.Error("replaying the whole log on top of itself changed the state")
	}
	// A duplicate open round after its round was committed must not
	// reopen it.
	if err, _ := apply(log[len(log)-2]).(error); !errors.Is(err, ErrStaleRound) {
		t.Errorf("late OpenRound = %v, want ErrStaleRound", err)
	}
}
