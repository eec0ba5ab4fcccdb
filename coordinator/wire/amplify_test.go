package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The bound of invariant 4: decoding a body (Decode: the pre-check,
// msgpack and Validate) allocates at most allocPerByte times its frame's
// size plus allocSlack. The worst element is a Share of SecAggUnmask: 19
// bytes on the wire (the smallest valid one), about 190 in Go, because
// msgpack allocates each slice twice and reflect a header for each.
const (
	allocPerByte = AllocPerByte
	allocSlack   = AllocSlack
)

// requestBound is the tighter bound of a request type, which a node
// reserves from its memory budget before reading the body.
func requestBound(typ Type, frame int) int {
	if typ == TypeUpload || typ == TypeSecAggMasked {
		return VectorAllocPerByte*frame + RequestAllocSlack
	}
	return AllocPerByte*frame + RequestAllocSlack
}

// TestDecodeAllocBound decodes the worst bodies of every message type
// (adversarialBodies) and fails when one allocates more than the bound.
// go test -run TestDecodeAllocBound -v ./coordinator/wire prints the worst
// ratio of each type.
func TestDecodeAllocBound(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures allocation of large bodies, without -race")
	}
	for i := range 256 {
		typ := Type(i)
		if New(typ) == nil {
			continue
		}
		bodies := adversarialBodies(t, typ)
		worst := worstRatio(typ, bodies, decodeAlloc, func(b namedBody, frame, alloc int) {
			t.Errorf("%v %s: a %d-byte frame allocated %d bytes (%.1f×), bound %d× + %d", typ, b.name, frame, alloc, float64(alloc)/float64(frame), allocPerByte, allocSlack)
		})
		t.Logf("%-20v %3d bodies; worst: %-44s %8d-byte frame, %9d bytes allocated, %5.2f×", typ, len(bodies), worst.name, worst.frame, worst.alloc, worst.ratio)
		if typ.Direction() != Requests {
			continue
		}
		for _, b := range bodies {
			frame := HeaderLen + len(b.body)
			if a := decodeAlloc(typ, b.body); a > requestBound(typ, frame) {
				t.Errorf("%v %s: a %d-byte frame allocated %d bytes, over the request bound %d", typ, b.name, frame, a, requestBound(typ, frame))
			}
		}
	}
}

// TestDecodeAllocBoundCatches: without the shape check (Check alone, as
// before it), the bodies of TestDecodeAllocBound break the bound for the
// types with arrays of structs, so the test catches the check's removal.
func TestDecodeAllocBoundCatches(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures allocation of large bodies, without -race")
	}
	unchecked := func(typ Type, body []byte) int {
		return measureAlloc(func() {
			m := New(typ)
			if Check(body) != nil {
				return
			}
			if msgpack.NewDecoder(bytes.NewReader(body)).Decode(m) == nil {
				m.Validate()
			}
		})
	}
	for _, typ := range []Type{TypeSecAggPeerKeys, TypeSecAggShares, TypeSecAggDelivery, TypeSecAggUnmask} {
		broken := false
		worst := worstRatio(typ, adversarialBodies(t, typ), unchecked, func(namedBody, int, int) { broken = true })
		if !broken {
			t.Errorf("%v without the shape check: worst %s, %.1f×, within the bound", typ, worst.name, worst.ratio)
		}
		t.Logf("%-20v without the shape check: worst %-44s %8d-byte frame, %9d bytes allocated, %5.2f×", typ, worst.name, worst.frame, worst.alloc, worst.ratio)
	}
}

type ratio struct {
	name         string
	frame, alloc int
	ratio        float64
}

// worstRatio measures every body with alloc, calls over for each above
// the bound and returns the worst ratio of allocation to frame size among
// frames of at least 4 KiB (below, the fixed cost of a decode dominates).
func worstRatio(typ Type, bodies []namedBody, alloc func(Type, []byte) int, over func(b namedBody, frame, alloc int)) ratio {
	var worst ratio
	for _, b := range bodies {
		frame := HeaderLen + len(b.body)
		a := alloc(typ, b.body)
		if a > allocPerByte*frame+allocSlack {
			over(b, frame, a)
		}
		if r := float64(a) / float64(frame); worst.name == "" || frame >= 4<<10 && (r > worst.ratio || worst.frame < 4<<10) {
			worst = ratio{b.name, frame, a, r}
		}
	}
	return worst
}

