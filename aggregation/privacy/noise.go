package privacy

import (
	crand "crypto/rand"
	"math"
	"math/rand/v2"
	"unsafe"
)

// noiseBlock is how many coordinates AddGaussian draws at once: five
// bytes each, just under 64 KiB, the most crypto.getRandomValues gives in
// one call (Chromium's gives 670 MB/s in calls of 64 KiB, 590 MB/s of
// 40 KiB).
const noiseBlock = 65536 / 5

// AddGaussian adds independent N(0, std²) noise to every element of dst. For
// central DP on a sum of updates clipped to C, std is z·C. It panics if std
// is negative or not finite.
//
// The deviates are NormFloat64's (the same ziggurat on the same bits of a
// word: 32 for the value, 7 for the layer), drawn in blocks from a
// cryptographically secure stream of bytes, five bytes a deviate, rather
// than from one generator call each. Natively the stream is AES-256-CTR
// under a key taken from r, so a seeded r reproduces the noise and a secure
// one (NewSecureRand) makes it unpredictable; in js/wasm it is
// crypto.getRandomValues whatever r is, as WebAssembly has no fast cipher.
func AddGaussian(dst []float64, std float64, r *rand.Rand) {
	if !(std >= 0 && std < inf) {
		panic("privacy: AddGaussian: std must be finite and >= 0")
	}
	if std == 0 || len(dst) == 0 {
		return
	}
	s := &wordStream{fill: noiseBytes(r)}
	// Each block's values, then its layers, in one buffer of random bytes
	// from the stream; the rare draws the ziggurat rejects continue on
	// words of their own from it (s.uint64).
	n := min(len(dst), noiseBlock)
	vals := make([]uint32, (5*n+3)/4)
	for lo := 0; lo < len(dst); lo += noiseBlock {
		d := dst[lo:min(lo+noiseBlock, len(dst))]
		b := asBytes(vals)
		s.fill(b[:5*len(d)])
		addNormals(d, std, vals[:len(d)], b[4*len(d):5*len(d)], s)
	}
}

// wordStream gives the words of a stream of bytes, 4096 at a time: a
// step's 9,000 rejected draws (2.8 %) take about 14,000 words, and a call
// into JavaScript for more costs as much as a few hundred draws.
type wordStream struct {
	fill  func([]byte)
	words [4096]uint64
	next  int
}

func (s *wordStream) uint64() uint64 {
	if s.next == 0 {
		s.fill(asBytes(s.words[:]))
	}
	u := s.words[s.next]
	s.next = (s.next + 1) % len(s.words)
	return u
}

// float64 is rand.Rand.Float64 on the stream: a uniform multiple of 2⁻⁵³
// in [0, 1).
func (s *wordStream) float64() float64 {
	return float64(s.uint64()<<11>>11) / (1 << 53)
}

// asBytes returns x's memory as bytes, for filling with random bytes (whose
// order within a word does not matter). WebAssembly assembles a word from
// byte loads one byte at a time, which would cost a third of the
// ziggurat's time.
func asBytes[T uint32 | uint64](x []T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), len(x)*int(unsafe.Sizeof(x[0])))
}

// addNormals adds std·z to each dst[k], z the standard normal deviate
// NormFloat64 draws from the word vals[k] | layers[k]<<32 (and, if the
// ziggurat rejects it, from s's next words).
func addNormals(dst []float64, std float64, vals []uint32, layers []byte, s *wordStream) {
	vals, layers = vals[:len(dst)], layers[:len(dst)]
	for k := 0; k < len(dst); k++ {
		k += addAccepted(dst[k:], std, vals[k:], layers[k:])
		if k < len(dst) {
			dst[k] += std * normalTail(uint64(vals[k])|uint64(layers[k])<<32, s)
		}
	}
}

// addAccepted is addNormals' loop up to the first draw the ziggurat
// rejects (97.2 % are accepted: the value within the layer's rectangle),
// whose index it returns. It calls nothing: in WebAssembly a call in the
// loop, even one never taken, makes it twice as slow.
func addAccepted(dst []float64, std float64, vals []uint32, layers []byte) int {
	vals, layers = vals[:len(dst)], layers[:len(dst)]
	for k, v := range vals {
		j := int32(v)
		i := layers[k] & 0x7F
		if abs32(j) >= zigK[i] {
			return k
		}
		dst[k] += std * (float64(j) * float64(zigW[i]))
	}
	return len(dst)
}

// normalTail finishes NormFloat64's loop for a first word u outside its
// layer's rectangle, drawing further words from s.
func normalTail(u uint64, s *wordStream) float64 {
	for {
		j := int32(u)
		i := u >> 32 & 0x7F
		x := float64(j) * float64(zigW[i])
		if abs32(j) < zigK[i] {
			return x
		}
		if i == 0 {
			// The base strip: sample the tail beyond zigR.
			for {
				x = -math.Log(s.float64()) * (1.0 / zigR)
				y := -math.Log(s.float64())
				if y+y >= x*x {
					break
				}
			}
			if j > 0 {
				return zigR + x
			}
			return -zigR - x
		}
		if zigF[i]+float32(s.float64())*(zigF[i-1]-zigF[i]) < float32(math.Exp(-.5*x*x)) {
			return x
		}
		u = s.uint64()
	}
}

func abs32(j int32) uint32 {
	if j < 0 {
		return uint32(-j)
	}
	return uint32(j)
}

// NewSecureRand returns a ChaCha8 generator seeded from crypto/rand, for
// production noise. Tests should pass a seeded generator instead.
func NewSecureRand() *rand.Rand {
	var seed [32]byte
	crand.Read(seed[:]) // never fails: crashes the program if the OS source does
	return rand.New(rand.NewChaCha8(seed))
}
