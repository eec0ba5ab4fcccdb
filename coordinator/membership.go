package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// ErrUnknownNode is returned by membership operations that name a node
// outside the Raft configuration.
var ErrUnknownNode = store.ErrUnknownNode

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
