package privacy

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

func testRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

func meanVar(x []float64) (mean, variance float64) {
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	for _, v := range x {
		variance += (v - mean) * (v - mean)
	}
	return mean, variance / float64(len(x)-1)
}

func TestAddGaussian(t *testing.T) {
	const n, std = 118592, 2.5
	x := make([]float64, n)
	for i := range x {
		x[i] = 1
	}
	AddGaussian(x, std, testRand(1))
	mean, v := meanVar(x)
	// Standard errors: mean std/√n = 0.007, sd about std/√(2n) = 0.005.
	if math.Abs(mean-1) > 0.04 || math.Abs(math.Sqrt(v)-std) > 0.03 {
		t.Errorf("AddGaussian: mean %g, sd %g, want 1, %g", mean, math.Sqrt(v), std)
	}
	y := []float64{1, 2}
	AddGaussian(y, 0, testRand(1))
	if y[0] != 1 || y[1] != 2 {
		t.Errorf("AddGaussian with std 0 changed the input: %v", y)
	}
	AddGaussian(nil, 1, testRand(1))
	mustPanic(t, "negative std", func() { AddGaussian(y, -1, testRand(1)) })
	mustPanic(t, "NaN std", func() { AddGaussian(y, math.NaN(), testRand(1)) })
	mustPanic(t, "infinite std", func() { AddGaussian(y, math.Inf(1), testRand(1)) })
}

// TestAddGaussianDistribution checks AddGaussian's noise against N(0, std²)
// over more than a million draws (many blocks, the last one partial): the
// mean and variance, the fourth moment, the mass beyond 2, 3 and 4
// standard deviations (4 is beyond the ziggurat's base strip, zigR) and the
// Kolmogorov–Smirnov distance to the normal distribution function. Every
// bound is about five standard errors, so a correct sampler fails with
// probability below one in a million a check.
func TestAddGaussianDistribution(t *testing.T) {
	const n = 80*noiseBlock + 4321
	tests := []struct {
		name string
		std  float64
		r    *rand.Rand
	}{
		{"seeded", 1, testRand(7)},
		{"secure", 1, NewSecureRand()},
		{"small std", 1e-3, testRand(8)},
		{"large std", 3e4, NewSecureRand()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := make([]float64, n)
			AddGaussian(x, tt.std, tt.r)
			z := make([]float64, n)
			var m4 float64
			for i, v := range x {
				z[i] = v / tt.std
				m4 += z[i] * z[i] * z[i] * z[i]
			}
			m4 /= n
			mean, v := meanVar(z)
			if math.Abs(mean) > 5/math.Sqrt(n) {
				t.Errorf("mean = %g σ, want 0 ± %g", mean, 5/math.Sqrt(n))
			}
			if se := math.Sqrt(2.0 / n); math.Abs(v-1) > 5*se {
				t.Errorf("variance = %g σ², want 1 ± %g", v, 5*se)
			}
			if se := math.Sqrt(96.0 / n); math.Abs(m4-3) > 5*se {
				t.Errorf("fourth moment = %g σ⁴, want 3 ± %g", m4, 5*se)
			}
			for _, c := range []float64{2, 3, 4} {
				var k int
				for _, v := range z {
					if math.Abs(v) > c {
						k++
					}
				}
				p := math.Erfc(c / math.Sqrt2)
				if se := math.Sqrt(p * (1 - p) / n); math.Abs(float64(k)/n-p) > 5*se {
					t.Errorf("P(|z| > %g) = %g, want %g ± %g", c, float64(k)/n, p, 5*se)
				}
			}
			slices.Sort(z)
			var d float64
			for i, v := range z {
				f := 0.5 * math.Erfc(-v/math.Sqrt2)
				d = max(d, f-float64(i)/n, float64(i+1)/n-f)
			}
			// The KS distance's 1e-6 quantile is about √(ln(2e6)/(2n)).
			if lim := math.Sqrt(math.Log(2e6) / (2 * n)); d > lim {
				t.Errorf("Kolmogorov–Smirnov distance = %g, want < %g", d, lim)
			}
		})
	}
}

