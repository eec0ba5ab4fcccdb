package deviceapi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// Admission of device traffic (docs/security.md, "Memory and upload
// capacity"): every request reserves what it may hold in memory from the
// node's budget before its body is read, uploads also take one of
// MaxUploads slots and one of their device's MaxUploadsPerDevice, and
// every body must arrive at MinUploadRate or better.
const (
	// DefaultMemoryBudget bounds the bytes of device traffic a node holds
	// (Config.MemoryBudget): eight concurrent uploads of the largest
	// model (wire.DefaultMaxParams, 32 MiB each) at uploadFactor.
	DefaultMemoryBudget = 1 << 30
	// DefaultMaxUploadsPerDevice bounds one device's uploads read at once
	// (Config.MaxUploadsPerDevice): an honest device uploads once a round;
	// the second covers a retry while the first is being cut off.
	DefaultMaxUploadsPerDevice = 2
	// DefaultMinUploadRate is the slowest a request's body may arrive, in
	// bytes per second, after DefaultRateGrace (Config.MinUploadRate):
	// 128 kbit/s, below any network a phone trains on.
	DefaultMinUploadRate = 16 << 10
	// DefaultRateGrace is how long a request may take before the
	// minimum rate applies (Config.RateGrace): its header must arrive
	// within it, and a body of n bytes within RateGrace + n/MinUploadRate.
	DefaultRateGrace = 10 * time.Second
	// DefaultMaxDeviceMemory bounds the bytes of the budget one device
	// certificate reserves at once (Config.MaxDeviceMemory): with the
	// 19 MiB its 4 connections' QUIC windows and 32 streams may hold
	// beside it, one device stays under 64 MiB (docs/security.md). It
	// holds an upload of a model of 1 M parameters (32 bytes a
	// parameter) or two secure-aggregation messages of 1 MiB; it is
	// raised to one upload of the model and 1 MiB when that is more.
	DefaultMaxDeviceMemory = 32 << 20
	// DefaultDeviceRequestRate and DefaultDeviceRequestBurst bound the
	// requests one device certificate sends (Config.DeviceRequestRate,
	// Config.DeviceRequestBurst): a token bucket of 100 refilled at 20 a
	// second. An honest device sends a handful a round (a check-in, a
	// model download, an upload; some more in secure rounds), and rounds
	// last seconds; a hostile one would send them as fast as the node
	// answers. The burst is large because a loaded device or network
	// bunches an honest device's requests (TestHostileDevicesProcess's
	// honest devices, running rounds every 150 ms, met a burst of 40).
	DefaultDeviceRequestRate  = 20
	DefaultDeviceRequestBurst = 100

	// uploadFactor is what an upload (or a masked input) allocates per
	// byte of its body, from its header to its answer: the body buffer
	// as it doubles (2× in all), and its decode, which wire bounds for
	// these types by wire.VectorAllocPerByte (2: msgpack's copy of the
	// bin and the decoded vector; wire/DESIGN.md, invariant 4,
	// TestDecodeAllocBound); the aggregator adds it in place.
	// BenchmarkReadUpload measures 4.0.
	uploadFactor = 2 + wire.VectorAllocPerByte
	// smallFactor is what any other request allocates per byte of its
	// body: the body buffer (2×) and its decode, which wire bounds by
	// wire.AllocPerByte (12) for every type (the worst, SecAggUnmask's
	// minimal shares, measures 10.1×); at most 16 KiB or 1 MiB (SecAgg)
	// a body.
	smallFactor = 2 + wire.AllocPerByte
	// requestSlack is a request's fixed cost: its decode's
	// (wire.RequestAllocSlack, which TestDecodeAllocBound checks for
	// every request type) and its 5-byte header at either factor.
	requestSlack = wire.RequestAllocSlack + smallFactor*wire.HeaderLen
	// admitWait bounds how long a request waits for an upload slot or
	// for budget before it is refused with CodeUnavailable; QUIC flow
	// control holds its bytes at the sender meanwhile.
	admitWait = wire.ReadTimeout
)

// requestCost returns the bytes a request of type t with an n-byte body
// reserves from the budget.
func requestCost(t wire.Type, n int) int64 {
	if isUpload(t) {
		return uploadFactor*int64(n) + requestSlack
	}
	return smallFactor*int64(n) + requestSlack
}

func isUpload(t wire.Type) bool { return t == wire.TypeUpload || t == wire.TypeSecAggMasked }

