package client

// The local store: everything the SDK keeps about the user, encrypted at
// rest, in Config.Dir (a directory, or in a browser an IndexedDB database:
// see storage).
//
//	fedrec.key    the data key (DEK), sealed with the app's key, and the
//	              store's random ID
//	fedrec.snap   a snapshot: the whole state as of generation g
//	fedrec.log    records appended since snapshot g, one frame each
//	fedrec.model  the cached global model and its item catalogue
//
// Every file starts with "FEDREC", a file-type byte and a format version.
// The key, snapshot and model files are written whole to a temporary file,
// fsynced and renamed over the old one; the log is appended and fsynced
// after every write. Each log frame carries CRC-32C checksums of its length
// and its payload, and its payload is sealed with AES-256-GCM under the DEK
// with the store ID, generation and record number as additional data, so a
// frame cannot be altered, reordered, dropped from the middle or moved to
// another store without detection.
//
// What is not intact is never used: a failed checksum or authentication, a
// short snapshot, or files that disagree make open fail with ErrCorrupt. The
// single exception is the tail of the log, where a crash in the middle of
// an append leaves an incomplete or zero-filled frame: that frame is dropped
// (it was never acknowledged to the caller), the file is truncated back to
// the last whole record and a warning is logged.
//
// Compaction writes a snapshot of generation g+1 and then a fresh, empty log
// of generation g+1. A crash between the two leaves a log of generation g,
// which is recognised as already folded into the snapshot and replaced.
//
// In a browser, an IndexedDB transaction stands for each fsync and rename.
//
// Deletion removes the key file first: once it is gone, whatever remains is
// ciphertext under a key that no longer exists, and the next open finishes
// the removal.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/fedrec/fedrec/model"
)

// File names in Config.Dir. Every file the SDK creates starts with
// filePrefix.
const (
	filePrefix = "fedrec."
	keyFile    = "fedrec.key"
	snapFile   = "fedrec.snap"
	logFile    = "fedrec.log"
	modelFile  = "fedrec.model"
	tmpSuffix  = ".tmp"
)

// File types in a file's header. Values start at 1 and are only ever
// appended.
const (
	fileKey   byte = 1
	fileSnap  byte = 2
	fileLog   byte = 3
	fileModel byte = 4
)

const (
	formatVersion = 1
	headerLen     = 8  // "FEDREC", type, version
	idLen         = 16 // store ID
	keyLen        = 32 // AES-256
	nonceLen      = 12
	tagLen        = 16
	// keyFileLen: header, store ID, nonce, sealed DEK, CRC.
	keyFileLen = headerLen + idLen + nonceLen + keyLen + tagLen + 4
	// blobOverhead: header, generation, body length, nonce, tag, CRC.
	blobOverhead = headerLen + 8 + 4 + nonceLen + tagLen + 4
	// logHeaderLen: header, generation, CRC.
	logHeaderLen = headerLen + 8 + 4
	// frameHeaderLen: payload length, CRC of the length, CRC of the payload.
	frameHeaderLen = 12
	// maxFrame bounds a log frame's payload; the largest record is a user
	// factor of maxRank float64s.
	maxFrame = nonceLen + tagLen + 64 + 8*maxRank
	// compactEvery: the log is folded into a new snapshot after this many
	// records, so that expired or evicted data leaves the disk.
	compactEvery = 1000
)

// Limits on decoded values, so that untrusted bytes cannot ask for huge
// allocations.
const (
	maxItemID     = 256
	maxRank       = 4096
	maxItems      = 1 << 24
	maxEventKinds = 64
)

var magic = [6]byte{'F', 'E', 'D', 'R', 'E', 'C'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b ...[]byte) uint32 {
	var c uint32
	for _, p := range b {
		c = crc32.Update(c, castagnoli, p)
	}
	return c
}

func header(typ byte) []byte {
	return append(magic[:len(magic):len(magic)], typ, formatVersion)
}

func checkHeader(b []byte, typ byte, name string) error {
	if len(b) < headerLen || !bytes.Equal(b[:len(magic)], magic[:]) || b[6] != typ {
		return corruptf("%s: bad header", name)
	}
	if b[7] != formatVersion {
		return corruptf("%s: format version %d, want %d", name, b[7], formatVersion)
	}
	return nil
}

// store persists a state. It is not safe for concurrent use; the Client
// serialises calls.
type store struct {
	files storage
	kek   keySealer // the app's key, or the browser's
	rand  io.Reader // store IDs, DEKs and nonces
	log   *slog.Logger

	// Zero until the store exists on disk; it is created at the first
	// write, so a Client that never records leaves no file behind.
	dek  []byte
	aead cipher.AEAD
	id   [idLen]byte
	gen  uint64

	f      appendFile // the log
	seq    uint64     // records in the log
	size   int64
	broken error // a failed append left the log in an unknown state
}

func newAEAD(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic("client: " + err.Error()) // key lengths are checked by the callers
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		panic("client: " + err.Error())
	}
	return a
}

