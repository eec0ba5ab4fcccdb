package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

func TestStatusCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.WriteDir(dir, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	const token = "tok"
	n := startLoneNode(t, dir, coordinator.Config{ID: "a", AdminAddr: "127.0.0.1:0", AdminToken: token,
		Training: coordinator.Training{Items: 3, Rank: 2, NoiseMultiplier: 1, Clip: 1, Population: 100}})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for n.Ready() != nil {
		select {
		case <-ctx.Done():
			t.Fatal(n.Ready())
		case <-time.After(10 * time.Millisecond):
		}
	}
	base := []string{"status", "--admin", n.AdminAddr(), "--certs", dir}

	var out, errb bytes.Buffer
	if err := run(ctx, append(base, "--token", token), &out, &errb); err != nil {
		t.Fatalf("fedrec status: %v\n%s", err, errb.String())
	}
	for _, want := range []string{"node     a (leader, term", "ready    yes", "nodes    a *", "model    version 1 (round 0)", "round    none open (last 0)", "privacy  ε = 0 at δ = 1e-05 over 0 committed rounds"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	t.Setenv("FEDREC_ADMIN_TOKEN", token)
	if err := run(ctx, append(base, "--json"), &out, &errb); err != nil {
		t.Fatalf("fedrec status --json: %v\n%s", err, errb.String())
	}
	var st wire.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || st.Node != "a" || !st.Ready || st.Leader == nil || st.Model == nil || st.Model.Version != 1 {
		t.Errorf("status --json = %+v, %v\n%s", st, err, out.String())
	}

	tests := []struct {
		name  string
		args  []string
		usage bool // exit 2, else 1
	}{
		{"no admin", []string{"status", "--token", token}, true},
		{"stray argument", append(base, "x"), true},
		{"wrong token", append(base, "--token", "nope"), false},
		{"no CA", []string{"status", "--admin", n.AdminAddr(), "--certs", t.TempDir()}, false},
		{"nobody there", []string{"status", "--admin", "127.0.0.1:1", "--certs", dir, "--timeout", "2s"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(ctx, tt.args, &out, &errb)
			if err == nil || errors.Is(err, errUsage) != tt.usage {
				t.Errorf("run(%q) = %v, want a usage error: %v", tt.args, err, tt.usage)
			}
		})
	}
	t.Setenv("FEDREC_ADMIN_TOKEN", "")
	if err := run(ctx, base, &out, &errb); !errors.Is(err, errUsage) {
		t.Errorf("status without a token = %v, want errUsage", err)
	}
}

// fedrec status --wait asks until the node answers and is ready: started
// before the node, it exits 0 once the node is up; given a node that never
// comes, it fails at --timeout.
func TestStatusWait(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.WriteDir(dir, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	b, err := pki.Load(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	const token = "tok"
	admin := freeAddr(t)
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(t.Context(), []string{"status", "--wait", "--timeout", "2m", "--admin", admin, "--certs", dir, "--token", token}, &out, &bytes.Buffer{})
	}()
	n, err := coordinator.New(coordinator.Config{
		ID: "a", InMemory: true, RaftAddr: "127.0.0.1:0", TLS: b, Bootstrap: true,
		AdminAddr: admin, AdminToken: token,
		Training:         coordinator.Training{Items: 3, Rank: 2, Population: 100},
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := <-done; err != nil {
		t.Fatalf("fedrec status --wait = %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "ready    yes") {
		t.Errorf("fedrec status --wait printed:\n%s", out.String())
	}
	err = run(t.Context(), []string{"status", "--wait", "--timeout", "1s", "--admin", freeAddr(t), "--certs", dir, "--token", token}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil {
		t.Error("fedrec status --wait on a node that never starts = nil, want an error")
	}
}

// The status's certs line says when each certificate expires and warns
// for those within two weeks.
func TestStatusCerts(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	dev := now.Add(3 * 24 * time.Hour)
	st := &wire.Status{Node: "n1", Certs: &wire.StatusCerts{Node: now.Add(300 * 24 * time.Hour), NodeSerial: "ab12", CA: now.Add(3000 * 24 * time.Hour), DeviceCA: &dev}}
	var b strings.Builder
	printCerts(&b, st.Certs, now)
	out := b.String()
	for _, want := range []string{"node 2030-10-28 (in 300 days, serial ab12)", "ca 2038-03-20 (in 3000 days)", "device-ca 2030-01-04 (in 3 days)", "WARNING: device-ca expire(s) within 14 days"} {
		if !strings.Contains(out, want) {
			t.Errorf("printCerts = %q, want %q in it", out, want)
		}
	}
	st.Certs.DeviceCA = nil
	b.Reset()
	printCerts(&b, st.Certs, now)
	if strings.Contains(b.String(), "WARNING") || strings.Contains(b.String(), "device-ca") {
		t.Errorf("printCerts without a device CA, nothing near expiry = %q", b.String())
	}
	b.Reset()
	printStatus(&b, st)
	if !strings.Contains(b.String(), "certs    expire: node 2030-10-28") {
		t.Errorf("printStatus has no certs line:\n%s", b.String())
	}
}
