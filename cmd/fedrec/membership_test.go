package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

func TestClusterCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.WriteDir(dir, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	const token = "tok"
	n := startLoneNode(t, dir, coordinator.Config{ID: "a", AdminAddr: "127.0.0.1:0", AdminToken: token})
	ctx := t.Context()
	flags := []string{"--admin", n.AdminAddr(), "--certs", dir, "--token", token}

	var out, errb bytes.Buffer
	if err := run(ctx, append([]string{"cluster", "list"}, flags...), &out, &errb); err != nil {
		t.Fatalf("fedrec cluster list: %v\n%s", err, errb.String())
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], "a ") || !strings.Contains(lines[1], "voter") || !strings.Contains(lines[1], "*") {
		t.Errorf("cluster list =\n%s", out.String())
	}
	out.Reset()
	// Flags after the subcommand's argument, and a list of nodes whose
	// first does not answer.
	args := []string{"cluster", "remove", "ghost", "--json", "--admin", "127.0.0.1:1," + n.AdminAddr(), "--certs", dir, "--token", token}
	if err := run(ctx, args, &out, &errb); err != nil {
		t.Fatalf("fedrec cluster remove ghost: %v\n%s", err, errb.String())
	}
	var cl wire.Cluster
	if err := json.Unmarshal(out.Bytes(), &cl); err != nil || cl.Node != "a" || len(cl.Nodes) != 1 {
		t.Errorf("cluster remove --json = %+v, %v\n%s", cl, err, out.String())
	}

	tests := []struct {
		name string
		args []string
		code int // the exit code main gives the error
	}{
		{"no subcommand", []string{"cluster"}, 2},
		{"unknown subcommand", append([]string{"cluster", "grow"}, flags...), 2},
		{"help", []string{"cluster", "-h"}, 2},
		{"list with an argument", append([]string{"cluster", "list", "x"}, flags...), 2},
		{"remove without id", append([]string{"cluster", "remove"}, flags...), 2},
		{"remove two", append([]string{"cluster", "remove", "x", "y"}, flags...), 2},
		{"transfer to two", append([]string{"cluster", "transfer-leadership", "x", "y"}, flags...), 2},
		{"join without id", append([]string{"cluster", "join", "--raft-addr", "127.0.0.1:1"}, flags...), 2},
		{"join without raft address", append([]string{"cluster", "join", "x"}, flags...), 2},
		{"raft address for list", append([]string{"cluster", "list", "--raft-addr", "127.0.0.1:1"}, flags...), 2},
		{"join with a bad raft address", append([]string{"cluster", "join", "x", "--raft-addr", "nohostport"}, flags...), 1},
		{"join taking the leader's raft address", append([]string{"cluster", "join", "x", "--raft-addr", n.RaftAddr()}, flags...), 1},
		{"no admin", []string{"cluster", "list", "--token", token}, 2},
		{"bad flag", append([]string{"cluster", "list", "--nope"}, flags...), 2},
		{"wrong token", []string{"cluster", "list", "--admin", n.AdminAddr(), "--certs", dir, "--token", "nope"}, 1},
		{"nobody there", []string{"cluster", "list", "--admin", "127.0.0.1:1", "--certs", dir, "--token", token, "--timeout", "2s"}, 1},
		{"transfer to a stranger", append([]string{"cluster", "transfer-leadership", "nobody"}, flags...), 1},
		{"transfer with no one to take it", append([]string{"cluster", "transfer-leadership"}, flags...), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(ctx, tt.args, &out, &errb)
			code := 1
			switch {
			case err == nil:
				code = 0
			case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
				code = 2
			}
			if code != tt.code {
				t.Errorf("run(%q) = %v, exit %d, want %d\n%s", tt.args, err, code, tt.code, errb.String())
			}
		})
	}
}

