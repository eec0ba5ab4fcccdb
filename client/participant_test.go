package client

import (
	"context"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

func TestNewParticipantValidates(t *testing.T) {
	d, _ := NewDialer([]string{"127.0.0.1:1"}, &tls.Config{})
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
	if _, err := NewDialer(nil, &tls.Config{}); err == nil {
		t.Error("NewDialer(no addresses) = nil error")
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
	d, _ := NewDialer([]string{"127.0.0.1:9"}, &tls.Config{ServerName: "x"})
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

// fakeNode answers every request with reply.
func fakeNode(t *testing.T, ca *pki.CA, reply func(wire.Message) wire.Message) (string, *atomic.Int32) {
	t.Helper()
	b, err := ca.NodeBundle("fake")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := wire.Listen("127.0.0.1:0", b.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	done := serveStreams(ln, func(st *quic.Stream) {
		if req, err := wire.Read(st, wire.Limits{}); err == nil {
			hits.Add(1)
			wire.Write(st, reply(req))
		}
	})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String(), &hits
}

// A check-in at a follower is redirected to the leader it names.
func TestDialerFollowsLeaderHint(t *testing.T) {
	ca, _ := pki.NewCA("test", time.Hour)
	leader, leaderHits := fakeNode(t, ca, func(wire.Message) wire.Message { return &wire.Wait{RetryAfterMs: 7} })
	follower, _ := fakeNode(t, ca, func(wire.Message) wire.Message {
		return &wire.Error{Code: wire.CodeNotLeader, Leader: leader}
	})
	d, _ := NewDialer([]string{follower}, pki.ClientTLS(ca.Pool()))
	defer d.Close()
	p, _ := NewParticipant(ParticipantConfig{ID: "u", Dialer: d})
	res, err := p.RunRound(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Selected || res.Wait != 7*time.Millisecond || leaderHits.Load() != 1 {
		t.Errorf("RunRound = %+v (leader hit %d times), want a Wait of 7ms from the leader", res, leaderHits.Load())
	}
}

// A protocol version mismatch is final: Run returns it.
func TestRunStopsOnVersionError(t *testing.T) {
	ca, _ := pki.NewCA("test", time.Hour)
	addr, _ := fakeNode(t, ca, func(wire.Message) wire.Message { return wire.Errorf(wire.CodeVersion, "old") })
	d, _ := NewDialer([]string{addr}, pki.ClientTLS(ca.Pool()))
	defer d.Close()
	p, _ := NewParticipant(ParticipantConfig{ID: "u", Dialer: d})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Run(ctx, nil); wire.CodeOf(err) != wire.CodeVersion {
		t.Errorf("Run = %v, want CodeVersion", err)
	}
}
