package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fedrec/fedrec/aggregation/fixedpoint"
	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// secAggBits is the modulus of a secure round: 2^32 leaves room for
// cohorts of thousands at a resolution far below the model's noise.
const secAggBits = 32

// secAggParams are the parameters of a secure round with the cohort ids
// (in selection order) and clip norm clip, committed in its manifest
// (OpenRound.SecAgg): their MinSurvivors is the fewest inputs the leader
// commits a sum of. A signed round (Training.SecAggSigned) takes the
// threshold that resists Training.SecAggColluders colluding devices per
// neighbourhood (secagg.ActiveThreshold), on a degree of at least
// SecAggColluders+4, and binds the cohort into its graph seed
// (wire.SecAggSignedSeed).
func secAggParams(cfg Training, round uint64, digest []byte, ids []string, clip float64) *wire.SecAggParams {
	p := secAggParamsOf(cfg, round, digest, "", ids, clip)
	p.MinSurvivors = min(len(ids), max(p.Threshold, cfg.MinClients))
	return p
}

// groupSecAggParams are the parameters of node's group ids of a secure
// round whose cohort has cohort devices (RoundGroup.SecAgg): those of
// secAggParams for a cohort of the group, bound to the node
// (wire.SecAggGroupSeed), encoding for the whole cohort
// (SecAggParams.Cohort). The group's sum is revealed once its threshold
// survive; the round's MinSurvivors applies to the sum over groups.
func groupSecAggParams(cfg Training, round uint64, digest []byte, node string, ids []string, cohort int, clip float64) *wire.SecAggParams {
	p := secAggParamsOf(cfg, round, digest, node, ids, clip)
	p.MinSurvivors, p.Cohort = p.Threshold, cohort
	return p
}

// secAggParamsOf is secAggParams of the clients ids, the group of node
// ("" for the whole cohort), without MinSurvivors.
func secAggParamsOf(cfg Training, round uint64, digest []byte, node string, ids []string, clip float64) *wire.SecAggParams {
	n := len(ids)
	deg := secAggDegree(n)
	if cfg.SecAggSigned && deg != 0 && deg < cfg.SecAggColluders+4 {
		deg = cfg.SecAggColluders + 4 + cfg.SecAggColluders%2 // even
		if deg >= n-1 {
			deg = 0
		}
	}
	eff := deg
	if eff == 0 {
		eff = n - 1
	}
	t := eff/2 + 1
	if cfg.SecAggSigned {
		// Training.Validate keeps SecAggColluders <= MinClients-3, and
		// groups have at least SecAggColluders+3 members
		// (Training.MinGroup), so t stays below the degree.
		t = secagg.ActiveThreshold(eff, cfg.SecAggColluders)
	}
	p := &wire.SecAggParams{
		Clients: n, Threshold: t, Degree: deg, Bits: secAggBits,
		Clip: clip, PhaseMs: cfg.SecAggPhase.Milliseconds(), ClipBit: cfg.AdaptiveClip,
		Signed: cfg.SecAggSigned, Roster: cfg.SecAggRoster, Group: node,
	}
	if cfg.UploadBits == 8 {
		// 8-bit inputs: the field holds the group's sum of bytes exactly.
		p.Quantized, p.Bits = true, int(fixedpoint.QuantFieldBits(n))
	}
	graph, rot := p.WantSeeds(round, digest, ids)
	p.Seed, p.RotationSeed = graph[:], rot[:]
	return p
}

// distributed returns the encoder and noise plan of a secure round: the
// same privacy.NewDistributed that every client of the round builds from
// its Plan (client/internal/round/round.go).
func distributed(p *wire.SecAggParams, priv wire.PrivacyParams, dim int) (*privacy.Distributed, error) {
	return privacy.NewDistributed(p.DistributedConfig(priv, dim))
}

// secAggDegree is the SecAgg+ neighbourhood: about 2·log2(n) neighbours
// (even, as the Harary graph needs), the complete graph (0) for small
// cohorts.
func secAggDegree(n int) int {
	k := 2 * int(math.Ceil(math.Log2(float64(max(n, 2)))))
	if k >= n-1 {
		return 0
	}
	return k
}

