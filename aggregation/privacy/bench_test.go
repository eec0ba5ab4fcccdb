package privacy

import (
	"sync"
	"testing"
)

// modelDim is the number of coordinates of the noise benchmarks.
const modelDim = 118592

var (
	ledgerOnce sync.Once
	ledger1000 *Accountant
)

// heterogeneousLedger returns an accountant with 1000 rounds whose noise
// multiplier changes every round, so that no two neighbouring entries merge.
// Built once: each distinct round costs one RDP curve.
func heterogeneousLedger(b *testing.B) *Accountant {
	ledgerOnce.Do(func() {
		a, err := NewAccountant(Config{})
		if err != nil {
			b.Fatal(err)
		}
		for i := range 1000 {
			if err := a.AddSampledGaussian(0.01, 1+float64(i%10)/100, 1); err != nil {
				b.Fatal(err)
			}
		}
		ledger1000 = a
	})
	return ledger1000
}

func BenchmarkEpsilon1000Rounds(b *testing.B) {
	a := heterogeneousLedger(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := a.Epsilon(1e-5); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddRound is the cost of recording one round with new parameters:
// one RDP curve over the default orders.
func BenchmarkAddRound(b *testing.B) {
	for _, mech := range []string{"gaussian", "skellam"} {
		b.Run(mech, func(b *testing.B) {
			plan, err := PlanSkellam(SkellamConfig{Scale: 1000, Clip: 1, Dim: modelDim, NoiseMultiplier: 1, Clients: 100})
			if err != nil {
				b.Fatal(err)
			}
			a, err := NewAccountant(Config{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				z := 1 + float64(i%2)/10
				if mech == "gaussian" {
					err = a.AddSampledGaussian(0.01, z, 1)
				} else {
					err = a.AddSkellam(0.01, plan.Survivors(90+i%2), 1)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNoiseForEpsilon(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := NoiseForEpsilon(2, 1e-5, 0.01, 1000); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAddGaussian(b *testing.B) {
	x := make([]float64, modelDim)
	r := testRand(1)
	b.SetBytes(8 * modelDim)
	b.ReportAllocs()
	for b.Loop() {
		AddGaussian(x, 1.1, r)
	}
}

func BenchmarkAddGaussianChaCha8(b *testing.B) {
	x := make([]float64, modelDim)
	r := NewSecureRand()
	b.SetBytes(8 * modelDim)
	b.ReportAllocs()
	for b.Loop() {
		AddGaussian(x, 1.1, r)
	}
}

// BenchmarkSampleSkellam covers the inversion sampler (small per-client
// variance) and PTRS (large), per model-sized vector.
func BenchmarkSampleSkellam(b *testing.B) {
	for _, tt := range []struct {
		name     string
		variance float64
	}{{"var=4", 4}, {"var=1e4", 1e4}, {"var=1e8", 1e8}} {
		b.Run(tt.name, func(b *testing.B) {
			x := make([]int64, modelDim)
			r := testRand(1)
			b.SetBytes(8 * modelDim)
			b.ReportAllocs()
			for b.Loop() {
				SampleSkellam(x, tt.variance, r)
			}
		})
	}
}

func BenchmarkAddSkellamMod(b *testing.B) {
	x := make([]uint64, modelDim)
	r := NewSecureRand()
	b.SetBytes(8 * modelDim)
	b.ReportAllocs()
	for b.Loop() {
		AddSkellamMod(x, 32, 1e4, r)
	}
}
