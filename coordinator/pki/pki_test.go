package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteDirAndLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := WriteDir(dir, []string{"a", "b"}, []string{"10.0.0.1", "node.example"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	// A second run reuses the CA and refuses to overwrite a node.
	if err := WriteDir(dir, []string{"c"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(dir, []string{"a"}, nil, time.Hour); err == nil {
		t.Error("WriteDir overwrote a.pem")
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile("a"))); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	a, err := Load(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(dir, "c")
	if err != nil {
		t.Fatal(err)
	}
	leaf := a.Cert.Leaf
	for _, h := range []string{"127.0.0.1", "localhost", "10.0.0.1", "node.example", "a"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("a's certificate not valid for %s: %v", h, err)
		}
	}
	if _, err := c.Cert.Leaf.Verify(x509.VerifyOptions{Roots: a.CA, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("c's certificate does not verify against the shared CA: %v", err)
	}
	if leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm %v, want ECDSA", leaf.PublicKeyAlgorithm)
	}
}

// Mutual TLS between two nodes of one CA works; a node of another CA is
// refused.
func TestPeerTLS(t *testing.T) {
	ca, _ := NewCA("test", time.Hour)
	other, _ := NewCA("other", time.Hour)
	srv, _ := ca.NodeBundle("srv")
	good, _ := ca.NodeBundle("good")
	bad, _ := other.NodeBundle("bad")
	bad.CA = ca.Pool() // trusts us, but is not trusted
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.PeerTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake()
				c.Write([]byte("x"))
			}()
		}
	}()
	dial := func(b *Bundle) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), b.PeerTLS())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Read(make([]byte, 1))
		return err
	}
	if err := dial(good); err != nil {
		t.Errorf("node of the cluster CA: %v", err)
	}
	if err := dial(bad); err == nil {
		t.Error("node of another CA was accepted")
	}
}
