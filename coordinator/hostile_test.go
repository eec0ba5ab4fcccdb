package coordinator_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/hostile"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// memPeak samples the process's memory until stop is called and returns
// the peaks of its live heap (runtime/metrics /gc/heap/live, as of the
// last collection) with goroutine stacks: what the node holds, which
// docs/security.md's worst case bounds; of all heap objects, live or not
// yet collected (up to twice the live heap at GOGC=100); and of its
// resident memory (VmRSS; under -race it counts the detector's shadow
// memory too, several times the heap).
func memPeak() (stop func() (live, heap, rss uint64)) {
	done := make(chan struct{})
	var live, heap, rss uint64
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			metrics.Read(samples)
			live = max(live, samples[0].Value.Uint64()+samples[1].Value.Uint64())
			heap = max(heap, samples[2].Value.Uint64()+samples[1].Value.Uint64())
			rss = max(rss, vmRSS())
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return func() (uint64, uint64, uint64) { close(done); wg.Wait(); return live, heap, rss }
}

// vmRSS returns the process's resident memory, 0 if unknown.
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// A live node, 6 honest devices training, and hostile devices with
// valid certificates attacking it (hostile.Device.Run) for at least 10 s
// and until an honest round has committed during the attack (at most
// 60 s): the node's live heap and stacks grow by at most docs/security.md's
// worst case for that many devices (hostile.Bound; this process is the
// node, and its test clients are counted too), at most 64 MiB for one
// device, and honest devices complete rounds during the attack.
// One device meets a node with a 64 MiB budget and the default share of
// it per device (32 MiB); ten meet a share of 5 MiB (two uploads) of a
// 96 MiB budget, so that together they take at most 50 MiB of it
// (docs/security.md: budget / share is how many hostile devices it takes
// to fill it).
//
//	go test -race -count=1 -run TestQUICHostileDevices -v ./coordinator/
func TestQUICHostileDevices(t *testing.T) {
	for _, tc := range []struct {
		devices           int
		budget, deviceMem int64 // deviceMem 0: the default
	}{{1, 64 << 20, 0}, {10, 96 << 20, 5 << 20}} {
		t.Run(fmt.Sprintf("%d devices", tc.devices), func(t *testing.T) { hostileDevices(t, tc.devices, tc.budget, tc.deviceMem) })
	}
}

