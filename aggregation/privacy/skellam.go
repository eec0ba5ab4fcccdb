package privacy

import (
	"math"
	"math/rand/v2"
)

// SkellamConfig describes one round of the distributed Skellam mechanism
// (Agarwal, Kairouz, Liu 2021, Algorithm 1): each client clips its update to
// L2 norm Clip, multiplies it by Scale, (randomly rotates it,) rounds it
// stochastically to integers, and adds Skellam noise; secure aggregation sums
// the integer vectors modulo 2^bits and the server divides by Scale.
type SkellamConfig struct {
	// Scale is γ, the factor applied before rounding. Must be > 0.
	Scale float64
	// Clip is c, the float-domain L2 clip norm. Must be > 0.
	Clip float64
	// Dim is d, the number of coordinates actually rounded (after any
	// padding for the rotation). Must be >= 1.
	Dim int
	// NoiseMultiplier is z: the summed noise has float-domain std z·Clip.
	// Must be >= 0.
	NoiseMultiplier float64
	// Clients is n, the number of clients expected to add noise. Must be >= 1.
	Clients int
	// Beta is the conditional rounding parameter in [0, 1) of Kairouz, Liu,
	// Steinke 2021 (Theorem 1). 0 means unconditional stochastic rounding.
	Beta float64
}

// SkellamPlan is what clients and the accountant need for one round of the
// distributed Skellam mechanism. All quantities are per coordinate and in
// the integer (scaled) domain unless the name says otherwise.
type SkellamPlan struct {
	// ClientVariance is the Skellam variance each client adds:
	// (z·c·γ)²/n. Pass it to SampleSkellam or AddSkellamMod.
	ClientVariance float64
	// Variance is the variance of the summed noise, μ = (z·c·γ)², so the
	// float-domain std of the sum is z·c.
	Variance float64
	// L2 is the L2 sensitivity after scaling and rounding: the rounded
	// vector of one client has L2 norm at most L2. The encoder must enforce
	// it (exactly, on the integer vector).
	L2 float64
	// L1 is the L1 sensitivity, ceil(L2·min(√d, L2)): any integer vector of
	// L2 norm L2 has L1 norm at most this.
	L1 float64
	// RoundingVariance bounds the float-domain variance per coordinate of
	// the summed rounding errors, n/(4γ²). It is error, not privacy noise.
	RoundingVariance float64
}

// PlanSkellam returns the noise shares and sensitivities for cfg.
//
// As in the paper and in TensorFlow Federated's DistributedDpSumFactory, the
// noise is calibrated to the float-domain clip (total std z·c) and rounding is
// not counted as noise: the stochastic rounding errors depend on the data, so
// they are charged instead as an inflation of the sensitivity, from γc to
// L2 = min(γc + √d, sqrt(γ²c² + d/4 + sqrt(2·ln(1/β))·(γc + √d/2))) (the
// second term only when β > 0). The effective noise multiplier the
// accountant sees is therefore sqrt(μ)/L2, a little below z; choose γ so that
// √d is small next to γc.
func PlanSkellam(cfg SkellamConfig) (SkellamPlan, error) {
	if err := checkPos("SkellamConfig.Scale", cfg.Scale); err != nil {
		return SkellamPlan{}, err
	}
	if err := checkPos("SkellamConfig.Clip", cfg.Clip); err != nil {
		return SkellamPlan{}, err
	}
	if cfg.Dim < 1 {
		return SkellamPlan{}, argErr("SkellamConfig.Dim", float64(cfg.Dim), ">= 1")
	}
	if err := checkNonNeg("SkellamConfig.NoiseMultiplier", cfg.NoiseMultiplier); err != nil {
		return SkellamPlan{}, err
	}
	if cfg.Clients < 1 {
		return SkellamPlan{}, argErr("SkellamConfig.Clients", float64(cfg.Clients), ">= 1")
	}
	if !(cfg.Beta >= 0 && cfg.Beta < 1) {
		return SkellamPlan{}, argErr("SkellamConfig.Beta", cfg.Beta, "in [0, 1)")
	}
	sc := cfg.Scale * cfg.Clip
	d := float64(cfg.Dim)
	l2 := sc + math.Sqrt(d)
	if cfg.Beta > 0 {
		b2 := sc*sc + d/4 + math.Sqrt(2*math.Log(1/cfg.Beta))*(sc+math.Sqrt(d)/2)
		l2 = math.Min(l2, math.Sqrt(b2))
	}
	std := cfg.NoiseMultiplier * sc
	mu := std * std
	n := float64(cfg.Clients)
	return SkellamPlan{
		ClientVariance:   mu / n,
		Variance:         mu,
		L2:               l2,
		L1:               math.Ceil(l2 * math.Min(math.Sqrt(d), l2)),
		RoundingVariance: n / (4 * cfg.Scale * cfg.Scale),
	}, nil
}

// Survivors returns the plan for a round in which only m clients' noise
// reached the sum (dropouts): Variance becomes m·ClientVariance. Account with
// the survivors' plan; with m = 0 there is no noise and ε is infinite.
func (p SkellamPlan) Survivors(m int) SkellamPlan {
	if m < 0 {
		panic("privacy: SkellamPlan.Survivors: m < 0")
	}
	p.Variance = float64(m) * p.ClientVariance
	return p
}

// NoiseMultiplier returns the effective noise multiplier sqrt(Variance)/L2
// that the accountant's bound is driven by (the bound also has an L1 term).
func (p SkellamPlan) NoiseMultiplier() float64 {
	return math.Sqrt(p.Variance) / p.L2
}

