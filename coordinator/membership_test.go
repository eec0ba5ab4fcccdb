package coordinator

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// do sends method path to n's admin API with token (none if empty) and
// returns the status code and body.
func (c *adminCluster) do(n *Node, method, path, token string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), method, "https://"+n.AdminAddr()+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return res.StatusCode, b
}

// waitLeader waits until want runs rounds.
func (c *adminCluster) waitLeader(ctx context.Context, want *Node) {
	c.t.Helper()
	for {
		if l := c.findLeader(ctx); l == want {
			return
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("leader is not %s", want.ID())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func voters(cl wire.Cluster) int {
	k := 0
	for _, n := range cl.Nodes {
		if n.Suffrage == "voter" {
			k++
		}
	}
	return k
}

func TestAdminMembership(t *testing.T) {
	c := newAdminCluster(t, 3, testTraining())
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	l := c.leader(ctx)
	var follower *Node
	for _, n := range c.nodes {
		if n != l {
			follower = n
			break
		}
	}

	// Every membership call needs the token.
	for _, call := range []struct{ method, path string }{
		{"GET", "/v1/cluster"},
		{"POST", "/v1/cluster/remove?id=n1"},
		{"POST", "/v1/cluster/transfer-leadership"},
	} {
		for _, tok := range []string{"", "wrong"} {
			if code, _ := c.do(l, call.method, call.path, tok); code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q = %d, want 401", call.method, call.path, tok, code)
			}
		}
	}
	if code, _ := c.do(l, "GET", "/v1/cluster/remove?id=n1", testToken); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/cluster/remove = %d, want 405", code)
	}

	// list: every node sees three voters and the same leader.
	c.waitAll(ctx, func(s *State) bool {
		for _, n := range c.nodes {
			if s.NodeAddr(n.ID()) == "" {
				return false
			}
		}
		return true
	})
	for _, n := range c.nodes {
		var cl wire.Cluster
		c.getJSON(n, "/v1/cluster", &cl)
		if cl.Node != n.ID() || len(cl.Nodes) != 3 || voters(cl) != 3 || cl.Leader == nil || cl.Leader.ID != l.ID() {
			t.Errorf("%s: /v1/cluster = %+v, want 3 voters led by %s", n.ID(), cl, l.ID())
		}
		for _, sn := range cl.Nodes {
			if sn.Leader != (sn.ID == l.ID()) || sn.RaftAddr == "" || sn.ClientAddr == "" {
				t.Errorf("%s: member %+v", n.ID(), sn)
			}
		}
	}

	// Refusals, before anything changes.
	refusals := []struct {
		name     string
		n        *Node
		path     string
		code     int
		toLeader bool // the error names the leader
	}{
		{"remove on a follower", follower, "/v1/cluster/remove?id=" + l.ID(), http.StatusConflict, true},
		{"transfer on a follower", follower, "/v1/cluster/transfer-leadership", http.StatusConflict, true},
		{"remove without id", l, "/v1/cluster/remove", http.StatusBadRequest, false},
		{"transfer to a stranger", l, "/v1/cluster/transfer-leadership?id=nobody", http.StatusNotFound, false},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			code, body := c.do(tt.n, "POST", tt.path, testToken)
			var ce wire.ClusterError
			if err := json.Unmarshal(body, &ce); err != nil || code != tt.code || ce.Error == "" {
				t.Fatalf("POST %s on %s = %d %s (%v), want %d with an error", tt.path, tt.n.ID(), code, body, err, tt.code)
			}
			if tt.toLeader && (ce.Leader == nil || ce.Leader.ID != l.ID()) {
				t.Errorf("POST %s on %s: leader = %+v, want %s", tt.path, tt.n.ID(), ce.Leader, l.ID())
			}
		})
	}

	// transfer-leadership to a named node, then to any node.
	var cl wire.Cluster
	code, body := c.do(l, "POST", "/v1/cluster/transfer-leadership?id="+follower.ID(), testToken)
	if err := json.Unmarshal(body, &cl); code != http.StatusOK || err != nil || cl.Leader == nil || cl.Leader.ID != follower.ID() {
		t.Fatalf("transfer to %s = %d %s, want 200 naming it leader", follower.ID(), code, body)
	}
	c.waitLeader(ctx, follower)
	old := follower
	code, body = c.do(old, "POST", "/v1/cluster/transfer-leadership", testToken)
	if err := json.Unmarshal(body, &cl); code != http.StatusOK || err != nil || cl.Leader == nil || cl.Leader.ID == old.ID() {
		t.Fatalf("transfer from %s = %d %s, want 200 naming another leader", old.ID(), code, body)
	}
	l = c.leader(ctx)
	if l == old {
		t.Fatalf("leader still %s after a transfer", old.ID())
	}
	// Transferring to the leader itself changes nothing.
	if code, body := c.do(l, "POST", "/v1/cluster/transfer-leadership?id="+l.ID(), testToken); code != http.StatusOK {
		t.Errorf("transfer to the leader itself = %d %s, want 200", code, body)
	}

	// remove a follower, twice: the second is a no-op success.
	var gone *Node
	for _, n := range c.nodes {
		if n != l {
			gone = n
			break
		}
	}
	for range 2 {
		code, body := c.do(l, "POST", "/v1/cluster/remove?id="+gone.ID(), testToken)
		if err := json.Unmarshal(body, &cl); code != http.StatusOK || err != nil || len(cl.Nodes) != 2 || voters(cl) != 2 {
			t.Fatalf("remove %s = %d %s, want 200 and 2 voters", gone.ID(), code, body)
		}
		for _, sn := range cl.Nodes {
			if sn.ID == gone.ID() {
				t.Errorf("remove %s: still listed %+v", gone.ID(), cl)
			}
		}
	}
	gone.Close() // the operator stops the removed node's process
	for _, n := range c.live() {
		for {
			c.getJSON(n, "/v1/cluster", &cl)
			if len(cl.Nodes) == 2 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: /v1/cluster = %+v, want 2 nodes", n.ID(), cl)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}

	// The two that remain still commit rounds.
	var v uint64
	l.View(func(s *State) { v = s.Current().Version })
	c.runRounds(ctx, v+3)
}

// Removing the leader during training: it hands leadership over, the new
// leader removes it, and the two that remain go on committing.
func TestAdminRemoveLeaderDuringTraining(t *testing.T) {
	c := newAdminCluster(t, 3, testTraining())
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	crowdCtx, stop := context.WithCancel(ctx)
	wg := c.crowd(crowdCtx, 6)
	defer func() { stop(); wg.Wait() }()
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= 2 })

	l := c.leader(ctx)
	// The leader hands over and sends the caller to the new leader.
	code, body := c.do(l, "POST", "/v1/cluster/remove?id="+l.ID(), testToken)
	if code != http.StatusConflict {
		t.Fatalf("remove the leader %s at itself = %d %s, want 409 naming the new leader", l.ID(), code, body)
	}
	nl := c.leader(ctx)
	if nl == l {
		t.Fatalf("leader %s still leads after handing over", l.ID())
	}
	if code, body = c.do(nl, "POST", "/v1/cluster/remove?id="+l.ID(), testToken); code != http.StatusOK {
		t.Fatalf("remove the old leader %s at %s = %d %s, want 200", l.ID(), nl.ID(), code, body)
	}
	l.Close()
	var v uint64
	c.leader(ctx).View(func(s *State) { v = s.Current().Version })
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= v+2 })
	for _, n := range c.live() {
		var cl wire.Cluster
		c.getJSON(n, "/v1/cluster", &cl)
		if len(cl.Nodes) != 2 || voters(cl) != 2 {
			t.Errorf("%s: /v1/cluster = %+v, want 2 voters", n.ID(), cl)
		}
		for _, sn := range cl.Nodes {
			if sn.ID == l.ID() {
				t.Errorf("%s: removed leader still listed: %+v", n.ID(), cl)
			}
		}
	}
}
