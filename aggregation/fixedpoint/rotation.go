package fixedpoint

import (
	"crypto/sha256"
	"math"
	"math/rand/v2"
)

// signDomain separates the rotation signs from any other use of Params.Seed.
// Changing it changes every encoding: clients and server must agree on it.
const signDomain = "fedrec/aggregation/fixedpoint: rotation signs v1\x00"

// rotationSigns returns the random diagonal of the randomized Hadamard
// transform for n coordinates, packed one bit per coordinate: bit i%64 of
// word i/64 set means coordinate i is multiplied by -1.
//
// The bits are the successive Uint64 outputs of ChaCha8 (math/rand/v2, the
// C2SP chacha8rand generator) keyed with SHA-256(signDomain || seed), so any
// implementation can reproduce them. Bits at and beyond n in the last word are
// cleared.
func rotationSigns(seed [32]byte, n int) []uint64 {
	h := sha256.New()
	h.Write([]byte(signDomain))
	h.Write(seed[:])
	var key [32]byte
	h.Sum(key[:0])
	src := rand.NewChaCha8(key)
	w := make([]uint64, (n+63)/64)
	for i := range w {
		w[i] = src.Uint64()
	}
	if r := n % 64; r != 0 {
		w[len(w)-1] &= 1<<r - 1
	}
	return w
}

// signScale sets dst[i] = ±k·x[i] for i < len(x), the sign taken from bit
// off+i of signs. len(dst) must be at least len(x).
func signScale(dst, x []float64, k float64, signs []uint64, off int) {
	dst = dst[:len(x)]
	for j := 0; j < len(x); {
		i := off + j
		word := signs[i>>6] >> uint(i&63)
		n := min(64-i&63, len(x)-j)
		d, xs := dst[j:j+n], x[j:j+n]
		d = d[:len(xs)] // bounds-check hint
		for t, v := range xs {
			d[t] = math.Float64frombits(math.Float64bits(k*v) ^ (word>>uint(t)&1)<<63)
		}
		j += n
	}
}

// fwhtSigned sets y to H·D·v, the transform of fwht after the signs D of
// signs: v[i] = ky·y[i] for i < split (a window whose head holds what
// another rotation left there), kx·x[i] beyond. len(y) must be a power of
// two and len(x) = len(y); y may be x. Each block takes its signs as it
// enters the cache for its low stages, which spares a pass over memory.
func fwhtSigned(y, x []float64, split int, ky, kx float64, signs []uint64) {
	n := len(y)
	bs := min(n, fwhtBlock)
	x = x[:n]
	for off := 0; off < n; off += bs {
		b := y[off : off+bs]
		switch lo := min(max(split-off, 0), bs); {
		case lo == 0 && bs%64 == 0:
			signedQuads(b, x[off:off+bs], kx, signs, off)
			fwhtFrom(b, 4)
		case lo == bs && bs%64 == 0:
			signedQuads(b, b, ky, signs, off)
			fwhtFrom(b, 4)
		default: // the one block the split cuts, or a window of fewer than 64
			signScale(b[:lo], b[:lo], ky, signs, off)
			signScale(b[lo:], x[off+lo:off+bs], kx, signs, off+lo)
			fwhtSmall(b)
		}
	}
	if n > bs {
		fwhtFrom(y, bs)
	}
}

// nextPow2 returns the smallest power of two >= n, for n >= 1.
func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// fwhtBlock is the length, in float64s, of the blocks whose low stages fwht
// runs while they sit in the L1 cache (16 KiB).
const fwhtBlock = 1 << 11

// fwht replaces x by H·x, the unnormalised Walsh–Hadamard transform
// (Sylvester order), in place. len(x) must be a power of two. H·H = len(x)·I.
//
// It runs the stages h = 1, 2, 4, ... block by block: first every stage with
// h < fwhtBlock inside each fwhtBlock-long block (which stays in L1), then the
// remaining stages three at a time (radix 8), each pass streaming through
// memory once. For 2^20 coordinates that is 4 passes over memory instead of
// 20. Each stage computes the same sums as the textbook loop, in whatever
// grouping, so the result is the same to the bit.
func fwht(x []float64) {
	n := len(x)
	if n <= fwhtBlock {
		fwhtSmall(x)
		return
	}
	for off := 0; off < n; off += fwhtBlock {
		fwhtSmall(x[off : off+fwhtBlock])
	}
	fwhtFrom(x, fwhtBlock)
}

// fwhtSmall is fwht for a short x that fits in cache.
func fwhtSmall(x []float64) {
	n := len(x)
	h := 1
	if n >= 4 {
		// Stages 1 and 2 together on consecutive quadruples.
		for i := 0; i+4 <= n; i += 4 {
			q := x[i : i+4 : i+4]
			a, b, c, d := q[0]+q[1], q[0]-q[1], q[2]+q[3], q[2]-q[3]
			q[0], q[1], q[2], q[3] = a+c, b+d, a-c, b-d
		}
		h = 4
	}
	fwhtFrom(x, h)
}

