package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/model"
)

var update = flag.Bool("update", false, "rewrite the golden store in testdata/store-v1-roster")

// Golden stores: store-v1 as the first SDK wrote it and store-v1-terms
// as SDKs wrote it with the rounds' terms (both frozen: stores of older
// SDKs must still open), store-v1-roster with the records since then (a
// round of roster devices only), which -update rewrites.
const (
	goldenDir      = "testdata/store-v1-roster"
	goldenTermsDir = "testdata/store-v1-terms"
	goldenFirstDir = "testdata/store-v1"
)

// goldenTerms are the terms of the round buildStore takes part in;
// store-v1-terms holds them without Roster.
var goldenTerms = roundTerms{
	TermsDigest: [32]byte{0xfe, 0xd, 0xec, 31: 1}, MinCohort: 100,
	Secure: true, Signed: true, SecAggClients: 120, SecAggThreshold: 61, SecAggColluders: 1, Roster: true,
}

// buildStore writes a store holding every record type to dir,
// deterministically: interactions, consent, a round (charge, user factor,
// bytes, ack), a decline, the model, a snapshot, then more interactions in
// the log after it.
func buildStore(t testing.TB, dir string) Config {
	t.Helper()
	clk := &fakeClock{t: t0}
	rel := handRelease(1)
	fed := &fakeFed{offer: goodOffer(1), release: &rel}
	t1 := goldenTerms
	fed.offer.TermsDigest, fed.offer.SecAgg, fed.offer.SignedSecAgg, fed.offer.SecAggRoster = t1.TermsDigest, t1.Secure, t1.Signed, t1.Roster
	fed.offer.SecAggClients, fed.offer.SecAggThreshold, fed.offer.SecAggColluders = int(t1.SecAggClients), int(t1.SecAggThreshold), int(t1.SecAggColluders)
	cfg := Config{
		Dir: dir, Key: testKey(7), Clock: clk.Now, Federation: fed,
		Rand:   rand.New(rand.NewPCG(1, 2)),
		random: rand.NewChaCha8([32]byte{'f', 'e', 'd', 'r', 'e', 'c'}),
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	recordAll(t, c, rate(0, 5), rate(1, 4), Interaction{Item: "item-3", Kind: Purchase, Value: 2})
	if err := c.SetModel(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if err := c.OptIn(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Participate(ctx); err != nil {
		t.Fatal(err)
	}
	fed.offer = goodOffer(2)
	fed.offer.NoiseMultiplier = 0.5
	fed.offer.SecAggColluders = -1
	if _, err := c.Participate(ctx); !errors.Is(err, ErrDeclined) {
		t.Fatalf("Participate = %v, want a decline", err)
	}
	c.mu.Lock()
	err = c.store.compact(c.st)
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Hour)
	recordAll(t, c, Interaction{Item: "item-4", Kind: View}, Interaction{Item: "item-5", Kind: Cart}, rate(2, 3))
	return cfg
}

// checkBuiltState checks what buildStore leaves, as read back; terms are
// the round's terms it should find (zero for a store of the first SDK).
func checkBuiltState(t *testing.T, c *Client, terms roundTerms) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	h := t0.Truncate(time.Hour).Unix()
	want := []stored{
		{"item-0", Rating, 5, h}, {"item-1", Rating, 4, h}, {"item-3", Purchase, 2, h},
		{"item-4", View, 0, h + 7200}, {"item-5", Cart, 0, h + 7200}, {"item-2", Rating, 3, h + 7200},
	}
	if !slices.Equal(st.interactions, want) {
		t.Errorf("interactions = %v\nwant %v", st.interactions, want)
	}
	if !st.optedIn || st.consentAt != t0.Unix() {
		t.Errorf("consent = %v at %d", st.optedIn, st.consentAt)
	}
	if len(st.charges) != 1 {
		t.Fatalf("charges = %+v, want 1", st.charges)
	}
	ch := st.charges[0]
	wantCh := charge{Round: 1, ModelVersion: 1, Time: t0.Unix(), SamplingRate: 1, NoiseMultiplier: 2, ClipNorm: 0.5, Params: 19, Bytes: 76, Acked: true, Mechanism: MechGaussian, Terms: terms}
	if ch != wantCh {
		t.Errorf("charge = %+v\nwant %+v", ch, wantCh)
	}
	if len(st.declines) != 1 || st.declines[0] != (decline{Round: 2, ModelVersion: 1, Time: t0.Unix(), Reason: ReasonNoise}) {
		t.Errorf("declines = %+v", st.declines)
	}
	if st.user == nil || st.user.Version != 1 || len(st.user.User.Factor) != 2 || st.userFresh {
		t.Errorf("user = %+v (fresh %v), want a stale rank-2 factor for model 1", st.user, st.userFresh)
	}
	if c.model.rel == nil || c.model.rel.Version != 1 || !reflect.DeepEqual(c.model.rel.Model, handRelease(1).Model) {
		t.Errorf("model = %+v", c.model.rel)
	}
}

func TestGoldenStore(t *testing.T) {
	if *update {
		os.RemoveAll(goldenDir)
		buildStore(t, goldenDir)
		for _, n := range []string{keyFile, snapFile, logFile, modelFile} {
			if _, err := os.Stat(filepath.Join(goldenDir, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, g := range []struct {
		dir   string
		terms roundTerms
	}{{goldenFirstDir, roundTerms{}}, {goldenTermsDir, withoutRoster(goldenTerms)}, {goldenDir, goldenTerms}} {
		t.Run(filepath.Base(g.dir), func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, g.dir, dir)
			cfg, _ := testConfig(t)
			cfg.Dir = dir
			c := open(t, cfg)
			checkBuiltState(t, c, g.terms)
		})
	}
}

func withoutRoster(t roundTerms) roundTerms {
	t.Roster = false
	return t
}

func TestBuiltStoreReadsBack(t *testing.T) {
	cfg := buildStore(t, t.TempDir())
	cfg.Clock = (&fakeClock{t: t0}).Now
	c := open(t, cfg)
	checkBuiltState(t, c, goldenTerms)
	// Encrypted at rest: no item ID is visible in any file.
	names, _ := storeFiles(cfg.Dir)
	for _, n := range names {
		b, _ := os.ReadFile(filepath.Join(cfg.Dir, n))
		if bytes.Contains(b, []byte("item-")) {
			t.Errorf("%s holds item IDs in the clear", n)
		}
	}
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// frames returns the offsets of the log's frames and the end of the last.
func frames(t testing.TB, b []byte) []int {
	t.Helper()
	var offs []int
	off := logHeaderLen
	for off < len(b) {
		offs = append(offs, off)
		off += frameHeaderLen + int(binary.LittleEndian.Uint32(b[off:]))
	}
	if off != len(b) {
		t.Fatalf("log frames end at %d of %d", off, len(b))
	}
	return append(offs, off)
}

func edit(name string, f func(t testing.TB, b []byte) []byte) func(t testing.TB, dir string) {
	return func(t testing.TB, dir string) {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f(t, b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func flip(at func(b []byte) int) func(testing.TB, []byte) []byte {
	return func(_ testing.TB, b []byte) []byte {
		b[at(b)] ^= 0x40
		return b
	}
}

func at(i int) func([]byte) int { return func([]byte) int { return i } }
func fromEnd(i int) func(b []byte) int {
	return func(b []byte) int { return len(b) - i }
}
func middle(b []byte) int { return len(b) / 2 }

func truncate(n func(b []byte) int) func(testing.TB, []byte) []byte {
	return func(_ testing.TB, b []byte) []byte { return b[:n(b)] }
}

// inFrame flips a byte at offset off of log frame i.
func inFrame(i, off int) func(testing.TB, []byte) []byte {
	return func(t testing.TB, b []byte) []byte {
		b[frames(t, b)[i]+off] ^= 0x40
		return b
	}
}

func TestStoreCorrupt(t *testing.T) {
	tests := []struct {
		name string
		harm func(testing.TB, string)
		want error
	}{
		{"key header", edit(keyFile, flip(at(2))), ErrCorrupt},
		{"key version", edit(keyFile, flip(at(7))), ErrCorrupt},
		{"key store id", edit(keyFile, flip(at(12))), ErrCorrupt},
		{"key sealed", edit(keyFile, flip(at(50))), ErrCorrupt},
		{"key checksum", edit(keyFile, flip(fromEnd(1))), ErrCorrupt},
		{"key truncated", edit(keyFile, truncate(fromEnd(1))), ErrCorrupt},
		{"key empty", edit(keyFile, truncate(at(0))), ErrCorrupt},
		{"key extended", edit(keyFile, func(_ testing.TB, b []byte) []byte { return append(b, 0) }), ErrCorrupt},
		{"snapshot header", edit(snapFile, flip(at(0))), ErrCorrupt},
		{"snapshot generation", edit(snapFile, flip(at(9))), ErrCorrupt},
		{"snapshot length", edit(snapFile, flip(at(17))), ErrCorrupt},
		{"snapshot body", edit(snapFile, flip(middle)), ErrCorrupt},
		{"snapshot checksum", edit(snapFile, flip(fromEnd(2))), ErrCorrupt},
		{"snapshot truncated", edit(snapFile, truncate(fromEnd(1))), ErrCorrupt},
		{"snapshot halved", edit(snapFile, truncate(middle)), ErrCorrupt},
		// Removed files are missing, not corrupt, and never silently
		// replaced by an empty store.
		{"snapshot deleted", func(t testing.TB, dir string) { os.Remove(filepath.Join(dir, snapFile)) }, ErrMissing},
		{"log deleted", func(t testing.TB, dir string) { os.Remove(filepath.Join(dir, logFile)) }, ErrMissing},
		{"log header", edit(logFile, flip(at(3))), ErrCorrupt},
		{"log generation", edit(logFile, flip(at(8))), ErrCorrupt},
		{"log header truncated", edit(logFile, truncate(at(logHeaderLen-1))), ErrCorrupt},
		{"log frame length", edit(logFile, inFrame(0, 1)), ErrCorrupt},
		{"log frame payload", edit(logFile, inFrame(0, frameHeaderLen+20)), ErrCorrupt},
		{"log frame checksum", edit(logFile, inFrame(1, 9)), ErrCorrupt},
		{"log frames swapped", edit(logFile, func(t testing.TB, b []byte) []byte {
			f := frames(t, b)
			out := slices.Clone(b[:f[0]])
			out = append(out, b[f[1]:f[2]]...)
			out = append(out, b[f[0]:f[1]]...)
			return append(out, b[f[2]:]...)
		}), ErrCorrupt},
		{"log frame dropped", edit(logFile, func(t testing.TB, b []byte) []byte {
			f := frames(t, b)
			return append(slices.Clone(b[:f[0]]), b[f[1]:]...)
		}), ErrCorrupt},
		{"model body", edit(modelFile, flip(middle)), ErrCorrupt},
		{"model truncated", edit(modelFile, truncate(fromEnd(3))), ErrCorrupt},
		{"snapshot of another store", func(t testing.TB, dir string) {
			// Same app key and generation; another store ID and data key.
			other := t.TempDir()
			cfg, _ := testConfig(t)
			cfg.Dir = other
			c := open(t, cfg)
			recordAll(t, c, rate(1, 1))
			c.mu.Lock()
			c.store.compact(c.st)
			c.mu.Unlock()
			c.Close()
			b, err := os.ReadFile(filepath.Join(other, snapFile))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, snapFile), b, 0o600)
		}, ErrCorrupt},
		{"wrong key", func(testing.TB, string) {}, ErrWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, goldenDir, dir)
			tt.harm(t, dir)
			cfg, _ := testConfig(t)
			cfg.Dir = dir
			if tt.want == ErrWrongKey {
				cfg.Key = testKey(8)
			}
			c, err := New(cfg)
			if err == nil {
				c.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("New after %s = %v, want %v", tt.name, err, tt.want)
			}
			if tt.want == ErrCorrupt && errors.Is(err, ErrWrongKey) {
				t.Errorf("corruption reported as a wrong key: %v", err)
			}
			// Remove starts over.
			if err := Remove(dir); err != nil {
				t.Fatal(err)
			}
			open(t, cfg).Close()
		})
	}
}

// logBuffer captures warnings.
type logBuffer struct{ bytes.Buffer }

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(&b.Buffer, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func TestStoreTornTail(t *testing.T) {
	const all, lost = 6, 5 // interactions in the golden store, and if its last record is lost
	tests := []struct {
		name string
		harm func(testing.TB, []byte) []byte
		want int
	}{
		{"last byte", truncate(fromEnd(1)), lost},
		{"most of the last payload", func(t testing.TB, b []byte) []byte {
			f := frames(t, b)
			return b[:f[len(f)-2]+frameHeaderLen+3]
		}, lost},
		{"partial frame header", func(t testing.TB, b []byte) []byte {
			f := frames(t, b)
			return b[:f[len(f)-2]+5]
		}, lost},
		{"zero-filled extent", func(_ testing.TB, b []byte) []byte { return append(b, make([]byte, 300)...) }, all},
		{"last payload zeroed", func(_ testing.TB, b []byte) []byte {
			clear(b[len(b)-10:])
			return b
		}, lost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, goldenDir, dir)
			edit(logFile, tt.harm)(t, dir)
			var logs logBuffer
			cfg, _ := testConfig(t)
			cfg.Dir, cfg.Logger = dir, logs.logger()
			c := open(t, cfg)
			rep, err := c.Report()
			if err != nil {
				t.Fatal(err)
			}
			if rep.Interactions != tt.want {
				t.Errorf("interactions = %d, want %d", rep.Interactions, tt.want)
			}
			if !strings.Contains(logs.String(), "dropped an incomplete record") {
				t.Errorf("no warning logged; logs: %q", logs.String())
			}
			// The log is usable again, and clean on the next open.
			recordAll(t, c, rate(4, 2))
			c.Close()
			logs.Reset()
			c = open(t, cfg)
			if rep, _ := c.Report(); rep.Interactions != tt.want+1 {
				t.Errorf("after a write and reopen: %d interactions, want %d", rep.Interactions, tt.want+1)
			}
			if logs.Len() != 0 {
				t.Errorf("warnings on a clean reopen: %s", logs.String())
			}
		})
	}
}

func TestCompactionCrash(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, goldenDir, dir)
	cfg, _ := testConfig(t)
	cfg.Dir = dir
	oldLog, err := os.ReadFile(filepath.Join(dir, logFile))
	if err != nil {
		t.Fatal(err)
	}
	c := open(t, cfg)
	c.mu.Lock()
	err = c.store.compact(c.st)
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// As if the crash came after the snapshot's rename, before the log's:
	// the old log (generation g) sits next to snapshot g+1.
	if err := os.WriteFile(filepath.Join(dir, logFile), oldLog, 0o600); err != nil {
		t.Fatal(err)
	}
	c = open(t, cfg)
	checkBuiltState(t, c, goldenTerms) // nothing applied twice
	recordAll(t, c, rate(4, 1))
	c.Close()
	c = open(t, cfg)
	if rep, _ := c.Report(); rep.Interactions != 7 {
		t.Errorf("interactions = %d, want 7", rep.Interactions)
	}
}

func TestCompactEvery(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.MaxInteractions = 50
	c := open(t, cfg)
	for i := range compactEvery + 10 {
		recordAll(t, c, Interaction{Item: fmt.Sprint("item-", i), Kind: View})
	}
	c.mu.Lock()
	gen, seq := c.store.gen, c.store.seq
	mem := slices.Clone(c.st.interactions)
	c.mu.Unlock()
	if gen != 1 || seq != 10 {
		t.Errorf("after %d writes: generation %d with %d log records, want 1 and 10", compactEvery+10, gen, seq)
	}
	c.Close()
	// On disk: the 50 kept at compaction (the 1000th write included),
	// then 10 more in the log; after a restart, exactly what was in memory.
	if st := loadRaw(t, cfg); len(st.interactions) != 60 || !slices.Equal(st.interactions[10:], mem) {
		t.Errorf("on disk: %d interactions, want 60 ending with the %d in memory", len(st.interactions), len(mem))
	}
	c = open(t, cfg)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Equal(c.st.interactions, mem) {
		t.Errorf("after a restart the interactions differ from those in memory before it")
	}
}

func TestInterruptedDelete(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, goldenDir, dir)
	os.Remove(filepath.Join(dir, keyFile))
	var logs logBuffer
	cfg, _ := testConfig(t)
	cfg.Dir, cfg.Logger = dir, logs.logger()
	c := open(t, cfg)
	if rep, _ := c.Report(); rep.Interactions != 0 || len(rep.Rounds) != 0 {
		t.Errorf("state after an interrupted delete: %+v", rep)
	}
	assertNoFiles(t, dir)
	if !strings.Contains(logs.String(), "interrupted deletion") {
		t.Errorf("no warning; logs: %q", logs.String())
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, goldenDir, dir)
	os.WriteFile(filepath.Join(dir, "fedrec.log.tmp"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "mine.db"), []byte("x"), 0o600)
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "mine.db" {
		t.Errorf("after Remove: %v, want only mine.db", ents)
	}
	if err := Remove(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("Remove(missing dir) = %v", err)
	}
}

