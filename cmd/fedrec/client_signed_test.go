package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
)

// fedrec client --device-ca runs a crowd of devices, each with its device
// certificate, through signed secure rounds of a real node over QUIC: they
// sign their key adverts, check their peers' against the device CA and
// confirm the survivor set to each other, and the node commits models
// from their sums.
// Without --device-ca the same crowd cannot take part (no round commits).
func TestClientSignedSecureRounds(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "certs")
	if err := pki.WriteDir(certs, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The synthetic data set's 1,000 items.
	n := startLoneNode(t, certs, coordinator.Config{ID: "a", ClientAddr: "127.0.0.1:0", Training: coordinator.Training{
		Items: 1000, Rank: 2, Mean: 3.5, Population: 100, ClientsPerRound: 5, MinClients: 4, Clip: 0.5,
		CheckInWindow: time.Second, RoundTimeout: 15 * time.Second,
		SecAgg: true, SecAggPhase: 10 * time.Second, SecAggSigned: true,
	}})
	args := []string{"client", "--data", "synthetic", "--clients", "8", "--coordinators", n.ClientAddr(), "--certs", certs, "--eval=false"}

	// Without the device CA the devices cannot check their peers: the
	// node commits nothing while they try.
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Second)
	var out, errb bytes.Buffer
	run(ctx, append(args, "--until-version", "2"), &out, &errb)
	cancel()
	if v := committed(n); v > 1 {
		t.Fatalf("devices without --device-ca took part in signed rounds: model version %d", v)
	}

	ctx, cancel = context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out.Reset()
	errb.Reset()
	if err := run(ctx, append(args, "--device-ca", filepath.Join(certs, pki.DeviceCAFile), "--until-version", "3"), &out, &errb); err != nil {
		t.Fatalf("fedrec client --device-ca: %v\n%s", err, errb.String())
	}
	if v := committed(n); v < 3 {
		t.Fatalf("model version %d after signed rounds, want >= 3\n%s", v, errb.String())
	}
	n.View(func(s *coordinator.State) {
		for _, r := range s.Rounds() {
			if r.Survivors > 0 && r.Survivors < 4 {
				t.Errorf("round %d committed with %d survivors, fewer than MinClients", r.Round, r.Survivors)
			}
		}
	})
}

// committed is the newest model version of n.
func committed(n *coordinator.Node) uint64 {
	var v uint64
	n.View(func(s *coordinator.State) {
		if m := s.Current(); m != nil {
			v = m.Version
		}
	})
	return v
}

// --device-ca is refused where it cannot apply: a file that holds no
// certificate, or a certs directory that gives the devices none to sign
// with.
func TestClientDeviceCARefused(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := pki.WriteDir(certs, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(dir, "bare")
	if err := pki.WriteDir(bare, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{pki.DeviceCAFile, pki.DeviceCAKeyFile} {
		if err := os.Remove(filepath.Join(bare, f)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name, certs, ca, want string
	}{
		{"not a certificate", certs, filepath.Join(certs, pki.CAKeyFile), "--device-ca"},
		{"missing file", certs, filepath.Join(dir, "nope.pem"), "--device-ca"},
		{"no device certificates", bare, filepath.Join(certs, pki.DeviceCAFile), "no device certificates"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(t.Context(), []string{"client", "--data", "synthetic", "--clients", "1", "--certs", tt.certs, "--device-ca", tt.ca}, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("fedrec client --device-ca (%s) = %v, want an error mentioning %q", tt.name, err, tt.want)
			}
		})
	}
}
