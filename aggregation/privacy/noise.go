package privacy

import (
	crand "crypto/rand"
	"math/rand/v2"
)

// AddGaussian adds independent N(0, std²) noise to every element of dst. For
// central DP on a sum of updates clipped to C, std is z·C. It panics if std
// is negative or not finite.
func AddGaussian(dst []float64, std float64, r *rand.Rand) {
	if !(std >= 0 && std < inf) {
		panic("privacy: AddGaussian: std must be finite and >= 0")
	}
	if std == 0 {
		return
	}
	for i := range dst {
		dst[i] += std * r.NormFloat64()
	}
}

// NewSecureRand returns a ChaCha8 generator seeded from crypto/rand, for
// production noise. Tests should pass a seeded generator instead.
func NewSecureRand() *rand.Rand {
	var seed [32]byte
	crand.Read(seed[:]) // never fails: crashes the program if the OS source does
	return rand.New(rand.NewChaCha8(seed))
}