// decodeAlloc returns the bytes Decode(t, body) allocates.
func decodeAlloc(t Type, body []byte) int {
	return measureAlloc(func() { Decode(t, body) })
}

// measureAlloc returns the bytes f allocates, the mean of a few runs
// after a first one (which fills the shapes and msgpack's type caches).
func measureAlloc(f func()) int {
	const runs = 4
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return int(after.TotalAlloc-before.TotalAlloc) / runs
}

type namedBody struct {
	name string
	body []byte
}

// adversarialBodies returns, for type t, bodies up to its size limit (at
// most 1 MiB) that maximise what decoding allocates per byte, derived from
// its shape so that a new type or field gets them too: each array at its
// most elements, of the smallest elements the pre-check lets through (nil,
// empty maps, padded to the minimum size, or elements whose own arrays are
// full), every struct field present, the largest string or bin in each
// field, the deepest nesting under unknown keys, and the samples.
func adversarialBodies(t *testing.T, typ Type) []namedBody {
	s, err := shapeFor(New(typ))
	if err != nil {
		t.Fatal(err)
	}
	budget := min(Limits{}.MaxBody(typ), 1<<20) - 64
	var out []namedBody
	add := func(name string, b []byte) {
		if len(b) <= budget+64 {
			out = append(out, namedBody{name, b})
		}
	}
	for name, m := range sampleMessages() {
		if m.Type() == typ {
			b, _ := marshal(m)
			add("sample "+name, b)
		}
	}
	// Every field present, arrays full of the given elements.
	for _, mode := range []elemMode{elemNil, elemEmpty, elemPadded, elemFull} {
		add("all fields, elements "+mode.String(), fill(s, mode, budget))
	}
	// One array alone, at a time.
	for _, key := range sortedKeys(s) {
		f := s.fields[key].shape
		if f.kind == shapeArray || f.kind == shapeStruct {
			for _, mode := range []elemMode{elemNil, elemEmpty, elemPadded, elemFull} {
				add(fmt.Sprintf("%s alone, elements %v", key, mode), entries([][2][]byte{{str(key), fill(f, mode, budget-len(key)-8)}}))
			}
		}
		// The largest string or bin the field can carry.
		if f.kind == shapeScalar {
			n := (budget - len(key) - 8) &^ 7 // a whole Vec
			add(key+" largest bin", entries([][2][]byte{{str(key), append(binary.BigEndian.AppendUint32([]byte{0xc6}, uint32(n)), make([]byte, n)...)}}))
			add(key+" largest str", entries([][2][]byte{{str(key), append(binary.BigEndian.AppendUint32([]byte{0xdb}, uint32(n)), make([]byte, n)...)}}))
		}
	}
	// The deepest nesting, under unknown keys, as often as it fits.
	deep := append(bytes.Repeat([]byte{0x91}, MaxDepth-1), 0xc0)
	deepMap := append(bytes.Repeat([]byte{0x81, 0xa1, 'x'}, MaxDepth-1), 0x80)
	for name, v := range map[string][]byte{"deep arrays": deep, "deep maps": deepMap, "nil": {0xc0}, "empty map": {0x80}} {
		var es [][2][]byte
		for n := 0; n+len(v)+3 < budget && len(es) < 1<<16-1; n += len(v) + 3 {
			es = append(es, [2][]byte{str("_"), v})
		}
		add("unknown keys of "+name, entries(es))
	}
	return out
}

type elemMode uint8

const (
	elemNil    elemMode = iota // nil elements
	elemEmpty                  // empty maps, zero integers
	elemPadded                 // the smallest element padded to the minimum size
	elemFull                   // elements with every field, their arrays full
)

func (m elemMode) String() string {
	return [...]string{"nil", "empty", "padded", "full"}[m]
}

