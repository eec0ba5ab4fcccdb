package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
)

// fedrec recover rewrites a stopped node's directory from its
// configuration file, and refuses what it cannot recover.
func TestRecoverCommand(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := pki.WriteDir(certs, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "a")
	n := startLoneNode(t, certs, coordinator.Config{ID: "a", DataDir: data, Training: coordinator.Training{Items: 7, Rank: 3, Mean: 3.5, Population: 100}})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"recover", "--data-dir", data, "--id", "a", "--raft-addr", "127.0.0.1:7001"}, &out, &errb); err == nil {
		t.Error("recover on a running node's directory succeeded")
	}
	n.Close()

	for _, tt := range []struct {
		name string
		args []string
		want error // nil: any error but a usage error
	}{
		{"no id", []string{"--data-dir", data, "--raft-addr", "127.0.0.1:7001"}, errUsage},
		{"no address", []string{"--data-dir", data, "--id", "a"}, errUsage},
		{"stray argument", []string{"--data-dir", data, "--id", "a", "--raft-addr", "127.0.0.1:7001", "now"}, errUsage},
		{"no state", []string{"--data-dir", t.TempDir(), "--id", "a", "--raft-addr", "127.0.0.1:7001"}, nil},
	} {
		err := run(ctx, append([]string{"recover"}, tt.args...), &out, &errb)
		if err == nil || (tt.want != nil) != errors.Is(err, errUsage) {
			t.Errorf("%s: recover = %v, want %v", tt.name, err, tt.want)
		}
	}

	conf := filepath.Join(dir, "a.yaml")
	os.WriteFile(conf, []byte("id: a\ndata_dir: "+data+"\nraft_addr: 127.0.0.1:7001\ncerts: "+certs+"\n"), 0o600)
	out.Reset()
	if err := run(ctx, []string{"recover", "--config", conf, "--json"}, &out, &errb); err != nil {
		t.Fatalf("recover: %v\n%s", err, errb.String())
	}
	var rec coordinator.Recovered
	if err := json.Unmarshal(out.Bytes(), &rec); err != nil || rec.Node != "a" || rec.RaftAddr != "127.0.0.1:7001" || rec.ModelVersion != 1 {
		t.Errorf("recover --json = %s (%v), want node a at 127.0.0.1:7001 with model 1", out.String(), err)
	}
	out.Reset()
	if err := run(ctx, []string{"recover", "--config", conf}, &out, &errb); err != nil || !strings.Contains(out.String(), "model version 1") || !strings.Contains(out.String(), "next") {
		t.Errorf("recover a second time = %v:\n%s", err, out.String())
	}
}
