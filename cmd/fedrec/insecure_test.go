package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// A node whose certificates directory has no device CA refuses to start,
// unless --insecure-devices says so; then it says so at start, in
// /v1/status, in 'fedrec status' and in a metric.
func TestCoordinatorRefusesNoDeviceCA(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := pki.WriteDir(certs, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	// What a node given only the files of the old systemd instructions holds.
	for _, f := range []string{pki.DeviceCAFile, pki.DeviceCAKeyFile, pki.CAKeyFile} {
		if err := os.Remove(filepath.Join(certs, f)); err != nil {
			t.Fatal(err)
		}
	}
	const token = "tok"
	admin := freeAddr(t)
	args := []string{"coordinator", "--id", "a", "--data-dir", filepath.Join(dir, "a"), "--certs", certs,
		"--raft-addr", freeAddr(t), "--client-addr", freePort(t, "udp"), "--admin-addr", admin, "--admin-token", token,
		"--bootstrap", "--items", "3", "--rank", "2", "--heartbeat", "100ms"}

	var out, errb bytes.Buffer
	err := run(t.Context(), args, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), pki.DeviceCAFile) || !strings.Contains(err.Error(), "--insecure-devices") {
		t.Fatalf("coordinator without a device CA = %v, want a refusal naming %s and --insecure-devices", err, pki.DeviceCAFile)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Error("the refused node created its data directory")
	}

	ctx, cancel := context.WithCancel(t.Context())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, append(args, "--insecure-devices"), &bytes.Buffer{}, logs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("coordinator --insecure-devices: %v", err)
		}
	}()

	c, err := adminClient(certs)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer wcancel()
	var st wire.Status
	waitFor(t, wctx, "the insecure node's status", func() bool {
		body, err := adminGet(wctx, c, admin, "/v1/status", token)
		return err == nil && json.Unmarshal(body, &st) == nil && st.Ready
	})
	if !st.InsecureDevices {
		t.Errorf("/v1/status insecure_devices = false on a node without a device CA")
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"INSECURE: --insecure-devices") {
		t.Errorf("no WARN line at start:\n%s", logs.String())
	}
	var sout bytes.Buffer
	if err := run(wctx, []string{"status", "--admin", admin, "--certs", certs, "--token", token}, &sout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sout.String(), "devices  NOT AUTHENTICATED") {
		t.Errorf("fedrec status does not say devices are unauthenticated:\n%s", sout.String())
	}
	code, body, err := adminDo(wctx, c, http.MethodGet, admin, "/metrics", token)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v", code, err)
	}
	if !strings.Contains(string(body), "\nfedrec_devices_unauthenticated 1\n") {
		t.Errorf("/metrics lacks fedrec_devices_unauthenticated 1")
	}
}
