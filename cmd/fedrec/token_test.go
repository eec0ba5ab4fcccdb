package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
)

// With only $FEDREC_READ_TOKEN, the commands that read work and those that
// change the cluster are refused with the reason.
func TestReadOnlyTokenCommands(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "certs")
	if err := pki.WriteDir(certs, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	b, err := pki.Load(certs, "a")
	if err != nil {
		t.Fatal(err)
	}
	n, err := coordinator.New(coordinator.Config{
		ID: "a", InMemory: true, RaftAddr: "127.0.0.1:0", TLS: b, Bootstrap: true,
		AdminAddr: "127.0.0.1:0", AdminToken: "operator", ReadToken: "monitoring",
		Training:         coordinator.Training{Items: 7, Rank: 3, Mean: 3.5, Population: 100},
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current() != nil }); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FEDREC_ADMIN_TOKEN", "")
	t.Setenv("FEDREC_READ_TOKEN", "monitoring")
	var out, errb bytes.Buffer
	waitFor(t, ctx, "status with the read-only token", func() bool {
		out.Reset()
		return run(ctx, []string{"status", "--admin", n.AdminAddr(), "--certs", certs}, &out, &errb) == nil
	})
	if !strings.Contains(out.String(), "node     a (leader") {
		t.Errorf("status:\n%s", out.String())
	}
	if err := run(ctx, []string{"cluster", "list", "--admin", n.AdminAddr(), "--certs", certs}, &out, &errb); err != nil {
		t.Errorf("cluster list with the read-only token: %v", err)
	}
	err = run(ctx, []string{"cluster", "remove", "nobody", "--admin", n.AdminAddr(), "--certs", certs}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "read-only token") {
		t.Errorf("cluster remove with the read-only token = %v, want a 403 naming the read-only token", err)
	}
}
