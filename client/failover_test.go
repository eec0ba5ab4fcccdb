package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/client/internal/fakenode"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// deadAddr returns the address of a UDP port that was bound and closed:
// nothing listens there.
func deadAddr(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

// blackHole returns the address of a UDP socket that is bound but never
// read: packets sent there vanish without an answer or an ICMP error, as
// on a partitioned network.
func blackHole(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().String()
}

// liveNode starts a node over QUIC on loopback that serves a model, and
// returns its address and its CA.
func liveNode(t *testing.T) (string, *pki.CA) {
	t.Helper()
	ca, _ := pki.NewCA("test", time.Hour)
	b, _ := ca.NodeBundle("live")
	ln, err := wire.Listen("127.0.0.1:0", b.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	m, _ := model.New(model.Explicit, 6, 2, 3.5, 0.1, rand.New(rand.NewPCG(1, 2)))
	done := fakenode.ServeStreams(ln, func(st *quic.Stream) {
		if req, _ := wire.Read(st, wire.Limits{}); req != nil {
			fakenode.WriteModel(st, m, nil)
		}
	})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String(), ca
}

// A device whose first two coordinators are dead (a closed port and a
// black hole) reaches the third in one call, within a deadline that one
// dead address's handshake timeout (wire.HandshakeTimeout, 5 s) alone
// would exceed twice over: the Dialer races the addresses instead of
// waiting for each in turn. go test -v shows the time it took.
func TestFailoverReachesThird(t *testing.T) {
	live, ca := liveNode(t)
	d, err := NewDialer([]string{deadAddr(t), blackHole(t), live}, pki.ClientTLS(ca.Pool()))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Second)
	defer cancel()
	start := time.Now()
	if _, _, err := d.Model(ctx, 0); err != nil {
		t.Fatalf("Model with the first two coordinators dead = %v, want the third's model", err)
	}
	t.Logf("reached the third coordinator, the first two dead, in %v", time.Since(start))
}

// With dead addresses first, every call in a row succeeds and, once a node
// answered, goes to it (the old Dialer retried the dead first address on
// the second call, and with two dead failed three calls).
func TestFailoverEveryCall(t *testing.T) {
	for _, dead := range []int{1, 2} {
		live, ca := liveNode(t)
		var addrs []string
		for range dead {
			addrs = append(addrs, deadAddr(t))
		}
		d, err := NewDialer(append(addrs, live), pki.ClientTLS(ca.Pool()))
		if err != nil {
			t.Fatal(err)
		}
		for call := range 3 {
			ctx, cancel := context.WithTimeout(t.Context(), 8*time.Second)
			_, _, err := d.Model(ctx, 0)
			cancel()
			if err != nil {
				t.Errorf("%d dead: call %d: Model = %v, want the live node's model", dead, call, err)
			}
		}
		d.mu.Lock()
		at := d.at
		d.mu.Unlock()
		if at != live {
			t.Errorf("%d dead: connected to %s, want the live %s", dead, at, live)
		}
		d.Close()
	}
}

// A Dialer remembers between process starts which addresses failed: a new
// one with the same StateDir dials the address that answered first, the
// failed ones last, until their backoff ends.
func TestDialerRemembersFailures(t *testing.T) {
	dir := t.TempDir()
	live, ca := liveNode(t)
	dead1, dead2 := deadAddr(t), blackHole(t)
	addrs := []string{dead1, dead2, live}
	cfg := DialerConfig{Addrs: addrs, TLS: pki.ClientTLS(ca.Pool()), StateDir: dir, Stagger: time.Millisecond, DialTimeout: 500 * time.Millisecond}
	d, err := NewDialerConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Second)
	defer cancel()
	if _, _, err := d.Model(ctx, 0); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := os.Stat(filepath.Join(dir, dialerStateFile)); err != nil {
		t.Fatalf("no dialer state: %v", err)
	}

	// The next process start.
	d2, err := NewDialerConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	d2.mu.Lock()
	got := d2.orderLocked(time.Now())
	later := d2.orderLocked(time.Now().Add(backoffMax))
	d2.mu.Unlock()
	if got[0] != live {
		t.Errorf("after a restart, dial order %v, want the live %s first", got, live)
	}
	if !slices.Equal(later[1:], []string{dead1, dead2}) {
		t.Errorf("after the backoff, dial order %v, want %s then the configured order", later, live)
	}
}

// A call that reaches no coordinator within the Dialer's budget fails with
// an error matching ErrUnavailable, and so does Participate through it.
func TestUnavailable(t *testing.T) {
	_, ca := liveNode(t)
	d, err := NewDialerConfig(DialerConfig{Addrs: []string{deadAddr(t), blackHole(t)}, TLS: pki.ClientTLS(ca.Pool()), Budget: 300 * time.Millisecond, DialTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, _, err := d.Model(ctx, 0); !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
		t.Errorf("Model with every coordinator dead = %v, want ErrUnavailable within the budget", err)
	}
	fed, err := NewNetwork(NetworkConfig{ClientID: "dev", Dialer: d, Items: itemIDs(6)})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := testConfig(t)
	cfg.Federation = fed
	c := open(t, cfg)
	recordAll(t, c, rate(1, 4))
	c.OptIn()
	if _, err := c.Participate(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Participate with every coordinator dead = %v, want ErrUnavailable", err)
	}
	if _, err := c.Sync(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Sync with every coordinator dead = %v, want ErrUnavailable", err)
	}
}

// A reply that breaks off after its first message is not asked of another
// node: the download would see a second model header and fail as
// malformed. The error matches ErrUnavailable, one node saw the request,
// and the Dialer leaves that node. Both nodes break off, so whichever the
// Dialer reaches first, the old Dialer's retry reached the other.
func TestFailoverBrokenReply(t *testing.T) {
	ca, _ := pki.NewCA("test", time.Hour)
	m, _ := model.New(model.Explicit, 6, 2, 3.5, 0.1, rand.New(rand.NewPCG(1, 2)))
	var asked atomic.Int32
	var addrs []string
	for _, id := range []string{"one", "two"} {
		b, _ := ca.NodeBundle(id)
		ln, err := wire.Listen("127.0.0.1:0", b.ServerTLS())
		if err != nil {
			t.Fatal(err)
		}
		done := fakenode.ServeStreams(ln, func(st *quic.Stream) {
			if req, _ := wire.Read(st, wire.Limits{}); req != nil {
				asked.Add(1)
				h, _ := wire.SplitModel(m, 2, 1)
				wire.Write(st, h)
				// The rest never comes: the node gives up, as one
				// shedding load would (a reset stream may lose the
				// header too).
				wire.Write(st, wire.Errorf(wire.CodeUnavailable, "busy"))
				st.Close()
			}
		})
		t.Cleanup(func() {
			ln.Close()
			<-done
		})
		addrs = append(addrs, ln.Addr().String())
	}
	d, err := NewDialer(addrs, pki.ClientTLS(ca.Pool()))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Second)
	defer cancel()
	_, _, err = d.Model(ctx, 0)
	if !errors.Is(err, ErrUnavailable) || wire.CodeOf(err) == wire.CodeMalformed {
		t.Errorf("Model = %v, want an error matching ErrUnavailable", err)
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("%d nodes asked, want 1", n)
	}
}