// openStore opens or prepares the store in files and loads its state. The
// model file is loaded separately (loadModel).
func openStore(files storage, kek keySealer, rnd io.Reader, log *slog.Logger) (*store, *state, error) {
	s := &store{files: files, kek: kek, rand: rnd, log: log}
	names, err := files.list()
	if err != nil {
		return nil, nil, err
	}
	for _, n := range names {
		if strings.HasSuffix(n, tmpSuffix) {
			// Left by a crash before a rename: never part of the store.
			if err := files.remove(n); err != nil {
				return nil, nil, fmt.Errorf("client: store: %w", err)
			}
		}
	}
	kb, err := files.read(keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		// No key: nothing, or the remains of an interrupted deletion,
		// unreadable without the key. Finish it.
		if n, err := removeFiles(files); err != nil {
			return nil, nil, err
		} else if n > 0 {
			log.Warn("client: removed files left by an interrupted deletion", "files", n)
		}
		return s, newState(), nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("client: store: %w", err)
	}
	if err := s.unsealKey(kb); err != nil {
		return nil, nil, err
	}
	st := newState()
	snapGen, err := s.readSnapshot(st)
	if err != nil {
		return nil, nil, err
	}
	s.gen = snapGen
	if err := s.openLog(st); err != nil {
		return nil, nil, err
	}
	return s, st, nil
}

// Remove deletes every file of a local store from dir (the key file first,
// so that what a crash might leave behind is unreadable). Apps use it to
// start over when New reports ErrCorrupt; a Client's DeleteMyData does the
// same for an open store. Other files in dir are left alone.
func Remove(dir string) error {
	files, err := openStorage(dir, false)
	if err != nil {
		return err
	}
	_, err = removeFiles(files)
	return errors.Join(err, files.close())
}

func removeFiles(files storage) (int, error) {
	names, err := files.list()
	if err != nil {
		return 0, err
	}
	// The key first: without it the rest is ciphertext under a lost key.
	slices.SortFunc(names, func(a, b string) int {
		switch {
		case a == keyFile:
			return -1
		case b == keyFile:
			return 1
		}
		return strings.Compare(a, b)
	})
	for i, n := range names {
		if err := files.remove(n); err != nil {
			return 0, fmt.Errorf("client: remove store: %w", err)
		}
		if i == 0 && n == keyFile {
			if err := files.sync(); err != nil {
				return 0, err
			}
		}
	}
	if len(names) > 0 {
		if err := files.sync(); err != nil {
			return 0, err
		}
	}
	return len(names), nil
}

// exists reports whether the store has been created on disk.
func (s *store) exists() bool { return s.aead != nil }

// create makes a new store on disk: a fresh store ID and DEK sealed under
// the app's key, and an empty log of generation 0.
func (s *store) create() error {
	var id [idLen]byte
	dek := make([]byte, keyLen)
	if _, err := io.ReadFull(s.rand, id[:]); err != nil {
		return fmt.Errorf("client: store: random: %w", err)
	}
	if _, err := io.ReadFull(s.rand, dek); err != nil {
		return fmt.Errorf("client: store: random: %w", err)
	}
	b := append(header(fileKey), id[:]...)
	nonce, err := s.nonce()
	if err != nil {
		return err
	}
	b = append(b, nonce...)
	sealed, err := s.kek.sealKey(nonce, dek, b[:headerLen+idLen])
	if err != nil {
		return fmt.Errorf("client: store: seal the data key: %w", err)
	}
	b = append(b, sealed...)
	b = binary.LittleEndian.AppendUint32(b, crc(b))
	if err := s.files.write(keyFile, b); err != nil {
		return err
	}
	s.id, s.dek, s.aead, s.gen = id, dek, newAEAD(dek), 0
	return s.resetLog()
}

func (s *store) nonce() ([]byte, error) {
	n := make([]byte, nonceLen)
	if _, err := io.ReadFull(s.rand, n); err != nil {
		return nil, fmt.Errorf("client: store: random: %w", err)
	}
	return n, nil
}

func (s *store) unsealKey(b []byte) error {
	if len(b) != keyFileLen {
		return corruptf("%s: %d bytes, want %d", keyFile, len(b), keyFileLen)
	}
	if err := checkHeader(b, fileKey, keyFile); err != nil {
		return err
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc(body) != sum {
		return corruptf("%s: checksum mismatch", keyFile)
	}
	aad := body[:headerLen+idLen]
	nonce := body[headerLen+idLen : headerLen+idLen+nonceLen]
	// The checksum holds, so the bytes are as written: a failure to open
	// is another key.
	dek, err := s.kek.openKey(nonce, body[headerLen+idLen+nonceLen:], aad)
	if err != nil {
		return err
	}
	copy(s.id[:], body[headerLen:])
	s.dek, s.aead = dek, newAEAD(dek)
	return nil
}

// sealBlob encodes a whole-file blob (snapshot or model): header,
// generation, body length, nonce, sealed body, CRC.
func (s *store) sealBlob(typ byte, gen uint64, body []byte) ([]byte, error) {
	nonce, err := s.nonce()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, blobOverhead+len(body))
	b = append(b, header(typ)...)
	b = binary.LittleEndian.AppendUint64(b, gen)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)+tagLen))
	b = append(b, nonce...)
	b = s.aead.Seal(b, nonce, body, s.blobAAD(b[:headerLen+8]))
	return binary.LittleEndian.AppendUint32(b, crc(b)), nil
}

