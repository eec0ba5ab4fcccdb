//go:build js && wasm

package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall/js"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// In a browser the Dialer reaches nodes through the WebTransport API:
// each address's WebTransport listener (wire.WebTransportPath), one
// session per connection, authenticated by a device token
// (DialerConfig.Web), then one request per bidirectional stream, framed
// by coordinator/wire exactly as over QUIC (wire.ExchangeStream).

// transportConn is a browser WebTransport session.
type transportConn struct {
	wt     js.Value
	ctx    context.Context // ends when the session closes
	cancel context.CancelFunc
	once   sync.Once
}

// Context returns a context that ends when the session closes.
func (c *transportConn) Context() context.Context { return c.ctx }

// CloseWithError closes the session.
func (c *transportConn) CloseWithError(code uint64, reason string) error {
	c.once.Do(func() {
		defer c.cancel()
		catchJS(func() {
			c.wt.Call("close", map[string]any{"closeCode": int(code), "reason": reason})
		})
	})
	return nil
}

// Transport is, in native builds, a UDP socket that Dialers share; a
// browser has none (NewTransport fails).
type Transport struct{}

// NewTransport fails in a browser: its sessions are the browser's.
func NewTransport() (*Transport, error) {
	return nil, fmt.Errorf("%w: no shared transport in a browser", ErrInvalidArgument)
}

// Close does nothing.
func (*Transport) Close() error { return nil }

// dial opens a WebTransport session to addr's WebTransport listener and
// authenticates it with a fresh device token.
func (d *Dialer) dial(ctx context.Context, addr string) (*transportConn, error) {
	web := d.cfg.Web
	if web == nil || web.Token == nil {
		return nil, fmt.Errorf("%w: a browser needs DialerConfig.Web.Token", ErrInvalidArgument)
	}
	ctor := js.Global().Get("WebTransport")
	if ctor.IsUndefined() {
		return nil, errors.New("client: this browser has no WebTransport")
	}
	opts := map[string]any{}
	if len(web.CertHashes) > 0 {
		hs := make([]any, len(web.CertHashes))
		for i, h := range web.CertHashes {
			hs[i] = map[string]any{"algorithm": "sha-256", "value": jsBytes(h[:])}
		}
		opts["serverCertificateHashes"] = hs
	}
	var wt js.Value
	if err := catchJS(func() { wt = ctor.New("https://"+addr+wire.WebTransportPath, opts) }); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &transportConn{wt: wt, ctx: cctx, cancel: cancel}
	go func() {
		await(cctx, wt.Get("closed"))
		cancel()
	}()
	if _, err := await(ctx, wt.Get("ready")); err != nil {
		c.CloseWithError(0, "")
		return nil, fmt.Errorf("webtransport %s: %w", addr, err)
	}
	token, err := web.Token(ctx)
	if err != nil {
		c.CloseWithError(0, "")
		return nil, fmt.Errorf("device token: %w", err)
	}
	err = exchangeOn(ctx, c, &wire.Authenticate{Version: wire.Version, Token: token}, wire.Limits{}, func(m wire.Message) (bool, error) {
		if _, ok := m.(*wire.Authenticated); !ok {
			return true, wire.Errorf(wire.CodeUnknownType, "unexpected %s after Authenticate", m.Type())
		}
		return true, nil
	})
	if err != nil {
		c.CloseWithError(0, "")
		return nil, err
	}
	return c, nil
}

// exchangeOn runs one request on a new bidirectional stream of conn,
// waiting at most wire.StreamWait for it (then wire.ErrNoStream: the
// Dialer dials again).
func exchangeOn(ctx context.Context, conn *transportConn, req wire.Message, l wire.Limits, recv func(wire.Message) (bool, error)) error {
	bs, err := wire.OpenStream(ctx, func(ctx context.Context) (js.Value, error) {
		var p js.Value
		if err := catchJS(func() { p = conn.wt.Call("createBidirectionalStream") }); err != nil {
			return js.Value{}, err
		}
		return await(ctx, p)
	})
	if err != nil {
		return err
	}
	st := &jsStream{reader: bs.Get("readable").Call("getReader"), writer: bs.Get("writable").Call("getWriter")}
	return wire.ExchangeStream(ctx, st, req, l, recv)
}

// jsStream is a WebTransportBidirectionalStream as a wire.Stream: its
// readable side through a default reader, its writable side through a
// writer.
type jsStream struct {
	reader, writer js.Value
	buf            []byte // what is left of the last chunk read
	eof            bool
	mu             sync.Mutex
	deadline       time.Time
}

func (s *jsStream) SetDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	return nil
}

// opCtx is the context of one read or write, under the deadline.
func (s *jsStream) opCtx() (context.Context, context.CancelFunc) {
	s.mu.Lock()
	d := s.deadline
	s.mu.Unlock()
	if d.IsZero() {
		return context.WithCancel(context.Background())
	}
	return context.WithDeadline(context.Background(), d)
}

func (s *jsStream) Read(b []byte) (int, error) {
	if len(s.buf) == 0 {
		if s.eof {
			return 0, io.EOF
		}
		ctx, cancel := s.opCtx()
		defer cancel()
		var p js.Value
		if err := catchJS(func() { p = s.reader.Call("read") }); err != nil {
			return 0, err
		}
		v, err := await(ctx, p)
		if err != nil {
			return 0, deadlineErr(err)
		}
		if v.Get("done").Bool() {
			s.eof = true
			return 0, io.EOF
		}
		chunk := v.Get("value")
		n := chunk.Get("byteLength").Int()
		if n <= len(b) {
			// Straight into the caller's buffer: a model arrives in
			// chunks of tens of KiB, read into 512 KiB frames.
			return js.CopyBytesToGo(b, chunk), nil
		}
		s.buf = make([]byte, n)
		js.CopyBytesToGo(s.buf, chunk)
	}
	n := copy(b, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

func (s *jsStream) Write(b []byte) (int, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	u := jsBytes(b)
	var p js.Value
	if err := catchJS(func() { p = s.writer.Call("write", u) }); err != nil {
		return 0, err
	}
	if _, err := await(ctx, p); err != nil {
		return 0, deadlineErr(err)
	}
	return len(b), nil
}

// Close closes the writable side: the request is complete.
func (s *jsStream) Close() error {
	ctx, cancel := s.opCtx()
	defer cancel()
	var p js.Value
	if err := catchJS(func() { p = s.writer.Call("close") }); err != nil {
		return err
	}
	_, err := await(ctx, p)
	return deadlineErr(err)
}

func (s *jsStream) CancelRead()  { catchJS(func() { s.reader.Call("cancel") }) }
func (s *jsStream) CancelWrite() { catchJS(func() { s.writer.Call("abort") }) }

// deadlineErr reports a missed deadline as os.ErrDeadlineExceeded, as
// the native streams do.
func deadlineErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return os.ErrDeadlineExceeded
	}
	return err
}
