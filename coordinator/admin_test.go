package coordinator

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

const (
	testToken     = "s3cret-operator-token"
	testReadToken = "read-only-monitoring-token"
)

// adminCluster is a testCluster whose nodes serve the admin API on
// 127.0.0.1, with an HTTPS client that trusts the cluster CA.
type adminCluster struct {
	*testCluster
	client *http.Client
}

func newAdminCluster(t *testing.T, size int, tr Training) *adminCluster {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClusterWith(t, size, tr, func(i int, cfg *Config) {
		b, err := ca.NodeBundle(cfg.ID)
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLS, cfg.AdminAddr, cfg.AdminToken, cfg.ReadToken = b, "127.0.0.1:0", testToken, testReadToken
	})
	tr2 := &http.Transport{TLSClientConfig: pki.ClientTLS(ca.Pool())}
	t.Cleanup(tr2.CloseIdleConnections)
	return &adminCluster{testCluster: c, client: &http.Client{Transport: tr2, Timeout: 10 * time.Second}}
}

// get fetches path from n's admin API with token (none if empty) and
// returns the status code and body.
func (c *adminCluster) get(n *Node, path, token string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), "GET", "https://"+n.AdminAddr()+path, nil)
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

func (c *adminCluster) getJSON(n *Node, path string, v any) {
	c.t.Helper()
	code, b := c.get(n, path, testToken)
	if code != http.StatusOK {
		c.t.Fatalf("GET %s = %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		c.t.Fatalf("GET %s: %v in %s", path, err, b)
	}
}

// waitReady polls /readyz until it answers 200.
func (c *adminCluster) waitReady(ctx context.Context, n *Node) {
	c.t.Helper()
	for {
		code, body := c.get(n, "/readyz", "")
		if code == http.StatusOK {
			return
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("node %s not ready: %d %s", n.ID(), code, body)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runRounds trains with a crowd until every node holds version v.
func (c *testCluster) runRounds(ctx context.Context, v uint64) {
	c.t.Helper()
	crowdCtx, stop := context.WithCancel(ctx)
	wg := c.crowd(crowdCtx, 6)
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= v })
	stop()
	wg.Wait()
	var last uint64
	c.leader(ctx).View(func(s *State) { last = s.LastRound() })
	c.waitAll(ctx, func(s *State) bool { return s.LastRound() >= last && s.Open() == nil })
}

func TestAdminHealthReadinessAuth(t *testing.T) {
	c := newAdminCluster(t, 3, testTraining())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		if code, body := c.get(n, "/healthz", ""); code != http.StatusOK || string(body) != "ok\n" {
			t.Errorf("%s /healthz = %d %q, want 200 ok", n.ID(), code, body)
		}
		c.waitReady(ctx, n)
		for _, path := range []string{"/metrics", "/v1/status", "/v1/rounds", "/v1/model"} {
			for _, tok := range []string{"", "wrong", testToken + "x", testToken[:len(testToken)-1]} {
				if code, _ := c.get(n, path, tok); code != http.StatusUnauthorized {
					t.Errorf("%s %s with token %q = %d, want 401", n.ID(), path, tok, code)
				}
			}
			if code, body := c.get(n, path, testToken); code != http.StatusOK {
				t.Errorf("%s %s with the token = %d %s, want 200", n.ID(), path, code, body)
			}
		}
	}
	// A non-Bearer scheme carrying the token is refused too.
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+c.nodes[0].AdminAddr()+"/v1/status", nil)
	req.Header.Set("Authorization", "Basic "+testToken)
	if res, err := c.client.Do(req); err != nil {
		t.Fatal(err)
	} else {
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("Basic auth = %d %v, want 401 with WWW-Authenticate", res.StatusCode, res.Header)
		}
	}
}

