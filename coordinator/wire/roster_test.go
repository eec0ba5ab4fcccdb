package wire

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"reflect"
	"testing"
)

// refRoot and refPath are RFC 9162's MTH and PATH, recursive as the RFC
// writes them, against which the level-by-level tree is checked.
func refRoot(d [][32]byte) [32]byte {
	if len(d) == 1 {
		return d[0]
	}
	k := largestPow2Below(len(d))
	l, r := refRoot(d[:k]), refRoot(d[k:])
	return rosterNode(&l, &r)
}

func refPath(m int, d [][32]byte) [][]byte {
	if len(d) == 1 {
		return nil
	}
	k := largestPow2Below(len(d))
	if m < k {
		r := refRoot(d[k:])
		return append(refPath(m, d[:k]), r[:])
	}
	l := refRoot(d[:k])
	return append(refPath(m-k, d[k:]), l[:])
}

func largestPow2Below(n int) int {
	k := 1
	for 2*k < n {
		k *= 2
	}
	return k
}

func testLeaves(n int) [][32]byte {
	l := make([][32]byte, n)
	for i := range l {
		l[i] = sha256.Sum256([]byte{byte(i), byte(i >> 8)})
	}
	return l
}

func TestRosterTree(t *testing.T) {
	for n := 1; n <= 40; n++ {
		leaves := testLeaves(n)
		tr, err := NewRosterTree(leaves)
		if err != nil {
			t.Fatal(err)
		}
		root := tr.Root()
		if want := refRoot(leaves); root != want {
			t.Fatalf("n=%d: root %x, want %x", n, root, want)
		}
		for i := range n {
			p, err := tr.Path(uint64(i))
			if err != nil {
				t.Fatal(err)
			}
			if want := refPath(i, leaves); !reflect.DeepEqual(p, want) && !(len(p) == 0 && len(want) == 0) {
				t.Fatalf("n=%d i=%d: path differs from RFC 9162's", n, i)
			}
			if !VerifyRosterPath(leaves[i], uint64(i), uint64(n), p, root) {
				t.Fatalf("n=%d i=%d: the path does not verify", n, i)
			}
			// Every other claim fails: another leaf or index, a path cut
			// short, lengthened or with one bit flipped. (The size comes
			// from the signed roster, so it is not a claim.)
			other := leaves[(i+1)%n]
			bad := map[string]bool{
				"index+1": VerifyRosterPath(leaves[i], uint64(i+1), uint64(n), p, root),
				"long":    VerifyRosterPath(leaves[i], uint64(i), uint64(n), append(p, root[:]), root),
			}
			if n > 1 {
				bad["other leaf"] = VerifyRosterPath(other, uint64(i), uint64(n), p, root)
				bad["short"] = VerifyRosterPath(leaves[i], uint64(i), uint64(n), p[:len(p)-1], root)
				flipped := make([][]byte, len(p))
				for k := range p {
					flipped[k] = bytes.Clone(p[k])
				}
				flipped[len(p)/2][3] ^= 1
				bad["flipped"] = VerifyRosterPath(leaves[i], uint64(i), uint64(n), flipped, root)
			}
			if i > 0 {
				bad["index-1"] = VerifyRosterPath(leaves[i], uint64(i-1), uint64(n), p, root)
			}
			for what, ok := range bad {
				if ok {
					t.Errorf("n=%d i=%d: %s verifies", n, i, what)
				}
			}
		}
		if _, err := tr.Path(uint64(n)); err == nil {
			t.Errorf("n=%d: Path(n) = nil error", n)
		}
	}
	if _, err := NewRosterTree(nil); err == nil {
		t.Error("NewRosterTree(nil) = nil error")
	}
}

// TestRosterLeaf: every field of an entry is in its leaf, unambiguously.
func TestRosterLeaf(t *testing.T) {
	e := sampleRosterEntry()
	seen := map[[32]byte]string{RosterLeaf(&e): "sample"}
	for name, edit := range map[string]func(*RosterEntry){
		"id":         func(e *RosterEntry) { e.ID = "dev-8" },
		"key":        func(e *RosterEntry) { e.Key = append(bytes.Clone(e.Key), 0) },
		"not_before": func(e *RosterEntry) { e.NotBefore++ },
		"not_after":  func(e *RosterEntry) { e.NotAfter++ },
		"shifted":    func(e *RosterEntry) { e.ID, e.Key = e.ID+string(e.Key[:1]), e.Key[1:] },
	} {
		x := sampleRosterEntry()
		edit(&x)
		h := RosterLeaf(&x)
		if prev, ok := seen[h]; ok {
			t.Errorf("%s: same leaf as %s", name, prev)
		}
		seen[h] = name
	}
}

func TestRosterURI(t *testing.T) {
	root := sha256.Sum256([]byte("r"))
	e, n, r, err := ParseRosterURI(RosterURI(7, 1000, root))
	if err != nil || e != 7 || n != 1000 || r != root {
		t.Fatalf("ParseRosterURI(RosterURI) = %d, %d, %x, %v", e, n, r, err)
	}
	for _, s := range []string{
		"",
		"urn:fedrec:roster:2:7:1000:" + string(bytes.Repeat([]byte("ab"), 32)),
		"urn:fedrec:roster:1:7:0:" + string(bytes.Repeat([]byte("ab"), 32)),
		"urn:fedrec:roster:1:7:1000:abcd",
		"urn:fedrec:roster:1:x:1000:" + string(bytes.Repeat([]byte("ab"), 32)),
		"urn:other:1:7:1000:" + string(bytes.Repeat([]byte("ab"), 32)),
	} {
		if _, _, _, err := ParseRosterURI(s); err == nil {
			t.Errorf("ParseRosterURI(%q) = nil error", s)
		}
	}
}

