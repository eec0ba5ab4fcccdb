package secagg

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"
)

// dropPoint is where in the protocol a client stops.
type dropPoint int

const (
	dropBeforeAdvert dropPoint = iota // never advertises keys
	dropAfterAdvert                   // advertised keys, never uploads shares
	dropAfterShare                    // uploaded shares, never sends its masked input
	dropAfterMasked                   // sent its masked input, never answers the unmask request
	dropDuringUnmask                  // answers the unmask request after the deadline
	numDropPoints
)

func (p dropPoint) String() string {
	return [...]string{"before-advertise", "after-advertise", "after-share", "after-masked", "during-unmask"}[p]
}

// simulation drives one round in process, as the simulator and the
// coordinator will.
type simulation struct {
	cfg      Config
	drop     [numDropPoints]float64 // fraction of the clients still in the round that drop at each point
	seed     uint64
	parallel bool // drive the clients of a phase concurrently
	workers  int  // ServerOptions.Workers

	// clock measures the time spent in calls; nil means the wall clock.
	clock func() time.Duration

	// input writes client id's input into dst; nil means seeded random.
	input func(id uint32, dst []uint64)

	// idents, in a signed round, keeps the clients' identities from one
	// run to the next, with the credentials they have already checked, as
	// a long-lived device keeps them (client.Identity's certificate
	// cache); nil: each run issues new identities.
	idents *simIdentities
}

// simIdentities are identities that outlive a simulated round.
type simIdentities struct {
	ca *testCA
	m  map[uint32]*testIdentity
}

// ops sums the identities' counts: signatures made, credentials checked,
// signatures checked.
func (s *simIdentities) ops() (n [3]int) {
	for _, i := range s.m {
		n[0] += i.signs
		n[1] += i.credChecks
		n[2] += i.sigChecks
	}
	return n
}

// simResult is what a simulated round produced and what it should have.
type simResult struct {
	res     Result
	wantIDs []uint32 // clients whose masked input the server accepted
	wantSum []uint64
	dropped [numDropPoints]int

	clientTime, serverTime time.Duration
	unmaskTime             time.Duration // closing the unmask phase, part of serverTime
	inputTime              time.Duration // HandleMaskedInput, part of serverTime
}

func (s simulation) defaultInput(id uint32, dst []uint64) {
	r := rand.New(rand.NewPCG(s.seed, uint64(id)))
	m := valueMask(s.cfg.Bits)
	for i := range dst {
		dst[i] = r.Uint64() & m
	}
}

// clientRand is a deterministic randomness source for client id.
func clientRand(seed uint64, id uint32) *rand.ChaCha8 {
	var k [32]byte
	for i := range 8 {
		k[i] = byte(seed >> (8 * i))
	}
	k[8], k[9], k[10], k[11] = byte(id), byte(id>>8), byte(id>>16), byte(id>>24)
	return rand.NewChaCha8(k)
}

// pickDrops removes a fraction of ids, chosen with r, and returns the rest
// and the dropped.
func pickDrops(r *rand.Rand, ids []uint32, frac float64) (keep, dropped map[uint32]bool) {
	n := int(frac * float64(len(ids)))
	perm := r.Perm(len(ids))
	keep, dropped = map[uint32]bool{}, map[uint32]bool{}
	for k, p := range perm {
		if k < n {
			dropped[ids[p]] = true
		} else {
			keep[ids[p]] = true
		}
	}
	return keep, dropped
}

