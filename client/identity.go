package client

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// Identity is the device's long-term identity in a signed secure round
// (secagg.Identity): its device certificate and the certificate's ECDSA
// P-256 key. It signs with the key and accepts a peer's signature only
// under a credential that is a device certificate of the device CA (client
// authentication usage, within its validity) whose common name is the
// client ID at the peer's index in the round's cohort. The protocol names
// clients by their cohort index; the cohort maps an index to a client ID.
//
// It cannot see the coordinator's deny-list: a revoked device is refused
// by an honest node at its TLS connection (and the node relays the
// certificate of that connection), and against a malicious node the
// certificates' short lifetime bounds how long a revoked one serves.
type Identity struct {
	cert   []byte // DER of the device certificate
	key    *ecdsa.PrivateKey
	roots  *x509.CertPool
	cohort []string
	now    func() time.Time

	mu   sync.Mutex
	keys map[uint32]verified // peer index → its verified certificate
}

type verified struct {
	der []byte
	key *ecdsa.PublicKey
}

// ErrIdentity is wrapped by the errors of Identity.Verify and NewIdentity.
var ErrIdentity = errors.New("client: device identity")

// NewIdentity returns the Identity of the device holding cert (its device
// certificate with its ECDSA P-256 private key) for a round whose cohort
// lists the client IDs in index order; deviceCA holds the device CA's
// certificate. cohort must not repeat an ID: one certificate may fill one
// place in a cohort.
func NewIdentity(cert tls.Certificate, deviceCA *x509.CertPool, cohort []string) (*Identity, error) {
	if len(cert.Certificate) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrIdentity)
	}
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: the device key is not ECDSA P-256", ErrIdentity)
	}
	if deviceCA == nil {
		return nil, fmt.Errorf("%w: no device CA", ErrIdentity)
	}
	if len(cert.Certificate[0]) > secagg.MaxCredentialLen {
		return nil, fmt.Errorf("%w: certificate of %d bytes, more than %d", ErrIdentity, len(cert.Certificate[0]), secagg.MaxCredentialLen)
	}
	seen := make(map[string]bool, len(cohort))
	for _, id := range cohort {
		if seen[id] {
			return nil, fmt.Errorf("%w: the cohort lists %q twice", ErrIdentity, id)
		}
		seen[id] = true
	}
	return &Identity{
		cert: bytes.Clone(cert.Certificate[0]), key: key, roots: deviceCA,
		cohort: cohort, now: time.Now, keys: map[uint32]verified{},
	}, nil
}

// Credential returns the device certificate, DER.
func (d *Identity) Credential() []byte { return d.cert }

// Sign signs SHA-256(msg) with the device key (ASN.1 ECDSA).
func (d *Identity) Sign(msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, d.key, h[:])
}

// Verify checks that credential is the device certificate of the client at
// index peer of the cohort and that sig is its signature of msg.
func (d *Identity) Verify(peer uint32, credential, msg, sig []byte) error {
	key, err := d.peerKey(peer, credential)
	if err != nil {
		return err
	}
	h := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(key, h[:], sig) {
		return fmt.Errorf("%w: bad signature of %d", ErrIdentity, peer)
	}
	return nil
}

// peerKey returns the key of peer's certificate, checking the certificate
// the first time it is seen.
func (d *Identity) peerKey(peer uint32, der []byte) (*ecdsa.PublicKey, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.keys[peer]; ok && bytes.Equal(v.der, der) {
		return v.key, nil
	}
	if int64(peer) >= int64(len(d.cohort)) {
		return nil, fmt.Errorf("%w: peer %d outside a cohort of %d", ErrIdentity, peer, len(d.cohort))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate of %d: %v", ErrIdentity, peer, err)
	}
	opts := x509.VerifyOptions{Roots: d.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: d.now()}
	if _, err := cert.Verify(opts); err != nil {
		return nil, fmt.Errorf("%w: certificate of %d: %v", ErrIdentity, peer, err)
	}
	if !hasUsage(cert, x509.ExtKeyUsageClientAuth) || cert.IsCA {
		return nil, fmt.Errorf("%w: certificate of %d is not a device certificate", ErrIdentity, peer)
	}
	if got, want := wire.DeviceID(cert), d.cohort[peer]; got != want {
		return nil, fmt.Errorf("%w: certificate of %q at index %d, the cohort has %q there", ErrIdentity, got, peer, want)
	}
	key, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: certificate of %d has no ECDSA P-256 key", ErrIdentity, peer)
	}
	d.keys[peer] = verified{der: bytes.Clone(der), key: key}
	return key, nil
}

func hasUsage(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	for _, x := range c.ExtKeyUsage {
		if x == u {
			return true
		}
	}
	return false
}

var _ secagg.Identity = (*Identity)(nil)