// signedQuads sets y to ±k·x, the sign of y[i] taken from bit off+i of
// signs, and runs the transform's first two stages on it (fwhtSmall's
// quadruples) in the same pass. y may be x; len(x) and off must be
// multiples of 64.
func signedQuads(y, x []float64, k float64, signs []uint64, off int) {
	ks := [2]float64{k, -k}
	y = y[:len(x)]
	for w := 0; w < len(x); w += 64 {
		word := signs[(off+w)>>6]
		for j := 0; j < 64; j += 4 {
			s := x[w+j : w+j+4 : w+j+4]
			a0, a1 := s[0]*ks[word>>uint(j)&1], s[1]*ks[word>>uint(j+1)&1]
			a2, a3 := s[2]*ks[word>>uint(j+2)&1], s[3]*ks[word>>uint(j+3)&1]
			a, b, c, d := a0+a1, a0-a1, a2+a3, a2-a3
			q := y[w+j : w+j+4 : w+j+4]
			q[0], q[1], q[2], q[3] = a+c, b+d, a-c, b-d
		}
	}
}

// fwhtFrom runs the stages h, 2h, ... of the transform over x: three at a
// time, then the two or one left.
func fwhtFrom(x []float64, h int) {
	n := len(x)
	for ; 8*h <= n; h *= 8 {
		radix8(x, h)
	}
	if 4*h <= n {
		radix4(x, h)
		h *= 4
	}
	if h < n {
		radix2(x, h)
	}
}

// radix8 runs the stages h, 2h and 4h of the transform over x, len(x) a
// multiple of 8h: each value is loaded and stored once for three stages.
func radix8(x []float64, h int) {
	if useAVX2 && h%4 == 0 {
		radix8AVX2(x, h)
		return
	}
	radix8Go(x, h)
}

func radix8Go(x []float64, h int) {
	for i := 0; i < len(x); i += 8 * h {
		x0 := x[i : i+h]
		x1, x2, x3 := x[i+h:i+2*h], x[i+2*h:i+3*h], x[i+3*h:i+4*h]
		x4, x5, x6, x7 := x[i+4*h:i+5*h], x[i+5*h:i+6*h], x[i+6*h:i+7*h], x[i+7*h:i+8*h]
		x1, x2, x3 = x1[:len(x0)], x2[:len(x0)], x3[:len(x0)] // bounds-check hints
		x4, x5, x6, x7 = x4[:len(x0)], x5[:len(x0)], x6[:len(x0)], x7[:len(x0)]
		for j := range x0 {
			a0, a1, a2, a3 := x0[j], x1[j], x2[j], x3[j]
			a4, a5, a6, a7 := x4[j], x5[j], x6[j], x7[j]
			// Stage h.
			b0, b1, b2, b3 := a0+a1, a0-a1, a2+a3, a2-a3
			b4, b5, b6, b7 := a4+a5, a4-a5, a6+a7, a6-a7
			// Stage 2h.
			c0, c1, c2, c3 := b0+b2, b1+b3, b0-b2, b1-b3
			c4, c5, c6, c7 := b4+b6, b5+b7, b4-b6, b5-b7
			// Stage 4h.
			x0[j], x1[j], x2[j], x3[j] = c0+c4, c1+c5, c2+c6, c3+c7
			x4[j], x5[j], x6[j], x7[j] = c0-c4, c1-c5, c2-c6, c3-c7
		}
	}
}

// radix4 runs the stages h and 2h of the transform over x, len(x) a
// multiple of 4h.
func radix4(x []float64, h int) {
	if useAVX2 && h%4 == 0 {
		radix4AVX2(x, h)
		return
	}
	radix4Go(x, h)
}

func radix4Go(x []float64, h int) {
	for i := 0; i < len(x); i += 4 * h {
		a, b, c, d := x[i:i+h], x[i+h:i+2*h], x[i+2*h:i+3*h], x[i+3*h:i+4*h]
		b, c, d = b[:len(a)], c[:len(a)], d[:len(a)] // bounds-check hint
		for j := range a {
			a0, b0, c0, d0 := a[j], b[j], c[j], d[j]
			s0, s1 := a0+b0, a0-b0
			s2, s3 := c0+d0, c0-d0
			a[j], b[j], c[j], d[j] = s0+s2, s1+s3, s0-s2, s1-s3
		}
	}
}

// radix2 runs the stage h of the transform over x, len(x) a multiple of 2h.
func radix2(x []float64, h int) {
	if useAVX2 && h%4 == 0 {
		radix2AVX2(x, h)
		return
	}
	radix2Go(x, h)
}

func radix2Go(x []float64, h int) {
	for i := 0; i < len(x); i += 2 * h {
		a, b := x[i:i+h], x[i+h:i+2*h]
		b = b[:len(a)] // bounds-check hint
		for j := range a {
			a0, b0 := a[j], b[j]
			a[j], b[j] = a0+b0, a0-b0
		}
	}
}
