package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/crowd"
	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/hostile"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// procMem is a process's memory, from /proc/PID/status: resident
// (VmRSS), its peak since the process started (VmHWM), and of the
// resident, the anonymous part (RssAnon: heap, stacks, the runtime's) and
// the file-backed part (RssFile: the binary, and the pages of mapped files
// touched, such as the Raft log bolt maps).
type procMem struct{ rss, hwm, anon, file uint64 }

// readProcMem returns process pid's memory, zero if unknown.
func readProcMem(pid int) procMem {
	var m procMem
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		kb, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = kb << 10
		case "VmHWM:":
			m.hwm = kb << 10
		case "RssAnon:":
			m.anon = kb << 10
		case "RssFile:":
			m.file = kb << 10
		}
	}
	return m
}

// memPeak samples process pid's memory every 20 ms until stop is called,
// and returns the peak of each figure.
func memPeak(pid int) (stop func() procMem) {
	done := make(chan struct{})
	var peak procMem
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			m := readProcMem(pid)
			peak = procMem{max(peak.rss, m.rss), max(peak.hwm, m.hwm), max(peak.anon, m.anon), max(peak.file, m.file)}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return func() procMem { close(done); wg.Wait(); return peak }
}

// A fedrec coordinator process with device authentication and the
// default memory limits, 6 honest devices (client SDK participants)
// training against it, and then hostile devices with valid certificates
// attacking it (hostile.Device.Run): one, then ten, each for at least
// 10 s and until an honest round has committed during the attack. The
// node's anonymous resident memory (RssAnon of the process, built
// without -race, so real: its heap, stacks and runtime) grows from its
// peak under honest traffic alone by at most 64 MiB under one device and
// by at most docs/security.md's M(10) under ten; honest devices commit
// rounds during each attack. The whole resident memory (VmRSS) is logged
// too: it adds the pages of the Raft log that bolt maps (RssFile), which
// grow with the rounds honest devices commit (about 1 MiB a round of this
// model), not with the attack, and which the kernel may reclaim.
//
//	go test -count=1 -run TestHostileDevicesProcess -v ./cmd/fedrec/
func TestHostileDevicesProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := pki.WriteDir(certs, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	hc, err := adminClient(certs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	const items, rank, token = 4000, 15, "hostile-test-token" // 64,001 parameters: 512 KB uploads
	raftAddr, clientAddr, adminAddr := freePort(t, "tcp"), freePort(t, "udp"), freePort(t, "tcp")
	p := start(t, fedrecBinary(t), dir, "a", "coordinator", "--id", "a", "--data-dir", "a", "--certs", "certs",
		"--raft-addr", raftAddr, "--client-addr", clientAddr, "--admin-addr", adminAddr, "--admin-token", token,
		"--heartbeat", "300ms", "--bootstrap", "--items", strconv.Itoa(items), "--rank", strconv.Itoa(rank), "--mean", "3.5",
		"--clients-per-round", "4", "--over-select", "0", "--min-clients", "3",
		"--checkin-window", "300ms", "--round-timeout", "10s", "--population", "1000")
	pid := p.cmd.Process.Pid
	get := func(path string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return adminGet(ctx, hc, adminAddr, path, token)
	}
	version := func() uint64 {
		b, err := get("/v1/status")
		var st wire.Status
		if err != nil || json.Unmarshal(b, &st) != nil || st.Model == nil {
			return 0
		}
		return st.Model.Version
	}
	// metrics scrapes the node: samples keyed by the text before the value.
	metrics := func() map[string]float64 {
		b, err := get("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for l := range strings.Lines(string(b)) {
			if l = strings.TrimSpace(l); l == "" || l[0] == '#' {
				continue
			}
			i := strings.LastIndexByte(l, ' ')
			out[l[:i]], _ = strconv.ParseFloat(l[i+1:], 64)
		}
		return out
	}
	waitFor(t, ctx, "the node to serve a model", func() bool {
		select {
		case <-p.done:
			t.Fatalf("the node exited: %s", tail(p.read(p.log)))
		default:
		}
		return version() >= 1
	})

	devices, err := pki.Devices(certs, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tlsOf := func(id string) *tls.Config {
		c, err := devices.TLS(id)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	hctx, stopHonest := context.WithCancel(ctx)
	var honest sync.WaitGroup
	defer func() { stopHonest(); honest.Wait() }()
	for i := range 6 {
		r := rand.New(rand.NewPCG(uint64(i), 12))
		rs := make([]model.Rating, 0, 20)
		for _, it := range r.Perm(items)[:20] {
			rs = append(rs, model.Rating{Item: int32(it), Value: float32(1 + r.IntN(5))})
		}
		id := fmt.Sprintf("honest%d", i)
		d, err := client.NewDialer([]string{clientAddr}, tlsOf(id))
		if err != nil {
			t.Fatal(err)
		}
		part, err := crowd.NewParticipant(crowd.ParticipantConfig{ID: id, Ratings: rs, Dialer: d,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		honest.Go(func() {
			defer d.Close()
			// A device takes part in a round every few seconds, while this
			// node, with a small model and six devices on an idle machine,
			// commits one every 50 ms: back to back, an honest device
			// would send 50 requests a second and the check of the default
			// rate below would measure this machine's speed. A pause of
			// 300 ms after each round keeps it below 10 a second.
			part.Run(hctx, func(crowd.RoundResult) error {
				select {
				case <-hctx.Done():
				case <-time.After(300 * time.Millisecond):
				}
				return nil
			})
		})
	}
	waitFor(t, ctx, "honest devices to train", func() bool { return version() >= 3 })

	// The baseline: the peak of 5 s of honest traffic alone.
	peak := memPeak(pid)
	time.Sleep(5 * time.Second)
	base := peak()
	t.Logf("honest devices alone: peak resident %.1f MiB (VmHWM %.1f MiB), anonymous %.1f MiB, file-backed %.1f MiB", mib(base.rss), mib(base.hwm), mib(base.anon), mib(base.file))
	if k := `fedrec_admission_refused_total{reason="device_rate"}`; metrics()[k] != 0 {
		t.Errorf("honest devices alone: %s = %v, want 0: the default request rate is too low for them", k, metrics()[k])
	}

	dim := model.Dim(items, rank)
	deviceMax := int64(coordinator.DefaultMaxDeviceMemory) // more than an upload of the model and 1 MiB
	for _, n := range []int{1, 10} {
		bound := hostile.Bound(n, coordinator.DefaultMemoryBudget, deviceMax)
		if n == 1 {
			bound = 64 << 20 // the figure; M(1) is 51 MiB
		}
		devs := make([]*hostile.Device, n)
		for i := range devs {
			id := fmt.Sprintf("evil%d", i)
			devs[i] = hostile.New(clientAddr, tlsOf(id), id, dim)
		}
		v0 := version()
		peak := memPeak(pid)
		actx, stopAttack := context.WithTimeout(ctx, 60*time.Second)
		var wg sync.WaitGroup
		begin := time.Now()
		for _, d := range devs {
			d.Run(actx, &wg)
		}
		select {
		case <-time.After(10 * time.Second):
		case <-actx.Done():
		}
		for actx.Err() == nil && version() <= v0 {
			time.Sleep(100 * time.Millisecond)
		}
		v1, took := version(), time.Since(begin)
		stopAttack()
		wg.Wait()
		top := peak()
		var sent int64
		codes := map[wire.Code]int64{}
		for _, d := range devs {
			sent += d.Sent()
			for c, k := range d.Replies() {
				codes[c] += k
			}
		}
		grew := int64(top.anon) - int64(base.anon)
		t.Logf("%d hostile devices for %v: peak anonymous resident %.1f MiB → %.1f MiB: %+.1f MiB (bound +%.1f MiB); whole resident (VmRSS) %.1f → %.1f MiB (VmHWM %.1f MiB), of it file-backed %.1f → %.1f MiB; honest: %d rounds committed during the attack; hostile: %.1f MiB sent, replies by code %v",
			n, took.Round(100*time.Millisecond), mib(base.anon), mib(top.anon), float64(grew)/(1<<20), mib(uint64(bound)),
			mib(base.rss), mib(top.rss), mib(top.hwm), mib(base.file), mib(top.file), v1-v0, float64(sent)/(1<<20), codes)
		if grew > bound {
			t.Errorf("%d hostile devices: the node's anonymous resident memory grew by %.1f MiB, bound %.1f MiB", n, float64(grew)/(1<<20), mib(uint64(bound)))
		}
		if v1 <= v0 {
			t.Errorf("%d hostile devices: honest devices committed no round during %v of attack", n, took.Round(time.Second))
		}
	}
	m := metrics()
	t.Logf("node: requests refused: %v over a device's memory share, %v over its uploads, %v over its request rate, %v busy; %v delayed; %v slow senders cut off",
		m[`fedrec_admission_refused_total{reason="device_memory"}`], m[`fedrec_admission_refused_total{reason="device_uploads"}`],
		m[`fedrec_admission_refused_total{reason="device_rate"}`], m[`fedrec_admission_refused_total{reason="busy"}`],
		m["fedrec_admission_delayed_total"], m["fedrec_slow_senders_total"])
	// The request rate is felt only when the node answers faster than the
	// default burst drains (TestQUICDeviceRequestRate shows it at a small
	// burst); a loaded machine does not.
	for _, r := range []string{"device_memory"} {
		if k := `fedrec_admission_refused_total{reason="` + r + `"}`; !(m[k] > 0) {
			t.Errorf("the attack was not felt: %s = %v", k, m[k])
		}
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
