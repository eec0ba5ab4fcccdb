package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	dp "github.com/fedrec/fedrec/aggregation/privacy"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/aggregation/fixedpoint"
	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// phase is a step of a round on the leader. A round moves forward only,
// along the edges of next; in a secure round, secure aggregation's four
// phases (advertise keys, share keys, masked input, unmask) sit between
// phaseSelected and phaseAggregating in place of phaseCollecting, and a
// signed round checks consistency (phaseChecking) between masked input and
// unmasking.
type phase uint8

const (
	phaseGathering   phase = iota + 1 // check-ins wait; nothing is in the log yet
	phaseSelected                     // the manifest is committed, plans are out
	phaseCollecting                   // plaintext uploads until the deadline
	phaseAggregating                  // uploads refused; the sum is taken
	phaseCommitting                   // the new model is being committed
	phaseCommitted                    // the model is in the log
	phaseAbandoned                    // ended without a model (too few survivors, lost leadership)
	phaseAdvertising                  // secure: clients advertise their keys
	phaseSharing                      // secure: clients share their secrets
	phaseMasking                      // secure: clients send masked inputs
	phaseUnmasking                    // secure: clients send shares to unmask the sum
	phaseChecking                     // secure, signed: clients confirm the survivor set
)

var phaseNames = [...]string{phaseGathering: "gathering", phaseSelected: "selected", phaseCollecting: "collecting",
	phaseAggregating: "aggregating", phaseCommitting: "committing", phaseCommitted: "committed", phaseAbandoned: "abandoned",
	phaseAdvertising: "advertising keys", phaseSharing: "sharing keys", phaseMasking: "masked input", phaseUnmasking: "unmasking",
	phaseChecking: "consistency check"}

func (p phase) String() string { return phaseNames[p] }

// next lists the phases each phase may move to.
var next = map[phase][]phase{
	phaseGathering:   {phaseSelected, phaseAbandoned},
	phaseSelected:    {phaseCollecting, phaseAdvertising, phaseAbandoned},
	phaseAdvertising: {phaseSharing, phaseAbandoned},
	phaseSharing:     {phaseMasking, phaseAbandoned},
	phaseMasking:     {phaseUnmasking, phaseChecking, phaseAbandoned},
	phaseChecking:    {phaseUnmasking, phaseAbandoned},
	phaseUnmasking:   {phaseAggregating, phaseAbandoned},
	phaseCollecting:  {phaseAggregating, phaseAbandoned},
	phaseAggregating: {phaseCommitting, phaseAbandoned},
	phaseCommitting:  {phaseCommitted, phaseAbandoned},
}

// leader is the round owner of one term of leadership: it gathers the
// nodes' counts of waiting devices, asks each node for its share of the
// cohort, commits the manifest, adds the nodes' partial sums and commits
// the new model. Devices talk to their own node (lobby.go, part.go).
type leader struct {
	n *Node

	mu      sync.Mutex
	owned   *round // the round being run; nil between rounds
	stopped bool
	// reports holds the other nodes' counts of waiting devices; reported
	// is closed and replaced on every report.
	reports  map[string]lobbyReport
	reported chan struct{}
	// partials holds the owned round's partial sums by node; partialIn
	// is closed and replaced on every one.
	partials  map[string]*wire.Partial
	partialIn chan struct{}
}

// lobbyReport is a node's count of waiting devices, as of at.
type lobbyReport struct {
	waiting int
	at      time.Time
}

func newLeader(n *Node) *leader {
	return &leader{n: n, reports: map[string]lobbyReport{}, reported: make(chan struct{}), partialIn: make(chan struct{})}
}

// stop ends the term: the round it runs is abandoned.
func (l *leader) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if r := l.owned; r != nil {
		r.mu.Lock()
		if r.phase != phaseCommitted {
			r.phase = phaseAbandoned
		}
		r.mu.Unlock()
	}
}

