package privacy

import (
	crand "crypto/rand"
	"math/rand/v2"
)

// noiseBytes returns AddGaussian's stream of bytes: in js/wasm
// crypto/rand, that is crypto.getRandomValues, the browser's generator in
// native code (Chromium's gives 670 MB/s on our test machine, Node's 2 to
// 4 GB/s; ChaCha8 or ChaCha20 compiled to WebAssembly give 550 MB/s in
// Chromium, AES far less). r is not used: a seeded r does not reproduce
// the noise here.
func noiseBytes(*rand.Rand) func([]byte) {
	return func(p []byte) { crand.Read(p) }
}
