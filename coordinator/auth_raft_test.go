package coordinator

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// Raft's transport takes only peers with a node certificate of the
// cluster CA: not a device certificate, not a bare TLS client.
func TestRaftNeedsClusterCertificate(t *testing.T) {
	ca, _ := pki.NewCA("cluster", time.Hour)
	devCA, _ := pki.NewCA("devices", time.Hour)
	srv, _ := ca.NodeBundle("n0")
	peer, _ := ca.NodeBundle("n1")
	dev, _ := devCA.IssueDevice("phone", time.Hour)
	sl, err := newTLSStreamLayer("127.0.0.1:0", newCertStore(srv, slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	go func() {
		for {
			c, err := sl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*acceptedConn).Conn.(*tls.Conn).Handshake() == nil {
					c.Write([]byte{1})
				}
			}()
		}
	}()
	dial := func(conf *tls.Config) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", sl.Addr().String(), conf)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		return err
	}
	if err := dial(peer.PeerTLS()); err != nil {
		t.Errorf("node of the cluster CA: %v", err)
	}
	if err := dial(pki.DeviceTLS(ca.Pool(), dev)); err == nil {
		t.Error("a device certificate reached Raft")
	}
	if err := dial(pki.ClientTLS(ca.Pool())); err == nil {
		t.Error("a client without a certificate reached Raft")
	}
}

// A device certificate that expires or is revoked while its connection
// lives is refused from the next request on; a malformed deny-list keeps
// the previous one.
func TestAuthCheckPerRequest(t *testing.T) {
	devCA, _ := pki.NewCA("devices", time.Hour)
	ca, _ := pki.NewCA("cluster", time.Hour)
	path := filepath.Join(t.TempDir(), pki.RevokedFile)
	a := newAuth(newCertStore(&pki.Bundle{CA: ca.Pool(), Devices: devCA.Pool(), Revoked: path}, slog.New(slog.DiscardHandler)), slog.New(slog.DiscardHandler))
	a.every = 0
	c, _ := devCA.IssueDevice("phone", time.Hour)
	p := a.peer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf}})
	if p.Device != "phone" || a.check(p) != nil {
		t.Fatalf("peer %+v, check %v; want device phone, accepted", p, a.check(p))
	}
	expired := p
	expired.cert = &x509.Certificate{SerialNumber: c.Leaf.SerialNumber, NotAfter: time.Now().Add(-time.Second)}
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
