package wire

import (
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/vmihailenco/msgpack/v5"
)

// The pre-check (invariant 4) knows the shape of what it lets through.
// Check alone bounds every declared length by the bytes present, but an
// array element of one byte (nil) still becomes a whole Go struct: a
// []SecAggKeys of a million nils is 200 MiB from a 1 MiB body. So every
// decode checks the body against the shape of its Go type before msgpack
// sees it: each array field has a bound in arrayBounds (its most elements
// and the fewest bytes one element may take), a struct is a map whose
// known keys appear at most once, and an integer must fit its field.

// An arrayBound bounds one array field.
type arrayBound struct {
	// max is the most elements the array may hold.
	max int
	// minElem is the fewest bytes an element may take on the wire, so
	// that the Go value of an element (twice its size: msgpack allocates
	// a slice twice) costs at most a few times the bytes that carry it.
	minElem int
}

// arrayBounds bounds every array field of every message, command and
// record, keyed by the Go type that holds the field and its msgpack key.
// A field without an entry makes every decode into its type fail
// (CodeInternal), and TestShapes fails for it: add the bound with the
// field. The minimum sizes are below the smallest valid element.
var arrayBounds = map[string]arrayBound{
	// A SecAggKeys is 104 bytes in Go; a valid one carries three 32-byte
	// keys (> 140 bytes).
	"SecAggPeerKeys.peers": {MaxSecAggPeers, 64},
	// A SealedShare is 32 bytes; a valid one carries SealedShareLen bytes.
	"SecAggShares.shares":   {MaxSecAggPeers, 16},
	"SecAggDelivery.shares": {MaxSecAggPeers, 16},
	// Peer ids: 4 bytes in Go, at least 1 on the wire.
	"SecAggUnmaskRequest.survivors": {MaxSecAggPeers, 1},
	"SecAggUnmaskRequest.dropped":   {MaxSecAggPeers, 1},
	// A Share is 32 bytes plus its ShareLen words (2·8·5 bytes); a valid
	// one takes at least 19 bytes ({"peer": 0, "value": [5 fixints]}).
	"SecAggUnmask.self_mask_shares": {MaxSecAggPeers, 19},
	"SecAggUnmask.mask_key_shares":  {MaxSecAggPeers, 19},
	"Share.value":                   {secagg.ShareLen, 1},
	// A SecAggTag is 32 bytes in Go; a valid one takes at least 45
	// ({"peer": 0, "tag": TagLen bytes}).
	"SecAggUnmaskRequest.tags": {MaxSecAggPeers, 40},
	"SecAggCheck.tags":         {MaxSecAggPeers, 40},
	// The survivor set to confirm: ids of 4 bytes in Go, 1 on the wire.
	"SecAggCheckRequest.survivors": {secagg.MaxClients, 1},
	// A cohort's client ids: 16-byte string headers, each id at least one
	// byte (checkID), so two on the wire. Cohorts are only bounded by the
	// configuration, and a committed command that does not decode stops
	// the node, so the count bound is generous.
	"OpenRound.cohort": {maxCohort, 2},
	// A signed round's cohort in its Plan: one id per secure-aggregation
	// client.
	"Plan.cohort": {MaxSignedCohort, 2},
	// The devices a node holds for a round, and each node's share of a
	// round's cohort in its manifest (a RoundGroup is 40 bytes in Go and
	// takes at least 16 on the wire: three keys and a one-byte id).
	"Selected.clients": {MaxSelect, 2},
	"OpenRound.groups": {1 << 12, 16},
	// A roster path: 32-byte hashes, 24 bytes in Go, 34 on the wire.
	"RosterCredential.path": {MaxRosterPath, 34},
	// A roster's entries: 56 bytes in Go; a valid one takes at least 40
	// on the wire (four keys, a one-byte id, a key, two times).
	"RosterFile.entries": {MaxRosterSize, 40},
	// A device's remembered coordinators: an AddrState is 40 bytes in Go
	// and takes at least one byte (an empty map) in its file.
	"ClientState.addrs": {MaxStateAddrs, 1},
}

