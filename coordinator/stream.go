package coordinator

import (
	"crypto/tls"
	"errors"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStreamLayer carries Raft's traffic over mutual TLS: both ends present
// a node certificate of the cluster CA and require the other's.
type tlsStreamLayer struct {
	net.Listener
	conf      *tls.Config
	advertise net.Addr
}

func newTLSStreamLayer(addr string, conf *tls.Config) (*tlsStreamLayer, error) {
	if conf == nil || len(conf.Certificates) == 0 || conf.ClientCAs == nil || conf.RootCAs == nil {
		return nil, errors.New("coordinator: Raft needs mutual TLS: a node certificate and the cluster CA")
	}
	conf = conf.Clone()
	conf.ClientAuth = tls.RequireAndVerifyClientCert
	conf.MinVersion = tls.VersionTLS13
	ln, err := tls.Listen("tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	return &tlsStreamLayer{Listener: ln, conf: conf, advertise: ln.Addr()}, nil
}

// Dial implements raft.StreamLayer.
func (s *tlsStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(addr), s.conf.Clone())
	if err != nil {
		return nil, err
	}
	return c, nil
}

// advertiseAddr is an address other nodes dial, kept as given (a DNS
// name is resolved at every dial).
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// Addr implements net.Listener with the address peers dial.
func (s *tlsStreamLayer) Addr() net.Addr { return s.advertise }
