package deviceapi

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// Handler answers the requests the server admitted: the round owner.
type Handler interface {
	// Handle answers one request of peer, passing each reply message to
	// send (a model download sends several). ctx ends when the client goes
	// away or the server closes.
	Handle(ctx context.Context, req wire.Message, peer Peer, send func(wire.Message) error) error
	// ModelShape is the configured model's dimension and whether its
	// rounds are secure; 0 before the configuration is set. It bounds the
	// requests' sizes (an upload may be as large as the model).
	ModelShape() (dim int, secure bool)
}

// Certs is the node's current TLS material: each handshake and each
// authentication takes the bundle of the moment.
type Certs interface {
	Bundle() *pki.Bundle
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// Metrics are the node's figures the server keeps up to date.
type Metrics struct {
	// Refused counts requests refused before their body was read, by
	// reason (busy, device_uploads, device_memory, device_rate,
	// too_large).
	Refused *prometheus.CounterVec
	// Delayed counts requests that waited for an upload slot or budget;
	// Slow those cut off below the minimum rate.
	Delayed, Slow prometheus.Counter
	// Connected counts a connection as open until the function it
	// returns is called.
	Connected func(*quic.Conn) (closed func())
}

// Config configures a Server. The limits are the coordinator's
// (coordinator.Config documents each), with its defaults applied.
type Config struct {
	MaxConns            int // 0: wire.DefaultMaxConns
	MemoryBudget        int64
	MaxUploads          int
	MaxUploadsPerDevice int
	MaxDeviceMemory     int64
	DeviceRequestRate   float64
	DeviceRequestBurst  int
	MinUploadRate       int64
	RateGrace           time.Duration
	// WebTransportCert, if set, serves browsers instead of the node's
	// certificate.
	WebTransportCert *tls.Certificate
	Certs            Certs
	Metrics          Metrics
	Logger           *slog.Logger
}

// Server is a node's device-facing server: the client protocol's QUIC
// listener and the WebTransport listener, their connections, the
// admission of each request (memory budget, upload slots, per-device
// limits, rate, slow senders) and the authentication of peers. Each
// admitted request goes to the Handler.
type Server struct {
	h       Handler
	cfg     Config
	certs   Certs
	metrics Metrics
	log     *slog.Logger
	ctx     context.Context // ends at Close; every request's context derives from it
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// started is closed by Start: the listeners accept no connection
	// before, so that the handler is complete (its addresses and node
	// channel set) when the first request reaches it.
	started   chan struct{}
	startOnce sync.Once

	quic       *wire.Listener
	wt         *webTransportServer // nil without a WebTransport listener
	auth       *auth               // nil without a listener: Handle's callers are trusted
	conns      *connTable          // the connections by peer
	uploads    chan struct{}       // semaphore of MaxUploads
	budget     *budget             // MemoryBudget
	devUploads *deviceUploads      // MaxUploadsPerDevice
	devBytes   *deviceBytes        // MaxDeviceMemory
	devRate    *deviceRate         // DeviceRequestRate, DeviceRequestBurst
}

// New returns a server of h's requests; it listens once Listen or
// ListenWebTransport is called, and accepts connections once Start is.
func New(h Handler, cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{h: h, cfg: cfg, certs: cfg.Certs, metrics: cfg.Metrics, log: cfg.Logger, ctx: ctx, cancel: cancel, started: make(chan struct{}),
		uploads: make(chan struct{}, cfg.MaxUploads), budget: newBudget(cfg.MemoryBudget),
		devUploads: &deviceUploads{max: cfg.MaxUploadsPerDevice, n: map[string]int{}},
		devBytes:   &deviceBytes{max: cfg.MaxDeviceMemory, n: map[string]int64{}},
		devRate:    newDeviceRate(cfg.DeviceRequestRate, cfg.DeviceRequestBurst)}
}

// Close stops the listeners and ends the requests in flight (their
// contexts end); Wait waits for them.
func (s *Server) Close() error {
	s.cancel()
	var errs []error
	if s.quic != nil {
		errs = append(errs, s.quic.Close())
	}
	if s.wt != nil {
		errs = append(errs, s.wt.close())
	}
	return errors.Join(errs...)
}

// Start lets the listeners accept connections.
func (s *Server) Start() { s.startOnce.Do(func() { close(s.started) }) }

// waitStart waits for Start, and reports false if the server closed first.
func (s *Server) waitStart() bool {
	select {
	case <-s.started:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// Wait waits until every goroutine of the server has ended, after Close.
func (s *Server) Wait() { s.wg.Wait() }

// startAuth sets up the authentication of peers and the connection table
// at the first listener.
func (s *Server) startAuth() {
	if s.auth == nil {
		s.auth = newAuth(s.certs, s.log)
	}
	if s.conns == nil {
		s.conns = newConnTable(max(1, s.maxConns()/8))
	}
}

func (s *Server) maxConns() int {
	if s.cfg.MaxConns > 0 {
		return s.cfg.MaxConns
	}
	return wire.DefaultMaxConns
}

// Authorize checks a decoded request against its peer: nil when the
// server has no listener (its callers are trusted).
func (s *Server) Authorize(req wire.Message, p Peer) *wire.Error {
	if s == nil || s.auth == nil {
		return nil
	}
	return s.auth.authorize(req, p)
}

// Refuse is the refusal of a request of type t that p may not make
// whatever its body (a request only nodes may send), or nil; nil when the
// server has no listener.
func (s *Server) Refuse(t wire.Type, p Peer) *wire.Error {
	if s == nil || s.auth == nil {
		return nil
	}
	return s.auth.early(t, p)
}

// Insecure reports whether the server listens without authenticating
// devices (no device CA: development only).
func (s *Server) Insecure() bool { return s != nil && s.auth != nil && !s.auth.required() }

// Budget returns the bytes of the memory budget reserved and its size.
func (s *Server) Budget() (inUse, size int64) { return s.budget.inUse(), s.budget.size }

// Uploading returns the upload slots taken (of MaxUploads).
func (s *Server) Uploading() int { return len(s.uploads) }

// DeviceMax returns the most bytes of the memory budget one device may
// reserve.
func (s *Server) DeviceMax() int64 { return s.deviceMax() }

// Listen starts the client protocol's QUIC listener on addr, with the
// authentication of peers and the connection limits, and serves it until
// Close.
func (s *Server) Listen(addr string) (net.Addr, error) {
	s.startAuth()
	ln, err := wire.ListenWith(addr, serverTLS(s.certs), wire.ConnLimits{MaxConns: s.maxConns()})
	if err != nil {
		return nil, err
	}
	s.quic = ln
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.serveQUIC(ln)
	}()
	return ln.Addr(), nil
}

// Connection limits beyond the listener's (wire.ConnLimits), when devices
// must authenticate.
const (
	// maxConnsPerDevice bounds one device's connections: a new one closes
	// its oldest (a device that changed networks reconnects at once; a
	// stolen certificate holds no more than this).
	maxConnsPerDevice = 4
	// anonLifetime bounds how long a peer without a valid certificate
	// stays connected: long enough to read its CodeUnauthenticated.
	anonLifetime = 5 * time.Second
)

// connTable tracks the connections of devices and of unauthenticated
// peers, so that neither a stolen device certificate nor peers without
// one can take the node's connections from the others.
type connTable struct {
	mu      sync.Mutex
	maxAnon int
	anon    int
	devices map[string][]*quic.Conn // oldest first
}

func newConnTable(maxAnon int) *connTable {
	return &connTable{maxAnon: maxAnon, devices: map[string][]*quic.Conn{}}
}

// admit registers conn of peer and returns the function that forgets it,
// or false when conn must be refused.
func (t *connTable) admit(conn *quic.Conn, p Peer) (func(), bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case p.Node:
		return func() {}, true
	case p.Device == "":
		if t.anon >= t.maxAnon {
			return nil, false
		}
		t.anon++
		return func() { t.mu.Lock(); t.anon--; t.mu.Unlock() }, true
	}
	cs := append(t.devices[p.Device], conn)
	for len(cs) > maxConnsPerDevice {
		cs[0].CloseWithError(connClosedBusy, "newer connection of this device")
		cs = cs[1:]
	}
	t.devices[p.Device] = cs
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		cs := t.devices[p.Device]
		for i, c := range cs {
			if c == conn {
				cs = append(cs[:i:i], cs[i+1:]...)
				break
			}
		}
		if len(cs) == 0 {
			delete(t.devices, p.Device)
		} else {
			t.devices[p.Device] = cs
		}
	}, true
}

