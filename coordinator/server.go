package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// Handle answers one request of the client protocol, passing each reply
// message to send (a model download sends several). It is what the QUIC
// server calls for every stream; tests call it directly.
func (n *Node) Handle(ctx context.Context, req wire.Message, peer Peer, send func(wire.Message) error) error {
	if e := n.devices.Authorize(req, peer); e != nil {
		return send(e)
	}
	switch m := req.(type) {
	case *wire.CheckIn:
		if n.closing.Load() {
			return send(&wire.Error{Code: wire.CodeUnavailable, Message: "node shutting down", RetryAfterMs: 200})
		}
		return send(n.lobby.checkIn(ctx, m))
	case *wire.Upload:
		return send(n.upload(m))
	case *wire.SecAggAdvert, *wire.SecAggShares, *wire.SecAggMasked, *wire.SecAggCheck, *wire.SecAggUnmask:
		return send(n.secure(ctx, m.(wire.SecAggRequest).Header(), m, peer))
	case *wire.Lobby, *wire.Select, *wire.Partial:
		if e := n.devices.Refuse(req.Type(), peer); e != nil {
			return send(e)
		}
		return send(n.handleNode(m))
	case *wire.GetModel:
		return n.sendModel(m, send)
	case *wire.Join:
		if !peer.Node {
			return send(wire.Errorf(wire.CodeForbidden, "join needs a node certificate of the cluster CA"))
		}
		if !n.IsLeader() {
			return send(n.notLeader())
		}
		if err := n.Join(m.ID, m.RaftAddr, m.ClientAddr, m.AdminAddr); err != nil {
			if errors.Is(err, ErrNotLeader) {
				return send(n.notLeader())
			}
			return send(&wire.Error{Code: wire.CodeUnavailable, Message: err.Error(), RetryAfterMs: 500})
		}
		id, _ := n.Leader()
		return send(&wire.JoinAck{Leader: id})
	}
	return send(wire.Errorf(wire.CodeUnknownType, "%s is not a request", req.Type()))
}

// handleNode answers a request of another node of the cluster.
func (n *Node) handleNode(req wire.Message) wire.Message {
	if s, ok := req.(*wire.Select); ok && s.Redirect != "" {
		n.lobby.redirect(s.Redirect)
		return &wire.Selected{Round: s.Round}
	} else if ok {
		var cfg Training
		n.fsm.Read(func(st *State) { cfg, _ = st.Config() })
		ids := n.lobby.selectFor(s.Round, s.Model, s.Quota, time.Now().Add(cfg.RoundTimeout), cfg.CohortSize())
		return &wire.Selected{Round: s.Round, Clients: ids}
	}
	l := n.leaderOrNil()
	if l == nil {
		return n.notLeader()
	}
	switch m := req.(type) {
	case *wire.Lobby:
		return l.lobby(m)
	case *wire.Partial:
		return l.partial(m)
	}
	return wire.Errorf(wire.CodeUnknownType, "%s is not a request", req.Type())
}

func (n *Node) leaderOrNil() *leader {
	if n.closing.Load() || !n.IsLeader() {
		return nil
	}
	return n.lead.Load()
}

func (n *Node) notLeader() *wire.Error {
	_, addr := n.Leader()
	if addr == n.clientAddr {
		addr = "" // we are the leader by Raft but not running rounds yet
	}
	return &wire.Error{Code: wire.CodeNotLeader, Message: "this node does not run rounds", Leader: addr, RetryAfterMs: 200}
}