// lobby records a node's count of waiting devices.
func (l *leader) lobby(m *wire.Lobby) wire.Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return &wire.Error{Code: wire.CodeNotLeader, Message: "leadership changed"}
	}
	l.reports[m.Node] = lobbyReport{waiting: m.Waiting, at: time.Now()}
	close(l.reported)
	l.reported = make(chan struct{})
	var id uint64
	if l.owned != nil {
		id = l.owned.id
	}
	return &wire.NodeAck{Round: id}
}

// partial records a node's partial sum of the owned round.
func (l *leader) partial(m *wire.Partial) wire.Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.owned
	collecting := false
	if r != nil {
		r.mu.Lock()
		collecting = r.phase == phaseCollecting
		r.mu.Unlock()
	}
	switch {
	case r == nil || r.id != m.Round || !collecting:
		return wire.Errorf(wire.CodeNoRound, "round %d is not collecting", m.Round)
	case !r.groups[m.Node]:
		return wire.Errorf(wire.CodeNotSelected, "node %q has no group in round %d", m.Node, m.Round)
	case l.partials[m.Node] != nil:
		return wire.Errorf(wire.CodeDuplicate, "node %q already sent its sum of round %d", m.Node, m.Round)
	}
	l.partials[m.Node] = m
	close(l.partialIn)
	l.partialIn = make(chan struct{})
	return &wire.NodeAck{Round: m.Round}
}

// counts returns how many devices wait at each node (this one's own
// lobby, the others' reports not older than lobbyStale), and the channels
// closed at this node's next check-in and at the next report.
func (l *leader) counts() (map[string]int, <-chan struct{}, <-chan struct{}) {
	own, arrived := l.n.lobby.count()
	out := map[string]int{l.n.cfg.ID: own}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n.fsm.Read(func(s *State) {
		for id, r := range l.reports {
			if s.NodeAddr(id) != "" && id != l.n.cfg.ID && now.Sub(r.at) < lobbyStale {
				out[id] = r.waiting
			}
		}
	})
	return out, arrived, l.reported
}

// quotas splits want among the nodes in proportion to their waiting
// devices (largest remainders), none beyond what it has.
func quotas(want int, counts map[string]int) map[string]int {
	total := 0
	for _, c := range counts {
		total += c
	}
	out := make(map[string]int, len(counts))
	if total <= want {
		maps.Copy(out, counts)
		return out
	}
	ids := slices.Sorted(maps.Keys(counts))
	rem := make(map[string]float64, len(ids))
	given := 0
	for _, id := range ids {
		x := float64(want) * float64(counts[id]) / float64(total)
		out[id] = int(x)
		rem[id] = x - float64(out[id])
		given += out[id]
	}
	slices.SortStableFunc(ids, func(a, b string) int { return cmp.Compare(rem[b], rem[a]) })
	for _, id := range ids {
		if given >= want {
			break
		}
		if out[id] < counts[id] {
			out[id]++
			given++
		}
	}
	return out
}

// groupQuotas are the quotas of a secure round, whose every group needs
// at least minGroup members: the quotas of counts, after dropping the
// nodes with fewer than minGroup waiting, then, while a node's quota
// falls below minGroup, the node with the fewest waiting. Their devices
// wait for a later round.
func groupQuotas(want int, counts map[string]int, minGroup int) map[string]int {
	counts = maps.Clone(counts)
	maps.DeleteFunc(counts, func(_ string, c int) bool { return c < minGroup })
	for {
		q := quotas(want, counts)
		small := ""
		for _, id := range slices.Sorted(maps.Keys(q)) {
			if q[id] < minGroup && (small == "" || counts[id] < counts[small]) {
				small = id
			}
		}
		if small == "" {
			return q
		}
		delete(counts, small)
	}
}

