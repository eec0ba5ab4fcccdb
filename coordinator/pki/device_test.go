package pki

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fedrec cert makes a device CA next to the cluster CA; Load hands it to
// the node with the deny-list's path; device certificates are for client
// authentication only and never verify against the cluster CA.
func TestDeviceCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := WriteDir(dir, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	b, err := Load(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	if b.Devices == nil || b.Revoked != filepath.Join(dir, RevokedFile) {
		t.Fatalf("Load: Devices %v, Revoked %q; want the device CA and %s", b.Devices, b.Revoked, RevokedFile)
	}
	out := filepath.Join(t.TempDir(), "dev")
	if err := WriteDevice(dir, out, "phone-1", time.Hour); err != nil {
		t.Fatal(err)
	}
	c, err := LoadDevice(out, "phone-1")
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(c.Certificate[0])
	if leaf.Subject.CommonName != "phone-1" {
		t.Errorf("device CN = %q, want phone-1", leaf.Subject.CommonName)
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.Devices, KeyUsages: client}); err != nil {
		t.Errorf("device certificate does not verify against the device CA: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.CA, KeyUsages: client}); err == nil {
		t.Error("device certificate verifies against the cluster CA")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.Devices, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("device certificate is valid for server authentication")
	}
	if fi, err := os.Stat(filepath.Join(out, DeviceKeyFile("phone-1"))); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("device key mode = %v, %v; want 0600", fi, err)
	}
	// A device CA that is the cluster CA would make devices nodes.
	ca, _ := os.ReadFile(filepath.Join(dir, CAFile))
	os.WriteFile(filepath.Join(dir, DeviceCAFile), ca, 0o644)
	if _, err := Load(dir, "a"); err == nil {
		t.Error("Load accepted a device CA equal to the cluster CA")
	}
	for _, bad := range []string{"", "../x", "a/b", strings.Repeat("x", 129), "a\nb"} {
		if err := WriteDevice(dir, out, bad, time.Hour); err == nil {
			t.Errorf("WriteDevice(%q) = nil error", bad)
		}
	}
}

func TestParseRevoked(t *testing.T) {
	ca, _ := NewCA("dev", time.Hour)
	a, _ := ca.IssueDevice("a", time.Hour)
	b, _ := ca.IssueDevice("b", time.Hour)
	c, _ := ca.IssueDevice("c", time.Hour)
	v, err := ParseRevoked(strings.NewReader("# lost phones\nid:a\n\nserial:0x" + strings.ToUpper(b.Leaf.SerialNumber.Text(16)) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		cert *x509.Certificate
		want bool
	}{{"a", a.Leaf, true}, {"b", b.Leaf, true}, {"c", c.Leaf, false}} {
		if got := v.Has(tc.cert, tc.id); got != tc.want {
			t.Errorf("Has(%s) = %v, want %v", tc.id, got, tc.want)
		}
	}
	if (*Revoked)(nil).Has(a.Leaf, "a") {
		t.Error("a nil list revokes")
	}
	for _, bad := range []string{"a", "serial:xyz", "id:", "ID:a"} {
		if _, err := ParseRevoked(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseRevoked(%q) = nil error", bad)
		}
	}
	dir := t.TempDir()
	if err := AppendRevoked(dir, "id:x", "serial:ff"); err != nil {
		t.Fatal(err)
	}
	if err := AppendRevoked(dir, "bogus"); err == nil {
		t.Error("AppendRevoked(bogus) = nil error")
	}
	f, _ := os.Open(filepath.Join(dir, RevokedFile))
	defer f.Close()
	if v, err := ParseRevoked(f); err != nil || v.Len() != 2 {
		t.Errorf("appended list: %d entries, %v; want 2", v.Len(), err)
	}
}
