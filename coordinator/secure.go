package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/fedrec/fedrec/aggregation/fixedpoint"
	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// secAggBits is the modulus of a secure round: 2^32 leaves room for
// cohorts of thousands at a resolution far below the model's noise.
const secAggBits = 32

// secAggParams are the parameters of a secure round with a cohort of n
// and clip norm clip, committed in its manifest.
func secAggParams(cfg Training, round uint64, digest []byte, n int, clip float64) *wire.SecAggParams {
	deg := secAggDegree(n)
	eff := deg
	if eff == 0 {
		eff = n - 1
	}
	t := eff/2 + 1
	graph, rot := wire.SecAggSeeds(round, digest)
	return &wire.SecAggParams{
		Clients: n, Threshold: t, Degree: deg, MinSurvivors: min(n, max(t, cfg.MinClients)), Bits: secAggBits,
		Clip: clip, Seed: graph[:], RotationSeed: rot[:], PhaseMs: cfg.SecAggPhase.Milliseconds(), ClipBit: cfg.AdaptiveClip,
	}
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
	dist   *privacy.Distributed
	enc    *fixedpoint.Encoder
	ids    map[string]uint32 // client id → protocol id (its cohort index)
	closed [secagg.PhaseUnmask + 1]chan struct{}
	done   chan struct{} // closed when the driver returns
	news   chan struct{} // a message arrived (buffered 1)
}

func newSecureRound(round uint64, p *wire.SecAggParams, priv wire.PrivacyParams, cohort []string, dim int) (*secureRound, error) {
	d, err := distributed(p, priv, dim)
	if err != nil {
		return nil, err
	}
	enc := d.Encoder
	srv, err := secagg.NewServer(p.Config(round, p.InputLen(enc.PaddedDim())), secagg.ServerOptions{})
	if err != nil {
		return nil, err
	}
	s := &secureRound{params: p, srv: srv, dist: d, enc: enc, ids: make(map[string]uint32, len(cohort)),
		done: make(chan struct{}), news: make(chan struct{}, 1)}
	for i, id := range cohort {
		s.ids[id] = uint32(i)
	}
	for i := range s.closed {
		s.closed[i] = make(chan struct{})
	}
	return s, nil
}

// secureRound drives the four phases of secure aggregation, each until its
// deadline or until every expected client answered, then decodes the sum
// and commits the round; or abandons it when secagg aborts.
func (l *leader) secureRound(ctx context.Context, r *round, deadline time.Time, cohort int, privacy wire.PrivacyParams, start time.Time) error {
	s := r.sec
	defer close(s.done)
	phases := [...]phase{secagg.PhaseAdvertiseKeys: phaseAdvertising, secagg.PhaseShareKeys: phaseSharing,
		secagg.PhaseMaskedInput: phaseMasking, secagg.PhaseUnmask: phaseUnmasking}
	for p := secagg.PhaseAdvertiseKeys; p <= secagg.PhaseUnmask; p++ {
		if p > secagg.PhaseAdvertiseKeys {
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
		if p < secagg.PhaseUnmask {
			to = phases[p+1]
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
	pad := s.enc.PaddedDim()
	if err := s.enc.Decode(delta, res.Sum[:pad]); err != nil {
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
// closes, and answers with the client's message for the next phase.
func (l *leader) secure(ctx context.Context, h *wire.SecAggHeader, req wire.Message) wire.Message {
	l.mu.Lock()
	r := l.cur
	l.mu.Unlock()
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
		err = s.srv.HandleKeyAdvert(m.Keys.KeyAdvert(r.id))
	case *wire.SecAggShares:
		p = secagg.PhaseShareKeys
		err = s.srv.HandleShareUpload(secagg.ShareUpload{Round: r.id, From: id, Shares: wire.Sealed(m.Shares)})
	case *wire.SecAggMasked:
		p = secagg.PhaseMaskedInput
		err = s.srv.HandleMaskedInput(secagg.MaskedInput{Round: r.id, From: id, Values: m.Words()})
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
	switch p {
	case secagg.PhaseAdvertiseKeys:
		pk, err := s.srv.PeerKeys(id)
		if err != nil {
			return secAggError(err)
		}
		return wire.PeerKeysOf(pk)
	case secagg.PhaseShareKeys:
		sd, err := s.srv.ShareDelivery(id)
		if err != nil {
			return secAggError(err)
		}
		return &wire.SecAggDelivery{Round: sd.Round, To: sd.To, Shares: wire.SealedOf(sd.Shares)}
	default:
		ur, err := s.srv.UnmaskRequest(id)
		if err != nil {
			return secAggError(err)
		}
		return &wire.SecAggUnmaskRequest{Round: ur.Round, To: ur.To, Survivors: ur.Survivors, Dropped: ur.Dropped}
	}
}