func sortedKeys(s *shape) []string {
	var keys []string
	for k := range s.fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fill encodes a value of shape s in at most budget bytes: structs with
// every field, arrays with as many elements (of mode) as fit.
func fill(s *shape, mode elemMode, budget int) []byte {
	switch s.kind {
	case shapeInt:
		return []byte{0x00}
	case shapeScalar, shapeAny:
		return []byte{0xc0}
	case shapeStruct:
		var es [][2][]byte
		left := budget - 3
		for _, k := range sortedKeys(s) {
			v := fill(s.fields[k].shape, mode, left/2)
			es = append(es, [2][]byte{str(k), v})
			left -= len(k) + 1 + len(v)
		}
		return entries(es)
	case shapeArray:
		var e []byte
		switch mode {
		case elemNil:
			e = []byte{0xc0}
		case elemEmpty:
			e = fill(&shape{kind: s.elem.kind}, mode, 0)
			if s.elem.kind == shapeStruct {
				e = []byte{0x80}
			}
		case elemPadded, elemFull:
			if s.elem.kind == shapeStruct && mode == elemPadded {
				e = []byte{0x80}
			} else {
				e = fill(s.elem, mode, budget/64)
			}
			e = pad(e, s.bound.minElem, s.elem.kind)
		}
		n := min(s.bound.max, (budget-5)/len(e))
		b := binary.BigEndian.AppendUint32([]byte{0xdd}, uint32(n))
		for range n {
			b = append(b, e...)
		}
		return b
	}
	panic("unknown shape")
}

// pad makes element e (of kind k) take at least n bytes, as few as it can.
func pad(e []byte, n int, k shapeKind) []byte {
	d := n - len(e)
	if d <= 0 {
		return e
	}
	switch k {
	case shapeStruct: // add an unknown key "_" holding a string
		es := decodeEntries(e)
		v := []byte{0xc0}
		if d > 3 {
			v = slices.Concat([]byte{0xd9, byte(d - 4)}, make([]byte, d-4))
			if d-3 <= 31 {
				v = slices.Concat([]byte{0xa0 | byte(d-3)}, make([]byte, d-3))
			}
		}
		return entries(append(es, [2][]byte{str("_"), v}))
	case shapeInt:
		return binary.BigEndian.AppendUint64([]byte{0xcf}, 0)
	}
	return str(string(make([]byte, n-1)))
}

// decodeEntries splits the fixmap or map16 entries encodes back up; only
// for maps entries wrote.
func decodeEntries(m []byte) [][2][]byte {
	var n, i int
	switch {
	case m[0]&0xf0 == 0x80:
		n, i = int(m[0]&0x0f), 1
	default:
		n, i = int(binary.BigEndian.Uint16(m[1:])), 3
	}
	var out [][2][]byte
	for range n {
		k, _ := skip(m, i, 0, nil)
		v, _ := skip(m, k, 0, nil)
		out = append(out, [2][]byte{m[i:k], m[k:v]})
		i = v
	}
	return out
}

func str(s string) []byte {
	if len(s) <= 31 {
		return append([]byte{0xa0 | byte(len(s))}, s...)
	}
	return append(binary.BigEndian.AppendUint32([]byte{0xdb}, uint32(len(s))), s...)
}

// entries encodes a map of the given keys and values.
func entries(es [][2][]byte) []byte {
	var b []byte
	if len(es) <= 15 {
		b = []byte{0x80 | byte(len(es))}
	} else {
		b = binary.BigEndian.AppendUint16([]byte{0xde}, uint16(len(es)))
	}
	for _, e := range es {
		b = append(append(b, e[0]...), e[1]...)
	}
	return b
}

// TestArrayBoundsBeforeDecode: an array one element over its bound is
// refused before msgpack allocates it.
func TestArrayBoundsBeforeDecode(t *testing.T) {
	if raceEnabled {
		t.Skip("measures allocation, without -race")
	}
	for i := range 256 {
		typ := Type(i)
		if New(typ) == nil {
			continue
		}
		s, err := shapeFor(New(typ))
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range sortedKeys(s) {
			f := s.fields[key].shape
			if f.kind != shapeArray {
				continue
			}
			over := *f
			over.bound.max++
			body := entries([][2][]byte{{str(key), fill(&over, elemPadded, 1<<30)}})
			if _, err := Decode(typ, body); CodeOf(err) != CodeMalformed {
				t.Errorf("Decode(%v with %d %s) = %v, want CodeMalformed", typ, over.bound.max, key, err)
			}
			if a := decodeAlloc(typ, body); a > 2<<10 {
				t.Errorf("Decode(%v with %d %s) allocated %d bytes before refusing it", typ, over.bound.max, key, a)
			}
		}
	}
}
