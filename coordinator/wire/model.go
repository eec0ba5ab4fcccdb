package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math"

	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/fedrec/fedrec/model"
)

// Model kinds on the wire.
const (
	KindExplicit uint8 = 1
	KindImplicit uint8 = 2
)

// KindOf maps a model kind to its wire value.
func KindOf(k model.Kind) uint8 {
	switch k {
	case model.Explicit:
		return KindExplicit
	case model.Implicit:
		return KindImplicit
	}
	panic("wire: unknown model kind")
}

// ModelKind maps a wire kind to the model's, or returns a CodeMalformed
// error.
func ModelKind(k uint8) (model.Kind, error) {
	switch k {
	case KindExplicit:
		return model.Explicit, nil
	case KindImplicit:
		return model.Implicit, nil
	}
	return 0, Errorf(CodeMalformed, "model kind %d", k)
}

// checkShape validates a model shape and returns its dimension.
func checkShape(kind uint8, items, rank, maxParams int) (int, error) {
	if _, err := ModelKind(kind); err != nil {
		return 0, err
	}
	if items <= 0 || rank <= 0 || rank > 4096 || items > maxParams || items*(rank+1)+1 > maxParams {
		return 0, Errorf(CodeMalformed, "model of %d items at rank %d (limit %d params)", items, rank, maxParams)
	}
	return model.Dim(items, rank), nil
}

func chunks(dim int) int { return (dim + ChunkParams - 1) / ChunkParams }

// Digest is the SHA-256 of a model: its kind, items and rank as big-endian
// uint32s, then its params as little-endian float64s. Clients check the
// model they download against the digest in their Plan.
func Digest(m *model.Model) [sha256.Size]byte { return digest(m, false) }

// Digest32 is the SHA-256 of a model as float32 downloads carry it: a
// domain string, its kind, items and rank as in Digest, then its params
// rounded to float32, little-endian. A device that downloads float32
// checks it against Plan.Digest32, so the digest covers exactly the bytes
// it received.
func Digest32(m *model.Model) [sha256.Size]byte { return digest(m, true) }

func digest(m *model.Model, f32 bool) [sha256.Size]byte {
	h := NewDigest(KindOf(m.Kind), m.Items, m.Rank, f32)
	var buf [4096]byte
	for p := m.Params; len(p) > 0; {
		n := min(len(p), len(buf)/8)
		if f32 {
			for k, x := range p[:n] {
				binary.LittleEndian.PutUint32(buf[4*k:], math.Float32bits(float32(x)))
			}
			h.Write(buf[:4*n])
		} else {
			for k, x := range p[:n] {
				binary.LittleEndian.PutUint64(buf[8*k:], math.Float64bits(x))
			}
			h.Write(buf[:8*n])
		}
		p = p[n:]
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// NewDigest starts the digest of a model of the given shape (its wire
// kind): fed its params' little-endian bytes, as float64s or, with f32,
// float32s, it sums to Digest or Digest32. A model read from a stream is
// hashed as it arrives.
func NewDigest(kind uint8, items, rank int, f32 bool) hash.Hash {
	h := sha256.New()
	if f32 {
		h.Write([]byte("fedrec model float32\x00"))
	}
	var hdr [12]byte
	binary.BigEndian.PutUint32(hdr[0:], uint32(kind))
	binary.BigEndian.PutUint32(hdr[4:], uint32(items))
	binary.BigEndian.PutUint32(hdr[8:], uint32(rank))
	h.Write(hdr[:])
	return h
}

// CatalogueDigest is the SHA-256 of an item catalogue, the app's IDs of
// the model's items in order: a domain string, then each ID as a uvarint
// length and its bytes. ModelHeader.Catalogue carries it.
func CatalogueDigest(items []string) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte("fedrec catalogue v1\n"))
	var n [binary.MaxVarintLen64]byte
	for _, id := range items {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(id)))])
		h.Write([]byte(id))
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// SplitModel returns the frames that send m as committed version version,
// produced by round round. The chunks alias m.Params.
func SplitModel(m *model.Model, version, round uint64) (*ModelHeader, []*ModelChunk) {
	d := Digest(m)
	n := chunks(len(m.Params))
	h := &ModelHeader{Model: version, Round: round, Digest: d[:], Kind: KindOf(m.Kind), Items: m.Items, Rank: m.Rank, Chunks: n}
	cs := make([]*ModelChunk, n)
	for i := range cs {
		lo := i * ChunkParams
		cs[i] = &ModelChunk{Index: i, Params: m.Params[lo:min(lo+ChunkParams, len(m.Params))]}
	}
	return h, cs
}

// SplitModel32 is SplitModel for a float32 download: the header has
// Float32 set and Digest32 as its digest, the chunks carry the params
// rounded to float32 (a copy).
func SplitModel32(m *model.Model, version, round uint64) (*ModelHeader, []*ModelChunk) {
	h, cs := SplitModel(m, version, round)
	d := Digest32(m)
	h.Digest, h.Float32 = d[:], true
	for _, c := range cs {
		c.Params, c.Params32 = nil, Vec32Of(c.Params)
	}
	return h, cs
}

// ModelBuilder reassembles a model from a header and its chunks, checking
// order, sizes, finiteness and finally the digest. It hashes each chunk as
// it arrives, while its values are in the cache.
type ModelBuilder struct {
	h    *ModelHeader
	m    *model.Model
	next int
	sum  hash.Hash // Digest or Digest32 of the chunks so far
}

// NewModelBuilder starts reassembling the model h announces. h must have
// passed Validate (Read does that).
func NewModelBuilder(h *ModelHeader) (*ModelBuilder, error) {
	return NewModelBuilderInto(h, nil)
}

