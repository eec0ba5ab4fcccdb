package coordinator

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// Handle answers one request of the client protocol, passing each reply
// message to send (a model download sends several). It is what the QUIC
// server calls for every stream; tests call it directly.
func (n *Node) Handle(ctx context.Context, req wire.Message, peer Peer, send func(wire.Message) error) error {
	if e := n.auth.authorize(req, peer); e != nil {
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
		return send(n.secure(ctx, secAggHeader(m), m, peer))
	case *wire.Lobby, *wire.Select, *wire.Partial:
		if !peer.Node && n.auth != nil {
			return send(n.auth.early(req.Type(), peer))
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

// secAggHeader returns the identity of a secure-round request.
func secAggHeader(m wire.Message) *wire.SecAggHeader {
	switch m := m.(type) {
	case *wire.SecAggAdvert:
		return &m.SecAggHeader
	case *wire.SecAggShares:
		return &m.SecAggHeader
	case *wire.SecAggMasked:
		return &m.SecAggHeader
	case *wire.SecAggCheck:
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

// listen starts the client protocol's QUIC listener, with the node's
// authentication of peers and its connection limits.
func (n *Node) listen(addr string) (*wire.Listener, error) {
	n.auth = newAuth(n.certs, n.log)
	maxConns := n.cfg.MaxConns
	if maxConns <= 0 {
		maxConns = wire.DefaultMaxConns
	}
	n.conns = newConnTable(max(1, maxConns/8))
	return wire.ListenWith(addr, serverTLS(n.certs), wire.ConnLimits{MaxConns: maxConns})
}

// Connection limits beyond the listener's (wire.ConnLimits), when devices
// must authenticate.
const (
	// maxConnsPerDevice bounds one device's connections: a new one closes
	// its oldest (a device that changed networks reconnects at once; a
	// stolen certificate holds no more than this).
	maxConnsPerDevice = 4
	// anonLifetime bounds how long a peer without a valid certificate
	// stays connected: long enough to read its CodeUnauthenticated.
	anonLifetime = 5 * time.Second
)

// connTable tracks the connections of devices and of unauthenticated
// peers, so that neither a stolen device certificate nor peers without
// one can take the node's connections from the others.
type connTable struct {
	mu      sync.Mutex
	maxAnon int
	anon    int
	devices map[string][]*quic.Conn // oldest first
}

func newConnTable(maxAnon int) *connTable {
	return &connTable{maxAnon: maxAnon, devices: map[string][]*quic.Conn{}}
}

// admit registers conn of peer and returns the function that forgets it,
// or false when conn must be refused.
func (t *connTable) admit(conn *quic.Conn, p Peer) (func(), bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case p.Node:
		return func() {}, true
	case p.Device == "":
		if t.anon >= t.maxAnon {
			return nil, false
		}
		t.anon++
		return func() { t.mu.Lock(); t.anon--; t.mu.Unlock() }, true
	}
	cs := append(t.devices[p.Device], conn)
	for len(cs) > maxConnsPerDevice {
		cs[0].CloseWithError(connClosedBusy, "newer connection of this device")
		cs = cs[1:]
	}
	t.devices[p.Device] = cs
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		cs := t.devices[p.Device]
		for i, c := range cs {
			if c == conn {
				cs = append(cs[:i:i], cs[i+1:]...)
				break
			}
		}
		if len(cs) == 0 {
			delete(t.devices, p.Device)
		} else {
			t.devices[p.Device] = cs
		}
	}, true
}

// QUIC application error codes a node closes connections with.
const (
	connClosedALPN quic.ApplicationErrorCode = 1
	connClosedBusy quic.ApplicationErrorCode = 2 // over a connection limit
	connClosedAnon quic.ApplicationErrorCode = 3 // unauthenticated, lifetime over
)

// serveQUIC accepts connections until the listener closes.
func (n *Node) serveQUIC(ln *wire.Listener) {
	for {
		conn, err := ln.Accept(n.ctx)
		if err != nil {
			return
		}
		if err := wire.CheckALPN(conn); err != nil {
			conn.CloseWithError(connClosedALPN, "alpn")
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
	defer n.metrics.connected(conn)()
	defer conn.CloseWithError(0, "")
	peer := n.auth.peer(conn.ConnectionState().TLS)
	if n.auth.required() {
		forget, ok := n.conns.admit(conn, peer)
		if !ok {
			conn.CloseWithError(connClosedBusy, "too many unauthenticated connections")
			return
		}
		defer forget()
		if !peer.Node && peer.Device == "" {
			t := time.AfterFunc(anonLifetime, func() { conn.CloseWithError(connClosedAnon, "unauthenticated") })
			defer t.Stop()
		}
	}
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
			n.serveStream(quicStream{st}, peer)
		}()
	}
}

// limits bounds requests: uploads may be as large as the model, and
// replies are refused from their header.
func (n *Node) limits() wire.Limits {
	l := wire.Limits{MaxParams: 1, Only: wire.Requests}
	n.fsm.Read(func(s *State) {
		if t, ok := s.Config(); ok {
			l.MaxParams = model.Dim(t.Items, t.Rank)
		}
	})
	return l
}

// serveStream reads one request under deadlines that fit its size, within
// the node's memory budget, answers it and closes the stream. A bad
// request gets an Error and costs the node nothing else.
func (n *Node) serveStream(st requestStream, peer Peer) {
	defer st.Close()
	// The header is there when the stream is accepted (a stream is
	// accepted when its first bytes arrive).
	st.SetReadDeadline(time.Now().Add(n.cfg.RateGrace))
	req, free, err := n.readRequest(st, peer)
	// One request per stream: whatever follows it is not read, and the
	// stream's slot is released only once its receive side is done
	// (quic-go counts a stream until both sides are).
	st.CancelRead()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) { // the header, late
			err = tooSlow(0, wire.HeaderLen, n.cfg.RateGrace, n.cfg.MinUploadRate)
		}
		if wire.CodeOf(err) == wire.CodeTooSlow {
			n.metrics.slow.Inc()
		}
		st.SetWriteDeadline(time.Now().Add(5 * time.Second))
		e := wire.AsError(err)
		if wire.CodeOf(err) == 0 {
			e = wire.Errorf(wire.CodeMalformed, "%v", err)
		}
		if wire.Write(st, e) != nil {
			st.CancelWrite()
		}
		return
	}
	defer free() // the decoded request is held until answered
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
	err = n.Handle(ctx, req, peer, func(m wire.Message) error {
		st.SetWriteDeadline(time.Now().Add(wire.ReadTimeout))
		return wire.Write(st, m)
	})
	if err != nil {
		// A reply the client does not read would keep the stream (and
		// its frames) until the connection ends.
		st.CancelWrite()
	}
}

// streamDone is the stream error code with which a node stops reading
// after a request, or abandons a reply the client does not read.
const streamDone = 0

// requestStream is the stream of one request, whatever carries it: a QUIC
// stream of the client protocol's listener, or a WebTransport stream of a
// browser's session (webtransport.go). Both go through serveStream.
type requestStream interface {
	io.Reader
	io.Writer
	Close() error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	// Context ends when the stream is done or the peer went away.
	Context() context.Context
	// CancelRead and CancelWrite cancel a side with streamDone.
	CancelRead()
	CancelWrite()
}

// quicStream is a stream of the QUIC listener.
type quicStream struct{ *quic.Stream }

func (s quicStream) CancelRead()  { s.Stream.CancelRead(streamDone) }
func (s quicStream) CancelWrite() { s.Stream.CancelWrite(streamDone) }

// readRequest reads one request and returns it with the function that
// releases its share of the memory budget. Before the body is read, the
// request is admitted (Node.admit): its cost reserved from the budget
// and, for the large requests (uploads, masked inputs), an upload slot of
// the node and of the device taken until it is decoded; meanwhile QUIC
// flow control holds its bytes at the client. The body must then arrive
// at MinUploadRate after RateGrace.
func (n *Node) readRequest(st requestStream, peer Peer) (wire.Message, func(), error) {
	t, size, err := wire.ReadHeader(st, n.limits())
	if err != nil {
		return nil, nil, err
	}
	if e := n.auth.early(t, peer); e != nil {
		return nil, nil, e // the body is never read
	}
	if err := n.limitRate(t, peer.Device); err != nil {
		return nil, nil, err
	}
	freeSlots, free, err := n.admit(st, t, size, peer)
	if err != nil {
		return nil, nil, err
	}
	defer freeSlots()
	r := &pacedReader{st: st, start: time.Now(), grace: n.cfg.RateGrace, rate: n.cfg.MinUploadRate, size: size}
	body, err := wire.ReadBody(r, t, size)
	if err != nil {
		free()
		return nil, nil, err
	}
	msg, err := wire.Decode(t, body)
	if err != nil {
		free()
		return nil, nil, err
	}
	return msg, free, nil
}