func (s *store) blobAAD(hdr []byte) []byte {
	return append(slices.Clip(hdr), s.id[:]...)
}

// openBlob checks and decrypts a blob written by sealBlob.
func (s *store) openBlob(b []byte, typ byte, name string) (gen uint64, body []byte, err error) {
	if len(b) < blobOverhead {
		return 0, nil, corruptf("%s: truncated (%d bytes)", name, len(b))
	}
	if err := checkHeader(b, typ, name); err != nil {
		return 0, nil, err
	}
	if n := binary.LittleEndian.Uint32(b[headerLen+8:]); int64(n) != int64(len(b)-blobOverhead+tagLen) {
		return 0, nil, corruptf("%s: truncated or extended: %d bytes for a %d-byte body", name, len(b), n)
	}
	data, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc(data) != sum {
		return 0, nil, corruptf("%s: checksum mismatch", name)
	}
	gen = binary.LittleEndian.Uint64(b[headerLen:])
	off := headerLen + 8 + 4
	body, err = s.aead.Open(nil, data[off:off+nonceLen], data[off+nonceLen:], s.blobAAD(b[:headerLen+8]))
	if err != nil {
		return 0, nil, corruptf("%s: authentication failed", name)
	}
	return gen, body, nil
}

// readSnapshot applies the snapshot, if any, to st and returns its
// generation (0 without one).
func (s *store) readSnapshot(st *state) (uint64, error) {
	b, err := s.files.read(snapFile)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("client: store: %w", err)
	}
	gen, body, err := s.openBlob(b, fileSnap, snapFile)
	if err != nil {
		return 0, err
	}
	if gen == 0 {
		return 0, corruptf("%s: generation 0", snapFile)
	}
	if err := decodeSnapshot(st, body); err != nil {
		return 0, fmt.Errorf("%s: %w", snapFile, err)
	}
	return gen, nil
}

// decodeSnapshot applies the records of a snapshot body to st: each is a
// uvarint length and the record.
func decodeSnapshot(st *state, body []byte) error {
	for len(body) > 0 {
		n, k := binary.Uvarint(body)
		if k <= 0 || n > uint64(len(body)-k) {
			return corruptf("snapshot record length")
		}
		r, err := decodeRecord(body[k : k+int(n)])
		if err != nil {
			return err
		}
		st.apply(r)
		body = body[k+int(n):]
	}
	return nil
}

func (s *store) logHeader(gen uint64) []byte {
	b := binary.LittleEndian.AppendUint64(header(fileLog), gen)
	return binary.LittleEndian.AppendUint32(b, crc(b))
}

// resetLog replaces the log with an empty one of the current generation
// and opens it for appending.
func (s *store) resetLog() error {
	if s.f != nil {
		s.f.close()
		s.f = nil
	}
	h := s.logHeader(s.gen)
	if err := s.files.write(logFile, h); err != nil {
		return err
	}
	f, err := s.files.openAppend(logFile)
	if err != nil {
		return fmt.Errorf("client: store: %w", err)
	}
	s.f, s.seq, s.size, s.broken = f, 0, int64(len(h)), nil
	return nil
}

// openLog replays the log into st and opens it for appending.
func (s *store) openLog(st *state) error {
	b, err := s.files.read(logFile)
	if errors.Is(err, fs.ErrNotExist) {
		if s.gen > 0 {
			// Compaction renames the new log in right after the
			// snapshot: a missing log was removed, and with it what
			// was recorded since the snapshot (ledger charges among
			// it, perhaps). Never carry on without it.
			return fmt.Errorf("%w: %s of generation %d", ErrMissing, logFile, s.gen)
		}
		return s.resetLog()
	}
	if err != nil {
		return fmt.Errorf("client: store: %w", err)
	}
	good, seq, stale, err := s.readLog(st, b)
	if err != nil {
		return err
	}
	if stale {
		return s.resetLog()
	}
	f, err := s.files.openAppend(logFile)
	if err != nil {
		return fmt.Errorf("client: store: %w", err)
	}
	if good < int64(len(b)) {
		s.log.Warn("client: dropped an incomplete record at the end of the store log (crash during a write)",
			"offset", good, "bytes", int64(len(b))-good)
		if err := f.truncate(good); err != nil {
			f.close()
			return fmt.Errorf("client: store: truncate log: %w", err)
		}
	}
	s.f, s.seq, s.size = f, seq, good
	return nil
}

