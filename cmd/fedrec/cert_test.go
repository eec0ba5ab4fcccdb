package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
)

// fedrec cert makes the device CA, cert device issues device certificates
// with it, cert revoke writes the deny-list nodes reload.
func TestCertDeviceAndRevoke(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"cert", "--dir", dir, "--nodes", "a"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	b, err := pki.Load(dir, "a")
	if err != nil || b.Devices == nil {
		t.Fatalf("node bundle: devices %v, %v; want the device CA", b, err)
	}
	devs := filepath.Join(t.TempDir(), "devices")
	if err := run(t.Context(), []string{"cert", "device", "--dir", dir, "--out", devs, "--id", "phone-7", "--days", "2"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	c, err := pki.LoadDevice(devs, "phone-7")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(c.Leaf.NotAfter); d < 47*time.Hour || d > 49*time.Hour {
		t.Errorf("device certificate valid for %v, want 2 days", d)
	}
	if err := run(t.Context(), []string{"cert", "device", "--dir", dir, "--id", "../x"}, &out, &errb); err == nil {
		t.Error("cert device accepted the ID ../x")
	}
	for _, tc := range []struct {
		key  string
		want any // the private key's type; nil: refused
	}{
		{"ed25519", ed25519.PrivateKey(nil)},
		{"p256", (*ecdsa.PrivateKey)(nil)},
		{"rsa", nil},
	} {
		err := run(t.Context(), []string{"cert", "device", "--dir", dir, "--out", devs, "--id", "k-" + tc.key, "--key", tc.key}, &out, &errb)
		if tc.want == nil {
			if err == nil || !strings.Contains(err.Error(), "--key") {
				t.Errorf("cert device --key %s = %v, want an error naming --key", tc.key, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("cert device --key %s: %v", tc.key, err)
		}
		c, err := pki.LoadDevice(devs, "k-"+tc.key)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := reflect.TypeOf(c.PrivateKey), reflect.TypeOf(tc.want); got != want {
			t.Errorf("cert device --key %s: a %v key, want %v", tc.key, got, want)
		}
	}
	if err := run(t.Context(), []string{"cert", "revoke", "--dir", dir, "--id", "phone-7", "--serial", c.Leaf.SerialNumber.Text(16)}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	f, err := os.Open(filepath.Join(dir, pki.RevokedFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := pki.ParseRevoked(f)
	if err != nil || !v.Has(c.Leaf, "phone-7") || v.Len() != 2 {
		t.Errorf("deny-list after cert revoke: %d entries, %v", v.Len(), err)
	}
	if err := run(t.Context(), []string{"cert", "revoke", "--dir", dir}, &out, &errb); err == nil || !strings.Contains(err.Error(), "--id") {
		t.Errorf("cert revoke without an entry = %v", err)
	}
}

// fedrec cert run again (to add a node) says it reused the CAs rather than
// claiming to have written them, and leaves them as they were.
func TestCertReusesCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"cert", "--dir", dir, "--nodes", "n1"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	if s := out.String(); !strings.Contains(s, "(new CA)") || strings.Contains(s, "reused") {
		t.Errorf("first cert output:\n%s\nwant the CAs reported as new", s)
	}
	ca, err := os.ReadFile(filepath.Join(dir, pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(t.Context(), []string{"cert", "--dir", dir, "--nodes", "n4"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	want := "reused " + filepath.Join(dir, pki.CAFile) + ", " + filepath.Join(dir, pki.DeviceCAFile) + " (existing CA)\n" +
		"wrote certificates for n4 in " + dir + "\n"
	if s := out.String(); s != want {
		t.Errorf("second cert output:\n%s\nwant:\n%s", s, want)
	}
	if ca2, err := os.ReadFile(filepath.Join(dir, pki.CAFile)); err != nil || !bytes.Equal(ca, ca2) {
		t.Errorf("cert --nodes n4 changed %s (%v)", pki.CAFile, err)
	}
	if _, err := pki.Load(dir, "n4"); err != nil {
		t.Errorf("n4's certificate: %v", err)
	}
}

// fedrec cert roster lists the device CA's valid, unrevoked device
// certificates and writes the roster nodes load; it says which it left
// out, and refuses what cannot apply.
func TestCertRoster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"cert", "--dir", dir, "--nodes", "a"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	devs := filepath.Join(t.TempDir(), "devices")
	for _, id := range []string{"d1", "d2", "d3"} {
		if err := run(t.Context(), []string{"cert", "device", "--dir", dir, "--out", devs, "--id", id}, &out, &errb); err != nil {
			t.Fatal(err, errb.String())
		}
	}
	if err := run(t.Context(), []string{"cert", "revoke", "--dir", dir, "--id", "d2"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if err := run(t.Context(), []string{"cert", "roster", "--dir", dir, "--epoch", "5", devs}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	if !strings.Contains(out.String(), "roster 5 of 2 devices") || !strings.Contains(errb.String(), "left out d2: revoked") {
		t.Errorf("cert roster said %q, %q", out.String(), errb.String())
	}
	b, err := pki.Load(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	r, err := pki.LoadRoster(b.Roster, b.Devices, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r.Info.Epoch != 5 || r.Len() != 2 {
		t.Errorf("roster %d of %d devices, want 5 of 2", r.Info.Epoch, r.Len())
	}
	if d := time.Until(r.Info.NotAfter); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("roster valid for %v, want a day", d)
	}
	for _, args := range [][]string{
		{"cert", "roster", "--dir", dir},
		{"cert", "roster", "--dir", dir, "--days", "0", devs},
		{"cert", "roster", "--dir", dir, filepath.Join(devs, "nothing.pem")},
		{"cert", "roster", "--dir", t.TempDir(), devs},
	} {
		if err := run(t.Context(), args, &out, &errb); err == nil {
			t.Errorf("%q = nil error", args)
		}
	}
}