// TestAddGaussianSeeded checks that natively a seeded generator reproduces
// the noise and another seed changes it.
func TestAddGaussianSeeded(t *testing.T) {
	if runtime.GOOS == "js" {
		t.Skip("in js/wasm the noise comes from crypto.getRandomValues")
	}
	draw := func(seed uint64) []float64 {
		x := make([]float64, noiseBlock+3)
		AddGaussian(x, 1, testRand(seed))
		return x
	}
	if a, b := draw(1), draw(1); !slices.Equal(a, b) {
		t.Errorf("AddGaussian with the same seed twice gave different noise")
	}
	if a, b := draw(1), draw(2); slices.Equal(a[noiseBlock:], b[noiseBlock:]) {
		t.Errorf("AddGaussian with seeds 1 and 2 gave the same noise")
	}
}

// wordsThen is a rand.Source that gives its words, then rest's.
type wordsThen struct {
	words []uint64
	rest  rand.Source
}

func (s *wordsThen) Uint64() uint64 {
	if len(s.words) == 0 {
		return s.rest.Uint64()
	}
	u := s.words[0]
	s.words = s.words[1:]
	return u
}

// pcgStream is a wordStream of the words of rand.NewPCG(seed, 1).
func pcgStream(seed uint64) *wordStream {
	pcg := rand.NewPCG(seed, 1)
	return &wordStream{fill: func(b []byte) {
		for i := 0; i+8 <= len(b); i += 8 {
			binary.NativeEndian.PutUint64(b[i:], pcg.Uint64())
		}
	}}
}

// TestNormalsMatchNormFloat64 checks that addNormals draws exactly
// NormFloat64's deviate from each word (of which both use the low 39
// bits), the rejected ones included (which then take more words): the
// same ziggurat, the same tables.
func TestNormalsMatchNormFloat64(t *testing.T) {
	r := testRand(3)
	words := make([]uint64, 300000)
	for i := range words {
		words[i] = r.Uint64()
	}
	// Words outside their layer's rectangle, in the base strip (layer 0)
	// and in a wedge.
	words = append(words, 0x00000000_7fffffff, 0x00000000_80000001, 0x00000005_7fffffff, 0x0000007f_80000000)
	var tails int
	for k, u := range words {
		// An accepted word takes nothing more: no stream.
		var more *wordStream
		if abs32(int32(u)) >= zigK[u>>32&0x7F] {
			tails++
			more = pcgStream(uint64(k))
		}
		got := []float64{0}
		addNormals(got, 1, []uint32{uint32(u)}, []byte{byte(u >> 32)}, more)
		want := rand.New(&wordsThen{[]uint64{u}, rand.NewPCG(uint64(k), 1)}).NormFloat64()
		if math.Float64bits(got[0]) != math.Float64bits(want) {
			t.Fatalf("addNormals(word %#x) = %v, want NormFloat64's %v", u, got[0], want)
		}
	}
	if tails < 1000 {
		t.Errorf("only %d words outside their rectangle: the test misses the slow path", tails)
	}
	// A block: each element its own word (the third rejected, taking
	// more's words), scaled by std and added.
	dst := []float64{1, -1, 0.5, 3}
	block := []uint64{5, 1<<40 | 12345, 0x7fffffff, 0x3f<<32 | 0xfff00000}
	vals, layers := make([]uint32, len(block)), make([]byte, len(block))
	for k, u := range block {
		vals[k], layers[k] = uint32(u), byte(u>>32)
	}
	addNormals(dst, 2.5, vals, layers, pcgStream(9))
	for k, w := range []float64{1, -1, 0.5, 3} {
		want := w + 2.5*rand.New(&wordsThen{block[k : k+1], rand.NewPCG(9, 1)}).NormFloat64()
		if dst[k] != want {
			t.Errorf("addNormals block element %d = %v, want %v", k, dst[k], want)
		}
	}
}

func TestNewSecureRand(t *testing.T) {
	a, b := NewSecureRand(), NewSecureRand()
	if a.Uint64() == b.Uint64() {
		t.Errorf("two secure generators agree on their first output")
	}
}

func mustPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", name)
		}
	}()
	f()
}