// A node that is not a member of any cluster is alive but not ready.
func TestAdminNotReadyOutsideCluster(t *testing.T) {
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.NodeBundle("lone")
	if err != nil {
		t.Fatal(err)
	}
	_, tt := raft.NewInmemTransport("raft-lone")
	n, err := New(Config{ID: "lone", InMemory: true, Transport: tt, TLS: b, AdminAddr: "127.0.0.1:0", AdminToken: testToken, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	tr := &http.Transport{TLSClientConfig: pki.ClientTLS(ca.Pool())}
	t.Cleanup(tr.CloseIdleConnections)
	c := &adminCluster{testCluster: &testCluster{t: t}, client: &http.Client{Transport: tr}}
	if code, _ := c.get(n, "/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	if code, body := c.get(n, "/readyz", ""); code != http.StatusServiceUnavailable || !strings.Contains(string(body), "not a member") {
		t.Errorf("/readyz = %d %q, want 503 not a member", code, body)
	}
	var st wire.Status
	c.getJSON(n, "/v1/status", &st)
	if st.Ready || st.Leader != nil || st.Model != nil || st.LastContact != -1 {
		t.Errorf("status = %+v, want not ready, no leader, no model, never contacted", st)
	}
}

func TestAdminConfigValidation(t *testing.T) {
	_, tt := raft.NewInmemTransport("raft-x")
	defer tt.Close()
	_, err := New(Config{ID: "x", InMemory: true, Transport: tt, AdminAddr: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "Config.AdminAddr") {
		t.Errorf("New without TLS and token = %v, want an error naming Config.AdminAddr", err)
	}
}

// scrape parses a text exposition into samples keyed by the text before
// the value ("name" or `name{l="v"}`).
func scrape(t *testing.T, body []byte) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestAdminMetrics(t *testing.T) {
	tr := testTraining()
	tr.NoiseMultiplier, tr.Clip = 1, 1
	c := newAdminCluster(t, 3, tr)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l := c.leader(ctx)

	if problems, err := testutil.CollectAndLint(l.metrics); err != nil || len(problems) > 0 {
		t.Errorf("CollectAndLint = %v, %v", problems, err)
	}
	if problems, err := testutil.GatherAndLint(l.registry()); err != nil || len(problems) > 0 {
		t.Errorf("GatherAndLint(registry) = %v, %v", problems, err)
	}

	_, body := c.get(l, "/metrics", testToken)
	before := scrape(t, body)
	c.runRounds(ctx, 4)
	l = c.leader(ctx)
	// expect is what a node's metrics must say when its state is st.
	expect := func(st *State) (map[string]float64, float64) {
		var committed, abandoned, cohort, survivors float64
		for _, r := range st.Rounds() {
			if r.Outcome == Committed {
				committed++
			} else {
				abandoned++
			}
			cohort += float64(r.Cohort)
			survivors += float64(r.Survivors)
		}
		var entries []privacy.Entry
		for _, e := range st.Ledger() {
			entries = append(entries, privacy.Entry{Mechanism: privacy.PoissonGaussian, SamplingRate: e.SamplingRate, NoiseMultiplier: e.NoiseMultiplier, Steps: e.Steps})
		}
		acct, err := privacy.Rebuild(privacy.Config{}, entries)
		if err != nil {
			t.Fatal(err)
		}
		wantEps, _, err := acct.Epsilon(DefaultDelta)
		if err != nil {
			t.Fatal(err)
		}
		open := 0.0
		if st.Open() != nil {
			open = 1
		}
		return map[string]float64{
			"fedrec_rounds_started_total":          float64(st.LastRound()),
			"fedrec_rounds_committed_total":        committed,
			"fedrec_rounds_abandoned_total":        abandoned,
			"fedrec_round_cohort_clients_total":    cohort,
			"fedrec_round_survivor_clients_total":  survivors,
			"fedrec_model_version":                 float64(st.Current().Version),
			"fedrec_round_open":                    open,
			"fedrec_raft_voters":                   3,
			"fedrec_privacy_delta":                 DefaultDelta,
			`fedrec_raft_state{state="candidate"}`: 0,
		}, wantEps
	}

	for _, n := range c.nodes {
		// The leader may open another round while we look: scrape until
		// the node's state is the same before and after the scrape.
		var m map[string]float64
		var st *State
		for attempt := 0; ; attempt++ {
			var pre *State
			n.View(func(s *State) { pre = s.Clone() })
			code, body := c.get(n, "/metrics", testToken)
			if code != http.StatusOK {
				t.Fatalf("%s /metrics = %d", n.ID(), code)
			}
			m = scrape(t, body)
			n.View(func(s *State) { st = s.Clone() })
			if pre.LastRound() == st.LastRound() && len(pre.Rounds()) == len(st.Rounds()) || attempt == 50 {
				break
			}
		}
		want, wantEps := expect(st)
		for k, v := range want {
			if got, ok := m[k]; !ok || got != v {
				t.Errorf("%s: %s = %v (present %v), want %v", n.ID(), k, got, ok, v)
			}
		}
		if got := m["fedrec_privacy_epsilon"]; math.Abs(got-wantEps) > 1e-9*wantEps || !(got > 0) {
			t.Errorf("%s: fedrec_privacy_epsilon = %v, want %v", n.ID(), got, wantEps)
		}
		if m["fedrec_raft_term"] < 1 || m["fedrec_raft_applied_index"] < 1 || m["fedrec_raft_commit_index"] < 1 {
			t.Errorf("%s: raft figures %v", n.ID(), m)
		}
		isLeader := 0.0
		if n == l {
			isLeader = 1
		}
		if got := m[`fedrec_raft_state{state="leader"}`]; got != isLeader {
			t.Errorf("%s: raft_state{leader} = %v, want %v", n.ID(), got, isLeader)
		}
		if n == l && m["fedrec_raft_last_contact_seconds"] != 0 {
			t.Errorf("leader's last contact = %v, want 0", m["fedrec_raft_last_contact_seconds"])
		}
		if n != l && !(m["fedrec_raft_last_contact_seconds"] < 5) {
			t.Errorf("%s: last contact = %v, want recent", n.ID(), m["fedrec_raft_last_contact_seconds"])
		}
		if got := m[`fedrec_round_duration_seconds_count{outcome="committed"}`]; got < 1 {
			t.Errorf("%s: committed round durations observed = %v, want >= 1", n.ID(), got)
		}
	}
	// The leader timed its rounds' phases, and a snapshot is measured.
	if err := l.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// The leader's figures moved.
	_, body = c.get(l, "/metrics", testToken)
	after := scrape(t, body)
	for _, p := range []string{"gathering", "selected", "collecting", "aggregating", "committing"} {
		if got := after[`fedrec_round_phase_duration_seconds_count{phase="`+p+`"}`]; got < 1 {
			t.Errorf("leader: phase %s observed %v times, want >= 1", p, got)
		}
	}
	if after["fedrec_snapshot_size_bytes_count"] < 1 || !(after["fedrec_snapshot_last_size_bytes"] > 100) || after["fedrec_snapshot_persist_failures_total"] != 0 {
		t.Errorf("snapshot figures: count %v, last size %v, failures %v; want a snapshot of more than 100 bytes, no failures",
			after["fedrec_snapshot_size_bytes_count"], after["fedrec_snapshot_last_size_bytes"], after["fedrec_snapshot_persist_failures_total"])
	}
	for _, k := range []string{"fedrec_client_connections", "fedrec_client_received_bytes_total", "fedrec_client_sent_bytes_total", "fedrec_round_waiting_clients"} {
		if _, ok := after[k]; !ok {
			t.Errorf("metrics lack %s", k)
		}
	}
	for _, k := range []string{"fedrec_rounds_started_total", "fedrec_rounds_committed_total", "fedrec_model_version", "fedrec_raft_applied_index", "fedrec_round_survivor_clients_total"} {
		if !(after[k] > before[k]) {
			t.Errorf("%s: %v before the rounds, %v after; want it to grow", k, before[k], after[k])
		}
	}
	if !(before["fedrec_privacy_epsilon"] == 0 && after["fedrec_privacy_epsilon"] > 0) {
		t.Errorf("fedrec_privacy_epsilon: %v before, %v after", before["fedrec_privacy_epsilon"], after["fedrec_privacy_epsilon"])
	}
}

func TestAdminStatusRoundsModel(t *testing.T) {
	tr := testTraining()
	tr.NoiseMultiplier, tr.Clip = 1, 1
	c := newAdminCluster(t, 3, tr)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c.runRounds(ctx, 4)
	l := c.leader(ctx)
	var cur *Version
	var history []RoundRecord
	l.View(func(s *State) { cur, history = s.Current(), slices.Clone(s.Rounds()) })

	for _, n := range c.nodes {
		c.waitReady(ctx, n)
		// The shape, as a script sees it.
		var raw map[string]any
		c.getJSON(n, "/v1/status", &raw)
		for _, k := range []string{"node", "raft_state", "term", "commit_index", "applied_index", "last_contact_seconds", "ready", "leader", "nodes", "model", "open_round", "last_round", "privacy"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("%s: status lacks %q: %v", n.ID(), k, raw)
			}
		}
		var st wire.Status
		c.getJSON(n, "/v1/status", &st)
		wantState := "follower"
		if n == l {
			wantState = "leader"
		}
		switch {
		case st.Node != n.ID() || st.State != wantState || !st.Ready:
			t.Errorf("%s: status = %+v, want node %s, %s, ready", n.ID(), st, n.ID(), wantState)
		case st.Leader == nil || st.Leader.ID != l.ID() || st.Leader.ClientAddr != l.ClientAddr() || st.Leader.RaftAddr != l.RaftAddr():
			t.Errorf("%s: leader = %+v, want %s at %s, %s", n.ID(), st.Leader, l.ID(), l.RaftAddr(), l.ClientAddr())
		case len(st.Nodes) != 3:
			t.Errorf("%s: nodes = %+v, want 3", n.ID(), st.Nodes)
		case st.Model == nil || st.Model.Version != cur.Version || st.Model.Digest != hex.EncodeToString(cur.Digest[:]):
			t.Errorf("%s: model = %+v, want version %d digest %x", n.ID(), st.Model, cur.Version, cur.Digest)
		case st.Privacy.Epsilon == nil || !(*st.Privacy.Epsilon > 0) || st.Privacy.Delta != DefaultDelta || st.Privacy.Rounds == 0:
			t.Errorf("%s: privacy = %+v", n.ID(), st.Privacy)
		}
		for _, sn := range st.Nodes {
			if sn.Suffrage != "voter" || sn.ClientAddr == "" || sn.RaftAddr == "" {
				t.Errorf("%s: node %+v", n.ID(), sn)
			}
		}
	}

	// Rounds, two at a time, add up to the history.
	var got []uint64
	after := ""
	for pages := 0; ; pages++ {
		if pages > len(history) {
			t.Fatal("paging does not end")
		}
		var p wire.RoundsPage
		c.getJSON(l, "/v1/rounds?limit=2"+after, &p)
		if len(p.Rounds) > 2 {
			t.Fatalf("page of %d rounds, limit 2", len(p.Rounds))
		}
		for _, r := range p.Rounds {
			got = append(got, r.Round)
		}
		if p.Next == nil {
			break
		}
		after = fmt.Sprintf("&after=%d", *p.Next)
	}
	if len(got) != len(history) {
		t.Fatalf("paged rounds %v, history has %d", got, len(history))
	}
	for i, r := range history {
		if got[i] != r.Round {
			t.Errorf("paged rounds %v, want %+v", got, history)
			break
		}
	}
	var p wire.RoundsPage
	c.getJSON(l, fmt.Sprintf("/v1/rounds?after=%d", history[len(history)-1].Round), &p)
	if len(p.Rounds) != 0 || p.Next != nil {
		t.Errorf("rounds after the last = %+v, want none", p)
	}
	c.getJSON(l, "/v1/rounds", &p)
	if len(p.Rounds) != len(history) || p.Rounds[0].Outcome == "" {
		t.Errorf("rounds = %+v", p)
	}
	for _, q := range []string{"?limit=0", "?limit=1001", "?limit=x", "?after=-1"} {
		if code, _ := c.get(l, "/v1/rounds"+q, testToken); code != http.StatusBadRequest {
			t.Errorf("/v1/rounds%s = %d, want 400", q, code)
		}
	}

	// The model: manifest, and raw parameters that hash to its digest.
	var man wire.ModelManifest
	c.getJSON(l, "/v1/model", &man)
	if man.Version != cur.Version || man.Digest != hex.EncodeToString(cur.Digest[:]) || man.Params != len(cur.Model.Params) || man.Items != tr.Items || man.Rank != tr.Rank {
		t.Errorf("manifest = %+v, want version %d", man, cur.Version)
	}
	code, body := c.get(l, "/v1/model?format=raw", testToken)
	if code != http.StatusOK || len(body) != 8*len(cur.Model.Params) {
		t.Fatalf("raw model = %d, %d bytes, want %d", code, len(body), 8*len(cur.Model.Params))
	}
	h := sha256.New()
	var hdr [12]byte
	binary.BigEndian.PutUint32(hdr[0:], uint32(man.KindCode))
	binary.BigEndian.PutUint32(hdr[4:], uint32(man.Items))
	binary.BigEndian.PutUint32(hdr[8:], uint32(man.Rank))
	h.Write(hdr[:])
	h.Write(body)
	if d := hex.EncodeToString(h.Sum(nil)); d != man.Digest {
		t.Errorf("sha256(header ‖ raw) = %s, want %s", d, man.Digest)
	}
	for i, x := range cur.Model.Params {
		if y := math.Float64frombits(binary.LittleEndian.Uint64(body[8*i:])); y != x {
			t.Fatalf("raw param %d = %v, want %v", i, y, x)
		}
	}
	if code, _ := c.get(l, "/v1/model?version=999", testToken); code != http.StatusNotFound {
		t.Errorf("/v1/model?version=999 = %d, want 404", code)
	}
	c.getJSON(l, fmt.Sprintf("/v1/model?version=%d", cur.Version-1), &man)
	if man.Version != cur.Version-1 {
		t.Errorf("?version=%d gave version %d", cur.Version-1, man.Version)
	}
}

// The profiles answer the operator token only, refuse a duration out of
// bounds, and are what go tool pprof reads (gzipped protocol buffers).
func TestAdminProfiles(t *testing.T) {
	c := newAdminCluster(t, 1, testTraining())
	n := c.nodes[0]
	for _, tt := range []struct {
		path, token string
		code        int
	}{
		{"/debug/pprof/profile?seconds=1", "", http.StatusUnauthorized},
		{"/debug/pprof/profile?seconds=1", testReadToken, http.StatusForbidden},
		{"/debug/pprof/heap", testReadToken, http.StatusForbidden},
		{"/debug/pprof/profile?seconds=0", testToken, http.StatusBadRequest},
		{"/debug/pprof/profile?seconds=301", testToken, http.StatusBadRequest},
		{"/debug/pprof/profile?seconds=x", testToken, http.StatusBadRequest},
		{"/debug/pprof/profile?seconds=1", testToken, http.StatusOK},
		{"/debug/pprof/heap", testToken, http.StatusOK},
	} {
		code, body := c.get(n, tt.path, tt.token)
		if code != tt.code {
			t.Errorf("GET %s with token %q = %d %.80q, want %d", tt.path, tt.token, code, body, tt.code)
			continue
		}
		// A profile is gzipped (magic 1f 8b).
		if code == http.StatusOK && (len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b) {
			t.Errorf("GET %s: %d bytes, not a gzipped profile", tt.path, len(body))
		}
	}
}
