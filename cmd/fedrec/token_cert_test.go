package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// fedrec cert makes a device token key; cert token issues tokens that the
// nodes' bundle (pki.Load) verifies, bound to the device and the TTL.
func TestCertToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"cert", "--dir", dir, "--nodes", "a"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	b, err := pki.Load(dir, "a")
	if err != nil || len(b.TokenKeys) != 1 {
		t.Fatalf("node bundle: %d token keys, %v; want 1", len(b.TokenKeys), err)
	}
	out.Reset()
	if err := run(t.Context(), []string{"cert", "token", "--dir", dir, "--device", "browser-9", "--ttl", "30m"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	tok, err := wire.ParseTokenText(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := wire.VerifyToken(tok, b.TokenKeys, time.Now())
	if err != nil || c.Device != "browser-9" {
		t.Fatalf("VerifyToken = %+v, %v; want browser-9's claims", c, err)
	}
	if d := time.Until(c.Expires()); d < 29*time.Minute || d > 31*time.Minute {
		t.Errorf("token valid for %v, want 30m", d)
	}
	// A second fedrec cert keeps the key (tokens already issued stay valid).
	if err := run(t.Context(), []string{"cert", "--dir", dir, "--nodes", "b"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	if b, err := pki.Load(dir, "b"); err != nil || len(b.TokenKeys) != 1 {
		t.Errorf("after a second fedrec cert: %d token keys, %v; want the same 1", len(b.TokenKeys), err)
	}
	for _, args := range [][]string{{"--device", ""}, {"--device", "x", "--ttl", "48h"}, {"--device", "x", "--ttl", "0s"}} {
		if err := run(t.Context(), append([]string{"cert", "token", "--dir", dir}, args...), &out, &errb); err == nil {
			t.Errorf("cert token %v succeeded, want an error", args)
		}
	}
}
