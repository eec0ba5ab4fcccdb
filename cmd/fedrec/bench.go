package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/crowd"
	"github.com/fedrec/fedrec/coordinator/adminapi"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// runBench measures a real cluster on loopback: three coordinator
// processes of this binary and in-process clients with synthetic data.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clients := fs.String("clients", "100,500", "comma-separated clients per round to measure")
	items := fs.Int("items", 3706, "items of the model (3706 = ml-1m)")
	rank := fs.Int("rank", 32, "rank of the model")
	rounds := fs.Int("rounds", 6, "committed rounds to time per setting")
	kill := fs.Bool("kill", true, "then SIGKILL the leader mid-round and time the next commit")
	window := fs.Duration("checkin-window", 3*time.Second, "the coordinators' check-in window")
	phase := fs.Duration("secagg-phase", 0, "with --secagg, the coordinators' deadline of each secure-aggregation phase after the first (0: theirs, 10s); the devices of a large cohort on this machine's cores may need longer to mask")
	secure := fs.Bool("secagg", false, "run the rounds as secure aggregation (clip 1), to compare with plaintext rounds")
	signed := fs.Bool("signed", false, "with --secagg, run each setting twice, unsigned and signed secure rounds (--secagg-signed), and compare their costs")
	roster := fs.Bool("roster", true, "with --signed, list the devices in a device roster (fedrec cert roster) and admit only them to signed rounds (--secagg-roster), so that they check their peers with a few hashes instead of certificate chains; false: chains")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (every device, none of the nodes) to `file`")
	nodeProfile := fs.String("node-cpuprofile", "", "write CPU profiles of the nodes over the timed rounds, in 5 s pieces from their admin API, to `dir` (read them together: go tool pprof -top DIR/*-a-*.prof)")
	bits := fs.Int("upload-bits", 8, "devices upload 8-bit updates (clip 1; with --secagg, masked in a field just wide enough) or 64-bit ones (no clip)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *phase != 0 && !*secure:
		return fmt.Errorf("bench: --secagg-phase applies only with --secagg")
	case *phase < 0:
		return fmt.Errorf("bench: --secagg-phase %v, want > 0", *phase)
	case *signed && !*secure:
		return fmt.Errorf("bench: --signed compares signed with unsigned secure rounds: it needs --secagg")
	case flagsSet(fs)["roster"] && !*signed:
		return fmt.Errorf("bench: --roster applies only with --signed")
	case *bits != 8 && *bits != 64:
		return fmt.Errorf("bench: --upload-bits %d, want 8 or 64", *bits)
	case *secure && *bits != 8:
		return errors.New("bench: --upload-bits 64 does not apply with --secagg (secure rounds of float64 updates use a 32-bit field)")
	}
	if *nodeProfile != "" {
		if err := os.MkdirAll(*nodeProfile, 0o755); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var ns []int
	for _, s := range splitList(*clients) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("bench: --clients %q", s)
		}
		ns = append(ns, n)
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	dim := model.Dim(*items, *rank)
	down, current, up := frameBytes(dim, *bits)
	per := func(b int) float64 { return float64(b) / float64(dim) }
	fmt.Fprintf(stdout, "model: %d items, rank %d, %d params\n", *items, *rank, dim)
	fmt.Fprintf(stdout, "bytes per client per round (frames): download %d B, %.3f B/param (float32; %d B for a device that holds the model)", down, per(down), current)
	if !*secure {
		fmt.Fprintf(stdout, "; upload %d B, %.3f B/param (%d-bit)", up, per(up), *bits)
	}
	fmt.Fprintln(stdout)
	upCol := "upload B/param"
	if *secure {
		upCol = "masked B/param" // 8-bit inputs in a field of QuantFieldBits(cohort) bits
	}
	fmt.Fprintf(stdout, "%-12s %-14s %-18s %-12s %-14s %-14s %-14s\n", "clients", "median round", "selection→commit", "rounds/min", "kill→commit", "peak RSS/node", upCol)
	modes := []bool{false}
	if *signed {
		modes = append(modes, true)
	}
	var costs [][]benchResult // per n, per mode
	for _, n := range ns {
		var rs []benchResult
		for _, sig := range modes {
			r, err := benchOne(ctx, bin, n, *items, *rank, *rounds, *kill, *secure, sig, sig && *roster, *bits, *window, *phase, *nodeProfile, stderr)
			if err != nil {
				return fmt.Errorf("bench: %d clients: %w", n, err)
			}
			kc := "-"
			if r.killToCommit > 0 {
				kc = r.killToCommit.Round(10 * time.Millisecond).String()
			}
			name := strconv.Itoa(n)
			if *signed {
				name += map[bool]string{false: " unsigned", true: " signed"}[sig]
			}
			fmt.Fprintf(stdout, "%-12s %-14s %-18s %-12.1f %-14s %-14s %-14.3f\n", name, r.median.Round(time.Millisecond), r.medianSel.Round(time.Millisecond), r.perMin, kc, fmt.Sprintf("%.0f MiB", float64(r.peakRSS)/(1<<20)), r.upPerParam)
			rs = append(rs, r)
		}
		costs = append(costs, rs)
	}
	// Where the devices are: every node serves its own.
	fmt.Fprintf(stdout, "\n%-18s %-26s %-26s %-12s %-14s\n", "clients", "connections per node", "updates per node", "spread", "leader's bytes")
	for i, n := range ns {
		for j, r := range costs[i] {
			name := strconv.Itoa(n)
			if *signed {
				name += map[bool]string{false: " unsigned", true: " signed"}[modes[j]]
			}
			var conns, ups []string
			for k, id := range r.nodeIDs {
				conns = append(conns, fmt.Sprintf("%s %d", id, r.conns[k]))
				ups = append(ups, fmt.Sprintf("%s %.0f", id, r.updates[k]))
			}
			fmt.Fprintf(stdout, "%-18s %-26s %-26s %-12s %-14s\n", name, strings.Join(conns, ", "), strings.Join(ups, ", "), spread(r.updates), fmt.Sprintf("%.0f%%", 100*r.leaderShare))
		}
	}
	// The costs of the timed rounds: the CPU of this process, which runs
	// every device, per device selected; the nodes' CPU per round; the
	// QUIC bytes the nodes sent and received per device selected.
	fmt.Fprintf(stdout, "\ncosts per round (%d params):\n%-18s %-14s %-14s %-14s\n", dim, "clients", "device CPU", "server CPU", "bytes/device")
	for i, n := range ns {
		for j, r := range costs[i] {
			name := strconv.Itoa(n)
			if *signed {
				name += map[bool]string{false: " unsigned", true: " signed"}[modes[j]]
			}
			fmt.Fprintf(stdout, "%-18s %-14s %-14s %-14s\n", name, r.deviceCPU.Round(10*time.Microsecond), r.serverCPU.Round(time.Millisecond), fmt.Sprintf("%.0f KiB", r.deviceBytes/1024))
		}
		if *signed {
			u, s := costs[i][0], costs[i][1]
			fmt.Fprintf(stdout, "%-18s %-14s %-14s %-14s\n", strconv.Itoa(n)+" signed/unsigned",
				fmt.Sprintf("%.2fx", float64(s.deviceCPU)/float64(u.deviceCPU)), fmt.Sprintf("%.2fx", float64(s.serverCPU)/float64(u.serverCPU)), fmt.Sprintf("%.2fx", s.deviceBytes/u.deviceBytes))
		}
	}
	return nil
}

