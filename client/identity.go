package client

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
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
// (secagg.Identity): its device certificate and the certificate's key,
// Ed25519 or ECDSA P-256 (an app's backend may issue either; peers may
// mix them). It signs with the key and accepts a peer's signature only
// under a credential that is a device certificate of the device CA (client
// authentication usage, within its validity) whose common name is the
// client ID at the peer's index in the round's cohort, or a roster
// credential (wire.RosterCredential: an entry of a device roster whose
// roster certificate is the device CA's, with the entry's Merkle path)
// for that client ID, within the entry's and the roster's validity. The
// protocol names clients by their cohort index; the cohort maps an index
// to a client ID.
//
// It cannot see the coordinator's deny-list: a revoked device is refused
// by an honest node at its TLS connection (and the node relays the
// certificate of that connection), and against a malicious node the
// certificates' short lifetime bounds how long a revoked one serves, or,
// in a round of roster devices only (RequireRoster), the roster's.
type Identity struct {
	cert   []byte // DER of the device certificate
	key    crypto.Signer
	roots  *x509.CertPool
	cohort []string
	now    func() time.Time

	mu   sync.Mutex
	keys map[uint32]verified // peer index → its verified certificate
	// rosterOnly refuses bare certificates (RequireRoster).
	rosterOnly bool
	certs      *certCache // shared by the rounds of one Dialer
}

type verified struct {
	der []byte
	key crypto.PublicKey // checked by deviceKey
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
	// rosters remembers the roster certificates that passed
	// wire.VerifyRosterCert, by digest: one or two at a time (a roster and
	// its successor).
	rosters map[[32]byte]wire.RosterInfo
}

// maxCachedRosters bounds certCache.rosters.
const maxCachedRosters = 4

// roster returns what the roster certificate der says, checking it
// against roots the first time.
func (c *certCache) roster(der []byte, roots *x509.CertPool, now time.Time) (wire.RosterInfo, error) {
	sum := sha256.Sum256(der)
	c.mu.Lock()
	info, ok := c.rosters[sum]
	c.mu.Unlock()
	if ok && !now.Before(info.NotBefore) && !now.After(info.NotAfter) {
		return info, nil
	}
	info, err := wire.VerifyRosterCert(der, roots, now)
	if err != nil {
		return info, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rosters) >= maxCachedRosters {
		clear(c.rosters)
	}
	c.rosters[sum] = info
	return info, nil
}

type checkedCert struct {
	id                  string // wire.DeviceID
	key                 crypto.PublicKey
	notBefore, notAfter time.Time
}

// maxCachedCerts bounds a certCache: past it, expired entries go, then
// the whole cache if still full (a device meets that many peers rarely;
// starting over costs one chain check per peer).
const maxCachedCerts = 4096

func newCertCache() *certCache {
	return &certCache{m: map[[32]byte]checkedCert{}, rosters: map[[32]byte]wire.RosterInfo{}}
}

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
// certificate with its private key: an Ed25519 or ECDSA P-256 key, or a
// crypto.Signer of one, such as a key in the platform's keystore) for a
// round whose cohort
// lists the client IDs in index order; deviceCA holds the device CA's
// certificate. cohort must not repeat an ID: one certificate may fill one
// place in a cohort.
func NewIdentity(cert tls.Certificate, deviceCA *x509.CertPool, cohort []string) (*Identity, error) {
	return newIdentity(cert, deviceCA, cohort, newCertCache())
}

// newIdentity is NewIdentity with the cache of certificates already
// checked against deviceCA, which the Dialer keeps across rounds.
func newIdentity(cert tls.Certificate, deviceCA *x509.CertPool, cohort []string, certs *certCache) (*Identity, error) {
	key, err := signingKey(cert)
	if err != nil {
		return nil, err
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

// signingKey returns the key of cert, a device certificate, if a signed
// round accepts it: a crypto.Signer of an Ed25519 or ECDSA P-256 key,
// the certificate's own key.
func signingKey(cert tls.Certificate) (crypto.Signer, error) {
	if len(cert.Certificate) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrIdentity)
	}
	key, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: the device key (%T) cannot sign", ErrIdentity, cert.PrivateKey)
	}
	if err := deviceKey(key.Public()); err != nil {
		return nil, fmt.Errorf("%w: the device key: %v", ErrIdentity, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%w: the device certificate: %v", ErrIdentity, err)
		}
	}
	// Else peers would refuse every signature, without saying why.
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("%w: the device key is not the certificate's", ErrIdentity)
	}
	return key, nil
}

// RequireRoster makes d accept only roster credentials from its peers, as
// in a round that admits only the devices of the device roster
// (wire.SecAggParams.Roster): a roster lists the certificates the device
// CA stood by when it issued it, so that d then accepts no certificate
// revoked before the roster, whatever a lying leader relays. Call it
// before the round.
func (d *Identity) RequireRoster() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rosterOnly = true
}