// gather sends the devices of every node that has had fewer than
// minGroup waiting (too few for a group of a secure round) for patience
// to the node with the most (the first by id among equals), so that small
// lobbies add up to a group rather than wait forever; patience lets a
// lobby fill first. small holds since when each node has been small (a
// redirect starts its patience again, as its count may be stale). It
// reports whether it sent any.
func (l *leader) gather(ctx context.Context, r *round, counts map[string]int, minGroup int, small map[string]time.Time, patience time.Duration) bool {
	n := l.n
	now := time.Now()
	target := ""
	for _, id := range slices.Sorted(maps.Keys(counts)) {
		if c := counts[id]; c == 0 || c >= minGroup {
			delete(small, id)
		} else if small[id].IsZero() {
			small[id] = now
		}
		if target == "" || counts[id] > counts[target] {
			target = id
		}
	}
	maps.DeleteFunc(small, func(id string, _ time.Time) bool { _, ok := counts[id]; return !ok })
	var addr string
	n.fsm.Read(func(s *State) { addr = s.NodeAddr(target) })
	if addr == "" {
		return false
	}
	sent := false
	for id, since := range small {
		if id == target || now.Sub(since) < patience {
			continue
		}
		small[id], sent = now, true
		n.log.Debug("lobby redirected", "round", r.id, "node", id, "to", target, "waiting", counts[id])
		if id == n.cfg.ID {
			n.lobby.redirect(addr)
			continue
		}
		var from string
		n.fsm.Read(func(s *State) { from = s.NodeAddr(id) })
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			cctx, cancel := context.WithTimeout(ctx, selectTimeout)
			defer cancel()
			if _, err := n.callNode(cctx, from, &wire.Select{Version: wire.Version, Round: r.id, Model: r.base.Version, Redirect: addr}); err != nil {
				n.log.Warn("node did not redirect its devices", "node", id, "err", err)
			}
		}()
	}
	return sent
}

// gatherTick is how often the leader looks again at the small lobbies
// of a secure cluster while it gathers; redirectSettle is how long it
// waits for redirected devices before it starts a round without them.
const (
	gatherTick     = 250 * time.Millisecond
	redirectSettle = time.Second
)

// selection asks every node with a quota for its share of round r's
// cohort, concurrently, this node's from its own lobby. It returns the
// cohort and its groups, in node id order; a node that does not answer
// within selectTimeout, or selects fewer than minGroup, is left out.
func (l *leader) selection(ctx context.Context, r *round, q map[string]int, roundEnd time.Time, want, minGroup int) ([]string, []wire.RoundGroup) {
	n := l.n
	ids := slices.Sorted(maps.Keys(q))
	picked := make([][]string, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		if q[id] <= 0 {
			continue
		}
		if id == n.cfg.ID {
			picked[i] = n.lobby.selectFor(r.id, r.base.Version, q[id], roundEnd, want)
			continue
		}
		var addr string
		n.fsm.Read(func(s *State) { addr = s.NodeAddr(id) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, selectTimeout)
			defer cancel()
			m, err := n.callNode(cctx, addr, &wire.Select{Version: wire.Version, Round: r.id, Model: r.base.Version, Quota: q[id]})
			sel, ok := m.(*wire.Selected)
			switch {
			case err != nil:
				n.log.Warn("node did not select", "node", id, "round", r.id, "err", err)
			case !ok || sel.Round != r.id || len(sel.Clients) > q[id]:
				n.log.Warn("node selected wrongly", "node", id, "round", r.id)
			default:
				picked[i] = sel.Clients
			}
		}()
	}
	wg.Wait()
	var cohort []string
	var groups []wire.RoundGroup
	seen := map[string]bool{}
	for i, id := range ids {
		var g []string
		for _, c := range picked[i] {
			if !seen[c] { // a device that moved between nodes counts once
				seen[c] = true
				g = append(g, c)
			}
		}
		if len(g) == 0 || len(g) < minGroup {
			continue // the node releases its devices (followRounds)
		}
		cohort = append(cohort, g...)
		groups = append(groups, wire.RoundGroup{Node: id, Size: len(g)})
	}
	// Each group closes early once its share of ClientsPerRound arrived:
	// the shares add up to ClientsPerRound, so that, like a single node,
	// the cluster waits for no more than it needs and every group keeps
	// its share of the over-selection's slack for dropouts.
	sizes := make(map[string]int, len(groups))
	for _, g := range groups {
		sizes[g.Node] = g.Size
	}
	wants := quotas(min(r.cfg.ClientsPerRound, len(cohort)), sizes)
	for i := range groups {
		groups[i].Want = max(1, wants[groups[i].Node])
	}
	return cohort, groups
}