// secureRound is a node's side of its group's secure aggregation: the secagg server
// state machine, the fixed-point decoder with the round's noise plan, and
// a channel per phase closed when the phase closes, on which held
// requests wait.
type secureRound struct {
	params *wire.SecAggParams
	srv    *secagg.Server
	dist   *privacy.Distributed  // unquantized rounds
	enc    *fixedpoint.Encoder   // unquantized rounds
	quant  *fixedpoint.Quantizer // rounds of 8-bit inputs
	words  int                   // the encoded update's length: the padded dimension, or the dimension
	ids    map[string]uint32     // client id → protocol id (its cohort index)
	// order lists the round's phases in protocol order. Phase values are
	// append-only, so a signed round's consistency check (7) comes
	// between masked input (3) and unmask (4): never step through
	// phases by value.
	order  []secagg.Phase
	closed map[secagg.Phase]chan struct{} // never written after newSecureRound
	done   chan struct{}                  // closed when the driver returns
	news   chan struct{}                  // a message arrived (buffered 1)
	lie    func(to uint32, m any)         // tests: Node.secAggLie
	// unlisted counts the adverts refused in a round of roster devices
	// only: the first is logged, so that an operator whose roster is
	// missing or stale sees why signed rounds fail.
	unlisted atomic.Int32
}

// roundPhases maps secure aggregation's phases to the round's.
var roundPhases = map[secagg.Phase]phase{
	secagg.PhaseAdvertiseKeys: phaseAdvertising, secagg.PhaseShareKeys: phaseSharing,
	secagg.PhaseMaskedInput: phaseMasking, secagg.PhaseConsistencyCheck: phaseChecking, secagg.PhaseUnmask: phaseUnmasking,
}

// secAggOrder lists the phases of a secure round in protocol order.
func secAggOrder(signed bool) []secagg.Phase {
	order := []secagg.Phase{secagg.PhaseAdvertiseKeys, secagg.PhaseShareKeys, secagg.PhaseMaskedInput, secagg.PhaseUnmask}
	if signed {
		order = slices.Insert(order, 3, secagg.PhaseConsistencyCheck)
	}
	return order
}

func newSecureRound(round uint64, p *wire.SecAggParams, priv wire.PrivacyParams, cohort []string, dim int, lie func(uint32, any)) (*secureRound, error) {
	s := &secureRound{params: p, ids: make(map[string]uint32, len(cohort)),
		done: make(chan struct{}), news: make(chan struct{}, 1), lie: lie}
	var err error
	if p.Quantized {
		if s.quant, err = fixedpoint.NewQuantizer(dim, p.Clip, [32]byte(p.RotationSeed)); err != nil {
			return nil, err
		}
		s.words = dim
	} else {
		if s.dist, err = distributed(p, priv, dim); err != nil {
			return nil, err
		}
		s.enc, s.words = s.dist.Encoder, s.dist.Encoder.PaddedDim()
	}
	if s.srv, err = secagg.NewServer(p.Config(round, p.InputLen(s.words)), secagg.ServerOptions{}); err != nil {
		return nil, err
	}
	for i, id := range cohort {
		s.ids[id] = uint32(i)
	}
	s.order = secAggOrder(p.Signed)
	s.closed = make(map[secagg.Phase]chan struct{}, len(s.order))
	for _, p := range s.order {
		s.closed[p] = make(chan struct{})
	}
	return s, nil
}

// runSecurePart runs this node's part of the secure round open: SecAgg+
// with parameters p over its group ids, each phase until its deadline or
// until every expected device answered; then it decodes the group's sum
// and sends it to the leader as a Partial. A group whose secure
// aggregation aborts sends an empty one, so the leader need not wait for
// it. The part ends early when the round is no longer open (abandoned by
// a new leader).
func (n *Node) runSecurePart(open *OpenRound, ids []string, p *wire.SecAggParams) {
	r, members := n.startPart(open, ids)
	if r == nil {
		return
	}
	cfg, base := r.cfg, r.base
	var err error
	if r.sec, err = newSecureRound(r.id, p, open.Privacy, ids, len(base.Model.Params), n.secAggLie); err != nil {
		n.log.Warn("round part not started", "round", r.id, "err", err)
		return
	}
	s := r.sec
	timeLeft := cfg.RoundTimeout + time.Duration(len(s.order)-1)*cfg.SecAggPhase
	// The state must be ready before the first plan goes out, as its
	// answer may arrive at once.
	r.advance(phaseSelected)
	r.advance(phaseAdvertising)
	// Each node times its group's secure phases; the leader times the
	// round's (collecting spans them).
	r.m, r.since = n.metrics, time.Now()
	n.part.Store(r)
	var planCohort []string // a signed round's devices check their peers against it
	if p.Signed {
		planCohort = ids
	}
	n.sendPlans(r, open, members, planCohort, timeLeft)
	until := time.Now().Add(timeLeft + partialGrace)

	m := &wire.Partial{Version: wire.Version, Round: r.id, Node: n.cfg.ID}
	if err := n.driveSecure(r); err != nil {
		if n.ctx.Err() != nil || errors.Is(err, errRoundGone) {
			return
		}
		n.log.Info("secure aggregation aborted", "round", r.id, "survivors", len(s.srv.Survivors()), "err", err)
	} else if err := s.partial(m, len(base.Model.Params)); err != nil {
		n.log.Warn("secure sum not decoded", "round", r.id, "err", err)
		m = &wire.Partial{Version: wire.Version, Round: r.id, Node: n.cfg.ID}
	}
	n.sendPartial(m, until)
}