func sortedKeys(m map[uint32]bool) []uint32 {
	var out []uint32
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// timer accumulates time spent in calls, from many goroutines.
type timer struct {
	mu    sync.Mutex
	d     time.Duration
	clock func() time.Duration // nil means the wall clock
}

func (t *timer) time(f func() error) error {
	now := t.clock
	if now == nil {
		now = wallClock
	}
	start := now()
	err := f()
	d := now() - start
	t.mu.Lock()
	t.d += d
	t.mu.Unlock()
	return err
}

var wallStart = time.Now()

// wallClock is the time since the tests started, from the monotonic clock.
func wallClock() time.Duration { return time.Since(wallStart) }

// each runs f for every id, concurrently when parallel, and returns the
// first error.
func each(parallel bool, ids []uint32, f func(id uint32) error) error {
	if !parallel {
		for _, id := range ids {
			if err := f(id); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan uint32)
	)
	for range min(runtime.GOMAXPROCS(0), len(ids)) {
		wg.Go(func() {
			for id := range next {
				if err := f(id); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	return first
}

// run plays the round. An error from the server closing a phase is
// returned (the round aborted); any other unexpected error is returned
// too, wrapped with where it happened.
func (s simulation) run() (out simResult, err error) {
	ct, st, it := timer{clock: s.clock}, timer{clock: s.clock}, timer{clock: s.clock}
	defer func() { out.clientTime, out.serverTime, out.inputTime = ct.d, st.d, it.d }()
	srv, err := NewServer(s.cfg, ServerOptions{Workers: s.workers})
	if err != nil {
		return out, err
	}
	r := rand.New(rand.NewPCG(s.seed, 0x5eca66))
	clients := map[uint32]*Client{}
	idents := s.idents
	if s.cfg.Signed && idents == nil {
		idents = &simIdentities{}
	}
	if idents != nil && idents.ca == nil {
		idents.ca = newTestCA()
	}
	if idents != nil && idents.m == nil {
		idents.m = map[uint32]*testIdentity{}
	}
	for _, id := range s.cfg.Clients {
		var c *Client
		var err error
		if idents != nil {
			if idents.m[id] == nil {
				idents.m[id] = idents.ca.issue(id)
			}
			c, err = NewSignedClient(s.cfg, id, idents.m[id], clientRand(s.seed, id))
		} else {
			c, err = NewClient(s.cfg, id, clientRand(s.seed, id))
		}
		if err != nil {
			return out, err
		}
		clients[id] = c
	}
	if idents != nil && idents.ca.roster && !idents.m[s.cfg.Clients[0]].roster {
		all := make([]*testIdentity, 0, len(s.cfg.Clients))
		for _, id := range s.cfg.Clients {
			all = append(all, idents.m[id])
		}
		idents.ca.setRoster(all)
	}
	input := s.input
	if input == nil {
		input = s.defaultInput
	}
	ids := slices.Sorted(slices.Values(s.cfg.Clients))
	closePhase := func() error { return st.time(srv.ClosePhase) }

	// Phase 1.
	active, dropped := pickDrops(r, ids, s.drop[dropBeforeAdvert])
	out.dropped[dropBeforeAdvert] = len(dropped)
	err = each(s.parallel, sortedKeys(active), func(id uint32) error {
		var m KeyAdvert
		if err := ct.time(func() (err error) { m, err = clients[id].AdvertiseKeys(); return }); err != nil {
			return fmt.Errorf("client %d AdvertiseKeys: %w", id, err)
		}
		return st.time(func() error { return srv.HandleKeyAdvert(m) })
	})
	if err != nil {
		return out, fmt.Errorf("advertise: %w", err)
	}
	if err := closePhase(); err != nil {
		return out, err
	}

	// Phase 2.
	active, dropped = pickDrops(r, srv.Survivors(), s.drop[dropAfterAdvert])
	out.dropped[dropAfterAdvert] = len(dropped)
	err = each(s.parallel, sortedKeys(active), func(id uint32) error {
		var in PeerKeys
		var m ShareUpload
		if err := st.time(func() (err error) { in, err = srv.PeerKeys(id); return }); err != nil {
			return fmt.Errorf("server PeerKeys(%d): %w", id, err)
		}
		if err := ct.time(func() (err error) { m, err = clients[id].ShareKeys(in); return }); err != nil {
			return fmt.Errorf("client %d ShareKeys: %w", id, err)
		}
		return st.time(func() error { return srv.HandleShareUpload(m) })
	})
	if err != nil {
		return out, fmt.Errorf("share keys: %w", err)
	}
	if err := closePhase(); err != nil {
		return out, err
	}

	// Phase 3.
	active, dropped = pickDrops(r, srv.Survivors(), s.drop[dropAfterShare])
	out.dropped[dropAfterShare] = len(dropped)
	var mu sync.Mutex
	accepted := map[uint32]bool{}
	out.wantSum = make([]uint64, s.cfg.VectorLen)
	err = each(s.parallel, sortedKeys(active), func(id uint32) error {
		var in ShareDelivery
		var m MaskedInput
		x := make([]uint64, s.cfg.VectorLen)
		input(id, x)
		if err := st.time(func() (err error) { in, err = srv.ShareDelivery(id); return }); err != nil {
			return fmt.Errorf("server ShareDelivery(%d): %w", id, err)
		}
		if err := ct.time(func() (err error) { m, err = clients[id].MaskedInput(in, x); return }); err != nil {
			return fmt.Errorf("client %d MaskedInput: %w", id, err)
		}
		if err := st.time(func() error { return it.time(func() error { return srv.HandleMaskedInput(m) }) }); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		accepted[id] = true
		for i, v := range x {
			out.wantSum[i] += v
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("masked input: %w", err)
	}
	reduce(out.wantSum, s.cfg.Bits)
	out.wantIDs = sortedKeys(accepted)
	if err := closePhase(); err != nil {
		return out, err
	}

	// The consistency check of a signed round: every survivor signs.
	if s.cfg.Signed {
		err = each(s.parallel, srv.Survivors(), func(id uint32) error {
			var in ConsistencyRequest
			var m ConsistencyResponse
			if err := st.time(func() (err error) { in, err = srv.ConsistencyRequest(id); return }); err != nil {
				return fmt.Errorf("server ConsistencyRequest(%d): %w", id, err)
			}
			if err := ct.time(func() (err error) { m, err = clients[id].ConsistencyCheck(in); return }); err != nil {
				return fmt.Errorf("client %d ConsistencyCheck: %w", id, err)
			}
			return st.time(func() error { return srv.HandleConsistencyResponse(m) })
		})
		if err != nil {
			return out, fmt.Errorf("consistency check: %w", err)
		}
		if err := closePhase(); err != nil {
			return out, err
		}
	}

	// Phase 4.
	active, dropped = pickDrops(r, srv.Survivors(), s.drop[dropAfterMasked])
	out.dropped[dropAfterMasked] = len(dropped)
	onTime, late := pickDrops(r, sortedKeys(active), s.drop[dropDuringUnmask])
	out.dropped[dropDuringUnmask] = len(late)
	var lateMsgs []UnmaskResponse
	err = each(s.parallel, sortedKeys(active), func(id uint32) error {
		var in UnmaskRequest
		var m UnmaskResponse
		if err := st.time(func() (err error) { in, err = srv.UnmaskRequest(id); return }); err != nil {
			return fmt.Errorf("server UnmaskRequest(%d): %w", id, err)
		}
		if err := ct.time(func() (err error) { m, err = clients[id].Unmask(in); return }); err != nil {
			return fmt.Errorf("client %d Unmask: %w", id, err)
		}
		if !onTime[id] {
			mu.Lock()
			lateMsgs = append(lateMsgs, m)
			mu.Unlock()
			return nil
		}
		return st.time(func() error { return srv.HandleUnmaskResponse(m) })
	})
	if err != nil {
		return out, fmt.Errorf("unmask: %w", err)
	}
	var ut timer
	ut.clock = s.clock
	err = ut.time(closePhase)
	out.unmaskTime = ut.d
	if err != nil {
		return out, err
	}
	for _, m := range lateMsgs {
		if err := srv.HandleUnmaskResponse(m); !errors.Is(err, ErrPhaseClosed) {
			return out, fmt.Errorf("late unmask response from %d: got %v, want ErrPhaseClosed", m.From, err)
		}
	}
	out.res, err = srv.Result()
	return out, err
}

// testConfig returns a config for n clients with ids spread out (not
// dense), to exercise arbitrary ids.
func testConfig(n, d, bits, degree, threshold int) Config {
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = uint32(i)*7919 + 3
	}
	return Config{
		Round:     42,
		Seed:      []byte("fedrec secagg test seed 0123456789"),
		Clients:   ids,
		VectorLen: d,
		Bits:      bits,
		Degree:    degree,
		Threshold: threshold,
	}
}
