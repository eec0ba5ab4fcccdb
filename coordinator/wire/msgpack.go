package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

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

// unmarshal pre-checks b (Check) and decodes it into v. Unknown map keys
// are skipped, so that fields can be appended to a message.
func unmarshal(b []byte, v any) error {
	if err := Check(b); err != nil {
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
// (vmihailenco/msgpack issue 401).
func Check(b []byte) error {
	n, err := skip(b, 0, 0)
	if err != nil {
		return err
	}
	if n != len(b) {
		return Errorf(CodeMalformed, "msgpack: %d trailing bytes", len(b)-n)
	}
	return nil
}

func truncated(at int) error { return Errorf(CodeMalformed, "msgpack: truncated at byte %d", at) }

// skip returns the offset just past the value that starts at b[i].
func skip(b []byte, i, depth int) (int, error) {
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
	var elems uint64 // container elements (values) to skip
	switch {
	case c <= 0x7f || c >= 0xe0: // fixint
		return i, nil
	case c <= 0x8f: // fixmap
		elems = 2 * uint64(c&0x0f)
	case c <= 0x9f: // fixarray
		elems = uint64(c & 0x0f)
	case c <= 0xbf: // fixstr
		return need(uint64(c & 0x1f))
	default:
		switch c {
		case 0xc0, 0xc2, 0xc3: // nil, false, true
			return i, nil
		case 0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb: // bin, str
			k := 1 << (c - 0xc4) // bin8, bin16, bin32
			if c >= 0xd9 {
				k = 1 << (c - 0xd9) // str8, str16, str32
			}
			n, err := size(int(k))
			if err != nil {
				return 0, err
			}
			return need(n)
		case 0xca, 0xd2, 0xce: // float32, int32, uint32
			return need(4)
		case 0xcb, 0xd3, 0xcf: // float64, int64, uint64
			return need(8)
		case 0xcc, 0xd0: // uint8, int8
			return need(1)
		case 0xcd, 0xd1: // uint16, int16
			return need(2)
		case 0xdc, 0xdd: // array16, array32
			n, err := size(2 + 2*int(c-0xdc))
			if err != nil {
				return 0, err
			}
			elems = n
		case 0xde, 0xdf: // map16, map32
			n, err := size(2 + 2*int(c-0xde))
			if err != nil {
				return 0, err
			}
			elems = 2 * n
		default: // 0xc1 (never used) and the extension types
			return 0, Errorf(CodeMalformed, "msgpack: type byte 0x%02x at byte %d not allowed", c, i-1)
		}
	}
	// Every element takes at least one byte.
	if _, err := need(elems); err != nil {
		return 0, err
	}
	if elems > 0 && depth+1 > MaxDepth {
		return 0, Errorf(CodeMalformed, "msgpack: nesting deeper than %d", MaxDepth)
	}
	for range elems {
		var err error
		if i, err = skip(b, i, depth+1); err != nil {
			return 0, err
		}
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
	if err := enc.EncodeBytesLen(8 * len(v)); err != nil {
		return err
	}
	var buf [4096]byte
	for len(v) > 0 {
		n := min(len(v), len(buf)/8)
		for k, x := range v[:n] {
			binary.LittleEndian.PutUint64(buf[8*k:], math.Float64bits(x))
		}
		if _, err := enc.Writer().Write(buf[:8*n]); err != nil {
			return err
		}
		v = v[n:]
	}
	return nil
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (v *Vec) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeBytesLen()
	if err != nil {
		return err
	}
	if n < 0 { // nil
		*v = nil
		return nil
	}
	if n%8 != 0 {
		return fmt.Errorf("vector of %d bytes is not a whole number of float64s", n)
	}
	out := make([]float64, n/8)
	var buf [4096]byte
	for k := 0; k < len(out); {
		m := min(len(out)-k, len(buf)/8)
		if err := dec.ReadFull(buf[:8*m]); err != nil {
			return err
		}
		for j := range m {
			out[k+j] = math.Float64frombits(binary.LittleEndian.Uint64(buf[8*j:]))
		}
		k += m
	}
	*v = out
	return nil
}

// firstNonFinite returns the index of the first NaN or ±Inf in xs, or -1.
func firstNonFinite(xs []float64) int {
	for i, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return i
		}
	}
	return -1
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