func (p SkellamPlan) entry(q float64, steps int) Entry {
	return Entry{Mechanism: PoissonSkellam, SamplingRate: q, Variance: p.Variance, L1: p.L1, L2: p.L2, Steps: steps}
}

// SampleSkellam fills dst with independent symmetric Skellam variates of the
// given variance: Poisson(variance/2) - Poisson(variance/2). Sums of such
// variates are Skellam with the summed variance, so n clients each adding
// SampleSkellam(plan.ClientVariance) give the sum variance plan.Variance.
// It panics if variance is negative or not finite.
func SampleSkellam(dst []int64, variance float64, r *rand.Rand) {
	p := newPoisson(skellamLambda("SampleSkellam", variance))
	for i := range dst {
		pos := p.sample(r)
		dst[i] = pos - p.sample(r)
	}
}

// AddSkellamMod adds independent symmetric Skellam noise of the given
// variance to each element of dst modulo 2^bits, for vectors that go into
// secure aggregation. bits must be in [1, 64]; it panics otherwise or if
// variance is negative or not finite.
func AddSkellamMod(dst []uint64, bits uint, variance float64, r *rand.Rand) {
	if bits < 1 || bits > 64 {
		panic("privacy: AddSkellamMod: bits out of [1, 64]")
	}
	mask := ^uint64(0) >> (64 - bits)
	p := newPoisson(skellamLambda("AddSkellamMod", variance))
	for i := range dst {
		pos := p.sample(r)
		dst[i] = (dst[i] + uint64(pos-p.sample(r))) & mask
	}
}

func skellamLambda(fn string, variance float64) float64 {
	if !(variance >= 0 && variance < inf) {
		panic("privacy: " + fn + ": variance must be finite and >= 0")
	}
	return variance / 2
}

// poissonSmall is the mean below which poisson samples by inversion.
const poissonSmall = 10

// poisson samples Poisson(lam) exactly (up to floating point): by inversion
// for small means, and by Hörmann's transformed rejection with squeeze
// (PTRS, "The transformed rejection method for generating Poisson random
// variables", 1993), as numpy does, for means of 10 and more. Both use O(1)
// expected uniforms for the large case and O(lam) for the small one.
//
// The means of distributed DP reach 1e16 and more (the noise std in the
// integer domain is around 1e8), where k·log(λ) and lgamma(k+1) are 1e17
// and their difference, the log pmf, would be lost to rounding; and λ
// itself is an integer no longer exactly. So PTRS works on the offset of
// k from floor(λ), and the log pmf is evaluated in a form that cancels
// analytically (see logPMF).
type poisson struct {
	lam    float64
	expNeg float64 // inversion: exp(-lam)
	// PTRS constants.
	whole                 int64   // floor(lam)
	frac                  float64 // lam - whole
	a, b, vr, logInvAlpha float64
}

func newPoisson(lam float64) poisson {
	p := poisson{lam: lam}
	if lam < poissonSmall {
		p.expNeg = math.Exp(-lam)
		return p
	}
	slam := math.Sqrt(lam)
	w := math.Floor(lam)
	p.whole, p.frac = int64(w), lam-w
	p.b = 0.931 + 2.53*slam
	p.a = -0.059 + 0.02483*p.b
	p.logInvAlpha = math.Log(1.1239 + 1.1328/(p.b-3.4))
	p.vr = 0.9277 - 3.6224/(p.b-2)
	return p
}

func (p *poisson) sample(r *rand.Rand) int64 {
	if p.lam == 0 {
		return 0
	}
	if p.lam < poissonSmall {
		return p.invert(r)
	}
	for {
		u := r.Float64() - 0.5
		v := r.Float64()
		us := 0.5 - math.Abs(u)
		if us == 0 {
			continue
		}
		// k = floor(x + λ) = whole + floor(x + frac), exactly.
		j := math.Floor((2*p.a/us+p.b)*u + p.frac + 0.43)
		k := p.whole + int64(j)
		if us >= 0.07 && v <= p.vr {
			return k
		}
		if k < 0 || (us < 0.013 && v > us) {
			continue
		}
		if math.Log(v)+p.logInvAlpha-math.Log(p.a/(us*us)+p.b) <= p.logPMF(k, j-p.frac) {
			return k
		}
	}
}

// logPMF is log(λ^k e^-λ / k!) for k = λ + delta. For k >= 10 it uses
// Stirling's series for lgamma(k+1), in which the large terms cancel:
//
//	delta - k·log1p(delta/λ) - log(2πk)/2 - (1/(12k) - 1/(360k³) + 1/(1260k⁵))
//
// accurate to about 1e-10 at k = 10 and better beyond, at any λ.
func (p *poisson) logPMF(k int64, delta float64) float64 {
	kf := float64(k)
	if k < 10 {
		return -p.lam + kf*math.Log(p.lam) - lgamma(kf+1)
	}
	r := 1 / kf
	r2 := r * r
	corr := r * (1.0/12 - r2*(1.0/360-r2/1260))
	return delta - kf*math.Log1p(delta/p.lam) - 0.5*math.Log(2*math.Pi*kf) - corr
}

// invert samples by sequential search of the CDF. If rounding leaves the
// accumulated CDF below u (probability about 1e-16) it starts over.
func (p *poisson) invert(r *rand.Rand) int64 {
	for {
		u := r.Float64()
		prob := p.expNeg
		cdf := prob
		k := int64(0)
		for u > cdf && prob > 0 {
			k++
			prob *= p.lam / float64(k)
			cdf += prob
		}
		if u <= cdf {
			return k
		}
	}
}