// readLog checks the log's header and replays its records into st; stale
// reports a log older than the snapshot, whose records are in it already.
func (s *store) readLog(st *state, b []byte) (good int64, seq uint64, stale bool, err error) {
	if len(b) < logHeaderLen {
		return 0, 0, false, corruptf("%s: truncated header", logFile)
	}
	if err := checkHeader(b, fileLog, logFile); err != nil {
		return 0, 0, false, err
	}
	if crc(b[:logHeaderLen-4]) != binary.LittleEndian.Uint32(b[logHeaderLen-4:]) {
		return 0, 0, false, corruptf("%s: header checksum mismatch", logFile)
	}
	gen := binary.LittleEndian.Uint64(b[headerLen:])
	switch {
	case gen < s.gen:
		// A crash after the snapshot's rename and before the log's.
		return 0, 0, true, nil
	case gen > s.gen:
		return 0, 0, false, fmt.Errorf("%w: %s of generation %d, ahead of the snapshot's %d (snapshot removed)", ErrMissing, logFile, gen, s.gen)
	}
	good, seq, err = s.replay(st, b)
	return good, seq, false, err
}

// replay applies the log's whole records to st. It returns the offset after
// the last whole record and the number of records. See the package comment
// on the store for what counts as a torn tail.
func (s *store) replay(st *state, b []byte) (good int64, seq uint64, err error) {
	off := logHeaderLen
	for off < len(b) {
		rest := b[off:]
		if allZero(rest) || len(rest) < frameHeaderLen {
			break // torn tail: zero-filled or a partial frame header
		}
		n := binary.LittleEndian.Uint32(rest)
		if crc(rest[:4]) != binary.LittleEndian.Uint32(rest[4:]) {
			return 0, 0, corruptf("%s: record %d at offset %d: length checksum mismatch", logFile, seq, off)
		}
		if n < nonceLen+tagLen || n > maxFrame {
			return 0, 0, corruptf("%s: record %d at offset %d: length %d out of range", logFile, seq, off, n)
		}
		end := frameHeaderLen + int(n)
		if end > len(rest) {
			break // torn tail: the payload was not all written
		}
		payload := rest[frameHeaderLen:end]
		if crc(payload) != binary.LittleEndian.Uint32(rest[8:]) {
			if end == len(rest) {
				break // torn tail: the last payload did not reach the disk
			}
			return 0, 0, corruptf("%s: record %d at offset %d: checksum mismatch", logFile, seq, off)
		}
		plain, err := s.aead.Open(nil, payload[:nonceLen], payload[nonceLen:], s.frameAAD(seq))
		if err != nil {
			return 0, 0, corruptf("%s: record %d at offset %d: authentication failed", logFile, seq, off)
		}
		r, err := decodeRecord(plain)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: record %d: %w", logFile, seq, err)
		}
		st.apply(r)
		seq++
		off += end
	}
	return int64(off), seq, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (s *store) frameAAD(seq uint64) []byte {
	a := make([]byte, 0, idLen+16)
	a = append(a, s.id[:]...)
	a = binary.LittleEndian.AppendUint64(a, s.gen)
	return binary.LittleEndian.AppendUint64(a, seq)
}

// append writes records to the log and fsyncs it, creating the store first
// if needed. On return without error the records are durable.
func (s *store) append(recs ...record) error {
	if s.broken != nil {
		return s.broken
	}
	if !s.exists() {
		if err := s.create(); err != nil {
			return err
		}
	}
	var buf []byte
	var plain []byte
	for i, r := range recs {
		plain = appendRecord(plain[:0], r)
		nonce, err := s.nonce()
		if err != nil {
			return err
		}
		start := len(buf)
		buf = append(buf, make([]byte, frameHeaderLen)...)
		buf = append(buf, nonce...)
		buf = s.aead.Seal(buf, nonce, plain, s.frameAAD(s.seq+uint64(i)))
		payload := buf[start+frameHeaderLen:]
		binary.LittleEndian.PutUint32(buf[start:], uint32(len(payload)))
		binary.LittleEndian.PutUint32(buf[start+4:], crc(buf[start:start+4]))
		binary.LittleEndian.PutUint32(buf[start+8:], crc(payload))
	}
	if err := s.f.append(buf); err != nil {
		// Put the log back as it was; if that fails too, refuse further
		// writes: the next open recovers the tail.
		if terr := s.f.truncate(s.size); terr != nil {
			s.broken = fmt.Errorf("client: store: log unusable after failed write: %w", err)
		}
		return fmt.Errorf("client: store: append: %w", err)
	}
	s.seq += uint64(len(recs))
	s.size += int64(len(buf))
	return nil
}

