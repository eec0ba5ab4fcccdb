package wire

import (
	"bytes"
	"io"
	"reflect"
	"testing"
)

// FuzzDecodeFrame: any bytes read as a frame either fail with an error or
// give a valid message that re-encodes to a frame decoding to the same
// message.
func FuzzDecodeFrame(f *testing.F) {
	for _, b := range goldenFiles(f, "msg_*.golden") {
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0, 5, byte(TypeUpload), 0xdd, 0xff, 0xff, 0xff, 0xff})
	for _, b := range badEventFrames() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := Read(bytes.NewReader(b), Limits{MaxParams: 1 << 16})
		if err != nil {
			return
		}
		roundTrip(t, msg)
	})
}

func roundTrip(t *testing.T, msg Message) {
	b, err := Encode(msg)
	if err != nil {
		t.Fatalf("Encode(decoded %T) = %v", msg, err)
	}
	again, err := Read(bytes.NewReader(b), Limits{MaxParams: 1 << 16})
	if err != nil {
		t.Fatalf("Read(Encode(decoded %T)) = %v", msg, err)
	}
	if !reflect.DeepEqual(normalize(again), normalize(msg)) {
		t.Fatalf("round trip changed %+v to %+v", msg, again)
	}
}

// normalize maps empty slices to nil so that DeepEqual compares content.
func normalize(m Message) Message {
	b, _ := marshal(m)
	return &rawMessage{b}
}

type rawMessage struct{ b []byte }

func (*rawMessage) Type() Type      { return 0 }
func (*rawMessage) Validate() error { return nil }

// FuzzDecodeMessage fuzzes each message decoder with its type byte.
func FuzzDecodeMessage(f *testing.F) {
	for _, b := range goldenFiles(f, "msg_*.golden") {
		f.Add(b[4], b[HeaderLen:])
	}
	for _, b := range badEventFrames() {
		f.Add(b[4], b[HeaderLen:])
	}
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		msg, err := Decode(Type(typ), body)
		if err != nil {
			if CodeOf(err) == 0 {
				t.Fatalf("Decode error %v carries no code", err)
			}
			return
		}
		roundTrip(t, msg)
	})
}

// FuzzDecodeCommand: a log command either fails to decode or re-encodes to
// the same bytes' meaning.
func FuzzDecodeCommand(f *testing.F) {
	for _, b := range goldenFiles(f, "cmd_*.golden") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		again, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := DecodeCommand(again)
		if err != nil {
			t.Fatalf("DecodeCommand(EncodeCommand(decoded)) = %v", err)
		}
		b2, _ := EncodeCommand(c2)
		if !bytes.Equal(again, b2) {
			t.Fatal("command encoding is not stable")
		}
	})
}

// FuzzSnapshot: a snapshot reader never panics or over-allocates.
func FuzzSnapshot(f *testing.F) {
	for _, b := range goldenFiles(f, "snapshot*.golden") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewSnapshotReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		for range 1000 {
			if _, err := r.Next(); err != nil {
				if err == io.EOF {
					return
				}
				return
			}
		}
	})
}

// FuzzCheck: whatever Check accepts, msgpack can skip without error.
func FuzzCheck(f *testing.F) {
	for _, b := range goldenFiles(f, "msg_*.golden") {
		f.Add(b[HeaderLen:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if Check(b) != nil {
			return
		}
		var v any
		if err := unmarshal(b, &v); err != nil && CodeOf(err) == 0 {
			t.Fatalf("unmarshal of checked bytes: %v", err)
		}
	})
}
