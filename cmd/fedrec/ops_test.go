package main

// Operations under load, with real processes on loopback: metrics scraped
// from a live cluster while it trains, membership changes while it trains,
// and a rolling restart. Small model (rank 4, a synthetic data set of 60
// users) and short timeouts keep each test to a few seconds of training.

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/proctest"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/sim"
)

const opsToken = "ops-test-token"

var reAdmin = regexp.MustCompile(`admin https://(\S+)`)

// opsCluster is a cluster of coordinator processes with clients.
type opsCluster struct {
	*procCluster
	ctx       context.Context
	data      string // the data set, a CSV file
	bootstrap string
}

// newOpsCluster builds the binary, makes certificates for ids and extra,
// writes a small synthetic data set, and starts ids[0] (bootstrapping) and
// the others (joining it).
func newOpsCluster(t *testing.T, ctx context.Context, ids, extra []string) *opsCluster {
	t.Helper()
	c := &opsCluster{procCluster: newProcCluster(t, opsToken, append(slices.Clone(ids), extra...)...), ctx: ctx, bootstrap: ids[0]}
	c.data = filepath.Join(c.dir, "ratings.csv")
	ds, err := sim.Synthetic(sim.SyntheticConfig{Users: 60, Items: 80, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(c.data)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	for _, x := range ds.Interactions {
		w.Write([]string{ds.UserIDs[x.User], ds.ItemIDs[x.Item], strconv.FormatFloat(float64(x.Value), 'g', -1, 32)})
	}
	w.Flush()
	if err := firstErr(w.Error(), f.Close()); err != nil {
		t.Fatal(err)
	}
	c.start(ids[0], "--bootstrap", "--dataset", c.data, "--rank", "4", "--keep-models", "1000",
		"--clients-per-round", "12", "--over-select", "0", "--min-clients", "4",
		"--checkin-window", "300ms", "--round-timeout", "5s", "--noise-multiplier", "0.5", "--clip", "1", "--population", "60")
	for _, id := range ids[1:] {
		c.start(id, "--join", c.nodes[ids[0]].client)
	}
	for _, id := range ids {
		c.waitReady(id)
	}
	return c
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// start starts node id with the common flags and extra, on loopback ports
// of the system's choosing the first time and on the same ones after.
func (c *opsCluster) start(id string, extra ...string) *procNode {
	c.t.Helper()
	return c.procCluster.start(c.ctx, id, append([]string{"--heartbeat", "500ms"}, extra...)...)
}

// stop sends SIGTERM to node id and waits for it to exit with status 0.
func (c *opsCluster) stop(id string) {
	c.t.Helper()
	p := c.nodes[id].cur()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-c.ctx.Done():
		c.t.Fatalf("%s did not exit after SIGTERM", id)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		c.t.Errorf("%s exited with status %d after SIGTERM\n%s", id, code, tail(p.read(p.log)))
	}
}

func tail(s string) string { return proctest.Tail(s, 3000) }

// get fetches path from node id's admin API; ok is false if it did not
// answer 200.
func (c *opsCluster) get(id, path string) ([]byte, bool) {
	req, err := http.NewRequestWithContext(c.ctx, "GET", "https://"+c.nodes[id].admin+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	res, err := c.http.Do(req)
	if err != nil {
		return nil, false
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return b, err == nil && res.StatusCode == http.StatusOK
}

func (c *opsCluster) getJSON(id, path string, v any) bool {
	b, ok := c.get(id, path)
	return ok && json.Unmarshal(b, v) == nil
}

func (c *opsCluster) waitReady(id string) {
	c.t.Helper()
	waitFor(c.t, c.ctx, id+" to be ready", func() bool {
		_, ok := c.get(id, "/readyz")
		return ok
	})
}

// metrics scrapes node id: samples keyed by the text before the value.
func (c *opsCluster) metrics(id string) map[string]float64 {
	c.t.Helper()
	b, ok := c.get(id, "/metrics")
	if !ok {
		c.t.Fatalf("%s: /metrics failed: %s", id, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			c.t.Fatalf("%s: metrics line %q: %v", id, line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// status returns node id's /v1/status, or nil if it does not answer.
func (c *opsCluster) status(id string) *wire.Status {
	st, err := c.procCluster.status(c.ctx, id)
	if err != nil {
		return nil
	}
	return st
}

// leader waits until one of ids reports itself the leader, and returns it.
func (c *opsCluster) leader(ids ...string) string {
	c.t.Helper()
	var l string
	waitFor(c.t, c.ctx, "a leader", func() bool {
		for _, id := range ids {
			if st := c.status(id); st != nil && st.State == "leader" {
				l = id
				return true
			}
		}
		return false
	})
	return l
}

// version returns the newest model version node id serves (0 if it does
// not answer).
func (c *opsCluster) version(id string) uint64 {
	if st := c.status(id); st != nil && st.Model != nil {
		return st.Model.Version
	}
	return 0
}

// waitVersion waits until node id serves model version v or newer.
func (c *opsCluster) waitVersion(id string, v uint64) {
	c.t.Helper()
	waitFor(c.t, c.ctx, fmt.Sprintf("%s to serve model version %d", id, v), func() bool { return c.version(id) >= v })
}

// clients starts k clients training against nodes.
func (c *opsCluster) clients(k int, nodes ...string) *proc {
	var addrs []string
	for _, id := range nodes {
		addrs = append(addrs, c.nodes[id].client)
	}
	return start(c.t, c.bin, c.dir, "clients", "client", "--data", c.data, "--clients", strconv.Itoa(k),
		"--coordinators", strings.Join(addrs, ","), "--certs", "certs", "--eval=false", "--log-level", "error")
}

// history returns node id's round history.
func (c *opsCluster) history(id string) []wire.RoundJSON {
	c.t.Helper()
	all, err := c.rounds(c.ctx, id)
	if err != nil {
		c.t.Fatalf("%s: %s: %v", id, wire.PathRounds, err)
	}
	return all
}

// digests returns the digest of every model version node id serves, from
// 1 to its newest (the nodes keep 1000).
func (c *opsCluster) digests(id string) map[uint64]string {
	c.t.Helper()
	out := map[uint64]string{}
	for v := uint64(1); v <= c.version(id); v++ {
		var man wire.ModelManifest
		if !c.getJSON(id, fmt.Sprintf("/v1/model?version=%d", v), &man) {
			c.t.Fatalf("%s: model version %d not retained", id, v)
		}
		out[v] = man.Digest
	}
	return out
}

// checkNoFailedCommit checks, on every live node in ids, that the round
// history is the same; that every round either committed or was
// abandoned for one of the allowed reasons (a leader change); that the
// committed rounds made versions 2, 3, … in
// order; that each node serves every version committed, with the digests
// of before (versions committed earlier, from some node); and that no
// node logged a failed round.
func (c *opsCluster) checkNoFailedCommit(ids []string, before map[uint64]string, allowed ...string) {
	c.t.Helper()
	ref := c.history(ids[0])
	// Wait for the others to apply as much.
	for _, id := range ids[1:] {
		waitFor(c.t, c.ctx, id+" to catch up", func() bool { return len(c.history(id)) >= len(ref) })
	}
	committed := 0
	for _, r := range ref {
		switch {
		case r.Outcome == "committed":
			committed++
			if want := uint64(committed + 1); r.NewModel != want {
				c.t.Errorf("round %d committed version %d, want %d", r.Round, r.NewModel, want)
			}
		case !slices.Contains(allowed, r.Reason):
			c.t.Errorf("round %d abandoned: %q (cohort %d, survivors %d); want only %q", r.Round, r.Reason, r.Cohort, r.Survivors, allowed)
		}
	}
	for _, id := range ids[1:] {
		h := c.history(id)[:len(ref)]
		for i := range ref {
			if h[i] != ref[i] {
				c.t.Errorf("%s: round %+v, %s has %+v", id, h[i], ids[0], ref[i])
				break
			}
		}
	}
	var want map[uint64]string
	for _, id := range ids {
		d := c.digests(id)
		if want == nil {
			want = d
		}
		for v, dg := range before {
			if d[v] != dg {
				c.t.Errorf("%s: version %d digest %.12s, was %.12s", id, v, d[v], dg)
			}
		}
		for v, dg := range want {
			if got, ok := d[v]; ok && got != dg {
				c.t.Errorf("%s: version %d digest %.12s, %s has %.12s", id, v, got, ids[0], dg)
			}
		}
	}
	for _, n := range c.nodes {
		for _, p := range n.procs {
			if log := p.read(p.log); strings.Contains(log, `msg="round failed"`) {
				i := strings.Index(log, `msg="round failed"`)
				c.t.Errorf("%s logged a failed round: %s", p.name, log[i:min(len(log), i+300)])
			}
		}
	}
	c.t.Logf("%d rounds, %d committed (model version %d)", len(ref), committed, committed+1)
}

// TestOpsMetricsDuringTraining scrapes /metrics on the three nodes of a
// training cluster and checks the figures move: rounds, Raft indices,
// bytes, model version, privacy spent, phase latencies on the leader.
func TestOpsMetricsDuringTraining(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ids := []string{"a", "b", "c"}
	c := newOpsCluster(t, ctx, ids, nil)
	before := map[string]map[string]float64{}
	for _, id := range ids {
		before[id] = c.metrics(id)
	}
	c.clients(24, ids...)
	l := c.leader(ids...)
	v := c.version(l)
	c.waitVersion(l, v+3)
	var open float64
	for _, id := range ids {
		c.waitVersion(id, v+3)
		m, b := c.metrics(id), before[id]
		for _, k := range []string{"fedrec_rounds_started_total", "fedrec_rounds_committed_total", "fedrec_round_cohort_clients_total",
			"fedrec_round_survivor_clients_total", "fedrec_model_version", "fedrec_raft_commit_index", "fedrec_raft_applied_index",
			"fedrec_client_received_bytes_total", "fedrec_client_sent_bytes_total", `fedrec_round_duration_seconds_count{outcome="committed"}`} {
			if !(m[k] > b[k]) {
				t.Errorf("%s: %s = %v before training, %v after; want it to grow", id, k, b[k], m[k])
			}
		}
		if !(m["fedrec_privacy_epsilon"] > 0) || b["fedrec_privacy_epsilon"] != 0 {
			t.Errorf("%s: privacy ε %v before, %v after", id, b["fedrec_privacy_epsilon"], m["fedrec_privacy_epsilon"])
		}
		if m["fedrec_raft_voters"] != 3 || m["fedrec_raft_term"] < 1 {
			t.Errorf("%s: voters %v, term %v", id, m["fedrec_raft_voters"], m["fedrec_raft_term"])
		}
		open += m[`fedrec_raft_state{state="leader"}`]
		if id == l {
			for _, p := range []string{"gathering", "collecting", "aggregating", "committing"} {
				if m[`fedrec_round_phase_duration_seconds_count{phase="`+p+`"}`] < 1 {
					t.Errorf("leader %s: no %s phase timed", id, p)
				}
			}
			if m["fedrec_client_connections"] < 1 {
				t.Errorf("leader %s: %v client connections", id, m["fedrec_client_connections"])
			}
		}
		t.Logf("%s: rounds committed %v, raft applied %v, bytes in %v out %v, connections %v, ε %.3g", id,
			m["fedrec_rounds_committed_total"], m["fedrec_raft_applied_index"], m["fedrec_client_received_bytes_total"],
			m["fedrec_client_sent_bytes_total"], m["fedrec_client_connections"], m["fedrec_privacy_epsilon"])
	}
	if open != 1 {
		t.Errorf("%v nodes report themselves leader, want 1", open)
	}
}

// TestOpsMembershipDuringTraining adds a fourth node with 'fedrec cluster
// join' and then removes the leader with 'fedrec cluster remove' while
// clients train, and checks that no commit failed and no committed version
// was lost.
func TestOpsMembershipDuringTraining(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	ids := []string{"a", "b", "c"}
	c := newOpsCluster(t, ctx, ids, []string{"d"})
	c.clients(24, ids...)
	l := c.leader(ids...)
	c.waitVersion(l, c.version(l)+2)

	// A fourth node, started with neither --bootstrap nor --join, is added
	// by the operator.
	d := c.start("d")
	var admins []string
	for _, id := range ids {
		admins = append(admins, c.nodes[id].admin)
	}
	flags := []string{"--admin", strings.Join(admins, ","), "--certs", filepath.Join(c.dir, "certs"), "--token", opsToken}
	var out, errb strings.Builder
	if err := run(ctx, append([]string{"cluster", "join", "d", "--raft-addr", d.raft, "--client-addr", d.client}, flags...), &out, &errb); err != nil {
		t.Fatalf("cluster join d: %v\n%s", err, errb.String())
	}
	c.waitReady("d")
	v := c.version(l)
	c.waitVersion("d", v+1)
	if m := c.metrics("d"); m["fedrec_raft_voters"] != 4 {
		t.Errorf("d: %v voters, want 4", m["fedrec_raft_voters"])
	}
	before := c.digests(l)

	// The leader is removed: it hands leadership over, and the command
	// repeats the removal at the new leader.
	l = c.leader(ids...)
	admins = append(admins, d.admin)
	flags[1] = strings.Join(admins, ",")
	out.Reset()
	if err := run(ctx, append([]string{"cluster", "remove", l}, flags...), &out, &errb); err != nil {
		t.Fatalf("cluster remove %s: %v\n%s", l, err, errb.String())
	}
	var live []string
	for _, id := range []string{"a", "b", "c", "d"} {
		if id != l {
			live = append(live, id)
		}
	}
	nl := c.leader(live...)
	if m := c.metrics(nl); m["fedrec_raft_voters"] != 3 {
		t.Errorf("new leader %s: %v voters, want 3", nl, m["fedrec_raft_voters"])
	}
	c.waitVersion(nl, c.version(nl)+2)
	t.Logf("added d, removed leader %s; %s leads", l, nl)
	c.checkNoFailedCommit(live, before, "leader change")
}

// TestOpsRollingRestart restarts the three nodes one after another with
// SIGTERM while clients train: every node exits cleanly (the leader
// handing leadership over first), comes back on its data directory, and
// no commit fails.
func TestOpsRollingRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	ids := []string{"a", "b", "c"}
	c := newOpsCluster(t, ctx, ids, nil)
	c.clients(24, ids...)
	l := c.leader(ids...)
	c.waitVersion(l, c.version(l)+2)
	before := c.digests(l)
	// Followers first, the leader last, as an operator would.
	order := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == l })
	order = append(order, l)
	for _, id := range order {
		wasLeader := id == c.leader(ids...)
		c.stop(id)
		if log := c.nodes[id].cur().read(c.nodes[id].cur().log); wasLeader && !strings.Contains(log, "leadership transferred") {
			t.Errorf("leader %s shut down without handing leadership over", id)
		}
		others := slices.DeleteFunc(slices.Clone(ids), func(x string) bool { return x == id })
		nl := c.leader(others...)
		c.waitVersion(nl, c.version(nl)+1) // training goes on without it
		p := c.start(id).cur()
		c.waitReady(id)
		if !strings.Contains(p.read(p.log), "existing_state=true") {
			t.Errorf("%s did not restart on its data directory", id)
		}
		c.waitVersion(id, c.version(nl))
		t.Logf("restarted %s (leader %v); %s leads at version %d", id, wasLeader, nl, c.version(nl))
	}
	l = c.leader(ids...)
	c.waitVersion(l, c.version(l)+1)
	c.checkNoFailedCommit(ids, before, "leader change")
}
