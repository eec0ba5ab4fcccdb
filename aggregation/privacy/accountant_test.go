package privacy

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func mustAccountant(t testing.TB, cfg Config) *Accountant {
	t.Helper()
	a, err := NewAccountant(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustEpsilon(t testing.TB, a *Accountant, delta float64) float64 {
	t.Helper()
	eps, _, err := a.Epsilon(delta)
	if err != nil {
		t.Fatal(err)
	}
	return eps
}

func TestEmptyAndTrivialLedgers(t *testing.T) {
	for _, conv := range []Conversion{ConversionImproved, ConversionClassic} {
		a := mustAccountant(t, Config{Conversion: conv})
		if eps := mustEpsilon(t, a, 1e-5); eps != 0 {
			t.Errorf("%v: empty ledger: Epsilon = %g, want 0", conv, eps)
		}
		// dp_accounting test_zero_poisson_sample: q = 0 costs nothing, even
		// without noise.
		if err := a.AddSampledGaussian(0, 0, 100); err != nil {
			t.Fatal(err)
		}
		if eps := mustEpsilon(t, a, 1e-10); eps != 0 {
			t.Errorf("%v: q=0: Epsilon = %g, want 0", conv, eps)
		}
		if d, _, _ := a.Delta(1e-10); d != 0 {
			t.Errorf("%v: q=0: Delta = %g, want 0", conv, d)
		}
		// test_epsilon_non_private_gaussian: no noise is no privacy.
		if err := a.AddSampledGaussian(0.5, 0, 1); err != nil {
			t.Fatal(err)
		}
		if eps := mustEpsilon(t, a, 0.1); !math.IsInf(eps, 1) {
			t.Errorf("%v: z=0: Epsilon = %g, want +Inf", conv, eps)
		}
	}
	a := mustAccountant(t, Config{Neighboring: ReplaceOne})
	if err := a.AddFixedSizeGaussian(0, 1000, 1, 5); err != nil {
		t.Fatal(err)
	}
	if eps := mustEpsilon(t, a, 1e-10); eps != 0 {
		t.Errorf("fixed size 0: Epsilon = %g, want 0", eps)
	}
}

// TestComposition checks that heterogeneous rounds add up, following
// dp_accounting's test_rdp_composition.
func TestComposition(t *testing.T) {
	orders := []float64{2.71828, 4, 16.5}
	one := func(q, z float64, steps int) []float64 {
		a := mustAccountant(t, Config{Orders: orders})
		if err := a.AddSampledGaussian(q, z, steps); err != nil {
			t.Fatal(err)
		}
		_, r := a.RDP()
		return r
	}
	base := one(1, 3.14159, 1)
	// q = 1: the plain Gaussian mechanism, α/(2σ²).
	for i, o := range orders {
		if want := o / (2 * 3.14159 * 3.14159); math.Abs(base[i]-want) > 1e-15 {
			t.Errorf("Gaussian rdp(%g) = %g, want %g", o, base[i], want)
		}
	}
	six := one(1, 3.14159, 6)
	a := mustAccountant(t, Config{Orders: orders})
	for range 6 {
		if err := a.AddSampledGaussian(1, 3.14159, 1); err != nil {
			t.Fatal(err)
		}
	}
	_, merged := a.RDP()
	if len(a.Entries()) != 1 {
		t.Errorf("6 identical rounds: %d entries, want 1", len(a.Entries()))
	}
	for i := range orders {
		if math.Abs(six[i]-6*base[i]) > 1e-14 || merged[i] != six[i] {
			t.Errorf("order %g: 6 steps %g, 6 adds %g, want %g", orders[i], six[i], merged[i], 6*base[i])
		}
	}

	het := mustAccountant(t, Config{Orders: orders})
	if err := het.AddSampledGaussian(0.01, 1.1, 10); err != nil {
		t.Fatal(err)
	}
	if err := het.AddSampledGaussian(0.02, 0.9, 5); err != nil {
		t.Fatal(err)
	}
	if err := het.AddSampledGaussian(0.01, 1.1, 7); err != nil {
		t.Fatal(err)
	}
	_, got := het.RDP()
	x, y, z := one(0.01, 1.1, 10), one(0.02, 0.9, 5), one(0.01, 1.1, 7)
	for i := range orders {
		if want := x[i] + y[i] + z[i]; math.Abs(got[i]-want) > 1e-12*want {
			t.Errorf("heterogeneous rdp(%g) = %g, want %g", orders[i], got[i], want)
		}
	}
	if n := len(het.Entries()); n != 3 {
		t.Errorf("3 alternating entries stored as %d", n)
	}
}

// TestRebuild checks that a ledger replicated as plain data rebuilds an
// accountant with bit-identical results.
func TestRebuild(t *testing.T) {
	plan, err := PlanSkellam(SkellamConfig{Scale: 500, Clip: 1, Dim: 1024, NoiseMultiplier: 1.2, Clients: 100})
	if err != nil {
		t.Fatal(err)
	}
	a := mustAccountant(t, Config{Orders: TFPrivacyOrders(), Conversion: ConversionClassic})
	for i := range 40 {
		z := 1 + float64(i%3)/10
		if err := a.AddSampledGaussian(0.01, z, 1); err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 {
			if err := a.AddSkellam(0.01, plan.Survivors(90+i%5), 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	b, err := Rebuild(a.Config(), a.Entries())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Entries(), b.Entries()) {
		t.Errorf("Rebuild entries differ")
	}
	_, ra := a.RDP()
	_, rb := b.RDP()
	if !slices.Equal(ra, rb) {
		t.Errorf("Rebuild RDP differs:\n%v\n%v", ra, rb)
	}
	ea, oa, _ := a.Epsilon(1e-6)
	eb, ob, _ := b.Epsilon(1e-6)
	if ea != eb || oa != ob {
		t.Errorf("Rebuild Epsilon = %v at %v, want %v at %v", eb, ob, ea, oa)
	}
	// Entries is a copy.
	e := a.Entries()
	e[0].Steps = 1e6
	if a.Entries()[0].Steps == 1e6 {
		t.Errorf("Entries aliases the ledger")
	}
}

func TestMonotonicity(t *testing.T) {
	const delta = 1e-5
	eps := func(t *testing.T, add func(*Accountant) error, cfg Config) float64 {
		a := mustAccountant(t, cfg)
		if err := add(a); err != nil {
			t.Fatal(err)
		}
		return mustEpsilon(t, a, delta)
	}
	plan := func(z float64) SkellamPlan {
		p, err := PlanSkellam(SkellamConfig{Scale: 1000, Clip: 1, Dim: 1000, NoiseMultiplier: z, Clients: 50})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	type mech struct {
		name string
		cfg  Config
		add  func(q, z float64, steps int) func(*Accountant) error
	}
	mechs := []mech{
		{"poisson-gaussian", Config{}, func(q, z float64, s int) func(*Accountant) error {
			return func(a *Accountant) error { return a.AddSampledGaussian(q, z, s) }
		}},
		{"fixed-size-gaussian", Config{Neighboring: ReplaceOne}, func(q, z float64, s int) func(*Accountant) error {
			return func(a *Accountant) error { return a.AddFixedSizeGaussian(int(q*10000), 10000, z, s) }
		}},
		{"poisson-skellam", Config{}, func(q, z float64, s int) func(*Accountant) error {
			return func(a *Accountant) error { return a.AddSkellam(q, plan(z), s) }
		}},
	}
	for _, m := range mechs {
		t.Run(m.name, func(t *testing.T) {
			prev := 0.0
			for _, steps := range []int{1, 10, 100, 1000} {
				e := eps(t, m.add(0.01, 1, steps), m.cfg)
				if e <= prev {
					t.Errorf("steps %d: eps %g, not above %g", steps, e, prev)
				}
				prev = e
			}
			prev = 0
			for _, q := range []float64{0.001, 0.01, 0.05, 0.2} {
				e := eps(t, m.add(q, 1, 100), m.cfg)
				if e <= prev {
					t.Errorf("q %g: eps %g, not above %g", q, e, prev)
				}
				prev = e
			}
			prev = math.Inf(1)
			for _, z := range []float64{0.6, 0.8, 1, 1.5, 3} {
				e := eps(t, m.add(0.01, z, 100), m.cfg)
				if e >= prev {
					t.Errorf("z %g: eps %g, not below %g", z, e, prev)
				}
				prev = e
			}
		})
	}
}

// TestSkellamVersusGaussian checks that, with a fine encoder (rounding
// negligible), the Skellam accounting approaches the Gaussian one from above:
// the Skellam bound exceeds the Gaussian RDP by O(1/μ), and the general
// amplification bound is looser than the exact one for the Gaussian.
func TestSkellamVersusGaussian(t *testing.T) {
	p, err := PlanSkellam(SkellamConfig{Scale: 1e5, Clip: 1, Dim: 1000, NoiseMultiplier: 1, Clients: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ q, maxRatio float64 }{{1, 1.01}, {0.1, 1.01}, {0.01, 1.2}} {
		g := mustAccountant(t, Config{Orders: []float64{2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 20, 32}})
		s := mustAccountant(t, g.Config())
		if err := g.AddSampledGaussian(tt.q, p.NoiseMultiplier(), 1000); err != nil {
			t.Fatal(err)
		}
		if err := s.AddSkellam(tt.q, p, 1000); err != nil {
			t.Fatal(err)
		}
		eg, es := mustEpsilon(t, g, 1e-5), mustEpsilon(t, s, 1e-5)
		if es < eg || es > tt.maxRatio*eg {
			t.Errorf("q=%g: Skellam eps %g, Gaussian %g, want ratio in [1, %g]", tt.q, es, eg, tt.maxRatio)
		}
	}
}

// TestSubsampledBoundIsUpperBound checks the general amplification bound
// used for Skellam against the exact Gaussian one it must dominate.
func TestSubsampledBoundIsUpperBound(t *testing.T) {
	for _, sigma := range []float64{0.7, 1, 2, 5} {
		gauss := func(a float64) float64 { return a / (2 * sigma * sigma) }
		for _, q := range []float64{0.001, 0.01, 0.1, 0.5} {
			for _, a := range []int{2, 3, 5, 10, 32, 64} {
				exact := rdpPoissonGaussian(q, sigma, float64(a))
				bound := subsampledRDP(a, q, gauss)
				if bound < exact*(1-1e-9)-1e-15 { // equal at α = 2, up to rounding
					t.Errorf("σ=%g q=%g α=%d: bound %g below exact %g", sigma, q, a, bound, exact)
				}
			}
		}
	}
}

func TestArgumentErrors(t *testing.T) {
	nan := math.NaN()
	plan := SkellamPlan{Variance: 1, L1: 1, L2: 1}
	tests := []struct {
		name string
		cfg  Config
		call func(*Accountant) error
		arg  string
	}{
		{"q>1", Config{}, func(a *Accountant) error { return a.AddSampledGaussian(1.5, 1, 1) }, "q"},
		{"q<0", Config{}, func(a *Accountant) error { return a.AddSampledGaussian(-0.1, 1, 1) }, "q"},
		{"q NaN", Config{}, func(a *Accountant) error { return a.AddSampledGaussian(nan, 1, 1) }, "q"},
		{"z<0", Config{}, func(a *Accountant) error { return a.AddSampledGaussian(0.1, -1, 1) }, "noiseMultiplier"},
		{"z NaN", Config{}, func(a *Accountant) error { return a.AddSampledGaussian(0.1, nan, 1) }, "noiseMultiplier"},
		{"z Inf", Config{}, func(a *Accountant) error { return a.AddSampledGaussian(0.1, math.Inf(1), 1) }, "noiseMultiplier"},
		{"steps<0", Config{}, func(a *Accountant) error { return a.AddSampledGaussian(0.1, 1, -1) }, "steps"},
		{"population", Config{Neighboring: ReplaceOne}, func(a *Accountant) error { return a.AddFixedSizeGaussian(1, 0, 1, 1) }, "populationSize"},
		{"sample", Config{Neighboring: ReplaceOne}, func(a *Accountant) error { return a.AddFixedSizeGaussian(11, 10, 1, 1) }, "sampleSize"},
		{"skellam q", Config{}, func(a *Accountant) error { return a.AddSkellam(2, plan, 1) }, "q"},
		{"skellam variance", Config{}, func(a *Accountant) error { return a.AddSkellam(0.1, SkellamPlan{Variance: nan, L1: 1, L2: 1}, 1) }, "Entry.Variance"},
		{"entry kind", Config{}, func(a *Accountant) error { return a.Add(Entry{Steps: 1}) }, "Entry.Mechanism"},
		{"delta 0", Config{}, func(a *Accountant) error { _, _, err := a.Epsilon(0); return err }, "delta"},
		{"delta 1", Config{}, func(a *Accountant) error { _, _, err := a.Epsilon(1); return err }, "delta"},
		{"delta NaN", Config{}, func(a *Accountant) error { _, _, err := a.Epsilon(nan); return err }, "delta"},
		{"eps<0", Config{}, func(a *Accountant) error { _, _, err := a.Delta(-1); return err }, "eps"},
		{"target", Config{}, func(a *Accountant) error { _, _, err := a.NoiseForEpsilon(nan, 1e-5, 0.1, 1); return err }, "targetEps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(mustAccountant(t, tt.cfg))
			var ae *ArgError
			if !errors.As(err, &ae) || ae.Arg != tt.arg {
				t.Errorf("error = %v, want an ArgError naming %q", err, tt.arg)
			}
		})
	}

	for _, cfg := range []Config{
		{Orders: []float64{}},
		{Orders: []float64{2, 1}},
		{Orders: []float64{nan}},
		{Orders: []float64{math.Inf(1)}},
		{Orders: []float64{MaxOrder + 1}},
		{Neighboring: 7},
		{Conversion: 7},
	} {
		var ae *ArgError
		if _, err := NewAccountant(cfg); !errors.As(err, &ae) {
			t.Errorf("NewAccountant(%+v) error = %v, want an ArgError", cfg, err)
		}
	}
}

func TestNeighboringRelation(t *testing.T) {
	aor := mustAccountant(t, Config{})
	if err := aor.AddFixedSizeGaussian(10, 100, 1, 1); !errors.Is(err, ErrUnsupported) {
		t.Errorf("fixed-size under add-or-remove: %v, want ErrUnsupported", err)
	}
	ro := mustAccountant(t, Config{Neighboring: ReplaceOne})
	if err := ro.AddSampledGaussian(0.1, 1, 1); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Poisson under replace-one: %v, want ErrUnsupported", err)
	}
	if err := ro.AddSkellam(0.1, SkellamPlan{Variance: 1, L1: 1, L2: 1}, 1); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Skellam under replace-one: %v, want ErrUnsupported", err)
	}
	if _, _, err := ro.NoiseForEpsilon(1, 1e-5, 0.1, 10); !errors.Is(err, ErrUnsupported) {
		t.Errorf("NoiseForEpsilon under replace-one: %v, want ErrUnsupported", err)
	}
}

func TestDefaultOrderLists(t *testing.T) {
	for _, tt := range []struct {
		name       string
		orders     []float64
		n          int
		first, end float64
	}{
		{"default", DefaultOrders(), 99 + 53 + 4, 1.1, 1024},
		{"tfprivacy", TFPrivacyOrders(), 99 + 52, 1.1, 63},
		{"dpsgd", DPSGDOrders(), 10 + 59 + 3, 1.25, 512},
	} {
		if len(tt.orders) != tt.n || tt.orders[0] != tt.first || tt.orders[len(tt.orders)-1] != tt.end {
			t.Errorf("%s: %d orders %g..%g, want %d orders %g..%g", tt.name, len(tt.orders),
				tt.orders[0], tt.orders[len(tt.orders)-1], tt.n, tt.first, tt.end)
		}
	}
	// Python's 1 + 3/10.0 is 1.3 exactly as written, not 1.2999999999999998.
	if o := DefaultOrders()[2]; o != 1.3 {
		t.Errorf("DefaultOrders()[2] = %v, want 1.3", o)
	}
}
