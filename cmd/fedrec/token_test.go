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
	n := startLoneNode(t, certs, coordinator.Config{ID: "a", AdminAddr: "127.0.0.1:0", AdminToken: "operator", ReadToken: "monitoring"})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
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
	err := run(ctx, []string{"cluster", "remove", "nobody", "--admin", n.AdminAddr(), "--certs", certs}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "read-only token") {
		t.Errorf("cluster remove with the read-only token = %v, want a 403 naming the read-only token", err)
	}
}