func TestSampleSkellamMoments(t *testing.T) {
	const n = 200000
	for _, v := range []float64{0, 0.3, 5, 19.9, 20, 57, 1000, 1e6, 3e10} {
		dst := make([]int64, n)
		SampleSkellam(dst, v, testRand(uint64(v*10)+1))
		x := make([]float64, n)
		for i, k := range dst {
			x[i] = float64(k)
		}
		mean, got := meanVar(x)
		if v == 0 {
			if got != 0 || mean != 0 {
				t.Errorf("variance 0: got mean %g variance %g", mean, got)
			}
			continue
		}
		// Mean within 5 standard errors; the variance's relative standard
		// error is about sqrt(2/n) = 0.3% (plus a little kurtosis).
		if math.Abs(mean) > 5*math.Sqrt(v/n) || math.Abs(got/v-1) > 0.02 {
			t.Errorf("SampleSkellam(%g): mean %g, variance %g", v, mean, got)
		}
	}
}

// TestPoissonDistribution checks the sampler against the Poisson pmf with a
// chi-square statistic over bins of expected count >= 20, on both sides of
// the inversion/PTRS switch.
func TestPoissonDistribution(t *testing.T) {
	const n = 200000
	for _, lam := range []float64{0.5, 3, 9.99, 10, 15, 60, 500, 12345.6} {
		p := newPoisson(lam)
		r := testRand(uint64(lam * 100))
		counts := map[int64]int{}
		for range n {
			counts[p.sample(r)]++
		}
		// Bins: walk k upward from 0, merging until the expected count
		// reaches 20.
		var chi2 float64
		var bins int
		var obs, exp float64
		logLam := math.Log(lam)
		var cum float64
		for k := int64(0); cum < 1-1e-12 || obs > 0; k++ {
			pk := math.Exp(-lam + float64(k)*logLam - lgamma(float64(k)+1))
			cum += pk
			obs += float64(counts[k])
			exp += n * pk
			delete(counts, k)
			if exp >= 20 && (1-cum)*n >= 20 {
				chi2 += (obs - exp) * (obs - exp) / exp
				bins++
				obs, exp = 0, 0
			}
			if k > int64(lam)*3+100 {
				break
			}
		}
		exp = math.Max(exp, 1e-9)
		chi2 += (obs - exp) * (obs - exp) / exp
		bins++
		if len(counts) != 0 {
			t.Errorf("λ=%g: samples outside the scanned range: %v", lam, counts)
		}
		dof := float64(bins - 1)
		// chi2/dof has sd sqrt(2/dof); 1 + 5 sd is a loose but meaningful gate.
		if chi2/dof > 1+5*math.Sqrt(2/dof) {
			t.Errorf("λ=%g: chi2/dof = %.3f over %d bins", lam, chi2/dof, bins)
		}
	}
}

// TestSkellamHugeVariance checks the variance of Skellam noise at the
// scale of distributed DP (Poisson means near 2^53), where the log pmf in
// PTRS must not be computed as a difference of 1e17-sized terms.
func TestSkellamHugeVariance(t *testing.T) {
	const n = 20000
	for _, v := range []float64{1.6e16, 4e18} {
		x := make([]int64, n)
		SampleSkellam(x, v, testRand(11))
		var mean, ss float64
		for _, y := range x {
			mean += float64(y)
		}
		mean /= n
		for _, y := range x {
			ss += (float64(y) - mean) * (float64(y) - mean)
		}
		got := ss / (n - 1)
		// The sample variance has relative sd sqrt(2/n) = 1%.
		if math.Abs(got/v-1) > 0.05 || math.Abs(mean) > 5*math.Sqrt(v/n) {
			t.Errorf("SampleSkellam(%g): mean %g, variance %g", v, mean, got)
		}
	}
}