func TestStaleTempFile(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, goldenDir, dir)
	tmp := filepath.Join(dir, snapFile+tmpSuffix)
	os.WriteFile(tmp, []byte("half a snapshot"), 0o600)
	cfg, _ := testConfig(t)
	cfg.Dir = dir
	checkBuiltState(t, open(t, cfg), goldenTerms)
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("stale temporary file kept: %v", err)
	}
}

// TestGoldenLedger: the ledger of the first store format, whose charges
// carry no mechanism, reads as Gaussian charges, and ε is the Gaussian
// accountant's.
func TestGoldenLedger(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, goldenDir, dir)
	cfg, _ := testConfig(t)
	cfg.Dir = dir
	rep, err := open(t, cfg).Report()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rounds) != 1 || rep.Rounds[0].Mechanism != MechGaussian {
		t.Fatalf("rounds = %+v, want one Gaussian round", rep.Rounds)
	}
	if want := accountantEpsilon(t, privacy.Entry{Mechanism: privacy.PoissonGaussian, SamplingRate: 1, NoiseMultiplier: 2, Steps: 1}); rep.Totals.Epsilon != want {
		t.Errorf("ε = %v, want the Gaussian accountant's %v", rep.Totals.Epsilon, want)
	}
}

var skellamCharge = charge{Round: 11, ModelVersion: 2, Time: 7, SamplingRate: 0.5, NoiseMultiplier: 1.5, ClipNorm: 0.5, DeviceNoiseStd: 0.25,
	Params: 19, Bytes: 152, Mechanism: MechSkellam, Variance: 1e6, L1: 300, L2: 40}

