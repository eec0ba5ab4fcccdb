package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/fedrec/fedrec/model"
)

func TestMessagesGolden(t *testing.T) {
	for name, msg := range sampleMessages() {
		t.Run(name, func(t *testing.T) {
			if err := msg.Validate(); err != nil {
				t.Fatalf("sample %s does not validate: %v", name, err)
			}
			b, err := Encode(msg)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "msg_"+name+".golden", b)
			got, err := Read(bytes.NewReader(b), Limits{})
			if err != nil {
				t.Fatalf("Read(Encode(%s)) = %v", name, err)
			}
			if !reflect.DeepEqual(got, msg) {
				t.Errorf("Read(Encode(m)) = %+v, want %+v", got, msg)
			}
		})
	}
}

func TestCommandsGolden(t *testing.T) {
	for name, c := range sampleCommands() {
		t.Run(name, func(t *testing.T) {
			b, err := EncodeCommand(c)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "cmd_"+name+".golden", b)
			got, err := DecodeCommand(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("DecodeCommand(EncodeCommand(c)) = %+v, want %+v", got, c)
			}
		})
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	good, _ := EncodeCommand(&AbandonRound{Round: 1, Reason: "x"})
	for name, b := range map[string][]byte{
		"empty":        nil,
		"short":        {CommandVersion, byte(CmdAbandonRound)},
		"version":      append([]byte{2}, good[1:]...),
		"unknown type": append([]byte{CommandVersion, 200}, good[2:]...),
		"zero type":    append([]byte{CommandVersion, 0}, good[2:]...),
		"truncated":    good[:len(good)-1],
		"trailing":     append(append([]byte(nil), good...), 0),
	} {
		if _, err := DecodeCommand(b); err == nil {
			t.Errorf("DecodeCommand(%s) = nil error, want one", name)
		}
	}
}

func TestSnapshotGolden(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewSnapshotWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	recs := sampleRecords()
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	golden(t, "snapshot.golden", buf.Bytes())
	got := readSnapshot(t, buf.Bytes())
	if !reflect.DeepEqual(got, recs) {
		t.Errorf("records = %+v, want %+v", got, recs)
	}
	// Every truncation is an error, never a short snapshot.
	for n := range buf.Len() {
		r, err := NewSnapshotReader(bytes.NewReader(buf.Bytes()[:n]))
		if err != nil {
			continue
		}
		for {
			if _, err = r.Next(); err != nil {
				break
			}
		}
		if err == io.EOF {
			t.Fatalf("snapshot truncated to %d of %d bytes read as complete", n, buf.Len())
		}
	}
}

func readSnapshot(t testing.TB, b []byte) []Record {
	r, err := NewSnapshotReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
}

func TestSnapshotHeader(t *testing.T) {
	if _, err := NewSnapshotReader(strings.NewReader("NOTASNAP\x00\x01")); err == nil {
		t.Error("wrong magic accepted")
	}
	if _, err := NewSnapshotReader(strings.NewReader(SnapshotMagic + "\x00\x02")); err == nil {
		t.Error("version 2 accepted")
	}
}

func frame(t Type, body []byte) []byte {
	return appendFrame(nil, byte(t), body)
}

