package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
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
	if dca, err := LoadDeviceCA(dir); err != nil || keyType(dca.Key) != Ed25519 {
		t.Errorf("LoadDeviceCA: %v; want an Ed25519 device CA", err)
	}
	out := filepath.Join(t.TempDir(), "dev")
	for _, kt := range []KeyType{Ed25519, P256} {
		id := "phone-" + string(kt)
		if err := WriteDevice(dir, out, id, time.Hour, kt); err != nil {
			t.Fatal(err)
		}
		c, err := LoadDevice(out, id)
		if err != nil {
			t.Fatal(err)
		}
		if got := keyType(c.PrivateKey); got != kt {
			t.Errorf("LoadDevice(%s): a %q key, want %q", id, got, kt)
		}
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		if leaf.Subject.CommonName != id {
			t.Errorf("device CN = %q, want %s", leaf.Subject.CommonName, id)
		}
		client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.Devices, KeyUsages: client}); err != nil {
			t.Errorf("%s: device certificate does not verify against the device CA: %v", kt, err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.CA, KeyUsages: client}); err == nil {
			t.Errorf("%s: device certificate verifies against the cluster CA", kt)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.Devices, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Errorf("%s: device certificate is valid for server authentication", kt)
		}
		if fi, err := os.Stat(filepath.Join(out, DeviceKeyFile(id))); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: device key mode = %v, %v; want 0600", kt, fi, err)
		}
	}
	// A device CA that is the cluster CA would make devices nodes.
	ca, _ := os.ReadFile(filepath.Join(dir, CAFile))
	os.WriteFile(filepath.Join(dir, DeviceCAFile), ca, 0o644)
	if _, err := Load(dir, "a"); err == nil {
		t.Error("Load accepted a device CA equal to the cluster CA")
	}
	for _, bad := range []string{"", "../x", "a/b", strings.Repeat("x", 129), "a\nb"} {
		if err := WriteDevice(dir, out, bad, time.Hour, Ed25519); err == nil {
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

// keyType names the type of a private key pki makes ("" for another).
func keyType(k crypto.PrivateKey) KeyType {
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return Ed25519
	case *ecdsa.PrivateKey:
		if k.Curve == elliptic.P256() {
			return P256
		}
	}
	return ""
}

// Device CAs and device certificates of either key type, written before
// Ed25519 was the default (SEC 1 "EC PRIVATE KEY" files) or after, load
// and issue certificates of either type that verify against their CA.
func TestDeviceKeyTypes(t *testing.T) {
	for _, caType := range []KeyType{P256, Ed25519} {
		for _, devType := range []KeyType{P256, Ed25519} {
			t.Run(fmt.Sprintf("ca=%s/device=%s", caType, devType), func(t *testing.T) {
				dir := t.TempDir()
				if err := WriteDeviceCA(dir, time.Hour, caType); err != nil {
					t.Fatal(err)
				}
				if err := WriteDeviceCA(dir, time.Hour, caType); err == nil {
					t.Error("WriteDeviceCA over an existing device CA = nil error")
				}
				ca, err := LoadDeviceCA(dir)
				if err != nil {
					t.Fatalf("LoadDeviceCA: %v", err)
				}
				if got := keyType(ca.Key); got != caType {
					t.Errorf("LoadDeviceCA: a %q key, want %q", got, caType)
				}
				if err := WriteDevice(dir, dir, "d", time.Hour, devType); err != nil {
					t.Fatal(err)
				}
				c, err := LoadDevice(dir, "d")
				if err != nil {
					t.Fatalf("LoadDevice: %v", err)
				}
				if got := keyType(c.PrivateKey); got != devType {
					t.Errorf("LoadDevice: a %q key, want %q", got, devType)
				}
				pool, err := LoadDevicePool(dir)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
					t.Errorf("device certificate does not verify against its CA: %v", err)
				}
			})
		}
	}
	if _, err := ParseKeyType("rsa"); err == nil {
		t.Error("ParseKeyType(rsa) = nil error")
	}
	if _, err := NewCAKey("x", time.Hour, "rsa"); err == nil {
		t.Error(`NewCAKey("rsa") = nil error`)
	}
}
