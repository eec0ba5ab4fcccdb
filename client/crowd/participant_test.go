package crowd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"
	"gonum.org/v1/gonum/floats"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/internal/fakenode"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

func TestNewParticipantValidates(t *testing.T) {
	d, _ := client.NewDialer([]string{"127.0.0.1:1"}, &tls.Config{})
	for name, cfg := range map[string]ParticipantConfig{
		"no id":     {Dialer: d},
		"long id":   {ID: string(make([]byte, wire.MaxIDLen+1)), Dialer: d},
		"no dialer": {ID: "x"},
		"negative":  {ID: "x", Dialer: d, MinBackoff: -1},
	} {
		if _, err := NewParticipant(cfg); err == nil {
			t.Errorf("NewParticipant(%s) = nil error", name)
		}
	}
}

func TestBackoff(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lo, hi := 100*time.Millisecond, 2*time.Second
	for attempt := range 40 {
		for range 50 {
			d := backoff(r, attempt, lo, hi)
			if d < lo/2 || d > lo/2+hi {
				t.Fatalf("backoff(attempt %d) = %v, want in [%v, %v]", attempt, d, lo/2, lo/2+hi)
			}
		}
	}
	// The mean grows with the attempt until the cap.
	mean := func(a int) time.Duration {
		var s time.Duration
		for range 1000 {
			s += backoff(r, a, lo, hi)
		}
		return s / 1000
	}
	if m0, m3 := mean(0), mean(3); m3 < 3*m0 {
		t.Errorf("mean backoff %v at attempt 0, %v at 3: not growing", m0, m3)
	}
}

// Run returns promptly when its context ends, even while dialing a node
// that never answers.
func TestRunHonoursCancel(t *testing.T) {
	d, _ := client.NewDialer([]string{"127.0.0.1:9"}, &tls.Config{ServerName: "x"})
	defer d.Close()
	p, err := NewParticipant(ParticipantConfig{ID: "x", Dialer: d, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.Run(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run = %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Run took %v to notice its context ended", el)
	}
}

// A protocol version mismatch is final: Run returns it.
func TestRunStopsOnVersionError(t *testing.T) {
	ca, _ := pki.NewCA("test", time.Hour)
	addr, _ := fakenode.Answering(t, ca, func(wire.Message) wire.Message { return wire.Errorf(wire.CodeVersion, "old") })
	d, _ := client.NewDialer([]string{addr}, pki.ClientTLS(ca.Pool()))
	defer d.Close()
	p, _ := NewParticipant(ParticipantConfig{ID: "u", Dialer: d})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Run(ctx, nil); wire.CodeOf(err) != wire.CodeVersion {
		t.Errorf("Run = %v, want CodeVersion", err)
	}
}

// Run stops the whole crowd at the first error no retry fixes, naming the
// client, and leaves no goroutine behind.
func TestCrowdRunStopsOnVersionError(t *testing.T) {
	opts := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opts) }) // after the node's cleanup
	ca, _ := pki.NewCA("test", time.Hour)
	var calls atomic.Int32
	addr, _ := fakenode.Answering(t, ca, func(m wire.Message) wire.Message {
		if calls.Add(1) < 5 {
			return &wire.Wait{RetryAfterMs: 10}
		}
		return wire.Errorf(wire.CodeVersion, "old")
	})
	members := make([]Member, 3)
	for i := range members {
		members[i] = Member{ID: fmt.Sprintf("u%d", i), Addrs: []string{addr}, TLS: pki.ClientTLS(ca.Pool())}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err := Run(ctx, members, nil, nil)
	if wire.CodeOf(err) != wire.CodeVersion || !strings.Contains(err.Error(), "client u") {
		t.Errorf("Run = %v, want CodeVersion from a named client", err)
	}
}