// On a two-node cluster: a leader-only command given a follower fails and
// names the leader; given the follower and the leader, it reaches the
// leader.
func TestClusterCommandFollower(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.WriteDir(dir, []string{"a", "b"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	const token = "tok"
	ctx := t.Context()
	var nodes []*coordinator.Node
	for i, id := range []string{"a", "b"} {
		bundle, err := pki.Load(dir, id)
		if err != nil {
			t.Fatal(err)
		}
		cfg := coordinator.Config{
			ID: id, InMemory: true, RaftAddr: "127.0.0.1:0", ClientAddr: "127.0.0.1:0", TLS: bundle,
			AdminAddr: "127.0.0.1:0", AdminToken: token, Bootstrap: i == 0,
			Training:         coordinator.Training{Items: 3, Rank: 2, Population: 100},
			HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
		}
		if i > 0 {
			cfg.Bootstrap, cfg.Join = false, []string{nodes[0].ClientAddr()}
		}
		n, err := coordinator.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.WaitFor(wctx, func(s *coordinator.State) bool { return s.Current() != nil && s.NodeAddr("b") != "" }); err != nil {
			t.Fatalf("%s: %v", n.ID(), err)
		}
	}
	for nodes[1].Ready() != nil || !nodes[0].IsLeader() {
		select {
		case <-wctx.Done():
			t.Fatal("b never caught up with leader a")
		case <-time.After(10 * time.Millisecond):
		}
	}
	a, b := nodes[0].AdminAddr(), nodes[1].AdminAddr()
	flags := []string{"--certs", dir, "--token", token}

	var out, errb bytes.Buffer
	// Each node registered its admin address through the membership.
	if err := run(ctx, append([]string{"cluster", "list", "--json", "--admin", b}, flags...), &out, &errb); err != nil {
		t.Fatalf("list: %v\n%s", err, errb.String())
	}
	var before wire.Cluster
	if err := json.Unmarshal(out.Bytes(), &before); err != nil || len(before.Nodes) != 2 || before.Nodes[0].AdminAddr != a || before.Nodes[1].AdminAddr != b {
		t.Errorf("list --json = %+v, %v; want admin addresses %s, %s", before, err, a, b)
	}
	// Given only the follower, the commands find the leader and the other
	// members by those addresses.
	out.Reset()
	if err := run(ctx, append([]string{"cluster", "health", "--admin", b}, flags...), &out, &errb); err != nil || !strings.Contains(out.String(), "2 of 2 voters reachable: quorum holds, leader a") {
		t.Errorf("cluster health --admin follower = %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(ctx, append([]string{"training", "set", "--admin", b, "--round-timeout", "45s", "--reason", "test"}, flags...), &out, &errb); err != nil {
		t.Errorf("training set --admin follower = %v\n%s", err, errb.String())
	}
	out.Reset()
	if err := run(ctx, append([]string{"cluster", "transfer-leadership", "b", "--admin", b}, flags...), &out, &errb); err != nil {
		t.Fatalf("transfer-leadership b --admin b: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "leadership transferred to b") {
		t.Errorf("transfer-leadership b printed\n%s", out.String())
	}
	out.Reset()
	if err := run(ctx, append([]string{"cluster", "list", "--json", "--admin", a}, flags...), &out, &errb); err != nil {
		t.Fatalf("list: %v\n%s", err, errb.String())
	}
	var cl wire.Cluster
	if err := json.Unmarshal(out.Bytes(), &cl); err != nil || len(cl.Nodes) != 2 || cl.Leader == nil || cl.Leader.ID != "b" {
		t.Errorf("list --json = %+v, %v, want 2 nodes led by b", cl, err)
	}
}

// fedrec cluster join adds a node started with neither --bootstrap nor
// --join; joining it again changes nothing.
func TestClusterJoinCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.WriteDir(dir, []string{"a", "b"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	const token = "tok"
	ctx := t.Context()
	var nodes []*coordinator.Node
	for i, id := range []string{"a", "b"} {
		bundle, err := pki.Load(dir, id)
		if err != nil {
			t.Fatal(err)
		}
		n, err := coordinator.New(coordinator.Config{
			ID: id, InMemory: true, RaftAddr: "127.0.0.1:0", ClientAddr: "127.0.0.1:0", TLS: bundle,
			AdminAddr: "127.0.0.1:0", AdminToken: token, Bootstrap: i == 0,
			Training:         coordinator.Training{Items: 3, Rank: 2, Population: 100},
			HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	a, b := nodes[0], nodes[1]
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := a.WaitFor(wctx, func(s *coordinator.State) bool { return s.Current() != nil }); err != nil {
		t.Fatal(err)
	}
	// b, unknown to anyone, is not ready, and knows no leader: a
	// leader-only command asks it again until the timeout.
	if err := b.Ready(); err == nil {
		t.Fatal("b is ready before it joined")
	}
	var out, errb bytes.Buffer
	begin := time.Now()
	err := run(ctx, []string{"cluster", "transfer-leadership", "--admin", b.AdminAddr(), "--certs", dir, "--token", token, "--timeout", "1s"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "leader unknown") || time.Since(begin) < 900*time.Millisecond {
		t.Errorf("transfer-leadership on a node that knows no leader = %v after %v, want a failure at the 1s timeout", err, time.Since(begin))
	}
	args := []string{"cluster", "join", "b", "--raft-addr", b.RaftAddr(), "--client-addr", b.ClientAddr(),
		"--admin", b.AdminAddr() + "," + a.AdminAddr(), "--certs", dir, "--token", token}
	for range 2 { // the second join is a no-op
		out.Reset()
		if err := run(ctx, args, &out, &errb); err != nil {
			t.Fatalf("fedrec cluster join b: %v\n%s", err, errb.String())
		}
		if !strings.Contains(out.String(), "joined b") || !strings.Contains(out.String(), b.RaftAddr()) {
			t.Errorf("cluster join printed\n%s", out.String())
		}
	}
	if err := b.WaitFor(wctx, func(s *coordinator.State) bool { return s.Current() != nil && s.NodeAddr("b") == b.ClientAddr() }); err != nil {
		t.Fatalf("b never received the state: %v", err)
	}
	for b.Ready() != nil {
		select {
		case <-wctx.Done():
			t.Fatalf("b not ready: %v", b.Ready())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cl := a.Cluster()
	if len(cl.Nodes) != 2 || cl.Nodes[1].ID != "b" || cl.Nodes[1].Suffrage != "voter" || cl.Nodes[1].ClientAddr != b.ClientAddr() {
		t.Errorf("cluster after join = %+v, want b a voter at %s", cl, b.ClientAddr())
	}
}
