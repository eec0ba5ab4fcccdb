package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// MaxDepth bounds the nesting of msgpack containers in anything we decode.
// Our messages nest at most three deep; deep nesting is only ever an attack
// on the decoder's stack.
const MaxDepth = 16

// marshal encodes v with the one msgpack configuration of fedrec: structs as
// maps keyed by their msgpack tags in declaration order, integers in their
// smallest form, floats as float64. The output is deterministic.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := marshalTo(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// marshalTo appends v's encoding to buf.
func marshalTo(buf *bytes.Buffer, v any) error {
	enc := msgpack.NewEncoder(buf)
	enc.UseCompactInts(true)
	return enc.Encode(v)
}

// unmarshal pre-checks b against the shape of v's type (check) and
// decodes it into v. Unknown map keys are skipped, so that fields can be
// appended to a message.
func unmarshal(b []byte, v any) error {
	s, err := shapeFor(v)
	if err != nil {
		return err
	}
	if err := check(b, s); err != nil {
		return err
	}
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return Errorf(CodeMalformed, "%v", err)
	}
	return nil
}

// Check is the structural pre-check run on untrusted msgpack bytes before
// any decode: b must hold exactly one msgpack value, every declared
// array, map, string and binary length must fit in the bytes actually
// present, containers may nest at most MaxDepth deep, and extension types
// (which we never send) are refused. Without it, a 5-byte message declaring
// a 4-billion-element array makes the decoder allocate gigabytes
// (vmihailenco/msgpack issue 401). Decoding also checks the body against
// its Go type's shape (see shape.go).
func Check(b []byte) error { return check(b, nil) }

// check is Check, and b's value must have shape s (nil: any shape).
func check(b []byte, s *shape) error {
	n, err := skip(b, 0, 0, s)
	if err != nil {
		return err
	}
	if n != len(b) {
		return Errorf(CodeMalformed, "msgpack: %d trailing bytes", len(b)-n)
	}
	return nil
}

func truncated(at int) error { return Errorf(CodeMalformed, "msgpack: truncated at byte %d", at) }

// skip returns the offset just past the value that starts at b[i], which
// must have shape s (nil or shapeAny: whatever Check accepts).
func skip(b []byte, i, depth int, s *shape) (int, error) {
	if i >= len(b) {
		return 0, truncated(i)
	}
	c := b[i]
	i++
	// need returns the offset after n more bytes, or an error.
	need := func(n uint64) (int, error) {
		if n > uint64(len(b)-i) {
			return 0, Errorf(CodeMalformed, "msgpack: length %d at byte %d exceeds the %d bytes left", n, i, len(b)-i)
		}
		return i + int(n), nil
	}
	// size reads a k-byte big-endian length.
	size := func(k int) (uint64, error) {
		if k > len(b)-i {
			return 0, truncated(i)
		}
		var n uint64
		for _, x := range b[i : i+k] {
			n = n<<8 | uint64(x)
		}
		i += k
		return n, nil
	}
	var n uint64   // array elements or map entries
	var isMap bool // a map, else an array (when container)
	scalar := func(end int, err error) (int, error) {
		if err != nil || s == nil {
			return end, err
		}
		switch s.kind {
		case shapeStruct, shapeArray:
			if c != 0xc0 { // nil is an empty struct or a nil slice
				return 0, Errorf(CodeMalformed, "msgpack: %s: type byte 0x%02x at byte %d, want %s", s.name, c, i-1, s.kind)
			}
		case shapeInt:
			if err := s.checkInt(b, i, c); err != nil {
				return 0, err
			}
		}
		return end, nil
	}
	switch {
	case c <= 0x7f || c >= 0xe0: // fixint
		return scalar(i, nil)
	case c <= 0x8f: // fixmap
		n, isMap = uint64(c&0x0f), true
	case c <= 0x9f: // fixarray
		n = uint64(c & 0x0f)
	case c <= 0xbf: // fixstr
		return scalar(need(uint64(c & 0x1f)))
	default:
		switch c {
		case 0xc0, 0xc2, 0xc3: // nil, false, true
			return scalar(i, nil)
		case 0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb: // bin, str
			k := 1 << (c - 0xc4) // bin8, bin16, bin32
			if c >= 0xd9 {
				k = 1 << (c - 0xd9) // str8, str16, str32
			}
			m, err := size(int(k))
			if err != nil {
				return 0, err
			}
			return scalar(need(m))
		case 0xca, 0xd2, 0xce: // float32, int32, uint32
			return scalar(need(4))
		case 0xcb, 0xd3, 0xcf: // float64, int64, uint64
			return scalar(need(8))
		case 0xcc, 0xd0: // uint8, int8
			return scalar(need(1))
		case 0xcd, 0xd1: // uint16, int16
			return scalar(need(2))
		case 0xdc, 0xdd: // array16, array32
			m, err := size(2 + 2*int(c-0xdc))
			if err != nil {
				return 0, err
			}
			n = m
		case 0xde, 0xdf: // map16, map32
			m, err := size(2 + 2*int(c-0xde))
			if err != nil {
				return 0, err
			}
			n, isMap = m, true
		default: // 0xc1 (never used) and the extension types
			return 0, Errorf(CodeMalformed, "msgpack: type byte 0x%02x at byte %d not allowed", c, i-1)
		}
	}
	elems := n
	if isMap {
		elems = 2 * n
	}
	// Every element takes at least one byte.
	if _, err := need(elems); err != nil {
		return 0, err
	}
	if elems > 0 && depth+1 > MaxDepth {
		return 0, Errorf(CodeMalformed, "msgpack: nesting deeper than %d", MaxDepth)
	}
	if s == nil || s.kind == shapeAny {
		for range elems {
			var err error
			if i, err = skip(b, i, depth+1, nil); err != nil {
				return 0, err
			}
		}
		return i, nil
	}
	switch {
	case s.kind == shapeStruct && isMap:
		return s.skipStruct(b, i, depth, n)
	case s.kind == shapeArray && !isMap:
		return s.skipArray(b, i, depth, n)
	}
	what := "an array"
	if isMap {
		what = "a map"
	}
	return 0, Errorf(CodeMalformed, "msgpack: %s: %s at byte %d, want %s", s.name, what, i-1, s.kind)
}