// TestChargeRecordFormat pins the bytes of charge records: a Gaussian
// charge is written as the first SDK wrote it (recCharge), a Skellam one
// as recChargeMech, and both read back.
func TestChargeRecordFormat(t *testing.T) {
	for _, tc := range []struct {
		c    charge
		want string
	}{
		{charge{Round: 9, ModelVersion: 2, Time: 5, SamplingRate: 1, NoiseMultiplier: 2, ClipNorm: 0.5, DeviceNoiseStd: 0.1, Params: 19, Bytes: 76, Acked: true, Mechanism: MechGaussian},
			"04" + "0900000000000000" + "0200000000000000" + "0500000000000000" + "000000000000f03f" + "0000000000000040" +
				"000000000000e03f" + "9a9999999999b93f" + "1300000000000000" + "4c00000000000000" + "01"},
		{skellamCharge,
			"08" + "0b00000000000000" + "0200000000000000" + "0700000000000000" + "000000000000e03f" + "000000000000f83f" +
				"000000000000e03f" + "000000000000d03f" + "1300000000000000" + "9800000000000000" + "00" +
				"02" + "0000000080842e41" + "0000000000c07240" + "0000000000004440"},
	} {
		b := appendRecord(nil, tc.c)
		if got := hex.EncodeToString(b); got != tc.want {
			t.Errorf("appendRecord(%+v) = %s\nwant %s", tc.c, got, tc.want)
		}
		if r, err := decodeRecord(b); err != nil || r != tc.c {
			t.Errorf("decodeRecord = %+v, %v, want %+v", r, err, tc.c)
		}
	}
	// A Skellam record must name a known mechanism and sensitivities.
	for _, spoil := range []func(b []byte){
		func(b []byte) { b[74] = byte(MechGaussian) },
		func(b []byte) { b[74] = 3 },
		func(b []byte) { clear(b[len(b)-8:]) },
	} {
		b := appendRecord(nil, skellamCharge)
		spoil(b)
		if _, err := decodeRecord(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeRecord(%x) = %v, want ErrCorrupt", b, err)
		}
	}
}

