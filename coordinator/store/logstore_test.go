package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

func openTestStore(t *testing.T, path string) *BoltStore {
	t.Helper()
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testEntries(lo, hi, term uint64) []*raft.Log {
	var ls []*raft.Log
	for i := lo; i <= hi; i++ {
		ls = append(ls, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte{byte(i), byte(term)}, AppendedAt: time.Unix(1700000000, int64(i))})
	}
	return ls
}

func TestLogEncoding(t *testing.T) {
	tests := []raft.Log{
		{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("round"), AppendedAt: time.Unix(1700000000, 42)},
		{Index: 7, Term: 3, Type: raft.LogConfiguration, Data: make([]byte, 70000), Extensions: []byte{1, 2}},
		{Index: 1 << 62, Term: 1 << 40, Type: raft.LogNoop},
	}
	for _, want := range tests {
		var got raft.Log
		if err := decodeLog(encodeLog(&want), &got); err != nil {
			t.Fatal(err)
		}
		got.Index = want.Index
		if got.Term != want.Term || got.Type != want.Type || !bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) {
			t.Errorf("decode(encode(%+v)) = %+v", want, got)
		}
	}
}

func TestLogDecodeRefusesCorruptEntries(t *testing.T) {
	good := encodeLog(&raft.Log{Term: 2, Type: raft.LogCommand, Data: []byte("abc"), Extensions: []byte("x")})
	tests := map[string][]byte{
		"empty":           {},
		"unknown format":  append([]byte{9}, good[1:]...),
		"truncated":       good[:len(good)-3],
		"trailing bytes":  append(append([]byte(nil), good...), 0),
		"huge data len":   {logFormat, 2, byte(raft.LogCommand), 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"header only":     {logFormat, 2},
		"bad term varint": {logFormat, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			var l raft.Log
			if err := decodeLog(b, &l); !errors.Is(err, errCorruptLog) {
				t.Errorf("decodeLog = %v, want errCorruptLog", err)
			}
		})
	}
}

func FuzzDecodeLog(f *testing.F) {
	f.Add(encodeLog(&raft.Log{Term: 2, Type: raft.LogCommand, Data: []byte("abc")}))
	f.Add(encodeLog(&raft.Log{Term: 1, Type: raft.LogConfiguration, Extensions: []byte{1}, AppendedAt: time.Unix(1, 2)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var l raft.Log
		if decodeLog(b, &l) != nil {
			return
		}
		if re := encodeLog(&l); !bytes.Equal(re, b) && len(l.Data)+len(l.Extensions) > 0 {
			// Varints have one shortest form but decode longer ones too:
			// only the contents must survive a second round trip.
			var l2 raft.Log
			if err := decodeLog(re, &l2); err != nil || !bytes.Equal(l2.Data, l.Data) || l2.Term != l.Term {
				t.Fatalf("re-encoding changed the entry: %v", err)
			}
		}
	})
}

func TestBoltStoreLogs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := openTestStore(t, path)
	if lo, _ := s.FirstIndex(); lo != 0 {
		t.Fatalf("empty store: first index %d", lo)
	}
	if err := s.StoreLogs(testEntries(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLog(testEntries(11, 11, 2)[0]); err != nil {
		t.Fatal(err)
	}
	// Compaction from the head, then a truncated tail (a deposed
	// leader's entries) rewritten in a newer term.
	if err := s.DeleteRange(1, 4); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(9, 11); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(testEntries(9, 12, 3)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openTestStore(t, path) // everything survives a reopen
	lo, _ := s.FirstIndex()
	hi, _ := s.LastIndex()
	if lo != 5 || hi != 12 {
		t.Fatalf("after reopen: indexes %d..%d, want 5..12", lo, hi)
	}
	for i, term := range map[uint64]uint64{5: 1, 8: 1, 9: 3, 12: 3} {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		if l.Index != i || l.Term != term || !bytes.Equal(l.Data, []byte{byte(i), byte(term)}) {
			t.Errorf("entry %d = %+v, want term %d", i, l, term)
		}
	}
	var l raft.Log
	if err := s.GetLog(4, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Errorf("GetLog(deleted) = %v, want raft.ErrLogNotFound", err)
	}
}

func TestBoltStoreStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := openTestStore(t, path)
	// hashicorp/raft tells "no value yet" from a failure by this message.
	if _, err := s.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64 on an empty store = %v, want \"not found\"", err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTestStore(t, path)
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
		t.Errorf("CurrentTerm = %d, %v", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n2" {
		t.Errorf("LastVoteCand = %q, %v", v, err)
	}
	if _, err := s.GetUint64([]byte("LastVoteCand")); err == nil {
		t.Error("GetUint64 of a 2-byte value succeeded")
	}
}

// A second process on the same data directory gets an error, not a hang
// and not a shared log.
func TestBoltStoreLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	openTestStore(t, path)
	if s, err := OpenBoltStore(path); err == nil {
		s.Close()
		t.Fatal("opened a store another holder has open")
	}
}

// A file that is not a bbolt database is refused with an error.
func TestBoltStoreCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := OpenBoltStore(path); err == nil {
		s.Close()
		t.Fatal("opened a corrupt file")
	}
}

// BenchmarkBoltStoreStoreLog measures one fsynced append: a small
// command (a check-in) and a commit carrying a 3,706 x 32 model.
func BenchmarkBoltStoreStoreLog(b *testing.B) {
	for _, size := range []int{100, 3706 * 32 * 4} {
		b.Run(fmt.Sprintf("bytes=%d", size), func(b *testing.B) {
			s, err := OpenBoltStore(filepath.Join(b.TempDir(), "raft.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := make([]byte, size)
			b.SetBytes(int64(size))
			i := uint64(0)
			for b.Loop() {
				i++
				if err := s.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data}); err != nil {
					b.Fatal(err)
				}
				if i%64 == 0 { // compaction, as after a snapshot
					if err := s.DeleteRange(i-63, i-32); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// A log entry that cannot be read makes raft.NewRaft panic while it scans
// the log; NewRaft turns that into an error, so a node on a corrupt data
// directory fails to start with a message instead of crashing.
func TestNewRaftCorruptLog(t *testing.T) {
	s := openTestStore(t, filepath.Join(t.TempDir(), "raft.db"))
	if err := s.StoreLogs(testEntries(1, 3, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketLogs).Put(indexKey(2), []byte{0xff}) }); err != nil {
		t.Fatal(err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = "n1"
	rc.LogOutput = io.Discard
	_, trans := raft.NewInmemTransport("")
	r, err := NewRaft(rc, NewFSM(), s, s, raft.NewInmemSnapshotStore(), trans)
	if err == nil {
		r.Shutdown().Error()
		t.Fatal("started on a log with a corrupt entry")
	}
	if !strings.Contains(err.Error(), "read the log") {
		t.Errorf("error %q does not say the log could not be read", err)
	}
}
