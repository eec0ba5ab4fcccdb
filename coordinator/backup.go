package coordinator

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// Backup takes a snapshot of the replicated state through Raft (the same
// snapshot Raft keeps in the data directory, at an exact index and term)
// and writes it to w as a backup file. Any node can take one: it holds the
// state this node has applied. It returns the header it wrote.
func (n *Node) Backup(w io.Writer) (BackupHeader, error) {
	f := n.raft.Snapshot()
	if err := f.Error(); err != nil {
		return BackupHeader{}, fmt.Errorf("coordinator: backup: snapshot: %w", err)
	}
	// The header needs the snapshot's checksum and newest model, and Raft
	// opens a snapshot once: spool it to a temporary file (next to the
	// Raft snapshots, which have room for it) while scanning it.
	meta, rc, err := f.Open()
	if err != nil {
		return BackupHeader{}, fmt.Errorf("coordinator: backup: open snapshot: %w", err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(n.cfg.DataDir, ".backup-*.tmp")
	if err != nil {
		return BackupHeader{}, fmt.Errorf("coordinator: backup: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	h := BackupHeader{Format: BackupFormat, Node: n.cfg.ID, Index: meta.Index, Term: meta.Term,
		Created: time.Now().UTC().Truncate(time.Second), SnapshotVersion: wire.SnapshotVersion}
	if err := store.ScanSnapshot(io.TeeReader(rc, tmp), &h); err != nil {
		return BackupHeader{}, fmt.Errorf("coordinator: backup: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return BackupHeader{}, fmt.Errorf("coordinator: backup: %w", err)
	}
	if err := store.WriteBackupHeader(w, &h); err != nil {
		return BackupHeader{}, err
	}
	if _, err := io.Copy(w, tmp); err != nil {
		return BackupHeader{}, fmt.Errorf("coordinator: backup: copy snapshot: %w", err)
	}
	return h, nil
}

// RestoreBackup prepares dataDir, which must not exist or be empty, so
// that a node started on it with id and raftAddr (Config.ID and
// Config.RaftAddr) is the one voter of a new cluster holding exactly the
// backed-up state; other nodes then join it. It reads and checks the whole
// backup before it writes anything, and removes what it wrote on failure.
//
// The directory gets what raft.RecoverCluster leaves behind, written
// directly (RecoverCluster refuses a store without state): a Raft
// snapshot whose configuration is {id: raftAddr}, and no log. The snapshot
// keeps the backup's index but is of term 1: the new cluster's first
// leader is elected in term 1, and terms in its log must not go down.
func RestoreBackup(r io.Reader, dataDir, id, raftAddr string) (BackupHeader, error) {
	if id == "" || len(id) > wire.MaxIDLen {
		return BackupHeader{}, fmt.Errorf("coordinator: restore: node id %q, want 1..%d bytes", id, wire.MaxIDLen)
	}
	if raftAddr == "" {
		return BackupHeader{}, errors.New("coordinator: restore: the node's Raft address is required")
	}
	if err := emptyDir(dataDir); err != nil {
		return BackupHeader{}, fmt.Errorf("coordinator: restore: %w", err)
	}
	h, st, err := ReadBackup(r)
	if err != nil {
		return h, err
	}
	created := false
	if _, err := os.Stat(dataDir); errors.Is(err, os.ErrNotExist) {
		created = true
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return h, fmt.Errorf("coordinator: restore: %w", err)
	}
	if err := writeRestoreSnapshot(st, h.Index, dataDir, id, raftAddr); err != nil {
		// Leave the directory as it was: empty, or absent.
		if created {
			os.RemoveAll(dataDir)
		} else {
			ents, _ := os.ReadDir(dataDir)
			for _, e := range ents {
				os.RemoveAll(filepath.Join(dataDir, e.Name()))
			}
		}
		return h, fmt.Errorf("coordinator: restore: %w", err)
	}
	return h, nil
}

// emptyDir refuses a path that is not a directory or holds anything.
func emptyDir(dir string) error {
	if dir == "" {
		return errors.New("the data directory is required")
	}
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(ents) > 0:
		return fmt.Errorf("data directory %s is not empty (holds %s): restore only into a new directory", dir, ents[0].Name())
	}
	return nil
}

func writeRestoreSnapshot(st *State, index uint64, dir, id, raftAddr string) error {
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLog(slog.New(slog.DiscardHandler), "snapshots"))
	if err != nil {
		return err
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(raftAddr)}}}
	// The transport only encodes the legacy peer list: an address is its
	// own encoding in every hashicorp/raft transport.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(raftAddr))
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, 1, conf, 1, trans)
	if err != nil {
		return err
	}
	if err := st.WriteSnapshot(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}
