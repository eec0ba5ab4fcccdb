package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Device tokens (coordinator/wire's token format) authenticate devices
// that cannot present a certificate: browsers. The shop's backend signs
// them with the token key (Ed25519); nodes verify them with the public
// keys in DeviceTokenPubFile, read from their --certs directory.
const (
	// DeviceTokenKeyFile holds the token signing key (PKCS #8 PEM). It
	// belongs to the shop's backend, never to a node.
	DeviceTokenKeyFile = "device-token-key.pem"
	// DeviceTokenPubFile holds the public keys nodes accept tokens of
	// (PKIX PEM blocks): during a rotation, the new key and the old one.
	DeviceTokenPubFile = "device-token.pem"
)

// MakeTokenKey writes a new token key into dir (DeviceTokenKeyFile) and
// appends its public key to DeviceTokenPubFile, unless dir holds a token
// key already; it reports whether it made one.
func MakeTokenKey(dir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, DeviceTokenKeyFile)); err == nil {
		return false, nil
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, err
	}
	if err := writePEM(filepath.Join(dir, DeviceTokenKeyFile), "PRIVATE KEY", der, 0o600); err != nil {
		return false, err
	}
	return true, AppendTokenPub(dir, pub)
}

// AppendTokenPub adds pub to the public keys nodes accept (a rotation:
// add the new key, switch the backend to it, remove the old one once its
// last token expired, at most wire.MaxTokenTTL later).
func AppendTokenPub(dir string, pub ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, DeviceTokenPubFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PUBLIC KEY", Bytes: der}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LoadTokenKey loads the token signing key from dir.
func LoadTokenKey(dir string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(filepath.Join(dir, DeviceTokenKeyFile))
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("pki: no PEM block in %s", DeviceTokenKeyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", DeviceTokenKeyFile, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("pki: %s is not an Ed25519 key", DeviceTokenKeyFile)
	}
	return key, nil
}

// LoadTokenPubs loads the public keys of DeviceTokenPubFile in dir; a
// missing file is os.ErrNotExist.
func LoadTokenPubs(dir string) ([]ed25519.PublicKey, error) {
	b, err := os.ReadFile(filepath.Join(dir, DeviceTokenPubFile))
	if err != nil {
		return nil, err
	}
	var out []ed25519.PublicKey
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: %s: %w", DeviceTokenPubFile, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("pki: %s holds a key that is not Ed25519", DeviceTokenPubFile)
		}
		out = append(out, pub)
	}
	if len(out) == 0 {
		return nil, errors.New("pki: no public key in " + DeviceTokenPubFile)
	}
	return out, nil
}

// HasDevice reports whether every credential of device id is revoked (an
// "id:" entry): what revokes a device's tokens. A nil list revokes
// nothing.
func (v *Revoked) HasDevice(id string) bool { return v != nil && v.ids[id] }
