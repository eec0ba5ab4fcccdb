package hostile

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// Bound is docs/security.md's worst case M(N) of the memory n hostile
// devices can make a node hold beyond what it holds serving honest
// devices, for a node with memory budget budget of which one device may
// reserve deviceMax: their reservations (request bodies and decoded
// messages), QUIC's flow-control windows of each device's 4 connections
// (4 MiB each at most), and the state of those connections (256 KiB
// each) and of their 8 streams' goroutines (64 KiB each).
func Bound(n int, budget, deviceMax int64) int64 {
	const conns, streams = 4, 4 * wire.MaxStreams
	return min(budget, int64(n)*deviceMax) + int64(n)*(conns*(4<<20+256<<10)+streams*64<<10)
}

// Device is one device with a valid certificate that attacks a node on
// its four connections until ctx ends, each connection redialled when
// the node closes it (Run):
//   - slow uploads: 8 streams of maximum-size uploads and 1 MiB
//     secure-aggregation messages sent a byte every 200 ms, opened again
//     as soon as they are refused or cut off;
//   - fast uploads: a full upload every 300 ms, decoded and refused by
//     the node (its round is not open), on two streams;
//   - lies: a maximum-size upload header and 64 KiB, then nothing; a
//     check-in declaring 16 KiB that sends 10 bytes;
//   - junk: oversized and unknown frames, garbage, requests followed by
//     extra bytes, model downloads it never reads, a fifth connection
//     now and then (which closes its oldest);
//   - amplification: the bodies that decode to the most per byte
//     (Amplifiers), sent as fast as they are answered;
//   - a flood of connections: a new one every 500 ms (the node closes
//     the device's oldest beyond 4), each opening its 8 streams.
type Device struct {
	addr    string
	conf    *tls.Config
	big     []byte   // a maximum-size upload header
	upload  []byte   // a complete upload of this device
	amp     [][]byte // Amplifiers(id)
	sent    atomic.Int64
	replies sync.Map // code → *atomic.Int64
}

// New returns device id, which dials addr with conf (its certificate),
// against a node whose model has dim parameters.
func New(addr string, conf *tls.Config, id string, dim int) *Device {
	upload, err := wire.Encode(&wire.Upload{Version: wire.Version, Round: 1 << 40, ClientID: id, Ticket: make([]byte, wire.TicketLen), Model: 1,
		Delta: make(wire.Vec, dim)})
	if err != nil {
		panic(err) // a valid message
	}
	return &Device{addr: addr, conf: conf, big: Header(wire.TypeUpload, wire.Limits{MaxParams: dim}.MaxBody(wire.TypeUpload)),
		upload: upload, amp: Amplifiers(id)}
}

// Sent returns the bytes of bodies the device has sent.
func (h *Device) Sent() int64 { return h.sent.Load() }

// Replies returns how many replies of each error code the device has
// read (0: not an error).
func (h *Device) Replies() map[wire.Code]int64 {
	m := map[wire.Code]int64{}
	h.replies.Range(func(k, v any) bool { m[k.(wire.Code)] = v.(*atomic.Int64).Load(); return true })
	return m
}

