package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/crowd"
	"github.com/fedrec/fedrec/coordinator/netfault"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// Process-level fault tests: three fedrec coordinators on loopback with
// fixed ports (a killed node restarts on the same addresses and data
// directory), in-process clients over QUIC, the admin API to read each
// node's state.
//
// FEDREC_FAULT_PROC_KILLS sets how many times TestFaultKillLeaderProcess
// SIGKILLs the leader (default 2; the soak is 50).

type faultCluster struct {
	*procCluster
	ids     []string
	proxies map[string]*netfault.Proxy // what clients dial (and leader hints name): 20 ms each way
	items   int
}

const faultToken = "fault-test-token"

// handedOut holds every address freePort returned: the kernel may hand
// out a port again once its probe closes, and two nodes of one cluster
// given the same port fail to start.
var handedOut sync.Map

// freePort returns a loopback address with a port free right now and not
// returned before in this test binary.
func freePort(t *testing.T, network string) string {
	t.Helper()
	for range 100 {
		addr := probePort(t, network)
		if _, dup := handedOut.LoadOrStore(network+" "+addr, true); !dup {
			return addr
		}
	}
	t.Fatalf("no fresh %s port", network)
	return ""
}

// probePort finds a port below Linux's ephemeral range (32768-60999): a
// node stopped and restarted on its port must find it free, and the
// kernel hands ephemeral ports to every socket bound to :0 on the machine
// (the clients' and other packages' tests), which took a restarting
// node's port once.
func probePort(t *testing.T, network string) string {
	t.Helper()
	for range 1000 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if network == "udp" {
			c, err := net.ListenPacket("udp", addr)
			if err != nil {
				continue
			}
			c.Close()
			return addr
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr
	}
	t.Fatalf("no free %s port in 20000-31999", network)
	return ""
}

func newFaultCluster(t *testing.T, ctx context.Context) *faultCluster {
	t.Helper()
	ids := []string{"a", "b", "c"}
	c := &faultCluster{procCluster: newProcCluster(t, faultToken, ids...), ids: ids, proxies: map[string]*netfault.Proxy{}, items: 40}
	for i, id := range c.ids {
		n := c.node(id)
		n.raft, n.client, n.admin = freePort(t, "tcp"), freePort(t, "udp"), freePort(t, "tcp")
		// Clients reach the nodes through a proxy that adds 20 ms each
		// way, so that a round's collecting phase lasts long enough to
		// be caught.
		proxy, err := netfault.New("127.0.0.1:0", n.client, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { proxy.Close() })
		proxy.Set(netfault.Link{Delay: 20 * time.Millisecond})
		c.proxies[id], n.advertise = proxy, proxy.Addr()
	}
	for _, id := range c.ids {
		c.start(ctx, id)
		if id == "a" {
			waitFor(t, ctx, "node a to lead", func() bool {
				st, err := c.status(ctx, "a")
				return err == nil && st.State == "leader" && st.Model != nil
			})
		}
	}
	waitFor(t, ctx, "three ready nodes", func() bool {
		for _, id := range c.ids {
			st, err := c.status(ctx, id)
			if err != nil || !st.Ready || len(st.Nodes) != 3 {
				return false
			}
		}
		return true
	})
	return c
}

// start starts (or restarts) node id on its fixed addresses and data
// directory.
func (c *faultCluster) start(ctx context.Context, id string) {
	c.t.Helper()
	args := []string{"--heartbeat", "300ms", "--log-level", "debug"}
	if id == "a" {
		args = append(args, "--bootstrap", "--items", strconv.Itoa(c.items), "--rank", "4", "--mean", "3.5",
			"--clients-per-round", "6", "--over-select", "0.3", "--min-clients", "3",
			"--checkin-window", "300ms", "--round-timeout", "3s", "--keep-models", "100", "--population", "1000")
	} else {
		args = append(args, "--join", c.node("a").client)
	}
	c.procCluster.start(ctx, id, args...)
}

// serving waits until a (re)started node answers on its admin API; it
// fails the test at once if the process exits instead.
func (c *faultCluster) serving(ctx context.Context, id string) {
	c.t.Helper()
	p := c.node(id).cur()
	waitFor(c.t, ctx, "node "+id+" to serve", func() bool {
		select {
		case <-p.done:
			log := p.read(p.log)
			if i := strings.Index(log, "panic:"); i >= 0 {
				log = log[i:min(len(log), i+200)]
			} else {
				log = log[max(0, len(log)-500):]
			}
			c.t.Fatalf("node %s exited on restart: %s", id, log)
		default:
		}
		_, err := c.status(ctx, id)
		return err == nil
	})
}

