package wire_test

import (
	"context"
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

func testServer(t *testing.T, lim wire.ConnLimits) (*wire.Listener, *pki.CA) {
	t.Helper()
	ca, err := pki.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.NodeBundle("srv")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := wire.ListenWith("127.0.0.1:0", b.ServerTLS(), lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ca
}

// A listener holds at most MaxConns connections: one more is refused
// before its handshake, and a slot frees when a connection closes.
func TestListenMaxConns(t *testing.T) {
	ln, ca := testServer(t, wire.ConnLimits{MaxConns: 3})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	go func() {
		for {
			if _, err := ln.Accept(ctx); err != nil {
				return
			}
		}
	}()
	var conns []*quic.Conn
	defer func() {
		for _, c := range conns {
			c.CloseWithError(0, "")
		}
	}()
	for range 3 {
		c, err := wire.Dial(ctx, ln.Addr().String(), pki.ClientTLS(ca.Pool()))
		if err != nil {
			t.Fatalf("connection under the limit: %v", err)
		}
		conns = append(conns, c)
	}
	if c, err := wire.Dial(ctx, ln.Addr().String(), pki.ClientTLS(ca.Pool())); err == nil {
		c.CloseWithError(0, "")
		t.Fatal("a fourth connection was accepted, want it refused")
	}
	if n := ln.Conns(); n != 3 {
		t.Errorf("Conns() = %d, want 3", n)
	}
	conns[0].CloseWithError(0, "")
	conns = conns[1:]
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := wire.Dial(ctx, ln.Addr().String(), pki.ClientTLS(ca.Pool()))
		if err == nil {
			conns = append(conns, c)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after a connection closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The server never accepts 0-RTT: a client that resumes a session and
// sends its request in its first flight still has it read only after the
// handshake (a replayable first flight never changes state).
func TestNo0RTT(t *testing.T) {
	if wire.QUICConfig().Allow0RTT {
		t.Fatal("QUICConfig allows 0-RTT")
	}
	ln, ca := testServer(t, wire.ConnLimits{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	go func() {
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				st, err := c.AcceptStream(ctx)
				if err != nil {
					return
				}
				b, _ := io.ReadAll(st)
				st.Write(b)
				st.Close()
			}()
		}
	}()
	conf := wire.TLSConfig(pki.ClientTLS(ca.Pool()))
	conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	qc := wire.QUICConfig()
	qc.Allow0RTT = true // the client would if the server let it
	for i := range 2 {
		conn, err := quic.DialAddrEarly(ctx, ln.Addr().String(), conf, qc)
		if err != nil {
			t.Fatal(err)
		}
		st, err := conn.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		st.Write([]byte{1}) // in the first flight when 0-RTT is on
		st.Close()
		if b, err := io.ReadAll(st); err != nil || len(b) != 1 {
			t.Fatalf("echo = %v, %v", b, err)
		}
		cs := conn.ConnectionState()
		if cs.Used0RTT {
			t.Errorf("connection %d used 0-RTT", i)
		}
		if i == 1 && !cs.TLS.DidResume {
			t.Logf("connection %d did not resume its session", i)
		}
		conn.CloseWithError(0, "")
	}
}
