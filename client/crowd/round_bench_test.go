package crowd

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// memNode answers a device's requests from memory, through the same
// wire.ExchangeStream a QUIC stream goes through, so that a benchmark
// measures what the device decodes and encodes and nothing of the node:
// a GetModel gets the frames of a float32 download, an Upload (read no
// further than its frame header) an UploadAck.
type memNode struct {
	frames [][]byte // the model's header and chunks, encoded once
	ack    []byte
}

func newMemNode(m *model.Model) *memNode {
	h, cs := wire.SplitModel32(m, 2, 1)
	n := &memNode{}
	for _, msg := range append([]wire.Message{h}, chunkMessages(cs)...) {
		b, err := wire.Encode(msg)
		if err != nil {
			panic(err)
		}
		n.frames = append(n.frames, b)
	}
	var err error
	if n.ack, err = wire.Encode(&wire.UploadAck{Round: 1}); err != nil {
		panic(err)
	}
	return n
}

func chunkMessages(cs []*wire.ModelChunk) []wire.Message {
	out := make([]wire.Message, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return out
}

func (n *memNode) Exchange(ctx context.Context, req wire.Message, recv func(wire.Message) (bool, error)) error {
	return wire.ExchangeStream(ctx, &memStream{node: n}, req, wire.Limits{}, recv)
}

// memStream is one stream to a memNode.
type memStream struct {
	node  *memNode
	req   bytes.Buffer
	reply io.Reader
}

func (s *memStream) Write(b []byte) (int, error) { return s.req.Write(b) }

func (s *memStream) Close() error {
	t, _, err := wire.ReadHeader(&s.req, wire.Limits{})
	if err != nil {
		return err
	}
	var rs []io.Reader
	switch t {
	case wire.TypeGetModel:
		for _, f := range s.node.frames {
			rs = append(rs, bytes.NewReader(f))
		}
	case wire.TypeUpload:
		rs = append(rs, bytes.NewReader(s.node.ack))
	default:
		return fmt.Errorf("memNode: unexpected %s", t)
	}
	s.reply = io.MultiReader(rs...)
	return nil
}

func (s *memStream) Read(b []byte) (int, error) {
	if s.reply == nil {
		return 0, io.EOF
	}
	return s.reply.Read(b)
}

func (s *memStream) SetDeadline(time.Time) error { return nil }
func (s *memStream) CancelRead()                 {}
func (s *memStream) CancelWrite()                {}

// BenchmarkDeviceRound is what a virtual device of fedrec bench does in
// a plain round at ml-latest-small's size (9,724 items, rank 32, 20
// ratings), after its check-in: download and decode the float32 model,
// train, clip, quantize to 8 bits and encode the upload. The node is in
// memory (memNode): no QUIC, no node's work.
func BenchmarkDeviceRound(b *testing.B) {
	const items, rank = 9724, 32
	for _, kind := range []model.Kind{model.Explicit, model.Implicit} {
		b.Run(kind.String(), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			m, err := model.New(kind, items, rank, 3.5, 0.1, r)
			if err != nil {
				b.Fatal(err)
			}
			rs := make([]model.Rating, 0, 20)
			for _, it := range r.Perm(items)[:20] {
				rs = append(rs, model.Rating{Item: int32(it), Value: float32(1 + r.IntN(5))})
			}
			d, err := client.NewDialerConfig(client.DialerConfig{Addrs: []string{"127.0.0.1:1"}, TLS: &tls.Config{}})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			p, err := NewParticipant(ParticipantConfig{ID: "bench", Ratings: rs, Dialer: d, Models: NewDeviceCache()})
			if err != nil {
				b.Fatal(err)
			}
			d64, d32 := wire.Digest(m), wire.Digest32(m)
			plan := &wire.Plan{Round: 1, Model: 2, Digest: d64[:], Digest32: d32[:], Kind: wire.KindOf(kind), Items: items, Rank: rank,
				Train: wire.TrainParams{LR: 0.01, Reg: 0.1, Epochs: 1}, MinClients: 1, Clip: 1, UploadBits: wire.UploadBits8,
				Ticket: make([]byte, wire.TicketLen)}
			node := newMemNode(m)
			b.ReportAllocs()
			b.SetBytes(int64(4 * len(m.Params)))
			for b.Loop() {
				res, err := p.take(b.Context(), node, plan)
				if err != nil {
					b.Fatal(err)
				}
				if res.Bytes != len(m.Params) {
					b.Fatalf("upload of %d bytes, want %d", res.Bytes, len(m.Params))
				}
			}
		})
	}
}
