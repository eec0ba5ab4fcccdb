package coordinator

import (
	"context"
	"sync"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// maxWaiting bounds the check-ins a node holds open.
const maxWaiting = 100_000

// heldFor bounds how long a node holds the devices it selected for a
// round (Select) until the round's manifest names them: past it, the
// leader has failed or left the node out, and they are told to come back.
// A manifest names them within a Raft commit of the selection, which a
// loaded cluster may stretch to seconds.
const heldFor = wire.MaxHold

// lobby holds the check-ins of a node's devices until the leader asks the
// node for its share of a cohort (select), and tells the others when to
// come back (pace steering, pace.go). Every node has one, for as long as
// it runs: devices stay with their node across changes of leader.
type lobby struct {
	n *Node

	mu      sync.Mutex
	waiting []*waiter
	byID    map[string]*waiter
	arrived chan struct{} // closed and replaced on every check-in
	closed  bool
	pace    *pacer
	// held is the share of the next round this node selected, until the
	// round opens with it or heldFor passes.
	held *heldCohort
}

type waiter struct {
	id    string
	reply chan wire.Message // buffered 1; exactly one reply is sent
	// selected: in this node's share of a round's cohort (selectFor), so
	// named in its manifest unless released; b.mu.
	selected bool
}

// heldCohort is what a node selected for a round not yet open.
type heldCohort struct {
	round   uint64
	members []*waiter
	timer   *time.Timer // releases them after heldFor
}

func newLobby(n *Node) *lobby {
	return &lobby{n: n, byID: map[string]*waiter{}, arrived: make(chan struct{}),
		pace: newPacer(n.cfg.PaceMin, n.cfg.PaceMax, wire.MaxHold, n.newRand(0x9ace))}
}

// close answers everyone still waiting: the node is shutting down.
func (b *lobby) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, w := range b.waiting {
		w.reply <- &wire.Error{Code: wire.CodeUnavailable, Message: "node shutting down", RetryAfterMs: 200}
	}
	b.waiting, b.byID = nil, nil
	b.releaseLocked(0)
}

// count returns how many devices wait, and a channel closed at the next
// check-in.
func (b *lobby) count() (int, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiting), b.arrived
}

// checkIn holds a client until the next selection.
func (b *lobby) checkIn(ctx context.Context, m *wire.CheckIn) wire.Message {
	w := &waiter{id: m.ClientID, reply: make(chan wire.Message, 1)}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return &wire.Error{Code: wire.CodeUnavailable, Message: "node shutting down", RetryAfterMs: 200}
	}
	if len(b.waiting) >= maxWaiting {
		b.mu.Unlock()
		return &wire.Wait{RetryAfterMs: 5000}
	}
	if old := b.byID[w.id]; old != nil {
		old.reply <- &wire.Wait{RetryAfterMs: 0}
		b.remove(old)
	}
	b.waiting = append(b.waiting, w)
	b.byID[w.id] = w
	b.pace.seen(w.id, time.Now().Add(wire.MaxHold))
	close(b.arrived)
	b.arrived = make(chan struct{})
	b.mu.Unlock()

	t := time.NewTimer(wire.MaxHold)
	defer t.Stop()
	select {
	case r := <-w.reply:
		return r
	case <-ctx.Done():
	case <-t.C:
	}
	b.mu.Lock()
	select {
	case r := <-w.reply: // answered meanwhile
		b.mu.Unlock()
		return r
	default:
	}
	// A device selected already (held for a round, or taken into one
	// whose plans are being made) is named in the cohort the leader
	// opens: it waits for its plan, or the round waits for a device that
	// was sent away, a secure round to its first deadline. Its release
	// (sent under b.mu, so seen above) or its plan comes within heldFor.
	if ctx.Err() == nil && w.selected {
		b.mu.Unlock()
		t.Reset(heldFor)
		select {
		case r := <-w.reply:
			return r
		case <-ctx.Done():
		case <-t.C:
		}
		return &wire.Wait{RetryAfterMs: 0}
	}
	b.remove(w)
	b.mu.Unlock()
	return &wire.Wait{RetryAfterMs: 0}
}

