package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/wire"
)

func (a *Server) cluster(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, a.n.Cluster())
}

// join adds the node of the query (id, raft_addr, client_addr) as a voter:
// for a node started with neither --bootstrap nor --join, which waits for
// the leader to contact it. It refuses what would take another member out
// of the configuration: a Raft address another node holds, or a new
// address for the leader itself.
func (a *Server) join(w http.ResponseWriter, r *http.Request) {
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
		a.clusterError(w, 0, store.ErrNotLeader)
		return
	}
	cl := a.n.Cluster()
	for _, s := range cl.Nodes {
		switch {
		case s.ID != id && s.RaftAddr == raftAddr:
			a.clusterError(w, http.StatusBadRequest, fmt.Errorf("raft_addr %s belongs to node %s: remove it first", raftAddr, s.ID))
			return
		case s.ID == id && id == cl.Node && s.RaftAddr != raftAddr:
			a.clusterError(w, http.StatusBadRequest, fmt.Errorf("%s is the leader, at %s: transfer leadership before moving it", id, s.RaftAddr))
			return
		}
	}
	if clientAddr == "" { // keep the address the node registered, if any
		a.n.View(func(s *store.State) { clientAddr = s.NodeAddr(id) })
	}
	if err := a.n.Join(id, raftAddr, clientAddr, adminAddr); err != nil {
		a.clusterError(w, 0, err)
		return
	}
	writeJSON(w, a.n.Cluster())
}

func (a *Server) remove(w http.ResponseWriter, r *http.Request) {
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

func (a *Server) transfer(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := a.n.TransferLeadership(ctx, r.URL.Query().Get("id")); err != nil {
		a.clusterError(w, 0, err)
		return
	}
	writeJSON(w, a.n.Cluster())
}

// clusterError answers a failed membership call with a ClusterError; code
// 0 picks it from err: 409 with the leader for store.ErrNotLeader, 404 for
// store.ErrUnknownNode, 400 for a nonvoter target, else 500.
func (a *Server) clusterError(w http.ResponseWriter, code int, err error) {
	body := wire.ClusterError{Error: err.Error()}
	switch {
	case code != 0:
	case errors.Is(err, store.ErrNotLeader):
		code = http.StatusConflict
		body.Error = "not leader"
		body.Leader = a.n.Cluster().Leader
	case errors.Is(err, store.ErrUnknownNode):
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