// NewModelBuilderInto is NewModelBuilder with the model's params built in
// buf when it has room for them (its contents are overwritten): a device
// that reuses one buffer for every download saves the page faults of a
// fresh multi-megabyte one each time.
func NewModelBuilderInto(h *ModelHeader, buf []float64) (*ModelBuilder, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	kind, _ := ModelKind(h.Kind)
	dim := model.Dim(h.Items, h.Rank)
	if cap(buf) < dim {
		buf = make([]float64, 0, dim)
	}
	m := &model.Model{Kind: kind, Items: h.Items, Rank: h.Rank, Params: buf[:0:dim]}
	return &ModelBuilder{h: h, m: m, sum: NewDigest(h.Kind, h.Items, h.Rank, h.Float32)}, nil
}

// Add appends the next chunk.
func (b *ModelBuilder) Add(c *ModelChunk) error {
	if c.Index != b.next || b.next >= b.h.Chunks {
		return Errorf(CodeMalformed, "model chunk %d, want %d of %d", c.Index, b.next, b.h.Chunks)
	}
	want := min(ChunkParams, cap(b.m.Params)-len(b.m.Params))
	got := len(c.Params)
	if b.h.Float32 {
		got = len(c.Params32)
	}
	if got != want || c.Len() != want {
		return Errorf(CodeMalformed, "model chunk %d has %d params (float32 %v), want %d", c.Index, got, b.h.Float32, want)
	}
	// One pass over the chunk: the finiteness check of Validate, the
	// conversion to float64 and the digest's bytes.
	n := len(b.m.Params)
	b.m.Params = b.m.Params[:n+want] // within cap: want is what is left
	dst := b.m.Params[n:]
	var buf [4096]byte
	le := littleEndian()
	if b.h.Float32 {
		for src := c.Params32; len(src) > 0; {
			k := min(len(src), len(buf)/4)
			d := dst[:k]
			for i, x := range src[:k] {
				if !finite32(x) {
					return Errorf(CodeNotFinite, "model chunk %d: param %d is %v", c.Index, len(c.Params32)-len(src)+i, x)
				}
				d[i] = float64(x)
			}
			if le { // the params' memory is their wire bytes
				b.sum.Write(packedBytes(src[:k]))
			} else {
				for i, x := range src[:k] {
					binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
				}
				b.sum.Write(buf[:4*k])
			}
			src, dst = src[k:], dst[k:]
		}
	} else {
		for src := c.Params; len(src) > 0; {
			k := min(len(src), len(buf)/8)
			for i, x := range src[:k] {
				if !finite(x) {
					return Errorf(CodeNotFinite, "model chunk %d: param %d is %v", c.Index, len(c.Params)-len(src)+i, x)
				}
				dst[i] = x
				binary.LittleEndian.PutUint64(buf[8*i:], math.Float64bits(x))
			}
			b.sum.Write(buf[:8*k])
			src, dst = src[k:], dst[k:]
		}
	}
	b.next++
	return nil
}

// Done reports whether every chunk was added.
func (b *ModelBuilder) Done() bool { return b.next == b.h.Chunks }

// Model returns the reassembled model after checking its digest. Its
// shape is the validated header's and Add checked every value, so it
// passes model.Validate.
func (b *ModelBuilder) Model() (*model.Model, error) {
	if !b.Done() {
		return nil, Errorf(CodeMalformed, "model transfer ended after %d of %d chunks", b.next, b.h.Chunks)
	}
	var d [sha256.Size]byte
	if b.sum.Sum(d[:0]); string(d[:]) != string(b.h.Digest) {
		return nil, Errorf(CodeMalformed, "model %d does not match its digest", b.h.Model)
	}
	return b.m, nil
}

// CheckUpdate checks an upload's delta against a model's dimension.
func (m *Upload) CheckUpdate(dim int) error {
	if n := len(m.Delta) + len(m.Quantized); n != dim {
		return Errorf(CodeShape, "update of %d params, model has %d", n, dim)
	}
	return nil
}

// UploadSeed derives the public seed of the rotation of a round's 8-bit
// uploads (fixedpoint.NewQuantizer) from its manifest, as SecAggSeeds.
func UploadSeed(round uint64, digest []byte) [seedLen]byte {
	s := sha256.New()
	s.Write([]byte("fedrec/upload rotation\x00"))
	s.Write(binary.BigEndian.AppendUint64(nil, round))
	s.Write(digest)
	var out [seedLen]byte
	s.Sum(out[:0])
	return out
}

// frameSlack bounds what a message adds to its payload: the frame header,
// msgpack keys and lengths, and its scalar fields, IDs and tickets
// included (an ID is at most MaxIDLen bytes).
const frameSlack = 1024

// UploadBytes is the most an Upload of an update of dim parameters takes
// on the wire, as Plan.UploadBytes announces it: 8 bytes a parameter, or
// one with UploadBits8.
func UploadBytes(dim int, bits uint8) int64 {
	if bits == UploadBits8 {
		return int64(dim + frameSlack)
	}
	return int64(8*dim + frameSlack)
}

// SecAggBytes is the most a device sends in a secure round of parameters
// p whose encoding is encodedDim words long (the padded dimension, or the
// dimension itself with Quantized): its masked input (in words of
// WordWidth bytes, see PackWords) and, to each peer, a sealed share and
// the shares of its unmasking, with the four messages' framing.
func SecAggBytes(p *SecAggParams, encodedDim int) int64 {
	perPeer := secagg.SealedShareLen + 2*(8*secagg.ShareLen+16)
	return int64(WordWidth(p.Bits)*p.InputLen(encodedDim) + p.Clients*perPeer + 4*frameSlack)
}