// benchName names a setting's files: clients and plain, secure or signed.
func benchName(n int, secure, signed bool) string {
	mode := "plain"
	switch {
	case signed:
		mode = "signed"
	case secure:
		mode = "secure"
	}
	return fmt.Sprintf("%d-%s", n, mode)
}

// profilePiece is the length of one piece of a node's CPU profile.
const profilePiece = 5 * time.Second

// profileNodes, if dir is not empty, takes CPU profiles of every node
// from its admin API, one profilePiece after the other, into
// dir/NAME-ID-K.prof, until the func it returns is called; that func
// waits for the pieces in flight. A profile's length is fixed when it is
// asked for, and the timed rounds' is not known: pprof reads the pieces
// as one.
func profileNodes(ctx context.Context, admin *http.Client, token string, nodes []*benchNode, dir, name string, stderr io.Writer) (stop func()) {
	if dir == "" {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, nd := range nodes {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-done:
					return
				default:
				}
				path := fmt.Sprintf("%s?seconds=%d", adminapi.PathCPUProfile, int(profilePiece/time.Second))
				b, err := adminGet(ctx, admin, nd.adminAddr, path, token)
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%s-%03d.prof", name, nd.id, k)), b, 0o644)
				}
				if err != nil {
					fmt.Fprintf(stderr, "bench: node %s profile: %v\n", nd.id, err)
					return
				}
			}
		})
	}
	return func() { close(done); wg.Wait() }
}

