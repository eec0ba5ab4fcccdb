package wire

import (
	"crypto/sha256"
	"encoding/binary"
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
	h := sha256.New()
	if f32 {
		h.Write([]byte("fedrec model float32\x00"))
	}
	var hdr [12]byte
	binary.BigEndian.PutUint32(hdr[0:], uint32(KindOf(m.Kind)))
	binary.BigEndian.PutUint32(hdr[4:], uint32(m.Items))
	binary.BigEndian.PutUint32(hdr[8:], uint32(m.Rank))
	h.Write(hdr[:])
	var buf [4096]byte
	p := m.Params
	for len(p) > 0 && f32 {
		n := min(len(p), len(buf)/4)
		for k, x := range p[:n] {
			binary.LittleEndian.PutUint32(buf[4*k:], math.Float32bits(float32(x)))
		}
		h.Write(buf[:4*n])
		p = p[n:]
	}
	for len(p) > 0 {
		n := min(len(p), len(buf)/8)
		for k, x := range p[:n] {
			binary.LittleEndian.PutUint64(buf[8*k:], math.Float64bits(x))
		}
		h.Write(buf[:8*n])
		p = p[n:]
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
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
		p := make(Vec32, len(c.Params))
		for i, x := range c.Params {
			p[i] = float32(x)
		}
		c.Params, c.Params32 = nil, p
	}
	return h, cs
}

// ModelBuilder reassembles a model from a header and its chunks, checking
// order, sizes, finiteness and finally the digest.
type ModelBuilder struct {
	h    *ModelHeader
	m    *model.Model
	next int
}

// NewModelBuilder starts reassembling the model h announces. h must have
// passed Validate (Read does that).
func NewModelBuilder(h *ModelHeader) (*ModelBuilder, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	kind, _ := ModelKind(h.Kind)
	m := &model.Model{Kind: kind, Items: h.Items, Rank: h.Rank, Params: make([]float64, 0, model.Dim(h.Items, h.Rank))}
	return &ModelBuilder{h: h, m: m}, nil
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
	if err := c.Validate(); err != nil {
		return err
	}
	b.m.Params = append(b.m.Params, c.Params...)
	if len(c.Params32) > 0 {
		n := len(b.m.Params)
		b.m.Params = b.m.Params[:n+len(c.Params32)] // within cap: want is what is left
		dst := b.m.Params[n:]
		for i, x := range c.Params32 {
			dst[i] = float64(x)
		}
	}
	b.next++
	return nil
}

// Done reports whether every chunk was added.
func (b *ModelBuilder) Done() bool { return b.next == b.h.Chunks }

// Model returns the reassembled model after checking it and its digest.
func (b *ModelBuilder) Model() (*model.Model, error) {
	if !b.Done() {
		return nil, Errorf(CodeMalformed, "model transfer ended after %d of %d chunks", b.next, b.h.Chunks)
	}
	if err := b.m.Validate(); err != nil {
		return nil, Errorf(CodeMalformed, "%v", err)
	}
	if d := digest(b.m, b.h.Float32); string(d[:]) != string(b.h.Digest) {
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