// modelNode is a fake node that plans a round on the model with digest
// planned and serves served (its header's digest replaced by header when
// set), counting uploads.
func modelNode(t *testing.T, planned [32]byte, served *model.Model, header []byte) (string, *pki.CA, *atomic.Int32, *atomic.Uint64) {
	t.Helper()
	ca, _ := pki.NewCA("test", time.Hour)
	b, _ := ca.NodeBundle("fake")
	ln, err := wire.Listen("127.0.0.1:0", b.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	var uploads atomic.Int32
	var norm atomic.Uint64 // of the last upload, math.Float64bits
	plan := fakenode.Plan(served, planned[:], 10_000)
	plan.Clip = planClip
	done := fakenode.ServeStreams(ln, func(st *quic.Stream) {
		switch req, _ := wire.Read(st, wire.Limits{}); req := req.(type) {
		case *wire.CheckIn:
			wire.Write(st, plan)
		case *wire.GetModel:
			fakenode.WriteModel(st, served, header)
		case *wire.Upload:
			uploads.Add(1)
			norm.Store(math.Float64bits(floats.Norm(req.Delta, 2)))
			wire.Write(st, &wire.UploadAck{Round: 1})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String(), ca, &uploads, &norm
}

// planClip is the clip norm of modelNode's plans: far below an update's
// norm, so that an unclipped update shows.
const planClip = 1e-6

// A client trains only on the model its round's plan names by digest: a
// node serving another model, with its own digest or under the plan's, is
// refused and nothing is uploaded. The update it does upload is clipped to
// the plan's norm.
func TestParticipantKeepsToPlan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	planned, _ := model.New(model.Explicit, 10, 2, 3.5, 0.1, r)
	other, _ := model.New(model.Explicit, 10, 2, 3.5, 0.1, r)
	pd, od := wire.Digest(planned), wire.Digest(other)
	tests := []struct {
		name   string
		served *model.Model
		header []byte
		ok     bool
	}{
		{"the planned model", planned, nil, true},
		{"another model", other, nil, false},
		{"another model under the plan's digest", other, pd[:], false},
		{"the planned model under another digest", planned, od[:], false},
	}
	for _, tc := range tests {
		addr, ca, uploads, norm := modelNode(t, pd, tc.served, tc.header)
		d, _ := client.NewDialer([]string{addr}, pki.ClientTLS(ca.Pool()))
		p, _ := NewParticipant(ParticipantConfig{ID: "u", Dialer: d, Ratings: []model.Rating{{Item: 1, Value: 4}, {Item: 3, Value: 2}}})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := p.RunRound(ctx)
		cancel()
		d.Close()
		if tc.ok && (err != nil || uploads.Load() != 1) {
			t.Errorf("%s: RunRound = %v with %d uploads, want one upload", tc.name, err, uploads.Load())
		}
		// The update leaves the client clipped to the plan's norm.
		if n := math.Float64frombits(norm.Load()); tc.ok && (n > planClip*(1+1e-9) || n == 0) {
			t.Errorf("%s: uploaded update of norm %g, want in (0, %g]", tc.name, n, planClip)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "digest") || uploads.Load() != 0) {
			t.Errorf("%s: RunRound = %v with %d uploads, want a digest error and none", tc.name, err, uploads.Load())
		}
	}
}

// A participant whose node turns its round's download away (the round has
// every upload it needs) is not counted as taking part and checks in again
// when told, with its jitter: no training, no upload, no failure.
func TestParticipantTurnedAway(t *testing.T) {
	m, _ := model.New(model.Explicit, 10, 2, 3.5, 0.1, rand.New(rand.NewPCG(1, 2)))
	digest := wire.Digest(m)
	plan := fakenode.Plan(m, digest[:], 10_000)
	ca, _ := pki.NewCA("test", time.Hour)
	addr, uploads := fakenode.RoundFull(t, ca, plan)
	d, _ := client.NewDialer([]string{addr}, pki.ClientTLS(ca.Pool()))
	defer d.Close()
	p, _ := NewParticipant(ParticipantConfig{ID: "u", Dialer: d, Models: NewDeviceCache(), Ratings: []model.Rating{{Item: 1, Value: 4}}})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	res, err := p.RunRound(ctx)
	if err != nil || res.Selected || res.Wait < 630*time.Millisecond || res.Wait > 770*time.Millisecond {
		t.Errorf("RunRound = %+v, %v; want not selected, a wait of 700 ms ± 10 %%, no error", res, err)
	}
	if uploads.Load() != 0 {
		t.Errorf("%d uploads, want none", uploads.Load())
	}
}

// A buffer given back is lent again, to a caller of its length only, until
// the spares are dropped.
func TestBuffersReuse(t *testing.T) {
	var b buffers
	p := b.get(10)
	b.put(p)
	if q := b.get(10); q != p {
		t.Error("get after put: a new buffer, want the one given back")
	}
	b.put(p)
	if q := b.get(12); q == p || len(*q) != 12 {
		t.Errorf("get(12) = the spare of 10 or a buffer of %d", len(*q))
	}
	b.put(p)
	b.drop()
	if q := b.get(10); q == p {
		t.Error("get after drop: the dropped spare, want a new buffer")
	}
	b.idle.Stop()
}
