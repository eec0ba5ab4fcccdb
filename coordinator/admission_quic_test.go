package coordinator_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/hostile"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// A model of 2000 items at rank 3: uploads of 64 KiB, long enough to pace.
func admissionTraining() coordinator.Training {
	tr := training()
	tr.Items, tr.Rank = 2000, 3
	return tr
}

// The hostile harness's frame helpers.
var (
	header = hostile.Header
	send   = hostile.Send
	reply  = hostile.Reply
)

// upload returns the frame of an upload by id of a zero update of the
// model of tr, for a round that is not open: the node reads and decodes
// all of it, then answers CodeNoRound.
func uploadFrame(t *testing.T, id string, tr coordinator.Training) []byte {
	t.Helper()
	return mustEncode(t, &wire.Upload{Version: wire.Version, Round: 1 << 40, ClientID: id, Ticket: make([]byte, wire.TicketLen), Model: 1,
		Delta: make(wire.Vec, model.Dim(tr.Items, tr.Rank))})
}

// A request followed by more bytes on its stream is answered, and its
// stream's slot released: a connection makes three times its stream limit
// of such requests one after the other.
func TestQUICStreamExtraBytesReleased(t *testing.T) {
	c := newQUICCluster(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	conn := dialAs(t, ctx, c.addrs[0], c.device(t, "x"))
	req := append(mustEncode(t, &wire.GetModel{Version: wire.Version}), "and some bytes after the request"...)
	for i := range 3 * wire.MaxStreams {
		octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := send(octx, conn, req)
		ocancel()
		if err != nil {
			t.Fatalf("request %d: %v (the node kept the slots of earlier streams)", i, err)
		}
		st.Close()
		msg, err := reply(st, 10*time.Second)
		if _, ok := msg.(*wire.ModelHeader); !ok {
			t.Fatalf("request %d: reply %v, %v; want a model header", i, msg, err)
		}
	}
}

// An upload's body must arrive at the minimum rate after a grace period:
// one sent a byte at a time is cut off with CodeTooSlow soon after the
// grace period, and one paced above the rate is read however long it
// takes (here four times the grace period).
func TestQUICStreamUploadPace(t *testing.T) {
	tr := admissionTraining()
	const grace, rate = time.Second, 8 << 10
	c := newQUICClusterConf(t, 1, tr, func(cfg *coordinator.Config) {
		cfg.RateGrace, cfg.MinUploadRate = grace, rate
	})
	n := c.nodes[0]
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	conn := dialAs(t, ctx, c.addrs[0], c.device(t, "x"))
	frame := uploadFrame(t, "x", tr)

	t.Run("a byte at a time", func(t *testing.T) {
		st, err := send(ctx, conn, frame[:wire.HeaderLen])
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() {
			for _, b := range frame[wire.HeaderLen:] {
				if _, err := st.Write([]byte{b}); err != nil {
					return // cut off
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
		defer st.CancelWrite(0)
		// Cut off after about the grace period; the old deadline was
		// wire.ReadTimeout (30 s) from the stream's start.
		msg, err := reply(st, 20*time.Second)
		if e, ok := msg.(*wire.Error); err != nil || !ok || e.Code != wire.CodeTooSlow {
			t.Errorf("reply to a slow upload = %v, %v; want CodeTooSlow", msg, err)
		}
		if s := n.AdmissionStats(); s.Slow != 1 {
			t.Errorf("slow senders counted: %d, want 1", s.Slow)
		}
	})

	t.Run("paced above the minimum", func(t *testing.T) {
		// Twice the minimum rate, by the wall clock (a late sleep sends
		// more next time): about 4 s for 64 KiB, beyond the grace period.
		st, err := send(ctx, conn, frame[:wire.HeaderLen])
		if err != nil {
			t.Fatal(err)
		}
		body := frame[wire.HeaderLen:]
		start := time.Now()
		for sent := 0; sent < len(body); {
			due := min(len(body), int(time.Since(start).Seconds()*2*rate)+1)
			if due > sent {
				if _, err := st.Write(body[sent:due]); err != nil {
					t.Fatalf("write at %d: %v", sent, err)
				}
				sent = due
			}
			time.Sleep(50 * time.Millisecond)
		}
		st.Close()
		msg, err := reply(st, 20*time.Second)
		if e, ok := msg.(*wire.Error); err != nil || !ok || e.Code != wire.CodeNoRound {
			t.Errorf("reply to an upload paced at twice the minimum rate over %v = %v, %v; want CodeNoRound (read and decoded)", time.Since(start).Round(time.Millisecond), msg, err)
		}
	})
}

// A slow device holding as many streams as it may (4 connections × 8),
// each a maximum-size upload sent a byte at a time and opened again as
// soon as it ends, delays another device's upload by less than a second:
// it holds at most MaxUploadsPerDevice of the node's upload slots (here 8,
// which its 32 streams would otherwise all take until cut off after the
// 5 s grace period).
func TestQUICStreamSlowDeviceDelaysNoOne(t *testing.T) {
	tr := admissionTraining()
	c := newQUICClusterConf(t, 1, tr, func(cfg *coordinator.Config) {
		cfg.MaxUploads, cfg.RateGrace = 8, 5*time.Second
	})
	n := c.nodes[0]
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	alice := dialAs(t, ctx, c.addrs[0], c.device(t, "alice"))
	frame := uploadFrame(t, "alice", tr)
	timeUpload := func() time.Duration {
		start := time.Now()
		st, err := send(ctx, alice, frame)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		msg, err := reply(st, 30*time.Second)
		if e, ok := msg.(*wire.Error); err != nil || !ok || e.Code != wire.CodeNoRound {
			t.Fatalf("alice's upload: %v, %v; want CodeNoRound", msg, err)
		}
		return time.Since(start)
	}
	alone := timeUpload()

	mallory := c.device(t, "mallory")
	big := header(wire.TypeUpload, wire.Limits{MaxParams: model.Dim(tr.Items, tr.Rank)}.MaxBody(wire.TypeUpload))
	actx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	var mu sync.Mutex
	opened := 0
	for range 4 {
		conn := dialAs(t, ctx, c.addrs[0], mallory)
		for range wire.MaxStreams {
			wg.Go(func() {
				for actx.Err() == nil {
					st, err := send(actx, conn, big)
					if err != nil {
						return
					}
					mu.Lock()
					opened++
					mu.Unlock()
					for actx.Err() == nil {
						if _, err := st.Write([]byte{0}); err != nil {
							break // refused or cut off: open another
						}
						time.Sleep(200 * time.Millisecond)
					}
					st.CancelWrite(0)
					st.CancelRead(0)
					time.Sleep(100 * time.Millisecond)
				}
			})
		}
	}
	err := waitUntil(ctx, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return opened >= 4*wire.MaxStreams && n.AdmissionStats().Uploading >= 2
	})
	if err != nil {
		t.Fatalf("mallory's streams did not start: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // let every stream reach admission
	during := timeUpload()
	s := n.AdmissionStats()
	t.Logf("alice's upload: %v alone, %v beside mallory's %d streams (upload slots taken %d of 8, mallory's uploads refused %d)",
		alone.Round(time.Millisecond), during.Round(time.Millisecond), 4*wire.MaxStreams, s.Uploading, s.DeviceUploads)
	if during-alone > time.Second {
		t.Errorf("mallory delayed alice's upload by %v, want at most 1 s", (during - alone).Round(time.Millisecond))
	}
	if s.DeviceUploads == 0 {
		t.Error("no upload of mallory's refused over the per-device limit")
	}
}

// Uploads beyond the memory budget wait for it rather than grow the
// node's memory, and are then served: six devices upload at once, each
// over about a second, to a node whose budget holds two uploads.
func TestQUICStreamMemoryBudget(t *testing.T) {
	tr := admissionTraining()
	body := int64(len(uploadFrame(t, "x", tr)) - wire.HeaderLen)
	const perByte = 4 // coordinator's uploadFactor
	budget := 2*perByte*body + perByte*body/2
	c := newQUICClusterConf(t, 1, tr, func(cfg *coordinator.Config) { cfg.MemoryBudget = budget })
	n := c.nodes[0]
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var peak int64
	var pmu sync.Mutex
	sctx, stopSampling := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for sctx.Err() == nil {
			s := n.AdmissionStats()
			pmu.Lock()
			peak = max(peak, s.InUse)
			pmu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	var wg sync.WaitGroup
	codes := make([]wire.Code, 6)
	for i := range codes {
		id := string(rune('a' + i))
		conn := dialAs(t, ctx, c.addrs[0], c.device(t, id))
		frame := uploadFrame(t, id, tr)
		wg.Go(func() {
			st, err := send(ctx, conn, frame[:wire.HeaderLen])
			if err != nil {
				t.Error(err)
				return
			}
			rest := frame[wire.HeaderLen:]
			for len(rest) > 0 { // about 1 s
				k := min(len(rest), len(frame)/20)
				if _, err := st.Write(rest[:k]); err != nil {
					t.Error(err)
					return
				}
				rest = rest[k:]
				time.Sleep(50 * time.Millisecond)
			}
			st.Close()
			msg, err := reply(st, 45*time.Second)
			if e, ok := msg.(*wire.Error); err == nil && ok {
				codes[i] = e.Code
			}
		})
	}
	wg.Wait()
	stopSampling()
	sampler.Wait()
	for i, c := range codes {
		if c != wire.CodeNoRound {
			t.Errorf("upload %d: code %v, want %v (read and decoded)", i, c, wire.CodeNoRound)
		}
	}
	s := n.AdmissionStats()
	t.Logf("budget %d bytes (2.5 uploads): peak reserved %d, %d requests delayed, %d refused", budget, peak, s.Delayed, s.Busy)
	if peak > budget || peak < 2*perByte*body {
		t.Errorf("peak reserved %d bytes, want 2 uploads' %d (budget %d)", peak, 2*perByte*body, budget)
	}
	if s.Delayed == 0 {
		t.Error("no upload waited for the budget")
	}
	if s.InUse != 0 {
		t.Errorf("%d bytes still reserved after every request was answered", s.InUse)
	}
}

// One device's reservations stay within its share of the memory budget
// (Config.MaxDeviceMemory): its check-ins that declare 16 KiB and send
// nothing take its share, the next are refused at once, and another
// device is served meanwhile.
func TestQUICStreamDeviceMemory(t *testing.T) {
	tr := admissionTraining()
	c := newQUICClusterConf(t, 1, tr, func(cfg *coordinator.Config) {
		cfg.MaxDeviceMemory, cfg.RateGrace = 1<<20, 20*time.Second
	})
	n := c.nodes[0]
	// The 1 MiB cap is raised to the largest upload and 1 MiB: about
	// 1.3 MiB here, five such check-ins.
	deviceMax := n.DeviceMax()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var refused int
	var streams []*quic.Stream
	for range 2 {
		conn := dialAs(t, ctx, c.addrs[0], c.device(t, "mallory"))
		for range wire.MaxStreams {
			st, err := send(ctx, conn, append(header(wire.TypeCheckIn, 16<<10), 0x80))
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, st)
		}
	}
	defer func() {
		for _, st := range streams {
			st.CancelWrite(0)
			st.CancelRead(0)
		}
	}()
	var peak int64
	err := waitUntil(ctx, 20*time.Second, func() bool {
		s := n.AdmissionStats()
		peak = max(peak, s.InUse)
		refused = s.DeviceMemory
		return int64(2*wire.MaxStreams-refused)*int64(14*(16<<10)) <= s.InUse && refused > 0
	})
	if err != nil {
		t.Fatalf("mallory's check-ins: %d reserved bytes, %d refused over the device's share (%v)", n.AdmissionStats().InUse, refused, err)
	}
	// Another device is served.
	alice := dialAs(t, ctx, c.addrs[0], c.device(t, "alice"))
	st, err := send(ctx, alice, mustEncode(t, &wire.GetModel{Version: wire.Version}))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if msg, err := reply(st, 20*time.Second); err != nil || msg.Type() != wire.TypeModelHeader {
		t.Errorf("alice's download beside mallory: %v, %v; want a model header", msg, err)
	}
	s := n.AdmissionStats()
	peak = max(peak, s.InUse)
	t.Logf("mallory's %d check-ins of 16 KiB: %d refused over its share of %d bytes; %d bytes reserved at most", 2*wire.MaxStreams, refused, deviceMax, peak)
	if peak > deviceMax+64<<10 { // alice's download
		t.Errorf("one device reserved %d bytes, over its share of %d", peak, deviceMax)
	}
}

// A device that sends requests faster than its rate, after its burst,
// has them refused from the header with CodeUnavailable and the time
// until its next token, and served again after that time; another
// device is served meanwhile.
func TestQUICDeviceRequestRate(t *testing.T) {
	const rate, burst = 2, 5
	c := newQUICClusterConf(t, 1, training(), func(cfg *coordinator.Config) {
		cfg.DeviceRequestRate, cfg.DeviceRequestBurst = rate, burst
	})
	n := c.nodes[0]
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	junk := append(header(wire.TypeCheckIn, 2), 0xc1, 0xc1) // answered CodeMalformed
	ask := func(conn *quic.Conn) *wire.Error {
		t.Helper()
		st, err := send(ctx, conn, junk)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		msg, err := reply(st, 10*time.Second)
		e, ok := msg.(*wire.Error)
		if err != nil || !ok {
			t.Fatalf("reply = %v, %v; want an error", msg, err)
		}
		return e
	}
	fast := dialAs(t, ctx, c.addrs[0], c.device(t, "fast"))
	other := dialAs(t, ctx, c.addrs[0], c.device(t, "other"))
	start := time.Now()
	var served int
	var refused *wire.Error
	for range 3 * burst {
		switch e := ask(fast); e.Code {
		case wire.CodeMalformed:
			served++
		case wire.CodeUnavailable:
			refused = e
		default:
			t.Fatalf("reply %v, want CodeMalformed or CodeUnavailable", e)
		}
	}
	if most := burst + int(time.Since(start).Seconds()*rate) + 1; refused == nil || served > most {
		t.Fatalf("%d of %d requests in %v served, want at most %d, the rest refused (CodeUnavailable)", served, 3*burst, time.Since(start).Round(time.Millisecond), most)
	}
	if refused.RetryAfterMs <= 0 || refused.RetryAfterMs > 1000/rate+1 {
		t.Errorf("refusal's RetryAfterMs = %d, want in (0, %d]", refused.RetryAfterMs, 1000/rate+1)
	}
	if e := ask(other); e.Code != wire.CodeMalformed {
		t.Errorf("another device's request: %v, want served (CodeMalformed)", e)
	}
	time.Sleep(time.Duration(refused.RetryAfterMs) * time.Millisecond)
	if e := ask(fast); e.Code != wire.CodeMalformed {
		t.Errorf("after RetryAfterMs: %v, want served (CodeMalformed)", e)
	}
	if s := n.AdmissionStats(); s.DeviceRate == 0 {
		t.Errorf("no refusal counted for the device's rate (fedrec_admission_refused_total{reason=\"device_rate\"})")
	}
}
