package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// procCluster is coordinator processes of the fedrec binary on loopback,
// in one directory with their certificates, and an HTTPS client for their
// admin APIs: the fault and operations tests start theirs with it, each
// with its own flags.
type procCluster struct {
	t        *testing.T
	bin, dir string
	token    string // the operator token every node is started with
	http     *http.Client
	mu       sync.Mutex // guards the nodes' procs against watchers
	nodes    map[string]*procNode
}

// procNode is a coordinator process, every incarnation of it, and the
// addresses it listens on.
type procNode struct {
	id string
	// raft, client and admin are "127.0.0.1:0" until the node's first
	// start reports the ports the system chose (restarts reuse them), or
	// fixed ports set before it.
	raft, client, admin string
	advertise           string  // its --advertise-client-addr, "" for none
	procs               []*proc // every incarnation, the current one last
	logOff              int64   // bytes of the current log already read (lastPhase)
}

// cur is the node's current process.
func (n *procNode) cur() *proc { return n.procs[len(n.procs)-1] }

// newProcCluster builds the binary and writes the cluster CA, the device
// CA and certificates for the nodes ids into dir/certs.
func newProcCluster(t *testing.T, token string, ids ...string) *procCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test")
	}
	dir := t.TempDir()
	c := &procCluster{t: t, bin: fedrecBinary(t), dir: dir, token: token, nodes: map[string]*procNode{}}
	if err := pki.WriteDir(filepath.Join(dir, "certs"), ids, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	var err error
	if c.http, err = adminClient(filepath.Join(dir, "certs")); err != nil {
		t.Fatal(err)
	}
	c.http.Timeout = 10 * time.Second
	t.Cleanup(c.http.CloseIdleConnections)
	return c
}

// node returns node id, a new one on ports of the system's choosing.
func (c *procCluster) node(id string) *procNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[id]
	if n == nil {
		n = &procNode{id: id, raft: "127.0.0.1:0", client: "127.0.0.1:0", admin: "127.0.0.1:0"}
		c.nodes[id] = n
	}
	return n
}

// start starts (or restarts) node id on its addresses and data directory,
// with the admin API and flags, and waits until it listens (failing the
// test if it exits first); a node on ports of the system's choosing keeps
// those it reports.
func (c *procCluster) start(ctx context.Context, id string, flags ...string) *procNode {
	c.t.Helper()
	n := c.node(id)
	args := []string{"coordinator", "--id", id, "--data-dir", id, "--certs", "certs",
		"--raft-addr", n.raft, "--client-addr", n.client, "--admin-addr", n.admin, "--admin-token", c.token}
	if n.advertise != "" {
		args = append(args, "--advertise-client-addr", n.advertise)
	}
	c.mu.Lock()
	p := start(c.t, c.bin, c.dir, fmt.Sprintf("%s-%d", id, len(n.procs)), append(args, flags...)...)
	n.procs = append(n.procs, p)
	n.logOff = 0
	c.mu.Unlock()
	waitFor(c.t, ctx, "node "+id+" to listen", func() bool {
		select {
		case <-p.done:
			c.t.Fatalf("%s exited: %s", p.name, tail(p.read(p.log)))
		default:
		}
		out := p.read(p.out)
		m, a := reAddrs.FindStringSubmatch(out), reAdmin.FindStringSubmatch(out)
		if m == nil || a == nil {
			return false
		}
		for _, f := range []struct {
			dst *string
			got string
		}{{&n.raft, m[1]}, {&n.client, m[2]}, {&n.admin, a[1]}} {
			if strings.HasSuffix(*f.dst, ":0") { // else fixed, or advertised
				*f.dst = f.got
			}
		}
		return true
	})
	return n
}

// status returns node id's /v1/status.
func (c *procCluster) status(ctx context.Context, id string) (*wire.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b, err := adminGet(ctx, c.http, c.node(id).admin, wire.PathStatus, c.token)
	if err != nil {
		return nil, err
	}
	return wire.DecodeAdmin[wire.Status](b)
}

// rounds returns node id's whole round history.
func (c *procCluster) rounds(ctx context.Context, id string) ([]wire.RoundJSON, error) {
	var all []wire.RoundJSON
	var after uint64
	for {
		b, err := adminGet(ctx, c.http, c.node(id).admin, fmt.Sprintf("%s?after=%d&limit=1000", wire.PathRounds, after), c.token)
		if err != nil {
			return nil, err
		}
		page, err := wire.DecodeAdmin[wire.RoundsPage](b)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Rounds...)
		if page.Next == nil {
			return all, nil
		}
		after = *page.Next
	}
}
