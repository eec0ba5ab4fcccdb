package coordinator_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/quic-go/webtransport-go"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// wtCluster is a quicCluster whose nodes also serve WebTransport, with a
// device token key.
type wtCluster struct {
	*quicCluster
	key ed25519.PrivateKey
}

func newWTCluster(t *testing.T, size int, tr coordinator.Training) *wtCluster {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := newQUICClusterConf(t, size, tr, func(cfg *coordinator.Config) {
		cfg.WebTransportAddr = "127.0.0.1:0"
		cfg.TLS.TokenKeys = []ed25519.PublicKey{pub}
	})
	return &wtCluster{quicCluster: c, key: key}
}

func (c *wtCluster) url(i int) string {
	return "https://" + c.nodes[i].WebTransportAddr() + wire.WebTransportPath
}

// token issues a token for device, valid from now+from for ttl.
func (c *wtCluster) token(t *testing.T, device string, from, ttl time.Duration) []byte {
	t.Helper()
	b, err := wire.IssueToken(c.key, device, time.Now().Add(from), ttl, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// session opens an authenticated session as a browser would.
func (c *wtCluster) session(t *testing.T, ctx context.Context, i int, token []byte) *webtransport.Session {
	t.Helper()
	sess, _, err := wire.DialWebTransport(ctx, c.url(i), c.clientTLS(), token)
	if err != nil {
		t.Fatalf("DialWebTransport: %v", err)
	}
	t.Cleanup(func() { sess.CloseWithError(0, "") })
	return sess
}

// rawSession opens a session without authenticating it.
func (c *wtCluster) rawSession(t *testing.T, ctx context.Context, i int) *webtransport.Session {
	t.Helper()
	d := &webtransport.Transport{TLSClientConfig: wire.WebTransportTLSConfig(c.clientTLS()), QUICConfig: wire.WebTransportQUICConfig()}
	rsp, sess, err := d.Dial(ctx, c.url(i), http.Header{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if rsp.StatusCode != http.StatusOK {
		t.Fatalf("dial: %s", rsp.Status)
	}
	t.Cleanup(func() { sess.CloseWithError(0, "") })
	return sess
}

func wtExchange(ctx context.Context, sess *webtransport.Session, req wire.Message) (wire.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out wire.Message
	err := wire.ExchangeSession(ctx, sess, req, wire.Limits{}, func(m wire.Message) (bool, error) {
		out = m
		return true, nil
	})
	return out, err
}

// wtRaw writes raw bytes on a new stream of sess and reads one reply.
func wtRaw(t *testing.T, ctx context.Context, sess *webtransport.Session, b []byte) (wire.Message, error) {
	t.Helper()
	st, err := sess.OpenStreamSync(ctx)
	return rawOn(t, st, err, b)
}

// A browser-like device over WebTransport, authenticated by its device
// token, checks in, downloads the model and uploads in the same rounds as
// devices over QUIC, and its update is counted.
func TestWebTransportRound(t *testing.T) {
	c := newWTCluster(t, 1, training())
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cctx, stop := context.WithCancel(ctx)
	wg, _ := runClients(t, cctx, c.quicCluster, 3)
	defer func() { stop(); wg.Wait() }()

	sess := c.session(t, ctx, 0, c.token(t, "browser-1", 0, time.Hour))
	for {
		if ctx.Err() != nil {
			t.Fatal("the WebTransport device was never selected")
		}
		reply, err := wtExchange(ctx, sess, &wire.CheckIn{Version: wire.Version, ClientID: "browser-1", Examples: 8})
		if wire.CodeOf(err) == wire.CodeUnavailable {
			continue
		}
		if err != nil {
			t.Fatalf("CheckIn: %v", err)
		}
		plan, ok := reply.(*wire.Plan)
		if !ok {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		// Download the round's model on the session.
		var b *wire.ModelBuilder
		err = wire.ExchangeSession(ctx, sess, &wire.GetModel{Version: wire.Version, Model: plan.Model}, wire.Limits{}, func(m wire.Message) (bool, error) {
			switch m := m.(type) {
			case *wire.ModelHeader:
				var err error
				b, err = wire.NewModelBuilder(m)
				return false, err
			case *wire.ModelChunk:
				if err := b.Add(m); err != nil {
					return true, err
				}
				return b.Done(), nil
			}
			return true, wire.Errorf(wire.CodeUnknownType, "unexpected %s", m.Type())
		})
		if err != nil {
			t.Fatalf("GetModel: %v", err)
		}
		m, err := b.Model()
		if err != nil {
			t.Fatalf("model: %v", err)
		}
		if got := wire.Digest(m); string(got[:]) != string(plan.Digest) {
			t.Fatal("the model downloaded over WebTransport does not match the plan's digest")
		}
		delta := make(wire.Vec, model.Dim(plan.Items, plan.Rank))
		delta[0] = 0.001
		_, err = wtExchange(ctx, sess, &wire.Upload{Version: wire.Version, Round: plan.Round, ClientID: "browser-1", Ticket: plan.Ticket, Model: plan.Model, N: 8, Delta: delta})
		if wire.CodeOf(err) == wire.CodeNoRound { // the round closed meanwhile
			continue
		}
		if err != nil {
			t.Fatalf("Upload: %v", err)
		}
		// The round commits with the browser's update in it.
		if err := c.nodes[0].WaitFor(ctx, func(s *coordinator.State) bool { return s.Current().Version > plan.Model }); err != nil {
			t.Fatal(err)
		}
		return
	}
}

// Sessions without a valid token are refused with CodeUnauthenticated
// before any request is served; a device's token is good only for its own
// client ID; revoking the device in the deny-list ends its session's
// service without a restart.
func TestWebTransportAuthentication(t *testing.T) {
	c := newWTCluster(t, 1, training())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	foreign, err := wire.IssueToken(otherKey, "mallory", time.Now(), time.Hour, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := c.token(t, "alice", 0, time.Hour)
	tampered := append([]byte(nil), good...)
	tampered[10] ^= 1
	if err := pki.AppendRevoked(filepath.Dir(c.revoked), "id:stolen"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the deny-list is reloaded every second

	tests := []struct {
		name  string
		token []byte
	}{
		{"expired", c.token(t, "alice", -2*time.Hour, time.Hour)},
		{"issued in the future", c.token(t, "alice", 10*time.Minute, time.Hour)},
		{"another key", foreign},
		{"tampered", tampered},
		{"not a token", []byte("let me in")},
		{"revoked device", c.token(t, "stolen", 0, time.Hour)},
	}
	for _, tc := range tests {
		_, _, err := wire.DialWebTransport(ctx, c.url(0), c.clientTLS(), tc.token)
		if wire.CodeOf(err) != wire.CodeUnauthenticated {
			t.Errorf("%s: DialWebTransport = %v, want code %v", tc.name, err, wire.CodeUnauthenticated)
		}
	}

	// No token: the first request is refused, whatever it is.
	for _, req := range []wire.Message{&wire.CheckIn{Version: wire.Version, ClientID: "alice"}, &wire.GetModel{Version: wire.Version}} {
		sess := c.rawSession(t, ctx, 0)
		if _, err := wtExchange(ctx, sess, req); wire.CodeOf(err) != wire.CodeUnauthenticated {
			t.Errorf("%s without a token = %v, want code %v", req.Type(), err, wire.CodeUnauthenticated)
		}
	}

	// A valid token: its device only.
	sess := c.session(t, ctx, 0, good)
	if _, err := wtExchange(ctx, sess, &wire.GetModel{Version: wire.Version}); err != nil {
		t.Errorf("GetModel with a valid token: %v", err)
	}
	if _, err := wtExchange(ctx, sess, &wire.CheckIn{Version: wire.Version, ClientID: "bob"}); wire.CodeOf(err) != wire.CodeForbidden {
		t.Errorf("CheckIn as another device = %v, want code %v", err, wire.CodeForbidden)
	}
	if _, err := wtExchange(ctx, sess, &wire.Authenticate{Version: wire.Version, Token: good}); wire.CodeOf(err) != wire.CodeUnknownType {
		t.Errorf("a second Authenticate = %v, want code %v", err, wire.CodeUnknownType)
	}
	if _, err := wtExchange(ctx, sess, &wire.Join{Version: wire.Version, ID: "x", RaftAddr: "a:1", ClientAddr: "a:2"}); wire.CodeOf(err) != wire.CodeForbidden {
		t.Errorf("Join over WebTransport = %v, want code %v", err, wire.CodeForbidden)
	}

	// Revoked while connected: the next request is refused.
	if err := pki.AppendRevoked(filepath.Dir(c.revoked), "id:alice"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := wtExchange(ctx, sess, &wire.GetModel{Version: wire.Version})
		if wire.CodeOf(err) == wire.CodeUnauthenticated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetModel after revocation = %v, want code %v", err, wire.CodeUnauthenticated)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A token whose lifetime ends during a session: requests after its expiry
// are refused.
func TestWebTransportTokenExpiresInSession(t *testing.T) {
	c := newWTCluster(t, 1, training())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sess := c.session(t, ctx, 0, c.token(t, "alice", 0, 1500*time.Millisecond))
	if _, err := wtExchange(ctx, sess, &wire.GetModel{Version: wire.Version}); err != nil {
		t.Fatalf("GetModel: %v", err)
	}
	time.Sleep(1600 * time.Millisecond)
	if _, err := wtExchange(ctx, sess, &wire.GetModel{Version: wire.Version}); wire.CodeOf(err) != wire.CodeUnauthenticated {
		t.Errorf("GetModel after the token expired = %v, want code %v", err, wire.CodeUnauthenticated)
	}
}

// Oversized and malformed frames get the codes they get over QUIC, and
// the session keeps serving.
func TestWebTransportBadInput(t *testing.T) {
	c := newWTCluster(t, 1, training())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sess := c.session(t, ctx, 0, c.token(t, "c", 0, time.Hour))
	frame := func(typ wire.Type, n int, body []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(n))
		return append(append(b, byte(typ)), body...)
	}
	dim := model.Dim(training().Items, training().Rank)
	tests := []struct {
		name string
		b    []byte
		code wire.Code
	}{
		{"check-in of 1 MiB", frame(wire.TypeCheckIn, 1<<20, nil), wire.CodeTooLarge},
		{"upload above the model", frame(wire.TypeUpload, 8*dim+(16<<10)+1, nil), wire.CodeTooLarge},
		{"a reply type", frame(wire.TypePlan, 10, nil), wire.CodeUnknownType},
		{"unknown type", frame(wire.Type(200), 1, []byte{0}), wire.CodeUnknownType},
		{"not msgpack", frame(wire.TypeCheckIn, 3, []byte{0xc1, 0xc1, 0xc1}), wire.CodeMalformed},
	}
	for _, tc := range tests {
		msg, err := wtRaw(t, ctx, sess, tc.b)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := wire.CodeOf(msg.(error)); got != tc.code {
			t.Errorf("%s: %v, want code %v", tc.name, msg, tc.code)
		}
	}
	if _, err := wtExchange(ctx, sess, &wire.GetModel{Version: wire.Version}); err != nil {
		t.Errorf("GetModel after bad input: %v", err)
	}
}