// selectTimeout bounds a node's answer to Select; partialGrace is how long
// past a round's deadline the leader waits for the nodes' partial sums.
const (
	selectTimeout = 2 * time.Second
	partialGrace  = 2 * time.Second
)

// run runs rounds until ctx ends.
func (l *leader) run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := l.round(ctx); err != nil {
			if errors.Is(err, ErrNotLeader) || ctx.Err() != nil {
				return
			}
			if errors.Is(err, raft.ErrLeadershipTransferInProgress) {
				// Leadership is moving (a shutdown, a removal): nothing
				// was appended; the transfer's outcome ends this loop or
				// lets it go on.
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			l.n.log.Warn("round failed", "err", err)
			select { // do not spin on a persistent failure
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// round is one round on the leader.
type round struct {
	id       uint64
	base     *Version
	cfg      Training
	mu       sync.Mutex
	phase    phase
	tickets  map[string][]byte // selected client → ticket
	uploaded map[string]bool
	inflight sync.WaitGroup         // uploads being added
	agg      partialAggregator      // *Plain, or *Quantized for 8-bit uploads
	quant    *aggregation.Quantized // the 8-bit round's aggregator, nil for float64 uploads
	q        *fixedpoint.Quantizer  // the 8-bit round's quantizer
	count    int                    // uploads added
	loss     float64
	n        int64
	below    int             // uploads whose norm was at most clip (adaptive clipping)
	clip     float64         // the round's clip norm
	enough   chan struct{}   // closed when every wanted upload arrived
	want     int             // uploads that close collection early
	groups   map[string]bool // owner: the nodes with a group, whose partial sums it waits for
	sec      *secureRound    // nil for a plaintext round
	m        *metrics        // times the phases (observe); nil: not timed
	since    time.Time       // when the round entered its phase
}

// step moves r to phase to unless it was abandoned meanwhile (the leader
// stopped), which it reports with false.
func (r *round) step(to phase) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.phase == phaseAbandoned {
		return false
	}
	r.advance(to)
	return true
}

func (r *round) advance(to phase) {
	for _, p := range next[r.phase] {
		if p == to {
			r.observe()
			r.phase = to
			return
		}
	}
	panic(fmt.Sprintf("coordinator: round %d: no transition from %s to %s", r.id, r.phase, to))
}

func (l *leader) round(ctx context.Context) error {
	n := l.n
	var cfg Training
	var base *Version
	var nextID uint64
	var left *OpenRound
	var clip float64
	n.fsm.Read(func(s *State) {
		cfg, _ = s.Config()
		base = s.Current()
		nextID = s.LastRound() + 1
		left = s.Open()
		clip = s.Clip()
	})
	if base == nil {
		return fmt.Errorf("no model")
	}
	if left != nil {
		// A round this term left open: its OpenRound or CommitRound
		// failed in Apply (a timeout, say) yet committed, or its
		// abandonment did not commit. Its tickets and uploads are gone.
		if _, err := n.apply(&wire.AbandonRound{Round: left.Round, Reason: "left open"}); err != nil {
			return fmt.Errorf("abandon round %d left open: %w", left.Round, err)
		}
		return nil
	}
	r := &round{id: nextID, base: base, cfg: cfg, clip: clip, phase: phaseGathering, uploaded: map[string]bool{}, enough: make(chan struct{}), m: n.metrics, since: time.Now()}
	start := time.Now()
	n.enter(r.id, phaseGathering)

	// Gathering: wait for a full cohort over the nodes, or for the
	// window to pass with at least MinClients waiting.
	want := cfg.CohortSize()
	window := time.NewTimer(cfg.CheckInWindow)
	defer window.Stop()
	windowDone := false
	var counts map[string]int
	minGroup := 1
	if cfg.SecAgg {
		minGroup = cfg.MinGroup()
	}
	small := map[string]time.Time{} // secure: since when a node has had too few for a group
	var redirected time.Time
	for {
		var arrived, reported <-chan struct{}
		counts, arrived, reported = l.counts()
		var tick <-chan time.Time
		if minGroup > 1 {
			if l.gather(ctx, r, counts, minGroup, small, cfg.CheckInWindow/2) {
				redirected = time.Now()
			}
			if len(small) > 0 {
				tick = time.After(gatherTick)
			}
		}
		maps.DeleteFunc(counts, func(_ string, c int) bool { return c < minGroup })
		have := 0
		for _, c := range counts {
			have += c
		}
		// Devices just sent elsewhere are on their way: a round that
		// starts for want of more waits for them.
		settled := time.Since(redirected) >= redirectSettle
		if have >= want || (windowDone && settled && have >= cfg.MinClients) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-arrived:
		case <-reported:
		case <-tick:
		case <-window.C:
			windowDone = true
		}
	}

	// Selection: each node samples its share of the cohort from its own
	// waiting devices and tells the rest when to come back.
	q := quotas(want, counts)
	if cfg.SecAgg {
		q = groupQuotas(want, counts, minGroup)
	}
	cohort, groups := l.selection(ctx, r, q, time.Now().Add(cfg.RoundTimeout), want, minGroup)
	if len(cohort) < cfg.MinClients {
		// The counts were stale (devices left meanwhile): the nodes'
		// holds expire, and gathering starts again.
		n.lobby.release(r.id)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		return nil
	}
	open := &wire.OpenRound{Round: r.id, Model: base.Version, Digest: base.Digest[:], Cohort: cohort, Clip: clip, Leader: n.cfg.ID, Groups: groups}
	minSurvivors, collect := cfg.MinClients, cfg.RoundTimeout
	if cfg.SecAgg {
		// Each node's group runs secure aggregation on its own; the
		// round's parameters say which inputs the sum over groups needs.
		open.SecAgg = secAggParams(cfg, r.id, base.Digest[:], cohort, clip)
		at := 0
		for i := range groups {
			g := &groups[i]
			g.SecAgg = groupSecAggParams(cfg, r.id, base.Digest[:], g.Node, cohort[at:at+g.Size], len(cohort), clip)
			at += g.Size
		}
		minSurvivors = open.SecAgg.MinSurvivors
		collect += time.Duration(len(secAggOrder(cfg.SecAggSigned))-1) * cfg.SecAggPhase
	}
	privacy := cfg.Privacy(len(cohort), open.SecAgg)
	open.Privacy = privacy
	var err error
	if cfg.SecAgg {
		// The nodes send the decoded float sums of their groups.
		r.agg, err = aggregation.NewPlain(len(base.Model.Params), clip)
	} else {
		r.agg, r.quant, r.q, err = newAggregator(cfg, r.id, base, clip)
	}
	if err != nil {
		n.lobby.release(r.id)
		return err
	}
	r.groups = map[string]bool{}
	for _, g := range groups {
		r.groups[g.Node] = true
	}
	// Ready for the partial sums before the manifest commits: a node's
	// part starts when it applies the manifest, and may end (its devices
	// were quick) before this goroutine runs again.
	l.mu.Lock()
	r.mu.Lock()
	r.advance(phaseSelected)
	r.advance(phaseCollecting)
	r.mu.Unlock()
	l.owned, l.partials = r, map[string]*wire.Partial{}
	l.mu.Unlock()
	if _, err := n.apply(open); err != nil {
		l.mu.Lock()
		l.owned, l.partials = nil, nil
		l.mu.Unlock()
		n.lobby.release(r.id)
		return fmt.Errorf("open round %d: %w", r.id, err)
	}
	n.enter(r.id, phaseSelected)
	n.log.Info("round started", "round", r.id, "model", base.Version, "cohort", len(cohort), "nodes", len(groups), "secagg", cfg.SecAgg)
	n.enter(r.id, phaseCollecting)

	// Collecting: every node sends the plans of its group, collects their
	// uploads and sends its partial sum (part.go); the leader waits for
	// every group's, or for the deadline.
	timer := time.NewTimer(collect + partialGrace)
	defer timer.Stop()
	for {
		l.mu.Lock()
		got, in := len(l.partials), l.partialIn
		l.mu.Unlock()
		if got == len(groups) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		case <-in:
			continue
		}
		break
	}
	l.mu.Lock()
	r.mu.Lock()
	if r.phase == phaseAbandoned || ctx.Err() != nil {
		r.mu.Unlock()
		l.mu.Unlock()
		return ctx.Err()
	}
	r.advance(phaseAggregating)
	r.mu.Unlock()
	partials := l.partials
	l.mu.Unlock()
	n.enter(r.id, phaseAggregating)
	for node, p := range partials {
		if err := r.merge(p); err != nil {
			n.log.Warn("partial sum refused", "node", node, "round", r.id, "err", err)
		}
	}

	survivors := r.count
	if survivors < minSurvivors {
		n.log.Info("round abandoned", "round", r.id, "survivors", survivors, "min_clients", minSurvivors)
		return l.abandon(r, survivors, fmt.Sprintf("%d survivors, fewer than %d", survivors, minSurvivors), nil)
	}
	delta := make([]float64, len(base.Model.Params))
	sum, err := r.agg.Result(delta)
	if err != nil {
		return l.abandon(r, survivors, err.Error(), err)
	}
	if privacy.Mechanism == wire.MechSkellam {
		// Charge the noise that reached the sum: the shares of the
		// survivors of every group, less the device's own. Every group
		// encodes at the scale of the whole cohort (SecAggParams.Cohort)
		// and adds the same share, so the round's parameters give it.
		dist, err := distributed(open.SecAgg, privacy, len(base.Model.Params))
		if err != nil {
			return l.abandon(r, survivors, err.Error(), err)
		}
		sp := dist.Survivors(survivors)
		privacy.Variance, privacy.L1, privacy.L2 = sp.Variance, sp.L1, sp.L2
	}
	return l.commit(r, delta, sum.Clipped, survivors, r.below, len(cohort), privacy, start)
}