// Fuzz targets for the decoders of bytes read from disk.

func recordSeeds() [][]byte {
	recs := []record{
		stored{Item: "item-1", Kind: Rating, Value: 4.5, Time: 1700000000},
		stored{Item: "sku", Kind: Purchase, Time: -3600},
		userRec{Version: 3, User: model.User{Factor: []float64{0.5, -1, 2}, Bias: 0.25}},
		consentRec{In: true, Time: 17},
		charge{Round: 9, ModelVersion: 2, Time: 5, SamplingRate: 1, NoiseMultiplier: 2, ClipNorm: 0.5, DeviceNoiseStd: 0.1, Params: 19, Bytes: 76, Acked: true, Mechanism: MechGaussian},
		skellamCharge,
		ackRec{Round: 9},
		bytesRec{Round: 9, Bytes: 1000},
		decline{Round: 10, ModelVersion: 2, Time: 6, Reason: ReasonNoise},
		termsRec{Round: 9, Terms: goldenTerms},
		termsRec{Round: 9, Terms: withoutRoster(goldenTerms)},
		termsRec{Round: 9, Terms: roundTerms{MinCohort: 3, SecAggColluders: -1}},
	}
	var out [][]byte
	for _, r := range recs {
		out = append(out, appendRecord(nil, r))
	}
	return out
}

