package privacy

import (
	"math"
	"math/rand/v2"
)

// QuantileClipperConfig configures a QuantileClipper. Zero values of the
// optional fields mean the paper's defaults.
type QuantileClipperConfig struct {
	// InitialClip is the starting clip norm C. Required, > 0. To restore a
	// clipper, pass its last Clip() here.
	InitialClip float64
	// TargetQuantile is γ, the fraction of clients whose update norm should
	// fall at or below C. Zero means 0.5; otherwise in (0, 1].
	TargetQuantile float64
	// LearningRate is η in C ← C·exp(-η(b̄ - γ)). Zero means 0.2.
	LearningRate float64
	// ExpectedClients is m, the expected number of clients reporting a bit
	// per round; the noisy count is divided by m. Required, >= 1.
	ExpectedClients int
	// NoiseMultiplier is the total noise multiplier z of the round, shared by
	// the update and the count. Zero means no noise (not private).
	NoiseMultiplier float64
	// CountStddev is σ_b, the std of the Gaussian noise added to the count.
	// Zero means m/20 when NoiseMultiplier > 0 (the paper's recommendation,
	// also TensorFlow Federated's default) and no count noise otherwise.
	CountStddev float64
}

// QuantileClipper adapts the clip norm to a target quantile of the update
// norms, privately (Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially
// Private Learning with Adaptive Clipping", geometric update).
//
// Each round every sampled client reports the bit b = 1 if its update norm is
// at most Clip(), else 0, next to its clipped update. The server sums the
// bits (securely or not) and calls Observe, which forms
//
//	b̄ = (Σ(b - 1/2) + N(0, σ_b²))/m + 1/2
//
// and sets C ← C·exp(-η(b̄ - γ)). The centred bits have sensitivity 1/2, so
// the count is a Gaussian mechanism with noise multiplier 2σ_b, and a round
// whose update uses noise multiplier z_Δ is as private as one Gaussian
// mechanism with z = (z_Δ⁻² + (2σ_b)⁻²)^(-1/2) (the paper's Theorem 1).
// Given the round's total z, the update must therefore use
//
//	z_Δ = (z⁻² - (2σ_b)⁻²)^(-1/2),
//
// which UpdateNoiseMultiplier returns. Account the round with z, e.g.
// AddSampledGaussian(q, cfg.NoiseMultiplier, 1), and noise the update with
// std UpdateNoiseMultiplier()·Clip() (Clip before Observe).
type QuantileClipper struct {
	clip, target, lr float64
	m                float64
	zUpdate, countSD float64
}

// NewQuantileClipper validates cfg and returns a clipper.
func NewQuantileClipper(cfg QuantileClipperConfig) (*QuantileClipper, error) {
	if err := checkPos("QuantileClipperConfig.InitialClip", cfg.InitialClip); err != nil {
		return nil, err
	}
	if cfg.TargetQuantile == 0 {
		cfg.TargetQuantile = 0.5
	}
	if !(cfg.TargetQuantile > 0 && cfg.TargetQuantile <= 1) {
		return nil, argErr("QuantileClipperConfig.TargetQuantile", cfg.TargetQuantile, "in (0, 1]")
	}
	if cfg.LearningRate == 0 {
		cfg.LearningRate = 0.2
	}
	if err := checkPos("QuantileClipperConfig.LearningRate", cfg.LearningRate); err != nil {
		return nil, err
	}
	if cfg.ExpectedClients < 1 {
		return nil, argErr("QuantileClipperConfig.ExpectedClients", float64(cfg.ExpectedClients), ">= 1")
	}
	if err := checkNonNeg("QuantileClipperConfig.NoiseMultiplier", cfg.NoiseMultiplier); err != nil {
		return nil, err
	}
	if err := checkNonNeg("QuantileClipperConfig.CountStddev", cfg.CountStddev); err != nil {
		return nil, err
	}
	m := float64(cfg.ExpectedClients)
	c := &QuantileClipper{clip: cfg.InitialClip, target: cfg.TargetQuantile, lr: cfg.LearningRate, m: m, countSD: cfg.CountStddev}
	if z := cfg.NoiseMultiplier; z > 0 {
		if c.countSD == 0 {
			c.countSD = m / 20
		}
		if z >= 2*c.countSD {
			return nil, argErr("QuantileClipperConfig.NoiseMultiplier", z, "< 2·CountStddev, or the update would need infinite noise")
		}
		c.zUpdate = 1 / math.Sqrt(1/(z*z)-1/(4*c.countSD*c.countSD))
	}
	return c, nil
}

// Clip returns the current clip norm C.
func (c *QuantileClipper) Clip() float64 { return c.clip }

// UpdateNoiseMultiplier returns z_Δ, the noise multiplier for the clipped
// updates of this round (noise std z_Δ·Clip()).
func (c *QuantileClipper) UpdateNoiseMultiplier() float64 { return c.zUpdate }

// CountStddev returns σ_b, the std of the noise on the sum of centred bits.
func (c *QuantileClipper) CountStddev() float64 { return c.countSD }

// NoisyFraction returns b̄ for bitSum bits set out of clients reports, with
// the count noise drawn from r (unused, and may be nil, when CountStddev is
// 0). It does not change the clip: the leader can draw b̄ once and replicate
// it, and every replica then calls Apply(b̄).
func (c *QuantileClipper) NoisyFraction(bitSum, clients int, r *rand.Rand) (float64, error) {
	if clients < 0 {
		return 0, argErr("clients", float64(clients), ">= 0")
	}
	if bitSum < 0 || bitSum > clients {
		return 0, argErr("bitSum", float64(bitSum), "in [0, clients]")
	}
	s := float64(bitSum) - float64(clients)/2
	if c.countSD > 0 {
		s += c.countSD * r.NormFloat64()
	}
	return s/c.m + 0.5, nil
}

// Apply performs the geometric update C ← C·exp(-η(b̄ - γ)) for a noisy
// fraction b̄. It is deterministic.
func (c *QuantileClipper) Apply(fraction float64) error {
	if math.IsNaN(fraction) || math.IsInf(fraction, 0) {
		return argErr("fraction", fraction, "finite")
	}
	next := c.clip * math.Exp(-c.lr*(fraction-c.target))
	if !(next > 0 && next < inf) {
		return argErr("fraction", fraction, "a value that keeps the clip finite and > 0")
	}
	c.clip = next
	return nil
}

// Observe is NoisyFraction followed by Apply.
func (c *QuantileClipper) Observe(bitSum, clients int, r *rand.Rand) error {
	f, err := c.NoisyFraction(bitSum, clients, r)
	if err != nil {
		return err
	}
	return c.Apply(f)
}