func TestReadBadFrames(t *testing.T) {
	checkin, _ := marshal(&CheckIn{Version: Version, ClientID: "c"})
	tests := []struct {
		name string
		in   []byte
		code Code
	}{
		{"truncated header", []byte{0, 0, 0}, CodeMalformed},
		{"truncated body", frame(TypeCheckIn, checkin)[:HeaderLen+2], CodeMalformed},
		{"unknown type", frame(99, checkin), CodeUnknownType},
		{"type zero", frame(0, checkin), CodeUnknownType},
		{"oversized declared", binary.BigEndian.AppendUint32(nil, smallBody+1), CodeTooLarge},
		{"empty body", frame(TypeCheckIn, nil), CodeMalformed},
		{"not msgpack", frame(TypeCheckIn, []byte{0xc1}), CodeMalformed},
		{"trailing bytes", frame(TypeCheckIn, append(append([]byte(nil), checkin...), 0x01)), CodeMalformed},
		{"wrong field type", frame(TypeCheckIn, []byte{0x81, 0xa6, 'c', 'l', 'i', 'e', 'n', 't', 0x05}), CodeMalformed},
		{"array not map", frame(TypeCheckIn, []byte{0x92, 0x01, 0x02}), CodeMalformed},
		{"wrong version", mustEncode(t, &CheckIn{Version: 2, ClientID: "c"}), CodeVersion},
		{"empty client", mustEncode(t, &CheckIn{Version: Version}), CodeMalformed},
		{"nan update", mustEncode(t, &Upload{Version: Version, Round: 1, ClientID: "c", Ticket: ticket(), Model: 1, Delta: Vec{1, math.NaN()}}), CodeNotFinite},
		{"inf update", mustEncode(t, &Upload{Version: Version, Round: 1, ClientID: "c", Ticket: ticket(), Model: 1, Delta: Vec{math.Inf(-1)}}), CodeNotFinite},
		{"ragged vector", frame(TypeModelChunk, []byte{0x82, 0xa1, 'i', 0x00, 0xa6, 'p', 'a', 'r', 'a', 'm', 's', 0xc4, 0x03, 1, 2, 3}), CodeMalformed},
		{"short ticket", mustEncode(t, &Upload{Version: Version, Round: 1, ClientID: "c", Ticket: []byte{1}, Model: 1, Delta: Vec{1}}), CodeMalformed},
		{"quantized without step", mustEncode(t, &Upload{Version: Version, Round: 1, ClientID: "c", Ticket: ticket(), Model: 1, Quantized: []byte{1, 2}}), CodeMalformed},
		{"quantized at a NaN step", mustEncode(t, &Upload{Version: Version, Round: 1, ClientID: "c", Ticket: ticket(), Model: 1, Quantized: []byte{1, 2}, Step: math.NaN()}), CodeMalformed},
		{"float and quantized", mustEncode(t, &Upload{Version: Version, Round: 1, ClientID: "c", Ticket: ticket(), Model: 1, Delta: Vec{1}, Quantized: []byte{1}, Step: 1}), CodeMalformed},
		{"float32 chunk of NaN", mustEncode(t, &ModelChunk{Params32: Vec32{1, float32(math.NaN())}}), CodeNotFinite},
		{"chunk of both", mustEncode(t, &ModelChunk{Params: Vec{1}, Params32: Vec32{1}}), CodeMalformed},
		{"ragged float32 vector", frame(TypeModelChunk, []byte{0x82, 0xa1, 'i', 0x00, 0xa3, 'p', '3', '2', 0xc4, 0x03, 1, 2, 3}), CodeMalformed},
	}
	// The header of an oversized frame is rejected before the body is
	// read: the reader need not hold it.
	tests[4].in = append(tests[4].in, byte(TypeCheckIn))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.in), Limits{})
			if got := CodeOf(err); got != tc.code {
				t.Errorf("Read = %v (code %v), want code %v", err, got, tc.code)
			}
		})
	}
}