// remove drops w from the waiting list; b.mu is held.
func (b *lobby) remove(w *waiter) {
	if b.byID[w.id] == w {
		delete(b.byID, w.id)
	}
	for i, x := range b.waiting {
		if x == w {
			b.waiting = append(b.waiting[:i], b.waiting[i+1:]...)
			return
		}
	}
}

// selectFor samples up to k of the waiting devices, uniformly, for round
// (on model version), holds them until the round's manifest names them
// (take) or heldFor passes, and tells everyone else when to come back:
// spread over the rounds it takes to select everyone once. roundEnd is
// when the round should end and want the cohort size the pacer counts
// with. It returns the ids selected.
func (b *lobby) selectFor(round, version uint64, k int, roundEnd time.Time, want int) []string {
	n := b.n
	b.mu.Lock()
	defer b.mu.Unlock()
	b.releaseLocked(0)
	pool := b.waiting
	b.waiting, b.byID = nil, map[string]*waiter{}
	if b.closed {
		return nil
	}
	n.shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	k = min(k, len(pool))
	cohort, rest := pool[:k], pool[k:]
	now := time.Now()
	ids := make([]string, len(cohort))
	for i, w := range cohort {
		ids[i] = w.id
		w.selected = true
	}
	mean := b.pace.selected(now, ids, roundEnd, want)
	for _, w := range rest {
		d := b.pace.retry(w.id, now, mean)
		n.metrics.paceRetry.Observe(d.Seconds())
		w.reply <- &wire.Wait{Round: round, Model: version, RetryAfterMs: d.Milliseconds()}
	}
	n.metrics.pacePopulation.Set(float64(b.pace.population(now)))
	n.metrics.pacePeriod.Set(b.pace.period.Seconds())
	if len(cohort) > 0 {
		h := &heldCohort{round: round, members: cohort}
		h.timer = time.AfterFunc(heldFor, func() { b.release(round) })
		b.held = h
	}
	return ids
}

// take returns the devices held for round whose ids are in ids, in the
// order of ids (nil where a device is no longer held), and releases the
// others held.
func (b *lobby) take(round uint64, ids []string) []*waiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.held
	if h == nil || h.round != round {
		return make([]*waiter, len(ids))
	}
	h.timer.Stop()
	b.held = nil
	by := make(map[string]*waiter, len(h.members))
	for _, w := range h.members {
		by[w.id] = w
	}
	out := make([]*waiter, len(ids))
	for i, id := range ids {
		out[i] = by[id]
		delete(by, id)
	}
	for _, w := range by {
		w.reply <- &wire.Wait{Round: round, RetryAfterMs: 0}
	}
	return out
}

// redirect sends every waiting device (not those held for a round) to
// check in at the node whose client address is addr: a NotLeader whose
// hint devices follow. The leader asks it of a node with too few devices
// for a secure round's group (Select.Redirect).
func (b *lobby) redirect(addr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, w := range b.waiting {
		w.reply <- &wire.Error{Code: wire.CodeNotLeader, Message: "too few devices here for a secure round; check in at " + addr, Leader: addr}
	}
	k := len(b.waiting)
	b.waiting, b.byID = nil, map[string]*waiter{}
	return k
}

// release tells the devices held for round to check in again: the round
// did not open with them.
func (b *lobby) release(round uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.releaseLocked(round)
}

// releaseLocked releases the devices held for round, or for any round
// when round is 0; b.mu is held.
func (b *lobby) releaseLocked(round uint64) {
	h := b.held
	if h == nil || (round != 0 && h.round != round) {
		return
	}
	h.timer.Stop()
	b.held = nil
	for _, w := range h.members {
		w.reply <- &wire.Wait{Round: h.round, RetryAfterMs: 0}
	}
}
