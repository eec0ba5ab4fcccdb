package coordinator_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// exchange sends req on a new stream of conn and returns the first reply
// (an *wire.Error as an error).
func exchange(ctx context.Context, conn *quic.Conn, req wire.Message) (wire.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out wire.Message
	err := wire.Exchange(ctx, conn, req, wire.Limits{}, func(m wire.Message) (bool, error) {
		out = m
		return true, nil
	})
	return out, err
}

// dialAs connects to addr with conf, failing the test if it cannot.
func dialAs(t *testing.T, ctx context.Context, addr string, conf *tls.Config) *quic.Conn {
	t.Helper()
	conn, err := wire.Dial(ctx, addr, conf)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return conn
}

// Only devices with a valid certificate of the device CA are served, each
// only under its own client ID; nodes still join with theirs. Every
// refusal is a clear code, sent before the request's body is read.
func TestQUICDeviceAuthentication(t *testing.T) {
	c := newQUICCluster(t, 1)
	n := c.nodes[0]
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	other, _ := pki.NewCA("another device CA", time.Hour)
	wrongCA, _ := other.IssueDevice("mallory", time.Hour)
	expired, _ := c.devCA.IssueDevice("old-phone", -time.Minute)
	nodeB, _ := c.ca.NodeBundle("n0")
	// Device certificates are Ed25519 by default; P-256 ones are served
	// alike.
	p256, _ := c.devCA.IssueDeviceKey("carol", time.Hour, pki.P256)
	expiredP256, _ := c.devCA.IssueDeviceKey("old-carol", -time.Minute, pki.P256)

	checkIn := func(id string) wire.Message { return &wire.CheckIn{Version: wire.Version, ClientID: id} }
	getModel := &wire.GetModel{Version: wire.Version}
	upload := func(id string) wire.Message {
		return &wire.Upload{Version: wire.Version, Round: 1, ClientID: id, Ticket: make([]byte, wire.TicketLen), Model: 1, Delta: make(wire.Vec, 20*5+1)}
	}
	join := &wire.Join{Version: wire.Version, ID: n.ID(), RaftAddr: n.RaftAddr(), ClientAddr: n.ClientAddr()}
	tests := []struct {
		name string
		conf *tls.Config
		req  wire.Message
		code wire.Code // 0: served
	}{
		{"no certificate, check-in", c.clientTLS(), checkIn("alice"), wire.CodeUnauthenticated},
		{"no certificate, model", c.clientTLS(), getModel, wire.CodeUnauthenticated},
		{"no certificate, upload", c.clientTLS(), upload("alice"), wire.CodeUnauthenticated},
		{"another CA's certificate", pki.DeviceTLS(c.ca.Pool(), wrongCA), checkIn("mallory"), wire.CodeUnauthenticated},
		{"expired certificate", pki.DeviceTLS(c.ca.Pool(), expired), checkIn("old-phone"), wire.CodeUnauthenticated},
		{"another device's ID, check-in", c.device(t, "bob"), checkIn("alice"), wire.CodeForbidden},
		{"another device's ID, upload", c.device(t, "bob"), upload("alice"), wire.CodeForbidden},
		{"another device's ID, secagg", c.device(t, "bob"), &wire.SecAggUnmask{SecAggHeader: wire.SecAggHeader{Version: wire.Version, Round: 1, ClientID: "alice", Ticket: make([]byte, wire.TicketLen)}}, wire.CodeForbidden},
		{"device joins", c.device(t, "bob"), join, wire.CodeForbidden},
		{"device reads a model", c.device(t, "bob"), getModel, 0},
		{"own ID, upload without a round", c.device(t, "bob"), upload("bob"), wire.CodeNoRound},
		{"P-256 device, own ID", pki.DeviceTLS(c.ca.Pool(), p256), upload("carol"), wire.CodeNoRound},
		{"P-256 device, another device's ID", pki.DeviceTLS(c.ca.Pool(), p256), checkIn("alice"), wire.CodeForbidden},
		{"P-256 device reads a model", pki.DeviceTLS(c.ca.Pool(), p256), getModel, 0},
		{"expired P-256 certificate", pki.DeviceTLS(c.ca.Pool(), expiredP256), checkIn("old-carol"), wire.CodeUnauthenticated},
		{"node joins", nodeB.PeerTLS(), join, 0},
		{"node reads a model", nodeB.PeerTLS(), getModel, 0},
	}
	for _, tc := range tests {
		conn := dialAs(t, ctx, c.addrs[0], tc.conf)
		_, err := exchange(ctx, conn, tc.req)
		if got := wire.CodeOf(err); got != tc.code || (tc.code == 0 && err != nil) {
			t.Errorf("%s: %s = %v, want code %v", tc.name, tc.req.Type(), err, tc.code)
		}
	}
	// An unauthenticated upload is refused from its header: its body
	// (here never sent) is not waited for nor read.
	anon := dialAs(t, ctx, c.addrs[0], c.clientTLS())
	header := binary.BigEndian.AppendUint32(nil, 16000) // within the limit
	if msg, err := rawExchange(t, ctx, anon, append(header, byte(wire.TypeUpload))); err != nil || wire.CodeOf(msg.(error)) != wire.CodeUnauthenticated {
		t.Errorf("upload header without a certificate: %v, %v; want code %v", msg, err, wire.CodeUnauthenticated)
	}
	var versions []uint64
	n.View(func(s *coordinator.State) { versions = s.Versions() })
	if len(versions) != 1 {
		t.Errorf("refused requests changed the state: versions %v", versions)
	}
}

// A device revoked in the deny-list (by ID or by certificate serial) is
// refused on the connection it already holds, without a restart; taking
// it off the list lets it back in.
func TestQUICRevocation(t *testing.T) {
	c := newQUICCluster(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	lost, _ := c.devCA.IssueDevice("lost-phone", time.Hour)
	byID := dialAs(t, ctx, c.addrs[0], c.device(t, "stolen-phone"))
	bySerial := dialAs(t, ctx, c.addrs[0], pki.DeviceTLS(c.ca.Pool(), lost))
	fine := dialAs(t, ctx, c.addrs[0], c.device(t, "fine-phone"))
	req := &wire.GetModel{Version: wire.Version}
	for _, conn := range []*quic.Conn{byID, bySerial, fine} {
		if _, err := exchange(ctx, conn, req); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
	}
	list := fmt.Sprintf("# revoked\nid:stolen-phone\nserial:%x\n", lost.Leaf.SerialNumber)
	if err := os.WriteFile(c.revoked, []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	// The node checks the file at most once a second.
	waitCode := func(conn *quic.Conn, want wire.Code) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := exchange(ctx, conn, req)
			if wire.CodeOf(err) == want && (want != 0 || err == nil) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GetModel = %v, want code %v", err, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitCode(byID, wire.CodeUnauthenticated)
	waitCode(bySerial, wire.CodeUnauthenticated)
	if _, err := exchange(ctx, fine, req); err != nil {
		t.Errorf("a device not on the list: %v", err)
	}
	// A new connection with the revoked certificate is refused too.
	again := dialAs(t, ctx, c.addrs[0], pki.DeviceTLS(c.ca.Pool(), lost))
	if _, err := exchange(ctx, again, &wire.CheckIn{Version: wire.Version, ClientID: "lost-phone"}); wire.CodeOf(err) != wire.CodeUnauthenticated {
		t.Errorf("revoked device checks in: %v, want code %v", err, wire.CodeUnauthenticated)
	}
	if err := os.WriteFile(c.revoked, []byte("id:someone-else\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitCode(byID, 0)
}
