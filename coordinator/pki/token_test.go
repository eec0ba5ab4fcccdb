package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// The device token keys are part of a loaded bundle's files: a change of
// device-token.pem changes Sum (so a node reloads), and Reload hands the
// new bundle the keys in the file (a rotation adds one; Reload never
// drops them).
func TestTokenKeysReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := WriteDir(dir, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := MakeTokenKey(dir); err != nil {
		t.Fatal(err)
	}
	b, err := Load(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(b.TokenKeys) != 1 {
		t.Fatalf("Load: %d token keys, want 1", len(b.TokenKeys))
	}
	if !slices.Contains(b.Files(), filepath.Join(dir, DeviceTokenPubFile)) {
		t.Errorf("Files() = %q, without %s", b.Files(), DeviceTokenPubFile)
	}
	before, err := b.Sum()
	if err != nil {
		t.Fatal(err)
	}
	nb, err := b.Reload(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(nb.TokenKeys) != 1 || !nb.TokenKeys[0].Equal(b.TokenKeys[0]) {
		t.Errorf("Reload: token keys %d, want the bundle's one", len(nb.TokenKeys))
	}

	// A rotation: the new key is appended.
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := AppendTokenPub(dir, pub); err != nil {
		t.Fatal(err)
	}
	after, err := b.Sum()
	if err != nil {
		t.Fatal(err)
	}
	if after == before {
		t.Error("Sum did not change with device-token.pem")
	}
	nb, err = b.Reload(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(nb.TokenKeys) != 2 || !nb.TokenKeys[1].Equal(pub) {
		t.Errorf("Reload after a rotation: %d token keys, want 2 ending with the new one", len(nb.TokenKeys))
	}
}
