package fixedpoint

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/floats"
)

var (
	// ErrParams reports invalid Params; the message names the field.
	ErrParams = errors.New("fixedpoint: invalid parameters")
	// ErrLength reports a vector whose length does not match the Encoder.
	ErrLength = errors.New("fixedpoint: wrong vector length")
	// ErrNonFinite reports a NaN or an infinity in a vector to encode.
	ErrNonFinite = errors.New("fixedpoint: non-finite value")
	// ErrRounding reports that conditional rounding found no rounding within
	// the norm bound in maxRoundingTries attempts.
	ErrRounding = errors.New("fixedpoint: conditional rounding failed")
)

const (
	// DefaultBits is the modulus exponent used when both Params.Bits and
	// Params.Scale are zero.
	DefaultBits = 32

	// MaxDim is the largest supported Params.Dim. The padded dimension is
	// at most MaxDim too.
	MaxDim = 1 << 30

	// NoiseSigmas is how many standard deviations of noise the modulus
	// leaves room for when Params.WrapProb is zero. A Gaussian exceeds 8σ
	// with probability 1.2e-15 per coordinate.
	NoiseSigmas = 8

	// maxRoundingTries bounds the attempts of conditional rounding.
	maxRoundingTries = 1000

	// rangeMargin keeps computed bounds a relative 2^-30 inside the integer
	// ranges they must fit, absorbing floating-point error in the bounds and
	// in the rotation.
	rangeMargin = 1 - 0x1p-30
)

// Params configures an Encoder. All clients of a round and the server must
// use the same Params. The zero value of Scale, Bits, NoiseStd, WrapProb and
// RoundingBeta means the documented default; Dim, Clip and MaxClients are
// required.
type Params struct {
	// Dim is the length of the float vectors, 1..MaxDim.
	Dim int
	// Clip is the L2 norm c every vector is clipped to, > 0 and finite.
	Clip float64
	// Scale is γ, the factor applied to the rotated vector before rounding
	// to integers: one integer step is 1/γ in float units. Zero means derive
	// the largest γ for which the sum cannot wrap at Bits.
	Scale float64
	// Bits sets the modulus 2^Bits, 1..64. Zero means the fewest bits for
	// which the sum cannot wrap at Scale, or DefaultBits if Scale is zero too.
	Bits uint
	// MaxClients bounds how many encoded vectors are summed, >= 1.
	MaxClients int
	// NoiseStd is the standard deviation, in float units (integer units
	// divided by γ), of the total noise callers add in the integer domain
	// to the sum. The modulus leaves room for it. Zero means no noise.
	NoiseStd float64
	// WrapProb selects the bound the modulus must cover. Zero is the worst
	// case: for any inputs the sum cannot wrap (noise aside, within
	// NoiseSigmas standard deviations). A value δ in (0, 1) relies on the
	// rotation spreading each vector: the sum wraps with probability at
	// most δ for inputs chosen independently of Seed, which allows a γ
	// larger by about sqrt(PaddedDim/(2 ln(4·PaddedDim/δ))).
	WrapProb float64
	// RoundingBeta turns on conditional rounding (Kairouz et al. 2021):
	// zero rounds once; β in (0, 1) re-rounds until the rounded vector's L2
	// norm is within NormBound, a bound an unconditional rounding meets with
	// probability at least 1-β. It trades a small bias for a smaller
	// sensitivity.
	RoundingBeta float64
	// Seed is the public seed of the round's random rotation.
	Seed [32]byte
}

// Validate reports whether p is usable, with an error wrapping ErrParams that
// names the first bad field. It does not check that Bits and Scale fit
// together; NewEncoder does.
func (p Params) Validate() error {
	switch {
	case p.Dim < 1 || p.Dim > MaxDim:
		return paramErr("Dim", p.Dim, "want 1..%d", MaxDim)
	case !(p.Clip > 0) || math.IsInf(p.Clip, 1):
		return paramErr("Clip", p.Clip, "want > 0 and finite")
	case !(p.Scale >= 0) || math.IsInf(p.Scale, 1):
		return paramErr("Scale", p.Scale, "want >= 0 and finite")
	case p.Bits > 64:
		return paramErr("Bits", p.Bits, "want 0..64")
	case p.MaxClients < 1:
		return paramErr("MaxClients", p.MaxClients, "want >= 1")
	case !(p.NoiseStd >= 0) || math.IsInf(p.NoiseStd, 1):
		return paramErr("NoiseStd", p.NoiseStd, "want >= 0 and finite")
	case !(p.WrapProb >= 0 && p.WrapProb < 1):
		return paramErr("WrapProb", p.WrapProb, "want in [0, 1)")
	case !(p.RoundingBeta >= 0 && p.RoundingBeta < 1):
		return paramErr("RoundingBeta", p.RoundingBeta, "want in [0, 1)")
	}
	return nil
}

