package mobile

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// The device certificate's ID is the client ID: taken from it when
// ClientID is empty, refused when ClientID names another device. The
// device CA for signed secure rounds must parse.
func TestDeviceCertificateOptions(t *testing.T) {
	dir := t.TempDir()
	if err := pki.WriteDir(dir, nil, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Both key types a backend may issue; files written by pki before
	// Ed25519 was its default are the P-256 ones.
	for _, kt := range []pki.KeyType{pki.Ed25519, pki.P256} {
		id := "device-" + string(kt)
		if err := pki.WriteDevice(dir, dir, id, time.Hour, kt); err != nil {
			t.Fatal(err)
		}
		ca, cert, key := read(pki.CAFile), read(pki.DeviceCertFile(id)), read(pki.DeviceKeyFile(id))
		base := Options{Key: make([]byte, 32), Coordinators: "127.0.0.1:7001", CACertPEM: ca, Catalogue: "a\nb\n", DeviceCertPEM: cert, DeviceKeyPEM: key}
		tests := []struct {
			name string
			mod  func(o *Options)
			ok   bool
		}{
			{"ID from the certificate", func(o *Options) {}, true},
			{"same ID", func(o *Options) { o.ClientID = id }, true},
			{"another ID", func(o *Options) { o.ClientID = "device-2" }, false},
			{"no key", func(o *Options) { o.DeviceKeyPEM = nil }, false},
			{"key of another certificate", func(o *Options) { o.DeviceKeyPEM = read(pki.CAKeyFile) }, false},
			{"device CA for signed rounds", func(o *Options) {
				o.DeviceCACertPEM, o.RequireSignedSecAgg, o.MinSecAggColluders = read(pki.DeviceCAFile), true, 1
			}, true},
			{"bad device CA", func(o *Options) { o.DeviceCACertPEM = []byte("not a certificate") }, false},
			{"colluders without signed rounds", func(o *Options) { o.MinSecAggColluders = 1 }, false},
		}
		for i, tt := range tests {
			o := base
			o.Dir = filepath.Join(t.TempDir(), fmt.Sprint(i))
			tt.mod(&o)
			c, err := New(&o)
			if err == nil {
				c.Close()
			}
			if (err == nil) != tt.ok {
				t.Errorf("%s, %s: New = %v, want ok %v", kt, tt.name, err, tt.ok)
			}
		}
	}
}

func TestUnauthenticatedCode(t *testing.T) {
	for _, c := range []wire.Code{wire.CodeUnauthenticated, wire.CodeForbidden} {
		err := wrap(fmt.Errorf("client: check in: %w", wire.Errorf(c, "x")))
		if got := ErrorCode(err.Error()); got != CodeUnauthenticated {
			t.Errorf("ErrorCode(%v) = %q, want %q", err, got, CodeUnauthenticated)
		}
	}
}