// compact writes st as the snapshot of the next generation and starts an
// empty log for it.
func (s *store) compact(st *state) error {
	if !s.exists() {
		if err := s.create(); err != nil {
			return err
		}
	}
	var body, rec []byte
	for r := range st.records() {
		rec = appendRecord(rec[:0], r)
		body = binary.AppendUvarint(body, uint64(len(rec)))
		body = append(body, rec...)
	}
	b, err := s.sealBlob(fileSnap, s.gen+1, body)
	clear(body)
	if err != nil {
		return err
	}
	if err := s.files.write(snapFile, b); err != nil {
		return err
	}
	s.gen++
	return s.resetLog()
}

// saveModel caches a model release on disk.
func (s *store) saveModel(r *Release) error {
	if !s.exists() {
		if err := s.create(); err != nil {
			return err
		}
	}
	b, err := s.sealBlob(fileModel, r.Version, encodeRelease(r))
	if err != nil {
		return err
	}
	return s.files.write(modelFile, b)
}

// loadModel returns the cached release, or nil if there is none.
func (s *store) loadModel() (*Release, error) {
	if !s.exists() {
		return nil, nil
	}
	b, err := s.files.read(modelFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client: store: %w", err)
	}
	ver, body, err := s.openBlob(b, fileModel, modelFile)
	if err != nil {
		return nil, err
	}
	r, err := decodeRelease(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", modelFile, err)
	}
	if r.Version != ver {
		return nil, corruptf("%s: version %d in a file of version %d", modelFile, r.Version, ver)
	}
	return r, nil
}

// close releases the log file and forgets the keys. The storage stays
// open: the Client that opened it closes it.
func (s *store) close() error {
	var err error
	if s.f != nil {
		err = s.f.close()
		s.f = nil
	}
	clear(s.dek)
	s.dek, s.aead, s.id, s.gen, s.seq, s.size, s.broken = nil, nil, [idLen]byte{}, 0, 0, 0, nil
	return err
}

// wipe closes the store and removes its files; the store can be written
// again afterwards, with a new ID and DEK.
func (s *store) wipe() error {
	cerr := s.close()
	if _, err := removeFiles(s.files); err != nil {
		return err
	}
	return cerr
}

// State and records.

// state is what the store holds, in memory.
type state struct {
	interactions []stored // in order of recording
	user         *userRec // nil if none
	userFresh    bool     // no interaction changed since user was fitted
	optedIn      bool
	consentAt    int64 // unix seconds of the last consent change
	charges      []charge
	declines     []decline
}

func newState() *state { return &state{} }

// stored is an interaction as kept: item, kind, value, time in unix
// seconds (truncated to the hour).
type stored struct {
	Item  string
	Kind  Kind
	Value float64
	Time  int64
}

// userRec is the user's own factor, fitted against model version Version.
type userRec struct {
	Version uint64
	User    model.User
}

type consentRec struct {
	In   bool
	Time int64
}

// charge is one round the device gave an update to: a line of the ledger.
// It is written before the update leaves the SDK.
type charge struct {
	Round, ModelVersion uint64
	Time                int64
	SamplingRate        float64 // as accounted: 1 unless the policy trusts the announced rate
	NoiseMultiplier     float64
	ClipNorm            float64
	DeviceNoiseStd      float64
	Params              int64
	Bytes               int64
	Acked               bool
	// Mechanism is what the ledger charges: a Gaussian of NoiseMultiplier
	// (as every charge of a recCharge record), or with MechSkellam the
	// Skellam mechanism of Variance (the noise sure to reach the sum less
	// the device's own share) and the sensitivities L1 and L2, integer
	// domain (a recChargeMech record).
	Mechanism Mechanism
	Variance  float64
	L1, L2    float64
	// Terms are the round's terms as the device checked them against its
	// policy (a recTerms record after the charge); zero in charges of
	// stores written before they were recorded.
	Terms roundTerms
}

// roundTerms are the terms of a round the device took part in, kept with
// its charge: the digest of the terms its plan announced (the manifest's) and
// the terms of its secure aggregation, if any. Clip, noise and what the
// device sent are in the charge.
type roundTerms struct {
	// TermsDigest is the digest of the round's terms in the plan
	// (wire.Plan.TermsDigest, which the committed manifest gives too);
	// zero when the federation has no plan.
	TermsDigest [32]byte
	// MinCohort is the fewest devices the round aggregates together.
	MinCohort int64
	// Secure: the update went through secure aggregation, among
	// SecAggClients devices with threshold SecAggThreshold. Signed: a
	// signed round, resisting SecAggColluders colluding devices per
	// neighbourhood (-1: none).
	Secure, Signed                                  bool
	SecAggClients, SecAggThreshold, SecAggColluders int64
	// Roster: a signed round of the device roster's devices only, in
	// which the device accepted only roster credentials.
	Roster bool
}

// termsRec records the terms of the latest charge of Round.
type termsRec struct {
	Round uint64
	Terms roundTerms
}

// ackRec marks the charge of a round as acknowledged by the coordinator.
type ackRec struct{ Round uint64 }

// bytesRec records the bytes the network side reports having sent.
type bytesRec struct {
	Round uint64
	Bytes int64
}