// sendModel serves a committed model from the replicated state; any node
// can, and only committed models exist there. Each version is encoded once
// and its frames shared by every download.
func (n *Node) sendModel(m *wire.GetModel, send func(wire.Message) error) error {
	if m.Round != 0 && n.roundOver(m.Round) {
		return send(&wire.Error{Code: wire.CodeNoRound, Message: fmt.Sprintf("round %d needs no more uploads here", m.Round), RetryAfterMs: noRoundRetryMs})
	}
	var v *Version
	var cfg Training
	n.fsm.Read(func(s *State) {
		cfg, _ = s.Config()
		if m.Model == 0 {
			v = s.Current()
		} else {
			v = s.Model(m.Model)
		}
	})
	if v == nil {
		e := n.notLeader()
		e.Code = wire.CodeUnknownModel
		e.Message = "model version not held here"
		return send(e)
	}
	em, err := n.modelFrames(v, cfg.WireEvents(), cfg.WireCatalogue())
	if err != nil {
		return send(wire.AsError(err))
	}
	frames := em.frames
	switch {
	case m.Have != 0 && m.Have >= v.Version:
		frames = em.current // the device holds it: the header alone
	case m.Float32:
		frames = em.frames32
	}
	for _, f := range frames {
		if err := send(f); err != nil {
			return err
		}
	}
	return nil
}

// noRoundRetryMs is when a device turned away from a round's download may
// check in again: the next round's selection is about to start.
const noRoundRetryMs = 500

// roundOver reports whether this node's part of round id needs no more
// uploads: a later round is open here, or the plaintext round stopped
// collecting or has every upload it wants. (A secure round's group needs
// all its members for its phases.) A round this node holds no part of yet
// is not over: a device that reached the node first is served.
func (n *Node) roundOver(id uint64) bool {
	r := n.part.Load()
	switch {
	case r == nil || r.id < id:
		return false
	case r.id > id:
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sec == nil && (r.phase != phaseCollecting || r.count >= r.want)
}

// modelFrames returns the encoded header and chunks of a model version,
// as float64 and as float32, its header carrying the cluster's event
// weights and catalogue digest (set once, with the configuration),
// encoding them on first use. It keeps the three newest versions.
func (n *Node) modelFrames(v *Version, events *wire.EventWeights, catalogue []byte) (encodedModel, error) {
	n.framesMu.Lock()
	defer n.framesMu.Unlock()
	if f, ok := n.frames[v.Version]; ok && f.digest == v.Digest {
		return f, nil
	}
	encode := func(h *wire.ModelHeader, chunks []*wire.ModelChunk) ([]*wire.Frame, error) {
		h.Events, h.Catalogue = events, catalogue
		msgs := []wire.Message{h}
		for _, c := range chunks {
			msgs = append(msgs, c)
		}
		frames := make([]*wire.Frame, len(msgs))
		for i, m := range msgs {
			f, err := wire.EncodeFrame(m)
			if err != nil {
				return nil, err
			}
			frames[i] = f
		}
		return frames, nil
	}
	em := encodedModel{digest: v.Digest, digest32: wire.Digest32(v.Model)}
	var err error
	if em.frames, err = encode(wire.SplitModel(v.Model, v.Version, v.Round)); err != nil {
		return encodedModel{}, err
	}
	h32, chunks32 := wire.SplitModel32(v.Model, v.Version, v.Round)
	if em.frames32, err = encode(h32, chunks32); err != nil {
		return encodedModel{}, err
	}
	current := *h32
	current.Current = true
	if em.current, err = encode(&current, nil); err != nil {
		return encodedModel{}, err
	}
	if n.frames == nil {
		n.frames = map[uint64]encodedModel{}
	}
	n.frames[v.Version] = em
	for ver := range n.frames {
		if ver+3 <= v.Version {
			delete(n.frames, ver)
		}
	}
	return em, nil
}

// encodedModel is a model version's download, encoded once.
type encodedModel struct {
	digest, digest32 [32]byte
	frames           []*wire.Frame // float64
	frames32         []*wire.Frame // float32, Digest32
	current          []*wire.Frame // the float32 header alone, Current set
}

// WebTransportAddr returns the UDP address the WebTransport listener
// listens on, "" without one.
func (n *Node) WebTransportAddr() string { return n.wtAddr }

// ModelShape is the configured model's dimension and whether its rounds
// are secure, 0 before the configuration is set (deviceapi.Handler): the
// device-facing server bounds requests by it.
func (n *Node) ModelShape() (dim int, secure bool) {
	n.fsm.Read(func(s *State) {
		if t, ok := s.Config(); ok {
			dim, secure = model.Dim(t.Items, t.Rank), t.SecAgg
		}
	})
	return dim, secure
}
