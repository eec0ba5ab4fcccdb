package privacy

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fedrec/fedrec/aggregation/fixedpoint"
)

// DistributedConfig describes one round of distributed DP over secure
// aggregation: every client clips, rotates and rounds its update with a
// fixedpoint.Encoder and adds its share of Skellam noise (PlanSkellam) to
// the integer vector before masking it. The server and every client build
// the same Distributed from the same config, so they agree on the scale.
type DistributedConfig struct {
	Dim  int     // float vector length, >= 1
	Clip float64 // L2 clip norm c, > 0
	Bits uint    // modulus 2^Bits of the secure sum, 1..64
	// MaxClients bounds how many inputs are summed (the cohort).
	MaxClients int
	// NoiseMultiplier is z: the noise of NoiseClients shares has
	// float-domain std z·Clip. 0 means no noise (the encoder alone).
	NoiseMultiplier float64
	// NoiseClients is n, the number of shares the noise is split into:
	// each client adds variance (z·c·γ)²/n. Required >= 1 when
	// NoiseMultiplier > 0.
	NoiseClients int
	// Seed is the public seed of the round's random rotation.
	Seed [32]byte
}

// Distributed is a round's encoder and noise plan.
type Distributed struct {
	Encoder *fixedpoint.Encoder
	// Skellam is the plan for NoiseClients shares; zero without noise.
	Skellam SkellamPlan
	bits    uint
}

// NewDistributed builds the encoder and the Skellam plan of cfg. The
// encoder's modulus leaves room for the noise of MaxClients shares (more
// survivors than NoiseClients only add noise).
func NewDistributed(cfg DistributedConfig) (*Distributed, error) {
	if err := checkNonNeg("DistributedConfig.NoiseMultiplier", cfg.NoiseMultiplier); err != nil {
		return nil, err
	}
	z := cfg.NoiseMultiplier
	if z > 0 && (cfg.NoiseClients < 1 || cfg.NoiseClients > cfg.MaxClients) {
		return nil, argErr("DistributedConfig.NoiseClients", float64(cfg.NoiseClients), "in [1, MaxClients] with noise")
	}
	noiseStd := 0.0
	if z > 0 {
		noiseStd = z * cfg.Clip * math.Sqrt(float64(cfg.MaxClients)/float64(cfg.NoiseClients))
	}
	enc, err := fixedpoint.NewEncoder(fixedpoint.Params{Dim: cfg.Dim, Clip: cfg.Clip, Bits: cfg.Bits, MaxClients: cfg.MaxClients, NoiseStd: noiseStd, Seed: cfg.Seed})
	if err != nil {
		return nil, fmt.Errorf("privacy: distributed encoder: %w", err)
	}
	d := &Distributed{Encoder: enc, bits: enc.Params().Bits}
	if z > 0 {
		d.Skellam, err = PlanSkellam(SkellamConfig{Scale: enc.Params().Scale, Clip: cfg.Clip, Dim: enc.PaddedDim(), NoiseMultiplier: z, Clients: cfg.NoiseClients})
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Encode writes x, clipped, rotated, rounded and wrapped to the modulus,
// plus this client's share of the noise, to dst (length
// Encoder.PaddedDim()). It returns x's L2 norm before clipping; r drives
// the rounding and the noise, and must be secret to the client.
func (d *Distributed) Encode(dst []uint64, x []float64, r *rand.Rand) (norm float64, err error) {
	xi := make([]int64, d.Encoder.PaddedDim())
	if norm, err = d.Encoder.Encode(xi, x, r); err != nil {
		return 0, err
	}
	if err := d.Encoder.Wrap(dst, xi); err != nil {
		return norm, err
	}
	if d.Skellam.ClientVariance > 0 {
		AddSkellamMod(dst, d.bits, d.Skellam.ClientVariance, r)
	}
	return norm, nil
}

// Survivors returns the plan the accountant charges for a round in which
// m clients' inputs reached the sum. Conservatively, a client's own share
// does not protect it: only the other m-1 shares count.
func (d *Distributed) Survivors(m int) SkellamPlan {
	return d.Skellam.Survivors(max(0, m-1))
}

// NoiseClients is how many clients' noise shares to plan for when about
// expected clients survive a round: two standard deviations below it (of
// a Poisson count), at least 1, so that almost every round carries the
// planned noise.
func NoiseClients(expected float64) int {
	return max(1, int(math.Floor(expected-2*math.Sqrt(expected))))
}