func mustEncode(t *testing.T, m Message) []byte {
	t.Helper()
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadEOF(t *testing.T) {
	if _, err := Read(bytes.NewReader(nil), Limits{}); err != io.EOF {
		t.Errorf("Read(empty) = %v, want io.EOF", err)
	}
}

func TestUploadLimit(t *testing.T) {
	up := &Upload{Version: Version, Round: 1, ClientID: "c", Ticket: ticket(), Model: 1, Delta: make(Vec, 10000)}
	b := mustEncode(t, up)
	if _, err := Read(bytes.NewReader(b), Limits{MaxParams: 10000}); err != nil {
		t.Errorf("Read(upload of 10000 params, limit 10000) = %v", err)
	}
	if _, err := Read(bytes.NewReader(b), Limits{MaxParams: 100}); CodeOf(err) != CodeTooLarge {
		t.Errorf("Read(upload of 10000 params, limit 100) = %v, want CodeTooLarge", err)
	}
}

// A lying length header must not make the reader allocate it: the reader
// fails on the truncated body after allocating only what arrived.
func TestLyingLength(t *testing.T) {
	hdr := binary.BigEndian.AppendUint32(nil, uint32(Limits{}.MaxBody(TypeUpload)))
	hdr = append(hdr, byte(TypeUpload), 0x80)
	if _, _, err := ReadFrame(bytes.NewReader(hdr), Limits{}); CodeOf(err) != CodeMalformed {
		t.Fatalf("ReadFrame = %v, want CodeMalformed", err)
	}
	var ms1, ms2 runtimeMem
	ms1.read()
	for range 10 {
		ReadFrame(bytes.NewReader(hdr), Limits{})
	}
	ms2.read()
	if perCall := (ms2.total - ms1.total) / 10; perCall > 1<<20 {
		t.Errorf("ReadFrame of a 5-byte lie allocated %d bytes per call", perCall)
	}
}

// ReadBodyPooled reads a body whole into a lent buffer, reads the next
// into the one given back, and does not lend one to a lying length.
func TestReadBodyPooled(t *testing.T) {
	up := &Upload{Version: Version, Round: 1, ClientID: "c", Ticket: ticket(), Model: 1, Quantized: make([]byte, 100000), Step: 0.01}
	up.Quantized[0] = 7
	b := mustEncode(t, up)
	for i := range 3 {
		r := bytes.NewReader(b)
		typ, n, err := ReadHeader(r, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		body, release, err := ReadBodyPooled(r, typ, n)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if !bytes.Equal(body, b[HeaderLen:]) {
			t.Fatalf("read %d: body differs from the frame's", i)
		}
		msg, err := Decode(typ, body)
		release()
		clear(body[:cap(body)]) // as the next read would overwrite it
		if err != nil || msg.(*Upload).Quantized[0] != 7 {
			t.Fatalf("read %d: decoded %v (%v): it kept bytes of a lent buffer", i, msg, err)
		}
	}
	hdr := binary.BigEndian.AppendUint32(nil, uint32(Limits{}.MaxBody(TypeUpload)))
	hdr = append(hdr, byte(TypeUpload), 0x80)
	r := bytes.NewReader(hdr)
	typ, n, err := ReadHeader(r, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadBodyPooled(r, typ, n); CodeOf(err) != CodeMalformed {
		t.Fatalf("ReadBodyPooled of a lying length = %v, want CodeMalformed", err)
	}
}

func TestCheck(t *testing.T) {
	deep := bytes.Repeat([]byte{0x91}, MaxDepth+1)
	deep = append(deep, 0x00)
	okDeep := append(bytes.Repeat([]byte{0x91}, MaxDepth), 0x00)
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"fixint", []byte{0x05}, true},
		{"empty", nil, false},
		{"array32 of 4G", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, false},
		{"map32 of 4G", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, false},
		{"str32 of 4G", []byte{0xdb, 0xff, 0xff, 0xff, 0xff}, false},
		{"bin32 of 4G", []byte{0xc6, 0xff, 0xff, 0xff, 0xff}, false},
		{"array16 short", []byte{0xdc, 0x00, 0x03, 0x01, 0x02}, false},
		{"array16 exact", []byte{0xdc, 0x00, 0x02, 0x01, 0x02}, true},
		{"map needs 2n", []byte{0x82, 0x01, 0x02, 0x03}, false},
		{"fixstr short", []byte{0xa5, 'a', 'b'}, false},
		{"float64 short", []byte{0xcb, 0, 0, 0}, false},
		{"ext refused", []byte{0xd4, 0x01, 0x02}, false},
		{"c1 refused", []byte{0xc1}, false},
		{"too deep", deep, false},
		{"deep ok", okDeep, true},
		{"trailing", []byte{0x01, 0x02}, false},
		{"nil", []byte{0xc0}, true},
	}
	for _, tc := range tests {
		if err := Check(tc.in); (err == nil) != tc.ok {
			t.Errorf("Check(%s % x) = %v, want ok=%v", tc.name, tc.in, err, tc.ok)
		}
	}
}

func TestModelTransfer(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, items := range []int{1, 3, ChunkParams/33 + 1, 2*ChunkParams/33 + 7} {
		m, err := model.New(model.Explicit, items, 32, 3.5, 0.1, r)
		if err != nil {
			t.Fatal(err)
		}
		for _, f32 := range []bool{false, true} {
			h, cs, want := split(m, 9, 8, f32)
			var buf bytes.Buffer
			Write(&buf, h)
			for _, c := range cs {
				Write(&buf, c)
			}
			n := buf.Len()
			got := receiveModel(t, &buf)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("items %d, float32 %v: model changed in transfer", items, f32)
			}
			if d := Digest32(m); f32 && string(d[:]) != string(h.Digest) {
				t.Errorf("items %d: float32 header's digest is not Digest32", items)
			}
			if per := float64(n) / float64(len(m.Params)); f32 && len(m.Params) > 10000 && per > 4.1 {
				t.Errorf("items %d: float32 download of %.2f bytes a parameter, want <= 4.1", items, per)
			}
		}
	}
}

// split is SplitModel, or SplitModel32 with f32, and returns the model a
// device receives from the frames: m, or m rounded to float32.
func split(m *model.Model, version, round uint64, f32 bool) (*ModelHeader, []*ModelChunk, *model.Model) {
	if !f32 {
		h, cs := SplitModel(m, version, round)
		return h, cs, m
	}
	h, cs := SplitModel32(m, version, round)
	want := m.Clone()
	for i, x := range want.Params {
		want.Params[i] = float64(float32(x))
	}
	return h, cs, want
}