func paramErr(field string, v any, format string, args ...any) error {
	return fmt.Errorf("%w: %s = %v: %s", ErrParams, field, v, fmt.Sprintf(format, args...))
}

// Encoder encodes float vectors to integers modulo 2^Bits and decodes their
// sums. It is immutable after NewEncoder and safe for concurrent use; scratch
// space comes from an internal pool, so steady-state calls do not allocate.
type Encoder struct {
	p         Params // resolved: Bits and Scale set
	dpad      int
	signs     []uint64
	mask      uint64
	normBound float64 // L2 bound on every rounded vector
	sumBound  float64 // B(γ): bound on every coordinate of the sum, with noise headroom
	condSq    float64 // squared conditional-rounding bound, +Inf if off
}

// NewEncoder validates p, fills in Bits or Scale, and precomputes the
// rotation. It returns an error wrapping ErrParams if the fields are bad or
// if Bits and Scale cannot hold the sum of MaxClients vectors.
//
// The bound the modulus must cover is, on every coordinate of the sum of n =
// MaxClients rounded vectors plus noise,
//
//	B(γ) = n + γ·(n·c·s + k·NoiseStd)
//
// where n covers rounding (each rounded coordinate is within 1 of its
// real value), s is the largest coordinate of a rotated unit vector and k
// the noise headroom in standard deviations. With WrapProb = 0, s = 1
// (a coordinate never exceeds the vector's L2 norm) and k = NoiseSigmas.
// With WrapProb = δ > 0, s = min(1, t/sqrt(PaddedDim)) and k = t, with t =
// sqrt(2·ln(4·PaddedDim/δ)): by Hoeffding's inequality and a union bound over
// coordinates, each of the two terms exceeds its share with probability at
// most δ/2. Bits is then the smallest b with B(γ) < 2^(b-1), so the
// centered lift in Decode recovers the sum; or, given Bits, γ is the largest
// value for which that holds. γ is further capped so that c·γ + 1 plus the
// noise headroom fits in an int64.
func NewEncoder(p Params) (*Encoder, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	dpad := nextPow2(p.Dim)
	spread, k := 1.0, float64(NoiseSigmas)
	if p.WrapProb > 0 {
		t := math.Sqrt(2 * math.Log(4*float64(dpad)/p.WrapProb))
		spread, k = math.Min(1, t/math.Sqrt(float64(dpad))), t
	}
	n := float64(p.MaxClients)
	perScale := n*p.Clip*spread + k*p.NoiseStd // B(γ) = n + γ·perScale
	int64Lim := 0x1p63 * rangeMargin
	maxScale := (int64Lim - 1) / (p.Clip + k*p.NoiseStd)
	limit := func(bits uint) float64 { return math.Ldexp(1, int(bits)-1) * rangeMargin }

	if p.Scale == 0 {
		if p.Bits == 0 {
			p.Bits = DefaultBits
		}
		room := limit(p.Bits) - n
		if room <= 0 {
			return nil, paramErr("Bits", p.Bits, "too few for the rounding slack of %d clients", p.MaxClients)
		}
		p.Scale = math.Min(room/perScale, maxScale)
	} else {
		if p.Scale > maxScale {
			return nil, paramErr("Scale", p.Scale, "too large: c·γ plus noise headroom overflows int64 (max %g)", maxScale)
		}
		b := n + p.Scale*perScale
		if p.Bits == 0 {
			bits := uint(1)
			for bits <= 64 && b >= limit(bits) {
				bits++
			}
			if bits > 64 {
				return nil, paramErr("Scale", p.Scale, "too large: the sum can reach %g, beyond 64 bits", b)
			}
			p.Bits = bits
		} else if b >= limit(p.Bits) {
			return nil, paramErr("Bits", p.Bits, "too few for Scale %g: the sum of %d clients can reach %g", p.Scale, p.MaxClients, b)
		}
	}

	e := &Encoder{
		p:        p,
		dpad:     dpad,
		signs:    rotationSigns(p.Seed, dpad),
		mask:     uint64(math.MaxUint64) >> (64 - p.Bits),
		sumBound: n + p.Scale*perScale,
	}
	cg, sd := p.Clip*p.Scale, math.Sqrt(float64(dpad))
	e.normBound = cg + sd
	e.condSq = math.Inf(1)
	if p.RoundingBeta > 0 {
		sq := cg*cg + float64(dpad)/4 + math.Sqrt(2*math.Log(1/p.RoundingBeta))*(cg+sd/2)
		if sq < e.normBound*e.normBound {
			e.normBound = math.Sqrt(sq)
			e.condSq = sq
		}
	}
	return e, nil
}

