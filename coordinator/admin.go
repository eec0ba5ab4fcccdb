package coordinator

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fedrec/fedrec/coordinator/adminapi"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// startAdmin listens on Config.AdminAddr and serves the admin API
// (package adminapi); its goroutine belongs to n.wg and ends when Close
// closes the server.
func (n *Node) startAdmin() error {
	a, err := adminapi.Listen(n.cfg.AdminAddr, n, adminapi.Config{
		Token: n.cfg.AdminToken, ReadToken: n.cfg.ReadToken,
		GetCertificate: n.certs.GetCertificate, Metrics: n.registry(), Logger: n.log,
	})
	if err != nil {
		return fmt.Errorf("coordinator: admin listen: %w", err)
	}
	n.admin = a
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := a.Serve(); err != nil {
			n.log.Error("admin server", "err", err)
		}
	}()
	n.log.Info("admin API", "addr", a.Addr().String())
	return nil
}

// registry holds the metrics the admin API exposes: the node's, the
// operations figures, and the Go runtime's and the process's.
func (n *Node) registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.metrics, newOpsMetrics(n), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// AdminAddr returns the address the admin API listens on, or "" if it is
// off.
func (n *Node) AdminAddr() string {
	if n.admin == nil {
		return ""
	}
	return n.admin.Addr().String()
}

var errNotMember = errors.New("not a member of a cluster")

// Ready returns nil when the node is a member of a cluster that has a
// known leader and it has applied all but at most Config.ReadyLag of the
// entries the leader committed (a follower learns the leader's commit
// index from its AppendEntries: a restarted node is not ready until it
// has caught up); otherwise an error that says which condition fails.
func (n *Node) Ready() error {
	if n.raft.State() == raft.Shutdown {
		return errors.New("raft is shut down")
	}
	if !n.member() {
		return errNotMember
	}
	if _, id := n.raft.LeaderWithID(); id == "" {
		return errors.New("no known leader")
	}
	tapTerm, tapCommit := n.leaderCommit()
	return readiness(n.raft.State() == raft.Leader, n.raft.CurrentTerm(), n.raft.CommitIndex(), n.raft.AppliedIndex(), tapTerm, tapCommit, n.cfg.ReadyLag)
}

// leaderCommit returns the newest commit index this node heard from a
// leader, and that leader's term; the leader's own on the leader.
func (n *Node) leaderCommit() (term, commit uint64) {
	if n.raft.State() == raft.Leader {
		return n.raft.CurrentTerm(), n.raft.CommitIndex()
	}
	return n.tap.leaderCommit()
}

// member reports whether this node is in the latest Raft configuration.
func (n *Node) member() bool {
	for _, s := range n.raft.GetConfiguration().Configuration().Servers {
		if s.ID == raft.ServerID(n.cfg.ID) {
			return true
		}
	}
	return false
}

// voters counts the voters of the latest Raft configuration.
func (n *Node) voters() int {
	k := 0
	for _, s := range n.raft.GetConfiguration().Configuration().Servers {
		if s.Suffrage == raft.Voter {
			k++
		}
	}
	return k
}

// lastContact is the time since this node last heard from the leader: 0
// on the leader, +Inf if never.
func (n *Node) lastContact() time.Duration {
	if n.raft.State() == raft.Leader {
		return 0
	}
	t := n.raft.LastContact()
	if t.IsZero() {
		return time.Duration(math.MaxInt64)
	}
	return time.Since(t)
}

