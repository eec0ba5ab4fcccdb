package client_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
)

// startDeviceNode starts a one-node cluster whose client protocol on QUIC
// authenticates devices with certificates of a device CA, which it
// returns with the cluster's CA.
func startDeviceNode(t *testing.T, tr coordinator.Training) (n *coordinator.Node, ca, devCA *pki.CA) {
	t.Helper()
	devCA, err := pki.NewCA("test device CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n, ca = startNodeWith(t, tr, func(b *pki.Bundle) {
		b.Devices, b.Revoked = devCA.Pool(), filepath.Join(t.TempDir(), pki.RevokedFile)
	})
	return n, ca, devCA
}

// certifiedDevice is an app's SDK on a device with a certificate of devCA
// for client ID id, which checks its peers against devCA, with the
// cluster's model and a few ratings, opted in.
func certifiedDevice(t *testing.T, n *coordinator.Node, ca, devCA *pki.CA, id string, catalogue []string, p client.Policy) *client.Client {
	t.Helper()
	return certifiedDeviceKey(t, n, ca, devCA, id, catalogue, p, pki.Ed25519)
}

// certifiedDeviceKey is certifiedDevice with a device key of type kt.
func certifiedDeviceKey(t *testing.T, n *coordinator.Node, ca, devCA *pki.CA, id string, catalogue []string, p client.Policy, kt pki.KeyType) *client.Client {
	t.Helper()
	cert, err := devCA.IssueDeviceKey(id, time.Hour, kt)
	if err != nil {
		t.Fatal(err)
	}
	return certifiedDeviceCert(t, n, ca, devCA, cert, id, catalogue, p)
}

