package coordinator

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// Peer describes who sent a request.
type Peer struct {
	// Node is true when the peer presented a certificate of the cluster
	// CA (verified by TLS): only nodes may join.
	Node bool
}

// Handle answers one request of the client protocol, passing each reply
// message to send (a model download sends several). It is what the QUIC
// server calls for every stream; tests call it directly.
func (n *Node) Handle(ctx context.Context, req wire.Message, peer Peer, send func(wire.Message) error) error {
	switch m := req.(type) {
	case *wire.CheckIn:
		l := n.leaderOrNil()
		if l == nil {
			return send(n.notLeader())
		}
		return send(l.checkIn(ctx, m))
	case *wire.Upload:
		l := n.leaderOrNil()
		if l == nil {
			return send(n.notLeader())
		}
		return send(l.upload(m))
	case *wire.SecAggAdvert, *wire.SecAggShares, *wire.SecAggMasked, *wire.SecAggUnmask:
		l := n.leaderOrNil()
		if l == nil {
			return send(n.notLeader())
		}
		return send(l.secure(ctx, secAggHeader(m), m))
	case *wire.GetModel:
		return n.sendModel(m, send)
	case *wire.Join:
		if !peer.Node {
			return send(wire.Errorf(wire.CodeForbidden, "join needs a node certificate of the cluster CA"))
		}
		if !n.IsLeader() {
			return send(n.notLeader())
		}
		if err := n.Join(m.ID, m.RaftAddr, m.ClientAddr); err != nil {
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

// secAggHeader returns the identity of a secure-round request.
func secAggHeader(m wire.Message) *wire.SecAggHeader {
	switch m := m.(type) {
	case *wire.SecAggAdvert:
		return &m.SecAggHeader
	case *wire.SecAggShares:
		return &m.SecAggHeader
	case *wire.SecAggMasked:
		return &m.SecAggHeader
	case *wire.SecAggUnmask:
		return &m.SecAggHeader
	}
	panic("coordinator: not a secure-round request")
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
	var v *Version
	n.fsm.read(func(s *State) {
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
	frames, err := n.modelFrames(v)
	if err != nil {
		return send(wire.AsError(err))
	}
	for _, f := range frames {
		if err := send(f); err != nil {
			return err
		}
	}
	return nil
}

// modelFrames returns the encoded header and chunks of a model version,
// encoding them on first use. It keeps the three newest versions.
func (n *Node) modelFrames(v *Version) ([]*wire.Frame, error) {
	n.framesMu.Lock()
	defer n.framesMu.Unlock()
	if f, ok := n.frames[v.Version]; ok && f.digest == v.Digest {
		return f.frames, nil
	}
	h, chunks := wire.SplitModel(v.Model, v.Version, v.Round)
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
	if n.frames == nil {
		n.frames = map[uint64]encodedModel{}
	}
	n.frames[v.Version] = encodedModel{digest: v.Digest, frames: frames}
	for ver := range n.frames {
		if ver+3 <= v.Version {
			delete(n.frames, ver)
		}
	}
	return frames, nil
}

type encodedModel struct {
	digest [32]byte
	frames []*wire.Frame
}

// serveQUIC accepts connections until the listener closes.
func (n *Node) serveQUIC(ln *wire.Listener) {
	for {
		conn, err := ln.Accept(n.ctx)
		if err != nil {
			return
		}
		if err := wire.CheckALPN(conn); err != nil {
			conn.CloseWithError(1, "alpn")
			continue
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.serveConn(conn)
		}()
	}
}

func (n *Node) serveConn(conn *quic.Conn) {
	defer conn.CloseWithError(0, "")
	peer := Peer{Node: len(conn.ConnectionState().TLS.VerifiedChains) > 0}
	stop := context.AfterFunc(n.ctx, func() { conn.CloseWithError(0, "shutting down") })
	defer stop()
	for {
		st, err := conn.AcceptStream(n.ctx)
		if err != nil {
			return
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.serveStream(st, peer)
		}()
	}
}

// limits bounds requests: uploads may be as large as the model.
func (n *Node) limits() wire.Limits {
	l := wire.Limits{MaxParams: 1}
	n.fsm.read(func(s *State) {
		if t, ok := s.Config(); ok {
			l.MaxParams = model.Dim(t.Items, t.Rank)
		}
	})
	return l
}

// serveStream reads one request under a deadline and size limit, answers
// it and closes the stream. A bad request gets an Error and costs the node
// nothing else.
func (n *Node) serveStream(st *quic.Stream, peer Peer) {
	defer st.Close()
	st.SetReadDeadline(time.Now().Add(wire.ReadTimeout))
	req, err := n.readRequest(st)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return
		}
		st.CancelRead(0)
		st.SetWriteDeadline(time.Now().Add(5 * time.Second))
		e := wire.AsError(err)
		if wire.CodeOf(err) == 0 {
			e = wire.Errorf(wire.CodeMalformed, "%v", err)
		}
		wire.Write(st, e)
		return
	}
	ctx, cancel := context.WithCancel(n.ctx)
	defer cancel()
	// A client that goes away cancels its held check-in.
	go func() {
		select {
		case <-st.Context().Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	n.Handle(ctx, req, peer, func(m wire.Message) error {
		st.SetWriteDeadline(time.Now().Add(wire.ReadTimeout))
		return wire.Write(st, m)
	})
}

// readRequest reads one request. Uploads, the only large requests, are
// read MaxUploads at a time: the rest wait (QUIC flow control holds their
// bytes at the client) so that memory stays bounded however many clients
// upload at once.
func (n *Node) readRequest(st *quic.Stream) (wire.Message, error) {
	t, size, err := wire.ReadHeader(st, n.limits())
	if err != nil {
		return nil, err
	}
	if t == wire.TypeUpload || t == wire.TypeSecAggMasked {
		select {
		case n.uploads <- struct{}{}:
			defer func() { <-n.uploads }()
		case <-st.Context().Done():
			return nil, st.Context().Err()
		case <-n.ctx.Done():
			return nil, n.ctx.Err()
		}
	}
	body, err := wire.ReadBody(st, t, size)
	if err != nil {
		return nil, err
	}
	return wire.Decode(t, body)
}