func hostileDevices(t *testing.T, nHostile int, budget, deviceMem int64) {
	tr := training()
	tr.Items, tr.Rank = 4000, 15 // 64,001 parameters: 512 KB uploads
	tr.RoundTimeout = 10 * time.Second
	c := newQUICClusterConf(t, 1, tr, func(cfg *coordinator.Config) {
		cfg.MemoryBudget, cfg.MaxDeviceMemory, cfg.RateGrace = budget, deviceMem, 3*time.Second
		// The in-memory log holds every committed model (1.5 MB with the
		// optimizer's moments) until a snapshot truncates it: with a
		// round every 100 ms and the defaults it swings by 100 MB or more,
		// which is no hostile device's doing. Keep it short.
		cfg.SnapshotInterval, cfg.SnapshotThreshold, cfg.TrailingLogs = 200*time.Millisecond, 4, 4
	})
	n := c.nodes[0]
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	version := func() (v uint64) {
		n.View(func(s *coordinator.State) { v = s.Current().Version })
		return v
	}
	hctx, stopHonest := context.WithCancel(ctx)
	honest, res := runClients(t, hctx, c, 6)
	defer func() { stopHonest(); honest.Wait() }()
	if err := n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current().Version >= 3 }); err != nil {
		t.Fatalf("honest devices did not train: %v", err)
	}

	dim := model.Dim(tr.Items, tr.Rank)
	devs := make([]*hostile.Device, nHostile)
	for i := range devs {
		id := fmt.Sprintf("evil%d", i)
		devs[i] = hostile.New(c.addrs[0], c.device(t, id), id, dim)
	}
	// The baseline: the peaks of 5 s of honest traffic alone.
	runtime.GC()
	honestPeak := memPeak()
	time.Sleep(5 * time.Second)
	baseLive, baseHeap, baseRSS := honestPeak()
	v0, r0 := version(), res.n.Load()
	peak := memPeak()
	actx, stopAttack := context.WithTimeout(ctx, 60*time.Second)
	defer stopAttack()
	var wg sync.WaitGroup
	start := time.Now()
	for _, d := range devs {
		d.Run(actx, &wg)
	}
	// At least 10 s, and until an honest round commits.
	minimum := time.After(10 * time.Second)
	select {
	case <-minimum:
	case <-actx.Done():
	}
	n.WaitFor(actx, func(s *coordinator.State) bool { return s.Current().Version > v0 })
	v1, r1 := version(), res.n.Load()
	took := time.Since(start)
	stopAttack()
	wg.Wait()
	topLive, topHeap, topRSS := peak()

	var sent int64
	codes := map[wire.Code]int64{}
	for _, d := range devs {
		sent += d.Sent()
		for code, k := range d.Replies() {
			codes[code] += k
		}
	}
	grew := int64(topLive) - int64(baseLive)
	bound := hostile.Bound(nHostile, budget, n.DeviceMax())
	if nHostile == 1 {
		bound = min(bound, 64<<20)
	}
	s := n.AdmissionStats()
	t.Logf("%d hostile devices for %v beside 6 honest ones: peak live heap+stacks %.1f MiB with honest devices alone, %.1f MiB under attack: +%.1f MiB (bound +%.1f MiB: budget %d MiB, a device's share %.1f MiB); all heap objects+stacks %.1f → %.1f MiB: +%.1f MiB; resident (VmRSS, with the race detector's shadow if -race) %.1f → %.1f MiB: +%.1f MiB",
		nHostile, took.Round(100*time.Millisecond), mib(baseLive), mib(topLive), float64(grew)/(1<<20), float64(bound)/(1<<20), budget>>20, float64(n.DeviceMax())/(1<<20),
		mib(baseHeap), mib(topHeap), (float64(topHeap)-float64(baseHeap))/(1<<20),
		mib(baseRSS), mib(topRSS), (float64(topRSS)-float64(baseRSS))/(1<<20))
	t.Logf("honest: %d rounds committed and %d round results during the attack; hostile: %.1f MiB sent, replies by code %v", v1-v0, r1-r0, float64(sent)/(1<<20), codes)
	t.Logf("node: %d requests delayed, refused %d busy, %d over the per-device upload limit, %d over the device's memory share, %d over its request rate, %d too large; %d slow senders cut off; %d bytes still reserved",
		s.Delayed, s.Busy, s.DeviceUploads, s.DeviceMemory, s.DeviceRate, s.TooLarge, s.Slow, s.InUse)
	if grew > bound {
		t.Errorf("live heap and stacks grew by %.1f MiB under %d hostile devices, bound %.1f MiB", float64(grew)/(1<<20), nHostile, float64(bound)/(1<<20))
	}
	if v1 == v0 {
		t.Errorf("honest devices committed no round during %v of attack", took.Round(time.Second))
	}
	// Slow senders are cut off only after 3 s + 64 KiB at 16 KiB/s or
	// more, and the attack may end before (TestQUICStreamUploadPace).
	if s.DeviceUploads == 0 || s.DeviceMemory == 0 {
		t.Errorf("the attack was not felt: %d uploads over the per-device limit, %d requests over the device's share", s.DeviceUploads, s.DeviceMemory)
	}
	for _, code := range []wire.Code{wire.CodeUnknownType, wire.CodeMalformed} {
		if codes[code] == 0 {
			t.Errorf("no hostile request answered %v: the amplifiers did not reach the node", code)
		}
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
