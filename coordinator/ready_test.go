package coordinator

import (
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func TestReadiness(t *testing.T) {
	tests := []struct {
		name                              string
		leader                            bool
		term, commit, applied, tTerm, tCo uint64
		lag                               uint64
		want                              string // "" ready, else part of the reason
	}{
		// A follower restarted from its snapshot: applied 60, its own
		// commit index 0, and nothing heard from the leader yet.
		{"restarted, nothing heard", false, 3, 0, 60, 0, 0, 2, "no commit index from the leader of term 3"},
		{"restarted, behind the leader", false, 3, 61, 60, 3, 90, 2, "applied index 60 behind the leader's commit index 90"},
		{"caught up within the lag", false, 3, 88, 88, 3, 90, 2, ""},
		{"caught up", false, 3, 90, 90, 3, 90, 0, ""},
		{"one behind, no lag allowed", false, 3, 90, 89, 3, 90, 0, "applied index 89 behind"},
		{"heard an old term's leader", false, 4, 90, 90, 3, 90, 2, "no commit index from the leader of term 4"},
		{"own commit ahead of what was heard", false, 3, 95, 90, 3, 90, 2, "applied index 90 behind the leader's commit index 95"},
		{"leader", true, 3, 90, 90, 0, 0, 0, ""},
		{"leader applying", true, 3, 90, 80, 0, 0, 2, "applied index 80 behind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := readiness(tt.leader, tt.term, tt.commit, tt.applied, tt.tTerm, tt.tCo, tt.lag)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("readiness = %v, want ready", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("readiness = %v, want %q", err, tt.want)
			}
		})
	}
}

// The tap passes every RPC on and notes the newest term's highest commit
// index; heartbeats (no commit index) and older terms change nothing.
func TestCommitTap(t *testing.T) {
	_, inner := raft.NewInmemTransport("")
	tap := newCommitTap(inner)
	defer tap.Close()
	_, peer := raft.NewInmemTransport("")
	defer peer.Close()
	peer.Connect(inner.LocalAddr(), inner)
	stop, stopped := make(chan struct{}), make(chan struct{})
	defer func() { close(stop); <-stopped }()
	go func() {
		defer close(stopped)
		for {
			select {
			case rpc := <-tap.Consumer():
				rpc.Respond(&raft.AppendEntriesResponse{Success: true}, nil)
			case <-stop:
				return
			}
		}
	}()
	send := func(term, commit uint64) {
		t.Helper()
		var resp raft.AppendEntriesResponse
		if err := peer.AppendEntries("n1", inner.LocalAddr(), &raft.AppendEntriesRequest{Term: term, LeaderCommitIndex: commit}, &resp); err != nil || !resp.Success {
			t.Fatalf("AppendEntries through the tap = %v, %v", resp.Success, err)
		}
	}
	for _, s := range []struct{ term, commit, wantTerm, wantCommit uint64 }{
		{2, 10, 2, 10},
		{2, 12, 2, 12},
		{2, 0, 2, 12},  // heartbeat
		{1, 50, 2, 12}, // a deposed leader
		{3, 5, 3, 5},   // a new term's leader
	} {
		send(s.term, s.commit)
		if term, commit := tap.leaderCommit(); term != s.wantTerm || commit != s.wantCommit {
			t.Errorf("after AppendEntries(term %d, commit %d): leaderCommit = %d, %d, want %d, %d", s.term, s.commit, term, commit, s.wantTerm, s.wantCommit)
		}
	}
}
