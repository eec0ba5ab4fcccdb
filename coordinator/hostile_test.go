package coordinator_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// hostileBound is docs/security.md's worst case of the memory n hostile
// devices can make a node hold beyond its idle state, for a node with
// memory budget budget of which one device may reserve deviceMax: their
// reservations (request bodies and decoded messages), QUIC's
// flow-control windows of each device's 4 connections (4 MiB each at
// most), and the state of those connections (256 KiB each) and of their
// 8 streams' goroutines (64 KiB each).
func hostileBound(n int, budget, deviceMax int64) int64 {
	const conns, streams = 4, 4 * wire.MaxStreams
	return min(budget, int64(n)*deviceMax) + int64(n)*(conns*(4<<20+256<<10)+streams*64<<10)
}

// hostileDevice is one device with a valid certificate that attacks the
// node on its four connections until ctx ends, each connection redialled
// when the node closes it:
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
//     (amplifiers), sent as fast as they are answered;
//   - a flood of connections: a new one every 500 ms (the node closes
//     the device's oldest beyond 4), each opening its 8 streams.
type hostileDevice struct {
	addr    string
	conf    *tls.Config
	big     []byte   // a maximum-size upload header
	upload  []byte   // a complete upload of this device
	amp     [][]byte // amplifiers(id)
	sent    atomic.Int64
	replies sync.Map // code → count
}

