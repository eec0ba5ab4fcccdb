package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"github.com/fedrec/fedrec/aggregation/secagg"
)

// A frame is [4-byte big-endian body length][type byte][msgpack body]. The
// length counts the body only.
const HeaderLen = 5

// Size limits.
const (
	// DefaultMaxParams bounds a model's (and so an update's) parameter
	// count: 4,194,304 params, 32 MiB as float64.
	DefaultMaxParams = 1 << 22
	// ChunkParams is the number of params in a full ModelChunk (512 KiB).
	ChunkParams = 1 << 16
	// smallBody bounds every message that carries no vector.
	smallBody = 16 << 10
)

// Bounds of what Decode allocates (DESIGN.md, invariant 4), enforced by
// the shape pre-check and measured by TestDecodeAllocBound on each type's
// worst bodies. A node reserves them from its memory budget before it
// reads a request's body.
const (
	// AllocPerByte bounds Decode's allocation per byte of the frame, for
	// every type.
	AllocPerByte = 12
	// VectorAllocPerByte bounds it for the requests that carry a vector
	// (Upload, SecAggMasked): the body's bin copied once, decoded once.
	VectorAllocPerByte = 2
	// AllocSlack is the bound's fixed part; RequestAllocSlack, for
	// request types (a node's reservation), is smaller.
	AllocSlack        = 64 << 10
	RequestAllocSlack = 8 << 10
)

// Limits bounds what a reader accepts. The zero value means the defaults.
type Limits struct {
	// MaxParams bounds the length of an Upload's delta; 0 means
	// DefaultMaxParams.
	MaxParams int
	// Only, when set, is the one direction the reader accepts: Requests
	// at a node, Replies at a client. A frame of another type is refused
	// from its header (CodeUnknownType), before its body is read.
	Only Direction
}

// MaxBody returns the largest body accepted for type t; 0 for an unknown
// type.
func (l Limits) MaxBody(t Type) int {
	maxParams := l.MaxParams
	if maxParams <= 0 {
		maxParams = DefaultMaxParams
	}
	switch t {
	case TypeModelChunk:
		return 8*ChunkParams + 64
	case TypeUpload:
		return 8*maxParams + smallBody
	case TypeSecAggMasked: // padded to a power of two, at most 8 bytes a value
		return 16*maxParams + smallBody
	case TypeSecAggPeerKeys, TypeSecAggShares, TypeSecAggDelivery, TypeSecAggUnmaskRequest, TypeSecAggUnmask, TypeSecAggCheck:
		return secAggBody
	case TypeSecAggCheckRequest: // up to secagg.MaxClients ids of at most 5 bytes
		return 5*secagg.MaxClients + smallBody
	case TypePartial: // a float64 and an int32 sum of the model's size
		return 12*maxParams + smallBody
	case TypeSelected:
		return (MaxIDLen+5)*MaxSelect + smallBody
	case TypePlan: // a signed round's cohort: up to MaxSignedCohort ids
		return (MaxIDLen+5)*MaxSignedCohort + smallBody
	}
	if New(t) == nil {
		return 0
	}
	return smallBody
}

// Encode returns msg's frame, in one allocation for the vector-carrying
// messages.
func Encode(msg Message) ([]byte, error) {
	return encodeInto(nil, msg)
}

// encodeInto is Encode into buf's memory when it has room for the frame.
func encodeInto(buf0 []byte, msg Message) ([]byte, error) {
	buf := bytes.NewBuffer(buf0[:0])
	buf.Grow(HeaderLen + sizeHint(msg))
	buf.Write(make([]byte, HeaderLen))
	if err := marshalTo(buf, msg); err != nil {
		return nil, fmt.Errorf("wire: encode %s: %w", msg.Type(), err)
	}
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b, uint32(len(b)-HeaderLen))
	b[4] = byte(msg.Type())
	return b, nil
}

// sizeHint estimates a message's encoded body size.
func sizeHint(msg Message) int {
	switch m := msg.(type) {
	case *Upload:
		return 8*len(m.Delta) + len(m.Quantized) + 256
	case *ModelChunk:
		return 8*len(m.Params) + 4*len(m.Params32) + 64
	case *SecAggMasked:
		return len(m.Values) + 256
	}
	return 256
}

func appendFrame(dst []byte, t byte, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	dst = append(dst, t)
	return append(dst, body...)
}

// Write writes msg's frame to w.
func Write(w io.Writer, msg Message) error {
	if f, ok := msg.(*Frame); ok {
		_, err := w.Write(f.b)
		return err
	}
	b, err := Encode(msg)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// ReadFrame reads one frame from r: ReadHeader, then ReadBody.
func ReadFrame(r io.Reader, l Limits) (Type, []byte, error) {
	t, n, err := ReadHeader(r, l)
	if err != nil {
		return t, nil, err
	}
	body, err := ReadBody(r, t, n)
	return t, body, err
}

// ReadHeader reads a frame header and checks the type and the declared
// length against l, before anything of the body is read. Errors about the
// frame are *Error (CodeUnknownType for an unknown type or one of the
// direction l does not accept, CodeTooLarge, CodeMalformed for a
// truncated header); io.EOF means r ended cleanly before a frame began.
func ReadHeader(r io.Reader, l Limits) (Type, int, error) {
	var hdr [HeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, 0, Errorf(CodeMalformed, "truncated frame header")
		}
		return 0, 0, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[:4]))
	t := Type(hdr[4])
	limit := l.MaxBody(t)
	if limit == 0 {
		return t, 0, Errorf(CodeUnknownType, "message type %d", t)
	}
	if l.Only != 0 && t.Direction() != l.Only {
		return t, 0, Errorf(CodeUnknownType, "%s is not a %s", t, l.Only)
	}
	if n > int64(limit) {
		return t, 0, Errorf(CodeTooLarge, "%s of %d bytes, limit %d", t, n, limit)
	}
	return t, int(n), nil
}