// QUIC application error codes a node closes connections with.
const (
	connClosedALPN quic.ApplicationErrorCode = 1
	connClosedBusy quic.ApplicationErrorCode = 2 // over a connection limit
	connClosedAnon quic.ApplicationErrorCode = 3 // unauthenticated, lifetime over
)

// serveQUIC accepts connections until the listener closes.
func (s *Server) serveQUIC(ln *wire.Listener) {
	if !s.waitStart() {
		return
	}
	for {
		conn, err := ln.Accept(s.ctx)
		if err != nil {
			return
		}
		if err := wire.CheckALPN(conn); err != nil {
			conn.CloseWithError(connClosedALPN, "alpn")
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(conn)
		}()
	}
}

func (s *Server) serveConn(conn *quic.Conn) {
	defer s.metrics.Connected(conn)()
	defer conn.CloseWithError(0, "")
	peer := s.auth.peer(conn.ConnectionState().TLS)
	if s.auth.required() {
		forget, ok := s.conns.admit(conn, peer)
		if !ok {
			conn.CloseWithError(connClosedBusy, "too many unauthenticated connections")
			return
		}
		defer forget()
		if !peer.Node && peer.Device == "" {
			t := time.AfterFunc(anonLifetime, func() { conn.CloseWithError(connClosedAnon, "unauthenticated") })
			defer t.Stop()
		}
	}
	stop := context.AfterFunc(s.ctx, func() { conn.CloseWithError(0, "shutting down") })
	defer stop()
	serveStreams(s, conn.AcceptStream, func(st *quic.Stream) requestStream { return quicStream{st} }, peer)
}