// skipStruct skips the n entries of a map decoded into a struct of shape
// s: keys are strings, a known key appears at most once and its value has
// its field's shape.
func (s *shape) skipStruct(b []byte, i, depth int, n uint64) (int, error) {
	var seen uint64
	for range n {
		if i >= len(b) {
			return 0, truncated(i)
		}
		c := b[i]
		var k, start int
		switch {
		case c >= 0xa0 && c <= 0xbf:
			k, start = int(c&0x1f), i+1
		case c == 0xd9 && i+1 < len(b):
			k, start = int(b[i+1]), i+2
		default: // our keys are short; msgpack would fail on others anyway
			return 0, Errorf(CodeMalformed, "msgpack: %s: key at byte %d is not a short string", s.name, i)
		}
		if k > len(b)-start {
			return 0, truncated(start)
		}
		f, known := s.fields[string(b[start:start+k])]
		i = start + k
		var fs *shape
		if known {
			if seen&(1<<f.index) != 0 {
				return 0, Errorf(CodeMalformed, "msgpack: %s: key %q twice", s.name, b[start:start+k])
			}
			seen |= 1 << f.index
			fs = f.shape
		}
		var err error
		if i, err = skip(b, i, depth+1, fs); err != nil {
			return 0, err
		}
	}
	return i, nil
}

// skipArray skips the n elements of an array of shape s: at most its
// bound's max, each taking at least its minElem bytes.
func (s *shape) skipArray(b []byte, i, depth int, n uint64) (int, error) {
	if n > uint64(s.bound.max) {
		return 0, Errorf(CodeMalformed, "msgpack: %s: %d elements, limit %d", s.name, n, s.bound.max)
	}
	for range n {
		j, err := skip(b, i, depth+1, s.elem)
		if err != nil {
			return 0, err
		}
		if j-i < s.bound.minElem {
			return 0, Errorf(CodeMalformed, "msgpack: %s: element of %d bytes at byte %d, minimum %d", s.name, j-i, i, s.bound.minElem)
		}
		i = j
	}
	return i, nil
}

// Vec is a float64 vector on the wire: one msgpack bin field of packed
// little-endian IEEE 754 doubles, 8 bytes per element. Decoding checks that
// the length is a multiple of 8; finiteness is checked by the message's
// Validate, so that NaN and Inf get their own error code.
type Vec []float64

// EncodeMsgpack implements msgpack.CustomEncoder.
func (v Vec) EncodeMsgpack(enc *msgpack.Encoder) error {
	return encodePacked(enc, v, 8, func(b []byte, xs []float64) {
		for k, x := range xs {
			binary.LittleEndian.PutUint64(b[8*k:], math.Float64bits(x))
		}
	})
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (v *Vec) DecodeMsgpack(dec *msgpack.Decoder) (err error) {
	*v, err = decodePacked(dec, *v, 8, "float64s", func(xs []float64, b []byte) {
		for k := range xs {
			xs[k] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*k:]))
		}
	})
	return err
}

