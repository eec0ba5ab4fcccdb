package deviceapi

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// The budget grants in arrival order: a request that does not fit waits,
// and those behind it wait too, until releases make room; one that gives
// up lets those behind it through.
func TestBudgetFIFO(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	b := newBudget(10)
	if waited, err := b.acquire(ctx, 6); waited || err != nil {
		t.Fatalf("acquire(6) of 10 = %v, %v; want at once", waited, err)
	}
	big := make(chan error, 1)
	go func() { _, err := b.acquire(ctx, 8); big <- err }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 1 })
	// 3 would fit beside 6, but 8 came first.
	small := make(chan error, 1)
	go func() { _, err := b.acquire(ctx, 3); small <- err }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 2 })
	if got := b.inUse(); got != 6 {
		t.Errorf("inUse() = %d, want 6", got)
	}
	b.release(6)
	if err := <-big; err != nil {
		t.Fatal(err)
	}
	b.release(8)
	if err := <-small; err != nil {
		t.Fatal(err)
	}
	// A waiter that gives up lets the one behind it through.
	gctx, gcancel := context.WithCancel(ctx)
	gave := make(chan error, 1)
	go func() { _, err := b.acquire(gctx, 9); gave <- err }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 1 })
	after := make(chan error, 1)
	go func() { _, err := b.acquire(ctx, 7); after <- err }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 2 })
	gcancel()
	if err := <-gave; err == nil {
		t.Error("acquire after its context ended = nil error")
	}
	if err := <-after; err != nil {
		t.Fatal(err)
	}
	if got := b.inUse(); got != 10 {
		t.Errorf("inUse() = %d, want 10", got)
	}
}

func TestDeviceUploads(t *testing.T) {
	d := &deviceUploads{max: 2, n: map[string]int{}}
	if first, second, third := d.take("a"), d.take("a"), d.take("a"); !first || !second || third {
		t.Error("device a: want 2 uploads, the third refused")
	}
	if !d.take("b") {
		t.Error("device b refused for a's uploads")
	}
	d.put("a")
	if !d.take("a") {
		t.Error("device a refused after one of its uploads ended")
	}
}

func TestDeviceBytes(t *testing.T) {
	d := &deviceBytes{n: map[string]int64{}}
	if !d.take("a", 6, 10) || d.take("a", 5, 10) || !d.take("a", 4, 10) {
		t.Error("device a: want 6 and 4 of 10, 5 more refused")
	}
	if !d.take("b", 10, 10) {
		t.Error("device b refused for a's bytes")
	}
	d.put("a", 6)
	if !d.take("a", 5, 10) {
		t.Error("device a refused after 6 of its bytes were freed")
	}
	d.put("a", 9)
	d.put("b", 10)
	if len(d.n) != 0 {
		t.Errorf("after every put: %v, want empty", d.n)
	}
}

// A request's cost covers its body and what wire lets its decode
// allocate: the bound of invariant 4 for the small requests, the vector
// bound for uploads.
func TestRequestCost(t *testing.T) {
	for _, tc := range []struct {
		t    wire.Type
		n    int
		want int64
	}{
		{wire.TypeCheckIn, 16 << 10, (2+wire.AllocPerByte)*(16<<10+wire.HeaderLen) + wire.RequestAllocSlack},
		{wire.TypeSecAggUnmask, 1 << 20, (2+wire.AllocPerByte)*(1<<20+wire.HeaderLen) + wire.RequestAllocSlack},
		{wire.TypeUpload, 1 << 20, (2+wire.VectorAllocPerByte)*(1<<20) + wire.RequestAllocSlack},
	} {
		if got := requestCost(tc.t, tc.n); got < tc.want {
			t.Errorf("requestCost(%v, %d) = %d, want >= %d", tc.t, tc.n, got, tc.want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached in 10 s")
}

// BenchmarkReadUpload reads and decodes a 1 Mi-parameter upload as the
// node does (wire.ReadBody, wire.Decode), reporting the bytes allocated
// and the live heap at the end per body byte: what uploadFactor must
// cover.
func BenchmarkReadUpload(b *testing.B) {
	frame, err := wire.Encode(&wire.Upload{Version: wire.Version, Round: 1, ClientID: "c", Ticket: make([]byte, wire.TicketLen), Model: 1, Delta: make(wire.Vec, 1<<20)})
	if err != nil {
		b.Fatal(err)
	}
	body := len(frame) - wire.HeaderLen
	b.SetBytes(int64(body))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for b.Loop() {
		r := bytes.NewReader(frame)
		t, n, err := wire.ReadHeader(r, wire.Limits{MaxParams: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		buf, err := wire.ReadBody(r, t, n)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := wire.Decode(t, buf); err != nil {
			b.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/float64(body), "alloc/body-byte")
}

// A device's requests are a token bucket: burst at once, then rate a
// second; a refusal says how long until the next token; devices are
// counted apart, and the buckets of those that have been quiet long
// enough to be full again are forgotten.
func TestDeviceRate(t *testing.T) {
	const rate, burst = 4, 3
	d := newDeviceRate(rate, burst)
	now := time.Unix(1e9, 0)
	for i := range burst {
		if _, ok := d.take("a", now); !ok {
			t.Fatalf("take(a) #%d at once refused, want %d allowed", i+1, burst)
		}
	}
	if wait, ok := d.take("a", now); ok || wait != time.Second/rate {
		t.Fatalf("take(a) after %d = %v, %v; want refused, wait %v", burst, wait, ok, time.Second/rate)
	}
	if _, ok := d.take("b", now); !ok {
		t.Fatal("take(b) refused: b has its own bucket")
	}
	if wait, ok := d.take("a", now.Add(100*time.Millisecond)); ok || wait != 150*time.Millisecond {
		t.Fatalf("take(a) 100 ms later = %v, %v; want refused, wait 150ms", wait, ok)
	}
	if _, ok := d.take("a", now.Add(250*time.Millisecond)); !ok {
		t.Fatal("take(a) 250 ms later refused, want its token")
	}
	for i := range 2000 {
		d.take(string(rune('A'+i)), now)
	}
	d.take("c", now.Add(time.Hour)) // sweeps: every bucket is full
	if len(d.n) != 1 {
		t.Errorf("%d buckets after an hour's quiet, want 1", len(d.n))
	}
}