func FuzzDecodeRecord(f *testing.F) {
	for _, b := range recordSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRecord error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := decodeRecord(appendRecord(nil, r))
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("record %#v does not round-trip: %#v, %v", r, again, err)
		}
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	var body []byte
	for _, b := range recordSeeds() {
		body = binary.AppendUvarint(body, uint64(len(b)))
		body = append(body, b...)
		f.Add(slices.Clone(body))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := decodeSnapshot(newState(), b); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decodeSnapshot error %v does not wrap ErrCorrupt", err)
		}
	})
}

// A release's event weights are cached with it and come back after a
// restart; a release with the default weights keeps the first format's
// bytes; a cached file with bad weights is corrupt.
func TestReleaseEventWeightsStored(t *testing.T) {
	custom := EventWeights{View: 0.5, Click: 0, Cart: 3, Purchase: 10}
	for _, tt := range []struct {
		name string
		w    EventWeights
		want EventWeights // after a restart
	}{
		{"unset", EventWeights{}, EventWeights{}},
		{"defaults", DefaultEventWeights(), EventWeights{}},
		{"custom", custom, custom},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			c := open(t, cfg)
			rel := randomRelease(t, model.Implicit, 6, 2, 3)
			rel.EventWeights = tt.w
			if err := c.SetModel(t.Context(), rel); err != nil {
				t.Fatal(err)
			}
			recordAll(t, c, Interaction{Item: rel.Items[0], Kind: Purchase})
			c.Close()
			c = open(t, cfg)
			c.mu.Lock()
			got := c.model.rel.EventWeights
			c.mu.Unlock()
			if got != tt.want {
				t.Errorf("event weights after a restart = %+v, want %+v", got, tt.want)
			}
		})
	}
	rel := randomRelease(t, model.Implicit, 3, 1, 2)
	plain := encodeRelease(&rel)
	rel.EventWeights = DefaultEventWeights()
	if !bytes.Equal(encodeRelease(&rel), plain) {
		t.Error("a release with the default event weights is not encoded as one without them")
	}
	rel.EventWeights = custom
	b := encodeRelease(&rel)
	if r, err := decodeRelease(b); err != nil || r.EventWeights != custom {
		t.Errorf("decodeRelease(encodeRelease(custom weights)) = %+v, %v", r, err)
	}
	// The last weight, purchase, made negative.
	bad := slices.Clone(b)
	binary.LittleEndian.PutUint64(bad[len(bad)-8:], math.Float64bits(-1))
	if _, err := decodeRelease(bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("decodeRelease(negative weight) = %v, want ErrCorrupt", err)
	}
	if _, err := decodeRelease(b[:len(b)-3]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("decodeRelease(truncated weights) = %v, want ErrCorrupt", err)
	}
	// Each parameter checked as it is decoded: the last one made NaN
	// (version, kind, items and rank take 8+1+1+1 bytes here).
	nan := slices.Clone(b)
	binary.LittleEndian.PutUint64(nan[11+8*(len(rel.Model.Params)-1):], math.Float64bits(math.NaN()))
	if _, err := decodeRelease(nan); !errors.Is(err, ErrCorrupt) {
		t.Errorf("decodeRelease(NaN param) = %v, want ErrCorrupt", err)
	}
}

