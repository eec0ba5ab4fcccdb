package coordinator_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// serverGoroutines counts the goroutines running fn, a function of the
// node's QUIC server.
func serverGoroutines(fn string) int {
	buf := make([]byte, 16<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("deviceapi.(*Server)."+fn+"("))
}

// flood opens conns connections with conf, each with as many streams as
// it may open that send two bytes of a frame header and stall. It returns
// the connections that were accepted and the streams they opened.
func flood(ctx context.Context, addr string, conf *tls.Config, conns int) (open []*quic.Conn, streams int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			c, err := wire.Dial(ctx, addr, conf)
			if err != nil {
				return // refused: over a limit
			}
			n := 0
			for range 2 * wire.MaxStreams {
				st, err := c.OpenStream()
				if err != nil {
					break // the peer's stream limit
				}
				st.Write([]byte{0, 0})
				n++
			}
			mu.Lock()
			open, streams = append(open, c), streams+n
			mu.Unlock()
		})
	}
	wg.Wait()
	return open, streams
}

// A flood of connections and streams, without a certificate or with one
// stolen device certificate, holds a bounded number of connections,
// streams and goroutines on the node, which keeps serving other devices.
func TestQUICFlood(t *testing.T) {
	const maxConns = 64 // an eighth, 8, may be unauthenticated
	c := newQUICClusterConf(t, 1, training(), func(cfg *coordinator.Config) { cfg.MaxConns = maxConns })
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// More than the listener's limit: without limits per kind of peer,
	// the flood would take every connection.
	anon, anonStreams := flood(ctx, c.addrs[0], c.clientTLS(), maxConns+16)
	stolen, stolenStreams := flood(ctx, c.addrs[0], c.device(t, "mallory"), 24)
	defer func() {
		for _, conn := range append(anon, stolen...) {
			conn.CloseWithError(0, "")
		}
	}()
	if anonStreams > len(anon)*wire.MaxStreams || stolenStreams > len(stolen)*wire.MaxStreams {
		t.Errorf("streams opened: %d on %d connections, %d on %d; want at most %d each", anonStreams, len(anon), stolenStreams, len(stolen), wire.MaxStreams)
	}

	// Another device is served meanwhile.
	d, err := client.NewDialer(c.addrs, c.device(t, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	mctx, mcancel := context.WithTimeout(ctx, 10*time.Second)
	if _, v, err := d.Model(mctx, 0); err != nil || v != 1 {
		t.Errorf("another device during the flood: version %d, %v", v, err)
	}
	mcancel()

	// At most 8 unauthenticated connections, 4 of mallory's and alice's
	// one are served, each with at most MaxStreams requests.
	const wantConns = maxConns/8 + 4 + 1
	var conns, streams int
	deadline := time.Now().Add(time.Second) // well within anonLifetime
	for {
		conns, streams = serverGoroutines("serveConn"), serverGoroutines("serveStream")
		if conns <= wantConns || time.Now().After(deadline) {
			break // closing the refused connections takes a moment
		}
		time.Sleep(50 * time.Millisecond)
	}
	if conns > wantConns || streams > wantConns*wire.MaxStreams {
		t.Errorf("node serves %d connections and %d streams under the flood, want at most %d and %d", conns, streams, wantConns, wantConns*wire.MaxStreams)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("flood: %d+%d connections accepted by QUIC, node serves %d connections, %d streams; heap in use %d → %d MiB (test clients included)",
		len(anon), len(stolen), conns, streams, before.HeapInuse>>20, after.HeapInuse>>20)

	// Unauthenticated connections are closed after a few seconds: the
	// flood costs the node nothing more.
	if err := waitUntil(ctx, 10*time.Second, func() bool { return serverGoroutines("serveConn") <= 4+1 }); err != nil {
		t.Errorf("unauthenticated connections still served: %d connections", serverGoroutines("serveConn"))
	}
}

func waitUntil(ctx context.Context, d time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
