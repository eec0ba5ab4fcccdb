package coordinator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// nodeCaller sends one request to the node at a client address and
// returns its one reply: the channel between the nodes of a cluster, over
// which the leader learns how many devices wait where, asks each node for
// its share of a cohort and receives the nodes' partial sums.
type nodeCaller interface {
	call(ctx context.Context, addr string, req wire.Message) (wire.Message, error)
}

// funcCaller is a nodeCaller of a function (Config.call).
type funcCaller func(ctx context.Context, addr string, req wire.Message) (wire.Message, error)

func (f funcCaller) call(ctx context.Context, addr string, req wire.Message) (wire.Message, error) {
	return f(ctx, addr, req)
}

// quicCaller is the node channel over QUIC, authenticated both ways by
// the cluster CA's node certificates; it keeps one connection per node.
type quicCaller struct {
	n     *Node
	mu    sync.Mutex
	conns map[string]*quic.Conn
}

func (c *quicCaller) call(ctx context.Context, addr string, req wire.Message) (wire.Message, error) {
	conn, err := c.conn(ctx, addr)
	if err != nil {
		return nil, err
	}
	var reply wire.Message
	err = wire.Exchange(ctx, conn, req, wire.Limits{}, func(m wire.Message) (bool, error) {
		reply = m
		return true, nil
	})
	if err != nil {
		if wire.CodeOf(err) == 0 { // the connection, not the node, failed
			c.drop(addr, conn)
		}
		return nil, err
	}
	return reply, nil
}

func (c *quicCaller) conn(ctx context.Context, addr string) (*quic.Conn, error) {
	c.mu.Lock()
	conn := c.conns[addr]
	c.mu.Unlock()
	if conn != nil && conn.Context().Err() == nil {
		return conn, nil
	}
	conn, err := wire.Dial(ctx, addr, c.n.certs.peerTLS())
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", addr, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.conns[addr]; old != nil && old.Context().Err() == nil {
		conn.CloseWithError(0, "")
		return old, nil
	}
	if c.conns == nil {
		c.conns = map[string]*quic.Conn{}
	}
	c.conns[addr] = conn
	return conn, nil
}

func (c *quicCaller) drop(addr string, conn *quic.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns[addr] == conn {
		delete(c.conns, addr)
	}
	conn.CloseWithError(0, "")
}

func (c *quicCaller) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for a, conn := range c.conns {
		conn.CloseWithError(0, "")
		delete(c.conns, a)
	}
	return nil
}

// callNode sends req to the node at addr; an Error reply is returned as
// the error.
func (n *Node) callNode(ctx context.Context, addr string, req wire.Message) (wire.Message, error) {
	if n.caller == nil {
		return nil, fmt.Errorf("node %s: no channel between nodes", addr)
	}
	m, err := n.caller.call(ctx, addr, req)
	if err != nil {
		return nil, err
	}
	if e, ok := m.(*wire.Error); ok {
		return nil, e
	}
	return m, nil
}

// Lobby reports: how often a node tells the leader how many of its
// devices wait, at most and at least.
const (
	lobbyCoalesce = 20 * time.Millisecond
	lobbyRefresh  = 500 * time.Millisecond
	// lobbyStale is the age past which the leader ignores a report: the
	// node has stopped reporting (it died, or left).
	lobbyStale = 4 * lobbyRefresh
)

// leaderContext returns a context that ends when Raft's leader changes
// or the node closes.
func (n *Node) leaderContext() context.Context {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderTerm
}

// watchLeader ends the leader context at each change of Raft's leader
// that changes reports (an election starting, a leader elected), until
// the node closes; New registers the observer behind changes, so that no
// change before this goroutine runs is missed.
func (n *Node) watchLeader(changes <-chan raft.Observation) {
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-changes:
			next, end := context.WithCancel(n.ctx)
			n.leaderMu.Lock()
			n.leaderEnd()
			n.leaderTerm, n.leaderEnd = next, end
			n.leaderMu.Unlock()
		}
	}
}

// reportLobby tells the leader, whenever it changes and at least every
// lobbyRefresh, how many devices wait at this node, so that the leader can
// give each node its share of the next cohort. The leader reads its own
// lobby directly.
func (n *Node) reportLobby() {
	last, lastLeader, lastSent := -1, "", time.Time{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		count, arrived := n.lobby.count()
		term := n.leaderContext()
		id, addr := n.Leader()
		if id != "" && id != n.cfg.ID && addr != "" && (count != last || id != lastLeader || time.Since(lastSent) >= lobbyRefresh) {
			// A report to a leader that died waits no longer than the
			// election: the new leader gathers its first cohort from
			// these reports (one stuck for its 2 s timeout held the first
			// commit after a SIGKILL back by 1.5 s).
			ctx, cancel := context.WithTimeout(term, 2*time.Second)
			_, err := n.callNode(ctx, addr, &wire.Lobby{Version: wire.Version, Node: n.cfg.ID, Waiting: count})
			cancel()
			if err != nil {
				last = -1
				n.log.Debug("lobby report failed", "leader", id, "err", err)
			} else {
				last, lastLeader, lastSent = count, id, time.Now()
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-arrived:
			select { // a crowd checking in is reported once
			case <-n.ctx.Done():
				return
			case <-time.After(lobbyCoalesce):
			}
		case <-tick.C:
		}
	}
}
