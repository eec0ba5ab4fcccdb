package coordinator

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// A backup file is BackupMagic, a big-endian uint16 BackupFormat, a
// big-endian uint32 length and that many bytes of JSON (BackupHeader),
// then a Raft snapshot of the replicated state exactly as the nodes store
// it (wire.SnapshotMagic …, see State.WriteSnapshot), of
// BackupHeader.SnapshotSize bytes, and nothing after it.
const (
	BackupMagic  = "FEDRECBK"
	BackupFormat = 1
	// maxBackupHeader bounds the JSON header a reader accepts.
	maxBackupHeader = 64 << 10
)

// ErrBadBackup wraps every reason a backup is refused: not a backup,
// another format, truncated, trailing bytes, a checksum or digest that
// does not match, a snapshot that does not read.
var ErrBadBackup = errors.New("coordinator: bad backup")

// BackupHeader describes a backup. The snapshot it precedes is the state
// after applying Raft entry Index (of term Term) on node Node.
type BackupHeader struct {
	Format          int       `json:"format"` // BackupFormat
	Node            string    `json:"node"`
	Index           uint64    `json:"raft_index"`
	Term            uint64    `json:"raft_term"`
	Created         time.Time `json:"created"`
	SnapshotVersion int       `json:"snapshot_version"` // wire.SnapshotVersion
	SnapshotSize    int64     `json:"snapshot_size"`
	SnapshotSHA256  string    `json:"snapshot_sha256"` // hex SHA-256 of the snapshot bytes
	// The newest committed model in the snapshot (zero before the first).
	ModelVersion uint64 `json:"model_version"`
	ModelRound   uint64 `json:"model_round"`
	ModelDigest  string `json:"model_digest"` // hex, as /v1/model
	LastRound    uint64 `json:"last_round"`
}

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
	if err := scanSnapshot(io.TeeReader(rc, tmp), &h); err != nil {
		return BackupHeader{}, fmt.Errorf("coordinator: backup: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return BackupHeader{}, fmt.Errorf("coordinator: backup: %w", err)
	}
	if err := writeBackupHeader(w, &h); err != nil {
		return BackupHeader{}, err
	}
	if _, err := io.Copy(w, tmp); err != nil {
		return BackupHeader{}, fmt.Errorf("coordinator: backup: copy snapshot: %w", err)
	}
	return h, nil
}

// scanSnapshot reads a snapshot to its end, filling h's size, checksum,
// newest model and last round.
func scanSnapshot(r io.Reader, h *BackupHeader) error {
	sum := sha256.New()
	cr := &countingReader{r: io.TeeReader(r, sum)}
	sr, err := wire.NewSnapshotReader(cr)
	if err != nil {
		return err
	}
	for {
		rec, err := sr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch rec := rec.(type) {
		case *wire.ModelRecord:
			h.ModelVersion, h.ModelRound, h.ModelDigest = rec.Version, rec.Round, hex.EncodeToString(rec.Digest)
		case *wire.Counters:
			h.LastRound = rec.LastRound
		}
	}
	// The reader buffers ahead: count what the snapshot holds, all of it.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return err
	}
	h.SnapshotSize = cr.n
	h.SnapshotSHA256 = hex.EncodeToString(sum.Sum(nil))
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += int64(k)
	return k, err
}

func writeBackupHeader(w io.Writer, h *BackupHeader) error {
	js, err := json.Marshal(h)
	if err != nil {
		return err
	}
	b := make([]byte, 0, len(BackupMagic)+6+len(js))
	b = append(b, BackupMagic...)
	b = binary.BigEndian.AppendUint16(b, BackupFormat)
	b = binary.BigEndian.AppendUint32(b, uint32(len(js)))
	b = append(b, js...)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("coordinator: backup: write header: %w", err)
	}
	return nil
}

// ReadBackupHeader reads and checks a backup's header; r is then at the
// start of the snapshot.
func ReadBackupHeader(r io.Reader) (BackupHeader, error) {
	var h BackupHeader
	var pre [len(BackupMagic) + 6]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return h, fmt.Errorf("%w: header: %v", ErrBadBackup, err)
	}
	if string(pre[:len(BackupMagic)]) != BackupMagic {
		return h, fmt.Errorf("%w: not a fedrec backup", ErrBadBackup)
	}
	if v := binary.BigEndian.Uint16(pre[len(BackupMagic):]); v != BackupFormat {
		return h, fmt.Errorf("%w: format %d, this release reads %d", ErrBadBackup, v, BackupFormat)
	}
	n := binary.BigEndian.Uint32(pre[len(BackupMagic)+2:])
	if n > maxBackupHeader {
		return h, fmt.Errorf("%w: header of %d bytes, limit %d", ErrBadBackup, n, maxBackupHeader)
	}
	js := make([]byte, n)
	if _, err := io.ReadFull(r, js); err != nil {
		return h, fmt.Errorf("%w: header: %v", ErrBadBackup, err)
	}
	if err := json.Unmarshal(js, &h); err != nil {
		return h, fmt.Errorf("%w: header: %v", ErrBadBackup, err)
	}
	if h.Format != BackupFormat || h.SnapshotSize <= 0 || h.Index == 0 {
		return h, fmt.Errorf("%w: header: format %d, snapshot of %d bytes at index %d", ErrBadBackup, h.Format, h.SnapshotSize, h.Index)
	}
	return h, nil
}

