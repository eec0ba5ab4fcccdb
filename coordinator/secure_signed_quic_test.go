package coordinator_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// A signed secure round over QUIC with device certificates: the node
// relays each device's credential from its TLS connection (its entry in
// the node's device roster, or without one its certificate), every device
// verifies its neighbours' adverts against the device CA and the
// manifest's cohort and their survivor-set tags, and the round commits
// with a device that dropped out after its masked input.
//
// With listed=only (Training.SecAggRoster), the manifest says that the
// round admits only devices of the roster, which lists all but q0: the
// node refuses q0's advert, the others check roster credentials alone
// (coordinator.SignedDevice requires them when the plan says so), and the
// round commits without q0.
func TestQUICSignedSecureRound(t *testing.T) {
	for _, c := range []struct {
		roster, only bool
	}{{false, false}, {true, false}, {true, true}} {
		name := fmt.Sprintf("roster=%v", c.roster)
		if c.only {
			name = "roster=only"
		}
		t.Run(name, func(t *testing.T) { testQUICSignedSecureRound(t, c.roster, c.only) })
	}
}

func testQUICSignedSecureRound(t *testing.T, roster, only bool) {
	const k = 5
	tr := training()
	tr.ClientsPerRound, tr.OverSelect, tr.MinClients, tr.Clip = k, 0, 3, 1
	tr.CheckInWindow = 5 * time.Second // select when all k have checked in
	tr.SecAgg, tr.SecAggPhase, tr.SecAggSigned, tr.SecAggRoster = true, 2*time.Second, true, only
	c := newQUICClusterWith(t, 1, tr)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l := c.leader(t, ctx)
	dim := tr.Items*(tr.Rank+1) + 1
	certs := make([]tls.Certificate, k)
	for i := range k {
		var err error
		if certs[i], err = c.devCA.IssueDevice(fmt.Sprintf("q%d", i), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if roster {
		var leaves []*x509.Certificate
		for i := range certs {
			if !only || i > 0 {
				leaves = append(leaves, certs[i].Leaf)
			}
		}
		f, _, err := c.devCA.IssueRoster(leaves, nil, 1, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		b, err := wire.EncodeRosterFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c.roster, b, 0o644); err != nil {
			t.Fatal(err)
		}
		// The node looks at the file at most once a second; a later look
		// is as good.
		time.Sleep(1100 * time.Millisecond)
	}
	var rosterCreds, certCreds atomic.Int32 // credentials the devices received
	var wg sync.WaitGroup
	errs := make([]error, k)
	for i := range k {
		id, cert := fmt.Sprintf("q%d", i), certs[i]
		conn, err := wire.Dial(ctx, c.addrs[0], pki.DeviceTLS(c.ca.Pool(), cert))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.CloseWithError(0, "") })
		exchange := func(req wire.Message) (wire.Message, error) {
			var rep wire.Message
			err := wire.Exchange(ctx, conn, req, wire.Limits{Only: wire.Replies}, func(m wire.Message) (bool, error) { rep = m; return true, nil })
			if pk, ok := rep.(*wire.SecAggPeerKeys); ok {
				for _, p := range pk.Peers {
					if wire.IsRosterCredential(p.Credential) {
						rosterCreds.Add(1)
					} else {
						certCreds.Add(1)
					}
				}
			}
			return rep, err
		}
		last := secagg.PhaseUnmask
		if i == k-1 && !only {
			last = secagg.PhaseMaskedInput
		}
		wg.Go(func() {
			var plan *wire.Plan
			for plan == nil && ctx.Err() == nil {
				rep, _ := exchange(&wire.CheckIn{Version: wire.Version, ClientID: id})
				plan, _ = rep.(*wire.Plan)
			}
			if plan == nil {
				errs[i] = ctx.Err()
				return
			}
			// The plan carries the cohort of the device's group in the
			// manifest, and its terms digest (which the device records) is
			// the manifest's for the group.
			var manifest []string
			var terms [32]byte
			l.View(func(s *coordinator.State) {
				if o := s.Open(); o != nil && o.Round == plan.Round && plan.SecAgg != nil {
					manifest, _, _ = o.Group(plan.SecAgg.Group)
					terms = (&wire.OpenRound{Round: o.Round, Model: o.Model, Digest: o.Digest[:], Clip: o.Clip, Privacy: o.Privacy, SecAgg: o.SecAgg, Groups: o.Groups}).GroupTermsDigest(plan.SecAgg.Group)
				}
			})
			if !slices.Equal(plan.Cohort, manifest) {
				errs[i] = fmt.Errorf("the plan's cohort %q, the manifest's %q", plan.Cohort, manifest)
				return
			}
			if plan.TermsDigest() != terms {
				errs[i] = fmt.Errorf("the plan's terms digest %x, the manifest's %x", plan.TermsDigest(), terms)
				return
			}
			cohort := plan.Cohort
			x := make([]float64, dim)
			for j := range x {
				x[j] = 0.01 * float64(i+1)
			}
			if plan.SecAgg.Roster != only {
				errs[i] = fmt.Errorf("the plan's roster-only is %v, want %v", plan.SecAgg.Roster, only)
				return
			}
			_, errs[i] = coordinator.SignedDevice(plan, cohort, cert, c.devCA.Pool(), 0, x, last, exchange)
		})
	}
	wg.Wait()
	survivors := k
	if only {
		var we *wire.Error
		if !errors.As(errs[0], &we) || we.Code != wire.CodeUnauthenticated || !strings.Contains(we.Message, "roster") {
			t.Errorf("unlisted device q0: %v, want refused as unauthenticated, outside the roster", errs[0])
		}
		errs[0], survivors = nil, k-1
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("device q%d: %v", i, err)
		}
	}
	if err := l.WaitFor(ctx, func(s *coordinator.State) bool { return len(s.Rounds()) >= 1 }); err != nil {
		t.Fatal(err)
	}
	l.View(func(s *coordinator.State) {
		if r := s.Rounds()[0]; r.Outcome != coordinator.Committed || r.Survivors != survivors {
			t.Errorf("round %+v, want committed with %d survivors", r, survivors)
		}
	})
	if got := map[bool]int32{false: rosterCreds.Load(), true: certCreds.Load()}[roster]; got != 0 || rosterCreds.Load()+certCreds.Load() == 0 {
		t.Errorf("devices received %d roster credentials and %d certificates, want only %s", rosterCreds.Load(), certCreds.Load(), map[bool]string{false: "certificates", true: "roster credentials"}[roster])
	}
}