// budget is a FIFO semaphore of bytes: a request waits until its cost
// fits, behind those that came before it, so that a large upload is not
// starved by a stream of small ones.
type budget struct {
	mu      sync.Mutex
	size    int64
	used    int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

func newBudget(size int64) *budget { return &budget{size: size} }

// acquire reserves n bytes, waiting until they fit or ctx ends; waited
// reports whether it had to queue. n must not exceed the budget's size.
func (b *budget) acquire(ctx context.Context, n int64) (waited bool, err error) {
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.size {
		b.used += n
		b.mu.Unlock()
		return false, nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return true, nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready: // granted as ctx ended: give it back
		b.used -= n
	default:
		b.waiters = slices.DeleteFunc(b.waiters, func(x *budgetWaiter) bool { return x == w })
	}
	b.grantLocked() // those behind w may fit now
	return true, ctx.Err()
}

// release returns n bytes.
func (b *budget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	b.grantLocked()
}

func (b *budget) grantLocked() {
	for len(b.waiters) > 0 && b.used+b.waiters[0].n <= b.size {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.used += w.n
		close(w.ready)
	}
}

// inUse returns the bytes reserved.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// deviceUploads counts the uploads each device has being read.
type deviceUploads struct {
	mu  sync.Mutex
	max int
	n   map[string]int
}

// take counts one more upload of device, or reports false when it has
// max already.
func (d *deviceUploads) take(device string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n[device] >= d.max {
		return false
	}
	d.n[device]++
	return true
}

func (d *deviceUploads) put(device string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n[device]--; d.n[device] <= 0 {
		delete(d.n, device)
	}
}

// deviceBytes counts the bytes of the budget each device has reserved.
type deviceBytes struct {
	mu  sync.Mutex
	max int64
	n   map[string]int64
}

// take counts n more bytes of device, or reports false when they would
// take it over max.
func (d *deviceBytes) take(device string, n, max int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n[device]+n > max {
		return false
	}
	d.n[device] += n
	return true
}

func (d *deviceBytes) put(device string, n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n[device] -= n; d.n[device] <= 0 {
		delete(d.n, device)
	}
}

// deviceRate is a token bucket of requests for each device: a device
// may send burst requests at once and rate a second after that.
type deviceRate struct {
	mu    sync.Mutex
	rate  float64 // tokens a second
	burst float64
	n     map[string]*bucket
	swept time.Time
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was counted
}

func newDeviceRate(rate float64, burst int) *deviceRate {
	return &deviceRate{rate: rate, burst: float64(burst), n: map[string]*bucket{}}
}

// take takes one of device's tokens at now, or returns how long until it
// has one.
func (d *deviceRate) take(device string, now time.Time) (wait time.Duration, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.n) > 1024 && now.Sub(d.swept) > time.Second {
		d.sweepLocked(now)
	}
	b := d.n[device]
	if b == nil {
		b = &bucket{tokens: d.burst, at: now}
		d.n[device] = b
	}
	b.refill(now, d.rate, d.burst)
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) / d.rate * float64(time.Second)), false
	}
	b.tokens--
	return 0, true
}

func (b *bucket) refill(now time.Time, rate, burst float64) {
	if dt := now.Sub(b.at); dt > 0 {
		b.tokens = min(burst, b.tokens+dt.Seconds()*rate)
		b.at = now
	}
}

// sweepLocked forgets the devices whose buckets are full again: they are
// as if new.
func (d *deviceRate) sweepLocked(now time.Time) {
	d.swept = now
	for k, b := range d.n {
		if b.refill(now, d.rate, d.burst); b.tokens >= d.burst {
			delete(d.n, k)
		}
	}
}

// limitRate refuses a request of device over its request rate, from its
// header, with the time until its next token; a peer without a device
// certificate is not limited.
func (s *Server) limitRate(t wire.Type, device string) error {
	if device == "" {
		return nil
	}
	wait, ok := s.devRate.take(device, time.Now())
	if ok {
		return nil
	}
	s.metrics.Refused.WithLabelValues("device_rate").Inc()
	return &wire.Error{Code: wire.CodeUnavailable, Message: fmt.Sprintf("%s refused: this device sends more than %g requests a second", t, s.devRate.rate),
		RetryAfterMs: wait.Milliseconds() + 1}
}

// deviceMax returns the most bytes one device may reserve: the
// configured cap, or the largest upload (a masked input in secure
// rounds) of the configured model and 1 MiB when that is more, so that
// an honest device's upload is never refused for its size.
func (s *Server) deviceMax() int64 {
	dim, secure := s.h.ModelShape()
	l := wire.Limits{MaxParams: max(1, dim)}
	t := wire.TypeUpload
	if secure {
		t = wire.TypeSecAggMasked
	}
	return max(s.devBytes.max, requestCost(t, l.MaxBody(t))+1<<20)
}

