package deviceapi

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// bundle is a fixed TLS bundle: the Certs of a node whose files never
// change.
type bundle struct{ b *pki.Bundle }

func (c bundle) Bundle() *pki.Bundle { return c.b }

func (c bundle) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &c.b.Cert, nil }

// A device certificate that expires or is revoked while its connection
// lives is refused from the next request on; a malformed deny-list keeps
// the previous one.
func TestAuthCheckPerRequest(t *testing.T) {
	devCA, _ := pki.NewCA("devices", time.Hour)
	ca, _ := pki.NewCA("cluster", time.Hour)
	path := filepath.Join(t.TempDir(), pki.RevokedFile)
	a := newAuth(bundle{&pki.Bundle{CA: ca.Pool(), Devices: devCA.Pool(), Revoked: path}}, slog.New(slog.DiscardHandler))
	a.every = 0
	c, _ := devCA.IssueDevice("phone", time.Hour)
	p := a.peer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf}})
	if p.Device != "phone" || a.check(p) != nil {
		t.Fatalf("peer %+v, check %v; want device phone, accepted", p, a.check(p))
	}
	expired := p
	expired.Cert = &x509.Certificate{SerialNumber: c.Leaf.SerialNumber, NotAfter: time.Now().Add(-time.Second)}
	if e := a.check(expired); e == nil || e.Code != wire.CodeUnauthenticated {
		t.Errorf("expired during the connection: %v, want code %v", e, wire.CodeUnauthenticated)
	}
	os.WriteFile(path, []byte("id:phone\n"), 0o644)
	if e := a.check(p); e == nil || e.Code != wire.CodeUnauthenticated {
		t.Errorf("revoked: %v, want code %v", e, wire.CodeUnauthenticated)
	}
	os.WriteFile(path, []byte("id:phone\nnonsense\n"), 0o644)
	if e := a.check(p); e == nil {
		t.Error("a malformed deny-list dropped the previous one")
	}
	os.Remove(path)
	if e := a.check(p); e != nil {
		t.Errorf("deny-list removed: %v", e)
	}
}

// A signed round relays a listed device's roster credential, and its
// certificate without a roster, for a device the roster does not list, or
// once the roster is gone; an invalid roster keeps the previous one.
func TestAuthRosterCredential(t *testing.T) {
	devCA, _ := pki.NewCAKey("devices", time.Hour, pki.Ed25519)
	ca, _ := pki.NewCA("cluster", time.Hour)
	path := filepath.Join(t.TempDir(), pki.RosterFile)
	a := newAuth(bundle{&pki.Bundle{CA: ca.Pool(), Devices: devCA.Pool(), Roster: path}}, slog.New(slog.DiscardHandler))
	a.every = 0
	listed, _ := devCA.IssueDevice("phone", time.Hour)
	other, _ := devCA.IssueDevice("tablet", time.Hour)
	peerOf := func(c tls.Certificate) Peer {
		return a.peer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf}})
	}
	isRoster := func(c tls.Certificate) bool { return wire.IsRosterCredential(peerOf(c).Credential()) }
	if isRoster(listed) {
		t.Error("a roster credential without a roster")
	}
	f, _, err := devCA.IssueRoster([]*x509.Certificate{listed.Leaf}, nil, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := wire.EncodeRosterFile(f)
	os.WriteFile(path, b, 0o644)
	if !isRoster(listed) {
		t.Error("no roster credential for a listed device")
	}
	if got := peerOf(other).Credential(); string(got) != string(other.Leaf.Raw) {
		t.Error("an unlisted device's credential is not its certificate")
	}
	os.WriteFile(path, []byte("junk, a little longer than before"), 0o644)
	if !isRoster(listed) {
		t.Error("an invalid roster dropped the previous one")
	}
	os.Remove(path)
	if isRoster(listed) {
		t.Error("a roster credential once the roster is gone")
	}
	if (Peer{}).Credential() != nil {
		t.Error("a credential without a certificate")
	}
	b, _ = wire.EncodeRosterFile(f)
	os.WriteFile(path, b, 0o644)
	if !isRoster(listed) {
		t.Fatal("no roster credential once the roster is back")
	}
	if got := a.credential(listed.Leaf, time.Now().Add(2*time.Hour)); string(got) != string(listed.Leaf.Raw) {
		t.Error("a roster past its validity still gives credentials")
	}
}
