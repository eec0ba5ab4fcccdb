package wire

import (
	"bytes"
	"reflect"
	"testing"
)

func sampleClientState() *ClientState {
	return &ClientState{Preferred: "10.0.0.3:7001", Addrs: []AddrState{
		{Addr: "10.0.0.1:7001", Failures: 3, RetryAtMs: 1_700_000_008_000},
		{Addr: "coord-2.example:7001", Failures: 1, RetryAtMs: 1_700_000_001_000},
	}}
}

func sampleStoreAnchor() *StoreAnchor {
	return &StoreAnchor{StoreID: bytes.Repeat([]byte{0x5a}, StoreIDLen), Generation: 7, Charges: 12, Epsilon: 9.85, Carried: 1.5}
}

// The records a device keeps between starts keep their bytes: an SDK must
// read what an older one wrote.
func TestClientFilesGolden(t *testing.T) {
	b, err := EncodeClientState(sampleClientState())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "client_dialerstate.golden", b)
	s, err := DecodeClientState(b)
	if err != nil || !reflect.DeepEqual(s, sampleClientState()) {
		t.Errorf("DecodeClientState(EncodeClientState(s)) = %+v, %v; want %+v", s, err, sampleClientState())
	}
	b, err = EncodeStoreAnchor(sampleStoreAnchor())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "client_storeanchor.golden", b)
	a, err := DecodeStoreAnchor(b)
	if err != nil || !reflect.DeepEqual(a, sampleStoreAnchor()) {
		t.Errorf("DecodeStoreAnchor(EncodeStoreAnchor(a)) = %+v, %v; want %+v", a, err, sampleStoreAnchor())
	}
}

func TestClientFilesRefused(t *testing.T) {
	good, _ := EncodeClientState(sampleClientState())
	anchor, _ := EncodeStoreAnchor(sampleStoreAnchor())
	for name, b := range map[string][]byte{
		"empty":        nil,
		"magic":        append([]byte("XRCS"), good[4:]...),
		"another type": anchor,
		"version":      append(append([]byte(nil), good[:5]...), append([]byte{9}, good[6:]...)...),
		"truncated":    good[:len(good)-1],
		"trailing":     append(append([]byte(nil), good...), 0),
		"huge":         make([]byte, MaxClientFile+1),
	} {
		if _, err := DecodeClientState(b); err == nil {
			t.Errorf("DecodeClientState(%s) = nil error, want one", name)
		}
	}
	for name, a := range map[string]*StoreAnchor{
		"short ID":          {StoreID: []byte{1}},
		"negative ε":        {StoreID: make([]byte, StoreIDLen), Epsilon: -1},
		"carried above all": {StoreID: make([]byte, StoreIDLen), Epsilon: 1, Carried: 2},
	} {
		if _, err := EncodeStoreAnchor(a); err == nil {
			t.Errorf("EncodeStoreAnchor(%s) = nil error, want one", name)
		}
	}
}

// FuzzClientFiles: the decoders of a device's records never panic, and
// what they accept encodes back to something they accept alike.
func FuzzClientFiles(f *testing.F) {
	for _, b := range goldenFiles(f, "client_*.golden") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := DecodeClientState(b); err == nil {
			again, err := EncodeClientState(s)
			if err != nil {
				t.Fatalf("EncodeClientState(decoded) = %v", err)
			}
			if s2, err := DecodeClientState(again); err != nil || !reflect.DeepEqual(s, s2) {
				t.Fatalf("round trip: %+v, %v; want %+v", s2, err, s)
			}
		}
		if a, err := DecodeStoreAnchor(b); err == nil {
			again, err := EncodeStoreAnchor(a)
			if err != nil {
				t.Fatalf("EncodeStoreAnchor(decoded) = %v", err)
			}
			if a2, err := DecodeStoreAnchor(again); err != nil || !reflect.DeepEqual(a, a2) {
				t.Fatalf("round trip: %+v, %v; want %+v", a2, err, a)
			}
		}
	})
}

// A catalogue's digest depends on its IDs, their order and where each one
// ends.
func TestCatalogueDigest(t *testing.T) {
	base := CatalogueDigest([]string{"ab", "c", "d"})
	for name, other := range map[string][]string{
		"reordered":     {"c", "ab", "d"},
		"boundary":      {"a", "bc", "d"},
		"shorter":       {"ab", "c"},
		"another item":  {"ab", "c", "e"},
		"empty ID last": {"ab", "c", "d", ""},
	} {
		if CatalogueDigest(other) == base {
			t.Errorf("CatalogueDigest(%s %q) = CatalogueDigest(%q)", name, other, []string{"ab", "c", "d"})
		}
	}
	if CatalogueDigest([]string{"ab", "c", "d"}) != base {
		t.Error("CatalogueDigest is not deterministic")
	}
}
