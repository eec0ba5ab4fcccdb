package fixedpoint

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// QuantMax is the largest magnitude of a quantized coordinate: updates
// travel as signed bytes in [-QuantMax, QuantMax], symmetric so that
// saturation has no direction.
const QuantMax = 127

// QuantSigmas is the range of a quantized coordinate in standard
// deviations of a rotated coordinate of an update at the clip norm: a
// coordinate of an update at the clip saturates with probability about
// 6e-5 (Gaussian tail), one well below it (most are) hardly ever; a
// smaller range would be a finer step, a larger one rarer saturation.
const QuantSigmas = 4

// ErrQuantized reports a quantized vector that no honest client of the
// round can have sent: the wrong length or a norm beyond the bound.
var ErrQuantized = errors.New("fixedpoint: quantized vector out of bounds")

// Quantizer turns an update of Dim floats into Dim signed bytes at a step
// that only the clip norm and the dimension fix, so that a server sums the
// bytes of many clients exactly, as integers, and multiplies by the step
// once (Decode). It is the 8-bit upload of plaintext rounds and the
// simulator's model of it.
//
// Quantize clips the update to L2 norm Clip and rotates it at random, like
// Encoder, so that every coordinate is about Clip/sqrt(Dim) whatever the
// update: a randomized Hadamard transform of the first W coordinates, then
// another of the last W, W the largest power of two <= Dim. The two
// windows overlap and cover every coordinate, so there is no padding (the
// upload is exactly Dim bytes) and each coordinate is spread over at least
// half of them. It then divides by the step, QuantSigmas·Clip/(QuantMax·
// sqrt(W)), clamps to ±QuantMax (rare: a saturated coordinate is counted)
// and rounds at random to a neighbouring integer, unbiasedly to the 16
// random bits a coordinate takes: E[q] = x to 2^-17 of a step, up to
// saturation, each coordinate off by at most one step with variance at
// most step²/4.
//
// A Quantizer is immutable and safe for concurrent use.
type Quantizer struct {
	dim, win int
	clip     float64
	step     float64
	signsA   []uint64
	signsB   []uint64 // nil when Dim is a power of two: one window covers it
	bound    float64  // L2 bound of a quantized vector, integer units
}

// NewQuantizer returns the Quantizer of updates of dim floats clipped to
// L2 norm clip, with the rotation drawn from the public seed. Every
// client of a round and its server must use the same three values.
func NewQuantizer(dim int, clip float64, seed [32]byte) (*Quantizer, error) {
	switch {
	case dim < 1 || dim > MaxDim:
		return nil, paramErr("Dim", dim, "want 1..%d", MaxDim)
	case !(clip > 0) || math.IsInf(clip, 1):
		return nil, paramErr("Clip", clip, "want > 0 and finite")
	}
	win := nextPow2(dim)
	if win > dim {
		win /= 2
	}
	q := &Quantizer{
		dim: dim, win: win, clip: clip,
		step:   QuantSigmas * clip / (QuantMax * math.Sqrt(float64(win))),
		signsA: rotationSigns(quantSeed(seed, 'A'), win),
	}
	if win < dim {
		q.signsB = rotationSigns(quantSeed(seed, 'B'), win)
	}
	// An honest vector is within one step of the rotated clipped update
	// on every coordinate.
	q.bound = clip/q.step + math.Sqrt(float64(dim))
	return q, nil
}

