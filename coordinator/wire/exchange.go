package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Stream is one bidirectional stream of the client protocol, whatever
// carries it: a QUIC stream (Exchange), a WebTransport stream over
// HTTP/3 (native or in a browser).
type Stream interface {
	io.Reader
	io.Writer
	// Close closes the send side: the request is complete.
	Close() error
	// SetDeadline bounds every read and write.
	SetDeadline(t time.Time) error
	// CancelRead stops reading: the replies wanted have arrived, or the
	// request was abandoned.
	CancelRead()
	// CancelWrite abandons the request's bytes not yet sent.
	CancelWrite()
}

// StreamWait bounds how long Exchange waits for the peer to let it open a
// stream. A node gives each connection MaxStreams, and a device uses at
// most three at once; a connection with none free for this long has lost
// its slots (streams the peer never released), and waiting longer would
// hang the device on it for good.
const StreamWait = 5 * time.Second

// ErrNoStream reports a connection on which no stream could be opened
// within StreamWait: the caller should close it and dial again.
var ErrNoStream = errors.New("wire: no stream free on the connection")

// OpenStream opens a stream with open (a connection's or a session's
// OpenStreamSync, or a browser's createBidirectionalStream), waiting at
// most StreamWait within ctx: past it, the error is ErrNoStream.
func OpenStream[S any](ctx context.Context, open func(context.Context) (S, error)) (S, error) {
	octx, cancel := context.WithTimeout(ctx, StreamWait)
	st, err := open(octx)
	cancel()
	if err != nil {
		if ctx.Err() == nil && octx.Err() != nil {
			return st, fmt.Errorf("open stream: %w (waited %v)", ErrNoStream, StreamWait)
		}
		return st, fmt.Errorf("open stream: %w", err)
	}
	return st, nil
}

// ExchangeStream runs one request on st, a new stream: it writes req at
// once, closes the send side, and passes each reply to recv until recv
// reports done. A reply Error is returned as an error (*Error) and never
// passed to recv. Every read happens under ctx's deadline and the limits
// l, which accept only Replies. It is Exchange's protocol for any
// transport.
//
// recv must not keep a *ModelChunk, nor its params, after it returns: the
// chunks of a model are decoded into one (a ModelBuilder copies them).
func ExchangeStream(ctx context.Context, st Stream, req Message, l Limits, recv func(Message) (done bool, err error)) error {
	// The request's frame (a device's upload) and the replies' bodies (a
	// model's chunks) are in lent buffers: a Write keeps nothing of what
	// it was given, Decode nothing of its body.
	b, err := encodeInto(bodies.get(HeaderLen+sizeHint(req)), req)
	if err != nil {
		return err
	}
	defer func() { bodies.put(b) }()
	// The peer counts the stream against the connection's MaxStreams
	// until both directions are done: on every path out, the send side
	// is closed (FIN) or reset, and the receive side read to its end or
	// cancelled. A path that leaves either open (a write that failed on
	// the stream's deadline before ctx's timer fired used to) costs the
	// connection a slot for good.
	sent := false
	defer func() {
		if !sent {
			st.CancelWrite()
		}
		st.CancelRead()
	}()
	stop := context.AfterFunc(ctx, func() {
		st.CancelRead()
		st.CancelWrite()
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
	// One body buffer serves every reply (the chunks of a model): Decode
	// keeps none of its bytes, as msgpack copies what it decodes. One
	// ModelChunk serves every chunk: a fresh one cost a device a cold
	// 256 KiB of float32s per chunk.
	var body []byte
	defer func() { bodies.put(body) }()
	var chunk *ModelChunk
	for {
		t, n, err := ReadHeader(st, l)
		if err == nil {
			if cap(body) < n {
				bodies.put(body)
				body = bodies.get(n)
			}
			body, err = readBody(st, t, n, body)
		}
		var msg Message
		switch {
		case err != nil:
		case t == TypeModelChunk && chunk != nil:
			*chunk = ModelChunk{Params32: chunk.Params32[:0]}
			msg = chunk
			err = decodeInto(body, chunk)
		default:
			msg, err = Decode(t, body)
			if c, ok := msg.(*ModelChunk); ok {
				chunk = c
			}
		}
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
