package coordinator

import (
	"crypto/tls"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
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