// ReadBody reads the n-byte body of a frame of type t whose header
// ReadHeader checked. Its buffer grows only as bytes arrive, so that a
// lying length costs the liar, not the reader.
//
// A reply's buffer is allocated whole: a client reads replies from the
// node it chose, within the limits ReadHeader checked (a model chunk is
// at most 512 KiB), and growing it copied a chunk's bytes nearly twice.
func ReadBody(r io.Reader, t Type, n int) ([]byte, error) {
	return readBody(r, t, n, nil)
}

// ReadBodyPooled is ReadBody into a buffer lent from a pool, which
// release gives back once nothing refers to the body (Decode keeps none of
// its bytes). A node reads every device's upload this way and a device
// its model's chunks: a fresh buffer cost each of them a zeroing, and,
// after a collection, the kernel's fresh pages. A buffer is lent only for
// a body it holds whole; otherwise the body grows as ReadBody's does.
func ReadBodyPooled(r io.Reader, t Type, n int) (body []byte, release func(), err error) {
	buf := bodies.get(n)
	body, err = readBody(r, t, n, buf)
	if err != nil {
		bodies.put(buf)
		return nil, nil, err
	}
	return body, func() { bodies.put(body) }, nil
}

// pooledBody is the smallest body worth a pooled buffer; maxPooledBody,
// beyond any limit, keeps the pools' index within an int of 32 bits.
const (
	pooledBody    = 32 << 10
	maxPooledBody = 1 << 30
)

// bodyPool lends the buffers of large bodies, a pool per power of two of
// their length.
type bodyPool [32]sync.Pool // of *[]byte

var bodies bodyPool

// get returns an empty buffer with room for n bytes, or nil.
func (p *bodyPool) get(n int) []byte {
	if n < pooledBody || n > maxPooledBody {
		return nil
	}
	if b, ok := p[bits.Len(uint(n))].Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	return nil
}

// put gives b back.
func (p *bodyPool) put(b []byte) {
	if n := cap(b); n >= pooledBody && n <= maxPooledBody {
		p[bits.Len(uint(n))].Put(&b)
	}
}

// readBody is ReadBody reading into buf if it has room for the body (the
// bytes past the body's are never read).
func readBody(r io.Reader, t Type, n int, buf []byte) ([]byte, error) {
	start := min(n, 64<<10)
	if t.Direction() == Replies {
		start = n
	}
	if cap(buf) >= n {
		buf = buf[:0:n]
	} else {
		buf = make([]byte, 0, start)
	}
	for len(buf) < n {
		if len(buf) == cap(buf) { // double, but never past n
			buf = append(make([]byte, 0, min(n, 2*cap(buf))), buf...)
		}
		k, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err != nil && len(buf) < n {
			if errors.Is(err, io.EOF) {
				return nil, Errorf(CodeMalformed, "truncated %s: %d of %d bytes", t, len(buf), n)
			}
			return nil, err
		}
	}
	return buf, nil
}

// Decode decodes a body of type t (as returned by ReadFrame) and validates
// the message. Errors are *Error.
func Decode(t Type, body []byte) (Message, error) {
	msg := New(t)
	if msg == nil {
		return nil, Errorf(CodeUnknownType, "message type %d", t)
	}
	if err := decodeInto(body, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// decodeInto decodes body into msg, of body's type, and validates it.
func decodeInto(body []byte, msg Message) error {
	if err := unmarshal(body, msg); err != nil {
		return err
	}
	return msg.Validate()
}

// Read reads, decodes and validates one message from r.
func Read(r io.Reader, l Limits) (Message, error) {
	t, body, err := ReadFrame(r, l)
	if err != nil {
		return nil, err
	}
	return Decode(t, body)
}

// Frame is a message encoded once, to send the same bytes to many peers
// (the chunks of a model every client downloads). Write sends its bytes
// as they are.
type Frame struct {
	t Type
	b []byte
}

// EncodeFrame encodes msg into a Frame.
func EncodeFrame(msg Message) (*Frame, error) {
	b, err := Encode(msg)
	if err != nil {
		return nil, err
	}
	return &Frame{t: msg.Type(), b: b}, nil
}

// Type implements Message: the type of the encoded message.
func (f *Frame) Type() Type { return f.t }

// Validate implements Message; the message was valid when encoded.
func (f *Frame) Validate() error { return nil }

// Len returns the frame's size in bytes.
func (f *Frame) Len() int { return len(f.b) }

// Message decodes the frame back into its message.
func (f *Frame) Message() (Message, error) {
	return Read(bytes.NewReader(f.b), Limits{})
}