type decline struct {
	Round, ModelVersion uint64
	Time                int64
	Reason              Reason
}

// Record types. Values start at 1 and are only ever appended; retired
// values are never reused.
type recType byte

const (
	recInteraction recType = 1 + iota
	recUser
	recConsent
	recCharge
	recAck
	recDecline
	recBytes
	// recChargeMech is a charge of a mechanism other than the Gaussian:
	// the fields of recCharge, the mechanism and its parameters. Gaussian
	// charges stay recCharge, as the first SDK wrote them.
	recChargeMech
	// recTerms follows a charge: the round's terms (termsRec).
	recTerms
	// recTermsRoster is recTerms of a round of roster devices only
	// (roundTerms.Roster), with the same fields.
	recTermsRoster
)

type record any // one of the types decodeRecord returns

// apply folds one record into the state.
func (st *state) apply(r record) {
	switch r := r.(type) {
	case stored:
		st.interactions = append(st.interactions, r)
		st.userFresh = false
	case userRec:
		st.user, st.userFresh = &r, true
	case consentRec:
		st.optedIn, st.consentAt = r.In, r.Time
	case charge:
		st.charges = append(st.charges, r)
	case ackRec:
		for i := range slices.Backward(st.charges) {
			if st.charges[i].Round == r.Round {
				st.charges[i].Acked = true
				break
			}
		}
	case bytesRec:
		for i := range slices.Backward(st.charges) {
			if st.charges[i].Round == r.Round {
				st.charges[i].Bytes = r.Bytes
				break
			}
		}
	case termsRec:
		for i := range slices.Backward(st.charges) {
			if st.charges[i].Round == r.Round {
				st.charges[i].Terms = r.Terms
				break
			}
		}
	case decline:
		if len(st.declines) >= maxDeclines {
			st.declines = slices.Delete(st.declines, 0, len(st.declines)-maxDeclines+1)
		}
		st.declines = append(st.declines, r)
	default:
		panic(fmt.Sprintf("client: apply %T", r))
	}
}

// records yields the records that rebuild st.
func (st *state) records() func(yield func(record) bool) {
	return func(yield func(record) bool) {
		if st.consentAt != 0 || st.optedIn {
			if !yield(consentRec{In: st.optedIn, Time: st.consentAt}) {
				return
			}
		}
		// A stale user goes before the interactions, a fresh one after
		// them, so that a snapshot keeps its freshness.
		if st.user != nil && !st.userFresh && !yield(*st.user) {
			return
		}
		for _, c := range st.charges {
			if !yield(c) {
				return
			}
			if c.Terms != (roundTerms{}) && !yield(termsRec{Round: c.Round, Terms: c.Terms}) {
				return
			}
		}
		for _, d := range st.declines {
			if !yield(d) {
				return
			}
		}
		for _, x := range st.interactions {
			if !yield(x) {
				return
			}
		}
		if st.user != nil && st.userFresh {
			yield(*st.user)
		}
	}
}

// wipe zeroes what the state holds.
func (st *state) wipe() {
	for i := range st.interactions {
		st.interactions[i] = stored{}
	}
	if st.user != nil {
		clear(st.user.User.Factor)
	}
	*st = state{}
}

// appendRecord encodes r: its type byte, then its fields little-endian;
// strings and vectors are prefixed with a uvarint length.
func appendRecord(b []byte, r record) []byte {
	f64 := func(b []byte, x float64) []byte { return binary.LittleEndian.AppendUint64(b, math.Float64bits(x)) }
	u64 := binary.LittleEndian.AppendUint64
	i64 := func(b []byte, x int64) []byte { return u64(b, uint64(x)) }
	switch r := r.(type) {
	case stored:
		b = append(b, byte(recInteraction))
		b = binary.AppendUvarint(b, uint64(len(r.Item)))
		b = append(b, r.Item...)
		b = append(b, byte(r.Kind))
		b = f64(b, r.Value)
		b = i64(b, r.Time)
	case userRec:
		b = append(b, byte(recUser))
		b = u64(b, r.Version)
		b = f64(b, r.User.Bias)
		b = binary.AppendUvarint(b, uint64(len(r.User.Factor)))
		for _, x := range r.User.Factor {
			b = f64(b, x)
		}
	case consentRec:
		b = append(b, byte(recConsent), boolByte(r.In))
		b = i64(b, r.Time)
	case charge:
		typ := recCharge
		if r.Mechanism != MechGaussian && r.Mechanism != 0 {
			typ = recChargeMech
		}
		b = append(b, byte(typ))
		b = u64(b, r.Round)
		b = u64(b, r.ModelVersion)
		b = i64(b, r.Time)
		b = f64(b, r.SamplingRate)
		b = f64(b, r.NoiseMultiplier)
		b = f64(b, r.ClipNorm)
		b = f64(b, r.DeviceNoiseStd)
		b = i64(b, r.Params)
		b = i64(b, r.Bytes)
		b = append(b, boolByte(r.Acked))
		if typ == recChargeMech {
			b = append(b, byte(r.Mechanism))
			b = f64(b, r.Variance)
			b = f64(b, r.L1)
			b = f64(b, r.L2)
		}
	case termsRec:
		typ := recTerms
		if r.Terms.Roster {
			typ = recTermsRoster
		}
		b = append(b, byte(typ))
		b = u64(b, r.Round)
		b = append(b, r.Terms.TermsDigest[:]...)
		b = append(b, boolByte(r.Terms.Secure), boolByte(r.Terms.Signed))
		b = i64(b, r.Terms.MinCohort)
		b = i64(b, r.Terms.SecAggClients)
		b = i64(b, r.Terms.SecAggThreshold)
		b = i64(b, r.Terms.SecAggColluders)
	case ackRec:
		b = append(b, byte(recAck))
		b = u64(b, r.Round)
	case bytesRec:
		b = append(b, byte(recBytes))
		b = u64(b, r.Round)
		b = i64(b, r.Bytes)
	case decline:
		b = append(b, byte(recDecline))
		b = u64(b, r.Round)
		b = u64(b, r.ModelVersion)
		b = i64(b, r.Time)
		b = append(b, byte(r.Reason))
	default:
		panic(fmt.Sprintf("client: appendRecord %T", r))
	}
	return b
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// dec reads fields from untrusted bytes; the first failure sticks.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(what string) {
	if d.err == nil {
		d.err = corruptf("record: bad %s", what)
	}
}