func TestAddSkellamMod(t *testing.T) {
	const n, v = 4096, 1e4
	want := make([]int64, n)
	SampleSkellam(want, v, testRand(7))
	for _, bits := range []uint{8, 16, 32, 64} {
		got := make([]uint64, n)
		for i := range got {
			got[i] = uint64(i) // existing masked input
		}
		AddSkellamMod(got, bits, v, testRand(7))
		mask := ^uint64(0) >> (64 - bits)
		for i := range got {
			if w := (uint64(i) + uint64(want[i])) & mask; got[i] != w {
				t.Fatalf("bits %d: element %d = %d, want %d", bits, i, got[i], w)
			}
		}
	}
	mustPanic(t, "bits 0", func() { AddSkellamMod(make([]uint64, 1), 0, 1, testRand(1)) })
	mustPanic(t, "bits 65", func() { AddSkellamMod(make([]uint64, 1), 65, 1, testRand(1)) })
	mustPanic(t, "negative variance", func() { SampleSkellam(make([]int64, 1), -1, testRand(1)) })
}

func TestPlanSkellam(t *testing.T) {
	cfg := SkellamConfig{Scale: 400, Clip: 0.5, Dim: 10000, NoiseMultiplier: 1.1, Clients: 50}
	p, err := PlanSkellam(cfg)
	if err != nil {
		t.Fatal(err)
	}
	std := 1.1 * 0.5 * 400
	if math.Abs(p.Variance-std*std) > 1e-9 || math.Abs(50*p.ClientVariance-p.Variance) > 1e-9 {
		t.Errorf("variance %g, client %g, want %g and a 50th of it", p.Variance, p.ClientVariance, std*std)
	}
	if want := 200 + 100.0; p.L2 != want {
		t.Errorf("L2 = %g, want γc + √d = %g", p.L2, want)
	}
	if want := math.Ceil(300 * 100); p.L1 != want {
		t.Errorf("L1 = %g, want %g", p.L1, want)
	}
	if want := 50 / (4 * 400.0 * 400); math.Abs(p.RoundingVariance-want) > 1e-15 {
		t.Errorf("RoundingVariance = %g, want %g", p.RoundingVariance, want)
	}
	cfg.Beta = math.Exp(-0.5)
	pb, err := PlanSkellam(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := math.Sqrt(200*200 + 10000.0/4 + 1*(200+50))
	if math.Abs(pb.L2-want) > 1e-9 || pb.L2 >= p.L2 {
		t.Errorf("conditional rounding L2 = %g, want %g (< %g)", pb.L2, want, p.L2)
	}
	if s := p.Survivors(25); s.Variance != p.Variance/2 || s.ClientVariance != p.ClientVariance {
		t.Errorf("Survivors(25) = %+v", s)
	}

	// End to end: n clients each add their share; the sum, scaled back,
	// has float-domain std z·c.
	r := testRand(3)
	sum := make([]int64, 20000)
	share := make([]int64, len(sum))
	for range cfg.Clients {
		SampleSkellam(share, p.ClientVariance, r)
		for i, v := range share {
			sum[i] += v
		}
	}
	x := make([]float64, len(sum))
	for i, v := range sum {
		x[i] = float64(v) / cfg.Scale
	}
	if _, v := meanVar(x); math.Abs(math.Sqrt(v)-1.1*0.5) > 0.01 {
		t.Errorf("summed noise sd %g, want %g", math.Sqrt(v), 1.1*0.5)
	}

	for _, tt := range []struct {
		cfg SkellamConfig
		arg string
	}{
		{SkellamConfig{Clip: 1, Dim: 1, Clients: 1}, "SkellamConfig.Scale"},
		{SkellamConfig{Scale: 1, Dim: 1, Clients: 1}, "SkellamConfig.Clip"},
		{SkellamConfig{Scale: 1, Clip: 1, Clients: 1}, "SkellamConfig.Dim"},
		{SkellamConfig{Scale: 1, Clip: 1, Dim: 1}, "SkellamConfig.Clients"},
		{SkellamConfig{Scale: 1, Clip: 1, Dim: 1, Clients: 1, NoiseMultiplier: -1}, "SkellamConfig.NoiseMultiplier"},
		{SkellamConfig{Scale: 1, Clip: 1, Dim: 1, Clients: 1, Beta: 1}, "SkellamConfig.Beta"},
	} {
		var ae *ArgError
		if _, err := PlanSkellam(tt.cfg); !errors.As(err, &ae) || ae.Arg != tt.arg {
			t.Errorf("PlanSkellam(%+v) error = %v, want one naming %s", tt.cfg, err, tt.arg)
		}
	}
}
