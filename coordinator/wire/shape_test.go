package wire

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestShapes: everything wire decodes has a shape, so every array of every
// message, command and record has a bound in arrayBounds, and every bound
// is used.
func TestShapes(t *testing.T) {
	used := map[string]bool{}
	var walk func(s *shape)
	seen := map[*shape]bool{}
	walk = func(s *shape) {
		if seen[s] {
			return
		}
		seen[s] = true
		switch s.kind {
		case shapeArray:
			used[s.name] = true
			walk(s.elem)
		case shapeStruct:
			for _, f := range s.fields {
				walk(f.shape)
			}
		}
	}
	for _, v := range decodedTypes() {
		s, err := shapeFor(v)
		if err != nil {
			t.Errorf("shapeFor(%T) = %v", v, err)
			continue
		}
		walk(s)
	}
	for name := range arrayBounds {
		if !used[name] {
			t.Errorf("arrayBounds[%q] bounds no field", name)
		}
	}
}

// A type with an unbounded array cannot be decoded at all.
func TestShapeUnbounded(t *testing.T) {
	type unbounded struct {
		IDs []uint32 `msgpack:"ids"`
	}
	if _, err := shapeOf(reflect.TypeFor[unbounded]()); err == nil {
		t.Error("shapeOf(struct with an unbounded array) = nil error")
	}
	var v unbounded
	if err := unmarshal([]byte{0x80}, &v); CodeOf(err) != CodeInternal {
		t.Errorf("unmarshal into an unbounded array = %v, want CodeInternal", err)
	}
}

// TestTypeTables: every message type has a name and a direction.
func TestTypeTables(t *testing.T) {
	for i := range 256 {
		typ := Type(i)
		if New(typ) == nil {
			if typ.Direction() != 0 {
				t.Errorf("unknown %v has direction %v", typ, typ.Direction())
			}
			continue
		}
		if d := typ.Direction(); d != Requests && d != Replies {
			t.Errorf("%v.Direction() = %v, want Requests or Replies", typ, d)
		}
		if int(typ) >= len(typeNames) || typeNames[typ] == "" {
			t.Errorf("type %d has no name", i)
		}
	}
}

// TestReadHeaderDirection: a reader that accepts one direction refuses the
// other's types from the header, without reading their body.
func TestReadHeaderDirection(t *testing.T) {
	for i := range 256 {
		typ := Type(i)
		if New(typ) == nil {
			continue
		}
		for _, only := range []Direction{Requests, Replies} {
			// A header declaring a 16 KiB body that never comes.
			hdr := binary.BigEndian.AppendUint32(nil, smallBody)
			hdr = append(hdr, byte(typ))
			_, _, err := ReadHeader(bytes.NewReader(hdr), Limits{Only: only})
			if typ.Direction() == only {
				if err != nil {
					t.Errorf("ReadHeader(%v, only %v) = %v", typ, only, err)
				}
			} else if CodeOf(err) != CodeUnknownType {
				t.Errorf("ReadHeader(%v, only %v) = %v, want CodeUnknownType", typ, only, err)
			}
		}
	}
}

