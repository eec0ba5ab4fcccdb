package wire

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"time"
)

// Transport settings of the client protocol, for both ends, in one place.
const (
	// HandshakeTimeout bounds the QUIC and TLS handshake.
	HandshakeTimeout = 5 * time.Second
	// IdleTimeout closes a connection without traffic: it is also how
	// long a client waiting on a dead (SIGKILLed, partitioned) leader
	// takes to notice and move on: with 10 s, the first commit after a
	// SIGKILLed leader took up to 8.5 s; with 5 s, median 3.4 s and at
	// most 6.3 s over 50 kills (cmd/fedrec's TestFaultKillLeaderProcess).
	IdleTimeout = 5 * time.Second
	// KeepAlive is the period of QUIC keep-alive packets: five per
	// IdleTimeout, so that a live connection over a link losing 20 % of
	// its packets each way is not taken for dead.
	KeepAlive = time.Second
	// MaxHold bounds how long a leader holds a check-in before answering
	// Wait; clients read a check-in's reply for longer.
	MaxHold = 10 * time.Second
	// MaxStreams bounds the concurrent requests of one connection: a
	// check-in held open, a model download and an upload need three.
	MaxStreams = 8
	// ReadTimeout bounds reading one request on the server.
	ReadTimeout = 30 * time.Second
	// Flow-control windows bound what a peer can make us buffer before we
	// read it: per stream and per connection.
	streamWindow, maxStreamWindow = 256 << 10, 2 << 20
	connWindow, maxConnWindow     = 512 << 10, 4 << 20
)

// TLSConfig returns a clone of base set up for the client protocol: TLS 1.3
// only, ALPN "fedrec/1". base is not modified.
func TLSConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{ALPN}
	return c
}

// ErrALPN reports a peer that did not negotiate our ALPN.
var ErrALPN = errors.New("wire: peer did not negotiate " + ALPN)

// DeviceID returns the client ID a device certificate carries: its
// subject's common name. Every request a device makes must carry this ID.
func DeviceID(cert *x509.Certificate) string { return cert.Subject.CommonName }

// DefaultMaxConns bounds the connections (handshakes included) a listener
// holds at once.
const DefaultMaxConns = 8192

// ErrBusy is the reason a listener refuses a connection over its limit
// (the peer sees QUIC's CONNECTION_REFUSED).
var ErrBusy = errors.New("wire: too many connections")

// ConnLimits bounds what peers can make a listener hold before any
// request is read. The zero value means the defaults.
type ConnLimits struct {
	// MaxConns bounds connections and handshakes in flight together;
	// one more is refused before its handshake. 0 means DefaultMaxConns.
	MaxConns int
	// RetryAbove is the number of connections above which a new one
	// must first prove its source address (a QUIC Retry, one more round
	// trip), so that a flood of Initials from spoofed addresses costs
	// the node no handshake state. 0 means MaxConns/4.
	RetryAbove int
}

// WebTransportPath is the path of a WebTransport session's CONNECT
// request (webtransport.go, and browsers); its suffix is the protocol's
// major version, as the ALPN's.
const WebTransportPath = "/fedrec/1"