// newAggregator returns the aggregator of a round's updates: 8-bit
// quantized ones (with their quantizer) when the training asks for them,
// float ones otherwise.
func newAggregator(cfg Training, round uint64, base *Version, clip float64) (partialAggregator, *aggregation.Quantized, *fixedpoint.Quantizer, error) {
	if cfg.UploadBits == 8 {
		q, err := fixedpoint.NewQuantizer(len(base.Model.Params), clip, wire.UploadSeed(round, base.Digest[:]))
		if err != nil {
			return nil, nil, nil, err
		}
		a := aggregation.NewQuantized(q)
		return a, a, q, nil
	}
	a, err := aggregation.NewPlain(len(base.Model.Params), clip)
	return a, nil, nil, err
}

// partialAggregator is an aggregator whose sums another can merge: a
// node's of its devices' updates, merged by the leader.
type partialAggregator interface {
	aggregation.Aggregator
	Partial() aggregation.Partial
	Merge(aggregation.Partial) error
}

// merge adds a node's partial sum to the owner's round.
func (r *round) merge(p *wire.Partial) error {
	x := aggregation.Partial{Summary: aggregation.Summary{Clients: p.Clients, Weight: float64(p.Clients), Clipped: p.Clipped},
		Sum: p.Sum, QClients: p.QClients}
	if len(p.QSum) > 0 {
		x.QSum = p.Int64s()
	}
	if err := r.agg.Merge(x); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count += p.Clients
	r.loss += p.Loss
	r.n += p.N
	r.below += p.Below
	return nil
}