// quantSeed derives the seed of one rotation window.
func quantSeed(seed [32]byte, window byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("fedrec/aggregation/fixedpoint: quantizer window\x00"))
	h.Write([]byte{window})
	h.Write(seed[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Dim returns the length of the updates and of their quantized vectors.
func (q *Quantizer) Dim() int { return q.dim }

// Clip returns the L2 norm updates are clipped to.
func (q *Quantizer) Clip() float64 { return q.clip }

// Step returns the float value of one integer unit.
func (q *Quantizer) Step() float64 { return q.step }

// NormBound returns the largest L2 norm, in integer units, of a vector
// Quantize returns: Clip/Step + sqrt(Dim).
func (q *Quantizer) NormBound() float64 { return q.bound }

// Quantize clips x to L2 norm Clip, rotates it and rounds it at random to
// signed bytes into dst (see Quantizer). len(x) and len(dst) must be Dim;
// x is not modified; r supplies the rounding randomness. It returns the
// norm of x before clipping and how many coordinates saturated, or an
// error wrapping ErrLength or ErrNonFinite.
func (q *Quantizer) Quantize(dst []int8, x []float64, r *rand.Rand) (norm float64, saturated int, err error) {
	bp := scratch(q.dim)
	defer scratchPools.put(bp)
	return q.QuantizeWith(dst, x, *bp, r)
}

// QuantizeWith is Quantize with y, Dim floats of any content, as its
// working space, overwritten: a caller that keeps its buffers between
// rounds spares the shared pool's, which a collection may empty. y may be
// x itself, which is then overwritten.
func (q *Quantizer) QuantizeWith(dst []int8, x, y []float64, r *rand.Rand) (norm float64, saturated int, err error) {
	if len(x) != q.dim || len(dst) != q.dim || len(y) != q.dim {
		return 0, 0, fmt.Errorf("%w: quantize len(x) = %d, len(dst) = %d, len(y) = %d, want %d", ErrLength, len(x), len(dst), len(y), q.dim)
	}
	if norm, err = norm2(x); err != nil {
		return 0, 0, err
	}
	s := 1.0
	if norm > q.clip {
		s = q.clip / norm
	}
	// y = H·D_A·(k·x) on the first window, k folding the clip, the step
	// and the transform's normalisation into one multiply; y may be x.
	w := math.Sqrt(float64(q.win))
	k := s / (q.step * w)
	fwhtSigned(y[:q.win], x[:q.win], 0, 0, k, q.signsA)
	if q.signsB != nil {
		// The last window: its head is the first window's output, to
		// normalise; its tail, past the first window, is still x, to
		// scale by k as well.
		fwhtSigned(y[q.dim-q.win:], x[q.dim-q.win:], 2*q.win-q.dim, 1/w, k, q.signsB)
	}
	saturated = roundBytes(dst, y, r)
	return norm, saturated, nil
}

// Check reports whether v can be an honest client's quantized update: Dim
// long, within NormBound. A server checks every upload before it sums it,
// since no clipping can happen after quantization.
func (q *Quantizer) Check(v []int8) error {
	if len(v) != q.dim {
		return fmt.Errorf("%w: %d values, want %d", ErrQuantized, len(v), q.dim)
	}
	if n := math.Sqrt(float64(int8Squares(v))); n > q.bound {
		return fmt.Errorf("%w: norm %.1f steps, at most %.1f for clip %g", ErrQuantized, n, q.bound, q.clip)
	}
	return nil
}

// int8Squares returns the sum of v's squares, exactly. A node checks every
// upload's norm, so it runs four independent sums in int32 over blocks of
// 2^16 values (each sum stays within 2^14 squares of at most 128², 2^28),
// spilled into the int64 total between blocks.
func int8Squares(v []int8) int64 {
	var total int64
	for len(v) > 0 {
		b := v[:min(len(v), 1<<16)]
		v = v[len(b):]
		var s0, s1, s2, s3 int32
		for ; len(b) >= 4; b = b[4:] {
			x0, x1, x2, x3 := int32(b[0]), int32(b[1]), int32(b[2]), int32(b[3])
			s0 += x0 * x0
			s1 += x1 * x1
			s2 += x2 * x2
			s3 += x3 * x3
		}
		for _, x := range b {
			s0 += int32(x) * int32(x)
		}
		total += int64(s0) + int64(s1) + int64(s2) + int64(s3)
	}
	return total
}

// Add adds the quantized vector v to sum, exactly. Both must be Dim long.
func (q *Quantizer) Add(sum []int64, v []int8) error {
	if len(sum) != q.dim || len(v) != q.dim {
		return fmt.Errorf("%w: add len(sum) = %d, len(v) = %d, want %d", ErrLength, len(sum), len(v), q.dim)
	}
	for i, x := range v {
		sum[i] += int64(x)
	}
	return nil
}

// Decode sets dst to the float vector of sum, a sum of quantized vectors:
// it multiplies by the step and undoes the rotation. Both must be Dim
// long.
func (q *Quantizer) Decode(dst []float64, sum []int64) error {
	if len(sum) != q.dim || len(dst) != q.dim {
		return fmt.Errorf("%w: decode len(dst) = %d, len(sum) = %d, want %d", ErrLength, len(dst), len(sum), q.dim)
	}
	for i, v := range sum {
		dst[i] = float64(v) * q.step
	}
	w := 1 / math.Sqrt(float64(q.win))
	if q.signsB != nil {
		b := dst[q.dim-q.win:]
		fwht(b)
		signScale(b, b, w, q.signsB, 0)
	}
	a := dst[:q.win]
	fwht(a)
	signScale(a, a, w, q.signsA, 0)
	return nil
}

// roundBits is how many random bits roundBytes draws for a coordinate:
// four coordinates share one 64-bit draw.
const roundBits = 16

// roundBytes sets dst[i] to y[i] clamped to ±QuantMax and rounded at
// random to a neighbouring integer, and returns how many values it
// clamped. A coordinate takes 16 random bits, not 64: the rounding is
// unbiased to those bits, E[dst[i]] = y[i] rounded to the nearest multiple
// of 2^-16 (roundByte), off by at most 2^-17 of a step, deterministically
// and in no fixed direction, far below the rounding's own spread of up to
// half a step.
func roundBytes(dst []int8, y []float64, r *rand.Rand) (saturated int) {
	dst = dst[:len(y)]
	// A generator of its own, seeded from r, called directly: r's
	// Source, behind an interface, costs a call that spills registers.
	var g rand.PCG
	g.Seed(r.Uint64(), r.Uint64())
	i := 0
	if useAVX2 {
		// Blocks of roundBlock values eight at a time, each quadruple
		// taking the next draw, as the loop below does.
		var u [roundBlock / 4]uint64
		for ; i+roundBlock <= len(y); i += roundBlock {
			for k := range u {
				u[k] = g.Uint64()
			}
			saturated += roundBlockAVX2(dst[i:i+roundBlock], y[i:i+roundBlock], &u)
		}
	}
	return saturated + roundTail(dst[i:], y[i:], &g)
}

// roundBlock is how many values roundBlockAVX2 rounds a call.
const roundBlock = 256

// roundTail is roundBytes with its generator.
func roundTail(dst []int8, y []float64, g *rand.PCG) (saturated int) {
	dst = dst[:len(y)]
	i := 0
	for ; i+4 <= len(y); i += 4 {
		u := g.Uint64()
		ys := y[i : i+4 : i+4]
		v0, s0 := clampQuant(ys[0])
		v1, s1 := clampQuant(ys[1])
		v2, s2 := clampQuant(ys[2])
		v3, s3 := clampQuant(ys[3])
		saturated += s0 + s1 + s2 + s3
		d := dst[i : i+4 : i+4]
		d[0], d[1], d[2], d[3] = roundByte(v0, u), roundByte(v1, u>>16), roundByte(v2, u>>32), roundByte(v3, u>>48)
	}
	if i < len(y) {
		u := g.Uint64()
		for ; i < len(y); i++ {
			v, s := clampQuant(y[i])
			saturated += s
			dst[i] = roundByte(v, u)
			u >>= roundBits
		}
	}
	return saturated
}

// clampQuant returns v clamped to ±QuantMax, and 1 if that changed it.
// Saturation is rare: the branches are predicted.
func clampQuant(v float64) (float64, int) {
	if v > QuantMax {
		return QuantMax, 1
	}
	if v < -QuantMax {
		return -QuantMax, 1
	}
	return v, 0
}

// roundByte rounds v in [-QuantMax, QuantMax] at random to a neighbouring
// integer with the low 16 bits of u: v+QuantMax+1 (in [1, 255], so
// nothing is lost to the sign) to the nearest multiple of 2^-16, w in
// units of 2^-16, rounds up when u's bits are at least 2^16 minus w's
// fraction, which happens with probability exactly that fraction over the
// 2^16 values of the bits: E = w/2^16 - QuantMax - 1 exactly.
func roundByte(v float64, u uint64) int8 {
	// Through int64: a float's conversion to uint64 takes a branch.
	w := uint64(int64((v+(QuantMax+1))*(1<<roundBits) + 0.5))
	return int8(int64((w+u&(1<<roundBits-1))>>roundBits) - (QuantMax + 1))
}

// QuantFieldBits is the modulus exponent secure aggregation needs to sum
// n quantized vectors without wrapping: the smallest b with
// 2^(b-1) > QuantMax·n, so that the centered lift of the sum (Lift) is
// exact. No headroom for rounding is needed: quantized values are
// integers within ±QuantMax already.
func QuantFieldBits(n int) uint {
	b := uint(1)
	for b < 64 && uint64(1)<<(b-1) <= uint64(QuantMax)*uint64(n) {
		b++
	}
	return b
}

// WrapQuantized sets dst[i] = v[i] mod 2^bits (two's complement), a
// quantized vector as a secure-aggregation input. len(dst) must be at
// least len(v); bits in 8..64.
func WrapQuantized(dst []uint64, v []int8, bits uint) {
	m := uint64(math.MaxUint64) >> (64 - bits)
	for i, x := range v {
		dst[i] = uint64(int64(x)) & m
	}
}

// Lift sets dst[i] to sum[i] mod 2^bits read as a signed integer in
// [-2^(bits-1), 2^(bits-1)): the exact sum of wrapped quantized vectors
// when bits is at least QuantFieldBits of their count.
func Lift(dst []int64, sum []uint64, bits uint) {
	sh := 64 - bits
	for i, v := range sum {
		dst[i] = int64(v<<sh) >> sh
	}
}
