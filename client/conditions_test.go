package client

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

// fakeDevice reports conditions the test sets.
type fakeDevice struct {
	c     atomic.Value // Conditions
	calls atomic.Int64
}

func (d *fakeDevice) set(c Conditions) { d.c.Store(c) }

func (d *fakeDevice) Conditions() Conditions {
	d.calls.Add(1)
	c, _ := d.c.Load().(Conditions)
	return c
}

// TestConditions: a policy that requires an unmetered network, charging
// or idleness declines (ReasonConditions, naming what is missing) without
// checking in while the device is not in those conditions, and again when
// they end during a held check-in; the device takes part when they hold.
func TestConditions(t *testing.T) {
	setup := func(t *testing.T, p Policy) (*Client, *fakeFed, *fakeDevice) {
		cfg, _ := testConfig(t)
		rel := handRelease(1)
		fed := &fakeFed{offer: goodOffer(1), release: &rel}
		dev := &fakeDevice{}
		cfg.Federation, cfg.Policy, cfg.Device = fed, p, dev
		c := open(t, cfg)
		recordAll(t, c, rate(0, 5), rate(1, 4), rate(3, 1))
		if err := c.OptIn(); err != nil {
			t.Fatal(err)
		}
		return c, fed, dev
	}
	all := Policy{RequireUnmetered: true, RequireCharging: true, RequireIdle: true}

	t.Run("declines before checking in", func(t *testing.T) {
		c, fed, dev := setup(t, all)
		dev.set(Conditions{Unmetered: true, Charging: false, Idle: false})
		_, err := c.Participate(t.Context())
		var d *DeclineError
		if !errors.As(err, &d) || d.Reason != ReasonConditions || d.Detail != "not charging, in use" || !errors.Is(err, ErrDeclined) {
			t.Fatalf("Participate = %v, want a device_conditions decline naming 'not charging, in use'", err)
		}
		if fed.calls() != 0 {
			t.Errorf("the device checked in %d times in conditions its policy excludes", fed.calls())
		}
		dev.set(Conditions{Unmetered: true, Charging: true, Idle: true})
		if _, err := c.Participate(t.Context()); err != nil {
			t.Fatalf("Participate in the required conditions: %v", err)
		}
	})
	t.Run("conditions end during the check-in", func(t *testing.T) {
		c, fed, dev := setup(t, Policy{RequireUnmetered: true})
		dev.set(Conditions{Unmetered: true})
		fed.noRound = false
		// The device moves to mobile data while the coordinator holds the
		// check-in: Accept asks again.
		wrapped := &hookFed{Federation: fed, beforeJoin: func() { dev.set(Conditions{}) }}
		c.fed = wrapped
		_, err := c.Participate(t.Context())
		var d *DeclineError
		if !errors.As(err, &d) || d.Reason != ReasonConditions || d.Round != 1 || d.Detail != "metered network" {
			t.Fatalf("Participate = %v, want round 1 declined for a metered network", err)
		}
		if fed.downloads != 0 || len(fed.payloads) != 0 {
			t.Errorf("downloaded %d, sent %d payloads after declining", fed.downloads, len(fed.payloads))
		}
		rep, err := c.Report()
		if err != nil || len(rep.Declined) != 1 || rep.Declined[0].Reason != ReasonConditions {
			t.Errorf("Report().Declined = %+v, %v; want the round declined for device_conditions", rep.Declined, err)
		}
	})
	t.Run("a policy requiring conditions needs a Device", func(t *testing.T) {
		cfg, _ := testConfig(t)
		cfg.Policy = Policy{RequireIdle: true}
		if _, err := New(cfg); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("New without Config.Device = %v, want ErrInvalidArgument", err)
		}
	})
}

// hookFed runs beforeJoin, then joins through Federation.
type hookFed struct {
	Federation
	beforeJoin func()
}

func (h *hookFed) Join(ctx context.Context, k *Contribution) error {
	h.beforeJoin()
	return h.Federation.Join(ctx, k)
}

// TestMaxRoundBytes: a round announcing more bytes than the policy allows
// is declined (ReasonTooLarge) before anything is downloaded; the model's
// download does not count when the device holds it.
func TestMaxRoundBytes(t *testing.T) {
	cfg, _ := testConfig(t)
	rel := handRelease(1)
	o := goodOffer(1)
	o.DownloadBytes, o.UploadBytes = 6_000, 5_000
	fed := &fakeFed{offer: o, release: &rel}
	cfg.Federation, cfg.Policy = fed, Policy{MaxRoundBytes: 10_000}
	c := open(t, cfg)
	recordAll(t, c, rate(0, 5), rate(1, 4), rate(3, 1))
	c.OptIn()
	_, err := c.Participate(t.Context())
	var d *DeclineError
	if !errors.As(err, &d) || d.Reason != ReasonTooLarge {
		t.Fatalf("Participate = %v, want a round_too_large decline", err)
	}
	if fed.downloads != 0 {
		t.Errorf("downloaded the model of a round too large")
	}
	fed.offer.DownloadBytes = 0 // the device holds the model
	if _, err := c.Participate(t.Context()); err != nil {
		t.Errorf("Participate in a round of 5000 bytes: %v", err)
	}
	cfg2, _ := testConfig(t)
	cfg2.Policy.MaxRoundBytes = -1
	if _, err := New(cfg2); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("New with MaxRoundBytes -1 = %v, want ErrInvalidArgument", err)
	}
}