// abandon ends r without a model, committing AbandonRound with reason. It
// returns err (a failure, not a normal outcome such as too few
// survivors), joined with any failure to commit the abandonment.
func (l *leader) abandon(r *round, survivors int, reason string, err error) error {
	r.mu.Lock()
	if r.phase != phaseAbandoned {
		r.advance(phaseAbandoned)
	}
	r.mu.Unlock()
	_, aerr := l.n.apply(&wire.AbandonRound{Round: r.id, Survivors: survivors, Reason: reason})
	return errors.Join(err, aerr)
}

// commit steps the server optimizer with the round's mean update delta
// and commits the new model. below counts the survivors whose update was
// not clipped (adaptive clipping).
func (l *leader) commit(r *round, delta []float64, clipped, survivors, below, cohort int, privacy wire.PrivacyParams, start time.Time) error {
	n := l.n
	rng := dp.NewSecureRand()
	var next float64
	zUpdate := privacy.NoiseMultiplier
	if r.cfg.AdaptiveClip {
		// The count's noise is part of the round's privacy: the update
		// needs z_Δ > z for the round to cost z (Andrew et al., Thm 1).
		c, err := r.cfg.Clipper(r.clip)
		if err != nil {
			return l.abandon(r, survivors, err.Error(), err)
		}
		f, err := c.NoisyFraction(below, survivors, rng)
		if err == nil {
			err = c.Apply(f)
		}
		if err != nil {
			return l.abandon(r, survivors, err.Error(), err)
		}
		next = c.Clip()
		if r.cfg.NoiseMode() == NoiseCentral {
			zUpdate = c.UpdateNoiseMultiplier()
		}
	}
	if z := privacy.NoiseMultiplier; z > 0 {
		// The ledger charges this round for noise of std z·clip on the
		// sum: central, the leader adds it now, before anything is
		// committed; distributed, the clients' shares are in the sum
		// already. Either way divide by the fixed number of updates wanted
		// (the actual count would itself depend on who took part).
		for i := range delta {
			delta[i] *= float64(survivors)
		}
		if privacy.Mechanism == wire.MechGaussian {
			dp.AddGaussian(delta, zUpdate*r.clip, rng)
		}
		for i := range delta {
			delta[i] /= float64(r.cfg.ClientsPerRound)
		}
	}
	c, err := l.aggregate(r, delta, clipped, survivors, cohort, privacy)
	if err != nil {
		return l.abandon(r, survivors, err.Error(), err)
	}
	c.NextClip = next
	if !r.step(phaseCommitting) {
		return ErrNotLeader
	}
	n.enter(r.id, phaseCommitting)
	res, err := n.apply(c)
	if err != nil {
		return fmt.Errorf("commit round %d: %w", r.id, err)
	}
	r.step(phaseCommitted)
	n.enter(r.id, phaseCommitted)
	n.log.Info("round committed", "round", r.id, "model", res, "survivors", survivors, "cohort", cohort, "duration_ms", time.Since(start).Milliseconds())
	return nil
}

