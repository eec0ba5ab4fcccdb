package coordinator

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// Recovered describes the state a node recovered by RecoverAlone holds.
type Recovered struct {
	Node         string `json:"node"`
	RaftAddr     string `json:"raft_addr"`
	Index        uint64 `json:"index"` // last log index applied to the recovered state
	ModelVersion uint64 `json:"model_version"`
	LastRound    uint64 `json:"last_round"`
	LedgerRounds int    `json:"ledger_rounds"`
	// Dropped lists the members of the old configuration that are no
	// longer part of the cluster.
	Dropped []string `json:"dropped,omitempty"`
}

// RecoverAlone is the way out when a cluster has lost a majority of its
// voters for good and no backup is at hand (etcd's --force-new-cluster,
// Consul's peers.json). It rewrites the data directory of one stopped
// survivor so that a node started on it with id and raftAddr is the only
// voter of a cluster holding everything in that directory; the other
// nodes then join it with empty data directories.
//
// Everything in the survivor's log is kept, including entries the old
// cluster had not yet committed: pick the survivor with the highest
// applied index (fedrec status), so that no committed model or ledger
// entry is lost. The directory must belong to a node that is not running;
// a running node holds its log's lock and the call fails.
func RecoverAlone(dataDir, id, raftAddr string) (Recovered, error) {
	out := Recovered{Node: id, RaftAddr: raftAddr}
	switch {
	case id == "" || len(id) > wire.MaxIDLen:
		return out, fmt.Errorf("coordinator: recover: node id %q, want 1..%d bytes", id, wire.MaxIDLen)
	case raftAddr == "":
		return out, errors.New("coordinator: recover: the node's Raft address is required")
	case dataDir == "":
		return out, errors.New("coordinator: recover: the data directory is required")
	}
	// store.OpenBoltStore would create an empty log: a mistyped directory must
	// not look like a node without state.
	if _, err := os.Stat(filepath.Join(dataDir, "raft.db")); err != nil {
		return out, fmt.Errorf("coordinator: recover: %s holds no node state: %w", dataDir, err)
	}
	db, err := store.OpenBoltStore(filepath.Join(dataDir, "raft.db"))
	if err != nil {
		return out, fmt.Errorf("coordinator: recover: %w (is the node still running?)", err)
	}
	defer db.Close()
	hlog := newHCLog(slog.New(slog.DiscardHandler), "recover")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dataDir, 2, hlog)
	if err != nil {
		return out, fmt.Errorf("coordinator: recover: open snapshots: %w", err)
	}
	ok, err := raft.HasExistingState(db, db, snaps)
	if err != nil {
		return out, fmt.Errorf("coordinator: recover: %w", err)
	}
	if !ok {
		return out, fmt.Errorf("coordinator: recover: %s holds no Raft state", dataDir)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.Logger = hlog
	// The transport only encodes the legacy peer list (see RestoreBackup).
	_, trans := raft.NewInmemTransport(raft.ServerAddress(raftAddr))
	defer trans.Close()
	old, err := store.Configuration(*rc, db, snaps, trans)
	if err != nil {
		return out, fmt.Errorf("coordinator: recover: %w", err)
	}
	for _, s := range old.Servers {
		if string(s.ID) != id {
			out.Dropped = append(out.Dropped, string(s.ID))
		}
	}

	f := store.NewFSM()
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(raftAddr)}}}
	if err := store.RecoverCluster(rc, f, db, snaps, trans, conf); err != nil {
		return out, fmt.Errorf("coordinator: recover: %w", err)
	}
	out.Index, _ = db.LastIndex()
	if ls, err := snaps.List(); err == nil && len(ls) > 0 {
		out.Index = max(out.Index, ls[0].Index)
	}
	f.Read(func(s *State) {
		if v := s.Current(); v != nil {
			out.ModelVersion = v.Version
		}
		out.LastRound = s.LastRound()
		out.LedgerRounds = len(s.Ledger())
	})
	return out, nil
}
