package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/proctest"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/sim"
)

func TestCertCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"cert", "--dir", dir, "--nodes", "a,b", "--hosts", "10.1.2.3"}, &out, &errb); err != nil {
		t.Fatalf("fedrec cert: %v\n%s", err, errb.String())
	}
	b, err := pki.Load(dir, "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Cert.Leaf.VerifyHostname("10.1.2.3"); err != nil {
		t.Error(err)
	}
}

// proc is a fedrec process whose output goes to files (proctest.Proc).
type proc struct {
	name     string
	cmd      *exec.Cmd
	out, log string
	done     <-chan struct{}
}

func start(t *testing.T, bin, dir, name string, args ...string) *proc {
	t.Helper()
	p := proctest.Start(t, bin, dir, name, args...)
	return &proc{name: p.Name, cmd: p.Cmd, out: p.Out, log: p.Log, done: p.Done}
}

func (p *proc) read(file string) string { return proctest.Read(file) }

// waitFor polls until cond returns true.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	proctest.WaitFor(t, ctx, what, cond)
}

var (
	reAddrs     = regexp.MustCompile(`raft (\S+), clients (\S+)`)
	reCommitted = regexp.MustCompile(`msg="round committed" node=\S+ round=(\d+) model=(\d+)`)
	reStarted   = regexp.MustCompile(`msg="round started" node=\S+ round=(\d+)`)
)

// leading reports whether a node's log says it currently leads.
func leading(log string) bool {
	i := strings.LastIndex(log, "msg=leading")
	return i >= 0 && i > strings.LastIndex(log, `msg="no longer leading"`)
}

func lastMatch(re *regexp.Regexp, s string) []string {
	m := re.FindAllStringSubmatch(s, -1)
	if len(m) == 0 {
		return nil
	}
	return m[len(m)-1]
}

// digestAt asks one node (and only that node) for a model version's digest.
func digestAt(ctx context.Context, addr string, conf *pki.Bundle, version uint64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := wire.Dial(ctx, addr, conf.PeerTLS()) // a node may read models
	if err != nil {
		return nil, err
	}
	defer conn.CloseWithError(0, "")
	var d []byte
	err = wire.Exchange(ctx, conn, &wire.GetModel{Version: wire.Version, Model: version}, wire.Limits{}, func(m wire.Message) (bool, error) {
		if h, ok := m.(*wire.ModelHeader); ok {
			d = h.Digest
		}
		return true, nil
	})
	return d, err
}