func (h *Device) dial(ctx context.Context) *quic.Conn {
	for ctx.Err() == nil {
		if c, err := wire.Dial(ctx, h.addr, h.conf); err == nil {
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func (h *Device) count(msg wire.Message) {
	code := wire.Code(0)
	if e, ok := msg.(*wire.Error); ok {
		code = e.Code
	}
	v, _ := h.replies.LoadOrStore(code, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// loop runs attack on a connection, redialling when the connection dies,
// until ctx ends.
func (h *Device) loop(ctx context.Context, wg *sync.WaitGroup, streams int, attack func(conn *quic.Conn) error) {
	var mu sync.Mutex
	var conn *quic.Conn
	get := func() *quic.Conn {
		mu.Lock()
		defer mu.Unlock()
		if conn == nil || conn.Context().Err() != nil {
			conn = h.dial(ctx)
		}
		return conn
	}
	for range streams {
		wg.Go(func() {
			for ctx.Err() == nil {
				c := get()
				if c == nil {
					return
				}
				if attack(c) != nil {
					// Refused or cut off. A real attacker would come back
					// at once; this one waits, so that a loaded machine's
					// two cores still run the node and the honest devices.
					time.Sleep(time.Second)
				}
			}
		})
	}
	wg.Go(func() {
		<-ctx.Done()
		mu.Lock()
		defer mu.Unlock()
		if conn != nil {
			conn.CloseWithError(0, "")
		}
	})
}

// Run starts the attack on wg's goroutines, which end with ctx.
func (h *Device) Run(ctx context.Context, wg *sync.WaitGroup) {
	// Slow uploads, and slow secure-aggregation messages of 1 MiB (the
	// largest request that is not an upload: 14 MiB of the budget each).
	var slow atomic.Int64
	h.loop(ctx, wg, wire.MaxStreams, func(conn *quic.Conn) error {
		b := h.big
		if slow.Add(1)%2 == 0 {
			b = Header(wire.TypeSecAggShares, 1<<20)
		}
		st, err := Send(ctx, conn, b)
		if err != nil {
			return err
		}
		defer st.CancelRead(0)
		defer st.CancelWrite(0)
		for ctx.Err() == nil {
			if _, err := st.Write([]byte{0}); err != nil {
				return err
			}
			h.sent.Add(1)
			time.Sleep(200 * time.Millisecond)
		}
		return nil
	})
	// Fast uploads.
	h.loop(ctx, wg, 2, func(conn *quic.Conn) error {
		st, err := Send(ctx, conn, h.upload)
		if err != nil {
			return err
		}
		h.sent.Add(int64(len(h.upload)))
		st.Close()
		msg, err := Reply(st, 40*time.Second)
		h.count(msg)
		time.Sleep(300 * time.Millisecond)
		return err
	})
	// Lies.
	h.loop(ctx, wg, 2, func(conn *quic.Conn) error {
		st, err := Send(ctx, conn, append(append([]byte(nil), h.big...), make([]byte, 64<<10)...))
		if err != nil {
			return err
		}
		h.sent.Add(64 << 10)
		msg, _ := Reply(st, 40*time.Second) // cut off
		h.count(msg)
		st.CancelWrite(0)
		if st, err = Send(ctx, conn, append(Header(wire.TypeCheckIn, 16<<10), "0123456789"...)); err != nil {
			return err
		}
		msg, err = Reply(st, 40*time.Second)
		h.count(msg)
		st.CancelWrite(0)
		return err
	})
	// Junk.
	getModel := mustEncode(&wire.GetModel{Version: wire.Version})
	junk := [][]byte{
		Header(wire.TypeUpload, 1<<30),
		append(Header(200, 1), 0x80),
		append(Header(wire.TypeCheckIn, 2), 0xc1, 0xc1),
		append(Header(wire.TypeCheckIn, 5), 0xdd, 0xff, 0xff, 0xff, 0xff),
		append(append([]byte(nil), getModel...), "and more"...),
	}
	var i atomic.Int64
	h.loop(ctx, wg, 4, func(conn *quic.Conn) error {
		k := int(i.Add(1))
		if k%10 == 0 { // a download it never reads
			st, err := Send(ctx, conn, getModel)
			if err != nil {
				return err
			}
			st.Close()
			select {
			case <-ctx.Done():
			case <-time.After(3 * time.Second):
			}
			st.CancelRead(0)
			return nil
		}
		if k%25 == 0 { // a fifth connection: the node closes the oldest
			if c := h.dial(ctx); c != nil {
				time.Sleep(500 * time.Millisecond)
				c.CloseWithError(0, "")
			}
			return nil
		}
		st, err := Send(ctx, conn, junk[k%len(junk)])
		if err != nil {
			return err
		}
		st.Close()
		msg, err := Reply(st, 10*time.Second)
		h.count(msg)
		time.Sleep(50 * time.Millisecond)
		return err
	})
	// Amplification.
	var j atomic.Int64
	h.loop(ctx, wg, 4, func(conn *quic.Conn) error {
		b := h.amp[int(j.Add(1))%len(h.amp)]
		st, err := Send(ctx, conn, b)
		if err != nil {
			return err
		}
		h.sent.Add(int64(len(b)))
		st.Close()
		msg, err := Reply(st, 40*time.Second)
		h.count(msg)
		return err
	})
	// A flood of connections, each opening its 8 streams of check-ins
	// that declare 16 KiB and send 10 bytes.
	wg.Go(func() {
		lie := append(Header(wire.TypeCheckIn, 16<<10), "0123456789"...)
		for ctx.Err() == nil {
			if c := h.dial(ctx); c != nil {
				for range wire.MaxStreams {
					octx, cancel := context.WithTimeout(ctx, time.Second)
					Send(octx, c, lie)
					cancel()
				}
				context.AfterFunc(ctx, func() { c.CloseWithError(0, "") })
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
}

// Header returns the 5-byte header of a frame of type t with an n-byte
// body.
func Header(t wire.Type, n int) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(n)), byte(t))
}

// Send writes b on a new stream of conn and returns the stream.
func Send(ctx context.Context, conn *quic.Conn, b []byte) (*quic.Stream, error) {
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := st.Write(b); err != nil {
		return nil, err
	}
	return st, nil
}

// Reply reads one reply from st within d.
func Reply(st *quic.Stream, d time.Duration) (wire.Message, error) {
	st.SetReadDeadline(time.Now().Add(d))
	defer st.CancelRead(0)
	return wire.Read(st, wire.Limits{})
}

// Hand-made msgpack, for bodies no encoder would write.
func mpStr(s string) []byte {
	if len(s) <= 31 {
		return append([]byte{0xa0 | byte(len(s))}, s...)
	}
	return append(binary.BigEndian.AppendUint16([]byte{0xda}, uint16(len(s))), s...)
}

func mpMap(n int) []byte    { return binary.BigEndian.AppendUint16([]byte{0xde}, uint16(n)) }
func mpArr(n int) []byte    { return binary.BigEndian.AppendUint32([]byte{0xdd}, uint32(n)) }
func mpBin(b []byte) []byte { return append([]byte{0xc4, byte(len(b))}, b...) }

// frameOf returns the frame of type t with body b.
func frameOf(t wire.Type, b []byte) []byte { return append(Header(t, len(b)), b...) }

// Amplifiers returns device id's worst bodies for the node's decoder,
// each type's worst from wire's TestDecodeAllocBound and more: arrays at
// their most elements of the smallest elements the pre-check lets
// through (SecAggUnmask's 19-byte shares: 10× their bytes decoded;
// SecAggShares' 16-byte padded ones), arrays of nil at the most
// elements (refused by the shape check), the most unknown keys and the
// deepest nesting, every type a node never receives sent as a request
// with a 1 MiB body (refused from the header), and versions 65537 and
// -1 (refused, never narrowed).
func Amplifiers(id string) [][]byte {
	head := cat(mpStr("v"), []byte{1}, mpStr("round"), []byte{0xcf, 0, 0, 1, 0, 0, 0, 0, 0}, mpStr("client"), mpStr(id), mpStr("ticket"), mpBin(make([]byte, wire.TicketLen)))
	share := cat([]byte{0x82}, mpStr("peer"), []byte{0}, mpStr("value"), []byte{0x95, 0, 0, 0, 0, 0}) // 19 bytes
	shares := func(n int) []byte { return cat(mpArr(n), bytes.Repeat(share, n)) }
	padded := cat([]byte{0x81}, mpStr("_"), mpStr(strings.Repeat("x", 12))) // 16 bytes
	unmask := cat([]byte{0x86}, head, mpStr("self_mask_shares"), shares(wire.MaxSecAggPeers), mpStr("mask_key_shares"), shares(wire.MaxSecAggPeers))
	sealed := cat([]byte{0x85}, head, mpStr("shares"), mpArr(wire.MaxSecAggPeers), bytes.Repeat(padded, wire.MaxSecAggPeers))
	nils := cat([]byte{0x85}, head, mpStr("shares"), mpArr(wire.MaxSecAggPeers), bytes.Repeat([]byte{0xc0}, wire.MaxSecAggPeers))
	var unknown []byte // the most unknown keys of nil a map16 holds
	for range 1<<16 - 1 {
		unknown = append(unknown, 0xa1, '_', 0xc0)
	}
	unknown = cat(mpMap(1<<16-1), unknown)
	deep := cat(bytes.Repeat([]byte{0x91}, wire.MaxDepth-2), []byte{0xc0})
	var nested []byte
	k := 0
	for ; len(nested)+len(deep)+3 < 15<<10; k++ {
		nested = append(append(nested, 0xa1, '_'), deep...)
	}
	nested = cat(mpMap(k), nested)
	big := cat(mpArr(1<<20-5), bytes.Repeat([]byte{0xc0}, 1<<20-5))
	checkIn := func(v []byte) []byte { return cat([]byte{0x82}, mpStr("v"), v, mpStr("client"), mpStr(id)) }
	return [][]byte{
		frameOf(wire.TypeSecAggUnmask, unmask),
		frameOf(wire.TypeSecAggShares, sealed),
		frameOf(wire.TypeSecAggShares, nils),
		frameOf(wire.TypeSecAggShares, unknown),
		frameOf(wire.TypeCheckIn, nested),
		frameOf(wire.TypeSecAggPeerKeys, big),
		frameOf(wire.TypeSecAggDelivery, big),
		frameOf(wire.TypeSecAggUnmaskRequest, big),
		frameOf(wire.TypeModelChunk, big[:512<<10]),
		frameOf(wire.TypePlan, big[:16<<10]),
		frameOf(wire.TypeCheckIn, checkIn([]byte{0xce, 0, 1, 0, 1})), // version 65537
		frameOf(wire.TypeCheckIn, checkIn([]byte{0xff})),             // version -1
	}
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func mustEncode(m wire.Message) []byte {
	b, err := wire.Encode(m)
	if err != nil {
		panic(err)
	}
	return b
}
