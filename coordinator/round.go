package coordinator

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	dp "github.com/fedrec/fedrec/aggregation/privacy"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/aggregation/fixedpoint"
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
	phaseChecking                     // secure, signed: clients sign the survivor set
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

// maxWaiting bounds the check-ins a leader holds open.
const maxWaiting = 100_000

// leader is the round scheduler of one term of leadership.
type leader struct {
	n *Node

	mu      sync.Mutex
	waiting []*waiter
	byID    map[string]*waiter
	arrived chan struct{} // closed and replaced on every check-in
	cur     *round        // nil between rounds
	stopped bool
	pace    *pacer
}

type waiter struct {
	id    string
	reply chan wire.Message // buffered 1; exactly one reply is sent
}

func newLeader(n *Node) *leader {
	n.rngMu.Lock()
	rng := rand.New(rand.NewPCG(n.rng.Uint64(), 0x9ace))
	n.rngMu.Unlock()
	return &leader{n: n, byID: map[string]*waiter{}, arrived: make(chan struct{}),
		pace: newPacer(n.cfg.PaceMin, n.cfg.PaceMax, wire.MaxHold, rng)}
}

// stop answers everyone still waiting: this node no longer leads.
func (l *leader) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	for _, w := range l.waiting {
		w.reply <- &wire.Error{Code: wire.CodeNotLeader, Message: "leadership changed"}
	}
	l.waiting, l.byID = nil, nil
	if r := l.cur; r != nil {
		r.mu.Lock()
		if r.phase != phaseCommitted {
			r.phase = phaseAbandoned
		}
		r.mu.Unlock()
	}
}

// checkIn holds a client until the next selection.
func (l *leader) checkIn(ctx context.Context, m *wire.CheckIn) wire.Message {
	w := &waiter{id: m.ClientID, reply: make(chan wire.Message, 1)}
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return &wire.Error{Code: wire.CodeNotLeader, Message: "leadership changed"}
	}
	if len(l.waiting) >= maxWaiting {
		l.mu.Unlock()
		return &wire.Wait{RetryAfterMs: 5000}
	}
	if old := l.byID[w.id]; old != nil {
		old.reply <- &wire.Wait{RetryAfterMs: 0}
		l.remove(old)
	}
	l.waiting = append(l.waiting, w)
	l.byID[w.id] = w
	l.pace.seen(w.id, time.Now().Add(wire.MaxHold))
	close(l.arrived)
	l.arrived = make(chan struct{})
	l.mu.Unlock()

	t := time.NewTimer(wire.MaxHold)
	defer t.Stop()
	select {
	case r := <-w.reply:
		return r
	case <-ctx.Done():
	case <-t.C:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case r := <-w.reply: // answered meanwhile
		return r
	default:
	}
	l.remove(w)
	return &wire.Wait{RetryAfterMs: 0}
}