// Status returns the node's view of the cluster.
func (n *Node) Status() wire.Status {
	r := n.raft
	st := wire.Status{
		Node: n.cfg.ID, State: lowerState(r.State()), Term: r.CurrentTerm(),
		Commit: r.CommitIndex(), Applied: r.AppliedIndex(), Nodes: []wire.StatusNode{},
		InsecureDevices: n.insecureDevices(), Build: BuildInfo(),
	}
	_, st.LeaderCommit = n.leaderCommit()
	if b := n.certs.Bundle(); b != nil && b.Cert.Leaf != nil {
		node, ca, dev := n.certs.expiry()
		st.Certs = &wire.StatusCerts{Node: node.UTC(), NodeSerial: b.Cert.Leaf.SerialNumber.Text(16), CA: ca.UTC()}
		if !dev.IsZero() {
			dev = dev.UTC()
			st.Certs.DeviceCA = &dev
		}
	}
	if d := n.lastContact(); d == time.Duration(math.MaxInt64) {
		st.LastContact = -1
	} else {
		st.LastContact = d.Seconds()
	}
	if err := n.Ready(); err != nil {
		st.NotReady = err.Error()
	} else {
		st.Ready = true
	}
	_, lid := r.LeaderWithID()
	servers := r.GetConfiguration().Configuration().Servers
	n.fsm.Read(func(s *State) {
		st.Nodes, st.Leader = members(s, servers, lid)
		if v := s.Current(); v != nil {
			st.Model = &wire.StatusModel{Version: v.Version, Round: v.Round, Digest: hex.EncodeToString(v.Digest[:])}
		}
		if o := s.Open(); o != nil {
			st.Round = &wire.StatusRound{Round: o.Round, Model: o.Model, Cohort: len(o.Cohort), Leader: o.Leader}
		}
		st.LastRound = s.LastRound()
		st.Privacy.Rounds = len(s.Ledger())
	})
	eps, delta := n.metrics.privacySpent()
	st.Privacy.Delta = delta
	if !math.IsNaN(eps) && !math.IsInf(eps, 0) {
		st.Privacy.Epsilon = &eps
	}
	return st
}

// members describes the servers of a Raft configuration, by id, with the
// client addresses s holds, and the leader lid; the leader is nil when
// unknown.
func members(s *State, servers []raft.Server, lid raft.ServerID) (nodes []wire.StatusNode, leader *wire.StatusNode) {
	servers = slices.Clone(servers)
	slices.SortFunc(servers, func(a, b raft.Server) int { return strings.Compare(string(a.ID), string(b.ID)) })
	nodes = []wire.StatusNode{}
	for _, srv := range servers {
		sn := wire.StatusNode{ID: string(srv.ID), RaftAddr: string(srv.Address), ClientAddr: s.NodeAddr(string(srv.ID)), AdminAddr: s.AdminAddr(string(srv.ID)),
			Suffrage: suffrage(srv.Suffrage), Leader: srv.ID == lid}
		nodes = append(nodes, sn)
		if sn.Leader {
			leader = &sn
		}
	}
	if leader == nil && lid != "" {
		leader = &wire.StatusNode{ID: string(lid), ClientAddr: s.NodeAddr(string(lid)), AdminAddr: s.AdminAddr(string(lid)), Leader: true}
	}
	return nodes, leader
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	}
	return "staging"
}

// ChangeTraining commits an operator's change of the settings that may
// change while the cluster runs (see wire.ChangeTraining); the next round
// opened uses them. Only the leader can; others return ErrNotLeader. The
// change is refused, with ErrBadCommand, when it changes nothing, turns
// noise on or off, or leaves an invalid configuration.
func (n *Node) ChangeTraining(c wire.ChangeTraining) (Training, error) {
	if !n.IsLeader() {
		return Training{}, ErrNotLeader
	}
	c.TimeMs = time.Now().UnixMilli()
	if _, err := n.apply(&c); err != nil {
		return Training{}, err
	}
	var t Training
	n.fsm.Read(func(s *State) { t, _ = s.Config() })
	n.log.Info("training settings changed", "operator", c.Operator, "reason", c.Reason, "clients_per_round", t.ClientsPerRound,
		"min_clients", t.MinClients, "checkin_window", t.CheckInWindow, "round_timeout", t.RoundTimeout, "noise_multiplier", t.NoiseMultiplier)
	return t, nil
}
