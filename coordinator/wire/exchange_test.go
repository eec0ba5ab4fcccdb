package wire

import (
	"bytes"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/fedrec/fedrec/model"
)

// replayStream is a Stream whose replies are fixed bytes.
type replayStream struct {
	req   bytes.Buffer
	reply io.Reader
}

func (s *replayStream) Read(b []byte) (int, error)  { return s.reply.Read(b) }
func (s *replayStream) Write(b []byte) (int, error) { return s.req.Write(b) }
func (s *replayStream) Close() error                { return nil }
func (s *replayStream) SetDeadline(time.Time) error { return nil }
func (s *replayStream) CancelRead()                 {}
func (s *replayStream) CancelWrite()                {}

// ExchangeStream decodes every chunk of a model into one ModelChunk and
// every body into one buffer: each chunk still reaches recv whole and
// right, float32 or float64, and a model of chunks of unequal lengths
// comes out as it was sent.
func TestExchangeStreamModelChunks(t *testing.T) {
	m, _ := model.New(model.Explicit, 5000, 32, 3.5, 0.1, rand.New(rand.NewPCG(1, 2)))
	for _, f32 := range []bool{false, true} {
		h, cs, want := split(m, 1, 0, f32)
		if len(cs) < 3 {
			t.Fatalf("%d chunks, want a few", len(cs))
		}
		var frames bytes.Buffer
		for _, msg := range append([]Message{h}, chunkMsgs(cs)...) {
			if err := Write(&frames, msg); err != nil {
				t.Fatal(err)
			}
		}
		var b *ModelBuilder
		var seen []int
		err := ExchangeStream(t.Context(), &replayStream{reply: &frames}, &GetModel{Version: Version}, Limits{}, func(msg Message) (bool, error) {
			switch msg := msg.(type) {
			case *ModelHeader:
				var err error
				b, err = NewModelBuilder(msg)
				return false, err
			case *ModelChunk:
				seen = append(seen, msg.Len())
				if !reflect.DeepEqual(msg, cs[msg.Index]) {
					t.Errorf("float32 %v: chunk %d differs from the one sent", f32, msg.Index)
				}
				if err := b.Add(msg); err != nil {
					return true, err
				}
				return b.Done(), nil
			}
			return true, Errorf(CodeUnknownType, "unexpected %s", msg.Type())
		})
		if err != nil {
			t.Fatalf("float32 %v: %v", f32, err)
		}
		got, err := b.Model()
		if err != nil {
			t.Fatalf("float32 %v: %v", f32, err)
		}
		if !reflect.DeepEqual(got, want) || len(seen) != len(cs) {
			t.Errorf("float32 %v: model changed in transfer (chunks of %v)", f32, seen)
		}
	}
}

func chunkMsgs(cs []*ModelChunk) []Message {
	out := make([]Message, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return out
}

// Decoding into a message whose vector holds values allocates anew: it
// never writes through a slice the message was built with.
func TestDecodeKeepsBuiltSlices(t *testing.T) {
	orig := Vec32{1, 2, 3}
	b, err := Encode(&ModelChunk{Index: 0, Params32: Vec32{4, 5, 6}})
	if err != nil {
		t.Fatal(err)
	}
	c := &ModelChunk{Params32: orig}
	if err := decodeInto(b[HeaderLen:], c); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(orig, Vec32{1, 2, 3}) || !reflect.DeepEqual(c.Params32, Vec32{4, 5, 6}) {
		t.Errorf("decode into a built chunk: original %v, decoded %v; want [1 2 3], [4 5 6]", orig, c.Params32)
	}
}
