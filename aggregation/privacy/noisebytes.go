//go:build !js

package privacy

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"math/rand/v2"
)

// noiseBytes returns AddGaussian's stream of bytes: AES-256 in counter
// mode (several GB/s with the processor's AES instructions) under a key of
// four words of r. The key is fresh each call, so the counter starts at 0.
func noiseBytes(r *rand.Rand) func([]byte) {
	var key [32]byte
	for i := 0; i < len(key); i += 8 {
		binary.LittleEndian.PutUint64(key[i:], r.Uint64())
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	ctr := cipher.NewCTR(block, make([]byte, aes.BlockSize))
	return func(p []byte) {
		clear(p)
		ctr.XORKeyStream(p, p)
	}
}