func receiveModel(t *testing.T, r io.Reader) *model.Model {
	t.Helper()
	msg, err := Read(r, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewModelBuilder(msg.(*ModelHeader))
	if err != nil {
		t.Fatal(err)
	}
	for !b.Done() {
		msg, err := Read(r, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Add(msg.(*ModelChunk)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestModelBuilderInto checks that a builder given a buffer builds the
// model in it, whatever it held, and one given a short buffer in its own.
func TestModelBuilderInto(t *testing.T) {
	m, _ := model.New(model.Implicit, 3000, 8, 0, 0.1, rand.New(rand.NewPCG(1, 1)))
	for _, f32 := range []bool{false, true} {
		for _, size := range []int{len(m.Params), len(m.Params) + 5, len(m.Params) - 1} {
			h, cs, want := split(m, 1, 0, f32)
			buf := make([]float64, size)
			for i := range buf {
				buf[i] = math.NaN()
			}
			b, err := NewModelBuilderInto(h, buf)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				if err := b.Add(c); err != nil {
					t.Fatal(err)
				}
			}
			got, err := b.Model()
			if err != nil {
				t.Fatalf("float32 %v, buffer of %d: %v", f32, size, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("float32 %v, buffer of %d: model changed in transfer", f32, size)
			}
			if inBuf := &got.Params[0] == &buf[0]; inBuf != (size >= len(m.Params)) {
				t.Errorf("float32 %v, buffer of %d: model built in it %v", f32, size, inBuf)
			}
		}
	}
}

func TestModelBuilderRejects(t *testing.T) {
	m, _ := model.New(model.Explicit, 3, 2, 3.5, 0.1, rand.New(rand.NewPCG(1, 1)))
	h, cs := SplitModel(m, 1, 0)
	t.Run("digest", func(t *testing.T) {
		bad := *cs[0]
		bad.Params = append(Vec(nil), bad.Params...)
		bad.Params[0] += 1e-9
		b, _ := NewModelBuilder(h)
		if err := b.Add(&bad); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Model(); err == nil {
			t.Error("model with a wrong digest accepted")
		}
	})
	t.Run("float32 digest", func(t *testing.T) {
		h32, cs32 := SplitModel32(m, 1, 0)
		bad := *cs32[0]
		bad.Params32 = append(Vec32(nil), bad.Params32...)
		bad.Params32[0] += 1e-3
		b, _ := NewModelBuilder(h32)
		if err := b.Add(&bad); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Model(); err == nil {
			t.Error("float32 model with a wrong digest accepted")
		}
	})
	t.Run("float64 chunk after a float32 header", func(t *testing.T) {
		h32, _ := SplitModel32(m, 1, 0)
		b, _ := NewModelBuilder(h32)
		if err := b.Add(cs[0]); CodeOf(err) != CodeMalformed {
			t.Errorf("Add(float64 chunk) = %v, want CodeMalformed", err)
		}
	})
	t.Run("float32 header with the float64 digest", func(t *testing.T) {
		// A node cannot pass float32 params off as the float64 model.
		h32, cs32 := SplitModel32(m, 1, 0)
		h32.Digest = h.Digest
		b, _ := NewModelBuilder(h32)
		_ = b.Add(cs32[0])
		if _, err := b.Model(); err == nil {
			t.Error("float32 transfer checked against the float64 digest")
		}
	})
	t.Run("short chunk", func(t *testing.T) {
		b, _ := NewModelBuilder(h)
		if err := b.Add(&ModelChunk{Params: cs[0].Params[1:]}); err == nil {
			t.Error("short chunk accepted")
		}
	})
	t.Run("nan", func(t *testing.T) {
		b, _ := NewModelBuilder(h)
		bad := append(Vec(nil), cs[0].Params...)
		bad[2] = math.NaN()
		if err := b.Add(&ModelChunk{Params: bad}); CodeOf(err) != CodeNotFinite {
			t.Errorf("Add(NaN chunk) = %v, want CodeNotFinite", err)
		}
	})
	t.Run("float32 inf", func(t *testing.T) {
		h32, cs32 := SplitModel32(m, 1, 0)
		b, _ := NewModelBuilder(h32)
		bad := append(Vec32(nil), cs32[0].Params32...)
		bad[1] = float32(math.Inf(-1))
		if err := b.Add(&ModelChunk{Params32: bad}); CodeOf(err) != CodeNotFinite {
			t.Errorf("Add(-Inf float32 chunk) = %v, want CodeNotFinite", err)
		}
	})
	t.Run("chunk count", func(t *testing.T) {
		h2 := *h
		h2.Chunks = 2
		if _, err := NewModelBuilder(&h2); err == nil {
			t.Error("header with a wrong chunk count accepted")
		}
	})
	t.Run("huge shape", func(t *testing.T) {
		h2 := *h
		h2.Items, h2.Rank = 1<<30, 1000
		if _, err := NewModelBuilder(&h2); err == nil {
			t.Error("header of 10^12 params accepted")
		}
	})
}

func TestDigest(t *testing.T) {
	m, _ := model.New(model.Explicit, 3, 2, 3.5, 0.1, rand.New(rand.NewPCG(1, 1)))
	d := Digest(m)
	m2 := m.Clone()
	m2.Kind = model.Implicit
	if Digest(m2) == d {
		t.Error("digest ignores the kind")
	}
	m3 := m.Clone()
	m3.Params[len(m3.Params)-1] = math.Nextafter(m3.Params[len(m3.Params)-1], 10)
	if Digest(m3) == d {
		t.Error("digest ignores the last ulp of the mean")
	}
}

func TestErrorAs(t *testing.T) {
	var err error = Errorf(CodeNotLeader, "x")
	wrapped := errors.Join(errors.New("ctx"), err)
	if CodeOf(wrapped) != CodeNotLeader {
		t.Errorf("CodeOf(wrapped) = %v", CodeOf(wrapped))
	}
	if AsError(errors.New("boom")).Code != CodeInternal {
		t.Error("AsError(plain) is not CodeInternal")
	}
	if !CodeNotLeader.Retryable() || CodeDuplicate.Retryable() {
		t.Error("Retryable is wrong")
	}
}

func BenchmarkEncodeUpload(b *testing.B) {
	up := &Upload{Version: Version, Round: 1, ClientID: "c", Ticket: ticket(), Model: 1, Delta: make(Vec, 3706*33+1)}
	b.ReportAllocs()
	b.SetBytes(int64(8 * len(up.Delta)))
	for b.Loop() {
		if _, err := Encode(up); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeUpload(b *testing.B) {
	up := &Upload{Version: Version, Round: 1, ClientID: "c", Ticket: ticket(), Model: 1, Delta: make(Vec, 3706*33+1)}
	buf, _ := Encode(up)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := Read(bytes.NewReader(buf), Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFrame(t *testing.T) {
	m := sampleMessages()["modelchunk"]
	f, err := EncodeFrame(m)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	Write(&a, m)
	Write(&b, f)
	if !bytes.Equal(a.Bytes(), b.Bytes()) || f.Type() != m.Type() || f.Len() != a.Len() {
		t.Error("a Frame does not write its message's bytes")
	}
	got, err := f.Message()
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Errorf("Frame.Message() = %+v, %v", got, err)
	}
}

func TestFinite32(t *testing.T) {
	nan := math.Float32frombits(0x7fc00001)
	for _, x := range []float32{0, float32(math.Copysign(0, -1)), 1, -1, math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), nan, -nan} {
		if got, want := finite32(x), finite(float64(x)); got != want {
			t.Errorf("finite32(%v) = %v, want %v", x, got, want)
		}
	}
}

// BenchmarkModelDownload is a device's side of a float32 download at
// ml-latest-small's size (9,724 items, rank 32), as ExchangeStream and
// round.Fetch run it: each chunk's body decoded into one ModelChunk, then
// checked, converted and hashed into a reused buffer by a ModelBuilder.
func BenchmarkModelDownload(b *testing.B) {
	m, err := model.New(model.Explicit, 9724, 32, 3.5, 0.1, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		b.Fatal(err)
	}
	h, cs := SplitModel32(m, 2, 1)
	bodies := make([][]byte, len(cs))
	for i, c := range cs {
		if bodies[i], err = marshal(c); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]float64, len(m.Params))
	chunk := &ModelChunk{}
	b.ReportAllocs()
	b.SetBytes(int64(4 * len(m.Params)))
	for b.Loop() {
		mb, err := NewModelBuilderInto(h, buf)
		if err != nil {
			b.Fatal(err)
		}
		for _, body := range bodies {
			*chunk = ModelChunk{Params32: chunk.Params32[:0]}
			if err := decodeInto(body, chunk); err != nil {
				b.Fatal(err)
			}
			if err := mb.Add(chunk); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := mb.Model(); err != nil {
			b.Fatal(err)
		}
	}
}