// maxCohort bounds a round's cohort (OpenRound.Cohort,
// SecAggParams.Cohort).
const maxCohort = 1 << 24

// shapeKind is what a shape accepts.
type shapeKind uint8

const (
	shapeAny    shapeKind = iota // whatever Check accepts (interfaces)
	shapeScalar                  // no array or map: bool, float, string, bin (and Vec)
	shapeInt                     // an integer that fits the field (or nil, which is 0)
	shapeStruct                  // a map, each known key at most once (or nil)
	shapeArray                   // an array within its bound (or nil)
)

// A shape is what the pre-check accepts where a value of one Go type is
// decoded.
type shape struct {
	kind shapeKind
	name string // for errors: "SecAggPeerKeys.peers[]"
	// shapeInt: the range of the field.
	signed bool
	bits   int
	// shapeStruct: the fields by msgpack key.
	fields map[string]field
	// shapeArray: the element's shape and the array's bound.
	elem  *shape
	bound arrayBound
}

type field struct {
	index int // bit in the duplicate-key mask
	shape *shape
}

var customDecoder = reflect.TypeFor[msgpack.CustomDecoder]()

// shapeOf derives the shape of t from its msgpack tags and arrayBounds.
func shapeOf(t reflect.Type) (*shape, error) {
	return buildShape(t, t.String(), map[reflect.Type]*shape{})
}

func buildShape(t reflect.Type, name string, seen map[reflect.Type]*shape) (*shape, error) {
	if reflect.PointerTo(t).Implements(customDecoder) {
		return &shape{kind: shapeScalar, name: name}, nil // Vec reads one bin
	}
	switch t.Kind() {
	case reflect.Pointer:
		return buildShape(t.Elem(), name, seen)
	case reflect.Interface:
		return &shape{kind: shapeAny, name: name}, nil
	case reflect.Bool, reflect.Float32, reflect.Float64, reflect.String:
		return &shape{kind: shapeScalar, name: name}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &shape{kind: shapeInt, name: name, signed: true, bits: t.Bits()}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &shape{kind: shapeInt, name: name, bits: t.Bits()}, nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return &shape{kind: shapeScalar, name: name}, nil // bin
		}
		return nil, fmt.Errorf("array %s has no bound in arrayBounds", name)
	case reflect.Struct:
		if s, ok := seen[t]; ok {
			return s, nil
		}
		s := &shape{kind: shapeStruct, name: t.Name(), fields: map[string]field{}}
		seen[t] = s
		if err := addFields(s, t, seen); err != nil {
			return nil, err
		}
		if len(s.fields) > 64 {
			return nil, fmt.Errorf("%s has more than 64 fields", t)
		}
		return s, nil
	}
	return nil, fmt.Errorf("%s: %s cannot be decoded from untrusted bytes", name, t)
}

// addFields adds t's fields to s, inlining embedded structs as msgpack
// does.
func addFields(s *shape, t reflect.Type, seen map[reflect.Type]*shape) error {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
		if tag == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			if !strings.Contains(opts, "inline") {
				return fmt.Errorf("%s: embedded %s without ,inline", t, f.Type)
			}
			if err := addFields(s, f.Type, seen); err != nil {
				return err
			}
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		name := t.Name() + "." + tag
		var fs *shape
		var err error
		if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() != reflect.Uint8 && !reflect.PointerTo(f.Type).Implements(customDecoder) {
			b, ok := arrayBounds[name]
			if !ok {
				return fmt.Errorf("array %s has no bound in arrayBounds", name)
			}
			elem, err := buildShape(f.Type.Elem(), name+"[]", seen)
			if err != nil {
				return err
			}
			fs = &shape{kind: shapeArray, name: name, elem: elem, bound: b}
		} else if fs, err = buildShape(f.Type, name, seen); err != nil {
			return err
		}
		if _, dup := s.fields[tag]; dup {
			return fmt.Errorf("%s: two fields with key %q", t, tag)
		}
		s.fields[tag] = field{index: len(s.fields), shape: fs}
	}
	return nil
}

