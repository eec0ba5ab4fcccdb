package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
)

// TestSDKAgainstCluster runs the SDK as an app embeds it against a real
// coordinator node over QUIC: a device whose policy wants a bigger cohort
// declines, a permissive one trains, uploads, and its report shows it.
func TestSDKAgainstCluster(t *testing.T) {
	const items = 20
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.NodeBundle("n0")
	if err != nil {
		t.Fatal(err)
	}
	_, tr := raft.NewInmemTransport("raft-0")
	n, err := coordinator.New(coordinator.Config{
		ID: "n0", InMemory: true, Transport: tr, ClientAddr: "127.0.0.1:0", TLS: b, Bootstrap: true, Seed: 1,
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
		Training: coordinator.Training{Items: items, Rank: 4, Mean: 3.5, ClientsPerRound: 1, MinClients: 1, Clip: 0.5,
			NoiseMultiplier: 1.2, Population: 1000, CheckInWindow: 100 * time.Millisecond, RoundTimeout: 2 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	wctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := n.WaitFor(wctx, func(s *coordinator.State) bool { return s.Current() != nil }); err != nil {
		t.Fatal(err)
	}
	catalogue := make([]string, items)
	for i := range catalogue {
		catalogue[i] = fmt.Sprintf("sku-%d", i)
	}

	newDevice := func(t *testing.T, p client.Policy) *client.Client {
		d, err := client.NewDialer([]string{n.ClientAddr()}, pki.ClientTLS(ca.Pool()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		fed, err := client.NewNetwork(client.NetworkConfig{ClientID: t.Name(), Dialer: d, Items: catalogue})
		if err != nil {
			t.Fatal(err)
		}
		key := make([]byte, 32)
		c, err := client.New(client.Config{Dir: t.TempDir(), Key: key, Policy: p, Federation: fed})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		if _, err := c.Sync(ctx); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		for i := range 8 {
			if err := c.Record(ctx, client.Interaction{Item: catalogue[i], Kind: client.Rating, Value: float64(1 + i%5)}); err != nil {
				t.Fatal(err)
			}
		}
		c.OptIn()
		return c
	}

	t.Run("declines a cohort below its policy", func(t *testing.T) {
		c := newDevice(t, client.DefaultPolicy()) // wants cohorts of 100
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		_, err := participate(ctx, c)
		if !errors.Is(err, client.ErrDeclined) {
			t.Fatalf("Participate = %v, want ErrDeclined", err)
		}
	})
	t.Run("takes part", func(t *testing.T) {
		c := newDevice(t, client.Policy{MinCohort: 1, MinNoiseMultiplier: 1, MaxClipNorm: 1, Epsilon: 50, Delta: 1e-6, TrustSamplingRate: true})
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		rr, err := participate(ctx, c)
		if err != nil {
			t.Fatalf("Participate: %v", err)
		}
		if rr.BytesSent == 0 || rr.ClipNorm != 0.5 || rr.NoiseMultiplier != 1.2 {
			t.Errorf("round report %+v, want bytes sent under clip 0.5 and noise 1.2", rr)
		}
		rep, err := c.Report()
		if err != nil || len(rep.Rounds) != 1 {
			t.Errorf("Report = %+v, %v; want one round", rep, err)
		}
		if err := n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current() != nil && s.Current().Version >= 2 }); err != nil {
			t.Errorf("the cluster committed no model from the device's update: %v", err)
		}
	})
}

// participate retries while the coordinator has no round open yet.
func participate(ctx context.Context, c *client.Client) (client.RoundReport, error) {
	for {
		rr, err := c.Participate(ctx)
		if !errors.Is(err, client.ErrNoRound) {
			return rr, err
		}
		select {
		case <-ctx.Done():
			return rr, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