// spread is how far the smallest and the largest of xs are from their
// mean, in percent ("-" when they are all 0).
func spread(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	total, lo, hi := 0.0, xs[0], xs[0]
	for _, x := range xs {
		total += x
		lo, hi = min(lo, x), max(hi, x)
	}
	if total == 0 {
		return "-"
	}
	mean := total / float64(len(xs))
	return fmt.Sprintf("%+.0f%%/%+.0f%%", 100*(lo/mean-1), 100*(hi/mean-1))
}

// frameBytes is what one client receives per round for a model of dim
// params (header and float32 chunks, or the header alone when it holds
// the model already) and sends (a plaintext upload of bits per param).
func frameBytes(dim, bits int) (down, current, up int) {
	m := &model.Model{Kind: model.Explicit, Items: 1, Rank: dim - 2, Params: make([]float64, dim)}
	h, cs := wire.SplitModel32(m, 1, 1)
	b, _ := wire.Encode(h)
	down = len(b)
	for _, c := range cs {
		b, _ := wire.Encode(c)
		down += len(b)
	}
	h.Current = true
	b, _ = wire.Encode(h)
	current = len(b)
	u := &wire.Upload{Version: wire.Version, Round: 1, ClientID: "user-00000", Ticket: make([]byte, wire.TicketLen), Model: 1, Delta: make(wire.Vec, dim)}
	if bits == 8 {
		u.Delta, u.Quantized, u.Step = nil, make([]byte, dim), 1
	}
	b, _ = wire.Encode(u)
	return down, current, len(b)
}

type benchResult struct {
	median, medianSel, killToCommit time.Duration
	perMin                          float64
	peakRSS                         int64
	upPerParam                      float64 // the devices' update payloads, measured

	// Over the timed rounds: CPU of the devices' process per device
	// selected, CPU of the three nodes per round, and client-protocol
	// bytes (both ways, QUIC packets) per device selected.
	deviceCPU, serverCPU time.Duration
	deviceBytes          float64

	// conns is each node's open client-protocol connections after the
	// timed rounds and updates the device updates each counted during
	// them, in node order; leaderShare the leader's share of the
	// client-protocol bytes of the timed rounds.
	nodeIDs     []string
	conns       []int
	updates     []float64
	leaderShare float64
}

// benchCosts is a reading of the counters the costs are computed from.
type benchCosts struct {
	self, nodes time.Duration
	bytes       float64
	// nodeBytes and conns are each node's client-protocol bytes and open
	// connections, by node id.
	nodeBytes map[string]float64
	conns     map[string]int
	updates   map[string]float64
}

// selfCPU is the CPU time (user and system) of this process so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time (user and system) of process pid so far, from
// /proc on Linux (0 elsewhere), in clock ticks of 10 ms.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which may hold spaces: utime and
	// stime are the 12th and 13th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// benchMetric is a counter on a node's /metrics page.
var (
	benchMetric  = regexp.MustCompile(`(?m)^fedrec_client_(?:received|sent)_bytes_total (\S+)$`)
	benchConns   = regexp.MustCompile(`(?m)^fedrec_client_connections (\S+)$`)
	benchUpdates = regexp.MustCompile(`(?m)^fedrec_device_updates_total (\S+)$`)
)

type benchNode struct {
	id, clientAddr string
	adminAddr      string
	cmd            *exec.Cmd
	log            string
	done           chan struct{}
}

var (
	benchStarted   = regexp.MustCompile(`time=(\S+) level=INFO msg="round started" node=(\S+) round=(\d+)`)
	benchAddrs     = regexp.MustCompile(`raft (\S+), clients (\S+)`)
	benchCommitted = regexp.MustCompile(`time=(\S+) level=INFO msg="round committed" node=(\S+) round=(\d+) model=\d+ survivors=(\d+) cohort=(\d+) duration_ms=(\d+)`)
)

