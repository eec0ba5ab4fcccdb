package client_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/coordinator"
)

// TestSDKDistributedNoise runs the SDK against a coordinator in
// distributed-DP mode. The devices judge the noise sure to reach the sum
// (z·sqrt((n-1)/n) for n shares, less a hair for rounding), not the
// nominal z: devices wanting more decline, devices that insist on adding
// the noise themselves take part, and the cluster commits their round.
func TestSDKDistributedNoise(t *testing.T) {
	const items, z = 20, 2.0
	n, ca := startNode(t, coordinator.Training{Items: items, Rank: 4, Mean: 3.5, ClientsPerRound: 3, MinClients: 3, Clip: 0.5,
		NoiseMultiplier: z, Noise: coordinator.NoiseDistributed, Population: 1000, CheckInWindow: 2 * time.Second,
		RoundTimeout: 2 * time.Second, SecAgg: true, SecAggPhase: 2 * time.Second})
	catalogue := catalogueOf(items)
	effective := z * math.Sqrt(2.0/3) // 1.63: two other shares of three

	run := func(t *testing.T, p client.Policy) []error {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		var devices []*client.Client
		for range 3 {
			devices = append(devices, newDevice(t, n, ca, catalogue, p))
		}
		reports, errs := participateAll(ctx, devices)
		for _, rr := range reports {
			if rr.Round != 0 && math.Abs(rr.NoiseMultiplier/effective-1) > 0.01 {
				t.Errorf("report noise multiplier %v, want the effective %v", rr.NoiseMultiplier, effective)
			}
		}
		return errs
	}
	t.Run("declines less noise than it wants", func(t *testing.T) {
		strict := permissive
		strict.MinNoiseMultiplier = 1.8 // above the effective 1.63, below the nominal 2
		for _, err := range run(t, strict) {
			var de *client.DeclineError
			if !errors.Is(err, client.ErrDeclined) || !errors.As(err, &de) || de.Reason != client.ReasonNoise {
				t.Errorf("Participate = %v, want a decline for noise", err)
			}
		}
	})
	t.Run("takes part", func(t *testing.T) {
		p := permissive
		p.RequireDistributedNoise = true
		for _, err := range run(t, p) {
			if err != nil {
				t.Errorf("Participate = %v", err)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		if err := n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current().Version >= 2 }); err != nil {
			t.Fatalf("no model committed from the distributed-DP round: %v", err)
		}
		n.View(func(s *coordinator.State) {
			if e := s.Ledger()[0]; e.Entry().Mechanism.String() != "poisson-skellam" {
				t.Errorf("ledger entry %+v, want the Skellam mechanism", e)
			}
		})
	})
}

// TestSDKRequireDistributedNoise: a device that will not trust the
// coordinator with the noise declines a central-DP round.
func TestSDKRequireDistributedNoise(t *testing.T) {
	const items = 20
	n, ca := startNode(t, coordinator.Training{Items: items, Rank: 4, Mean: 3.5, ClientsPerRound: 1, MinClients: 1, Clip: 0.5,
		NoiseMultiplier: 1.2, Population: 1000, CheckInWindow: 100 * time.Millisecond, RoundTimeout: 2 * time.Second})
	p := permissive
	p.RequireDistributedNoise = true
	c := newDevice(t, n, ca, catalogueOf(items), p)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err := participate(ctx, c)
	var de *client.DeclineError
	if !errors.As(err, &de) || de.Reason != client.ReasonNoise {
		t.Fatalf("Participate = %v, want a decline for noise", err)
	}
}