// Params returns the Encoder's parameters with Bits and Scale filled in.
func (e *Encoder) Params() Params { return e.p }

// PaddedDim returns the length of encoded vectors: Dim rounded up to a
// power of two.
func (e *Encoder) PaddedDim() int { return e.dpad }

// NormBound returns a bound on the L2 norm of every vector Encode returns,
// in integer units: c·γ + sqrt(PaddedDim), or the smaller conditional-rounding
// bound when RoundingBeta > 0. It is the sensitivity that integer noise is
// calibrated against.
func (e *Encoder) NormBound() float64 { return e.normBound }

// Encode clips x to L2 norm Clip, rotates it, scales it by γ and rounds it at
// random to integers, unbiasedly, into dst. len(x) must be Dim and len(dst)
// PaddedDim; x is not modified. It returns the L2 norm of x before clipping.
//
// Callers may add integer noise to dst before passing it to Wrap.
// Encode returns an error wrapping ErrLength or ErrNonFinite for bad input,
// and ErrRounding if conditional rounding fails; dst is then unspecified.
// r supplies the rounding randomness and must not be nil.
func (e *Encoder) Encode(dst []int64, x []float64, r *rand.Rand) (norm float64, err error) {
	if len(x) != e.p.Dim {
		return 0, fmt.Errorf("%w: len(x) = %d, want %d", ErrLength, len(x), e.p.Dim)
	}
	if len(dst) != e.dpad {
		return 0, fmt.Errorf("%w: len(dst) = %d, want %d", ErrLength, len(dst), e.dpad)
	}
	norm, err = norm2(x)
	if err != nil {
		return 0, err
	}
	s := 1.0
	if norm > e.p.Clip {
		s = e.p.Clip / norm
	}
	bp := scratch(e.dpad)
	defer scratchPools.put(bp)
	y := *bp
	// y = γ·(1/sqrt(dpad))·H·D·(s·x), the scalars folded into one multiply.
	signScale(y, x, s*e.p.Scale/math.Sqrt(float64(e.dpad)), e.signs, 0)
	clear(y[len(x):])
	fwht(y)

	if math.IsInf(e.condSq, 1) {
		round(dst, y, r)
		return norm, nil
	}
	// Accept a rounding only if its norm is surely within the bound, allowing
	// for the relative error of the float sum of squares.
	lim := e.condSq / (1 + float64(e.dpad)*0x1p-52)
	for range maxRoundingTries {
		if round(dst, y, r); sumSquares(dst) <= lim {
			return norm, nil
		}
	}
	return norm, fmt.Errorf("%w: %d tries", ErrRounding, maxRoundingTries)
}

// round sets dst[i] to floor(y[i]) or floor(y[i])+1, the latter with
// probability y[i]-floor(y[i]) (to 2^-53), so E[dst[i]] = y[i]. Every |y[i]|
// must be below 2^63. The loop has no data-dependent branch: a coin flip
// mispredicts half the time, which would cost more than the rest of the loop.
func round(dst []int64, y []float64, r *rand.Rand) {
	dst = dst[:len(y)]
	for i, v := range y {
		t := int64(v)                           // v rounded toward zero
		d := v - float64(t)                     // in (-1, 1), exact
		neg := int64(math.Float64bits(d)) >> 63 // -1 if d < 0, else 0
		frac := uint64((d - float64(neg)) * 0x1p53)
		u := r.Uint64() >> 11 // uniform on [0, 2^53)
		dst[i] = t + neg + int64((u-frac)>>63)
	}
}