func (d *dec) take(n int, what string) []byte {
	if d.err != nil || n < 0 || n > len(d.b) {
		d.fail(what)
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) u8(what string) byte {
	if p := d.take(1, what); p != nil {
		return p[0]
	}
	return 0
}

func (d *dec) u64(what string) uint64 {
	if p := d.take(8, what); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func (d *dec) i64(what string) int64 { return int64(d.u64(what)) }

// f64 reads a finite float.
func (d *dec) f64(what string) float64 {
	x := math.Float64frombits(d.u64(what))
	if math.IsNaN(x) || math.IsInf(x, 0) {
		d.fail(what)
		return 0
	}
	return x
}

// nonNeg reads a finite float >= 0.
func (d *dec) nonNeg(what string) float64 {
	x := d.f64(what)
	if x < 0 {
		d.fail(what)
		return 0
	}
	return x
}

func (d *dec) bool(what string) bool {
	switch d.u8(what) {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail(what)
	return false
}

func (d *dec) uvarint(max uint64, what string) int {
	if d.err != nil {
		return 0
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > max {
		d.fail(what)
		return 0
	}
	d.b = d.b[k:]
	return int(n)
}

func (d *dec) str(max int, what string) string {
	n := d.uvarint(uint64(max), what)
	return string(d.take(n, what))
}

// end fails if bytes remain.
func (d *dec) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

// decodeRecord decodes one record. Every failure wraps ErrCorrupt.
func decodeRecord(b []byte) (record, error) {
	d := &dec{b: b}
	var r record
	switch t := recType(d.u8("type")); t {
	case recInteraction:
		x := stored{Item: d.str(maxItemID, "item")}
		x.Kind = Kind(d.u8("kind"))
		x.Value = d.f64("value")
		x.Time = d.i64("time")
		if d.err == nil && (x.Item == "" || x.Kind.validate(x.Value) != nil) {
			d.fail("interaction")
		}
		r = x
	case recUser:
		u := userRec{Version: d.u64("model version")}
		u.User.Bias = d.f64("user bias")
		n := d.uvarint(maxRank, "rank")
		if n > len(d.b)/8 {
			d.fail("rank")
		}
		if d.err == nil {
			u.User.Factor = make([]float64, n)
			for i := range u.User.Factor {
				u.User.Factor[i] = d.f64("user factor")
			}
		}
		r = u
	case recConsent:
		r = consentRec{In: d.bool("consent"), Time: d.i64("time")}
	case recCharge, recChargeMech:
		c := charge{Round: d.u64("round"), ModelVersion: d.u64("model version"), Time: d.i64("time")}
		c.SamplingRate = d.nonNeg("sampling rate")
		c.NoiseMultiplier = d.nonNeg("noise multiplier")
		c.ClipNorm = d.nonNeg("clip norm")
		c.DeviceNoiseStd = d.nonNeg("device noise")
		c.Params = d.i64("params")
		c.Bytes = d.i64("bytes")
		c.Acked = d.bool("acked")
		c.Mechanism = MechGaussian
		if t == recChargeMech {
			c.Mechanism = Mechanism(d.u8("mechanism"))
			c.Variance = d.nonNeg("noise variance")
			c.L1 = d.nonNeg("L1 sensitivity")
			c.L2 = d.nonNeg("L2 sensitivity")
			if d.err == nil && (c.Mechanism != MechSkellam || c.L1 == 0 || c.L2 == 0) {
				d.fail("charge mechanism")
			}
		}
		if d.err == nil && (c.SamplingRate > 1 || c.Params < 0 || c.Bytes < 0) {
			d.fail("charge")
		}
		r = c
	case recTerms, recTermsRoster:
		x := termsRec{Round: d.u64("round"), Terms: roundTerms{Roster: t == recTermsRoster}}
		for i := range x.Terms.TermsDigest {
			x.Terms.TermsDigest[i] = d.u8("terms digest")
		}
		x.Terms.Secure, x.Terms.Signed = d.bool("secure"), d.bool("signed")
		x.Terms.MinCohort = d.i64("min cohort")
		x.Terms.SecAggClients = d.i64("secagg clients")
		x.Terms.SecAggThreshold = d.i64("secagg threshold")
		x.Terms.SecAggColluders = d.i64("secagg colluders")
		t := x.Terms
		if d.err == nil && (t.MinCohort < 0 || t.SecAggClients < 0 || t.SecAggThreshold < 0 || t.SecAggColluders < -1 ||
			(t.Signed && !t.Secure) || (t.Roster && !t.Signed) || (!t.Secure && (t.SecAggClients != 0 || t.SecAggThreshold != 0))) {
			d.fail("round terms")
		}
		r = x
	case recAck:
		r = ackRec{Round: d.u64("round")}
	case recBytes:
		x := bytesRec{Round: d.u64("round"), Bytes: d.i64("bytes")}
		if x.Bytes < 0 {
			d.fail("bytes")
		}
		r = x
	case recDecline:
		x := decline{Round: d.u64("round"), ModelVersion: d.u64("model version"), Time: d.i64("time")}
		x.Reason = Reason(d.u8("reason"))
		r = x
	default:
		d.fail(fmt.Sprintf("record type %d", t))
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return r, nil
}

// encodeRelease encodes a model release: version, kind, items, rank, the
// parameters, the item IDs, then, only if they are set and not the
// defaults (so that such a release keeps the first format's bytes), the
// event weights: their count and each as a float64.
func encodeRelease(r *Release) []byte {
	m := r.Model
	n := 8 + 1 + 2*binary.MaxVarintLen64 + 8*len(m.Params)
	for _, id := range r.Items {
		n += binary.MaxVarintLen64 + len(id)
	}
	b := make([]byte, 0, n)
	b = binary.LittleEndian.AppendUint64(b, r.Version)
	b = append(b, byte(m.Kind))
	b = binary.AppendUvarint(b, uint64(m.Items))
	b = binary.AppendUvarint(b, uint64(m.Rank))
	for _, x := range m.Params {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	for _, id := range r.Items {
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
	}
	if w := r.EventWeights; w != (EventWeights{}) && w != DefaultEventWeights() {
		b = binary.AppendUvarint(b, 4)
		for _, x := range [...]float64{w.View, w.Click, w.Cart, w.Purchase} {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
	}
	return b
}

// decodeRelease decodes and validates a release.
func decodeRelease(b []byte) (*Release, error) {
	d := &dec{b: b}
	r := &Release{Version: d.u64("version")}
	m := &model.Model{Kind: model.Kind(d.u8("kind"))}
	m.Items = d.uvarint(maxItems, "items")
	m.Rank = d.uvarint(maxRank, "rank")
	if d.err != nil {
		return nil, d.err
	}
	dim := model.Dim(m.Items, m.Rank)
	if dim > len(d.b)/8 {
		return nil, corruptf("model: %d params do not fit in %d bytes", dim, len(d.b))
	}
	// In one pass over the bytes: a loop of d.f64 is several times
	// slower, and a browser opens this on the way to its first
	// recommendations.
	raw := d.take(8*dim, "params")
	m.Params = make([]float64, dim)
	for i := range m.Params {
		x := math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, corruptf("record: bad param")
		}
		m.Params[i] = x
	}
	if m.Items > len(d.b) {
		d.fail("item catalogue")
	}
	if d.err == nil {
		r.Items = make([]string, m.Items)
		for i := range r.Items {
			r.Items[i] = d.str(maxItemID, "item id")
		}
	}
	if d.err == nil && len(d.b) > 0 {
		// A later SDK may append kinds: this one reads the four it knows.
		n := d.uvarint(maxEventKinds, "event weights")
		if n < 4 || n > len(d.b)/8 {
			d.fail("event weights")
		}
		w := make([]float64, n)
		for i := range w {
			w[i] = d.f64("event weight")
		}
		if d.err == nil {
			r.EventWeights = EventWeights{View: w[0], Click: w[1], Cart: w[2], Purchase: w[3]}
		}
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	r.Model = m
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return r, nil
}

// storedTime is t as the store keeps it: unix seconds truncated to the
// hour (data minimisation: retention needs nothing finer).
func storedTime(t time.Time) int64 {
	return t.Truncate(time.Hour).Unix()
}
