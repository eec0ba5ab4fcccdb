package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A snapshot is SnapshotMagic, a big-endian uint16 SnapshotVersion, then
// records framed like messages ([4-byte length][record type][msgpack]),
// ending with an End record that counts the records before it.
const (
	SnapshotMagic   = "FEDRECSN"
	SnapshotVersion = 1
	// maxRecord bounds one record: a model or the optimizer's two moment
	// vectors at DefaultMaxParams, plus slack.
	maxRecord = 16*DefaultMaxParams + 1<<20
)

// RecordType identifies a snapshot record. Values are only ever appended;
// a retired value is never reused. 0 is invalid.
type RecordType uint8

// Snapshot records.
const (
	RecConfig    RecordType = 1  // TrainingConfig
	RecNode      RecordType = 2  // RegisterNode
	RecModel     RecordType = 3  // ModelRecord, oldest first
	RecOptimizer RecordType = 4  // OptimizerRecord
	RecRound     RecordType = 5  // RoundRecord, oldest first
	RecLedger    RecordType = 6  // LedgerEntry, oldest first
	RecOpenRound RecordType = 7  // OpenRound
	RecCounters  RecordType = 8  // Counters
	RecEnd       RecordType = 9  // End, always last
	RecChange    RecordType = 10 // TrainingChange, oldest first
)

// Record is a snapshot record.
type Record interface{ RecordType() RecordType }

// ModelRecord is a retained model version.
type ModelRecord struct {
	Version uint64 `msgpack:"version"`
	Round   uint64 `msgpack:"round"`
	Digest  []byte `msgpack:"digest"`
	Kind    uint8  `msgpack:"kind"`
	Items   int    `msgpack:"items"`
	Rank    int    `msgpack:"rank"`
	Params  Vec    `msgpack:"params"`
}

// OptimizerRecord is the server optimizer's state.
type OptimizerRecord struct {
	M Vec `msgpack:"m"`
	V Vec `msgpack:"v"`
}

// Round outcomes.
const (
	OutcomeCommitted uint8 = 1
	OutcomeAbandoned uint8 = 2
)

// RoundRecord is one round of the history.
type RoundRecord struct {
	Round     uint64  `msgpack:"round"`
	Outcome   uint8   `msgpack:"outcome"`
	Model     uint64  `msgpack:"model"`     // base version
	NewModel  uint64  `msgpack:"new_model"` // 0 if abandoned
	Cohort    int     `msgpack:"cohort"`
	Survivors int     `msgpack:"survivors"`
	Clipped   int     `msgpack:"clipped"`
	Loss      float64 `msgpack:"loss"`
	N         int64   `msgpack:"n"`
	Reason    string  `msgpack:"reason"`
	// LossUnknown: the leader saw only the sum (a secure round), so Loss,
	// N and Clipped were not collected.
	LossUnknown bool `msgpack:"loss_unknown,omitempty"`
	// Clip is the round's clip and NextClip the next one's, with adaptive
	// clipping (0 otherwise).
	Clip     float64 `msgpack:"clip,omitempty"`
	NextClip float64 `msgpack:"next_clip,omitempty"`
}

// LedgerEntry is one round's entry in the privacy ledger.
type LedgerEntry struct {
	Round           uint64  `msgpack:"round"`
	SamplingRate    float64 `msgpack:"q"`
	NoiseMultiplier float64 `msgpack:"noise"`
	Steps           int     `msgpack:"steps"`
	// Mechanism is MechGaussian (0, the original meaning) or MechSkellam,
	// whose Variance, L1 and L2 the accountant needs.
	Mechanism uint8   `msgpack:"mech,omitempty"`
	Variance  float64 `msgpack:"variance,omitempty"`
	L1        float64 `msgpack:"l1,omitempty"`
	L2        float64 `msgpack:"l2,omitempty"`
}

// TrainingChange is an applied ChangeTraining and the last round opened
// before it: the audit trail of the configuration (whose record holds the
// settings after every change).
type TrainingChange struct {
	Change     ChangeTraining `msgpack:"change"`
	AfterRound uint64         `msgpack:"after_round"`
}

// Counters are the state's scalars.
type Counters struct {
	LastRound uint64 `msgpack:"last_round"`
}

// End closes a snapshot.
type End struct {
	Records int `msgpack:"records"`
}