func FuzzDecodeRelease(f *testing.F) {
	rel := handRelease(4)
	f.Add(encodeRelease(&rel))
	imp := randomRelease(f, model.Implicit, 3, 1, 2)
	f.Add(encodeRelease(&imp))
	imp.EventWeights = EventWeights{View: 0.5, Cart: 3, Purchase: 10}
	f.Add(encodeRelease(&imp))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRelease(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRelease error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if err := r.validate(); err != nil {
			t.Fatalf("decoded an invalid release: %v", err)
		}
	})
}

// FuzzReadLog reads arbitrary bytes as the log of the golden store: they
// are either taken (up to a torn tail) or reported with ErrCorrupt.
func FuzzReadLog(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join(goldenDir, logFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add(golden[:len(golden)-7])
	f.Add(append(slices.Clone(golden), 0, 0, 0))
	f.Add(golden[:logHeaderLen])
	dir := f.TempDir()
	copyDir(f, goldenDir, dir)
	s, _, err := openDirStore(dir, testKey(7))
	if err != nil {
		f.Fatal(err)
	}
	s.close() // keeps nothing open; reopen the keys by hand
	kb, _ := os.ReadFile(filepath.Join(dir, keyFile))
	if err := s.unsealKey(kb); err != nil {
		f.Fatal(err)
	}
	s.gen = 1
	f.Fuzz(func(t *testing.T, b []byte) {
		st := newState()
		good, _, _, err := s.readLog(st, b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("readLog error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if good > int64(len(b)) {
			t.Fatalf("readLog kept %d of %d bytes", good, len(b))
		}
		for _, x := range st.interactions {
			if x.Kind.validate(x.Value) != nil || x.Item == "" || math.IsNaN(x.Value) {
				t.Fatalf("invalid interaction decoded: %+v", x)
			}
		}
	})
}

// A terms record that contradicts itself is corrupt.
func TestDecodeTermsRefuses(t *testing.T) {
	for name, tt := range map[string]roundTerms{
		"signed, not secure":  {Signed: true, SecAggColluders: 1},
		"roster, not signed":  {Secure: true, SecAggClients: 5, SecAggThreshold: 3, SecAggColluders: -1, Roster: true},
		"clients, not secure": {SecAggClients: 5, SecAggColluders: -1},
		"negative cohort":     {MinCohort: -1, SecAggColluders: -1},
		"colluders below -1":  {Secure: true, SecAggClients: 5, SecAggThreshold: 3, SecAggColluders: -2},
		"negative threshold":  {Secure: true, SecAggClients: 5, SecAggThreshold: -3, SecAggColluders: -1},
	} {
		if _, err := decodeRecord(appendRecord(nil, termsRec{Round: 1, Terms: tt})); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: decodeRecord = %v, want ErrCorrupt", name, err)
		}
	}
}
