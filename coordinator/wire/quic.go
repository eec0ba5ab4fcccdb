//go:build !js

package wire

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// QUICConfig returns the QUIC settings of both ends: handshake and idle
// timeouts, keep-alive, stream limits (no unidirectional streams),
// flow-control windows (what a peer can make us buffer), no 0-RTT (a
// replayable first flight must never change state).
func QUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:  HandshakeTimeout,
		MaxIdleTimeout:        IdleTimeout,
		KeepAlivePeriod:       KeepAlive,
		MaxIncomingStreams:    MaxStreams,
		MaxIncomingUniStreams: -1,
		Allow0RTT:             false,

		InitialStreamReceiveWindow:     streamWindow,
		MaxStreamReceiveWindow:         maxStreamWindow,
		InitialConnectionReceiveWindow: connWindow,
		MaxConnectionReceiveWindow:     maxConnWindow,
	}
}

// CheckALPN checks, after the handshake, that conn speaks our protocol.
func CheckALPN(conn *quic.Conn) error {
	if p := conn.ConnectionState().TLS.NegotiatedProtocol; p != ALPN {
		return fmt.Errorf("%w (got %q)", ErrALPN, p)
	}
	return nil
}

// Listener accepts QUIC connections of the client protocol. Close closes
// the listener, every connection and the UDP socket, at once.
type Listener struct {
	*quic.Listener
	tr    *quic.Transport
	udp   *net.UDPConn
	conns atomic.Int64 // connections and handshakes in flight
}

// Listen listens for QUIC connections on a UDP address with the client
// protocol's settings and the default ConnLimits. tlsConf must hold the
// server's certificate.
func Listen(addr string, tlsConf *tls.Config) (*Listener, error) {
	return ListenWith(addr, tlsConf, ConnLimits{})
}

// ListenWith is Listen with connection limits.
func ListenWith(addr string, tlsConf *tls.Config, lim ConnLimits) (*Listener, error) {
	return listen(addr, TLSConfig(tlsConf), QUICConfig(), lim)
}

// listen listens on a UDP address with the TLS and QUIC configurations
// given (used as they are) and the connection limits lim.
func listen(addr string, tlsConf *tls.Config, quicConf *quic.Config, lim ConnLimits) (*Listener, error) {
	if lim.MaxConns <= 0 {
		lim.MaxConns = DefaultMaxConns
	}
	if lim.RetryAbove <= 0 {
		lim.RetryAbove = lim.MaxConns / 4
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	l := &Listener{udp: udp}
	max, retry := int64(lim.MaxConns), int64(lim.RetryAbove)
	l.tr = &quic.Transport{
		Conn:                udp,
		VerifySourceAddress: func(net.Addr) bool { return l.conns.Load() >= retry },
		// Counted from the first Initial until the connection closes or
		// its handshake fails.
		ConnContext: func(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
			if l.conns.Add(1) > max {
				l.conns.Add(-1)
				return nil, ErrBusy
			}
			context.AfterFunc(ctx, func() { l.conns.Add(-1) })
			return ctx, nil
		},
	}
	ln, err := l.tr.Listen(tlsConf, quicConf)
	if err != nil {
		udp.Close()
		return nil, err
	}
	l.Listener = ln
	return l, nil
}

// Conns returns the number of connections and handshakes in flight.
func (l *Listener) Conns() int { return int(l.conns.Load()) }

// Close implements io.Closer.
func (l *Listener) Close() error {
	l.Listener.Close()
	err := l.tr.Close()
	l.udp.Close()
	return err
}

// Dial opens a QUIC connection to addr, on a UDP socket of its own, and
// checks the ALPN.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config) (*quic.Conn, error) {
	return dial(ctx, addr, tlsConf, nil)
}

// clientConnIDLen is the length of the connection IDs of a ClientTransport,
// which tell its connections apart on the one socket: 8 random bytes keep
// collisions unlikely among millions.
const clientConnIDLen = 8

// ClientTransport is one UDP socket that many client connections share
// (quic-go's Transport): a process that plays many devices dials them all
// from it instead of holding a socket, its buffers and its reader per
// connection. It is safe for concurrent use.
type ClientTransport struct {
	udp *net.UDPConn
	tr  *quic.Transport
}

// NewClientTransport opens a UDP socket on an ephemeral port for Dial.
func NewClientTransport() (*ClientTransport, error) {
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		return nil, err
	}
	return &ClientTransport{udp: udp, tr: &quic.Transport{Conn: udp, ConnectionIDLength: clientConnIDLen}}, nil
}

// Dial opens a QUIC connection to addr over t and checks the ALPN.
func (t *ClientTransport) Dial(ctx context.Context, addr string, tlsConf *tls.Config) (*quic.Conn, error) {
	return dial(ctx, addr, tlsConf, t)
}

// Close closes every connection of t and its socket.
func (t *ClientTransport) Close() error {
	err := t.tr.Close()
	t.udp.Close()
	return err
}

// dial dials addr over t, or over a socket of its own if t is nil.
func dial(ctx context.Context, addr string, tlsConf *tls.Config, t *ClientTransport) (*quic.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*HandshakeTimeout)
	defer cancel()
	var conn *quic.Conn
	var err error
	if t == nil {
		conn, err = quic.DialAddr(ctx, addr, TLSConfig(tlsConf), QUICConfig())
	} else {
		var ua *net.UDPAddr
		if ua, err = net.ResolveUDPAddr("udp", addr); err != nil {
			return nil, err
		}
		c := TLSConfig(tlsConf)
		if c.ServerName == "" {
			// As quic.DialAddr does: verify the name dialled.
			c.ServerName, _, _ = net.SplitHostPort(addr)
		}
		conn, err = t.tr.Dial(ctx, ua, c, QUICConfig())
	}
	if err != nil {
		return nil, err
	}
	if err := CheckALPN(conn); err != nil {
		conn.CloseWithError(0, "alpn")
		return nil, err
	}
	return conn, nil
}

// Stream error codes for cancelled QUIC streams.
const (
	streamCancelled quic.StreamErrorCode = 1
)

// Exchange runs one request on its own bidirectional stream of conn, as
// ExchangeStream does. It waits at most StreamWait for the stream (see
// OpenStream).
func Exchange(ctx context.Context, conn *quic.Conn, req Message, l Limits, recv func(Message) (done bool, err error)) error {
	st, err := OpenStream(ctx, conn.OpenStreamSync)
	if err != nil {
		return err
	}
	return ExchangeStream(ctx, &quicStream{st}, req, l, recv)
}

// quicStream is a QUIC stream as a Stream. An abandoned request cancels
// with streamCancelled; a finished one stops reading with 0.
type quicStream struct{ *quic.Stream }

func (s *quicStream) CancelRead()  { s.Stream.CancelRead(0) }
func (s *quicStream) CancelWrite() { s.Stream.CancelWrite(streamCancelled) }
