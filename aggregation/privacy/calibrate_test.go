package privacy

import (
	"errors"
	"testing"
)

func TestNoiseForEpsilonRoundTrip(t *testing.T) {
	tests := []struct {
		eps, delta, q float64
		steps         int
	}{
		{1, 1e-5, 0.01, 1000},
		{3, 1e-6, 0.001, 10000},
		{8, 1e-5, 0.1, 200},
		{0.5, 1e-5, 1, 1},
	}
	for _, tt := range tests {
		z, order, err := NoiseForEpsilon(tt.eps, tt.delta, tt.q, tt.steps)
		if err != nil {
			t.Fatalf("NoiseForEpsilon(%g, %g, %g, %d): %v", tt.eps, tt.delta, tt.q, tt.steps, err)
		}
		a := mustAccountant(t, Config{})
		if err := a.AddSampledGaussian(tt.q, z, tt.steps); err != nil {
			t.Fatal(err)
		}
		got, gotOrder, _ := a.Epsilon(tt.delta)
		if got > tt.eps || gotOrder != order {
			t.Errorf("NoiseForEpsilon(%g, ...) = %g at order %g, which gives eps %g at order %g", tt.eps, z, order, got, gotOrder)
		}
		b := mustAccountant(t, Config{})
		if err := b.AddSampledGaussian(tt.q, z*(1-1e-3), tt.steps); err != nil {
			t.Fatal(err)
		}
		if e := mustEpsilon(t, b, tt.delta); e <= tt.eps {
			t.Errorf("NoiseForEpsilon(%g, ...) = %g, but 0.1%% less noise also meets it (eps %g)", tt.eps, z, e)
		}
	}
}

// TestNoiseForRemainingBudget calibrates the rest of a run after a ledger
// has already spent part of the budget.
func TestNoiseForRemainingBudget(t *testing.T) {
	a := mustAccountant(t, Config{})
	if err := a.AddSampledGaussian(0.01, 1.2, 300); err != nil {
		t.Fatal(err)
	}
	spent := mustEpsilon(t, a, 1e-5)
	z, _, err := a.NoiseForEpsilon(2*spent, 1e-5, 0.01, 300)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AddSampledGaussian(0.01, z, 300); err != nil {
		t.Fatal(err)
	}
	if got := mustEpsilon(t, a, 1e-5); got > 2*spent {
		t.Errorf("after calibrated rounds eps = %g, want <= %g", got, 2*spent)
	}
	// Twice the rounds at twice the budget needs less noise per round than
	// the first half used, since RDP composes sublinearly in (ε, δ).
	if z >= 1.2 {
		t.Errorf("remaining-budget z = %g, want below 1.2", z)
	}
}

func TestNoiseForEpsilonEdges(t *testing.T) {
	if z, _, err := NoiseForEpsilon(1, 1e-5, 0, 100); err != nil || z != 0 {
		t.Errorf("q=0: z = %g, %v, want 0", z, err)
	}
	if z, _, err := NoiseForEpsilon(1, 1e-5, 0.1, 0); err != nil || z != 0 {
		t.Errorf("steps=0: z = %g, %v, want 0", z, err)
	}
	// The classic conversion never goes below -log(δ)/(α_max - 1), 0.0113
	// at δ = 1e-5 with order 1024. (The improved one reaches 0 for
	// enormous noise, through its KL-divergence case.)
	classic := mustAccountant(t, Config{Conversion: ConversionClassic})
	if _, _, err := classic.NoiseForEpsilon(0.01, 1e-5, 0.1, 10); !errors.Is(err, ErrUnreachable) {
		t.Errorf("tiny target: %v, want ErrUnreachable", err)
	}
	a := mustAccountant(t, Config{})
	if err := a.AddSampledGaussian(0.1, 0.5, 100); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.NoiseForEpsilon(1, 1e-5, 0.1, 0); !errors.Is(err, ErrUnreachable) {
		t.Errorf("overspent ledger: %v, want ErrUnreachable", err)
	}
}
