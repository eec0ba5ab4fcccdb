package privacy

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func TestQuantileClipperNoiseSplit(t *testing.T) {
	c, err := NewQuantileClipper(QuantileClipperConfig{InitialClip: 1, ExpectedClients: 100, NoiseMultiplier: 1})
	if err != nil {
		t.Fatal(err)
	}
	// σ_b = m/20 = 5; z_Δ = (1 - 1/100)^(-1/2).
	if c.CountStddev() != 5 || math.Abs(c.UpdateNoiseMultiplier()-1/math.Sqrt(0.99)) > 1e-15 {
		t.Errorf("σ_b = %g, z_Δ = %g, want 5 and %g", c.CountStddev(), c.UpdateNoiseMultiplier(), 1/math.Sqrt(0.99))
	}
	// Recombining gives the round's noise multiplier back.
	zd, sb := c.UpdateNoiseMultiplier(), c.CountStddev()
	if z := 1 / math.Sqrt(1/(zd*zd)+1/(4*sb*sb)); math.Abs(z-1) > 1e-12 {
		t.Errorf("recombined z = %g, want 1", z)
	}
	if _, err := NewQuantileClipper(QuantileClipperConfig{InitialClip: 1, ExpectedClients: 10, NoiseMultiplier: 1}); err == nil {
		t.Errorf("z = 1 with σ_b = 0.5 accepted; it needs infinite update noise")
	}
	np, err := NewQuantileClipper(QuantileClipperConfig{InitialClip: 1, ExpectedClients: 10})
	if err != nil || np.UpdateNoiseMultiplier() != 0 || np.CountStddev() != 0 {
		t.Errorf("non-private clipper: %v, z_Δ %g, σ_b %g", err, np.UpdateNoiseMultiplier(), np.CountStddev())
	}

	for _, tt := range []struct {
		cfg QuantileClipperConfig
		arg string
	}{
		{QuantileClipperConfig{ExpectedClients: 1}, "QuantileClipperConfig.InitialClip"},
		{QuantileClipperConfig{InitialClip: 1}, "QuantileClipperConfig.ExpectedClients"},
		{QuantileClipperConfig{InitialClip: 1, ExpectedClients: 1, TargetQuantile: 1.5}, "QuantileClipperConfig.TargetQuantile"},
		{QuantileClipperConfig{InitialClip: 1, ExpectedClients: 1, LearningRate: -1}, "QuantileClipperConfig.LearningRate"},
		{QuantileClipperConfig{InitialClip: 1, ExpectedClients: 1, NoiseMultiplier: math.NaN()}, "QuantileClipperConfig.NoiseMultiplier"},
	} {
		var ae *ArgError
		if _, err := NewQuantileClipper(tt.cfg); !errors.As(err, &ae) || ae.Arg != tt.arg {
			t.Errorf("NewQuantileClipper(%+v) error = %v, want one naming %s", tt.cfg, err, tt.arg)
		}
	}
	var ae *ArgError
	if err := c.Observe(11, 10, testRand(1)); !errors.As(err, &ae) || ae.Arg != "bitSum" {
		t.Errorf("Observe(11, 10) error = %v, want one naming bitSum", err)
	}
	if err := c.Apply(math.NaN()); !errors.As(err, &ae) || ae.Arg != "fraction" {
		t.Errorf("Apply(NaN) error = %v, want one naming fraction", err)
	}
}

func TestQuantileClipperUpdate(t *testing.T) {
	c, err := NewQuantileClipper(QuantileClipperConfig{InitialClip: 2, ExpectedClients: 10})
	if err != nil {
		t.Fatal(err)
	}
	// All 10 under the clip with no noise: b̄ = 1, C ← 2·exp(-0.2·0.5).
	if err := c.Observe(10, 10, nil); err != nil {
		t.Fatal(err)
	}
	if want := 2 * math.Exp(-0.1); math.Abs(c.Clip()-want) > 1e-15 {
		t.Errorf("Clip = %g, want %g", c.Clip(), want)
	}
	// Apply is deterministic: replicas applying the same fraction agree.
	a, _ := NewQuantileClipper(QuantileClipperConfig{InitialClip: 1, ExpectedClients: 10})
	b, _ := NewQuantileClipper(QuantileClipperConfig{InitialClip: 1, ExpectedClients: 10})
	for _, f := range []float64{0.1, 0.9, 0.37, 0.5} {
		if err := a.Apply(f); err != nil {
			t.Fatal(err)
		}
		if err := b.Apply(f); err != nil {
			t.Fatal(err)
		}
	}
	if a.Clip() != b.Clip() {
		t.Errorf("replicas diverged: %v vs %v", a.Clip(), b.Clip())
	}
}

// TestQuantileClipperConverges runs the private clipper on update norms
// drawn from a fixed log-normal distribution and checks that the clip
// settles at the target quantile.
func TestQuantileClipperConverges(t *testing.T) {
	const m, rounds = 500, 400
	for _, target := range []float64{0.5, 0.9} {
		c, err := NewQuantileClipper(QuantileClipperConfig{
			InitialClip: 0.05, TargetQuantile: target, ExpectedClients: m, NoiseMultiplier: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		r := testRand(uint64(target * 100))
		norm := func() float64 { return 3 * math.Exp(0.5*r.NormFloat64()) } // median 3
		var late []float64
		for round := range rounds {
			bits := 0
			for range m {
				if norm() <= c.Clip() {
					bits++
				}
			}
			if err := c.Observe(bits, m, r); err != nil {
				t.Fatal(err)
			}
			if round >= rounds-100 {
				late = append(late, c.Clip())
			}
		}
		slices.Sort(late)
		clip := late[len(late)/2]
		// True quantile of 3·exp(0.5·N(0,1)): 3·exp(0.5·Φ⁻¹(target)).
		want := 3 * math.Exp(0.5*math.Sqrt2*math.Erfinv(2*target-1))
		if math.Abs(clip/want-1) > 0.05 {
			t.Errorf("target %g: clip settled at %g, want the quantile %g", target, clip, want)
		}
	}
}
