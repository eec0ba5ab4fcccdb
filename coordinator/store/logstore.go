package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// BoltStore is the Raft log and stable store: one bbolt file, every write
// one fsynced transaction. It replaces raft-wal v0.4.0, which cannot
// reopen a log whose tail was truncated (hashicorp/raft-wal#31, fixed
// after the last release): a follower that dropped a deposed leader's
// uncommitted entries could never restart. raft-boltdb/v2 would do, but
// v2.3.1 does not build beside raft v1.8.0 (go-metrics/compat is gone).
type BoltStore struct {
	db *bolt.DB
}

var (
	bucketLogs   = []byte("logs")
	bucketStable = []byte("stable")
)

// errKeyNotFound is what hashicorp/raft expects from a stable store that
// has no value yet: it compares the message, not the error.
var errKeyNotFound = errors.New("not found")

// OpenBoltStore opens or creates the store at path. Another process
// holding the file makes it fail after a second rather than hang.
func OpenBoltStore(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLogs, bucketStable} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

func (s *BoltStore) Close() error { return s.db.Close() }

func indexKey(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

// FirstIndex returns the first index in the log, 0 when it is empty.
func (s *BoltStore) FirstIndex() (uint64, error) { return s.edge(true) }

// LastIndex returns the last index in the log, 0 when it is empty.
func (s *BoltStore) LastIndex() (uint64, error) { return s.edge(false) }

func (s *BoltStore) edge(first bool) (idx uint64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLogs).Cursor()
		var k []byte
		if first {
			k, _ = c.First()
		} else {
			k, _ = c.Last()
		}
		if k == nil {
			return nil
		}
		if len(k) != 8 {
			return fmt.Errorf("raft log: corrupt key %x", k)
		}
		idx = binary.BigEndian.Uint64(k)
		return nil
	})
	return idx, err
}

// GetLog reads entry idx into l.
func (s *BoltStore) GetLog(idx uint64, l *raft.Log) error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLogs).Get(indexKey(idx))
		if v == nil {
			return raft.ErrLogNotFound
		}
		if err := decodeLog(v, l); err != nil {
			return fmt.Errorf("raft log entry %d: %w", idx, err)
		}
		l.Index = idx
		return nil
	})
}

func (s *BoltStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs writes entries in one transaction: all or none are durable.
func (s *BoltStore) StoreLogs(ls []*raft.Log) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLogs)
		for _, l := range ls {
			if err := b.Put(indexKey(l.Index), encodeLog(l)); err != nil {
				return fmt.Errorf("raft log entry %d: %w", l.Index, err)
			}
		}
		return nil
	})
}

// DeleteRange deletes entries lo to hi, both included.
func (s *BoltStore) DeleteRange(lo, hi uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLogs).Cursor()
		for k, _ := c.Seek(indexKey(lo)); k != nil && binary.BigEndian.Uint64(k) <= hi; k, _ = c.Next() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *BoltStore) Set(k, v []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketStable).Put(k, v) })
}

func (s *BoltStore) Get(k []byte) (v []byte, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketStable).Get(k); b != nil {
			v = append([]byte(nil), b...) // b lives only as long as tx
			return nil
		}
		return errKeyNotFound
	})
	return v, err
}

func (s *BoltStore) SetUint64(k []byte, v uint64) error {
	return s.Set(k, binary.BigEndian.AppendUint64(nil, v))
}

func (s *BoltStore) GetUint64(k []byte) (uint64, error) {
	v, err := s.Get(k)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("stable store: %q holds %d bytes, want 8", k, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// logFormat versions the entry encoding below (the index is the key).
const logFormat = 1

// encodeLog lays out an entry as: format byte, term, type, appended-at
// (Unix nanoseconds), then data and extensions, each length-prefixed.
func encodeLog(l *raft.Log) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+1+len(l.Data)+len(l.Extensions)+2*binary.MaxVarintLen64)
	b = append(b, logFormat)
	b = binary.AppendUvarint(b, l.Term)
	b = append(b, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.AppendVarint(b, at)
	b = binary.AppendUvarint(b, uint64(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	return append(b, l.Extensions...)
}

var errCorruptLog = errors.New("corrupt entry")

// decodeLog is encodeLog's inverse; it copies the bytes it keeps, since
// bbolt's value is valid only inside its transaction.
func decodeLog(b []byte, l *raft.Log) error {
	if len(b) == 0 || b[0] != logFormat {
		return fmt.Errorf("%w: unknown format", errCorruptLog)
	}
	b = b[1:]
	uvarint := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	bytes := func() ([]byte, bool) {
		n, ok := uvarint()
		if !ok || n > uint64(len(b)) {
			return nil, false
		}
		v := append([]byte(nil), b[:n]...)
		b = b[n:]
		return v, true
	}
	term, ok := uvarint()
	if !ok || len(b) == 0 {
		return fmt.Errorf("%w: truncated header", errCorruptLog)
	}
	typ := raft.LogType(b[0])
	b = b[1:]
	at, n := binary.Varint(b)
	if n <= 0 {
		return fmt.Errorf("%w: truncated header", errCorruptLog)
	}
	b = b[n:]
	data, ok := bytes()
	if !ok {
		return fmt.Errorf("%w: truncated data", errCorruptLog)
	}
	ext, ok := bytes()
	if !ok || len(b) != 0 {
		return fmt.Errorf("%w: bad extensions", errCorruptLog)
	}
	*l = raft.Log{Term: term, Type: typ, Data: data, Extensions: ext}
	if at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	return nil
}