// TestClusterEndToEnd builds the binary, starts three coordinators on
// loopback and clients for every user of ml-latest-small, SIGKILLs the
// leader in the middle of a round, and checks that a new leader takes
// over, training resumes, every version committed before the kill is on
// every live node, and the final RMSE is close to the in-process
// simulation's after as many rounds.
func TestClusterEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	dataDir, _ := filepath.Abs(filepath.Join("..", "..", "..", "shared", "data"))
	if _, err := os.Stat(filepath.Join(dataDir, "ml-latest-small", "ratings.csv")); err != nil {
		t.Skipf("ml-latest-small not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	pc := newProcCluster(t, "e2e-token", "a", "b", "c")
	dir := pc.dir
	const target = 13 // model version to reach: 12 committed rounds
	pc.start(ctx, "a", "--bootstrap", "--heartbeat", "500ms",
		"--dataset", "ml-latest-small", "--datasets-dir", dataDir, "--keep-models", "50",
		"--clients-per-round", "100", "--over-select", "0.3", "--min-clients", "50",
		"--checkin-window", "1s", "--round-timeout", "20s")
	for _, id := range []string{"b", "c"} {
		pc.start(ctx, id, "--join", pc.node("a").client, "--heartbeat", "500ms")
	}
	nodes, addrs := map[string]*proc{}, map[string]string{}
	for _, id := range []string{"a", "b", "c"} {
		nodes[id], addrs[id] = pc.node(id).cur(), pc.node(id).client
	}
	bin := pc.bin
	cl := start(t, bin, dir, "client", "client", "--data", "ml-latest-small", "--data-dir", dataDir, "--clients", "0",
		"--coordinators", addrs["a"]+","+addrs["b"]+","+addrs["c"], "--certs", "certs",
		"--until-version", strconv.Itoa(target), "--json")

	// Kill the leader once it has committed three rounds and started the
	// next.
	var leader string
	var killedAfter uint64
	waitFor(t, ctx, "three committed rounds and a fourth started", func() bool {
		for id, p := range nodes {
			log := p.read(p.log)
			if !leading(log) {
				continue
			}
			c, s := lastMatch(reCommitted, log), lastMatch(reStarted, log)
			if c == nil || s == nil {
				return false
			}
			cr, _ := strconv.Atoi(c[1])
			sr, _ := strconv.Atoi(s[1])
			if cr >= 3 && sr > cr {
				leader = id
				v, _ := strconv.ParseUint(c[2], 10, 64)
				killedAfter = v
				return true
			}
		}
		return false
	})
	killTime := time.Now()
	nodes[leader].cmd.Process.Signal(syscall.SIGKILL)
	<-nodes[leader].done
	t.Logf("killed leader %s mid-round; newest committed version %d", leader, killedAfter)
	var live []string
	for id := range nodes {
		if id != leader {
			live = append(live, id)
		}
	}

	// A new leader commits a round.
	var newLeader string
	waitFor(t, ctx, "a new leader to commit a round", func() bool {
		for _, id := range live {
			log := nodes[id].read(nodes[id].log)
			if leading(log) {
				if c := lastMatch(reCommitted, log); c != nil {
					newLeader = id
					return true
				}
			}
		}
		return false
	})
	t.Logf("new leader %s committed a round %.1fs after the kill", newLeader, time.Since(killTime).Seconds())
	if !strings.Contains(nodes[newLeader].read(nodes[newLeader].log), `reason="leader change"`) &&
		!strings.Contains(nodes[newLeader].read(nodes[newLeader].log), "abandoning the previous leader's round") {
		t.Error("the new leader did not abandon the in-flight round")
	}

	// Every version committed before the kill is on every live node.
	bundle, err := pki.Load(filepath.Join(dir, "certs"), "a")
	if err != nil {
		t.Fatal(err)
	}
	for v := uint64(1); v <= killedAfter; v++ {
		var ref []byte
		for _, id := range live {
			d, err := digestAt(ctx, addrs[id], bundle, v)
			if err != nil {
				t.Errorf("node %s, version %d: %v", id, v, err)
				continue
			}
			if ref == nil {
				ref = d
			} else if !bytes.Equal(ref, d) {
				t.Errorf("version %d differs between live nodes", v)
			}
		}
	}

	// The clients stop at the target version and evaluate it.
	select {
	case <-cl.done:
	case <-ctx.Done():
		t.Fatal("clients did not reach the target version")
	}
	var res evalResult
	if err := json.Unmarshal([]byte(cl.read(cl.out)), &res); err != nil {
		t.Fatalf("client output %q: %v", cl.read(cl.out), err)
	}
	rounds := int(res.Version) - 1
	simRes, err := sim.Run(ctx, sim.Config{Objective: sim.Explicit, Data: "ml-latest-small", DataDir: dataDir, Rounds: rounds, EvalEvery: rounds, Baseline: sim.Off}.Defaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	diff := res.RMSE/simRes.Final.RMSE - 1
	t.Logf("cluster: version %d, RMSE %.4f; in-process simulation after %d rounds: RMSE %.4f (%+.2f%%)", res.Version, res.RMSE, rounds, simRes.Final.RMSE, 100*diff)
	if math.Abs(diff) > 0.01 {
		t.Errorf("cluster RMSE %.4f is %+.2f%% off the simulation's %.4f, want within 1%%", res.RMSE, 100*diff, simRes.Final.RMSE)
	}
}
