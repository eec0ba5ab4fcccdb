package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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

// Limits bounds what a reader accepts. The zero value means the defaults.
type Limits struct {
	// MaxParams bounds the length of an Upload's delta; 0 means
	// DefaultMaxParams.
	MaxParams int
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
	}
	if New(t) == nil {
		return 0
	}
	return smallBody
}

// Encode returns msg's frame.
func Encode(msg Message) ([]byte, error) {
	body, err := marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("wire: encode %s: %w", msg.Type(), err)
	}
	return appendFrame(make([]byte, 0, HeaderLen+len(body)), byte(msg.Type()), body), nil
}

func appendFrame(dst []byte, t byte, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	dst = append(dst, t)
	return append(dst, body...)
}

// Write writes msg's frame to w.
func Write(w io.Writer, msg Message) error {
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
// frame are *Error (CodeUnknownType, CodeTooLarge, CodeMalformed for a
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
	if n > int64(limit) {
		return t, 0, Errorf(CodeTooLarge, "%s of %d bytes, limit %d", t, n, limit)
	}
	return t, int(n), nil
}

// ReadBody reads the n-byte body of a frame of type t whose header
// ReadHeader checked. Its buffer grows only as bytes arrive, so that a
// lying length costs the liar, not the reader.
func ReadBody(r io.Reader, t Type, n int) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(min(n, 64<<10))
	if got, err := io.CopyN(&buf, r, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errorf(CodeMalformed, "truncated %s: %d of %d bytes", t, got, n)
		}
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decode decodes a body of type t (as returned by ReadFrame) and validates
// the message. Errors are *Error.
func Decode(t Type, body []byte) (Message, error) {
	msg := New(t)
	if msg == nil {
		return nil, Errorf(CodeUnknownType, "message type %d", t)
	}
	if err := unmarshal(body, msg); err != nil {
		return nil, err
	}
	if err := msg.Validate(); err != nil {
		return nil, err
	}
	return msg, nil
}

// Read reads, decodes and validates one message from r.
func Read(r io.Reader, l Limits) (Message, error) {
	t, body, err := ReadFrame(r, l)
	if err != nil {
		return nil, err
	}
	return Decode(t, body)
}