// leader waits for a node other than except that says it leads in the
// newest term any node reports, and returns it.
func (c *faultCluster) leader(ctx context.Context, except string) string {
	c.t.Helper()
	var id string
	waitFor(c.t, ctx, "a leader", func() bool {
		id = ""
		var term, leaderTerm uint64
		for _, n := range c.ids {
			if n == except {
				continue
			}
			st, err := c.status(ctx, n)
			if err != nil {
				continue
			}
			term = max(term, st.Term)
			if st.State == "leader" && st.Term >= leaderTerm {
				id, leaderTerm = n, st.Term
			}
		}
		return id != "" && leaderTerm == term
	})
	return id
}

// commits counts the rounds committed by the nodes' logs, except's aside.
func (c *faultCluster) commits(except string) int {
	k := 0
	for _, id := range c.ids {
		if id != except {
			k += len(committedRounds(c.node(id).cur().read(c.node(id).cur().log)))
		}
	}
	return k
}

var rePhase = regexp.MustCompile(`msg="round phase" node=\S+ round=(\d+) phase=(\S+)`)

// lastPhase reads what node n's log gained since the last call and
// returns the newest round phase in it ("" if none).
func (n *procNode) lastPhase() (round, phase string) {
	f, err := os.Open(n.cur().log)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	b := make([]byte, 1<<20)
	k, _ := f.ReadAt(b, n.logOff)
	b = b[:k]
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		return "", ""
	}
	n.logOff += int64(len(b))
	m := rePhase.FindAllSubmatch(b, -1)
	if len(m) == 0 {
		return "", ""
	}
	return string(m[len(m)-1][1]), string(m[len(m)-1][2])
}

// roundPhases are a plaintext round's phases, in order.
var roundPhases = []string{"gathering", "selected", "collecting", "aggregating", "committing", "committed"}

// phaseBefore returns the phase a round is in just before p.
func phaseBefore(p string) string {
	i := slices.Index(roundPhases, p)
	return roundPhases[(i+len(roundPhases)-1)%len(roundPhases)]
}

// freeze stops process pid (SIGSTOP) and waits until every thread of it
// has stopped, so that nothing more reaches its log.
func freeze(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("stop %d: %w", pid, err)
	}
	for range 5000 {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil || len(tasks) == 0 {
			return fmt.Errorf("threads of %d: %v", pid, err)
		}
		stopped := true
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			i := bytes.LastIndexByte(b, ')')
			if err == nil && i >= 0 && i+2 < len(b) && bytes.IndexByte([]byte("RSD"), b[i+2]) >= 0 { // running or sleeping
				stopped = false
				break
			}
		}
		if stopped {
			return nil
		}
		time.Sleep(100 * time.Microsecond)
	}
	return fmt.Errorf("process %d did not stop", pid)
}

