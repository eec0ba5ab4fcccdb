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