func sampleRosterEntry() RosterEntry {
	return RosterEntry{ID: "dev-7", Key: bytes.Repeat([]byte{0x30}, 44), NotBefore: 1_800_000_000, NotAfter: 1_800_086_400}
}

func sampleRosterCredential() *RosterCredential {
	return &RosterCredential{Version: RosterVersion, Roster: bytes.Repeat([]byte{0x30}, 40), Entry: sampleRosterEntry(), Index: 5,
		Path: [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)}}
}

func sampleRosterFile() *RosterFile {
	e2 := sampleRosterEntry()
	e2.ID = "dev-9"
	return &RosterFile{Version: RosterVersion, Cert: bytes.Repeat([]byte{0x30}, 40), Entries: []RosterEntry{sampleRosterEntry(), e2}}
}

func TestRosterGolden(t *testing.T) {
	c := sampleRosterCredential()
	b, err := EncodeRosterCredential(c)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "roster_credential.golden", b)
	if !IsRosterCredential(b) {
		t.Error("IsRosterCredential(an encoded credential) = false")
	}
	if got, err := DecodeRosterCredential(b); err != nil || !reflect.DeepEqual(got, c) {
		t.Errorf("DecodeRosterCredential(Encode(c)) = %+v, %v", got, err)
	}
	f := sampleRosterFile()
	if b, err = EncodeRosterFile(f); err != nil {
		t.Fatal(err)
	}
	golden(t, "roster_file.golden", b)
	if got, err := DecodeRosterFile(b); err != nil || !reflect.DeepEqual(got, f) {
		t.Errorf("DecodeRosterFile(Encode(f)) = %+v, %v", got, err)
	}
	if IsRosterCredential([]byte{0x30, 0x82}) {
		t.Error("IsRosterCredential(DER) = true")
	}
}

func TestRosterValidate(t *testing.T) {
	for name, edit := range map[string]func(*RosterCredential){
		"version":    func(c *RosterCredential) { c.Version = 2 },
		"no roster":  func(c *RosterCredential) { c.Roster = nil },
		"short hash": func(c *RosterCredential) { c.Path[1] = c.Path[1][:31] },
		"long path":  func(c *RosterCredential) { c.Path = make([][]byte, MaxRosterPath+1) },
		"no id":      func(c *RosterCredential) { c.Entry.ID = "" },
		"no key":     func(c *RosterCredential) { c.Entry.Key = nil },
		"long key":   func(c *RosterCredential) { c.Entry.Key = make([]byte, maxRosterKey+1) },
		"backwards":  func(c *RosterCredential) { c.Entry.NotAfter = c.Entry.NotBefore - 1 },
	} {
		c := sampleRosterCredential()
		edit(c)
		if _, err := EncodeRosterCredential(c); err == nil {
			t.Errorf("%s: EncodeRosterCredential = nil error", name)
		}
	}
	for name, edit := range map[string]func(*RosterFile){
		"version":    func(f *RosterFile) { f.Version = 0 },
		"no cert":    func(f *RosterFile) { f.Cert = nil },
		"no entries": func(f *RosterFile) { f.Entries = nil },
		"bad entry":  func(f *RosterFile) { f.Entries[1].ID = "" },
	} {
		f := sampleRosterFile()
		edit(f)
		if _, err := EncodeRosterFile(f); err == nil {
			t.Errorf("%s: EncodeRosterFile = nil error", name)
		}
	}
	for _, b := range [][]byte{nil, {0x80}, {0xc1}, {0x84, 0xa1}} {
		if _, err := DecodeRosterCredential(b); CodeOf(err) != CodeMalformed && CodeOf(err) != CodeVersion {
			t.Errorf("DecodeRosterCredential(%x) = %v", b, err)
		}
		if _, err := DecodeRosterFile(b); err == nil {
			t.Errorf("DecodeRosterFile(%x) = nil error", b)
		}
	}
}

// FuzzRoster: any bytes either fail to decode, with an error, or decode to
// a valid credential or file that re-encodes and decodes to itself; and
// no path verifies against a root it was not made for.
func FuzzRoster(f *testing.F) {
	for _, b := range goldenFiles(f, "roster_*.golden") {
		f.Add(b)
	}
	tr, _ := NewRosterTree(testLeaves(5))
	root := tr.Root()
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := DecodeRosterCredential(b); err == nil {
			again, err := EncodeRosterCredential(c)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			if c2, err := DecodeRosterCredential(again); err != nil || !reflect.DeepEqual(c2, c) {
				t.Fatalf("round trip: %+v, %v", c2, err)
			}
			if VerifyRosterPath(RosterLeaf(&c.Entry), c.Index, 5, c.Path, root) {
				t.Fatalf("a fuzzed credential verifies against a tree of other leaves")
			}
		} else if !errors.As(err, new(*Error)) {
			t.Fatalf("error %v is not a wire.Error", err)
		}
		if fl, err := DecodeRosterFile(b); err == nil {
			if _, err := EncodeRosterFile(fl); err != nil {
				t.Fatalf("re-encode file: %v", err)
			}
		}
	})
}
