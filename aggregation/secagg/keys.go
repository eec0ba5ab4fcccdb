package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Key derivation. Every key is HKDF-SHA256 of a secret (an X25519 shared
// secret, a self-mask seed, or the config digest) with the info string
//
//	"fedrec/secagg/v1 " || label || 0x00 || config digest || client ids
//
// so that a key is tied to its purpose, to the exact round, and to the
// clients it serves.
const (
	labelGraph    = "graph"
	labelShareKey = "share-key"
	labelPairMask = "pair-mask"
	labelSelfMask = "self-mask"
	labelShareAAD = "share-aad"
)

func kdfInfo(label string, digest *[32]byte, ids []uint32) []byte {
	b := make([]byte, 0, 17+len(label)+1+32+4*len(ids))
	b = append(b, "fedrec/secagg/v1 "...)
	b = append(b, label...)
	b = append(b, 0)
	b = append(b, digest[:]...)
	for _, id := range ids {
		b = binary.BigEndian.AppendUint32(b, id)
	}
	return b
}

func deriveKey(secret []byte, label string, digest *[32]byte, ids []uint32) [32]byte {
	var k [1][32]byte
	deriveKeys(secret, label, digest, ids, k[:])
	return k[0]
}

// deriveKeys fills out with len(out) keys from one HKDF: out[0] is
// deriveKey's key (HKDF-Expand's first block does not depend on the length
// asked for) and the others are independent keys for further purposes of
// the same secret, label and ids, for one more HMAC each.
func deriveKeys(secret []byte, label string, digest *[32]byte, ids []uint32, out [][32]byte) {
	k, err := hkdf.Key(sha256.New, secret, nil, string(kdfInfo(label, digest, ids)), 32*len(out))
	if err != nil {
		panic(err) // unreachable: a few blocks are far below HKDF's limit
	}
	for i := range out {
		out[i] = [32]byte(k[32*i:])
	}
}

// pairIDs orders two ids so both ends derive the same pairwise key.
func pairIDs(a, b uint32) []uint32 {
	if a > b {
		a, b = b, a
	}
	return []uint32{a, b}
}

// Encrypted shares. The plaintext is the share of the mask key s^SK
// followed by the share of the self-mask seed b, each ShareLen
// little-endian uint64s. The AES-256-GCM key is derived for one direction
// (sender, receiver) of one pair in one round and is used for exactly one
// message, so a fixed nonce is safe. The additional data binds the round
// digest, the sender and the receiver again.
const (
	sharePlainLen = 2 * ShareLen * 8
	// SealedShareLen is the length of SealedShare.Ciphertext.
	SealedShareLen = sharePlainLen + 16
)

func shareAEAD(key [32]byte) cipher.AEAD {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // unreachable: 32-byte key
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		panic(err) // unreachable: AES has a 16-byte block
	}
	return a
}

func sealShares(key [32]byte, digest *[32]byte, from, to uint32, sk, b *[ShareLen]uint64) []byte {
	var p [sharePlainLen]byte
	for i := range ShareLen {
		binary.LittleEndian.PutUint64(p[8*i:], sk[i])
		binary.LittleEndian.PutUint64(p[8*(ShareLen+i):], b[i])
	}
	var nonce [12]byte
	return shareAEAD(key).Seal(nil, nonce[:], p[:], kdfInfo(labelShareAAD, digest, []uint32{from, to}))
}

func openShares(key [32]byte, digest *[32]byte, from, to uint32, ct []byte) (sk, b [ShareLen]uint64, err error) {
	if len(ct) != SealedShareLen {
		return sk, b, fmt.Errorf("%w: ciphertext from %d has %d bytes, want %d", ErrBadLength, from, len(ct), SealedShareLen)
	}
	var nonce [12]byte
	p, err := shareAEAD(key).Open(nil, nonce[:], ct, kdfInfo(labelShareAAD, digest, []uint32{from, to}))
	if err != nil {
		return sk, b, fmt.Errorf("%w: from %d", ErrDecrypt, from)
	}
	for i := range ShareLen {
		sk[i] = binary.LittleEndian.Uint64(p[8*i:])
		b[i] = binary.LittleEndian.Uint64(p[8*(ShareLen+i):])
		if sk[i] >= fieldP || b[i] >= fieldP {
			return sk, b, fmt.Errorf("%w: share from %d", ErrOutOfRange, from)
		}
	}
	return sk, b, nil
}