// aggregate steps the server optimizer, restored from the replicated
// state, with the round's mean update delta on a copy of the base model,
// as every node will when it applies the commit: the leader proposes only
// what steps cleanly, and the commit carries the new model's digest.
func (l *leader) aggregate(r *round, delta []float64, clipped, survivors, cohort int, privacy wire.PrivacyParams) (*wire.CommitUpdate, error) {
	var optM, optV []float64
	l.n.fsm.Read(func(s *State) { optM, optV = s.Optimizer() })
	d32 := wire.Vec32Of(delta) // what every node will step with
	m, _, _, err := store.NextModel(r.cfg.Optimizer, r.base.Model, optM, optV, d32.Float64s())
	if err != nil {
		return nil, fmt.Errorf("round %d: %w", r.id, err)
	}
	d := wire.Digest(m)
	return &wire.CommitUpdate{
		Round: r.id, Model: r.base.Version, Delta: d32, Digest: d[:],
		Cohort: cohort, Survivors: survivors, Clipped: clipped, Loss: r.loss, N: r.n, Privacy: privacy,
	}, nil
}

// upload counts a selected client's update in this node's part of the
// current round.
func (n *Node) upload(m *wire.Upload) wire.Message {
	r := n.part.Load()
	if r == nil || r.id != m.Round {
		return wire.Errorf(wire.CodeNoRound, "round %d is not open", m.Round)
	}
	var v []int8
	if len(m.Quantized) > 0 {
		v = m.Int8s()
	}
	if e := r.admit(m, v); e != nil {
		return e
	}
	defer r.inflight.Done()

	if v != nil {
		if err := r.quant.AddQuantized(v); err != nil {
			return wire.Errorf(wire.CodeShape, "%v", err)
		}
	} else if err := r.agg.Add(m.Delta, 1); err != nil {
		code := wire.CodeMalformed
		if errors.Is(err, aggregation.ErrNotFinite) {
			code = wire.CodeNotFinite
		}
		return wire.Errorf(code, "%v", err)
	}
	r.mu.Lock()
	r.count++
	r.loss += m.Loss
	r.n += m.N
	if m.BelowClip {
		r.below++
	}
	if r.count == min(r.want, len(r.tickets)) {
		close(r.enough)
	}
	r.mu.Unlock()
	n.metrics.uploads.Inc()
	return &wire.UploadAck{Round: m.Round}
}