// serveStreams serves each stream accept returns, as wrap makes it a
// requestStream, until accept fails (the connection or session ended):
// a QUIC connection's and a WebTransport session's streams alike.
func serveStreams[S any](s *Server, accept func(context.Context) (S, error), wrap func(S) requestStream, peer Peer) {
	for {
		st, err := accept(s.ctx)
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveStream(wrap(st), peer)
		}()
	}
}

// limits bounds requests: uploads may be as large as the model, and
// replies are refused from their header.
func (s *Server) limits() wire.Limits {
	l := wire.Limits{MaxParams: 1, Only: wire.Requests}
	if dim, _ := s.h.ModelShape(); dim > 0 {
		l.MaxParams = dim
	}
	return l
}

// serveStream reads one request under deadlines that fit its size, within
// the node's memory budget, answers it and closes the stream. A bad
// request gets an Error and costs the node nothing else.
func (s *Server) serveStream(st requestStream, peer Peer) {
	defer st.Close()
	// The header is there when the stream is accepted (a stream is
	// accepted when its first bytes arrive).
	st.SetReadDeadline(time.Now().Add(s.cfg.RateGrace))
	req, free, err := s.readRequest(st, peer)
	// One request per stream: whatever follows it is not read, and the
	// stream's slot is released only once its receive side is done
	// (quic-go counts a stream until both sides are).
	st.CancelRead()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) { // the header, late
			err = tooSlow(0, wire.HeaderLen, s.cfg.RateGrace, s.cfg.MinUploadRate)
		}
		if wire.CodeOf(err) == wire.CodeTooSlow {
			s.metrics.Slow.Inc()
		}
		st.SetWriteDeadline(time.Now().Add(5 * time.Second))
		e := wire.AsError(err)
		if wire.CodeOf(err) == 0 {
			e = wire.Errorf(wire.CodeMalformed, "%v", err)
		}
		if wire.Write(st, e) != nil {
			st.CancelWrite()
		}
		return
	}
	defer free() // the decoded request is held until answered
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// A client that goes away cancels its held check-in.
	go func() {
		select {
		case <-st.Context().Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	err = s.h.Handle(ctx, req, peer, func(m wire.Message) error {
		st.SetWriteDeadline(time.Now().Add(wire.ReadTimeout))
		return wire.Write(st, m)
	})
	if err != nil {
		// A reply the client does not read would keep the stream (and
		// its frames) until the connection ends.
		st.CancelWrite()
	}
}

// streamDone is the stream error code with which a node stops reading
// after a request, or abandons a reply the client does not read.
const streamDone = 0

// requestStream is the stream of one request, whatever carries it: a QUIC
// stream of the client protocol's listener, or a WebTransport stream of a
// browser's session (webtransport.go). Both go through serveStream.
type requestStream interface {
	io.Reader
	io.Writer
	Close() error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	// Context ends when the stream is done or the peer went away.
	Context() context.Context
	// CancelRead and CancelWrite cancel a side with streamDone.
	CancelRead()
	CancelWrite()
}

// quicStream is a stream of the QUIC listener.
type quicStream struct{ *quic.Stream }

func (s quicStream) CancelRead()  { s.Stream.CancelRead(streamDone) }
func (s quicStream) CancelWrite() { s.Stream.CancelWrite(streamDone) }

// readRequest reads one request and returns it with the function that
// releases its share of the memory budget. Before the body is read, the
// request is admitted (Server.admit): its cost reserved from the budget
// and, for the large requests (uploads, masked inputs), an upload slot of
// the node and of the device taken until it is decoded; meanwhile QUIC
// flow control holds its bytes at the client. The body must then arrive
// at MinUploadRate after RateGrace.
func (s *Server) readRequest(st requestStream, peer Peer) (wire.Message, func(), error) {
	t, size, err := wire.ReadHeader(st, s.limits())
	if err != nil {
		return nil, nil, err
	}
	if e := s.auth.early(t, peer); e != nil {
		return nil, nil, e // the body is never read
	}
	if err := s.limitRate(t, peer.Device); err != nil {
		return nil, nil, err
	}
	freeSlots, free, err := s.admit(st, t, size, peer)
	if err != nil {
		return nil, nil, err
	}
	defer freeSlots()
	r := &pacedReader{st: st, start: time.Now(), grace: s.cfg.RateGrace, rate: s.cfg.MinUploadRate, size: size}
	body, release, err := wire.ReadBodyPooled(r, t, size)
	if err != nil {
		free()
		return nil, nil, err
	}
	msg, err := wire.Decode(t, body)
	release()
	if err != nil {
		free()
		return nil, nil, err
	}
	return msg, free, nil
}
