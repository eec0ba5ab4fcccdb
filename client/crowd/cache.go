package crowd

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/fedrec/fedrec/client/internal/round"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// ModelCache shares downloaded models among participants (many virtual
// clients in one process download each version once). It keeps the two
// newest versions. It also lends the participants their update buffers
// and bounds how many of them take part in a plain round at once.
type ModelCache struct {
	mu      sync.Mutex
	entries map[uint64]*cacheEntry
	// bufs lends update buffers, and a NewDeviceCache's models: a buffer
	// is model-sized (2.5 MB for ml-latest-small) and needed only while a
	// participant takes part in a round, and most virtual clients sit idle
	// between their rounds.
	bufs buffers
	// uploads holds, by their number of slots, the semaphores of rounds.
	uploads map[int]chan struct{}
	// cores is a semaphore of GOMAXPROCS slots for the secure-aggregation
	// steps that compute: a secure round's whole cohort computes at once
	// (training is bounded by the upload slots), and the scheduler's
	// slices then finish every one late together. 1,200 devices masking
	// at once in fedrec bench --secagg all missed the 10 s masked-input
	// deadline, with 12 ms each of work. (Training within these slots too
	// made a round of 2,000 plain clients 30 % slower.)
	cores chan struct{}
	// private: every participant downloads its own copy (NewDeviceCache).
	private bool
}

// maxUploads bounds the participants sharing a ModelCache that take part
// in a plain (not secure) round at once, from the download to the end of
// the upload. Each holds a model-sized update (and, in a NewDeviceCache, a
// model) and its encoded upload until its node has read it. With 16 slots
// taken only after the download, 2,400 devices of fedrec bench held a model
// each while they queued, 4 GB, and a round of 2,000 clients reached its
// 60 s deadline with 1,300 to 1,700 uploads; with 64 taken before the
// download the round took 24 s, and 100 clients' rounds were no slower.
const maxUploads = 64

// inFlight bounds what the participants in a round's slots hold, a
// model-sized update each, where maxUploads of them would hold more: for
// ml-latest-small's 320,893 parameters, 13 slots, not 64. With 64 the
// cores spent their time on memory the participants touched in turn, and
// every participant finished late together: fedrec bench --clients 100
// --items 9724 took 1.37-1.61 s a round with 64 slots, 1.13-1.39 s with
// 26 and 0.99-1.10 s with 12, run by run in turn. A round of 2,000
// clients at 122,299 parameters takes 34 slots: 14.4 s, against 15.4 s
// with 64 and 19 s with 12.
const inFlight = 32 << 20

// uploadSlots is how many participants take part in a plain round of a
// model of dim parameters at once. A secure round takes maxUploads: its
// cohort advances through the phases together, and with 34 slots 1,000
// secure clients lost 66 to 91 of 1,200 devices to the first phase's
// deadline in the first timed round of two runs, with 64 none.
func uploadSlots(dim int) int {
	return max(1, min(maxUploads, inFlight/(8*max(dim, 1))))
}

type cacheEntry struct {
	digest string
	ready  chan struct{}
	m      *model.Model
	hdr    *wire.ModelHeader
	err    error
}

// NewModelCache returns an empty cache.
func NewModelCache() *ModelCache {
	return &ModelCache{entries: map[uint64]*cacheEntry{}, uploads: map[int]chan struct{}{}, cores: make(chan struct{}, runtime.GOMAXPROCS(0))}
}

// NewDeviceCache returns a cache that shares no model: every participant
// downloads its own, as real devices do (fedrec bench measures what the
// nodes serve), while update buffers and the bound on participants
// training and uploading at once are still shared.
func NewDeviceCache() *ModelCache {
	c := NewModelCache()
	c.private = true
	return c
}