func (h *hostileDevice) dial(ctx context.Context) *quic.Conn {
	for ctx.Err() == nil {
		if c, err := wire.Dial(ctx, h.addr, h.conf); err == nil {
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func (h *hostileDevice) count(msg wire.Message) {
	code := wire.Code(0)
	if e, ok := msg.(*wire.Error); ok {
		code = e.Code
	}
	v, _ := h.replies.LoadOrStore(code, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// loop runs attack on a connection, redialling when the connection dies,
// until ctx ends.
func (h *hostileDevice) loop(ctx context.Context, wg *sync.WaitGroup, streams int, attack func(conn *quic.Conn) error) {
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

func (h *hostileDevice) run(ctx context.Context, wg *sync.WaitGroup) {
	// Slow uploads, and slow secure-aggregation messages of 1 MiB (the
	// largest request that is not an upload: 14 MiB of the budget each).
	var slow atomic.Int64
	h.loop(ctx, wg, wire.MaxStreams, func(conn *quic.Conn) error {
		b := h.big
		if slow.Add(1)%2 == 0 {
			b = header(wire.TypeSecAggShares, 1<<20)
		}
		st, err := send(ctx, conn, b)
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
		st, err := send(ctx, conn, h.upload)
		if err != nil {
			return err
		}
		h.sent.Add(int64(len(h.upload)))
		st.Close()
		msg, err := reply(st, 40*time.Second)
		h.count(msg)
		time.Sleep(300 * time.Millisecond)
		return err
	})
	// Lies.
	h.loop(ctx, wg, 2, func(conn *quic.Conn) error {
		st, err := send(ctx, conn, append(append([]byte(nil), h.big...), make([]byte, 64<<10)...))
		if err != nil {
			return err
		}
		h.sent.Add(64 << 10)
		msg, _ := reply(st, 40*time.Second) // cut off
		h.count(msg)
		st.CancelWrite(0)
		if st, err = send(ctx, conn, append(header(wire.TypeCheckIn, 16<<10), "0123456789"...)); err != nil {
			return err
		}
		msg, err = reply(st, 40*time.Second)
		h.count(msg)
		st.CancelWrite(0)
		return err
	})
	// Junk.
	getModel := mustEncodeMsg(&wire.GetModel{Version: wire.Version})
	junk := [][]byte{
		header(wire.TypeUpload, 1<<30),
		append(header(200, 1), 0x80),
		append(header(wire.TypeCheckIn, 2), 0xc1, 0xc1),
		append(header(wire.TypeCheckIn, 5), 0xdd, 0xff, 0xff, 0xff, 0xff),
		append(append([]byte(nil), getModel...), "and more"...),
	}
	var i atomic.Int64
	h.loop(ctx, wg, 4, func(conn *quic.Conn) error {
		k := int(i.Add(1))
		if k%10 == 0 { // a download it never reads
			st, err := send(ctx, conn, getModel)
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
		st, err := send(ctx, conn, junk[k%len(junk)])
		if err != nil {
			return err
		}
		st.Close()
		msg, err := reply(st, 10*time.Second)
		h.count(msg)
		time.Sleep(50 * time.Millisecond)
		return err
	})
	// Amplification.
	var j atomic.Int64
	h.loop(ctx, wg, 4, func(conn *quic.Conn) error {
		b := h.amp[int(j.Add(1))%len(h.amp)]
		st, err := send(ctx, conn, b)
		if err != nil {
			return err
		}
		h.sent.Add(int64(len(b)))
		st.Close()
		msg, err := reply(st, 40*time.Second)
		h.count(msg)
		return err
	})
	// A flood of connections, each opening its 8 streams of check-ins
	// that declare 16 KiB and send 10 bytes.
	wg.Go(func() {
		lie := append(header(wire.TypeCheckIn, 16<<10), "0123456789"...)
		for ctx.Err() == nil {
			if c := h.dial(ctx); c != nil {
				for range wire.MaxStreams {
					octx, cancel := context.WithTimeout(ctx, time.Second)
					send(octx, c, lie)
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
func frameOf(t wire.Type, b []byte) []byte { return append(header(t, len(b)), b...) }

// amplifiers returns device id's worst bodies for the node's decoder,
// each type's worst from wire's TestDecodeAllocBound and more: arrays at
// their most elements of the smallest elements the pre-check lets
// through (SecAggUnmask's 19-byte shares: 10× their bytes decoded;
// SecAggShares' 16-byte padded ones), arrays of nil at the most
// elements (refused by the shape check), the most unknown keys and the
// deepest nesting, every type a node never receives sent as a request
// with a 1 MiB body (refused from the header), and versions 65537 and
// -1 (refused, never narrowed).
func amplifiers(id string) [][]byte {
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

func mustEncodeMsg(m wire.Message) []byte {
	b, err := wire.Encode(m)
	if err != nil {
		panic(err)
	}
	return b
}

// memPeak samples the process's memory until stop is called and returns
// the peaks of its live heap (runtime/metrics /gc/heap/live, as of the
// last collection) with goroutine stacks: what the node holds, which
// docs/security.md's worst case bounds; of all heap objects, live or not
// yet collected (up to twice the live heap at GOGC=100); and of its
// resident memory (VmRSS; under -race it counts the detector's shadow
// memory too, several times the heap).
func memPeak() (stop func() (live, heap, rss uint64)) {
	done := make(chan struct{})
	var live, heap, rss uint64
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			metrics.Read(samples)
			live = max(live, samples[0].Value.Uint64()+samples[1].Value.Uint64())
			heap = max(heap, samples[2].Value.Uint64()+samples[1].Value.Uint64())
			rss = max(rss, vmRSS())
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return func() (uint64, uint64, uint64) { close(done); wg.Wait(); return live, heap, rss }
}

// vmRSS returns the process's resident memory, 0 if unknown.
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// A live node, 6 honest devices training, and hostile devices with
// valid certificates attacking it (hostileDevice.run) for at least 10 s
// and until an honest round has committed during the attack (at most
// 60 s): the node's live heap and stacks grow by at most docs/security.md's
// worst case for that many devices (hostileBound; this process is the
// node, and its test clients are counted too), at most 64 MiB for one
// device, and honest devices complete rounds during the attack.
// One device meets a node with a 64 MiB budget and the default share of
// it per device (32 MiB); ten meet a share of 5 MiB (two uploads) of a
// 96 MiB budget, so that together they take at most 50 MiB of it
// (docs/security.md: budget / share is how many hostile devices it takes
// to fill it).
//
//	go test -race -count=1 -run TestQUICHostileDevices -v ./coordinator/
func TestQUICHostileDevices(t *testing.T) {
	for _, tc := range []struct {
		devices           int
		budget, deviceMem int64 // deviceMem 0: the default
	}{{1, 64 << 20, 0}, {10, 96 << 20, 5 << 20}} {
		t.Run(fmt.Sprintf("%d devices", tc.devices), func(t *testing.T) { hostileDevices(t, tc.devices, tc.budget, tc.deviceMem) })
	}
}

func hostileDevices(t *testing.T, hostile int, budget, deviceMem int64) {
	tr := training()
	tr.Items, tr.Rank = 4000, 15 // 64,001 parameters: 512 KB uploads
	tr.RoundTimeout = 10 * time.Second
	c := newQUICClusterConf(t, 1, tr, func(cfg *coordinator.Config) {
		cfg.MemoryBudget, cfg.MaxDeviceMemory, cfg.RateGrace = budget, deviceMem, 3*time.Second
	})
	n := c.nodes[0]
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	version := func() (v uint64) {
		n.View(func(s *coordinator.State) { v = s.Current().Version })
		return v
	}
	hctx, stopHonest := context.WithCancel(ctx)
	honest, res := runClients(t, hctx, c, 6)
	defer func() { stopHonest(); honest.Wait() }()
	if err := n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current().Version >= 3 }); err != nil {
		t.Fatalf("honest devices did not train: %v", err)
	}

	dim := model.Dim(tr.Items, tr.Rank)
	big := header(wire.TypeUpload, wire.Limits{MaxParams: dim}.MaxBody(wire.TypeUpload))
	devs := make([]*hostileDevice, hostile)
	for i := range devs {
		id := fmt.Sprintf("evil%d", i)
		devs[i] = &hostileDevice{addr: c.addrs[0], conf: c.device(t, id), big: big, upload: uploadFrame(t, id, tr), amp: amplifiers(id)}
	}
	// The baseline: the peaks of 5 s of honest traffic alone.
	runtime.GC()
	honestPeak := memPeak()
	time.Sleep(5 * time.Second)
	baseLive, baseHeap, baseRSS := honestPeak()
	v0, r0 := version(), res.n.Load()
	peak := memPeak()
	actx, stopAttack := context.WithTimeout(ctx, 60*time.Second)
	defer stopAttack()
	var wg sync.WaitGroup
	start := time.Now()
	for _, d := range devs {
		d.run(actx, &wg)
	}
	// At least 10 s, and until an honest round commits.
	minimum := time.After(10 * time.Second)
	select {
	case <-minimum:
	case <-actx.Done():
	}
	n.WaitFor(actx, func(s *coordinator.State) bool { return s.Current().Version > v0 })
	v1, r1 := version(), res.n.Load()
	took := time.Since(start)
	stopAttack()
	wg.Wait()
	topLive, topHeap, topRSS := peak()

	var sent int64
	codes := map[wire.Code]int64{}
	for _, d := range devs {
		sent += d.sent.Load()
		d.replies.Range(func(k, v any) bool { codes[k.(wire.Code)] += v.(*atomic.Int64).Load(); return true })
	}
	grew := int64(topLive) - int64(baseLive)
	bound := hostileBound(hostile, budget, n.DeviceMax())
	if hostile == 1 {
		bound = min(bound, 64<<20)
	}
	s := n.AdmissionStats()
	t.Logf("%d hostile devices for %v beside 6 honest ones: peak live heap+stacks %.1f MiB with honest devices alone, %.1f MiB under attack: +%.1f MiB (bound +%.1f MiB: budget %d MiB, a device's share %.1f MiB); all heap objects+stacks %.1f → %.1f MiB: +%.1f MiB; resident (VmRSS, with the race detector's shadow if -race) %.1f → %.1f MiB: +%.1f MiB",
		hostile, took.Round(100*time.Millisecond), mib(baseLive), mib(topLive), float64(grew)/(1<<20), float64(bound)/(1<<20), budget>>20, float64(n.DeviceMax())/(1<<20),
		mib(baseHeap), mib(topHeap), (float64(topHeap)-float64(baseHeap))/(1<<20),
		mib(baseRSS), mib(topRSS), (float64(topRSS)-float64(baseRSS))/(1<<20))
	t.Logf("honest: %d rounds committed and %d round results during the attack; hostile: %.1f MiB sent, replies by code %v", v1-v0, r1-r0, float64(sent)/(1<<20), codes)
	t.Logf("node: %d requests delayed, refused %d busy, %d over the per-device upload limit, %d over the device's memory share, %d too large; %d slow senders cut off; %d bytes still reserved",
		s.Delayed, s.Busy, s.DeviceUploads, s.DeviceMemory, s.TooLarge, s.Slow, s.InUse)
	if grew > bound {
		t.Errorf("live heap and stacks grew by %.1f MiB under %d hostile devices, bound %.1f MiB", float64(grew)/(1<<20), hostile, float64(bound)/(1<<20))
	}
	if v1 == v0 {
		t.Errorf("honest devices committed no round during %v of attack", took.Round(time.Second))
	}
	// Slow senders are cut off only after 3 s + 64 KiB at 16 KiB/s or
	// more, and the attack may end before (TestQUICStreamUploadPace).
	if s.DeviceUploads == 0 || s.DeviceMemory == 0 {
		t.Errorf("the attack was not felt: %d uploads over the per-device limit, %d requests over the device's share", s.DeviceUploads, s.DeviceMemory)
	}
	for _, code := range []wire.Code{wire.CodeUnknownType, wire.CodeMalformed} {
		if codes[code] == 0 {
			t.Errorf("no hostile request answered %v: the amplifiers did not reach the node", code)
		}
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
