package store

import (
	"fmt"

	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// NoiseMode selects who adds a round's differential-privacy noise, and so
// whom the guarantee trusts. Values are replicated: only ever appended.
type NoiseMode uint8

// Noise modes. The zero value stands for NoiseCentral when
// Training.NoiseMultiplier > 0 and NoiseOff otherwise, as before the
// option existed.
const (
	// NoiseOff: no noise; the ledger records rounds with multiplier 0
	// (ε unbounded).
	NoiseOff NoiseMode = iota + 1
	// NoiseCentral: the leader adds Gaussian noise of std
	// NoiseMultiplier·Clip to the sum of the updates. The guarantee holds
	// against everyone who sees the models, not against the leader.
	NoiseCentral
	// NoiseDistributed: each client adds its share of Skellam noise to its
	// encoded update before secure aggregation (needs SecAgg); the leader
	// adds none and sees only the noisy sum. The guarantee holds against
	// the leader too, as long as secure aggregation holds and the clients
	// add their shares.
	NoiseDistributed
)

var noiseModeNames = [...]string{NoiseOff: "off", NoiseCentral: "central", NoiseDistributed: "distributed"}

func (m NoiseMode) String() string {
	if m >= NoiseOff && m <= NoiseDistributed {
		return noiseModeNames[m]
	}
	return fmt.Sprintf("NoiseMode(%d)", uint8(m))
}

// ParseNoiseMode parses off, central or distributed.
func ParseNoiseMode(s string) (NoiseMode, error) {
	for m := NoiseOff; m <= NoiseDistributed; m++ {
		if noiseModeNames[m] == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("coordinator: noise mode %q, want off, central or distributed", s)
}

// NoiseMode resolves the zero mode.
func (t Training) NoiseMode() NoiseMode {
	switch {
	case t.Noise != 0:
		return t.Noise
	case t.NoiseMultiplier > 0:
		return NoiseCentral
	}
	return NoiseOff
}

// Clipper returns the adaptive clipper of a round whose clip is clip. It
// is rebuilt each round from the replicated configuration and clip, so a
// new leader continues where the old one stopped.
func (t Training) Clipper(clip float64) (*privacy.QuantileClipper, error) {
	cfg := privacy.QuantileClipperConfig{InitialClip: clip, TargetQuantile: t.ClipQuantile, LearningRate: t.ClipLearningRate, ExpectedClients: t.ClientsPerRound}
	if t.NoiseMode() == NoiseCentral {
		cfg.NoiseMultiplier, cfg.CountStddev = t.NoiseMultiplier, t.ClipCountStddev
	}
	return privacy.NewQuantileClipper(cfg)
}

// Entry returns the accountant's entry for e: a Poisson-sampled Gaussian
// mechanism (central noise, or none), or a Poisson-sampled Skellam one
// (distributed noise).
func (e LedgerEntry) Entry() privacy.Entry {
	if e.Mechanism == wire.MechSkellam {
		return privacy.Entry{Mechanism: privacy.PoissonSkellam, SamplingRate: e.SamplingRate, Variance: e.Variance, L1: e.L1, L2: e.L2, Steps: e.Steps}
	}
	return privacy.Entry{Mechanism: privacy.PoissonGaussian, SamplingRate: e.SamplingRate, NoiseMultiplier: e.NoiseMultiplier, Steps: e.Steps}
}

func (e LedgerEntry) toWire() *wire.LedgerEntry {
	return &wire.LedgerEntry{Round: e.Round, SamplingRate: e.SamplingRate, NoiseMultiplier: e.NoiseMultiplier, Steps: e.Steps,
		Mechanism: e.Mechanism, Variance: e.Variance, L1: e.L1, L2: e.L2}
}

func ledgerFromWire(w *wire.LedgerEntry) LedgerEntry {
	return LedgerEntry{Round: w.Round, SamplingRate: w.SamplingRate, NoiseMultiplier: w.NoiseMultiplier, Steps: w.Steps,
		Mechanism: w.Mechanism, Variance: w.Variance, L1: w.L1, L2: w.L2}
}
