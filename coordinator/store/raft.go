package store

// Raft reads the log and snapshots of this package while it starts or
// recovers; these wrappers turn its panics on an unreadable entry into
// errors.

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Only the leader changes the state: leader-only operations on a follower
// return ErrNotLeader, and membership operations that name a node outside
// the Raft configuration ErrUnknownNode.
var (
	ErrNotLeader   = errors.New("coordinator: not the leader")
	ErrUnknownNode = errors.New("coordinator: no such node")
)

// NewRaft is raft.NewRaft, which panics when it cannot read a log entry
// (a corrupt file) while it scans the log for configuration changes,
// before it starts any goroutine: the panic becomes an error, and a node
// fails to start cleanly.
func NewRaft(rc *raft.Config, f raft.FSM, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport) (r *raft.Raft, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("read the log: %v", p)
		}
	}()
	return raft.NewRaft(rc, f, logs, stable, snaps, trans)
}

// RecoverCluster is raft.RecoverCluster with its panics (an unreadable log
// entry, a command this build cannot decode) turned into errors.
func RecoverCluster(rc *raft.Config, f raft.FSM, db *BoltStore, snaps raft.SnapshotStore, trans raft.Transport, conf raft.Configuration) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("replay the log: %v", p)
		}
	}()
	return raft.RecoverCluster(rc, f, db, db, snaps, trans, conf)
}

// Configuration is raft.GetConfiguration (the membership the
// stores hold, read without starting Raft) with its panics turned into
// errors, as NewRaft does.
func Configuration(rc raft.Config, db *BoltStore, snaps raft.SnapshotStore, trans raft.Transport) (c raft.Configuration, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("read the log: %v", p)
		}
	}()
	return raft.GetConfiguration(&rc, NewFSM(), db, db, snaps, trans)
}
