package crowd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/internal/fakenode"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// idleNodeEnv names the certificate directory of the fake node that
// TestIdleNodeProcess runs when set.
const idleNodeEnv = "FEDREC_IDLE_NODE_DIR"

// The model of the idle-participant benchmark: ml-latest-small's shape.
const idleItems, idleRank = 9742, 32

func idleModel() *model.Model {
	m, err := model.New(model.Explicit, idleItems, idleRank, 3.5, 0.1, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		panic(err)
	}
	return m
}

// TestIdleNodeProcess is the fake node of BenchmarkIdleParticipants, run
// in its own process so that its connections do not count in the
// benchmark's heap. Each connection's first check-in gets a plan, later
// ones are held until the connection closes, as a leader holds check-ins
// between rounds, and each one held prints a line. It serves the model
// and acknowledges uploads.
func TestIdleNodeProcess(t *testing.T) {
	dir := os.Getenv(idleNodeEnv)
	if dir == "" {
		t.Skip("the benchmark's fake node")
	}
	b, err := pki.Load(dir, "fake")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := wire.Listen("127.0.0.1:0", b.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m := idleModel()
	digest := wire.Digest(m)
	fmt.Println(ln.Addr().String())
	go func() {
		// The benchmark closes our stdin when done.
		_, _ = bufio.NewReader(os.Stdin).ReadByte()
		ln.Close()
	}()
	plan := fakenode.Plan(m, digest[:], 60_000)
	<-fakenode.ServeConns(ln, func(conn *quic.Conn) func(*quic.Stream) {
		var planned atomic.Bool
		return func(st *quic.Stream) {
			switch req, _ := wire.Read(st, wire.Limits{}); req.(type) {
			case *wire.CheckIn:
				if planned.Swap(true) {
					fmt.Println("held")
					<-conn.Context().Done()
					return
				}
				wire.Write(st, plan)
			case *wire.GetModel:
				fakenode.WriteModel(st, m, nil)
			case *wire.Upload:
				wire.Write(st, &wire.UploadAck{Round: 1})
			}
		}
	})
}

// startIdleNode starts TestIdleNodeProcess and returns its address, the
// TLS configuration that trusts it and its output after the address.
func startIdleNode(b *testing.B) (string, *tls.Config, *bufio.Reader) {
	dir := b.TempDir()
	if err := pki.WriteDir(dir, []string{"fake"}, []string{"127.0.0.1"}, time.Hour); err != nil {
		b.Fatal(err)
	}
	pool, err := pki.LoadPool(dir)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleNodeProcess$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), idleNodeEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	out := bufio.NewReader(stdout)
	addr, err := out.ReadString('\n')
	if err != nil {
		b.Fatalf("fake node: %v", err)
	}
	return strings.TrimSpace(addr), pki.ClientTLS(pool), out
}

// liveBytes returns the heap and goroutine stacks in use after a
// collection.
func liveBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}

// BenchmarkIdleParticipants measures what a participant costs between
// rounds, as in `fedrec client --clients 0` where most of 610 virtual
// clients wait while a cohort of 100 trains: each of n participants takes
// part in one round on a model of ml-latest-small's shape (sharing one
// ModelCache), then waits in a held check-in. It reports the live heap and
// stacks per waiting participant, the shared model excluded.
func BenchmarkIdleParticipants(b *testing.B) {
	const n = 50
	b.ReportAllocs()
	addr, conf, node := startIdleNode(b)
	ratings := make([]model.Rating, 100)
	for i := range ratings {
		ratings[i] = model.Rating{Item: int32(i * 97 % idleItems), Value: 4}
	}
	newParticipant := func(id string, cache *ModelCache) (*Participant, *client.Dialer) {
		d, err := client.NewDialer([]string{addr}, conf)
		if err != nil {
			b.Fatal(err)
		}
		p, err := NewParticipant(ParticipantConfig{ID: id, Ratings: ratings, Dialer: d, Models: cache})
		if err != nil {
			b.Fatal(err)
		}
		return p, d
	}
	var perClient, goroutines float64
	for b.Loop() {
		cache := NewModelCache()
		// Download the model into the cache first, so that it is not
		// counted.
		warm, wd := newParticipant("warm", cache)
		if _, err := warm.RunRound(b.Context()); err != nil {
			b.Fatal(err)
		}
		wd.Close()
		g0, base := runtime.NumGoroutine(), liveBytes()

		ctx, cancel := context.WithCancel(b.Context())
		var trained, wg sync.WaitGroup
		dialers := make([]*client.Dialer, n)
		errs := make(chan error, n)
		for k := range n {
			p, d := newParticipant(fmt.Sprintf("u%d", k), cache)
			dialers[k] = d
			trained.Add(1)
			wg.Go(func() {
				_, err := p.RunRound(ctx)
				trained.Done()
				if err != nil {
					errs <- err
					return
				}
				p.RunRound(ctx) // held until cancelled
			})
		}
		trained.Wait()
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
		for range n { // until the second check-ins are held
			if _, err := node.ReadString('\n'); err != nil {
				b.Fatalf("fake node: %v", err)
			}
		}
		perClient = float64(liveBytes()-base) / n
		goroutines = float64(runtime.NumGoroutine()-g0) / n
		cancel()
		wg.Wait()
		for _, d := range dialers {
			d.Close()
		}
	}
	b.ReportMetric(perClient, "B/participant")
	b.ReportMetric(goroutines, "goroutines/participant")
}

// Participants sharing a ModelCache train and upload at most maxUploads
// at a time, and all of them get their turn.
func TestUploadsBounded(t *testing.T) {
	m, _ := model.New(model.Explicit, 10, 2, 3.5, 0.1, rand.New(rand.NewPCG(1, 2)))
	digest := wire.Digest(m)
	ca, _ := pki.NewCA("test", time.Hour)
	b, _ := ca.NodeBundle("fake")
	ln, err := wire.Listen("127.0.0.1:0", b.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var inflight, most, uploads atomic.Int32
	plan := fakenode.Plan(m, digest[:], 30_000)
	fakenode.ServeStreams(ln, func(st *quic.Stream) {
		switch req, _ := wire.Read(st, wire.Limits{}); req.(type) {
		case *wire.CheckIn:
			wire.Write(st, plan)
		case *wire.GetModel:
			fakenode.WriteModel(st, m, nil)
		case *wire.Upload:
			n := inflight.Add(1)
			for {
				if k := most.Load(); n <= k || most.CompareAndSwap(k, n) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
			inflight.Add(-1)
			uploads.Add(1)
			wire.Write(st, &wire.UploadAck{Round: 1})
		}
	})

	const n = 3 * maxUploads
	cache := NewModelCache()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for k := range n {
		d, _ := client.NewDialer([]string{ln.Addr().String()}, pki.ClientTLS(ca.Pool()))
		t.Cleanup(func() { d.Close() })
		p, err := NewParticipant(ParticipantConfig{ID: fmt.Sprintf("u%d", k), Dialer: d, Models: cache, Ratings: []model.Rating{{Item: 1, Value: 4}}})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if _, err := p.RunRound(t.Context()); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := uploads.Load(); got != n {
		t.Errorf("%d uploads, want %d", got, n)
	}
	if got := most.Load(); got > maxUploads {
		t.Errorf("%d uploads at once, want at most %d", got, maxUploads)
	}
}
