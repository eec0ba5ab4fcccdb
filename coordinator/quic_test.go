package coordinator_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/crowd"
	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

type quicCluster struct {
	ca      *pki.CA
	devCA   *pki.CA // the device CA: every client presents a certificate of it
	revoked string  // the nodes' deny-list file
	roster  string  // the nodes' device roster file
	nodes   []*coordinator.Node
	trans   []*raft.InmemTransport
	addrs   []string
}

func training() coordinator.Training {
	return coordinator.Training{
		Items: 20, Rank: 4, Mean: 3.5, ClientsPerRound: 4, MinClients: 2, OverSelect: 0.5,
		CheckInWindow: 100 * time.Millisecond, RoundTimeout: 3 * time.Second,
	}
}

// newQUICCluster starts nodes with Raft over raft.InmemTransport and the
// client protocol over real QUIC on 127.0.0.1, with an in-memory CA.
func newQUICCluster(t *testing.T, size int) *quicCluster {
	t.Helper()
	return newQUICClusterWith(t, size, training())
}

// newQUICClusterWith is newQUICCluster with the training configuration tr.
func newQUICClusterWith(t *testing.T, size int, tr coordinator.Training) *quicCluster {
	t.Helper()
	return newQUICClusterConf(t, size, tr, nil)
}