// decodedTypes returns an empty value of everything wire decodes.
func decodedTypes() []any {
	var out []any
	for t := range 256 {
		if m := New(Type(t)); m != nil {
			out = append(out, m)
		}
		if c := newCommand(CommandType(t)); c != nil {
			out = append(out, c)
		}
		if r := newRecord(RecordType(t)); r != nil {
			out = append(out, r)
		}
	}
	// The files a device keeps (client_state.go), and the roster's
	// credential and file (roster.go).
	return append(out, new(ClientState), new(StoreAnchor), new(RosterCredential), new(RosterFile))
}

type shapeResult struct {
	s   *shape
	err error
}

// shapes holds the shape of every message, command and record, derived
// once.
var shapes = sync.OnceValue(func() map[reflect.Type]shapeResult {
	m := map[reflect.Type]shapeResult{}
	for _, v := range decodedTypes() {
		t := reflect.TypeOf(v)
		s, err := shapeOf(t)
		m[t] = shapeResult{s, err}
	}
	return m
})

// shapeFor returns the shape that bodies decoded into v must have.
func shapeFor(v any) (*shape, error) {
	t := reflect.TypeOf(v)
	r, ok := shapes()[t]
	if !ok {
		r.s, r.err = shapeOf(t)
	}
	if r.err != nil {
		return nil, Errorf(CodeInternal, "wire: %v", r.err)
	}
	return r.s, nil
}

// intValue reads the integer whose type byte is c and whose payload
// starts at b[i], which Check's caller has bounded.
func intValue(b []byte, i int, c byte) (neg bool, mag uint64, ok bool) {
	be := func(k int) uint64 {
		var n uint64
		for _, x := range b[i : i+k] {
			n = n<<8 | uint64(x)
		}
		return n
	}
	var v int64
	switch {
	case c <= 0x7f:
		return false, uint64(c), true
	case c >= 0xe0:
		v = int64(int8(c))
	case c == 0xc0: // nil decodes as 0
		return false, 0, true
	case c == 0xcc:
		return false, be(1), true
	case c == 0xcd:
		return false, be(2), true
	case c == 0xce:
		return false, be(4), true
	case c == 0xcf:
		return false, be(8), true
	case c == 0xd0:
		v = int64(int8(be(1)))
	case c == 0xd1:
		v = int64(int16(be(2)))
	case c == 0xd2:
		v = int64(int32(be(4)))
	case c == 0xd3:
		v = int64(be(8))
	default:
		return false, 0, false
	}
	if v < 0 {
		return true, uint64(-(v + 1)) + 1, true
	}
	return false, uint64(v), true
}

// checkInt checks that the integer at b[i] (type byte c) fits s.
func (s *shape) checkInt(b []byte, i int, c byte) error {
	neg, mag, ok := intValue(b, i, c)
	if !ok {
		return Errorf(CodeMalformed, "msgpack: %s: type byte 0x%02x is not an integer", s.name, c)
	}
	var fits bool
	switch {
	case !s.signed:
		fits = !neg && (s.bits == 64 || mag <= 1<<s.bits-1)
	case neg:
		fits = mag <= 1<<(s.bits-1)
	default:
		fits = mag <= 1<<(s.bits-1)-1
	}
	if !fits {
		v := fmt.Sprint(mag)
		if neg {
			v = "-" + v
		}
		kind := "uint"
		if s.signed {
			kind = "int"
		}
		return Errorf(CodeMalformed, "msgpack: %s: %s out of range for %s%d", s.name, v, kind, s.bits)
	}
	return nil
}

func (k shapeKind) String() string {
	switch k {
	case shapeScalar:
		return "a scalar"
	case shapeInt:
		return "an integer"
	case shapeStruct:
		return "a map"
	case shapeArray:
		return "an array"
	}
	return "a value"
}
