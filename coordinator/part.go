package coordinator

import (
	"context"
	crand "crypto/rand"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// A node's part of a round: every node, the leader included, sends the
// plans of its group of the cohort (the devices it selected from its own
// lobby), collects their uploads and sends the leader one partial sum. A
// node learns of a round from its committed manifest, never before.

// followRounds starts this node's part of every round whose manifest
// gives it a group, as the manifests are applied.
func (n *Node) followRounds() {
	var started uint64
	for {
		ch := n.fsm.Watch()
		var open *OpenRound
		n.fsm.Read(func(s *State) { open = s.Open() })
		if open != nil && open.Round > started {
			started = open.Round
			// A secure manifest without groups (written before every node
			// ran its own) has no part here: the leader abandons a round
			// it does not run ("left open").
			sp := open.GroupSecAgg(n.cfg.ID)
			if ids, want, ok := open.Group(n.cfg.ID); ok && len(ids) > 0 && (open.SecAgg == nil || sp != nil) {
				n.wg.Add(1)
				n.parts.Add(1)
				go func() {
					defer n.wg.Done()
					defer n.parts.Add(-1)
					if sp != nil {
						n.runSecurePart(open, ids, sp)
					} else {
						n.runPart(open, ids, want)
					}
				}()
			} else {
				n.lobby.release(open.Round) // selected, then left out
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-ch:
		}
	}
}

// startPart takes this node's group ids of the round open from its lobby
// and returns its part of the round, with a ticket for every member
// present, and the members (members[i] for ids[i], nil if gone); a nil
// part when the round's model is not held here.
func (n *Node) startPart(open *OpenRound, ids []string) (*round, []*waiter) {
	var cfg Training
	var base *Version
	n.fsm.Read(func(s *State) {
		cfg, _ = s.Config()
		base = s.Model(open.Model)
	})
	members := n.lobby.take(open.Round, ids)
	if base == nil {
		n.log.Warn("round on a model not held here", "round", open.Round, "model", open.Model)
		return nil, members
	}
	r := &round{id: open.Round, base: base, cfg: cfg, clip: open.Clip, phase: phaseGathering, uploaded: map[string]bool{},
		enough: make(chan struct{}), since: time.Now(), tickets: map[string][]byte{}}
	for _, w := range members {
		if w != nil {
			t := make([]byte, wire.TicketLen)
			crand.Read(t)
			r.tickets[w.id] = t
		}
	}
	return r, members
}

// runPart runs this node's part of the round open: its group ids, of
// which it waits for want uploads.
func (n *Node) runPart(open *OpenRound, ids []string, want int) {
	r, members := n.startPart(open, ids)
	if r == nil {
		return
	}
	var err error
	if r.agg, r.quant, r.q, err = newAggregator(r.cfg, r.id, r.base, open.Clip); err != nil {
		n.log.Warn("round part not started", "round", r.id, "err", err)
		return
	}
	r.want = min(want, len(r.tickets))
	r.phase = phaseCollecting // not yet shared: uploads may come once the plans are out
	if r.want == 0 {
		close(r.enough)
	}
	n.part.Store(r)
	deadline := time.Now().Add(r.cfg.RoundTimeout)
	n.sendPlans(r, open, members, nil, r.cfg.RoundTimeout)

	ctx, cancel := context.WithDeadline(n.ctx, deadline)
	defer cancel()
	live := true
	for {
		ch := n.fsm.Watch()
		n.fsm.Read(func(s *State) { o := s.Open(); live = o != nil && o.Round == r.id })
		if !live {
			break // abandoned (a new leader), or committed without us
		}
		select {
		case <-ctx.Done():
		case <-r.enough:
		case <-ch:
			continue
		}
		break
	}
	r.mu.Lock()
	abandoned := !live || n.ctx.Err() != nil
	if abandoned {
		r.phase = phaseAbandoned
	} else {
		r.advance(phaseAggregating)
	}
	r.mu.Unlock()
	r.inflight.Wait()
	if abandoned {
		return
	}
	p := r.agg.Partial()
	m := &wire.Partial{Version: wire.Version, Round: r.id, Node: n.cfg.ID, Clients: p.Clients, Clipped: p.Clipped,
		Below: r.below, Loss: r.loss, N: r.n, QClients: p.QClients}
	if p.Clients > p.QClients {
		m.Sum = p.Sum
	}
	if p.QClients > 0 {
		var ok bool
		if m.QSum, ok = wire.Int32sOf(p.QSum); !ok {
			n.log.Warn("partial sum beyond 32 bits", "round", r.id)
			return
		}
	}
	n.sendPartial(m, deadline.Add(partialGrace))
}

// sendPartial delivers a partial sum to the leader, this node's own
// directly, until the leader takes it or refuses it, or until.
func (n *Node) sendPartial(m *wire.Partial, until time.Time) {
	ctx, cancel := context.WithDeadline(n.ctx, until)
	defer cancel()
	for {
		var reply wire.Message
		var err error
		id, addr := n.Leader()
		switch {
		case id == n.cfg.ID:
			if l := n.leaderOrNil(); l != nil {
				reply = l.partial(m)
			} else {
				reply = n.notLeader()
			}
			if e, ok := reply.(*wire.Error); ok {
				err = e
			}
		case addr != "":
			_, err = n.callNode(ctx, addr, m)
		default:
			err = ErrNotLeader
		}
		if err == nil {
			return
		}
		if c := wire.CodeOf(err); c != 0 && c != wire.CodeNotLeader && c != wire.CodeUnavailable {
			n.log.Warn("partial sum refused", "round", m.Round, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			n.log.Warn("partial sum not delivered", "round", m.Round, "err", err)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sendPlans sends each member present (members[i] for the group's i-th
// id, nil if gone) its plan for round r, with the group's secure
// aggregation parameters in a secure round; cohort, set in a signed
// secure round, is the group devices check their peers against. timeLeft
// is the round's time from now.
func (n *Node) sendPlans(r *round, open *OpenRound, members []*waiter, cohort []string, timeLeft time.Duration) {
	down, up, digest32 := n.roundSizes(r.base, r.cfg, r.sec)
	started := time.Now()
	var sp *wire.SecAggParams
	if r.sec != nil {
		sp = r.sec.params
	}
	for i, w := range members {
		if w == nil {
			continue
		}
		w.reply <- &wire.Plan{
			Cohort:        cohort,
			DownloadBytes: down, UploadBytes: up, Digest32: digest32[:], UploadBits: r.uploadBits(),
			Round: r.id, Model: r.base.Version, Digest: r.base.Digest[:], Kind: wire.KindOf(r.base.Model.Kind),
			Items: r.base.Model.Items, Rank: r.base.Model.Rank,
			Train: r.cfg.TrainParams(),
			Clip:  open.Clip, Privacy: open.Privacy, MinClients: r.cfg.MinClients, TimeLeftMs: (timeLeft - time.Since(started)).Milliseconds(), Ticket: r.tickets[w.id],
			SecAgg: sp, SecAggID: uint32(i),
		}
	}
}

// Drain prepares a graceful stop (fedrec coordinator on SIGTERM, before
// Close): the node takes no more devices (their check-ins are answered
// CodeUnavailable, so that they move to another node, and it selects none
// for new rounds), and it waits, until ctx ends, for its parts of rounds
// in progress to end and their partial sums to reach the leader, so that
// stopping a node loses no round. Each part ends by its deadline.
func (n *Node) Drain(ctx context.Context) {
	n.lobby.close()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for n.parts.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}