// sumSquares returns the sum of x[i]², in floating point.
func sumSquares(x []int64) float64 {
	var s0, s1 float64
	i := 0
	for ; i+1 < len(x); i += 2 {
		a, b := float64(x[i]), float64(x[i+1])
		s0 += a * a
		s1 += b * b
	}
	if i < len(x) {
		a := float64(x[i])
		s0 += a * a
	}
	return s0 + s1
}

// Wrap sets dst[i] = x[i] mod 2^Bits (two's complement). Both lengths must
// be PaddedDim, or Wrap returns an error wrapping ErrLength.
func (e *Encoder) Wrap(dst []uint64, x []int64) error {
	if len(dst) != e.dpad || len(x) != e.dpad {
		return fmt.Errorf("%w: Wrap len(dst) = %d, len(x) = %d, want %d", ErrLength, len(dst), len(x), e.dpad)
	}
	m := e.mask
	for i, v := range x {
		dst[i] = uint64(v) & m
	}
	return nil
}

// AddMod sets dst[i] = (dst[i] + x[i]) mod 2^bits, to sum wrapped vectors.
// It returns an error if the lengths differ or bits is not in 1..64.
func AddMod(dst, x []uint64, bits uint) error {
	if bits < 1 || bits > 64 {
		return fmt.Errorf("fixedpoint: AddMod bits = %d, want 1..64", bits)
	}
	if len(dst) != len(x) {
		return fmt.Errorf("%w: AddMod len(dst) = %d, len(x) = %d", ErrLength, len(dst), len(x))
	}
	m := uint64(math.MaxUint64) >> (64 - bits)
	x = x[:len(dst)]
	for i, v := range x {
		dst[i] = (dst[i] + v) & m
	}
	return nil
}

// Decode turns sum, the modular sum of wrapped vectors (values are taken
// mod 2^Bits), back into a float vector: it lifts each value to the signed
// integer in [-2^(Bits-1), 2^(Bits-1)), divides by γ, undoes the rotation and
// drops the padding. len(dst) must be Dim and len(sum) PaddedDim, or Decode
// returns an error wrapping ErrLength.
func (e *Encoder) Decode(dst []float64, sum []uint64) error {
	if len(dst) != e.p.Dim {
		return fmt.Errorf("%w: len(dst) = %d, want %d", ErrLength, len(dst), e.p.Dim)
	}
	if len(sum) != e.dpad {
		return fmt.Errorf("%w: len(sum) = %d, want %d", ErrLength, len(sum), e.dpad)
	}
	bp := scratch(e.dpad)
	defer scratchPools.put(bp)
	y := *bp
	// R⁻¹ = D·H/sqrt(dpad): lift and scale, transform, then apply the signs.
	k := 1 / (e.p.Scale * math.Sqrt(float64(e.dpad)))
	sh := 64 - e.p.Bits
	for i, v := range sum {
		y[i] = float64(int64(v<<sh)>>sh) * k
	}
	fwht(y)
	signScale(dst, y[:len(dst)], 1, e.signs, 0)
	return nil
}

// Clip scales x in place so that its L2 norm is at most c, and returns the
// factor applied (1 if x was already within c). c must be positive. If x
// holds a NaN or an infinity, Clip leaves x unchanged and returns NaN.
func Clip(x []float64, c float64) (scale float64) {
	if !(c > 0) {
		panic(fmt.Sprintf("fixedpoint: Clip with c = %v, want > 0", c))
	}
	n, err := norm2(x)
	if err != nil {
		return math.NaN()
	}
	if n <= c {
		return 1
	}
	s := c / n
	floats.Scale(s, x)
	return s
}

// norm2 returns the L2 norm of x, or an error wrapping ErrNonFinite naming the
// first NaN or infinity. It uses the fast sum of squares and falls back to
// gonum's scaled norm when that overflows or underflows.
func norm2(x []float64) (float64, error) {
	ss := floats.Dot(x, x)
	if ss >= 0x1p-900 && ss <= math.MaxFloat64 {
		return math.Sqrt(ss), nil
	}
	if ss != 0 { // +Inf or NaN: a non-finite value, or overflow.
		for i, v := range x {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, fmt.Errorf("%w: x[%d] = %v", ErrNonFinite, i, v)
			}
		}
	}
	return floats.Norm(x, 2), nil
}
