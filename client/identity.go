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

	mu    sync.Mutex
	keys  map[uint32]verified // peer index → its verified certificate
	certs *certCache          // shared by the rounds of one Dialer
}

type verified struct {
	der []byte
	key *ecdsa.PublicKey
}

// certCache remembers the device certificates that passed the chain check
// against one device CA, so that a long-lived device does not verify again,
// round after round, the certificate of a peer it has met before: the
// chain check costs more than verifying the peer's advert
// (BenchmarkIdentityVerify). An entry is the
// certificate's SHA-256 digest, so only the very same bytes hit it, and it
// serves only within the certificate's validity. What depends on the round
// (the client ID at the peer's index) is checked every time.
type certCache struct {
	mu sync.Mutex
	m  map[[32]byte]checkedCert
}

type checkedCert struct {
	id                  string // wire.DeviceID
	key                 *ecdsa.PublicKey
	notBefore, notAfter time.Time
}

// maxCachedCerts bounds a certCache: past it, expired entries go, then
// the whole cache if still full (a device meets that many peers rarely;
// starting over costs one chain check per peer).
const maxCachedCerts = 4096

func newCertCache() *certCache { return &certCache{m: map[[32]byte]checkedCert{}} }

func (c *certCache) get(sum [32]byte, now time.Time) (checkedCert, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[sum]
	if !ok || now.Before(v.notBefore) || now.After(v.notAfter) {
		return checkedCert{}, false
	}
	return v, true
}

func (c *certCache) put(sum [32]byte, v checkedCert, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedCerts {
		for k, e := range c.m {
			if now.After(e.notAfter) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCachedCerts {
			clear(c.m)
		}
	}
	c.m[sum] = v
}

// ErrIdentity is wrapped by the errors of Identity.Verify and NewIdentity.
var ErrIdentity = errors.New("client: device identity")

// NewIdentity returns the Identity of the device holding cert (its device
// certificate with its ECDSA P-256 private key) for a round whose cohort
// lists the client IDs in index order; deviceCA holds the device CA's
// certificate. cohort must not repeat an ID: one certificate may fill one
// place in a cohort.
func NewIdentity(cert tls.Certificate, deviceCA *x509.CertPool, cohort []string) (*Identity, error) {
	return newIdentity(cert, deviceCA, cohort, newCertCache())
}

// newIdentity is NewIdentity with the cache of certificates already
// checked against deviceCA, which the Dialer keeps across rounds.
func newIdentity(cert tls.Certificate, deviceCA *x509.CertPool, cohort []string, certs *certCache) (*Identity, error) {
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
		cohort: cohort, now: time.Now, keys: map[uint32]verified{}, certs: certs,
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
	now, sum := d.now(), sha256.Sum256(der)
	c, ok := d.certs.get(sum, now)
	if !ok {
		var err error
		if c, err = d.checkCert(peer, der, now); err != nil {
			return nil, err
		}
		d.certs.put(sum, c, now)
	}
	if want := d.cohort[peer]; c.id != want {
		return nil, fmt.Errorf("%w: certificate of %q at index %d, the cohort has %q there", ErrIdentity, c.id, peer, want)
	}
	d.keys[peer] = verified{der: bytes.Clone(der), key: c.key}
	return c.key, nil
}

// checkCert checks that der is a device certificate of the device CA,
// valid at now, with an ECDSA P-256 key.
func (d *Identity) checkCert(peer uint32, der []byte, now time.Time) (checkedCert, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return checkedCert{}, fmt.Errorf("%w: certificate of %d: %v", ErrIdentity, peer, err)
	}
	opts := x509.VerifyOptions{Roots: d.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now}
	if _, err := cert.Verify(opts); err != nil {
		return checkedCert{}, fmt.Errorf("%w: certificate of %d: %v", ErrIdentity, peer, err)
	}
	if !hasUsage(cert, x509.ExtKeyUsageClientAuth) || cert.IsCA {
		return checkedCert{}, fmt.Errorf("%w: certificate of %d is not a device certificate", ErrIdentity, peer)
	}
	key, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		return checkedCert{}, fmt.Errorf("%w: certificate of %d has no ECDSA P-256 key", ErrIdentity, peer)
	}
	return checkedCert{id: wire.DeviceID(cert), key: key, notBefore: cert.NotBefore, notAfter: cert.NotAfter}, nil
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
