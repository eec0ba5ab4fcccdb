package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// ErrUnknownNode is returned by membership operations that name a node
// outside the Raft configuration.
var ErrUnknownNode = errors.New("coordinator: no such node")

// Cluster returns the node's view of the Raft configuration.
func (n *Node) Cluster() wire.Cluster {
	_, lid := n.raft.LeaderWithID()
	servers := n.raft.GetConfiguration().Configuration().Servers
	c := wire.Cluster{Node: n.cfg.ID}
	n.fsm.Read(func(s *State) { c.Nodes, c.Leader = members(s, servers, lid) })
	return c
}

// Remove takes a node out of the Raft configuration. It must run on the
// leader (else ErrNotLeader) and is idempotent: removing a node that is
// not a member succeeds. Asked to remove itself, the leader hands
// leadership over and answers ErrNotLeader, so that the caller repeats the
// removal at the new leader: a leader removing itself can leave the
// request hanging while it steps down.
func (n *Node) Remove(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if id == n.cfg.ID {
		if err := n.TransferLeadership(ctx, ""); err != nil {
			return err
		}
		return fmt.Errorf("%w: leadership handed over, remove %s at the new leader", ErrNotLeader, id)
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	for _, s := range cf.Configuration().Servers {
		if s.ID != raft.ServerID(id) {
			continue
		}
		if err := n.raft.RemoveServer(s.ID, 0, 10*time.Second).Error(); err != nil {
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
				return fmt.Errorf("%w: %v", ErrNotLeader, err)
			}
			return fmt.Errorf("remove %s: %w", id, err)
		}
		n.log.Info("node removed", "peer", id)
		return nil
	}
	return nil
}

// TransferLeadership hands leadership to the voter id, or to the most
// up-to-date voter when id is empty, and waits until it has taken over. It
// must run on the leader (else ErrNotLeader); id naming the leader itself
// changes nothing.
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if id == n.cfg.ID {
		return nil
	}
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		var addr raft.ServerAddress
		for _, s := range n.raft.GetConfiguration().Configuration().Servers {
			if s.ID == raft.ServerID(id) {
				if s.Suffrage != raft.Voter {
					return fmt.Errorf("transfer to %s: %w", id, raft.ErrNotVoter)
				}
				addr = s.Address
			}
		}
		if addr == "" {
			return fmt.Errorf("transfer to %s: %w", id, ErrUnknownNode)
		}
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), addr)
	}
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return fmt.Errorf("leadership transfer: %w", err)
	}
	n.log.Info("leadership transferred", "to", id)
	// Wait to hear from the new leader, so the answer names it.
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if _, lid := n.raft.LeaderWithID(); lid != "" && lid != raft.ServerID(n.cfg.ID) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil // transferred; the new leader is not known here yet
		case <-t.C:
		}
	}
}

func (a *admin) cluster(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, a.n.Cluster())
}

// join adds the node of the query (id, raft_addr, client_addr) as a voter:
// for a node started with neither --bootstrap nor --join, which waits for
// the leader to contact it. It refuses what would take another member out
// of the configuration: a Raft address another node holds, or a new
// address for the leader itself.
func (a *admin) join(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, raftAddr, clientAddr, adminAddr := q.Get("id"), q.Get("raft_addr"), q.Get("client_addr"), q.Get("admin_addr")
	if id == "" || len(id) > wire.MaxIDLen {
		a.clusterError(w, http.StatusBadRequest, fmt.Errorf("id: want a node id of 1..%d bytes", wire.MaxIDLen))
		return
	}
	if _, _, err := net.SplitHostPort(raftAddr); err != nil {
		a.clusterError(w, http.StatusBadRequest, fmt.Errorf("raft_addr: want HOST:PORT: %v", err))
		return
	}
	for k, v := range map[string]string{"client_addr": clientAddr, "admin_addr": adminAddr} {
		if v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(v); err != nil || len(v) > wire.MaxIDLen {
			a.clusterError(w, http.StatusBadRequest, fmt.Errorf("%s: want HOST:PORT: %v", k, err))
			return
		}
	}
	if !a.n.IsLeader() {
		a.clusterError(w, 0, ErrNotLeader)
		return
	}
	for _, s := range a.n.raft.GetConfiguration().Configuration().Servers {
		switch {
		case s.ID != raft.ServerID(id) && s.Address == raft.ServerAddress(raftAddr):
			a.clusterError(w, http.StatusBadRequest, fmt.Errorf("raft_addr %s belongs to node %s: remove it first", raftAddr, s.ID))
			return
		case s.ID == raft.ServerID(id) && id == a.n.cfg.ID && s.Address != raft.ServerAddress(raftAddr):
			a.clusterError(w, http.StatusBadRequest, fmt.Errorf("%s is the leader, at %s: transfer leadership before moving it", id, s.Address))
			return
		}
	}
	if clientAddr == "" { // keep the address the node registered, if any
		a.n.fsm.Read(func(s *State) { clientAddr = s.NodeAddr(id) })
	}
	if err := a.n.join(id, raftAddr, clientAddr, adminAddr); err != nil {
		a.clusterError(w, 0, err)
		return
	}
	writeJSON(w, a.n.Cluster())
}

func (a *admin) remove(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		a.clusterError(w, http.StatusBadRequest, errors.New("id: want a node id"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := a.n.Remove(ctx, id); err != nil {
		a.clusterError(w, 0, err)
		return
	}
	writeJSON(w, a.n.Cluster())
}

func (a *admin) transfer(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := a.n.TransferLeadership(ctx, r.URL.Query().Get("id")); err != nil {
		a.clusterError(w, 0, err)
		return
	}
	writeJSON(w, a.n.Cluster())
}

// clusterError answers a failed membership call with a ClusterError; code
// 0 picks it from err: 409 with the leader for ErrNotLeader, 404 for
// ErrUnknownNode, 400 for a nonvoter target, else 500.
func (a *admin) clusterError(w http.ResponseWriter, code int, err error) {
	body := wire.ClusterError{Error: err.Error()}
	switch {
	case code != 0:
	case errors.Is(err, ErrNotLeader):
		code = http.StatusConflict
		body.Error = "not leader"
		body.Leader = a.n.Cluster().Leader
	case errors.Is(err, ErrUnknownNode):
		code = http.StatusNotFound
	case errors.Is(err, raft.ErrNotVoter):
		code = http.StatusBadRequest
	default:
		code = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	writeJSON(w, body)
}