func (*TrainingConfig) RecordType() RecordType  { return RecConfig }
func (*RegisterNode) RecordType() RecordType    { return RecNode }
func (*ModelRecord) RecordType() RecordType     { return RecModel }
func (*OptimizerRecord) RecordType() RecordType { return RecOptimizer }
func (*RoundRecord) RecordType() RecordType     { return RecRound }
func (*LedgerEntry) RecordType() RecordType     { return RecLedger }
func (*OpenRound) RecordType() RecordType       { return RecOpenRound }
func (*Counters) RecordType() RecordType        { return RecCounters }
func (*End) RecordType() RecordType             { return RecEnd }
func (*TrainingChange) RecordType() RecordType  { return RecChange }

func newRecord(t RecordType) Record {
	switch t {
	case RecConfig:
		return new(TrainingConfig)
	case RecNode:
		return new(RegisterNode)
	case RecModel:
		return new(ModelRecord)
	case RecOptimizer:
		return new(OptimizerRecord)
	case RecRound:
		return new(RoundRecord)
	case RecLedger:
		return new(LedgerEntry)
	case RecOpenRound:
		return new(OpenRound)
	case RecCounters:
		return new(Counters)
	case RecEnd:
		return new(End)
	case RecChange:
		return new(TrainingChange)
	}
	return nil
}

// SnapshotWriter writes a snapshot.
type SnapshotWriter struct {
	w *bufio.Writer
	n int
}

// NewSnapshotWriter writes the snapshot header to w.
func NewSnapshotWriter(w io.Writer) (*SnapshotWriter, error) {
	bw := bufio.NewWriterSize(w, 1<<16)
	bw.WriteString(SnapshotMagic)
	var v [2]byte
	binary.BigEndian.PutUint16(v[:], SnapshotVersion)
	if _, err := bw.Write(v[:]); err != nil {
		return nil, err
	}
	return &SnapshotWriter{w: bw}, nil
}

// Write writes one record.
func (s *SnapshotWriter) Write(r Record) error {
	if _, ok := r.(*End); ok {
		panic("wire: SnapshotWriter.Write(End): use Close")
	}
	return s.write(r)
}

func (s *SnapshotWriter) write(r Record) error {
	body, err := marshal(r)
	if err != nil {
		return fmt.Errorf("wire: encode record %d: %w", r.RecordType(), err)
	}
	var hdr [HeaderLen]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	hdr[4] = byte(r.RecordType())
	s.w.Write(hdr[:])
	_, err = s.w.Write(body)
	s.n++
	return err
}

// Close writes the End record and flushes; it does not close the
// underlying writer.
func (s *SnapshotWriter) Close() error {
	if err := s.write(&End{Records: s.n}); err != nil {
		return err
	}
	return s.w.Flush()
}

// SnapshotReader reads a snapshot.
type SnapshotReader struct {
	r    *bufio.Reader
	n    int
	done bool
}

// NewSnapshotReader reads and checks the snapshot header.
func NewSnapshotReader(r io.Reader) (*SnapshotReader, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var hdr [len(SnapshotMagic) + 2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, fmt.Errorf("wire: snapshot header: %w", err)
	}
	if string(hdr[:len(SnapshotMagic)]) != SnapshotMagic {
		return nil, errors.New("wire: not a fedrec snapshot")
	}
	if v := binary.BigEndian.Uint16(hdr[len(SnapshotMagic):]); v != SnapshotVersion {
		return nil, fmt.Errorf("wire: snapshot version %d, this node reads %d", v, SnapshotVersion)
	}
	return &SnapshotReader{r: br}, nil
}

// Next returns the next record, or io.EOF after the End record. A snapshot
// that ends without one is an error.
func (s *SnapshotReader) Next() (Record, error) {
	if s.done {
		return nil, io.EOF
	}
	var hdr [HeaderLen]byte
	if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
		return nil, fmt.Errorf("wire: snapshot truncated after %d records: %w", s.n, err)
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	rec := newRecord(RecordType(hdr[4]))
	if rec == nil {
		return nil, fmt.Errorf("wire: unknown snapshot record type %d", hdr[4])
	}
	if n > maxRecord {
		return nil, fmt.Errorf("wire: snapshot record of %d bytes, limit %d", n, maxRecord)
	}
	var buf bytes.Buffer // grows as bytes arrive, not to the declared length
	if _, err := io.CopyN(&buf, s.r, int64(n)); err != nil {
		return nil, fmt.Errorf("wire: snapshot truncated in record %d: %w", s.n, err)
	}
	if err := unmarshal(buf.Bytes(), rec); err != nil {
		return nil, fmt.Errorf("wire: snapshot record %d: %w", s.n, err)
	}
	if e, ok := rec.(*End); ok {
		if e.Records != s.n {
			return nil, fmt.Errorf("wire: snapshot ends after %d records, says %d", s.n, e.Records)
		}
		s.done = true
		return nil, io.EOF
	}
	s.n++
	return rec, nil
}
