package coordinator

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math"
	"slices"
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
// (in selection order) and clip norm clip, committed in its manifest. A
// signed round (Training.SecAggSigned) takes the threshold that resists
// Training.SecAggColluders colluding devices per neighbourhood
// (secagg.ActiveThreshold), on a degree of at least SecAggColluders+4,
// and binds the cohort into its graph seed (wire.SecAggSignedSeed).
func secAggParams(cfg Training, round uint64, digest []byte, ids []string, clip float64) *wire.SecAggParams {
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
	graph, rot := wire.SecAggSeeds(round, digest)
	if cfg.SecAggSigned {
		// Training.Validate keeps SecAggColluders <= MinClients-3, so t
		// stays below the degree of any cohort the leader selects.
		t = secagg.ActiveThreshold(eff, cfg.SecAggColluders)
		graph = wire.SecAggSignedSeed(round, digest, ids)
	}
	p := &wire.SecAggParams{
		Clients: n, Threshold: t, Degree: deg, MinSurvivors: min(n, max(t, cfg.MinClients)), Bits: secAggBits,
		Clip: clip, Seed: graph[:], RotationSeed: rot[:], PhaseMs: cfg.SecAggPhase.Milliseconds(), ClipBit: cfg.AdaptiveClip,
		Signed: cfg.SecAggSigned,
	}
	if cfg.UploadBits == 8 {
		// 8-bit inputs: the field holds the cohort's sum of bytes exactly.
		p.Quantized, p.Bits = true, int(fixedpoint.QuantFieldBits(n))
	}
	return p
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

// secureRound is the leader's side of a secure round: the secagg server
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
}

// roundPhases maps secure aggregation's phases to the round's.
var roundPhases = map[secagg.Phase]phase{
	secagg.PhaseAdvertiseKeys: phaseAdvertising, secagg.PhaseShareKeys: phaseSharing,
	secagg.PhaseMaskedInput: phaseMasking, secagg.PhaseConsistencyCheck: phaseChecking, secagg.PhaseUnmask: phaseUnmasking,
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
	s.order = []secagg.Phase{secagg.PhaseAdvertiseKeys, secagg.PhaseShareKeys, secagg.PhaseMaskedInput, secagg.PhaseUnmask}
	if p.Signed {
		s.order = slices.Insert(s.order, 3, secagg.PhaseConsistencyCheck)
	}
	s.closed = make(map[secagg.Phase]chan struct{}, len(s.order))
	for _, p := range s.order {
		s.closed[p] = make(chan struct{})
	}
	return s, nil
}

// secureRound drives the phases of secure aggregation in protocol order,
// each until its deadline or until every expected client answered, then
// decodes the sum and commits the round; or abandons it when secagg
// aborts.
func (l *leader) secureRound(ctx context.Context, r *round, open *wire.OpenRound, start time.Time) error {
	n := l.n
	cohort := len(open.Cohort)
	privacy := open.Privacy
	members := n.lobby.take(r.id, open.Cohort)
	var err error
	if r.sec, err = newSecureRound(r.id, open.SecAgg, privacy, open.Cohort, len(r.base.Model.Params), n.secAggLie); err != nil {
		return l.abandon(r, 0, err.Error(), err)
	}
	r.tickets = make(map[string][]byte, cohort)
	for _, w := range members {
		if w != nil {
			t := make([]byte, wire.TicketLen)
			crand.Read(t)
			r.tickets[w.id] = t
		}
	}
	deadline := time.Now().Add(r.cfg.RoundTimeout)
	timeLeft := r.cfg.RoundTimeout + time.Duration(len(r.sec.order)-1)*r.cfg.SecAggPhase
	l.mu.Lock()
	r.mu.Lock()
	r.advance(phaseSelected)
	// The state must be ready before the first plan goes out, as its
	// answer may arrive at once.
	r.advance(phaseAdvertising)
	l.owned = r
	r.mu.Unlock()
	l.mu.Unlock()
	n.part.Store(r)
	n.enter(r.id, phaseSelected)
	var planCohort []string // a signed round's devices check their peers against it
	if open.SecAgg.Signed {
		planCohort = open.Cohort
	}
	n.sendPlans(r, openFromWire(open), members, planCohort, timeLeft)
	n.log.Info("round started", "round", r.id, "model", r.base.Version, "cohort", cohort, "secagg", true)

	s := r.sec
	defer close(s.done)
	for i, p := range s.order {
		if i > 0 {
			deadline = time.Now().Add(r.cfg.SecAggPhase)
		}
		timer := time.NewTimer(time.Until(deadline))
	wait:
		for len(s.srv.Awaiting()) > 0 {
			select {
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			case <-timer.C:
				break wait
			case <-s.news:
			}
		}
		timer.Stop()
		err := s.srv.ClosePhase()
		close(s.closed[p])
		if err != nil {
			survivors := len(s.srv.Survivors())
			l.n.log.Info("round abandoned", "round", r.id, "secagg_phase", p.String(), "err", err)
			return l.abandon(r, survivors, fmt.Sprintf("secure aggregation, %v: %v", p, err), nil)
		}
		to := phaseAggregating
		if i+1 < len(s.order) {
			to = roundPhases[s.order[i+1]]
		}
		if !r.step(to) {
			return ErrNotLeader
		}
	}
	res, err := s.srv.Result()
	if err != nil {
		return l.abandon(r, len(s.srv.Survivors()), err.Error(), err)
	}
	delta := make([]float64, len(r.base.Model.Params))
	pad := s.words
	if err := s.decode(delta, res.Sum[:pad]); err != nil {
		return l.abandon(r, res.Count, err.Error(), err)
	}
	below := 0
	if s.params.ClipBit {
		// The sum of the survivors' bits; a value beyond the count means a
		// client sent a word other than 0 or 1.
		if b := res.Sum[pad]; b <= uint64(res.Count) {
			below = int(b)
		} else {
			return l.abandon(r, res.Count, fmt.Sprintf("clip bits sum to %d of %d survivors", b, res.Count), nil)
		}
	}
	for i := range delta {
		delta[i] /= float64(res.Count)
	}
	if privacy.Mechanism == wire.MechSkellam {
		// Charge the noise that reached the sum: the survivors' shares,
		// less the client's own.
		sp := s.dist.Survivors(res.Count)
		privacy.Variance, privacy.L1, privacy.L2 = sp.Variance, sp.L1, sp.L2
	}
	// Loss, N and Clipped stay 0: the leader sees only the sum, and the
	// round record says so (RoundRecord.LossUnknown).
	return l.commit(r, delta, 0, res.Count, below, cohort, privacy, start)
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
			if peer.cert == nil || peer.Device != h.ClientID {
				return wire.Errorf(wire.CodeUnauthenticated, "a signed secure round needs the device certificate of %q on the connection", h.ClientID)
			}
			adv.Credential = peer.cert.Raw
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
		err = s.srv.HandleConsistencyResponse(secagg.ConsistencyResponse{Round: r.id, From: id, Signature: m.Signature})
	case *wire.SecAggUnmask:
		p = secagg.PhaseUnmask
		err = s.srv.HandleUnmaskResponse(secagg.UnmaskResponse{Round: r.id, From: id, SelfMaskShares: wire.Shares(m.SelfMaskShares), MaskKeyShares: wire.Shares(m.MaskKeyShares)})
	}
	if err != nil {
		return secAggError(err)
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
		return &wire.SecAggUnmaskRequest{Round: ur.Round, To: ur.To, Survivors: ur.Survivors, Dropped: ur.Dropped, Signatures: wire.PeerSignaturesOf(ur.Signatures)}
	}
}