// Vec32 is a float32 vector on the wire: one msgpack bin field of packed
// little-endian IEEE 754 singles, 4 bytes per element, as Vec.
type Vec32 []float32

// Vec32Of returns x rounded to float32 (a value beyond float32's range
// becomes an infinity, which the receiver refuses).
func Vec32Of(x []float64) Vec32 {
	v := make(Vec32, len(x))
	for i, y := range x {
		v[i] = float32(y)
	}
	return v
}

// Float64s returns v widened to float64, exactly.
func (v Vec32) Float64s() []float64 {
	x := make([]float64, len(v))
	for i, y := range v {
		x[i] = float64(y)
	}
	return x
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (v Vec32) EncodeMsgpack(enc *msgpack.Encoder) error {
	return encodePacked(enc, v, 4, func(b []byte, xs []float32) {
		for k, x := range xs {
			binary.LittleEndian.PutUint32(b[4*k:], math.Float32bits(x))
		}
	})
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (v *Vec32) DecodeMsgpack(dec *msgpack.Decoder) (err error) {
	*v, err = decodePacked(dec, *v, 4, "float32s", func(xs []float32, b []byte) {
		for k := range xs {
			xs[k] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*k:]))
		}
	})
	return err
}

// encodePacked writes v as one bin of width bytes per element, through a
// small buffer that put fills from a block of v (a call per block, not per
// element: a model's chunk has 65,536).
func encodePacked[T any](enc *msgpack.Encoder, v []T, width int, put func([]byte, []T)) error {
	if err := enc.EncodeBytesLen(width * len(v)); err != nil {
		return err
	}
	var buf [4096]byte
	for len(v) > 0 {
		n := min(len(v), len(buf)/width)
		put(buf[:width*n], v[:n])
		if _, err := enc.Writer().Write(buf[:width*n]); err != nil {
			return err
		}
		v = v[n:]
	}
	return nil
}

// decodePacked reads a bin of width bytes per element (nil for a nil bin),
// refusing a length that is not a whole number of them. An empty but
// non-nil reuse with room receives the elements (ExchangeStream decodes
// every chunk of a model into one); otherwise they get a new slice, so
// that decoding never writes through a slice a message was built with.
// get converts a block of elements.
func decodePacked[T any](dec *msgpack.Decoder, reuse []T, width int, what string, get func([]T, []byte)) ([]T, error) {
	n, err := dec.DecodeBytesLen()
	if err != nil || n < 0 { // n < 0: nil
		return nil, err
	}
	if n%width != 0 {
		return nil, fmt.Errorf("vector of %d bytes is not a whole number of %s", n, what)
	}
	var out []T
	if reuse != nil && len(reuse) == 0 && cap(reuse) >= n/width {
		out = reuse[:n/width]
	} else {
		out = make([]T, n/width)
	}
	if littleEndian() {
		// The wire's bytes are the machine's: read them straight into
		// out, with no conversion (WebAssembly's would assemble each
		// value a byte at a time).
		if err := dec.ReadFull(packedBytes(out)); err != nil {
			return nil, err
		}
		return out, nil
	}
	var buf [4096]byte
	for k := 0; k < len(out); {
		m := min(len(out)-k, len(buf)/width)
		if err := dec.ReadFull(buf[:width*m]); err != nil {
			return nil, err
		}
		get(out[k:k+m], buf[:width*m])
		k += m
	}
	return out, nil
}

// littleEndian reports whether the machine stores a number as its
// little-endian bytes, as the wire's packed vectors carry it: amd64,
// arm64, wasm and the other usual targets do.
func littleEndian() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

// packedBytes returns the memory of v as bytes: on a little-endian
// machine, v's packed wire bytes. Its length comes from T itself, never
// from a caller's width, so it cannot reach past v.
func packedBytes[T any](v []T) []byte {
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), int(unsafe.Sizeof(zero))*len(v))
}

// firstNonFinite32 is model.FirstNonFinite of float32s.
func firstNonFinite32(xs []float32) int {
	for i, x := range xs {
		if !finite32(x) {
			return i
		}
	}
	return -1
}

// finite32 reports whether x is neither NaN nor ±Inf: its exponent is not
// all ones. One test on its bits, where finite's makes three.
func finite32(x float32) bool { return math.Float32bits(x)&0x7f800000 != 0x7f800000 }

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