// errRoundGone ends a node's part of a round that is no longer open.
var errRoundGone = errors.New("coordinator: the round is no longer open")

// driveSecure steps the secure part r through its phases in protocol
// order. It returns secagg's error when the protocol aborts, and
// errRoundGone when the round ended meanwhile.
func (n *Node) driveSecure(r *round) error {
	s := r.sec
	defer close(s.done)
	deadline := time.Now().Add(r.cfg.RoundTimeout)
	for i, p := range s.order {
		if i > 0 {
			deadline = time.Now().Add(r.cfg.SecAggPhase)
		}
		timer := time.NewTimer(time.Until(deadline))
	wait:
		for len(s.srv.Awaiting()) > 0 {
			ch := n.fsm.Watch()
			live := false
			n.fsm.Read(func(st *State) { o := st.Open(); live = o != nil && o.Round == r.id })
			if !live {
				timer.Stop()
				return errRoundGone
			}
			select {
			case <-n.ctx.Done():
				timer.Stop()
				return n.ctx.Err()
			case <-timer.C:
				break wait
			case <-s.news:
			case <-ch:
			}
		}
		timer.Stop()
		err := s.srv.ClosePhase()
		close(s.closed[p])
		if err != nil {
			r.mu.Lock()
			r.advance(phaseAbandoned)
			r.mu.Unlock()
			return fmt.Errorf("secure aggregation, %v: %w", p, err)
		}
		to := phaseAggregating
		if i+1 < len(s.order) {
			to = roundPhases[s.order[i+1]]
		}
		r.mu.Lock()
		r.advance(to)
		r.mu.Unlock()
	}
	return nil
}

// partial fills m with the group's decoded sum: its survivors' count,
// their float sum and, with adaptive clipping, their bits.
func (s *secureRound) partial(m *wire.Partial, dim int) error {
	res, err := s.srv.Result()
	if err != nil {
		return err
	}
	sum := make([]float64, dim)
	pad := s.words
	if err := s.decode(sum, res.Sum[:pad]); err != nil {
		return err
	}
	if s.params.ClipBit {
		// The sum of the survivors' bits; a value beyond the count means a
		// device sent a word other than 0 or 1.
		b := res.Sum[pad]
		if b > uint64(res.Count) {
			return fmt.Errorf("clip bits sum to %d of %d survivors", b, res.Count)
		}
		m.Below = int(b)
	}
	m.Clients, m.Sum = res.Count, sum
	return nil
}

// decode turns the field sum of the survivors' encoded updates into the
// float sum.
func (s *secureRound) decode(dst []float64, sum []uint64) error {
	if s.quant == nil {
		return s.enc.Decode(dst, sum)
	}
	ints := make([]int64, len(sum))
	fixedpoint.Lift(ints, sum, uint(s.params.Bits))
	return s.quant.Decode(dst, ints)
}

// secAggCodes maps secagg's rejections to wire codes.
func secAggError(err error) *wire.Error {
	switch {
	case errors.Is(err, secagg.ErrDuplicate):
		return wire.Errorf(wire.CodeDuplicate, "%v", err)
	case errors.Is(err, secagg.ErrPhaseClosed), errors.Is(err, secagg.ErrDropped), errors.Is(err, secagg.ErrAborted),
		errors.Is(err, secagg.ErrWrongPhase), errors.Is(err, secagg.ErrWrongRound):
		return wire.Errorf(wire.CodeNoRound, "%v", err)
	}
	return wire.Errorf(wire.CodeMalformed, "%v", err)
}

