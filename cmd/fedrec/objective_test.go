package main

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// 'fedrec coordinator --objective implicit' founds an implicit cluster
// whose models reach devices with the operator's event weights; an explicit
// one (the default) sends none.
func TestCoordinatorObjective(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"cert", "--dir", certs, "--nodes", "a"}, &out, &errb); err != nil {
		t.Fatalf("fedrec cert: %v\n%s", err, errb.String())
	}
	b, err := pki.Load(certs, "a")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		kind uint8
		want *wire.EventWeights
	}{
		{"implicit", []string{"--objective", "implicit", "--event-weights", "cart=5,purchase=20", "--alpha", "40"},
			wire.KindImplicit, &wire.EventWeights{View: 1, Click: 2, Cart: 5, Purchase: 20}},
		{"explicit by default", nil, wire.KindExplicit, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			var wg sync.WaitGroup
			defer func() {
				cancel()
				wg.Wait()
			}()
			var o, e syncBuffer
			args := append([]string{"coordinator", "--id", "a", "--data-dir", filepath.Join(t.TempDir(), "a"), "--bootstrap", "--certs", certs,
				"--raft-addr", "127.0.0.1:0", "--client-addr", "127.0.0.1:0", "--heartbeat", "100ms", "--log-level", "warn",
				"--items", "20", "--rank", "4"}, tt.args...)
			wg.Go(func() {
				if err := run(ctx, args, &o, &e); err != nil && ctx.Err() == nil {
					t.Errorf("fedrec coordinator: %v\n%s", err, e.String())
				}
			})
			var addr string
			waitFor(t, ctx, "the node's client address", func() bool {
				if m := reAddrs.FindStringSubmatch(o.String()); m != nil {
					addr = m[2]
				}
				return addr != ""
			})
			var h *wire.ModelHeader
			waitFor(t, ctx, "the initial model", func() bool {
				h, err = headerAt(ctx, addr, b)
				return err == nil && h != nil
			})
			switch {
			case h.Kind != tt.kind:
				t.Errorf("model kind %d, want %d", h.Kind, tt.kind)
			case (h.Events == nil) != (tt.want == nil) || (h.Events != nil && *h.Events != *tt.want):
				t.Errorf("model header's event weights %+v, want %+v", h.Events, tt.want)
			}
		})
	}
}

// headerAt asks one node for its newest model's header.
func headerAt(ctx context.Context, addr string, conf *pki.Bundle) (*wire.ModelHeader, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := wire.Dial(ctx, addr, conf.PeerTLS())
	if err != nil {
		return nil, err
	}
	defer conn.CloseWithError(0, "")
	var h *wire.ModelHeader
	err = wire.Exchange(ctx, conn, &wire.GetModel{Version: wire.Version}, wire.Limits{}, func(m wire.Message) (bool, error) {
		h, _ = m.(*wire.ModelHeader)
		return true, nil
	})
	return h, err
}