// ReadBackup reads a whole backup and checks it: header, snapshot size and
// SHA-256, every record (as a node restoring it would), the newest model's
// digest against the header's, and nothing after the snapshot.
func ReadBackup(r io.Reader) (BackupHeader, *State, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	h, err := ReadBackupHeader(br)
	if err != nil {
		return h, nil, err
	}
	sum := sha256.New()
	lr := &io.LimitedReader{R: br, N: h.SnapshotSize}
	cr := &countingReader{r: io.TeeReader(lr, sum)}
	st, err := store.ReadSnapshot(cr)
	if err != nil {
		// Say so when the file is short: a copy cut off is the usual cause.
		io.Copy(io.Discard, lr)
		if lr.N > 0 {
			return h, nil, fmt.Errorf("%w: truncated: the file ends %d bytes short of the header's snapshot of %d (%v)", ErrBadBackup, lr.N, h.SnapshotSize, err)
		}
		return h, nil, fmt.Errorf("%w: snapshot: %v", ErrBadBackup, err)
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return h, nil, fmt.Errorf("%w: snapshot: %v", ErrBadBackup, err)
	}
	if cr.n != h.SnapshotSize {
		return h, nil, fmt.Errorf("%w: truncated: snapshot of %d bytes, header says %d", ErrBadBackup, cr.n, h.SnapshotSize)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != h.SnapshotSHA256 {
		return h, nil, fmt.Errorf("%w: snapshot SHA-256 %s, header says %s", ErrBadBackup, got, h.SnapshotSHA256)
	}
	if k, _ := br.Read(make([]byte, 1)); k > 0 {
		return h, nil, fmt.Errorf("%w: bytes after the snapshot", ErrBadBackup)
	}
	var d string
	var v uint64
	if cur := st.Current(); cur != nil {
		d, v = hex.EncodeToString(cur.Digest[:]), cur.Version
	}
	if d != h.ModelDigest || v != h.ModelVersion {
		return h, nil, fmt.Errorf("%w: newest model %d (%s), header says %d (%s)", ErrBadBackup, v, d, h.ModelVersion, h.ModelDigest)
	}
	return h, st, nil
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

// backup serves GET /v1/backup: a backup file of this node's state.
func (a *admin) backup(w http.ResponseWriter, r *http.Request) {
	pr, pw := io.Pipe()
	type result struct {
		h   BackupHeader
		err error
	}
	done := make(chan result, 1)
	go func() {
		h, err := a.n.Backup(pw)
		pw.CloseWithError(err)
		done <- result{h, err}
	}()
	// Read the header first, so that a failed snapshot is a 500 rather
	// than a truncated 200.
	br := bufio.NewReaderSize(pr, 64<<10)
	h, err := ReadBackupHeader(br)
	if err != nil {
		pr.CloseWithError(err)
		res := <-done
		msg := err.Error()
		if res.err != nil {
			msg = res.err.Error()
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(wire.ClusterError{Error: msg})
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="fedrec-%s-%d.backup"`, h.Node, h.Index))
	hdr.Set("Fedrec-Backup-Index", strconv.FormatUint(h.Index, 10))
	hdr.Set("Fedrec-Model-Version", strconv.FormatUint(h.ModelVersion, 10))
	hdr.Set("Fedrec-Model-Digest", h.ModelDigest)
	var hb writeCounter
	writeBackupHeader(&hb, &h)
	hdr.Set("Content-Length", strconv.FormatInt(hb.n+h.SnapshotSize, 10))
	if err := writeBackupHeader(w, &h); err != nil {
		pr.CloseWithError(err)
		<-done
		return
	}
	_, err = io.Copy(w, br)
	pr.CloseWithError(err)
	if res := <-done; res.err != nil || err != nil {
		a.n.log.Warn("backup not sent whole", "err", errors.Join(res.err, err))
	}
}

type writeCounter struct{ n int64 }

func (c *writeCounter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