// certifiedDeviceCert is certifiedDevice with the device certificate cert.
func certifiedDeviceCert(t *testing.T, n *coordinator.Node, ca, devCA *pki.CA, cert tls.Certificate, id string, catalogue []string, p client.Policy) *client.Client {
	t.Helper()
	d, err := client.NewDialerConfig(client.DialerConfig{Addrs: []string{n.ClientAddr()}, TLS: client.DeviceTLS(ca.Pool(), cert), DeviceCA: devCA.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	fed, err := client.NewNetwork(client.NetworkConfig{ClientID: id, Dialer: d, Items: catalogue})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{Dir: t.TempDir(), Key: make([]byte, 32), Policy: p, Federation: fed})
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

func secureTraining(items int, signed bool) coordinator.Training {
	return coordinator.Training{Items: items, Rank: 4, Mean: 3.5, ClientsPerRound: 3, MinClients: 3, Clip: 0.5,
		NoiseMultiplier: 1.2, Population: 1000, CheckInWindow: 2 * time.Second, RoundTimeout: 10 * time.Second,
		SecAgg: true, SecAggPhase: 5 * time.Second, SecAggSigned: signed}
}

// SDK devices with device certificates take part in a signed secure
// round over QUIC: each signs its key advert and the survivor set and
// checks its peers' against the device CA and the plan's cohort, and the
// round commits. A device whose policy requires signed rounds joins it.
// The device CA is ECDSA P-256 and the devices' keys are Ed25519 but for
// one, P-256: a backend may issue either, and they verify each other.
func TestSDKSignedSecureRound(t *testing.T) {
	const items = 20
	n, ca, devCA := startDeviceNode(t, secureTraining(items, true))
	catalogue := catalogueOf(items)
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	strict := permissive
	strict.RequireSignedSecAgg = true
	var devices []*client.Client
	for i := range 3 {
		p := permissive
		if i == 0 {
			p = strict
		}
		kt := pki.Ed25519
		if i == 1 {
			kt = pki.P256
		}
		devices = append(devices, certifiedDeviceKey(t, n, ca, devCA, fmt.Sprintf("signed-%d", i), catalogue, p, kt))
	}
	commitRound(t, ctx, n, devices, "signed secure round")
	// Each device's record of the round holds the terms it checked: the
	// terms digest, the same for every device, and a signed secure round
	// of the cohort of 3.
	var first string
	for i, d := range devices {
		rep, err := d.Report()
		if err != nil || len(rep.Rounds) != 1 {
			t.Fatalf("device %d: Report = %+v, %v, want one round", i, rep.Rounds, err)
		}
		tm := rep.Rounds[0].Terms
		if tm == nil || len(tm.TermsDigest) != 64 || !tm.Secure || !tm.Signed || tm.SecAggClients != 3 || tm.SecAggThreshold < 2 || tm.SecAggColluders < 0 || tm.MinCohort != 3 {
			t.Errorf("device %d: round terms = %+v, want a signed secure round of 3 with the plan's digest", i, tm)
		}
		if tm != nil && tm.TermsDigest != first {
			if i == 0 {
				first = tm.TermsDigest
			} else {
				t.Errorf("device %d: terms digest %s, device 0's %s: the round's terms differ", i, tm.TermsDigest, first)
			}
		}
		// The JSON a dashboard (and the mobile binding's ReportJSON) shows.
		b, err := json.Marshal(rep)
		if err != nil || !bytes.Contains(b, []byte(`"terms_digest":"`+first+`"`)) || !bytes.Contains(b, []byte(`"signed":true`)) {
			t.Errorf("device %d: report JSON %s (%v) lacks the round's terms", i, b, err)
		}
	}
}

// A signed round of the device roster's devices only: devices whose
// policy requires such rounds take part, check their peers' roster
// credentials (a bare certificate would be refused), and record the
// round as one.
func TestSDKSignedRosterRound(t *testing.T) {
	const items = 20
	devCA, err := pki.NewCA("test device CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var certs []tls.Certificate
	var leaves []*x509.Certificate
	for i := range 3 {
		c, err := devCA.IssueDevice(fmt.Sprintf("listed-%d", i), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certs, leaves = append(certs, c), append(leaves, c.Leaf)
	}
	f, _, err := devCA.IssueRoster(leaves, nil, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := pki.PutRoster(dir, f); err != nil {
		t.Fatal(err)
	}
	tr := secureTraining(items, true)
	tr.SecAggRoster = true
	n, ca := startNodeWith(t, tr, func(b *pki.Bundle) {
		b.Devices, b.Revoked, b.Roster = devCA.Pool(), filepath.Join(dir, pki.RevokedFile), filepath.Join(dir, pki.RosterFile)
	})
	catalogue := catalogueOf(items)
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	strict := permissive
	strict.RequireSignedSecAgg, strict.RequireDeviceRoster = true, true
	var devices []*client.Client
	for i, c := range certs {
		devices = append(devices, certifiedDeviceCert(t, n, ca, devCA, c, fmt.Sprintf("listed-%d", i), catalogue, strict))
	}
	commitRound(t, ctx, n, devices, "roster round")
	for i, d := range devices {
		rep, err := d.Report()
		if err != nil || len(rep.Rounds) != 1 || rep.Rounds[0].Terms == nil || !rep.Rounds[0].Terms.Roster || !rep.Rounds[0].Terms.Signed {
			t.Errorf("device %d: Report = %+v, %v, want one signed round of roster devices", i, rep.Rounds, err)
		}
	}
}

// A device whose policy requires signed secure rounds declines a secure
// round that is not signed (ReasonSecAgg), before it sends anything; one
// that also requires the device roster declines a signed round that
// admits devices outside it.
func TestSDKRequireSignedSecAggDeclines(t *testing.T) {
	for _, tc := range []struct {
		name   string
		signed bool
	}{{"unsigned", false}, {"signed outside the roster", true}} {
		t.Run(tc.name, func(t *testing.T) {
			strict := permissive
			strict.RequireSignedSecAgg, strict.RequireDeviceRoster = true, tc.signed
			testSDKPolicyDeclines(t, secureTraining(20, tc.signed), strict)
		})
	}
}

func testSDKPolicyDeclines(t *testing.T, tr coordinator.Training, strict client.Policy) {
	n, ca, devCA := startDeviceNode(t, tr)
	catalogue := catalogueOf(tr.Items)
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // the others' round cannot commit without the strict device
	for i := 1; i < 3; i++ {
		c := certifiedDevice(t, n, ca, devCA, fmt.Sprintf("plain-%d", i), catalogue, permissive)
		wg.Go(func() { participate(ctx, c) })
	}
	c := certifiedDevice(t, n, ca, devCA, "plain-0", catalogue, strict)
	rr, err := participate(ctx, c)
	var de *client.DeclineError
	if !errors.As(err, &de) || de.Reason != client.ReasonSecAgg {
		t.Fatalf("Participate() = %v, want a DeclineError with ReasonSecAgg", err)
	}
	if rr.BytesSent != 0 {
		t.Errorf("the declining device sent %d bytes", rr.BytesSent)
	}
}
