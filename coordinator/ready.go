package coordinator

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// commitTap is the node's Raft transport with one addition: it notes the
// leader's commit index from the AppendEntries requests it passes on to
// Raft. A follower knows its own commit index only up to its own log: one
// restarted from its snapshot reports commit 0 (or an old index) until
// the leader has sent it the entries it missed, so readiness compares
// what it applied with the leader's commit index instead.
type commitTap struct {
	raft.Transport
	out  chan raft.RPC
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	mu     sync.Mutex
	term   uint64 // term of the newest AppendEntries with a commit index
	commit uint64 // the highest commit index a leader of term sent
}

func newCommitTap(t raft.Transport) *commitTap {
	c := &commitTap{Transport: t, out: make(chan raft.RPC), done: make(chan struct{})}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.forward(t.Consumer())
	}()
	return c
}

// forward passes every RPC to Raft, noting AppendEntries' commit indexes.
func (c *commitTap) forward(in <-chan raft.RPC) {
	for {
		select {
		case <-c.done:
			return
		case rpc := <-in:
			if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
				c.observe(req.Term, req.LeaderCommitIndex)
			}
			select {
			case c.out <- rpc:
			case <-c.done:
				return
			}
		}
	}
}

func (c *commitTap) observe(term, commit uint64) {
	if commit == 0 {
		return // a heartbeat: it carries no commit index
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case term > c.term:
		c.term, c.commit = term, commit
	case term == c.term:
		c.commit = max(c.commit, commit)
	}
}

// leaderCommit returns the newest leader commit index seen and its term.
func (c *commitTap) leaderCommit() (term, commit uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.term, c.commit
}

// Consumer implements raft.Transport.
func (c *commitTap) Consumer() <-chan raft.RPC { return c.out }

// RequestPreVote implements raft.WithPreVote when the transport does.
func (c *commitTap) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	pv, ok := c.Transport.(raft.WithPreVote)
	if !ok {
		return errors.New("coordinator: transport has no pre-vote")
	}
	return pv.RequestPreVote(id, target, args, resp)
}

// Close implements raft.WithClose: it stops forwarding and closes the
// transport. Idempotent.
func (c *commitTap) Close() error {
	var err error
	c.once.Do(func() {
		close(c.done)
		c.wg.Wait()
		if wc, ok := c.Transport.(raft.WithClose); ok {
			err = wc.Close()
		}
	})
	return err
}

// readiness decides Node.Ready from Raft's figures: a node is ready when
// it has applied all but at most lag of the entries the leader committed.
// A leader knows its commit index; a follower must have heard it from the
// leader of its current term (tapTerm, tapCommit).
func readiness(leader bool, term, commit, applied, tapTerm, tapCommit, lag uint64) error {
	if !leader {
		if tapTerm < term {
			return fmt.Errorf("no commit index from the leader of term %d yet", term)
		}
		commit = max(commit, tapCommit)
	}
	if applied+lag < commit {
		return fmt.Errorf("applied index %d behind the leader's commit index %d (more than %d)", applied, commit, lag)
	}
	return nil
}
