package secagg

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// testCA issues test identities the way the device CA issues device
// certificates: a credential is the client id, a key type and a public
// key, signed by the CA. A real credential is an X.509 certificate whose
// common name is the client id; the checks are the same (chain to the CA,
// name = id, then the signature). The CA and its identities have keys of
// one type: Ed25519 (the device certificates' default) or ECDSA P-256.
type testCA struct {
	kt  string
	key crypto.Signer
	// roster makes credentials roster entries (setRoster): the model of
	// the device roster of coordinator/wire. rosterKnown: the devices
	// checked the roster's signature in an earlier round (a roster serves
	// a day of rounds), so that a round checks only paths.
	roster, rosterKnown bool
}

// Key types of test identities.
const (
	keyEd25519 = "ed25519"
	keyP256    = "p256"
)

func newTestCA() *testCA { return newTestCAKey(keyEd25519) }

func newTestCAKey(kt string) *testCA { return &testCA{kt: kt, key: testKey(kt)} }

func testKey(kt string) crypto.Signer {
	var k crypto.Signer
	var err error
	switch kt {
	case keyEd25519:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case keyP256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		err = fmt.Errorf("key type %q", kt)
	}
	if err != nil {
		panic(err)
	}
	return k
}

// testSign signs as client.Identity does: Ed25519 over msg, ECDSA over
// SHA-256(msg).
func testSign(key crypto.Signer, msg []byte) ([]byte, error) {
	if _, ok := key.(ed25519.PrivateKey); ok {
		return key.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	h := sha256.Sum256(msg)
	return key.Sign(rand.Reader, h[:], crypto.SHA256)
}

func testVerify(pub crypto.PublicKey, msg, sig []byte) bool {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(k, msg, sig)
	case *ecdsa.PublicKey:
		h := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(k, h[:], sig)
	}
	return false
}

type testIdentity struct {
	ca   crypto.PublicKey
	id   uint32
	key  crypto.Signer
	cred []byte
	// verified caches the keys of credentials already checked, as an SDK
	// checks each peer's certificate chain once a round.
	verified map[string]crypto.PublicKey
	// In a roster: the root and the CA's signature of it, and whether
	// this identity checked that signature yet.
	root                [32]byte
	rootSig             []byte
	rootChecked, roster bool
	// Operations counted for the benchmarks: signatures made, credentials
	// checked (the CA's signature) and signatures checked.
	signs, credChecks, sigChecks int
}

func (ca *testCA) issue(id uint32) *testIdentity { return ca.issueKey(id, testKey(ca.kt)) }

// issueKey certifies key as client id's. A credential is id (4 bytes),
// the length of the public key (1 byte), the key (Ed25519's 32 bytes or
// an uncompressed P-256 point) and the CA's signature.
func (ca *testCA) issueKey(id uint32, key crypto.Signer) *testIdentity {
	var pub []byte
	switch k := key.Public().(type) {
	case ed25519.PublicKey:
		pub = k
	case *ecdsa.PublicKey:
		e, err := k.ECDH()
		if err != nil {
			panic(err)
		}
		pub = e.Bytes()
	}
	body := binary.BigEndian.AppendUint32(nil, id)
	body = append(append(body, byte(len(pub))), pub...)
	sig, err := testSign(ca.key, body)
	if err != nil {
		panic(err)
	}
	return &testIdentity{ca: ca.key.Public(), id: id, key: key, cred: append(body, sig...), verified: map[string]crypto.PublicKey{}}
}

func (i *testIdentity) Credential() []byte { return i.cred }

func (i *testIdentity) Sign(msg []byte) ([]byte, error) {
	i.signs++
	return testSign(i.key, msg)
}

var errTestIdentity = errors.New("test identity: bad credential")

func (i *testIdentity) Verify(peer uint32, cred, msg, sig []byte) error {
	pub := i.verified[string(cred)]
	if pub == nil {
		if len(cred) < 5 || len(cred) <= 5+int(cred[4]) {
			return errTestIdentity
		}
		bodyLen := 5 + int(cred[4])
		body, rest := cred[:bodyLen], cred[bodyLen:]
		if i.roster {
			if err := i.checkRosterEntry(body, rest); err != nil {
				return err
			}
		} else {
			i.credChecks++
			if !testVerify(i.ca, body, rest) {
				return fmt.Errorf("%w: not issued by the CA", errTestIdentity)
			}
		}
		switch raw := body[5:]; len(raw) {
		case ed25519.PublicKeySize:
			pub = ed25519.PublicKey(bytes.Clone(raw))
		default:
			k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
			if err != nil {
				return fmt.Errorf("%w: %v", errTestIdentity, err)
			}
			pub = k
		}
		i.verified[string(bytes.Clone(cred))] = pub
	}
	if id := binary.BigEndian.Uint32(cred); id != peer {
		return fmt.Errorf("%w: issued to %d, not %d", errTestIdentity, id, peer)
	}
	i.sigChecks++
	if !testVerify(pub, msg, sig) {
		return errors.New("test identity: signature does not verify")
	}
	return nil
}