// clients runs k participants against the cluster until ctx ends.
func (c *faultCluster) clients(ctx context.Context, k int) *sync.WaitGroup {
	var addrs []string
	for _, id := range c.ids {
		addrs = append(addrs, c.proxies[id].Addr())
	}
	devices, err := pki.Devices(filepath.Join(c.dir, "certs"), time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range k {
		r := rand.New(rand.NewPCG(uint64(i), 9))
		rs := make([]model.Rating, 0, 10)
		for _, it := range r.Perm(c.items)[:10] {
			rs = append(rs, model.Rating{Item: int32(it), Value: float32(1 + r.IntN(5))})
		}
		id := fmt.Sprintf("f%03d", i)
		conf, err := devices.TLS(id)
		if err != nil {
			c.t.Fatal(err)
		}
		d, err := client.NewDialer(rotate(addrs, i), conf)
		if err != nil {
			c.t.Fatal(err)
		}
		p, err := crowd.NewParticipant(crowd.ParticipantConfig{ID: id, Ratings: rs, Dialer: d,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
		if err != nil {
			c.t.Fatal(err)
		}
		wg.Go(func() {
			defer d.Close()
			p.Run(ctx, nil)
		})
	}
	return &wg
}

// ledgerWatch polls every node's ledger size (/v1/status privacy.rounds)
// and fails the test if one ever shrinks within a process's life. (A
// restarted process starts from its last snapshot and replays the log
// once the leader tells it what is committed; the test waits for it to
// get back what its previous life had, with most.)
type ledgerWatch struct {
	mu      sync.Mutex
	most    map[string]int // by process (id-gen): the largest ledger seen
	samples int
	stop    func()
}

func (c *faultCluster) watchLedgers(ctx context.Context) *ledgerWatch {
	w := &ledgerWatch{most: map[string]int{}}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			for _, id := range c.ids {
				c.mu.Lock()
				key := fmt.Sprintf("%s-%d", id, len(c.nodes[id].procs))
				c.mu.Unlock()
				st, err := c.status(ctx, id)
				if err != nil {
					continue
				}
				w.mu.Lock()
				if prev, ok := w.most[key]; ok && st.Privacy.Rounds < prev {
					c.t.Errorf("node %s: ledger went from %d entries to %d", key, prev, st.Privacy.Rounds)
				}
				w.most[key] = max(w.most[key], st.Privacy.Rounds)
				w.samples++
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	w.stop = func() { cancel(); wg.Wait() }
	c.t.Cleanup(w.stop) // no Errorf after the test ends
	return w
}

// seen returns the largest ledger seen on process key (id-gen).
func (w *ledgerWatch) seen(key string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.most[key]
}

// converged waits until every node reports the same replicated state (no
// open round, same round history, newest model and ledger) and returns
// the number of rounds.
func (c *faultCluster) converged(ctx context.Context) int {
	c.t.Helper()
	var n int
	waitFor(c.t, ctx, "the nodes to converge", func() bool {
		var ref []byte
		for _, id := range c.ids {
			st, err := c.status(ctx, id)
			if err != nil || st.Round != nil || st.Model == nil {
				return false
			}
			rs, err := c.rounds(ctx, id)
			if err != nil {
				return false
			}
			b, _ := json.Marshal(struct {
				Model   *wire.StatusModel
				Last    uint64
				Ledger  int
				Epsilon *float64
				Rounds  []wire.RoundJSON
			}{st.Model, st.LastRound, st.Privacy.Rounds, st.Privacy.Epsilon, rs})
			if ref == nil {
				ref, n = b, len(rs)
			} else if !bytes.Equal(ref, b) {
				return false
			}
		}
		return true
	})
	return n
}

// committedRounds returns the rounds a node's log says it committed.
func committedRounds(log string) []string {
	var out []string
	for _, m := range reCommitted.FindAllStringSubmatch(log, -1) {
		out = append(out, m[1])
	}
	return out
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	k, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return k
}

// The leader is SIGKILLed while its round is in each phase in turn, then
// restarts on its data directory. The phase is read from its debug log
// with the process frozen (SIGSTOP), so it is exactly where the kill
// lands; phases of microseconds (selected, committed) are seldom caught
// (TestFaultKillLeaderEachPhase in coordinator holds each one), and after
// 10 s the kill lands wherever the round is. Every round any leader
// logged as committed is committed on every node afterwards, no node's
// privacy ledger ever shrinks and a restarted node gets back all it had,
// and once the clients stop every node holds the same round history,
// newest model and ledger.
func TestFaultKillLeaderProcess(t *testing.T) {
	kills := envInt(t, "FEDREC_FAULT_PROC_KILLS", 2)
	ctx, cancel := context.WithTimeout(t.Context(), time.Duration(kills)*time.Minute+time.Minute)
	defer cancel()
	c := newFaultCluster(t, ctx)
	ledgers := c.watchLedgers(ctx)
	cctx, stopClients := context.WithCancel(ctx)
	wg := c.clients(cctx, 12)
	defer func() { stopClients(); wg.Wait() }()

	// A ledger to lose before the first kill.
	waitFor(t, ctx, "two commits", func() bool { return c.commits("") >= 2 })
	phases := []string{"collecting", "gathering", "committing", "selected", "aggregating", "committed"}
	hits := map[string]int{}
	var failovers, resumes []time.Duration
	committed := map[string]bool{} // round ids any leader logged as committed
	for k := range kills {
		want := phases[k%len(phases)]
		var id, got string
		var n *procNode
		deadline := time.Now().Add(10 * time.Second) // a phase of microseconds (selected, committed) is rarely caught
		var checked time.Time
		for {
			if time.Since(checked) > 500*time.Millisecond { // leadership may move meanwhile
				if l := c.leader(ctx, ""); l != id {
					id, n = l, c.nodes[l]
					n.lastPhase() // skip what happened before
					got = ""
				}
				checked = time.Now()
			}
			if _, p := n.lastPhase(); p != "" {
				got = p
			}
			late := time.Now().After(deadline)
			if got != want && got != phaseBefore(want) && !late {
				time.Sleep(2 * time.Millisecond)
				continue
			}
			// Freeze the leader to see where its round is: the log's last
			// phase line is then where the kill lands.
			if err := freeze(n.cur().cmd.Process.Pid); err != nil {
				t.Fatal(err)
			}
			if _, p := n.lastPhase(); p != "" {
				got = p
			}
			if got == want || late {
				break
			}
			n.cur().cmd.Process.Signal(syscall.SIGCONT)
			time.Sleep(time.Millisecond)
		}
		n.cur().cmd.Process.Signal(syscall.SIGKILL)
		killed := time.Now()
		<-n.cur().done
		hits[got]++
		for _, r := range committedRounds(n.cur().read(n.cur().log)) {
			committed[r] = true
		}
		before := c.commits(id)
		newLeader := c.leader(ctx, id)
		failovers = append(failovers, time.Since(killed))
		had := ledgers.seen(fmt.Sprintf("%s-%d", id, len(n.procs))) // the watch's key for the killed process
		c.start(ctx, id)
		c.serving(ctx, id)
		waitFor(t, ctx, "a commit after the kill", func() bool { return c.commits(id) > before })
		waitFor(t, ctx, fmt.Sprintf("node %s to get back its %d ledger entries", id, had), func() bool {
			st, err := c.status(ctx, id)
			return err == nil && st.Privacy.Rounds >= had
		})
		resumes = append(resumes, time.Since(killed))
		t.Logf("kill %d: leader %s killed in %s (wanted %s); new leader %s after %v, next commit after %v",
			k+1, id, got, want, newLeader, failovers[k].Round(time.Millisecond), resumes[k].Round(time.Millisecond))
	}
	stopClients()
	wg.Wait()
	for _, id := range c.ids {
		for _, r := range committedRounds(c.node(id).cur().read(c.node(id).cur().log)) {
			committed[r] = true
		}
	}
	rounds := c.converged(ctx)
	ledgers.stop()
	rs, err := c.rounds(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	outcome := map[string]string{}
	for _, r := range rs {
		outcome[strconv.FormatUint(r.Round, 10)] = r.Outcome
	}
	for r := range committed {
		if outcome[r] != "committed" {
			t.Errorf("round %s was committed, now %q", r, outcome[r])
		}
	}
	slices.Sort(failovers)
	slices.Sort(resumes)
	t.Logf("%d SIGKILLs of the leader, by phase %v: %d committed rounds, none lost; %d ledger samples, none shrank; %d rounds identical on 3 nodes; new leader after median %v (max %v), next commit after median %v (max %v)",
		kills, hits, len(committed), ledgers.samples, rounds, failovers[len(failovers)/2].Round(time.Millisecond), failovers[len(failovers)-1].Round(time.Millisecond),
		resumes[len(resumes)/2].Round(time.Millisecond), resumes[len(resumes)-1].Round(time.Millisecond))
}

// The leader is paused (SIGSTOP) mid-round: the others elect a leader and
// commit; resumed (SIGCONT), the old leader learns the new term, never
// commits in its old one, and catches up. No term has two leaders.
func TestFaultPausedLeaderProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := newFaultCluster(t, ctx)
	ledgers := c.watchLedgers(ctx)
	cctx, stopClients := context.WithCancel(ctx)
	wg := c.clients(cctx, 12)
	defer func() { stopClients(); wg.Wait() }()

	// Who leads each term, as every node reports it.
	var termMu sync.Mutex
	leaders := map[uint64]map[string]bool{}
	wctx, stopTerms := context.WithCancel(ctx)
	var twg sync.WaitGroup
	twg.Go(func() {
		for wctx.Err() == nil {
			for _, id := range c.ids {
				if st, err := c.status(wctx, id); err == nil && st.State == "leader" {
					termMu.Lock()
					if leaders[st.Term] == nil {
						leaders[st.Term] = map[string]bool{}
					}
					leaders[st.Term][id] = true
					termMu.Unlock()
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Cleanup(func() { stopTerms(); twg.Wait() })

	id := c.leader(ctx, "")
	n := c.nodes[id]
	waitFor(t, ctx, "a round collecting", func() bool { _, p := n.lastPhase(); return p == "collecting" })
	st, err := c.status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	n.cur().cmd.Process.Signal(syscall.SIGSTOP)
	paused := time.Now()
	before := c.commits(id)
	newLeader := c.leader(ctx, id)
	failover := time.Since(paused)
	waitFor(t, ctx, "a commit by the new leader", func() bool { return c.commits(id) > before })
	resumed := time.Since(paused)
	n.cur().cmd.Process.Signal(syscall.SIGCONT)
	waitFor(t, ctx, "the resumed node to follow", func() bool {
		s, err := c.status(ctx, id)
		return err == nil && s.State == "follower" && s.Term > st.Term
	})
	stopClients()
	wg.Wait()
	rounds := c.converged(ctx)
	stopTerms()
	twg.Wait()
	ledgers.stop()
	for term, ids := range leaders {
		if len(ids) > 1 {
			t.Errorf("term %d had leaders %v", term, ids)
		}
	}
	if !bytes.Contains([]byte(n.cur().read(n.cur().log)), []byte("no longer leading")) {
		t.Error("the resumed leader did not step down")
	}
	t.Logf("leader %s paused in term %d: %s led after %v, committed after %v; resumed, %s follows; %d terms seen, one leader each; %d rounds identical on 3 nodes",
		id, st.Term, newLeader, failover.Round(time.Millisecond), resumed.Round(time.Millisecond), id, len(leaders), rounds)
}