// admit checks an upload, and its quantized update v (nil for float64),
// against the round and, if it may be counted, reserves the client's slot
// and registers it as in flight.
func (r *round) admit(m *wire.Upload, v []int8) *wire.Error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch t := r.tickets[m.ClientID]; {
	case r.phase != phaseCollecting:
		return wire.Errorf(wire.CodeNoRound, "round %d is %s", m.Round, r.phase)
	case t == nil || string(t) != string(m.Ticket):
		return wire.Errorf(wire.CodeNotSelected, "client %q holds no ticket for round %d", m.ClientID, m.Round)
	case r.uploaded[m.ClientID]:
		return wire.Errorf(wire.CodeDuplicate, "client %q already uploaded in round %d", m.ClientID, m.Round)
	case m.Model != r.base.Version:
		return wire.Errorf(wire.CodeStaleModel, "update on model %d, round %d trains model %d", m.Model, m.Round, r.base.Version)
	}
	if err := m.CheckUpdate(len(r.base.Model.Params)); err != nil {
		return wire.AsError(err)
	}
	if v != nil {
		if r.q == nil {
			return wire.Errorf(wire.CodeShape, "a quantized update in round %d, which takes float64 updates", m.Round)
		}
		if m.Step != r.q.Step() {
			return wire.Errorf(wire.CodeShape, "an update quantized at step %g, round %d quantizes at %g", m.Step, m.Round, r.q.Step())
		}
		if err := r.q.Check(v); err != nil {
			return wire.Errorf(wire.CodeShape, "%v", err)
		}
	}
	r.uploaded[m.ClientID] = true
	r.inflight.Add(1)
	return nil
}

// roundSizes are the sizes a round's plans announce: the bytes of the
// model's download (its float32 frames, as GetModel sends them to a
// device that asks for float32, as every current one does) and the most a
// device sends: its update, framed, or in a secure round its encoded
// masked input and its keys and shares for every peer; and the digest of
// the float32 download.
func (n *Node) roundSizes(base *Version, cfg Training, sec *secureRound) (down, up int64, digest32 [32]byte) {
	if em, err := n.modelFrames(base, cfg.WireEvents(), cfg.WireCatalogue()); err == nil {
		for _, f := range em.frames32 {
			down += int64(f.Len())
		}
		digest32 = em.digest32
	}
	if sec == nil {
		return down, wire.UploadBytes(len(base.Model.Params), cfg.PlanUploadBits()), digest32
	}
	return down, wire.SecAggBytes(sec.params, sec.words), digest32
}

// uploadBits is Plan.UploadBits of r.
func (r *round) uploadBits() uint8 {
	if r.quant != nil {
		return wire.UploadBits8
	}
	return 0
}
