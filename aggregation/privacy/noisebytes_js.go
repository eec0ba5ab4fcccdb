package privacy

import (
	crand "crypto/rand"
	"math/rand/v2"
)

// noiseBytes returns AddGaussian's stream of bytes: in js/wasm
// crypto/rand, that is crypto.getRandomValues, the browser's generator in
// native code (over 2 GB/s, where AES or ChaCha in WebAssembly manage a
// fifth of that). r is not used: a seeded r does not reproduce the noise
// here.
func noiseBytes(*rand.Rand) func([]byte) {
	return func(p []byte) { crand.Read(p) }
}
