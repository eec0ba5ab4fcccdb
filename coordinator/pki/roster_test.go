package pki

import (
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

func mustIssue(t *testing.T, ca *CA, id string, kt KeyType) *x509.Certificate {
	t.Helper()
	c, err := ca.IssueDeviceKey(id, time.Hour, kt)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

// TestRoster: the roster lists exactly the CA's valid, unrevoked device
// certificates; a node gives each listed one a credential that a device
// checks with the roster certificate alone, and nothing else passes.
func TestRoster(t *testing.T) {
	ca, err := NewCAKey("devices", 24*time.Hour, Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewCAKey("other", 24*time.Hour, Ed25519)
	var certs []*x509.Certificate
	for i, id := range []string{"d3", "d1", "d2", "d4", "d0"} {
		certs = append(certs, mustIssue(t, ca, id, []KeyType{Ed25519, P256}[i%2]))
	}
	revoked, _ := ParseRevoked(strings.NewReader("id:d4\n"))
	stranger := mustIssue(t, other, "d9", Ed25519)
	all := append(slices.Clone(certs), stranger, ca.Cert)
	f, skipped, err := ca.IssueRoster(all, revoked, 7, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Entries) != 4 || len(skipped) != 3 {
		t.Fatalf("roster of %d entries, %d skipped (%q); want 4 and 3", len(f.Entries), len(skipped), skipped)
	}
	for i, e := range f.Entries {
		if want := []string{"d0", "d1", "d2", "d3"}[i]; e.ID != want {
			t.Errorf("entry %d is %q, want %q", i, e.ID, want)
		}
	}
	b, err := wire.EncodeRosterFile(f)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r, err := ParseRoster(b, ca.Pool(), now)
	if err != nil {
		t.Fatal(err)
	}
	if r.Info.Epoch != 7 || r.Info.Size != 4 || r.Len() != 4 {
		t.Errorf("roster info %+v, %d entries", r.Info, r.Len())
	}
	// What a device does with the roster certificate and a credential.
	info, err := wire.VerifyRosterCert(r.Cert, ca.Pool(), now)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		cred, ok := r.Credential(c)
		if id := wire.DeviceID(c); ok != (id != "d4") {
			t.Errorf("Credential(%s) ok = %v", id, ok)
			continue
		} else if !ok {
			continue
		}
		if !wire.IsRosterCredential(cred) {
			t.Errorf("%s: credential is not a roster credential", wire.DeviceID(c))
		}
		rc, err := wire.DecodeRosterCredential(cred)
		if err != nil {
			t.Fatal(err)
		}
		if err := info.Check(rc, now); err != nil {
			t.Errorf("%s: %v", wire.DeviceID(c), err)
		}
		if err := info.Check(rc, now.Add(2*time.Hour)); err == nil {
			t.Errorf("%s: an expired entry passes", wire.DeviceID(c))
		}
		rc.Entry.ID = "d4" // another device's name on this key
		if err := info.Check(rc, now); err == nil {
			t.Errorf("%s: a renamed entry passes", wire.DeviceID(c))
		}
	}
	if _, ok := r.Credential(stranger); ok {
		t.Error("a certificate of another CA has a credential")
	}
	// A renewed certificate (same ID, new key) is not the listed one.
	if _, ok := r.Credential(mustIssue(t, ca, "d1", Ed25519)); ok {
		t.Error("a certificate not in the roster has a credential")
	}

	// Nodes and devices refuse a roster whose certificate is not the
	// device CA's, has expired, or does not name its entries.
	if _, err := ParseRoster(b, other.Pool(), now); err == nil {
		t.Error("ParseRoster accepted a roster of another CA")
	}
	if _, err := ParseRoster(b, ca.Pool(), now.Add(2*time.Hour)); err == nil {
		t.Error("ParseRoster accepted an expired roster")
	}
	f2 := *f
	f2.Entries = slices.Clone(f.Entries)
	f2.Entries[1].NotAfter++
	b2, _ := wire.EncodeRosterFile(&f2)
	if _, err := ParseRoster(b2, ca.Pool(), now); err == nil {
		t.Error("ParseRoster accepted entries its certificate does not name")
	}
	if _, err := wire.VerifyRosterCert(certs[0].Raw, ca.Pool(), now); err == nil {
		t.Error("a device certificate passes for a roster certificate")
	}
	if _, err := ParseRoster([]byte("junk"), ca.Pool(), now); err == nil {
		t.Error("ParseRoster accepted junk")
	}
	if _, _, err := ca.IssueRoster([]*x509.Certificate{stranger}, nil, 1, time.Hour); err == nil {
		t.Error("IssueRoster made an empty roster")
	}
}