// TestIntRange: an integer that does not fit its field is refused, never
// narrowed: protocol version 65537 is not 1, -1 is not 65535.
func TestIntRange(t *testing.T) {
	// checkIn encodes a CheckIn whose version is the msgpack integer v.
	checkIn := func(v []byte) []byte {
		b := []byte{0x82, 0xa1, 'v'}
		b = append(b, v...)
		return append(b, 0xa6, 'c', 'l', 'i', 'e', 'n', 't', 0xa1, 'c')
	}
	tests := []struct {
		name string
		v    []byte
		code Code // 0: accepted
	}{
		{"1", []byte{0x01}, 0},
		{"uint16 1", []byte{0xcd, 0, 1}, 0},
		{"uint64 1", []byte{0xcf, 0, 0, 0, 0, 0, 0, 0, 1}, 0},
		{"65535", []byte{0xcd, 0xff, 0xff}, CodeVersion},
		{"65537", []byte{0xce, 0, 1, 0, 1}, CodeMalformed},
		{"2^32+1", []byte{0xcf, 0, 0, 0, 1, 0, 0, 0, 1}, CodeMalformed},
		{"-1", []byte{0xff}, CodeMalformed},
		{"int16 -65535", []byte{0xd1, 0x80, 0x01}, CodeMalformed},
		{"int64 -65535", []byte{0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 1}, CodeMalformed},
		{"float 1", []byte{0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}, CodeMalformed},
		{"string", []byte{0xa1, '1'}, CodeMalformed},
		{"array", []byte{0x91, 0x01}, CodeMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(TypeCheckIn, checkIn(tc.v))
			if CodeOf(err) != tc.code {
				t.Errorf("Decode(CheckIn version %s) = %v, want code %v", tc.name, err, tc.code)
			}
		})
	}
	// Every width and sign, at both ends of its range.
	type ints struct {
		I8  int8   `msgpack:"i8"`
		I16 int16  `msgpack:"i16"`
		I32 int32  `msgpack:"i32"`
		I64 int64  `msgpack:"i64"`
		U8  uint8  `msgpack:"u8"`
		U16 uint16 `msgpack:"u16"`
		U32 uint32 `msgpack:"u32"`
		U64 uint64 `msgpack:"u64"`
	}
	enc := func(key string, v any) []byte {
		b, err := marshal(map[string]any{key: v})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		key     string
		ok, bad []any
	}{
		{"i8", []any{-128, 127}, []any{-129, 128}},
		{"i16", []any{-1 << 15, 1<<15 - 1}, []any{-1<<15 - 1, 1 << 15}},
		{"i32", []any{-1 << 31, 1<<31 - 1}, []any{-1<<31 - 1, 1 << 31}},
		{"i64", []any{int64(-1 << 63), int64(1<<63 - 1)}, []any{uint64(1 << 63)}},
		{"u8", []any{0, 255}, []any{-1, 256}},
		{"u16", []any{0, 65535}, []any{-1, 65536}},
		{"u32", []any{0, uint32(1<<32 - 1)}, []any{-1, 1 << 32}},
		{"u64", []any{0, uint64(1<<64 - 1)}, []any{-1, int64(-1 << 63)}},
	} {
		for _, v := range tc.ok {
			var got ints
			if err := unmarshal(enc(tc.key, v), &got); err != nil {
				t.Errorf("unmarshal(%s: %v) = %v", tc.key, v, err)
			}
		}
		for _, v := range tc.bad {
			var got ints
			if err := unmarshal(enc(tc.key, v), &got); CodeOf(err) != CodeMalformed {
				t.Errorf("unmarshal(%s: %v) = %v (%+v), want CodeMalformed", tc.key, v, err, got)
			}
		}
	}
}

// TestShapeRefuses: what the shape check refuses before msgpack decodes
// (its errors name the field), each body otherwise valid or decodable.
func TestShapeRefuses(t *testing.T) {
	client := []byte{0xa6, 'c', 'l', 'i', 'e', 'n', 't', 0xa1, 'c'}
	tests := []struct {
		name string
		t    Type
		body []byte
		want string
	}{
		{"duplicate key", TypeCheckIn, slices.Concat([]byte{0x83, 0xa1, 'v', 0x01}, client, []byte{0xa1, 'v', 0x01}), `CheckIn: key "v" twice`},
		{"struct as array", TypeCheckIn, []byte{0x92, 0x01, 0xa1, 'c'}, "CheckIn: an array"},
		{"array in a scalar field", TypeCheckIn, []byte{0x81, 0xa6, 'c', 'l', 'i', 'e', 'n', 't', 0x91, 0xa1, 'c'}, "CheckIn.client: an array"},
		{"map in a bin field", TypeUpload, []byte{0x81, 0xa6, 't', 'i', 'c', 'k', 'e', 't', 0x80}, "Upload.ticket: a map"},
		{"integer key", TypeCheckIn, []byte{0x81, 0x01, 0x01}, "CheckIn: key at byte 1"},
		{"array too long", TypeSecAggUnmaskRequest, append([]byte{0x81, 0xa9, 's', 'u', 'r', 'v', 'i', 'v', 'o', 'r', 's', 0xdc, 0x10, 0x01}, make([]byte, MaxSecAggPeers+1)...), "SecAggUnmaskRequest.survivors: 4097 elements, limit 4096"},
		{"element too short", TypeSecAggPeerKeys, []byte{0x81, 0xa5, 'p', 'e', 'e', 'r', 's', 0x91, 0xc0}, "SecAggPeerKeys.peers: element of 1 bytes"},
		{"map for an array", TypeSecAggPeerKeys, []byte{0x81, 0xa5, 'p', 'e', 'e', 'r', 's', 0x80}, "SecAggPeerKeys.peers: a map"},
	}
	for _, tc := range tests {
		_, err := Decode(tc.t, tc.body)
		if CodeOf(err) != CodeMalformed || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%s) = %v, want CodeMalformed: %s", tc.name, err, tc.want)
		}
	}
	// Unknown keys may repeat and hold anything: they are skipped.
	body := []byte{0x84, 0xa1, 'v', 0x01, 0xa6, 'c', 'l', 'i', 'e', 'n', 't', 0xa1, 'c', 0xa1, 'x', 0x91, 0x80, 0xa1, 'x', 0x80}
	if _, err := Decode(TypeCheckIn, body); err != nil {
		t.Errorf("Decode(CheckIn with unknown keys) = %v", err)
	}
}