// get returns model version with the given digest and its header (event
// weights, catalogue digest), downloading it through d once however many
// callers ask at the same time (each time, for a NewDeviceCache). Call
// done when the round is over: a NewDeviceCache's model is the caller's,
// in a buffer it lends (update) and done takes back.
func (c *ModelCache) get(ctx context.Context, d round.Exchanger, plan *wire.Plan) (m *model.Model, hdr *wire.ModelHeader, done func(), err error) {
	if c.private {
		buf := c.update(model.Dim(plan.Items, plan.Rank))
		if m, hdr, err = round.Fetch(ctx, d, plan, *buf); err != nil || &m.Params[0] != &(*buf)[0] {
			c.release(buf)
			return m, hdr, func() {}, err
		}
		return m, hdr, func() { c.release(buf) }, nil
	}
	version, digest := plan.Model, plan.Digest
	c.mu.Lock()
	e := c.entries[version]
	if e != nil && e.digest != string(digest) {
		e = nil // a different model under the same version: never trust it
	}
	if e == nil {
		e = &cacheEntry{digest: string(digest), ready: make(chan struct{})}
		c.entries[version] = e
		for v := range c.entries {
			if v+1 < version {
				delete(c.entries, v) // keep the newest two
			}
		}
		c.mu.Unlock()
		// Shared by participants of any round and group: a download for
		// no round, which no node turns away (wire.GetModel.Round).
		shared := *plan
		shared.Round = 0
		e.m, e.hdr, e.err = round.Fetch(ctx, d, &shared, nil)
		close(e.ready)
		if e.err != nil {
			c.mu.Lock()
			if c.entries[version] == e {
				delete(c.entries, version)
			}
			c.mu.Unlock()
		}
		return e.m, e.hdr, func() {}, e.err
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
		return e.m, e.hdr, func() {}, e.err
	case <-ctx.Done():
		return nil, nil, nil, ctx.Err()
	}
}

// update returns a buffer of n entries, of any content, for a round's
// update (or a NewDeviceCache's model); give it back with release when the
// round is over.
func (c *ModelCache) update(n int) *[]float64 { return c.bufs.get(n) }

// release returns an update buffer once nothing refers to it.
func (c *ModelCache) release(b *[]float64) { c.bufs.put(b) }

// keepIdle is how long buffers given back stay on a free list after the
// last was given back.
const keepIdle = 10 * time.Second

// buffers lends float64 buffers. Those given back wait on a free list for
// the next round, not in a sync.Pool: a crowd's garbage triggers several
// collections a round, and the second empties a pool, so that every round
// took fresh pages, whose first touch cost a device more than decoding its
// model. The list holds at most as many as were lent at once, and is
// dropped once none was given back for keepIdle, so that a crowd that
// went idle holds none.
type buffers struct {
	mu   sync.Mutex
	free []*[]float64
	idle *time.Timer // drops free after keepIdle
}

// get returns a buffer of n entries, of any content.
func (b *buffers) get(n int) *[]float64 {
	b.mu.Lock()
	for len(b.free) > 0 {
		last := len(b.free) - 1
		p := b.free[last]
		b.free[last] = nil
		b.free = b.free[:last]
		if len(*p) == n {
			b.mu.Unlock()
			return p
		}
		// Another model's size: let it go.
	}
	b.mu.Unlock()
	p := make([]float64, n)
	return &p
}

// put gives back a buffer nothing refers to any more.
func (b *buffers) put(p *[]float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free = append(b.free, p)
	if b.idle == nil {
		b.idle = time.AfterFunc(keepIdle, b.drop)
	} else {
		b.idle.Reset(keepIdle)
	}
}

// drop lets the free buffers go.
func (b *buffers) drop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free = nil
}

// uploadSlot waits for one of the n slots of the rounds that take n
// (uploadSlots) and returns the func that frees it.
func (c *ModelCache) uploadSlot(ctx context.Context, n int) (func(), error) {
	c.mu.Lock()
	sem := c.uploads[n]
	if sem == nil {
		if len(c.uploads) >= 4 {
			clear(c.uploads) // a crowd trains one model at a time
		}
		sem = make(chan struct{}, n)
		c.uploads[n] = sem
	}
	c.mu.Unlock()
	return slot(ctx, sem)
}

// coreSlot waits for one of the cores' slots and returns the func that
// frees it (round.SecureOptions.Compute).
func (c *ModelCache) coreSlot(ctx context.Context) (func(), error) {
	return slot(ctx, c.cores)
}

// slot waits for one of sem's slots (a channel's waiting senders are
// served first come, first served) and returns the func that frees it.
func slot(ctx context.Context, sem chan struct{}) (func(), error) {
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
