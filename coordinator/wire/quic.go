package wire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
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

// CheckALPN checks, after the handshake, that conn speaks our protocol.
func CheckALPN(conn *quic.Conn) error {
	if p := conn.ConnectionState().TLS.NegotiatedProtocol; p != ALPN {
		return fmt.Errorf("%w (got %q)", ErrALPN, p)
	}
	return nil
}

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
	ln, err := l.tr.Listen(TLSConfig(tlsConf), QUICConfig())
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

// Dial opens a QUIC connection to addr and checks the ALPN.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config) (*quic.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*HandshakeTimeout)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, TLSConfig(tlsConf), QUICConfig())
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

// StreamWait bounds how long Exchange waits for the peer to let it open a
// stream. A node gives each connection MaxStreams, and a device uses at
// most three at once; a connection with none free for this long has lost
// its slots (streams the peer never released), and waiting longer would
// hang the device on it for good.
const StreamWait = 5 * time.Second

// ErrNoStream reports a connection on which no stream could be opened
// within StreamWait: the caller should close it and dial again.
var ErrNoStream = errors.New("wire: no stream free on the connection")

// Exchange runs one request on its own bidirectional stream of conn: it
// writes req at once, closes the send side, and passes each reply to recv
// until recv reports done. A reply Error is returned as an error (*Error)
// and never passed to recv. Every read happens under ctx's deadline and
// the limits l, which accept only Replies.
func Exchange(ctx context.Context, conn *quic.Conn, req Message, l Limits, recv func(Message) (done bool, err error)) error {
	b, err := Encode(req)
	if err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, StreamWait)
	st, err := conn.OpenStreamSync(octx)
	cancel()
	if err != nil {
		if ctx.Err() == nil && octx.Err() != nil {
			return fmt.Errorf("open stream: %w (waited %v)", ErrNoStream, StreamWait)
		}
		return fmt.Errorf("open stream: %w", err)
	}
	// The peer counts the stream against the connection's MaxStreams
	// until both directions are done: on every path out, the send side
	// is closed (FIN) or reset, and the receive side read to its end or
	// cancelled. A path that leaves either open (a write that failed on
	// the stream's deadline before ctx's timer fired used to) costs the
	// connection a slot for good.
	sent := false
	defer func() {
		if !sent {
			st.CancelWrite(streamCancelled)
		}
		st.CancelRead(0)
	}()
	stop := context.AfterFunc(ctx, func() {
		st.CancelRead(streamCancelled)
		st.CancelWrite(streamCancelled)
	})
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		st.SetDeadline(d)
	}
	if _, err := st.Write(b); err != nil {
		return ctxErr(ctx, fmt.Errorf("send %s: %w", req.Type(), err))
	}
	st.Close()
	sent = true
	l.Only = Replies
	for {
		msg, err := Read(st, l)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return ctxErr(ctx, fmt.Errorf("%s reply: %w", req.Type(), err))
		}
		if e, ok := msg.(*Error); ok {
			return e
		}
		done, err := recv(msg)
		if err != nil || done {
			return err
		}
	}
}

// ctxErr prefers the context's error when it caused err. The stream's
// deadline is the context's, and its timer may fire before the context's:
// a stream deadline is then the context's deadline too, so that callers
// (and client/mobile's CodeTimeout) see context.DeadlineExceeded.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}
