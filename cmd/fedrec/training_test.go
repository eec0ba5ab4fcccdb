package main

import (
	"bytes"
	"context"
	"errors"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
)

// fedrec training set changes the noise of the rounds left and the cohort,
// and fedrec training shows the settings and the audit trail.
func TestTrainingCommand(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "certs")
	if err := pki.WriteDir(certs, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	n := startLoneNode(t, certs, coordinator.Config{ID: "a", AdminAddr: "127.0.0.1:0", AdminToken: "operator", ReadToken: "monitoring",
		Training: coordinator.Training{Items: 7, Rank: 3, Mean: 3.5, Population: 100, NoiseMultiplier: 1, Clip: 0.5}})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	t.Setenv("FEDREC_ADMIN_TOKEN", "operator")
	admin := []string{"--admin", n.AdminAddr(), "--certs", certs}
	var out, errb bytes.Buffer
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"set without reason", []string{"set", "--clients-per-round", "5"}},
		{"set without setting", []string{"set", "--reason", "x"}},
		{"show with a setting", []string{"--clients-per-round", "5"}},
		{"negative", []string{"set", "--min-clients", "-1", "--reason", "x"}},
	} {
		if err := run(ctx, append(append([]string{"training"}, tt.args...), admin...), &out, &errb); !errors.Is(err, errUsage) {
			t.Errorf("%s: %v, want a usage error", tt.name, err)
		}
	}
	if err := run(ctx, append([]string{"training", "set", "--min-clients", "500", "--reason", "x"}, admin...), &out, &errb); err == nil || !strings.Contains(err.Error(), "MinClients") {
		t.Errorf("an invalid change = %v, want the reason", err)
	}
	out.Reset()
	if err := run(ctx, append([]string{"training", "set", "--noise-multiplier", "1.5", "--clients-per-round", "50", "--operator", "alice", "--reason", "budget"}, admin...), &out, &errb); err != nil {
		t.Fatalf("training set: %v\n%s", err, errb.String())
	}
	for _, want := range []string{"changed", "noise central, multiplier 1.5", "rounds   50 clients", "after round 0 by alice: clients_per_round=50 noise_multiplier=1.5 (budget)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("training set output lacks %q:\n%s", want, out.String())
		}
	}
	// Showing needs only the read-only token.
	t.Setenv("FEDREC_ADMIN_TOKEN", "")
	t.Setenv("FEDREC_READ_TOKEN", "monitoring")
	out.Reset()
	if err := run(ctx, append([]string{"training"}, admin...), &out, &errb); err != nil || !strings.Contains(out.String(), "by alice") {
		t.Errorf("training = %v:\n%s", err, out.String())
	}
	if err := run(ctx, append([]string{"training", "set", "--min-clients", "2", "--reason", "x"}, admin...), &out, &errb); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("training set with the read-only token = %v, want 403", err)
	}
}

// Without $USER (a container's shell, cron) the audit trail still names
// the operator: the account's login name.
func TestTrainingDefaultOperatorWithoutUSER(t *testing.T) {
	t.Setenv("USER", "")
	t.Setenv("LOGNAME", "")
	u, err := user.Current()
	if err != nil || u.Username == "" {
		t.Skipf("no account name here: %v", err)
	}
	if got := defaultOperator(); got != u.Username {
		t.Fatalf("defaultOperator() = %q, want %q", got, u.Username)
	}
	t.Setenv("USER", "alice")
	if got := defaultOperator(); got != "alice" {
		t.Fatalf("defaultOperator() with USER=alice = %q", got)
	}
}