// Credential returns the device certificate, DER.
func (d *Identity) Credential() []byte { return d.cert }

// Sign signs msg with the device key: Ed25519 (which hashes msg itself),
// or ECDSA P-256 over SHA-256(msg), ASN.1.
func (d *Identity) Sign(msg []byte) ([]byte, error) {
	if _, ok := d.key.Public().(ed25519.PublicKey); ok {
		return d.key.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	h := sha256.Sum256(msg)
	return d.key.Sign(rand.Reader, h[:], crypto.SHA256)
}

// Verify checks that credential is the device certificate of the client at
// index peer of the cohort and that sig is its signature of msg.
func (d *Identity) Verify(peer uint32, credential, msg, sig []byte) error {
	key, err := d.peerKey(peer, credential)
	if err != nil {
		return err
	}
	if !verifySig(key, msg, sig) {
		return fmt.Errorf("%w: bad signature of %d", ErrIdentity, peer)
	}
	return nil
}

// deviceKey returns nil if pub is a key a device may sign with: Ed25519
// or ECDSA P-256.
func deviceKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return nil
		}
		return fmt.Errorf("ECDSA on %s, want P-256", k.Curve.Params().Name)
	}
	return fmt.Errorf("a %T key, want Ed25519 or ECDSA P-256", pub)
}

// verifySig checks sig of msg under pub, a key deviceKey accepted, as
// Sign makes it.
func verifySig(pub crypto.PublicKey, msg, sig []byte) bool {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(k, msg, sig)
	case *ecdsa.PublicKey:
		h := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(k, h[:], sig)
	}
	return false
}

// peerKey returns the key of peer's certificate, checking the certificate
// the first time it is seen.
func (d *Identity) peerKey(peer uint32, der []byte) (crypto.PublicKey, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.keys[peer]; ok && bytes.Equal(v.der, der) {
		return v.key, nil
	}
	if int64(peer) >= int64(len(d.cohort)) {
		return nil, fmt.Errorf("%w: peer %d outside a cohort of %d", ErrIdentity, peer, len(d.cohort))
	}
	isRoster := wire.IsRosterCredential(der)
	if d.rosterOnly && !isRoster {
		return nil, fmt.Errorf("%w: peer %d sent a bare certificate, and the round admits only devices of the device roster", ErrIdentity, peer)
	}
	now, sum := d.now(), sha256.Sum256(der)
	c, ok := d.certs.get(sum, now)
	if !ok {
		check := d.checkCert
		if isRoster {
			check = d.checkRosterCredential
		}
		var err error
		if c, err = check(peer, der, now); err != nil {
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
// valid at now, with an Ed25519 or ECDSA P-256 key.
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
	if err := deviceKey(cert.PublicKey); err != nil {
		return checkedCert{}, fmt.Errorf("%w: certificate of %d: %v", ErrIdentity, peer, err)
	}
	return checkedCert{id: wire.DeviceID(cert), key: cert.PublicKey, notBefore: cert.NotBefore, notAfter: cert.NotAfter}, nil
}

// checkRosterCredential checks that der is a roster credential
// (wire.RosterCredential) whose roster certificate is the device CA's and
// valid at now, and whose entry is in that roster, valid at now, with an
// Ed25519 or ECDSA P-256 key: a few hashes, where a certificate's chain
// costs a signature check. The roster certificate's check is remembered.
func (d *Identity) checkRosterCredential(peer uint32, der []byte, now time.Time) (checkedCert, error) {
	rc, err := wire.DecodeRosterCredential(der)
	if err != nil {
		return checkedCert{}, fmt.Errorf("%w: credential of %d: %v", ErrIdentity, peer, err)
	}
	info, err := d.certs.roster(rc.Roster, d.roots, now)
	if err != nil {
		return checkedCert{}, fmt.Errorf("%w: credential of %d: %v", ErrIdentity, peer, err)
	}
	if err := info.Check(rc, now); err != nil {
		return checkedCert{}, fmt.Errorf("%w: credential of %d: %v", ErrIdentity, peer, err)
	}
	key, err := x509.ParsePKIXPublicKey(rc.Entry.Key)
	if err != nil {
		return checkedCert{}, fmt.Errorf("%w: credential of %d: %v", ErrIdentity, peer, err)
	}
	if err := deviceKey(key); err != nil {
		return checkedCert{}, fmt.Errorf("%w: credential of %d: %v", ErrIdentity, peer, err)
	}
	notBefore, notAfter := time.Unix(rc.Entry.NotBefore, 0), time.Unix(rc.Entry.NotAfter, 0)
	if info.NotAfter.Before(notAfter) {
		notAfter = info.NotAfter
	}
	return checkedCert{id: rc.Entry.ID, key: key, notBefore: notBefore, notAfter: notAfter}, nil
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