// newQUICClusterConf is newQUICClusterWith with a hook that adjusts each
// node's configuration.
func newQUICClusterConf(t *testing.T, size int, tr coordinator.Training, mod func(*coordinator.Config)) *quicCluster {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	devCA, err := pki.NewCA("test device CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &quicCluster{ca: ca, devCA: devCA, revoked: filepath.Join(dir, pki.RevokedFile), roster: filepath.Join(dir, pki.RosterFile)}
	c.nodes, c.trans = coordinator.NewInmemCluster(t, size, tr, func(i int, cfg *coordinator.Config) {
		b, err := ca.NodeBundle(cfg.ID)
		if err != nil {
			t.Fatal(err)
		}
		b.Devices, b.Revoked, b.Roster = devCA.Pool(), c.revoked, c.roster
		cfg.ClientAddr, cfg.AdvertiseClientAddr, cfg.TLS = "127.0.0.1:0", "", b
		if mod != nil {
			mod(cfg)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	l := c.leader(t, ctx)
	for _, n := range c.nodes {
		c.addrs = append(c.addrs, n.ClientAddr())
		// Leader hints need the leader's client address.
		if err := n.WaitFor(ctx, func(s *coordinator.State) bool { return s.NodeAddr(l.ID()) != "" }); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *quicCluster) leader(t *testing.T, ctx context.Context) *coordinator.Node {
	t.Helper()
	for {
		for _, n := range c.nodes {
			if n.IsLeader() {
				return n
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("no leader")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// clientTLS trusts the cluster but presents no certificate.
func (c *quicCluster) clientTLS() *tls.Config { return pki.ClientTLS(c.ca.Pool()) }

// device returns the TLS configuration of device id, with a certificate
// of the device CA.
func (c *quicCluster) device(t *testing.T, id string) *tls.Config {
	t.Helper()
	cert, err := c.devCA.IssueDevice(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return pki.DeviceTLS(c.ca.Pool(), cert)
}

func ratings(r *rand.Rand, items, n int) []model.Rating {
	out := make([]model.Rating, 0, n)
	for _, i := range r.Perm(items)[:n] {
		out = append(out, model.Rating{Item: int32(i), Value: float32(1 + r.IntN(5))})
	}
	return out
}

// runClients starts k participants that dial the cluster starting from a
// follower (so they must follow leader hints).
func runClients(t *testing.T, ctx context.Context, c *quicCluster, k int) (*sync.WaitGroup, *countingResults) {
	var wg sync.WaitGroup
	res := &countingResults{}
	cache := crowd.NewModelCache()
	for i := range k {
		addrs := append(append([]string(nil), c.addrs[1:]...), c.addrs[0])
		d, err := client.NewDialer(addrs, c.device(t, fmt.Sprintf("u%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		p, err := crowd.NewParticipant(crowd.ParticipantConfig{
			ID: fmt.Sprintf("u%d", i), Ratings: ratings(rand.New(rand.NewPCG(uint64(i), 1)), 20, 8),
			Dialer: d, Models: cache, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer d.Close()
			p.Run(ctx, func(r crowd.RoundResult) error { res.add(r); return nil })
		})
	}
	return &wg, res
}

type countingResults struct{ n, bytes atomic.Int64 }

func (c *countingResults) add(r crowd.RoundResult) {
	c.n.Add(1)
	c.bytes.Add(int64(r.Bytes))
}

// Participants over real QUIC train, survive the leader's crash, and every
// version committed before it is still on every live node.
func TestQUICRoundsAndFailover(t *testing.T) {
	c := newQUICCluster(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cctx, stop := context.WithCancel(ctx)
	wg, res := runClients(t, cctx, c, 8)
	defer func() { stop(); wg.Wait() }()
	for _, n := range c.nodes {
		if err := n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current().Version >= 3 }); err != nil {
			t.Fatal(err)
		}
	}
	old := c.leader(t, ctx)
	var before []uint64
	old.View(func(s *coordinator.State) { before = s.Versions() })
	for i, n := range c.nodes {
		if n == old {
			c.trans[i].DisconnectAll()
		}
	}
	old.Close()
	last := before[len(before)-1]
	var live []*coordinator.Node
	for _, n := range c.nodes {
		if n != old {
			live = append(live, n)
		}
	}
	for _, n := range live {
		if err := n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current().Version >= last+2 }); err != nil {
			t.Fatalf("node %s: training did not resume: %v", n.ID(), err)
		}
		n.View(func(s *coordinator.State) {
			for _, v := range before {
				if s.Model(v) == nil && v > s.Versions()[0] {
					t.Errorf("node %s lost version %d", n.ID(), v)
				}
			}
		})
	}
	if res.n.Load() == 0 {
		t.Error("no participant finished a round")
	}
}

// Participants over real QUIC download float32 models and upload 8-bit
// updates, one byte a parameter (two, masked, in a secure round of up to
// 258 devices), which the cluster commits.
func TestQUICQuantizedRounds(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprintf("secure=%v", secure), func(t *testing.T) {
			tr := training()
			tr.Clip, tr.UploadBits = 1, 8
			width := int64(1)
			if secure {
				tr.SecAgg, tr.MinClients, tr.SecAggPhase, width = true, 3, 3*time.Second, 2
			}
			c := newQUICClusterWith(t, 3, tr)
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cctx, stop := context.WithCancel(ctx)
			wg, res := runClients(t, cctx, c, 8)
			defer func() { stop(); wg.Wait() }()
			l := c.leader(t, ctx)
			if err := l.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current().Version >= 3 }); err != nil {
				t.Fatal(err)
			}
			stop()
			wg.Wait()
			n, dim := res.n.Load(), int64(model.Dim(tr.Items, tr.Rank))
			if n == 0 || res.bytes.Load() != n*dim*width {
				t.Errorf("%d rounds sent %d bytes of updates, want %d a round", n, res.bytes.Load(), dim*width)
			}
		})
	}
}

// rawExchange writes raw bytes on a new stream and reads one reply.
func rawExchange(t *testing.T, ctx context.Context, conn *quic.Conn, b []byte) (wire.Message, error) {
	t.Helper()
	st, err := conn.OpenStreamSync(ctx)
	return rawOn(t, st, err, b)
}

// rawStream is a QUIC or WebTransport stream.
type rawStream interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
}

// rawOn writes raw bytes on st, just opened (err: its opening's), and
// reads one reply.
func rawOn(t *testing.T, st rawStream, err error, b []byte) (wire.Message, error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	st.SetDeadline(time.Now().Add(5 * time.Second))
	st.Write(b)
	st.Close()
	return wire.Read(st, wire.Limits{})
}

// Hostile and broken requests get clear error codes over real QUIC, and
// the node keeps serving on the same connection.
func TestQUICBadInput(t *testing.T) {
	c := newQUICCluster(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := wire.Dial(ctx, c.addrs[0], c.device(t, "c"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	frame := func(t wire.Type, body []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		return append(append(b, byte(t)), body...)
	}
	checkin, _ := wire.Encode(&wire.CheckIn{Version: wire.Version, ClientID: "c"})
	oldVersion, _ := wire.Encode(&wire.CheckIn{Version: 99, ClientID: "c"})
	tests := []struct {
		name string
		in   []byte
		code wire.Code
	}{
		{"garbage body", frame(wire.TypeCheckIn, []byte{0xc1, 0xc1}), wire.CodeMalformed},
		{"huge declared array", frame(wire.TypeCheckIn, []byte{0xdd, 0xff, 0xff, 0xff, 0xff}), wire.CodeMalformed},
		{"oversized frame", append(binary.BigEndian.AppendUint32(nil, 1<<30), byte(wire.TypeUpload)), wire.CodeTooLarge},
		{"unknown type", frame(200, []byte{0x80}), wire.CodeUnknownType},
		{"truncated", checkin[:len(checkin)-3], wire.CodeMalformed},
		{"wrong version", oldVersion, wire.CodeVersion},
		{"reply type as request", frame(wire.TypeUploadAck, []byte{0x80}), wire.CodeUnknownType},
		{"nan update", mustEncode(t, &wire.Upload{Version: wire.Version, Round: 1, ClientID: "c", Ticket: make([]byte, wire.TicketLen), Model: 1, Delta: wire.Vec{nan()}}), wire.CodeNotFinite},
		{"upload without a round", mustEncode(t, &wire.Upload{Version: wire.Version, Round: 7, ClientID: "c", Ticket: make([]byte, wire.TicketLen), Model: 1, Delta: make(wire.Vec, model.Dim(20, 4))}), wire.CodeNoRound},
		{"device joins", mustEncode(t, &wire.Join{Version: wire.Version, ID: "evil", RaftAddr: "1.2.3.4:1", ClientAddr: "1.2.3.4:2"}), wire.CodeForbidden},
	}
	for _, tc := range tests {
		msg, err := rawExchange(t, ctx, conn, tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if e, ok := msg.(*wire.Error); !ok || e.Code != tc.code {
			t.Errorf("%s: reply %+v, want code %v", tc.name, msg, tc.code)
		}
	}
	// The same connection still downloads the model.
	d, _ := client.NewDialer(c.addrs, c.device(t, "d"))
	defer d.Close()
	m, v, err := d.Model(ctx, 0)
	if err != nil || v != 1 || m.Items != 20 {
		t.Errorf("Model after bad input = %v, %d, %v", m, v, err)
	}
	var versions []uint64
	c.nodes[0].View(func(s *coordinator.State) { versions = s.Versions() })
	if len(versions) != 1 {
		t.Errorf("bad input changed the committed state: versions %v", versions)
	}
}

func TestQUICWrongALPN(t *testing.T) {
	c := newQUICCluster(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conf := c.clientTLS()
	conf.NextProtos = []string{"h3"}
	if conn, err := quic.DialAddr(ctx, c.addrs[0], conf, wire.QUICConfig()); err == nil {
		conn.CloseWithError(0, "")
		t.Error("handshake with ALPN h3 succeeded")
	}
	other, _ := pki.NewCA("other", time.Hour)
	if _, err := wire.Dial(ctx, c.addrs[0], pki.ClientTLS(other.Pool())); err == nil {
		t.Error("client trusting another CA connected")
	}
}

func mustEncode(t *testing.T, m wire.Message) []byte {
	t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func nan() float64 {
	var z float64
	return z / z
}
