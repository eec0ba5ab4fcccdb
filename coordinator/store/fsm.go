package store

import (
	"crypto/sha256"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// FSM is the raft.FSM: a thin adapter that decodes log entries and applies
// them to a State under a lock, and snapshots and restores it.
type FSM struct {
	mu      sync.RWMutex
	st      *State
	changed chan struct{} // closed and replaced after every apply or restore
}

func NewFSM() *FSM { return &FSM{st: NewState(), changed: make(chan struct{})} }

// Apply implements raft.FSM. A committed entry that does not decode means
// the log is corrupt (or written by a newer release): it panics rather than
// let this node diverge.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := wire.DecodeCommand(l.Data)
	if err != nil {
		panic(fmt.Sprintf("coordinator: committed log entry %d does not decode: %v", l.Index, err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	res := f.st.Apply(c)
	close(f.changed)
	f.changed = make(chan struct{})
	return res
}

// Read calls fn with the state under the read lock.
func (f *FSM) Read(fn func(s *State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.st)
}

// Watch returns a channel closed at the next change of the state.
func (f *FSM) Watch() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// Snapshot implements raft.FSM: a quick copy under the lock; the slow
// write happens in Persist.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{st: f.st.Clone()}, nil
}

// Restore implements raft.FSM: it builds a fresh state and swaps it in.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := ReadSnapshot(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

// Digest returns the SHA-256 of s's snapshot. Snapshots are
// deterministic, so two nodes hold the same replicated state exactly when
// their digests are equal.
func (s *State) Digest() [sha256.Size]byte {
	h := sha256.New()
	if err := s.WriteSnapshot(h); err != nil {
		panic(fmt.Sprintf("coordinator: snapshot to a hash: %v", err)) // a hash never fails
	}
	return [sha256.Size]byte(h.Sum(nil))
}

type fsmSnapshot struct{ st *State }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.st.WriteSnapshot(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
