package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/model"
)

// TestSDKAgainstCluster runs the SDK as an app embeds it against a real
// coordinator node over QUIC: a device whose policy wants a bigger cohort
// declines, a permissive one trains, uploads, and its report shows it.
func TestSDKAgainstCluster(t *testing.T) {
	const items = 20
	n, ca := startNode(t, coordinator.Training{Items: items, Rank: 4, Mean: 3.5, ClientsPerRound: 1, MinClients: 1, Clip: 0.5,
		NoiseMultiplier: 1.2, Population: 1000, CheckInWindow: 100 * time.Millisecond, RoundTimeout: 2 * time.Second})
	catalogue := catalogueOf(items)

	device := func(t *testing.T, p client.Policy) *client.Client { return newDevice(t, n, ca, catalogue, p) }
	t.Run("declines a cohort below its policy", func(t *testing.T) {
		c := device(t, client.DefaultPolicy()) // wants cohorts of 100
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		_, err := participate(ctx, c)
		if !errors.Is(err, client.ErrDeclined) {
			t.Fatalf("Participate = %v, want ErrDeclined", err)
		}
	})
	t.Run("takes part", func(t *testing.T) {
		c := device(t, permissive)
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

// TestSDKSecureRound has three devices take part in a secure-aggregation
// round through the SDK: the coordinator learns only their sum.
func TestSDKSecureRound(t *testing.T) {
	const items = 20
	n, ca := startNode(t, coordinator.Training{Items: items, Rank: 4, Mean: 3.5, ClientsPerRound: 3, MinClients: 3, Clip: 0.5,
		NoiseMultiplier: 1.2, Population: 1000, CheckInWindow: 2 * time.Second, RoundTimeout: 10 * time.Second, SecAgg: true, SecAggPhase: 5 * time.Second})
	catalogue := catalogueOf(items)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var devices []*client.Client
	for range 3 {
		devices = append(devices, newDevice(t, n, ca, catalogue, permissive))
	}
	commitRound(t, ctx, n, devices, "secure round")
}

// TestSDKImplicitShop runs a shop on a real implicit cluster over QUIC:
// devices that recorded only views, carts and purchases take part in a
// round, the cluster commits a model from their updates, and each device
// recommends from that model. On an explicit cluster the same devices have
// nothing to train on and decline.
func TestSDKImplicitShop(t *testing.T) {
	const items = 20
	catalogue := catalogueOf(items)
	// Each shopper browses a few items, puts one in the cart and buys one.
	shopper := func(i int) []client.Interaction {
		return []client.Interaction{
			{Item: catalogue[i], Kind: client.View}, {Item: catalogue[i+1], Kind: client.View},
			{Item: catalogue[i+2], Kind: client.View}, {Item: catalogue[i+2], Kind: client.Cart},
			{Item: catalogue[i+3], Kind: client.Purchase, Value: 2}, // two of them
		}
	}
	training := func(kind model.Kind) coordinator.Training {
		return coordinator.Training{Kind: kind, Items: items, Rank: 4, ClientsPerRound: 2, MinClients: 2, Clip: 0.5,
			NoiseMultiplier: 1.2, Population: 1000, CheckInWindow: 2 * time.Second, RoundTimeout: 10 * time.Second}
	}

	t.Run("explicit cluster: nothing to learn from", func(t *testing.T) {
		tr := training(model.Explicit)
		tr.ClientsPerRound, tr.MinClients = 1, 1
		n, ca := startNode(t, tr)
		c := deviceWith(t, n, ca, catalogue, permissive, shopper(0))
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		_, err := participate(ctx, c)
		var d *client.DeclineError
		if !errors.As(err, &d) || d.Reason != client.ReasonNoData {
			t.Errorf("Participate = %v, want a no_data decline", err)
		}
	})

	t.Run("implicit cluster", func(t *testing.T) {
		tr := training(model.Implicit)
		tr.Events = coordinator.EventWeights{View: 1, Click: 2, Cart: 5, Purchase: 20}
		tr.Train = model.DefaultTrainConfig()
		tr.Train.Alpha = 20
		n, ca := startNode(t, tr)
		devices := []*client.Client{
			deviceWith(t, n, ca, catalogue, permissive, shopper(0)),
			deviceWith(t, n, ca, catalogue, permissive, shopper(10)),
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		reports, errs := participateAll(ctx, devices)
		for i, err := range errs {
			if rr := reports[i]; err == nil && (rr.BytesSent == 0 || rr.ModelVersion != 1) {
				err = fmt.Errorf("round report %+v, want bytes sent for model 1", rr)
			}
			if err != nil {
				t.Fatalf("Participate: %v", err)
			}
		}
		if err := n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current() != nil && s.Current().Version >= 2 }); err != nil {
			t.Fatalf("no model committed from the shoppers' round: %v", err)
		}
		for i, c := range devices {
			if ok, err := c.Sync(ctx); err != nil || !ok || c.ModelVersion() != 2 {
				t.Fatalf("device %d: Sync = %v, %v, model %d; want the committed model 2", i, ok, err, c.ModelVersion())
			}
			recs, err := c.Recommend(ctx, 5, client.Filter{})
			if err != nil || len(recs) != 5 {
				t.Fatalf("device %d: Recommend = %v, %v; want 5 items", i, recs, err)
			}
			seen := map[string]bool{}
			for _, x := range shopper(10 * i) {
				seen[x.Item] = true
			}
			for j, r := range recs {
				if seen[r.Item] {
					t.Errorf("device %d: recommended %s, which the shopper already interacted with", i, r.Item)
				}
				if j > 0 && r.Score > recs[j-1].Score {
					t.Errorf("device %d: recommendations not best first: %v", i, recs)
				}
			}
		}
	})
}

var deviceSeq atomic.Int64

func catalogueOf(items int) []string {
	out := make([]string, items)
	for i := range out {
		out[i] = fmt.Sprintf("sku-%d", i)
	}
	return out
}

var permissive = client.Policy{MinCohort: 1, MinNoiseMultiplier: 1, MaxClipNorm: 1, Epsilon: 50, Delta: 1e-6, TrustSamplingRate: true}

// startNode starts a one-node cluster with the client protocol on QUIC.
func startNode(t *testing.T, tr coordinator.Training) (*coordinator.Node, *pki.CA) {
	t.Helper()
	return startNodeWith(t, tr, nil)
}

// startNodeWith is startNode with the node's TLS bundle shaped by bundle
// (nil: as made).
func startNodeWith(t *testing.T, tr coordinator.Training, bundle func(*pki.Bundle)) (*coordinator.Node, *pki.CA) {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.NodeBundle("n0")
	if err != nil {
		t.Fatal(err)
	}
	if bundle != nil {
		bundle(b)
	}
	_, trans := raft.NewInmemTransport("raft-0")
	n, err := coordinator.New(coordinator.Config{
		ID: "n0", InMemory: true, Transport: trans, ClientAddr: "127.0.0.1:0", TLS: b, Bootstrap: true, Seed: 1,
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
		Training: tr,
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
	return n, ca
}

// newDevice is an app's SDK with the cluster's model and a few ratings,
// opted in.
func newDevice(t *testing.T, n *coordinator.Node, ca *pki.CA, catalogue []string, p client.Policy) *client.Client {
	t.Helper()
	var xs []client.Interaction
	for i := range 8 {
		xs = append(xs, client.Interaction{Item: catalogue[i], Kind: client.Rating, Value: float64(1 + i%5)})
	}
	return deviceWith(t, n, ca, catalogue, p, xs)
}

// deviceWith is an app's SDK with the cluster's model and the
// interactions xs, opted in.
func deviceWith(t *testing.T, n *coordinator.Node, ca *pki.CA, catalogue []string, p client.Policy, xs []client.Interaction) *client.Client {
	t.Helper()
	{
		d, err := client.NewDialer([]string{n.ClientAddr()}, pki.ClientTLS(ca.Pool()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		fed, err := client.NewNetwork(client.NetworkConfig{ClientID: fmt.Sprintf("%s-%d", t.Name(), deviceSeq.Add(1)), Dialer: d, Items: catalogue})
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
		for _, x := range xs {
			if err := c.Record(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		c.OptIn()
		return c
	}
}

// participate retries while the coordinator has no round open yet.
// participateAll has every device take part at once, as participate, and
// returns their reports and errors in the devices' order.
func participateAll(ctx context.Context, devices []*client.Client) ([]client.RoundReport, []error) {
	reports, errs := make([]client.RoundReport, len(devices)), make([]error, len(devices))
	var wg sync.WaitGroup
	for i, c := range devices {
		wg.Go(func() { reports[i], errs[i] = participate(ctx, c) })
	}
	wg.Wait()
	return reports, errs
}

// commitRound has every device take part in a round and checks that each
// sent its update and that the round (what, for the messages) committed
// model version 2.
func commitRound(t *testing.T, ctx context.Context, n *coordinator.Node, devices []*client.Client, what string) {
	t.Helper()
	reports, errs := participateAll(ctx, devices)
	for i, err := range errs {
		if err == nil && reports[i].BytesSent == 0 {
			err = fmt.Errorf("device %d sent nothing", i)
		}
		if err != nil {
			t.Errorf("Participate: %v", err)
		}
	}
	if err := n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current() != nil && s.Current().Version >= 2 }); err != nil {
		t.Errorf("no model committed from the %s: %v", what, err)
	}
}

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

// TestSDKCatalogueFromCluster: a cluster founded with its catalogue sends
// the catalogue's digest with every model, so that a device whose
// catalogue has the same items in another order refuses the model
// (ErrCatalogueMismatch) rather than label its recommendations with the
// wrong items; the right catalogue syncs.
func TestSDKCatalogueFromCluster(t *testing.T) {
	const items = 20
	catalogue := catalogueOf(items)
	n, ca := startNode(t, coordinator.Training{Items: items, Rank: 4, Mean: 3.5, ClientsPerRound: 1, MinClients: 1,
		Catalogue: coordinator.CatalogueOf(catalogue)})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sync := func(items []string) error {
		d, err := client.NewDialer([]string{n.ClientAddr()}, pki.ClientTLS(ca.Pool()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		fed, err := client.NewNetwork(client.NetworkConfig{ClientID: fmt.Sprintf("%s-%d", t.Name(), deviceSeq.Add(1)), Dialer: d, Items: items})
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.New(client.Config{Dir: t.TempDir(), Key: make([]byte, 32), Federation: fed})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_, err = c.Sync(ctx)
		return err
	}
	reordered := slices.Clone(catalogue)
	reordered[3], reordered[4] = reordered[4], reordered[3]
	if err := sync(reordered); !errors.Is(err, client.ErrCatalogueMismatch) {
		t.Errorf("Sync with a reordered catalogue = %v, want ErrCatalogueMismatch", err)
	}
	if err := sync(catalogue); err != nil {
		t.Errorf("Sync with the cluster's catalogue = %v", err)
	}
}

// TestSDKRoundSizes: a real node announces each round's download and
// upload sizes, so that a device whose policy allows fewer bytes declines
// the round (ReasonTooLarge) before downloading the model, and one that
// allows them takes part. The bound sits above what the model's shape
// alone implies (12 bytes a parameter), so only the node's announcement
// (the model's frames, the framed update) exceeds it.
func TestSDKRoundSizes(t *testing.T) {
	const items, rank = 20, 4
	n, ca := startNode(t, coordinator.Training{Items: items, Rank: rank, Mean: 3.5, ClientsPerRound: 1, MinClients: 1, Clip: 0.5,
		NoiseMultiplier: 1.2, Population: 1000, CheckInWindow: 100 * time.Millisecond, RoundTimeout: 2 * time.Second})
	catalogue := catalogueOf(items)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	dim := int64(model.Dim(items, rank))

	tight := permissive
	tight.MaxRoundBytes = 12*dim + 64
	c := newDevice(t, n, ca, catalogue, tight)
	_, err := participate(ctx, c)
	var d *client.DeclineError
	if !errors.As(err, &d) || d.Reason != client.ReasonTooLarge {
		t.Fatalf("Participate with MaxRoundBytes %d = %v, want a round_too_large decline", tight.MaxRoundBytes, err)
	}
	t.Logf("declined: %v", d)

	roomy := permissive
	roomy.MaxRoundBytes = 64 * dim
	if _, err := participate(ctx, newDevice(t, n, ca, catalogue, roomy)); err != nil {
		t.Fatalf("Participate with MaxRoundBytes %d = %v", roomy.MaxRoundBytes, err)
	}
}