func benchOne(ctx context.Context, bin string, n, items, rank, rounds int, kill, secure, signed, roster bool, bits int, window, phase time.Duration, profDir string, stderr io.Writer) (benchResult, error) {
	var res benchResult
	dir, err := os.MkdirTemp("", "fedrec-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	certs := filepath.Join(dir, "certs")
	if err := pki.WriteDir(certs, []string{"a", "b", "c"}, nil, 24*time.Hour); err != nil {
		return res, err
	}
	// Clients: 1.3 n of them, so that over-selection has someone to pick,
	// each with its device certificate; with roster, listed in a device
	// roster that the nodes load from their certs directory.
	pop := n + n*3/10 + 1
	devices, err := pki.Devices(certs, 24*time.Hour)
	if err != nil {
		return res, err
	}
	confs := make([]*tls.Config, pop)
	leaves := make([]*x509.Certificate, pop)
	for i := range pop {
		if confs[i], err = devices.TLS(fmt.Sprintf("bench-%05d", i)); err != nil {
			return res, err
		}
		leaves[i] = confs[i].Certificates[0].Leaf
	}
	if roster {
		ca, err := pki.LoadDeviceCA(certs)
		if err != nil {
			return res, err
		}
		f, _, err := ca.IssueRoster(leaves, nil, 1, 24*time.Hour)
		if err != nil {
			return res, err
		}
		if err := pki.PutRoster(certs, f); err != nil {
			return res, err
		}
	}
	var nodes []*benchNode
	defer func() {
		for _, nd := range nodes {
			nd.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, nd := range nodes {
			select {
			case <-nd.done:
			case <-time.After(15 * time.Second):
				nd.cmd.Process.Kill()
				<-nd.done
			}
		}
	}()
	// The admin API, for the nodes' byte counters.
	token := rand.Text()
	admin, err := adminClient(filepath.Join(dir, "certs"))
	if err != nil {
		return res, err
	}
	defer admin.CloseIdleConnections()
	startNode := func(id string, extra ...string) (*benchNode, error) {
		nd := &benchNode{id: id, log: filepath.Join(dir, id+".log"), done: make(chan struct{})}
		if nd.adminAddr, err = freeTCPAddr(); err != nil {
			return nil, err
		}
		args := append([]string{"coordinator", "--id", id, "--data-dir", filepath.Join(dir, id), "--certs", filepath.Join(dir, "certs"),
			"--raft-addr", "127.0.0.1:0", "--client-addr", "127.0.0.1:0", "--admin-addr", nd.adminAddr}, extra...)
		nd.cmd = exec.Command(bin, args...)
		nd.cmd.Env = append(os.Environ(), "FEDREC_ADMIN_TOKEN="+token)
		lf, err := os.Create(nd.log)
		if err != nil {
			return nil, err
		}
		out, err := nd.cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		nd.cmd.Stderr = lf
		if err := nd.cmd.Start(); err != nil {
			return nil, err
		}
		nodes = append(nodes, nd)
		go func() { nd.cmd.Wait(); lf.Close(); close(nd.done) }()
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("node %s did not start (see its log): %w", id, err)
		}
		m := benchAddrs.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("node %s: unexpected output %q", id, line)
		}
		nd.clientAddr = m[2]
		go io.Copy(io.Discard, out)
		return nd, nil
	}
	boot := []string{"--bootstrap", "--items", strconv.Itoa(items), "--rank", strconv.Itoa(rank), "--mean", "3.5",
		"--clients-per-round", strconv.Itoa(n), "--over-select", "0.2", "--min-clients", strconv.Itoa(max(1, n/2)),
		"--checkin-window", window.String(), "--round-timeout", "60s"}
	if secure {
		// Secure aggregation needs a clip bound and at least 3 survivors.
		boot = append(boot, "--secagg", "--clip", "1", "--min-clients", strconv.Itoa(max(3, n/2)))
		if phase > 0 {
			boot = append(boot, "--secagg-phase", phase.String())
		}
	} else {
		boot = append(boot, "--upload-bits", strconv.Itoa(bits))
		if bits == 8 {
			boot = append(boot, "--clip", "1")
		}
	}
	if signed {
		boot = append(boot, "--secagg-signed")
	}
	if roster {
		boot = append(boot, "--secagg-roster")
	}
	a, err := startNode("a", boot...)
	if err != nil {
		return res, err
	}
	for _, id := range []string{"b", "c"} {
		if _, err := startNode(id, "--join", a.clientAddr); err != nil {
			return res, err
		}
	}
	var addrs []string
	for _, nd := range nodes {
		addrs = append(addrs, nd.clientAddr)
	}
	var deviceCA *x509.CertPool
	if signed {
		if deviceCA, err = pki.LoadDevicePool(filepath.Join(dir, "certs")); err != nil {
			return res, err
		}
	}

	cctx, stop := context.WithCancel(ctx)
	defer stop()
	// Each device dials over a UDP socket of its own, as phones do, so
	// that the nodes see what a fleet sends. (fedrec client shares one
	// socket among its devices: with 2,600 of them downloading at once its
	// receive buffer overflowed, the handshakes timed out and no round
	// started.)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	var upBytes, uploads atomic.Int64
	// Every device downloads its own model; they share the bound on
	// devices training and uploading at once, as in fedrec client.
	models := crowd.NewDeviceCache()
	for i := range pop {
		r := mrand.New(mrand.NewPCG(uint64(i), 7))
		rs := make([]model.Rating, 0, 20)
		for _, it := range r.Perm(items)[:min(20, items)] {
			rs = append(rs, model.Rating{Item: int32(it), Value: float32(1 + r.IntN(5))})
		}
		id, conf := fmt.Sprintf("bench-%05d", i), confs[i]
		order := rotate(addrs, i)
		d, err := client.NewDialerConfig(client.DialerConfig{Addrs: order, Start: order[0], TLS: conf, DeviceCA: deviceCA})
		if err != nil {
			return res, err
		}
		p, err := crowd.NewParticipant(crowd.ParticipantConfig{ID: id, Ratings: rs, Dialer: d, Models: models})
		if err != nil {
			return res, err
		}
		wg.Go(func() {
			defer d.Close()
			p.Run(cctx, func(r crowd.RoundResult) error {
				upBytes.Add(int64(r.Bytes))
				uploads.Add(1)
				return nil
			})
		})
	}

	// The commits seen in the nodes' logs, in node order. Each poll
	// reads only what the logs gained: this process is the devices', and
	// its CPU is counted as theirs.
	tails := make([]logTail, len(nodes))
	var committed [][]string
	commits := func() [][]string {
		for i, nd := range nodes {
			tails[i].path = nd.log
			committed = append(committed, benchCommitted.FindAllStringSubmatch(string(tails[i].next()), -1)...)
		}
		return committed
	}
	wait := func(what string, cond func() bool) error {
		deadline := time.Now().Add(10 * time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				return fmt.Errorf("timed out waiting for %s", what)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		return nil
	}
	readCosts := func() benchCosts {
		c := benchCosts{self: selfCPU(), nodeBytes: map[string]float64{}, conns: map[string]int{}, updates: map[string]float64{}}
		for _, nd := range nodes {
			c.nodes += procCPU(nd.cmd.Process.Pid)
			b, err := adminGet(ctx, admin, nd.adminAddr, "/metrics", token)
			if err != nil {
				fmt.Fprintf(stderr, "bench: node %s metrics: %v\n", nd.id, err)
				continue
			}
			for _, m := range benchMetric.FindAllStringSubmatch(string(b), -1) {
				v, _ := strconv.ParseFloat(m[1], 64)
				c.bytes += v
				c.nodeBytes[nd.id] += v
			}
			if m := benchConns.FindStringSubmatch(string(b)); m != nil {
				v, _ := strconv.ParseFloat(m[1], 64)
				c.conns[nd.id] = int(v)
			}
			if m := benchUpdates.FindStringSubmatch(string(b)); m != nil {
				c.updates[nd.id], _ = strconv.ParseFloat(m[1], 64)
			}
		}
		return c
	}
	// The first round warms up (connections, first download): time the
	// rounds after it.
	if err := wait("the first round", func() bool { return len(commits()) >= 1 }); err != nil {
		return res, err
	}
	c0 := readCosts()
	stopProf := profileNodes(ctx, admin, token, nodes, profDir, benchName(n, secure, signed), stderr)
	if err := wait(fmt.Sprintf("%d rounds", rounds+1), func() bool { return len(commits()) >= rounds+1 }); err != nil {
		stopProf()
		return res, err
	}
	c1 := readCosts()
	stopProf()
	cs := commits()[1 : rounds+1]
	var selected int
	for _, c := range cs {
		k, _ := strconv.Atoi(c[5])
		selected += k
	}
	// The counters are read when a commit is seen, up to a poll later:
	// the last round's tail and the next round's start are included.
	res.deviceCPU = (c1.self - c0.self) / time.Duration(max(selected, 1))
	res.serverCPU = (c1.nodes - c0.nodes) / time.Duration(rounds)
	res.deviceBytes = (c1.bytes - c0.bytes) / float64(max(selected, 1))
	for _, nd := range nodes {
		res.nodeIDs = append(res.nodeIDs, nd.id)
		res.conns = append(res.conns, c1.conns[nd.id])
		res.updates = append(res.updates, c1.updates[nd.id]-c0.updates[nd.id])
	}
	if lead := cs[len(cs)-1][2]; c1.bytes > c0.bytes {
		res.leaderShare = (c1.nodeBytes[lead] - c0.nodeBytes[lead]) / (c1.bytes - c0.bytes)
	}
	started := map[string]time.Time{}
	for _, nd := range nodes {
		b, _ := os.ReadFile(nd.log)
		for _, m := range benchStarted.FindAllStringSubmatch(string(b), -1) {
			t, _ := time.Parse(time.RFC3339Nano, m[1])
			started[m[3]] = t
		}
	}
	var durs, sel []time.Duration
	for _, c := range cs {
		ms, _ := strconv.Atoi(c[6])
		durs = append(durs, time.Duration(ms)*time.Millisecond)
		if t0, ok := started[c[3]]; ok {
			t1, _ := time.Parse(time.RFC3339Nano, c[1])
			sel = append(sel, t1.Sub(t0))
		}
		fmt.Fprintf(stderr, "bench: %d clients (signed %v): round %s: %s survivors of %s selected, %d ms from gathering to commit\n", n, signed, c[3], c[4], c[5], ms)
	}
	slices.Sort(durs)
	slices.Sort(sel)
	res.median = durs[len(durs)/2]
	if len(sel) > 0 {
		res.medianSel = sel[len(sel)/2]
	}
	t0, _ := time.Parse(time.RFC3339Nano, cs[0][1])
	t1, _ := time.Parse(time.RFC3339Nano, cs[len(cs)-1][1])
	if len(cs) > 1 {
		res.perMin = float64(len(cs)-1) / t1.Sub(t0).Minutes()
	}
	for _, nd := range nodes {
		res.peakRSS = max(res.peakRSS, peakRSS(nd.cmd.Process.Pid))
	}
	res.upPerParam = float64(upBytes.Load()) / float64(max(1, uploads.Load())*int64(model.Dim(items, rank)))
	if !kill {
		return res, nil
	}
	// Kill the leader just after it starts a round.
	leader := cs[len(cs)-1][2]
	var ln *benchNode
	for _, nd := range nodes {
		if nd.id == leader {
			ln = nd
		}
	}
	before := len(commits())
	if err := wait("the next round to start", func() bool {
		b, _ := os.ReadFile(ln.log)
		s := string(b)
		return strings.LastIndex(s, `msg="round started"`) > strings.LastIndex(s, `msg="round committed"`)
	}); err != nil {
		return res, err
	}
	killed := time.Now()
	ln.cmd.Process.Signal(syscall.SIGKILL)
	<-ln.done
	fmt.Fprintf(stderr, "bench: %d clients: killed leader %s\n", n, leader)
	if err := wait("a commit after the kill", func() bool {
		for _, c := range commits()[before:] {
			if c[2] != leader {
				return true
			}
		}
		return false
	}); err != nil {
		return res, err
	}
	for _, c := range commits()[before:] {
		if c[2] != leader {
			t, _ := time.Parse(time.RFC3339Nano, c[1])
			res.killToCommit = t.Sub(killed)
			break
		}
	}
	return res, nil
}

// peakRSS reads a process's peak resident set size (VmHWM) on Linux.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// freeTCPAddr returns a loopback address with a port free a moment ago.
func freeTCPAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// logTail follows a log file: next returns the complete lines written
// since the previous call.
type logTail struct {
	path    string
	off     int64
	partial []byte
}

func (t *logTail) next() []byte {
	f, err := os.Open(t.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, t.off, 1<<40))
	if err != nil {
		return nil
	}
	t.off += int64(len(b))
	b = append(t.partial, b...)
	end := bytes.LastIndexByte(b, '\n') + 1
	t.partial = bytes.Clone(b[end:])
	return b[:end]
}
