package coordinator

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStreamLayer carries Raft's traffic over mutual TLS: both ends present
// a node certificate of the cluster CA and require the other's, each
// handshake with the node's current certificates (certStore).
type tlsStreamLayer struct {
	net.Listener
	certs     *certStore
	advertise net.Addr

	mu     sync.Mutex
	conns  map[*acceptedConn]struct{} // open inbound connections
	closed bool
}

func newTLSStreamLayer(addr string, certs *certStore) (*tlsStreamLayer, error) {
	if b := certs.Bundle(); b == nil || len(b.Cert.Certificate) == 0 || b.CA == nil {
		return nil, errors.New("coordinator: Raft needs mutual TLS: a node certificate and the cluster CA")
	}
	ln, err := tls.Listen("tcp", addr, certs.peerServerTLS())
	if err != nil {
		return nil, err
	}
	return &tlsStreamLayer{Listener: ln, certs: certs, advertise: ln.Addr(), conns: map[*acceptedConn]struct{}{}}, nil
}

// Accept implements net.Listener and keeps the connection for Close:
// raft's NetworkTransport, shut down, leaves a goroutine reading each
// inbound connection until the peer hangs up.
func (s *tlsStreamLayer) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	ac := &acceptedConn{Conn: c, s: s}
	s.conns[ac] = struct{}{}
	return ac, nil
}

// Close stops accepting and closes every inbound connection.
func (s *tlsStreamLayer) Close() error {
	err := s.Listener.Close()
	s.mu.Lock()
	conns := s.conns
	s.conns, s.closed = nil, true
	s.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
	return err
}

type acceptedConn struct {
	net.Conn
	s *tlsStreamLayer
}

func (c *acceptedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

// Dial implements raft.StreamLayer.
func (s *tlsStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(addr), s.certs.peerTLS())
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