// A roster, as the device roster does it: the CA signs once the root of a
// Merkle tree whose leaves are the credentials' bodies (id, key), padded
// to a power of two; a credential is then the body, the leaf's index (4
// bytes) and its path, which a peer checks with SHA-256 once it checked
// the root's signature (once per identity: a device checks a roster
// certificate once).
func (ca *testCA) setRoster(ids []*testIdentity) {
	var level [][32]byte
	for _, i := range ids {
		level = append(level, rosterLeaf(i.cred[:5+int(i.cred[4])]))
	}
	for len(level)&(len(level)-1) != 0 {
		level = append(level, [32]byte{})
	}
	paths := make([][]byte, len(ids))
	idx := make([]int, len(ids))
	for k := range idx {
		idx[k] = k
	}
	for len(level) > 1 {
		for k := range ids {
			paths[k] = append(paths[k], level[idx[k]^1][:]...)
			idx[k] /= 2
		}
		up := make([][32]byte, len(level)/2)
		for k := range up {
			up[k] = rosterNode(level[2*k], level[2*k+1])
		}
		level = up
	}
	sig, err := testSign(ca.key, level[0][:])
	if err != nil {
		panic(err)
	}
	for k, i := range ids {
		body := i.cred[:5+int(i.cred[4])]
		i.cred = append(binary.BigEndian.AppendUint32(bytes.Clone(body), uint32(k)), paths[k]...)
		i.root, i.rootSig, i.roster = level[0], sig, true
		i.rootChecked = ca.rosterKnown && testVerify(ca.key.Public(), level[0][:], sig)
	}
}

func rosterLeaf(body []byte) [32]byte { return sha256.Sum256(append([]byte{0}, body...)) }

func rosterNode(l, r [32]byte) [32]byte {
	var b [65]byte
	b[0] = 1
	copy(b[1:], l[:])
	copy(b[33:], r[:])
	return sha256.Sum256(b[:])
}

// checkRosterEntry checks that body is in the roster: the root's
// signature (once, counted as a credential check), then the path.
func (i *testIdentity) checkRosterEntry(body, rest []byte) error {
	if !i.rootChecked {
		i.credChecks++
		if !testVerify(i.ca, i.root[:], i.rootSig) {
			return fmt.Errorf("%w: roster not signed by the CA", errTestIdentity)
		}
		i.rootChecked = true
	}
	if len(rest) < 4 || (len(rest)-4)%32 != 0 {
		return errTestIdentity
	}
	k, h := binary.BigEndian.Uint32(rest), rosterLeaf(body)
	for p := rest[4:]; len(p) > 0; p = p[32:] {
		if k&1 == 1 {
			h = rosterNode([32]byte(p), h)
		} else {
			h = rosterNode(h, [32]byte(p))
		}
		k /= 2
	}
	if h != i.root {
		return fmt.Errorf("%w: not in the roster", errTestIdentity)
	}
	return nil
}

// signedConfig is testConfig with Signed set.
func signedConfig(n, d, bits, degree, threshold int) Config {
	c := testConfig(n, d, bits, degree, threshold)
	c.Signed = true
	return c
}

// newSignedRound opens a signed round in which every client has an
// identity issued by ca.
func newSignedRound(t testing.TB, cfg Config, ca *testCA) (*Server, map[uint32]*Client, map[uint32]*testIdentity) {
	t.Helper()
	srv, err := NewServer(cfg, ServerOptions{Workers: 1})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	clients := map[uint32]*Client{}
	idents := map[uint32]*testIdentity{}
	for _, id := range cfg.Clients {
		idents[id] = ca.issue(id)
		c, err := NewSignedClient(cfg, id, idents[id], clientRand(1, id))
		if err != nil {
			t.Fatalf("NewSignedClient(%d): %v", id, err)
		}
		clients[id] = c
	}
	return srv, clients, idents
}
