package store

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

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

// ScanSnapshot reads a snapshot to its end, filling h's size, checksum,
// newest model and last round.
func ScanSnapshot(r io.Reader, h *BackupHeader) error {
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

// WriteBackupHeader writes h as the start of a backup file.
func WriteBackupHeader(w io.Writer, h *BackupHeader) error {
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
	st, err := ReadSnapshot(cr)
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
