package secagg

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Identity is a client's long-term identity in a signed round
// (Config.Signed). The caller supplies it to NewSignedClient; this package
// never sees a key or a certificate. The client SDK implements it with the
// device certificate: Sign with its Ed25519 or ECDSA P-256 key, Verify by checking the
// peer's certificate chain to the device CA, that it is not revoked, and
// that its common name is the peer's client id, then the signature.
type Identity interface {
	// Credential returns what peers need to verify this client's
	// signatures (the device certificate), at most MaxCredentialLen bytes.
	// It travels in KeyAdvert.Credential.
	Credential() []byte
	// Sign signs msg with this client's private key.
	Sign(msg []byte) ([]byte, error)
	// Verify returns nil if sig is a valid signature of msg by client peer:
	// credential must prove an identity whose client id is peer, and sig
	// must verify under its key.
	Verify(peer uint32, credential, msg, sig []byte) error
}

// Signed and tagged messages. Each starts with a label naming its
// purpose, so a signature or tag of one kind never passes for another, and
// binds the config digest, so it is worthless in any other round or view
// of the round.
const (
	labelAdvertSig      = "fedrec/secagg/v1 key-advert\x00"
	labelConsistencyTag = "fedrec/secagg/v1 consistency-tag\x00"
	labelSurvivorSet    = "fedrec/secagg/v1 survivor-set\x00"
)

// advertMessage is what a client signs in a signed KeyAdvert.
func advertMessage(digest *[32]byte, id uint32, cipherKey, maskKey []byte) []byte {
	b := make([]byte, 0, len(labelAdvertSig)+32+4+len(cipherKey)+len(maskKey))
	b = append(b, labelAdvertSig...)
	b = append(b, digest[:]...)
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(b, cipherKey...)
	return append(b, maskKey...)
}

// survivorSetHash hashes an ascending survivor set, so that a consistency
// tag is over a short message however large the cohort.
func survivorSetHash(ids []uint32) [32]byte {
	h := sha256.New()
	h.Write([]byte(labelSurvivorSet))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(len(ids)))
	h.Write(b[:])
	for _, id := range ids {
		binary.BigEndian.PutUint32(b[:4], id)
		h.Write(b[:4])
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// consistencyTag is the tag by which a client confirms the survivor set
// with hash set to one neighbour: HMAC-SHA256 under the tag key of that
// directed pair (ShareKeys derives it with the pair's share key, from the
// agreement of their signed cipher keys, so only the two of them hold it).
// A tag convinces its receiver as the sender's signature would, and costs
// microseconds where a signature check costs tens; unlike a signature it
// proves nothing to a third party, which the consistency check never asks.
func consistencyTag(key, digest, set *[32]byte) []byte {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(labelConsistencyTag))
	m.Write(digest[:])
	m.Write(set[:])
	return m.Sum(make([]byte, 0, TagLen))
}

// ActiveThreshold returns the smallest threshold t for which a signed round
// keeps every honest client's input from an actively malicious server that
// colludes with up to corrupt clients among any one client's neighbours:
// floor((degree+corrupt)/2) + 1, that is t > (k + c)/2. degree is k, the
// number of neighbours: len(Clients)-1 for the complete graph, Config.Degree
// for a SecAgg+ graph.
//
// Why. To learn the input of an honest client v, the server needs v's
// self-mask seed b_v (t shares, from neighbours X of v told that v
// survived) and every pairwise mask in v's masked input, one for each
// neighbour w in the set W that v masked against, of which there are at
// least t; with b_v known, a mask with w needs w's mask key s_w (t shares
// from w's neighbours told that w dropped), since v's own mask key would
// need t further holders of v's shares told that v dropped, which the
// share-reveal rule and 2t - c > k exclude. X and W are both among v's k
// neighbours, so they share at least 2t - k > c clients, hence an honest x.
// x revealed b_v, so it confirmed one survivor set S containing itself and
// held valid tags on S from t of its neighbours, at least t - c of them
// honest (a tag's key is known to x and its sender only, so the server
// forges none but those of its colluders). The t holders of s_x that
// revealed it, at least t - c of them honest, are also x's neighbours, and
// each honest one revealed s_x only after confirming a set without x, so
// not S. Honest clients confirm one set, so these are 2(t - c) distinct
// honest clients among the k - c honest ones in x's neighbourhood:
// impossible when t > (k + c)/2. The same count stops a server that tells
// the holders of one client's shares different stories.
//
// The argument is local to one neighbourhood, so it holds for SecAgg+
// graphs with k the degree and c the colluders in the worst neighbourhood,
// as well as for the complete graph (k = n - 1). With c < n/3 colluders in
// a complete graph of n it asks for t > 2n/3 - 1/2, the bound of Bonawitz
// et al. 2017. It does not stop a server from choosing the cohort, nor
// from dropping honest clients so that the sum covers few of them:
// MinSurvivors bounds that.
//
// The price is liveness: every client needs t of its neighbours to survive
// and confirm, so fewer than k - t + 1 of them may drop.
func ActiveThreshold(degree, corrupt int) int {
	return (degree+corrupt)/2 + 1
}

// ActiveTolerance returns the largest number of colluding clients in any
// one neighbourhood that the round c resists against an actively malicious
// server, 2t - k - 1 (see ActiveThreshold), or -1 if it resists none: an
// unsigned round, or a threshold of at most half the degree. A device's
// policy refuses rounds whose tolerance is below what it requires. The
// error wraps ErrConfig if c is invalid.
func (c Config) ActiveTolerance() (int, error) {
	nc, err := c.normalize()
	if err != nil {
		return 0, err
	}
	if !nc.Signed {
		return -1, nil
	}
	return max(2*nc.Threshold-nc.Degree-1, -1), nil
}

// CheckActive returns nil if c is a signed round whose threshold resists an
// active server colluding with up to corrupt clients per neighbourhood, and
// otherwise an error wrapping ErrConfig that says what is missing.
func (c Config) CheckActive(corrupt int) error {
	nc, err := c.normalize()
	if err != nil {
		return err
	}
	if corrupt < 0 {
		return configErr("corrupt %d is negative", corrupt)
	}
	if !nc.Signed {
		return configErr("Signed is false: an active server can substitute keys and lie about survivors")
	}
	if want := ActiveThreshold(nc.Degree, corrupt); nc.Threshold < want {
		return configErr("Threshold %d below %d, needed against an active server with %d colluding clients among %d neighbours", nc.Threshold, want, corrupt, nc.Degree)
	}
	return nil
}

// verifySignature wraps an Identity's verdict in ErrBadSignature.
func verifySignature(ident Identity, peer uint32, credential, msg, sig []byte) error {
	if len(sig) == 0 {
		return fmt.Errorf("%w: %d sent no signature", ErrBadSignature, peer)
	}
	if err := ident.Verify(peer, credential, msg, sig); err != nil {
		return fmt.Errorf("%w: %d: %v", ErrBadSignature, peer, err)
	}
	return nil
}