// remove drops w from the waiting list; l.mu is held.
func (l *leader) remove(w *waiter) {
	if l.byID[w.id] == w {
		delete(l.byID, w.id)
	}
	for i, x := range l.waiting {
		if x == w {
			l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
			return
		}
	}
}

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
	agg      aggregation.Aggregator // *Plain, or *Quantized for 8-bit uploads
	quant    *aggregation.Quantized // the 8-bit round's aggregator, nil for float64 uploads
	q        *fixedpoint.Quantizer  // the 8-bit round's quantizer
	count    int                    // uploads added
	loss     float64
	n        int64
	below    int           // uploads whose norm was at most clip (adaptive clipping)
	clip     float64       // the round's clip norm
	enough   chan struct{} // closed when every wanted upload arrived
	sec      *secureRound  // nil for a plaintext round
	m        *metrics      // times the phases (observe); nil: not timed
	since    time.Time     // when the round entered its phase
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
	n.fsm.read(func(s *State) {
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

	// Gathering: wait for a full cohort, or for the window to pass with
	// at least MinClients waiting.
	want := cfg.cohortSize()
	window := time.NewTimer(cfg.CheckInWindow)
	defer window.Stop()
	windowDone := false
	for {
		l.mu.Lock()
		have, arrived := len(l.waiting), l.arrived
		l.mu.Unlock()
		if have >= want || (windowDone && have >= cfg.MinClients) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-arrived:
		case <-window.C:
			windowDone = true
		}
	}

	// Selection: sample the cohort from everyone waiting; the rest are
	// told to come back.
	l.mu.Lock()
	pool := l.waiting
	l.waiting, l.byID = nil, map[string]*waiter{}
	n.shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	k := min(want, len(pool))
	cohort, rest := pool[:k], pool[k:]
	now := time.Now()
	ids := make([]string, len(cohort))
	for i, w := range cohort {
		ids[i] = w.id
	}
	// Pace steering (pace.go): the rest come back spread over the rounds
	// it takes to select everyone once.
	mean := l.pace.selected(now, ids, now.Add(cfg.RoundTimeout), want)
	for _, w := range rest {
		d := l.pace.retry(w.id, now, mean)
		n.metrics.paceRetry.Observe(d.Seconds())
		w.reply <- &wire.Wait{Round: r.id, Model: base.Version, RetryAfterMs: d.Milliseconds()}
	}
	n.metrics.pacePopulation.Set(float64(l.pace.population(now)))
	n.metrics.pacePeriod.Set(l.pace.period.Seconds())
	l.mu.Unlock()
	r.tickets = make(map[string][]byte, len(cohort))
	for _, w := range cohort {
		t := make([]byte, wire.TicketLen)
		crand.Read(t)
		r.tickets[w.id] = t
	}
	open := &wire.OpenRound{Round: r.id, Model: base.Version, Digest: base.Digest[:], Cohort: ids, Clip: clip, Leader: n.cfg.ID}
	if cfg.SecAgg {
		open.SecAgg = secAggParams(cfg, r.id, base.Digest[:], ids, clip)
	}
	privacy := cfg.privacy(len(cohort), open.SecAgg)
	open.Privacy = privacy
	if _, err := n.apply(open); err != nil {
		for _, w := range cohort {
			w.reply <- &wire.Error{Code: wire.CodeUnavailable, Message: "round could not start", RetryAfterMs: 500}
		}
		return fmt.Errorf("open round %d: %w", r.id, err)
	}
	var err error
	if open.SecAgg != nil {
		if r.sec, err = newSecureRound(r.id, open.SecAgg, privacy, ids, len(base.Model.Params), n.secAggLie); err != nil {
			return l.abandon(r, 0, err.Error(), err)
		}
	} else {
		if cfg.UploadBits == 8 {
			q, err := fixedpoint.NewQuantizer(len(base.Model.Params), clip, wire.UploadSeed(r.id, base.Digest[:]))
			if err != nil {
				return l.abandon(r, 0, err.Error(), err)
			}
			r.quant, r.q = aggregation.NewQuantized(q), q
			r.agg = r.quant
		} else if r.agg, err = aggregation.NewPlain(len(base.Model.Params), clip); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(cfg.RoundTimeout)
	timeLeft := cfg.RoundTimeout
	if r.sec != nil {
		timeLeft += time.Duration(len(r.sec.order)-1) * cfg.SecAggPhase
	}
	l.mu.Lock()
	r.mu.Lock()
	r.advance(phaseSelected)
	// Rounds collect at once; the state must be ready before the first
	// plan goes out, as its upload may arrive at once.
	if r.sec != nil {
		r.advance(phaseAdvertising)
	} else {
		r.advance(phaseCollecting)
	}
	l.cur = r
	r.mu.Unlock()
	l.mu.Unlock()
	n.enter(r.id, phaseSelected)
	down, up, digest32 := n.roundSizes(base, cfg, r.sec)
	started := time.Now()
	var planCohort []string // a signed round's devices check their peers against it
	if open.SecAgg != nil && open.SecAgg.Signed {
		planCohort = ids
	}
	for i, w := range cohort {
		w.reply <- &wire.Plan{
			Cohort:        planCohort,
			DownloadBytes: down, UploadBytes: up, Digest32: digest32[:], UploadBits: r.uploadBits(),
			Round: r.id, Model: base.Version, Digest: base.Digest[:], Kind: wire.KindOf(base.Model.Kind),
			Items: base.Model.Items, Rank: base.Model.Rank,
			Train: cfg.trainParams(),
			Clip:  clip, Privacy: privacy, MinClients: cfg.MinClients, TimeLeftMs: (timeLeft - time.Since(started)).Milliseconds(), Ticket: r.tickets[w.id],
			SecAgg: open.SecAgg, SecAggID: uint32(i),
		}
	}
	n.log.Info("round started", "round", r.id, "model", base.Version, "cohort", len(cohort), "secagg", r.sec != nil)
	if r.sec == nil {
		n.enter(r.id, phaseCollecting)
	}
	if r.sec != nil {
		return l.secureRound(ctx, r, deadline, len(cohort), privacy, start)
	}

	// Collecting: plaintext uploads until the deadline or until enough.
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	case <-r.enough:
	}
	r.mu.Lock()
	if r.phase == phaseAbandoned || ctx.Err() != nil {
		r.mu.Unlock()
		return ctx.Err()
	}
	r.advance(phaseAggregating)
	r.mu.Unlock()
	n.enter(r.id, phaseAggregating)
	r.inflight.Wait()

	survivors := r.count
	if survivors < cfg.MinClients {
		n.log.Info("round abandoned", "round", r.id, "survivors", survivors, "min_clients", cfg.MinClients)
		return l.abandon(r, survivors, fmt.Sprintf("%d survivors, fewer than %d", survivors, cfg.MinClients), nil)
	}
	delta := make([]float64, len(base.Model.Params))
	sum, err := r.agg.Result(delta)
	if err != nil {
		return l.abandon(r, survivors, err.Error(), err)
	}
	return l.commit(r, delta, sum.Clipped, survivors, r.below, len(cohort), privacy, start)
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
		c, err := r.cfg.clipper(r.clip)
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
		if r.cfg.noiseMode() == NoiseCentral {
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
// state, with the round's mean update delta on a copy of the base model.
func (l *leader) aggregate(r *round, delta []float64, clipped, survivors, cohort int, privacy wire.PrivacyParams) (*wire.CommitRound, error) {
	base := r.base.Model
	dim := len(base.Params)
	opt, err := aggregation.NewOptimizer(r.cfg.Optimizer, dim)
	if err != nil {
		return nil, err
	}
	var optM, optV []float64
	ad, adaptive := opt.(*aggregation.Adaptive)
	if adaptive {
		l.n.fsm.read(func(s *State) { optM, optV = s.Optimizer() })
		if optM != nil { // nil before the first commit: fresh moments
			copy(ad.M, optM)
			copy(ad.V, optV)
		}
	}
	params := append([]float64(nil), base.Params...)
	if err := opt.Step(params, delta); err != nil {
		return nil, err
	}
	for i, x := range params {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("round %d: param %d is %v after the server step", r.id, i, x)
		}
	}
	m := base.Clone()
	m.Params = params
	d := wire.Digest(m)
	c := &wire.CommitRound{
		Round: r.id, Model: r.base.Version, Params: params, Digest: d[:],
		Cohort: cohort, Survivors: survivors, Clipped: clipped, Loss: r.loss, N: r.n, Privacy: privacy,
	}
	if adaptive {
		c.OptM, c.OptV = ad.M, ad.V
	}
	return c, nil
}

// upload counts a selected client's update in the current round.
func (l *leader) upload(m *wire.Upload) wire.Message {
	l.mu.Lock()
	r := l.cur
	l.mu.Unlock()
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
	if r.count == min(r.cfg.ClientsPerRound, len(r.tickets)) {
		close(r.enough)
	}
	r.mu.Unlock()
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
	if em, err := n.modelFrames(base, cfg.wireEvents(), cfg.wireCatalogue()); err == nil {
		for _, f := range em.frames32 {
			down += int64(f.Len())
		}
		digest32 = em.digest32
	}
	if sec == nil {
		return down, wire.UploadBytes(len(base.Model.Params), cfg.planUploadBits()), digest32
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