// secure handles a client's message for a phase of a secure round: it
// hands it to the secagg server, holds the request until the phase
// closes, and answers with the client's message for the next phase. In a
// signed round the credential relayed with a device's keys is the
// certificate of the connection the keys came on (peer), not anything
// the device wrote: no device can advertise keys under another's
// identity.
func (n *Node) secure(ctx context.Context, h *wire.SecAggHeader, req wire.Message, peer Peer) wire.Message {
	r := n.part.Load()
	if r == nil || r.id != h.Round || r.sec == nil {
		return wire.Errorf(wire.CodeNoRound, "secure round %d is not open", h.Round)
	}
	r.mu.Lock()
	t := r.tickets[h.ClientID]
	r.mu.Unlock()
	if t == nil || string(t) != string(h.Ticket) {
		return wire.Errorf(wire.CodeNotSelected, "client %q holds no ticket for round %d", h.ClientID, h.Round)
	}
	s := r.sec
	id := s.ids[h.ClientID]
	var p secagg.Phase
	var err error
	switch m := req.(type) {
	case *wire.SecAggAdvert:
		p = secagg.PhaseAdvertiseKeys
		if m.Keys.Client != id {
			return wire.Errorf(wire.CodeMalformed, "keys of client %d sent by client %d", m.Keys.Client, id)
		}
		adv := m.Keys.KeyAdvert(r.id)
		if s.params.Signed {
			if peer.Cert == nil || peer.Device != h.ClientID {
				return wire.Errorf(wire.CodeUnauthenticated, "a signed secure round needs the device certificate of %q on the connection", h.ClientID)
			}
			adv.Credential = peer.Credential()
			if s.params.Roster && !wire.IsRosterCredential(adv.Credential) {
				// Its peers would refuse the bare certificate and abort:
				// it takes no part, as if it had dropped before this.
				if s.unlisted.Add(1) == 1 {
					n.log.Warn("a device the device roster does not list was turned away from a round of roster devices only (--secagg-roster): is the roster current?", "round", r.id, "device", h.ClientID)
				}
				return wire.Errorf(wire.CodeUnauthenticated, "the device roster does not list the certificate of %q, and this round admits only listed devices", h.ClientID)
			}
		}
		err = s.srv.HandleKeyAdvert(adv)
	case *wire.SecAggShares:
		p = secagg.PhaseShareKeys
		err = s.srv.HandleShareUpload(secagg.ShareUpload{Round: r.id, From: id, Shares: wire.Sealed(m.Shares)})
	case *wire.SecAggMasked:
		p = secagg.PhaseMaskedInput
		err = s.srv.HandleMaskedInput(secagg.MaskedInput{Round: r.id, From: id, Values: m.Words()})
	case *wire.SecAggCheck:
		p = secagg.PhaseConsistencyCheck
		err = s.srv.HandleConsistencyResponse(secagg.ConsistencyResponse{Round: r.id, From: id, Tags: wire.ConsistencyTags(m.Tags)})
	case *wire.SecAggUnmask:
		p = secagg.PhaseUnmask
		err = s.srv.HandleUnmaskResponse(secagg.UnmaskResponse{Round: r.id, From: id, SelfMaskShares: wire.Shares(m.SelfMaskShares), MaskKeyShares: wire.Shares(m.MaskKeyShares)})
	}
	if err != nil {
		return secAggError(err)
	}
	if p == secagg.PhaseMaskedInput {
		n.metrics.uploads.Inc()
	}
	select {
	case s.news <- struct{}{}:
	default:
	}
	if p == secagg.PhaseUnmask {
		return &wire.UploadAck{Round: r.id}
	}
	select {
	case <-s.closed[p]:
	case <-s.done:
	case <-ctx.Done():
		return wire.Errorf(wire.CodeUnavailable, "request cancelled")
	}
	select {
	case <-s.closed[p]:
	default:
		return wire.Errorf(wire.CodeNoRound, "round %d ended", r.id)
	}
	switch next := s.order[slices.Index(s.order, p)+1]; next {
	case secagg.PhaseShareKeys:
		pk, err := s.srv.PeerKeys(id)
		if err != nil {
			return secAggError(err)
		}
		return wire.PeerKeysOf(pk)
	case secagg.PhaseMaskedInput:
		sd, err := s.srv.ShareDelivery(id)
		if err != nil {
			return secAggError(err)
		}
		return &wire.SecAggDelivery{Round: sd.Round, To: sd.To, Shares: wire.SealedOf(sd.Shares)}
	case secagg.PhaseConsistencyCheck:
		cr, err := s.srv.ConsistencyRequest(id)
		if err != nil {
			return secAggError(err)
		}
		if s.lie != nil {
			s.lie(id, &cr)
		}
		return wire.CheckRequestOf(cr)
	default:
		ur, err := s.srv.UnmaskRequest(id)
		if err != nil {
			return secAggError(err)
		}
		if s.lie != nil {
			s.lie(id, &ur)
		}
		return &wire.SecAggUnmaskRequest{Round: ur.Round, To: ur.To, Survivors: ur.Survivors, Dropped: ur.Dropped, Tags: wire.TagsOf(ur.Tags)}
	}
}
