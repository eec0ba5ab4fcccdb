package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// 'fedrec cluster remove' of the leader with --admin listing the new
// leader first: n2 (a follower) names n1; n1, asked to remove itself,
// hands leadership to n2 and names it. The command must go back to n2,
// which it had already asked, rather than give up.
func TestClusterRemoveLeaderMovesBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.WriteDir(dir, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	b, err := pki.Load(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	var n2Leads atomic.Bool
	var n2Calls, n1Calls atomic.Int32
	node := func(id string) *wire.StatusNode {
		return &wire.StatusNode{ID: id, RaftAddr: id + ":8001"}
	}
	answer := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	serve := func(h http.HandlerFunc) string {
		srv := httptest.NewUnstartedServer(h)
		srv.TLS = b.ServerTLS()
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	n2 := serve(func(w http.ResponseWriter, r *http.Request) {
		n2Calls.Add(1)
		if !n2Leads.Load() {
			answer(w, http.StatusConflict, wire.ClusterError{Error: "not leader", Leader: node("n1")})
			return
		}
		answer(w, http.StatusOK, wire.Cluster{Node: "n2", Leader: node("n2"), Nodes: []wire.StatusNode{*node("n2"), *node("n3")}})
	})
	n1 := serve(func(w http.ResponseWriter, r *http.Request) {
		n1Calls.Add(1)
		n2Leads.Store(true) // the leader hands over, then answers as a follower
		answer(w, http.StatusConflict, wire.ClusterError{Error: "not leader", Leader: node("n2")})
	})

	var out, errb bytes.Buffer
	err = run(t.Context(), []string{"cluster", "remove", "n1", "--admin", n2 + "," + n1, "--certs", dir, "--token", "tok", "--timeout", "1m"}, &out, &errb)
	if err != nil {
		t.Fatalf("fedrec cluster remove n1 = %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "removed n1") {
		t.Errorf("output:\n%s", out.String())
	}
	if n2Calls.Load() != 2 || n1Calls.Load() != 1 {
		t.Errorf("asked n2 %d times and n1 %d times, want 2 and 1", n2Calls.Load(), n1Calls.Load())
	}

	// A leader that no listed node is fails at once, naming it.
	n2Leads.Store(false)
	err = run(t.Context(), []string{"cluster", "remove", "n3", "--admin", n2, "--certs", dir, "--token", "tok", "--timeout", "1m"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "the leader is n1") {
		t.Errorf("cluster remove with the leader not listed = %v, want an error naming n1", err)
	}
}