// admit reserves what a request of type t with an n-byte body needs
// before its body is read: for an upload, a slot of its device (refused
// at once when the device has MaxUploadsPerDevice); its cost from its
// device's share of the memory budget (refused at once when the device
// would hold more than deviceMax); for an upload, one of MaxUploads;
// for every request, its cost from the memory budget. Slots and budget
// are waited for, at most admitWait. It returns the functions that free
// the upload slots (once the body is decoded) and the budget (once the
// request is answered).
func (s *Server) admit(st requestStream, t wire.Type, size int, peer Peer) (freeSlots, freeBudget func(), err error) {
	cost := requestCost(t, size)
	if cost > s.budget.size {
		s.metrics.Refused.WithLabelValues("too_large").Inc()
		return nil, nil, wire.Errorf(wire.CodeTooLarge, "%s of %d bytes needs %d bytes of this node's memory budget of %d", t, size, cost, s.budget.size)
	}
	ctx, cancel := context.WithTimeout(s.ctx, admitWait)
	defer cancel()
	stop := context.AfterFunc(st.Context(), cancel) // the client went away
	defer stop()

	freeSlots = func() {}
	if isUpload(t) && peer.Device != "" && !s.devUploads.take(peer.Device) {
		s.metrics.Refused.WithLabelValues("device_uploads").Inc()
		return nil, nil, &wire.Error{Code: wire.CodeUnavailable, Message: fmt.Sprintf("this device has %d uploads in flight already", s.devUploads.max), RetryAfterMs: 1000}
	}
	freeDevUpload := func() {
		if isUpload(t) && peer.Device != "" {
			s.devUploads.put(peer.Device)
		}
	}
	freeDevice := func() {}
	if peer.Device != "" {
		if dmax := s.deviceMax(); !s.devBytes.take(peer.Device, cost, dmax) {
			freeDevUpload()
			s.metrics.Refused.WithLabelValues("device_memory").Inc()
			return nil, nil, &wire.Error{Code: wire.CodeUnavailable, Message: fmt.Sprintf("%s of %d bytes would take this device over its %d bytes of the node's memory", t, size, dmax), RetryAfterMs: 1000}
		}
		freeDevice = func() { s.devBytes.put(peer.Device, cost) }
	}
	if isUpload(t) {
		select {
		case s.uploads <- struct{}{}:
		default:
			s.metrics.Delayed.Inc()
			select {
			case s.uploads <- struct{}{}:
			case <-ctx.Done():
				freeDevUpload()
				freeDevice()
				return nil, nil, s.busy(st, t, "an upload slot")
			}
		}
		freeSlots = func() { <-s.uploads; freeDevUpload() }
	}
	waited, err := s.budget.acquire(ctx, cost)
	if waited {
		s.metrics.Delayed.Inc()
	}
	if err != nil {
		freeSlots()
		freeDevice()
		return nil, nil, s.busy(st, t, "memory")
	}
	var once sync.Once
	return freeSlots, func() { once.Do(func() { s.budget.release(cost); freeDevice() }) }, nil
}

// busy is the refusal of a request on st that waited for what until the
// node closed, the client went away or admitWait passed.
func (s *Server) busy(st requestStream, t wire.Type, what string) error {
	switch {
	case s.ctx.Err() != nil:
		return wire.Errorf(wire.CodeUnavailable, "shutting down")
	case st.Context().Err() != nil:
		return st.Context().Err()
	}
	s.metrics.Refused.WithLabelValues("busy").Inc()
	return &wire.Error{Code: wire.CodeUnavailable, Message: fmt.Sprintf("node busy: waited %v for %s to read a %s", admitWait, what, t), RetryAfterMs: 2000}
}

// pacedReader reads a request's body from a stream under a deadline that
// moves with the bytes received: after n bytes, the next must arrive by
// start + grace + n/rate. A body of size bytes therefore has grace +
// size/rate in all, however it is paced, and a sender that falls below
// rate for longer than its head start is cut off with CodeTooSlow.
type pacedReader struct {
	st    requestStream
	start time.Time
	grace time.Duration
	rate  int64 // bytes per second
	n     int64 // bytes read
	size  int   // the body's declared size, for the error message
}

func (p *pacedReader) Read(b []byte) (int, error) {
	due := p.start.Add(p.grace + time.Duration(float64(p.n)/float64(p.rate)*float64(time.Second)))
	p.st.SetReadDeadline(due)
	k, err := p.st.Read(b)
	p.n += int64(k)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return k, tooSlow(p.n, p.size, time.Since(p.start), p.rate)
	}
	return k, err
}

func tooSlow(got int64, size int, took time.Duration, rate int64) *wire.Error {
	return wire.Errorf(wire.CodeTooSlow, "%d of %d bytes in %v, below the minimum rate of %d bytes/s", got, size, took.Round(time.Millisecond), rate)
}
