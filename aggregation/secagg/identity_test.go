package secagg

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// testCA issues test identities the way the device CA issues device
// certificates: a credential is the client id and an ECDSA P-256 public
// key, signed by the CA. A real credential is an X.509 certificate whose
// common name is the client id; the checks are the same (chain to the CA,
// name = id, then the signature).
type testCA struct {
	key *ecdsa.PrivateKey
}

func newTestCA() *testCA {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return &testCA{key: k}
}

type testIdentity struct {
	ca   *ecdsa.PublicKey
	id   uint32
	key  *ecdsa.PrivateKey
	cred []byte
	// verified caches the keys of credentials already checked, as an SDK
	// checks each peer's certificate chain once a round.
	verified map[string]*ecdsa.PublicKey
	// Operations counted for the benchmarks: signatures made, credentials
	// checked (the CA's signature) and signatures checked.
	signs, credChecks, sigChecks int
}

func (ca *testCA) issue(id uint32) *testIdentity {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return ca.issueKey(id, k)
}

// issueKey certifies key as client id's.
func (ca *testCA) issueKey(id uint32, key *ecdsa.PrivateKey) *testIdentity {
	pub, err := key.PublicKey.ECDH()
	if err != nil {
		panic(err)
	}
	body := binary.BigEndian.AppendUint32(nil, id)
	body = append(body, pub.Bytes()...)
	h := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, ca.key, h[:])
	if err != nil {
		panic(err)
	}
	return &testIdentity{ca: &ca.key.PublicKey, id: id, key: key, cred: append(body, sig...), verified: map[string]*ecdsa.PublicKey{}}
}

func (i *testIdentity) Credential() []byte { return i.cred }

func (i *testIdentity) Sign(msg []byte) ([]byte, error) {
	i.signs++
	h := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, i.key, h[:])
}

var errTestIdentity = errors.New("test identity: bad credential")

func (i *testIdentity) Verify(peer uint32, cred, msg, sig []byte) error {
	pub := i.verified[string(cred)]
	if pub == nil {
		const bodyLen = 4 + 65
		if len(cred) <= bodyLen {
			return errTestIdentity
		}
		body, caSig := cred[:bodyLen], cred[bodyLen:]
		i.credChecks++
		h := sha256.Sum256(body)
		if !ecdsa.VerifyASN1(i.ca, h[:], caSig) {
			return fmt.Errorf("%w: not issued by the CA", errTestIdentity)
		}
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), body[4:])
		if err != nil {
			return fmt.Errorf("%w: %v", errTestIdentity, err)
		}
		pub = k
		i.verified[string(bytes.Clone(cred))] = pub
	}
	if id := binary.BigEndian.Uint32(cred); id != peer {
		return fmt.Errorf("%w: issued to %d, not %d", errTestIdentity, id, peer)
	}
	i.sigChecks++
	h := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(pub, h[:], sig) {
		return errors.New("test identity: signature does not verify")
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
