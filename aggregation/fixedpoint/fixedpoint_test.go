package fixedpoint

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/floats/scalar"
)

func newEncoder(t testing.TB, p Params) *Encoder {
	t.Helper()
	e, err := NewEncoder(p)
	if err != nil {
		t.Fatalf("NewEncoder(%+v) = %v", p, err)
	}
	return e
}

// lift reads v modulo 2^bits as a signed integer, independently of Decode.
func lift(v uint64, bits uint) int64 {
	v &= uint64(math.MaxUint64) >> (64 - bits)
	if bits < 64 && v >= 1<<(bits-1) {
		return int64(v) - int64(1)<<bits
	}
	return int64(v)
}

// vecWithNorm returns a random vector of length dim and L2 norm norm. If neg,
// every coordinate is negative.
func vecWithNorm(r *rand.Rand, dim int, norm float64, neg bool) []float64 {
	x := randVec(r, dim)
	if neg {
		for i := range x {
			x[i] = -math.Abs(x[i]) - 0.01
		}
	}
	floats.Scale(norm/floats.Norm(x, 2), x)
	return x
}

func TestParamsValidate(t *testing.T) {
	ok := Params{Dim: 10, Clip: 1, MaxClients: 2}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v, want nil", ok, err)
	}
	tests := []struct {
		field string
		edit  func(*Params)
	}{
		{"Dim", func(p *Params) { p.Dim = 0 }},
		{"Dim", func(p *Params) { p.Dim = -3 }},
		{"Dim", func(p *Params) { p.Dim = MaxDim + 1 }},
		{"Clip", func(p *Params) { p.Clip = 0 }},
		{"Clip", func(p *Params) { p.Clip = -1 }},
		{"Clip", func(p *Params) { p.Clip = math.NaN() }},
		{"Clip", func(p *Params) { p.Clip = math.Inf(1) }},
		{"Scale", func(p *Params) { p.Scale = -1 }},
		{"Scale", func(p *Params) { p.Scale = math.NaN() }},
		{"Scale", func(p *Params) { p.Scale = math.Inf(1) }},
		{"Bits", func(p *Params) { p.Bits = 65 }},
		{"MaxClients", func(p *Params) { p.MaxClients = 0 }},
		{"NoiseStd", func(p *Params) { p.NoiseStd = -0.5 }},
		{"NoiseStd", func(p *Params) { p.NoiseStd = math.NaN() }},
		{"WrapProb", func(p *Params) { p.WrapProb = 1 }},
		{"WrapProb", func(p *Params) { p.WrapProb = -1e-9 }},
		{"WrapProb", func(p *Params) { p.WrapProb = math.NaN() }},
		{"RoundingBeta", func(p *Params) { p.RoundingBeta = 1 }},
		{"RoundingBeta", func(p *Params) { p.RoundingBeta = math.NaN() }},
	}
	for _, tt := range tests {
		p := ok
		tt.edit(&p)
		err := p.Validate()
		if !errors.Is(err, ErrParams) || !strings.Contains(err.Error(), tt.field+" = ") {
			t.Errorf("Validate(%+v) = %v, want ErrParams naming %s", p, err, tt.field)
		}
		if _, err := NewEncoder(p); !errors.Is(err, ErrParams) {
			t.Errorf("NewEncoder(%+v) = %v, want ErrParams", p, err)
		}
	}
}

// TestNewEncoderChoice checks how Bits and Scale are filled in: the bound
// fits, and no bit or no part of γ is wasted.
func TestNewEncoderChoice(t *testing.T) {
	tests := []struct {
		name      string
		p         Params
		wantBits  uint
		wantScale float64 // 0: derived, checked for maximality
	}{
		{"defaults", Params{Dim: 1000, Clip: 1, MaxClients: 100}, DefaultBits, 0},
		{"bits16", Params{Dim: 1000, Clip: 2, MaxClients: 10, Bits: 16}, 16, 0},
		{"bits64 noise", Params{Dim: 7, Clip: 0.5, MaxClients: 1000, Bits: 64, NoiseStd: 3}, 64, 0},
		{"bits2", Params{Dim: 7, Clip: 0.5, MaxClients: 1, Bits: 2}, 2, 0},
		{"scale chooses bits", Params{Dim: 1000, Clip: 1, MaxClients: 100, Scale: 1000}, 0, 1000},
		{"scale and noise", Params{Dim: 1000, Clip: 1, MaxClients: 100, Scale: 1e6, NoiseStd: 0.1}, 0, 1e6},
		{"scale and bits", Params{Dim: 1000, Clip: 1, MaxClients: 100, Scale: 1000, Bits: 40}, 40, 1000},
		{"wrapprob", Params{Dim: 1 << 17, Clip: 1, MaxClients: 100, Bits: 32, WrapProb: 1e-9}, 32, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEncoder(t, tt.p)
			got := e.Params()
			lim := math.Ldexp(1, int(got.Bits)-1)
			if !(e.sumBound < lim) {
				t.Errorf("sum bound %g >= 2^%d: the sum can wrap", e.sumBound, got.Bits-1)
			}
			if tt.wantBits != 0 && got.Bits != tt.wantBits {
				t.Errorf("Bits = %d, want %d", got.Bits, tt.wantBits)
			}
			if tt.wantBits == 0 && !(e.sumBound >= lim/2) {
				t.Errorf("Bits = %d for sum bound %g: one bit wasted", got.Bits, e.sumBound)
			}
			if tt.wantScale != 0 && got.Scale != tt.wantScale {
				t.Errorf("Scale = %g, want %g", got.Scale, tt.wantScale)
			}
			if tt.wantScale == 0 && !(e.sumBound >= lim*(1-1e-8)) {
				t.Errorf("Scale = %g gives sum bound %g, want about 2^%d: γ not maximal", got.Scale, e.sumBound, got.Bits-1)
			}
		})
	}
}

func TestNewEncoderWrapProbSavesBits(t *testing.T) {
	base := Params{Dim: 118592, Clip: 1, MaxClients: 1000, Scale: 1e5, NoiseStd: 0.01}
	worst := newEncoder(t, base)
	base.WrapProb = 1e-9
	prob := newEncoder(t, base)
	// s = sqrt(2 ln(4·131072/1e-9))/362 ≈ 1/44: about 5 bits fewer.
	if wb, pb := worst.Params().Bits, prob.Params().Bits; pb+4 > wb {
		t.Errorf("Bits with WrapProb = %d, worst case = %d, want at least 4 fewer", pb, wb)
	}
}

func TestNewEncoderErrors(t *testing.T) {
	tests := []struct {
		name  string
		p     Params
		field string
	}{
		{"slack exceeds bits", Params{Dim: 10, Clip: 1, MaxClients: 100, Bits: 4}, "Bits"},
		{"scale too large for bits", Params{Dim: 10, Clip: 1, MaxClients: 100, Scale: 1e6, Bits: 16}, "Bits"},
		{"scale beyond 64 bits", Params{Dim: 10, Clip: 1, MaxClients: 1 << 20, Scale: 1e14}, "Scale"},
		{"scale overflows int64", Params{Dim: 10, Clip: 1, MaxClients: 1, Scale: 1e19, WrapProb: 0.5}, "Scale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewEncoder(tt.p)
			if !errors.Is(err, ErrParams) || !strings.Contains(err.Error(), tt.field+" = ") {
				t.Errorf("NewEncoder(%+v) = %v, want ErrParams naming %s", tt.p, err, tt.field)
			}
		})
	}
}

// TestRoundTrip encodes n clients, wraps, sums modulo 2^Bits, decodes, and
// compares with the float sum of the clipped inputs.
//
// Tolerance: every rounded coordinate is within 1 of its real value, so the
// integer-domain error of n clients has L2 norm below n·sqrt(PaddedDim); the
// inverse rotation keeps norms and Decode divides by γ, so
//
//	||Decode(sum) - Σ clip(x_i)||₂ <= n·sqrt(PaddedDim)/γ + 1e-11·n·c
//
// where the second term allows for floating-point error in the transforms.
func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		n    int  // clients summed, <= MaxClients
		neg  bool // all inputs negative
	}{
		{"dim1", Params{Dim: 1, Clip: 1, MaxClients: 3}, 3, false},
		{"dim2 negative", Params{Dim: 2, Clip: 1, MaxClients: 2}, 2, true},
		{"pow2", Params{Dim: 1024, Clip: 2, MaxClients: 5}, 5, false},
		{"pow2 negative", Params{Dim: 1024, Clip: 2, MaxClients: 5}, 5, true},
		{"odd dim bits16", Params{Dim: 1000, Clip: 0.5, MaxClients: 7, Bits: 16}, 7, false},
		{"bits8", Params{Dim: 33, Clip: 1, MaxClients: 2, Bits: 8}, 2, false},
		{"bits8 negative", Params{Dim: 33, Clip: 1, MaxClients: 2, Bits: 8}, 2, true},
		{"bits64", Params{Dim: 513, Clip: 3, MaxClients: 4, Bits: 64}, 4, false},
		{"bits64 negative", Params{Dim: 513, Clip: 3, MaxClients: 4, Bits: 64}, 4, true},
		{"fewer clients than max", Params{Dim: 300, Clip: 1, MaxClients: 100, Bits: 24}, 6, false},
		{"explicit scale", Params{Dim: 200, Clip: 1, MaxClients: 4, Scale: 1000}, 4, false},
		{"explicit scale and bits", Params{Dim: 200, Clip: 1, MaxClients: 4, Scale: 1000, Bits: 20}, 4, true},
		{"noise headroom", Params{Dim: 200, Clip: 1, MaxClients: 4, Bits: 20, NoiseStd: 0.1}, 4, false},
		{"wrapprob", Params{Dim: 4096, Clip: 1, MaxClients: 10, Bits: 20, WrapProb: 1e-6}, 10, false},
		{"conditional rounding", Params{Dim: 1000, Clip: 1, MaxClients: 5, Bits: 16, RoundingBeta: math.Exp(-0.5)}, 5, false},
		{"3706x32", Params{Dim: 3706 * 32, Clip: 1, MaxClients: 3}, 3, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.Seed = [32]byte{byte(i), 42}
			e := newEncoder(t, tt.p)
			p := e.Params()
			r := rand.New(rand.NewPCG(uint64(i), 7))
			want := make([]float64, p.Dim)
			sum := make([]uint64, e.PaddedDim())
			ints := make([]int64, e.PaddedDim())
			wrapped := make([]uint64, e.PaddedDim())
			norms := []float64{0.3, 1, 3} // relative to Clip: under, at, over
			for c := range tt.n {
				norm := norms[c%len(norms)] * p.Clip
				x := vecWithNorm(r, p.Dim, norm, tt.neg)
				orig := append([]float64(nil), x...)
				gotNorm, err := e.Encode(ints, x, r)
				if err != nil {
					t.Fatalf("Encode(client %d) = %v", c, err)
				}
				if math.Abs(gotNorm-norm) > 1e-12*norm {
					t.Errorf("Encode(client %d) norm = %v, want %v", c, gotNorm, norm)
				}
				if !floats.Equal(x, orig) {
					t.Fatalf("Encode modified its input")
				}
				if err := e.Wrap(wrapped, ints); err != nil {
					t.Fatal(err)
				}
				if err := AddMod(sum, wrapped, p.Bits); err != nil {
					t.Fatal(err)
				}
				Clip(x, p.Clip)
				floats.Add(want, x)
			}
			got := make([]float64, p.Dim)
			if err := e.Decode(got, sum); err != nil {
				t.Fatalf("Decode = %v", err)
			}
			n := float64(tt.n)
			tol := n*math.Sqrt(float64(e.PaddedDim()))/p.Scale + 1e-11*n*p.Clip
			if d := floats.Distance(got, want, 2); !(d <= tol) {
				t.Errorf("||Decode(sum) - Σ clip(x)|| = %g, want <= %g (γ = %g, Bits = %d)", d, tol, p.Scale, p.Bits)
			}
		})
	}
}

// TestRoundingErrorVariance checks the typical error, not just the bound: per
// padded coordinate, n clients' rounding errors have variance at most n/4
// integer steps², and the orthonormal inverse rotation keeps the total.
func TestRoundingErrorVariance(t *testing.T) {
	const dim, n = 4096, 10
	e := newEncoder(t, Params{Dim: dim, Clip: 1, MaxClients: n, Scale: 100})
	r := rand.New(rand.NewPCG(11, 12))
	want := make([]float64, dim)
	sum := make([]uint64, dim)
	ints := make([]int64, dim)
	w := make([]uint64, dim)
	for range n {
		x := vecWithNorm(r, dim, 1, false)
		if _, err := e.Encode(ints, x, r); err != nil {
			t.Fatal(err)
		}
		if err := e.Wrap(w, ints); err != nil {
			t.Fatal(err)
		}
		if err := AddMod(sum, w, e.Params().Bits); err != nil {
			t.Fatal(err)
		}
		floats.Add(want, x)
	}
	got := make([]float64, dim)
	if err := e.Decode(got, sum); err != nil {
		t.Fatal(err)
	}
	d := floats.Distance(got, want, 2) * 100 // in integer steps
	perCoord := d * d / (n * dim)
	// Fractional parts are near uniform, so E f(1-f) = 1/6; the sample mean of
	// 4096 coordinates is within a few percent of it.
	if perCoord > 0.25*1.05 || perCoord < 0.1 {
		t.Errorf("rounding error variance per client and coordinate = %v steps², want about 1/6, at most 1/4", perCoord)
	}
}

func TestRoundUnbiased(t *testing.T) {
	const trials = 100_000
	r := rand.New(rand.NewPCG(5, 6))
	y := make([]float64, trials)
	dst := make([]int64, trials)
	for _, v := range []float64{0, 0.3, -0.3, 2.75, -1.5, 1e-3, -7.999, 12345.5} {
		for i := range y {
			y[i] = v
		}
		round(dst, y, r)
		var s float64
		for _, k := range dst {
			if f := math.Floor(v); float64(k) != f && float64(k) != f+1 {
				t.Fatalf("round(%v) = %d, want %v or %v", v, k, f, f+1)
			}
			s += float64(k)
		}
		frac := v - math.Floor(v)
		tol := 5*math.Sqrt(frac*(1-frac)/trials) + 1e-12
		if mean := s / trials; math.Abs(mean-v) > tol {
			t.Errorf("mean of round(%v) over %d trials = %v, want within %v", v, trials, mean, tol)
		}
	}
}

// TestEncodeUnbiased checks that the mean decoded vector over many roundings
// converges to the clipped input, with γ small enough that the rounding
// error is large. Each decoded coordinate has standard deviation at most
// 1/(2γ), so the mean of T trials is within 5/(2γ·sqrt(T)).
func TestEncodeUnbiased(t *testing.T) {
	const trials, dim = 20_000, 6
	for _, norm := range []float64{5, 20} { // under and over Clip
		e := newEncoder(t, Params{Dim: dim, Clip: 10, MaxClients: 1, Scale: 2, Seed: [32]byte{9}})
		r := rand.New(rand.NewPCG(uint64(norm), 8))
		x := vecWithNorm(r, dim, norm, false)
		want := append([]float64(nil), x...)
		Clip(want, 10)
		ints := make([]int64, e.PaddedDim())
		w := make([]uint64, e.PaddedDim())
		got := make([]float64, dim)
		mean := make([]float64, dim)
		for range trials {
			if _, err := e.Encode(ints, x, r); err != nil {
				t.Fatal(err)
			}
			if err := e.Wrap(w, ints); err != nil {
				t.Fatal(err)
			}
			if err := e.Decode(got, w); err != nil {
				t.Fatal(err)
			}
			floats.Add(mean, got)
		}
		floats.Scale(1.0/trials, mean)
		tol := 5 / (2 * 2 * math.Sqrt(trials))
		if d := maxAbsDiff(mean, want); d > tol {
			t.Errorf("norm %v: max |mean decode - clip(x)| = %v, want <= %v", norm, d, tol)
		}
	}
}

func TestConditionalRounding(t *testing.T) {
	p := Params{Dim: 1000, Clip: 1, MaxClients: 1, Bits: 16, RoundingBeta: math.Exp(-0.5)}
	e := newEncoder(t, p)
	g := e.Params().Scale
	if nb, plain := e.NormBound(), g+math.Sqrt(1024); !(nb < plain) || !(nb > g) {
		t.Errorf("NormBound() = %v, want in (c·γ, c·γ + sqrt(d)) = (%v, %v)", nb, g, plain)
	}
	r := rand.New(rand.NewPCG(1, 1))
	ints := make([]int64, e.PaddedDim())
	for range 50 {
		x := vecWithNorm(r, p.Dim, 2, false)
		if _, err := e.Encode(ints, x, r); err != nil {
			t.Fatal(err)
		}
		var ss float64
		for _, v := range ints {
			ss += float64(v) * float64(v)
		}
		if math.Sqrt(ss) > e.NormBound() {
			t.Fatalf("||Encode(x)|| = %v, want <= NormBound() = %v", math.Sqrt(ss), e.NormBound())
		}
	}

	// A bound no rounding can meet makes Encode give up with ErrRounding.
	bad := newEncoder(t, Params{Dim: 4, Clip: 1, MaxClients: 1, Scale: 100, RoundingBeta: 0.5})
	bad.condSq = 0.5
	if _, err := bad.Encode(make([]int64, 4), []float64{1, 0, 0, 0}, r); !errors.Is(err, ErrRounding) {
		t.Errorf("Encode with an unreachable bound = %v, want ErrRounding", err)
	}
}

func TestNormBoundUnconditional(t *testing.T) {
	e := newEncoder(t, Params{Dim: 100, Clip: 1, MaxClients: 1, Scale: 10})
	if got, want := e.NormBound(), 10+math.Sqrt(128); got != want {
		t.Errorf("NormBound() = %v, want c·γ + sqrt(PaddedDim) = %v", got, want)
	}
}

// worstDirection returns the vector of norm c within the first Dim
// coordinates whose rotation has the largest possible coordinate j: the
// normalised truncation of R⁻¹·e_j.
func worstDirection(e *Encoder, j int) []float64 {
	ej := make([]float64, e.dpad)
	ej[j] = 1
	v := unrotate(e, ej)[:e.p.Dim]
	floats.Scale(e.p.Clip/floats.Norm(v, 2), v)
	return v
}

// TestNoWrapWorstCase sends MaxClients copies of the worst-case vector (all
// at the clip norm, in the direction that puts the most weight on one
// rotated coordinate) plus noise at the full headroom on that coordinate, and
// checks that the modular sum lifts back to the exact integer sum.
func TestNoWrapWorstCase(t *testing.T) {
	tests := []struct {
		name string
		p    Params
	}{
		{"bits8", Params{Dim: 64, Clip: 1, MaxClients: 4, Bits: 8}},
		{"bits8 odd dim", Params{Dim: 50, Clip: 1, MaxClients: 4, Bits: 8}},
		{"bits16 noise", Params{Dim: 128, Clip: 2, MaxClients: 10, Bits: 16, NoiseStd: 0.01}},
		{"bits32 1000 clients", Params{Dim: 256, Clip: 1, MaxClients: 1000, Bits: 32, NoiseStd: 0.05}},
		{"bits64 noise", Params{Dim: 64, Clip: 3, MaxClients: 50, Bits: 64, NoiseStd: 1}},
		{"scale chooses bits", Params{Dim: 1024, Clip: 1, MaxClients: 20, Scale: 5000, NoiseStd: 0.001}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.Seed = [32]byte{byte(i), 1}
			e := newEncoder(t, tt.p)
			p := e.Params()
			j := 5
			x := worstDirection(e, j)
			noise := int64(math.Floor(NoiseSigmas * p.NoiseStd * p.Scale))
			for _, sign := range []float64{1, -1} {
				xs := append([]float64(nil), x...)
				floats.Scale(sign, xs)
				r := rand.New(rand.NewPCG(uint64(i), 3))
				intSum := make([]int64, e.PaddedDim())
				modSum := make([]uint64, e.PaddedDim())
				ints := make([]int64, e.PaddedDim())
				w := make([]uint64, e.PaddedDim())
				for c := range p.MaxClients {
					if _, err := e.Encode(ints, xs, r); err != nil {
						t.Fatal(err)
					}
					if c == 0 {
						ints[j] += int64(sign) * noise // the noise hook
					}
					for k, v := range ints {
						intSum[k] += v // cannot overflow: |sum| < 2^63
					}
					if err := e.Wrap(w, ints); err != nil {
						t.Fatal(err)
					}
					if err := AddMod(modSum, w, p.Bits); err != nil {
						t.Fatal(err)
					}
				}
				for k := range intSum {
					if got := lift(modSum[k], p.Bits); got != intSum[k] {
						t.Fatalf("sign %v: coordinate %d wrapped: lift = %d, integer sum = %d (Bits %d)", sign, k, got, intSum[k], p.Bits)
					}
				}
				peak := math.Abs(float64(intSum[j]))
				if e.dpad == p.Dim && !(peak >= math.Ldexp(1, int(p.Bits)-2)) {
					t.Errorf("sign %v: worst-case peak %g uses less than half of ±2^%d: a bit is wasted", sign, peak, p.Bits-1)
				}
				got := make([]float64, p.Dim)
				if err := e.Decode(got, modSum); err != nil {
					t.Fatal(err)
				}
				want := make([]float64, p.Dim)
				floats.AddScaled(want, float64(p.MaxClients), xs)
				n := float64(p.MaxClients)
				tol := (n*math.Sqrt(float64(e.dpad))+float64(noise))/p.Scale + 1e-11*n*p.Clip
				if d := floats.Distance(got, want, 2); !(d <= tol) {
					t.Errorf("sign %v: ||Decode - n·x|| = %g, want <= %g", sign, d, tol)
				}
			}
		})
	}
}

// TestNoWrapWrapProb sends MaxClients vectors at the clip norm, all in the
// same random direction, with WrapProb set: the sum must not wrap, although
// the worst-case direction would.
func TestNoWrapWrapProb(t *testing.T) {
	p := Params{Dim: 3000, Clip: 1, MaxClients: 64, Bits: 20, NoiseStd: 0.001, WrapProb: 1e-9, Seed: [32]byte{7}}
	e := newEncoder(t, p)
	p = e.Params()
	lim := math.Ldexp(1, int(p.Bits)-1)
	if worst := float64(p.MaxClients) * p.Clip * p.Scale; worst < 4*lim {
		t.Errorf("n·c·γ = %g, want well above 2^%d: WrapProb should buy a larger γ", worst, p.Bits-1)
	}
	r := rand.New(rand.NewPCG(2, 2))
	x := vecWithNorm(r, p.Dim, p.Clip, false)
	ints := make([]int64, e.PaddedDim())
	intSum := make([]int64, e.PaddedDim())
	for range p.MaxClients {
		if _, err := e.Encode(ints, x, r); err != nil {
			t.Fatal(err)
		}
		for k, v := range ints {
			intSum[k] += v
		}
	}
	var peak float64
	for _, v := range intSum {
		peak = math.Max(peak, math.Abs(float64(v)))
	}
	if room := lim - NoiseSigmas*p.NoiseStd*p.Scale; peak >= room {
		t.Errorf("peak |sum| = %g, want < %g (2^%d less noise headroom)", peak, room, p.Bits-1)
	}
}

// TestNoiseHook checks that integer noise added before Wrap comes out of
// Decode divided by γ with its norm unchanged (the rotation is orthonormal),
// including negative values wrapped modulo 2^Bits.
func TestNoiseHook(t *testing.T) {
	for _, dim := range []int{256, 200} {
		e := newEncoder(t, Params{Dim: dim, Clip: 1, MaxClients: 1, Bits: 24, NoiseStd: 1})
		r := rand.New(rand.NewPCG(4, 4))
		z := make([]int64, e.PaddedDim())
		var zz float64
		for i := range z {
			z[i] = r.Int64N(2001) - 1000
			zz += float64(z[i] * z[i])
		}
		w := make([]uint64, e.PaddedDim())
		if err := e.Wrap(w, z); err != nil {
			t.Fatal(err)
		}
		got := make([]float64, dim)
		if err := e.Decode(got, w); err != nil {
			t.Fatal(err)
		}
		want := math.Sqrt(zz) / e.Params().Scale
		n := floats.Norm(got, 2)
		if dim == e.PaddedDim() && math.Abs(n-want) > 1e-12*want {
			t.Errorf("dim %d: ||Decode(Wrap(z))|| = %v, want ||z||/γ = %v", dim, n, want)
		}
		if n > want*(1+1e-12) {
			t.Errorf("dim %d: ||Decode(Wrap(z))|| = %v, want <= ||z||/γ = %v", dim, n, want)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	e := newEncoder(t, Params{Dim: 5, Clip: 1, MaxClients: 1})
	r := rand.New(rand.NewPCG(1, 1))
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name string
		dst  []int64
		x    []float64
		want error
	}{
		{"NaN first", make([]int64, 8), []float64{nan, 1, 2, 3, 4}, ErrNonFinite},
		{"NaN last", make([]int64, 8), []float64{0, 1, 2, 3, nan}, ErrNonFinite},
		{"+Inf", make([]int64, 8), []float64{0, inf, 2, 3, 4}, ErrNonFinite},
		{"-Inf", make([]int64, 8), []float64{0, 1, -inf, 3, 4}, ErrNonFinite},
		{"Inf and NaN", make([]int64, 8), []float64{inf, nan, -inf, 3, 4}, ErrNonFinite},
		{"short x", make([]int64, 8), []float64{1, 2, 3, 4}, ErrLength},
		{"long x", make([]int64, 8), make([]float64, 6), ErrLength},
		{"nil x", make([]int64, 8), nil, ErrLength},
		{"short dst", make([]int64, 5), make([]float64, 5), ErrLength},
		{"nil dst", nil, make([]float64, 5), ErrLength},
		{"huge finite", make([]int64, 8), []float64{1e308, -1e308, 1e308, 0, 0}, nil},
		{"tiny", make([]int64, 8), []float64{1e-300, 0, 0, 0, -1e-310}, nil},
		{"zero", make([]int64, 8), make([]float64, 5), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			norm, err := e.Encode(tt.dst, tt.x, r)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Encode(%v) = %v, want %v", tt.x, err, tt.want)
			}
			if err != nil {
				return
			}
			if want := floats.Norm(tt.x, 2); norm != want && math.Abs(norm-want) > 1e-15*want {
				t.Errorf("Encode(%v) norm = %v, want %v", tt.x, norm, want)
			}
			w := make([]uint64, 8)
			if err := e.Wrap(w, tt.dst); err != nil {
				t.Fatal(err)
			}
			got := make([]float64, 5)
			if err := e.Decode(got, w); err != nil {
				t.Fatal(err)
			}
			want := append([]float64(nil), tt.x...)
			Clip(want, 1)
			if d := floats.Distance(got, want, 2); d > math.Sqrt(8)/e.Params().Scale {
				t.Errorf("Decode(Encode(%v)) = %v, want %v", tt.x, got, want)
			}
		})
	}
}

func TestLengthErrors(t *testing.T) {
	e := newEncoder(t, Params{Dim: 5, Clip: 1, MaxClients: 1})
	if err := e.Decode(make([]float64, 4), make([]uint64, 8)); !errors.Is(err, ErrLength) {
		t.Errorf("Decode(short dst) = %v, want ErrLength", err)
	}
	if err := e.Decode(make([]float64, 5), make([]uint64, 5)); !errors.Is(err, ErrLength) {
		t.Errorf("Decode(unpadded sum) = %v, want ErrLength", err)
	}
	if err := e.Decode(nil, nil); !errors.Is(err, ErrLength) {
		t.Errorf("Decode(nil, nil) = %v, want ErrLength", err)
	}
	if err := e.Wrap(make([]uint64, 8), make([]int64, 5)); !errors.Is(err, ErrLength) {
		t.Errorf("Wrap(short x) = %v, want ErrLength", err)
	}
	if err := e.Wrap(make([]uint64, 7), make([]int64, 8)); !errors.Is(err, ErrLength) {
		t.Errorf("Wrap(short dst) = %v, want ErrLength", err)
	}
	if err := AddMod(make([]uint64, 3), make([]uint64, 4), 32); !errors.Is(err, ErrLength) {
		t.Errorf("AddMod(len 3, len 4) = %v, want ErrLength", err)
	}
	for _, bits := range []uint{0, 65} {
		if err := AddMod(make([]uint64, 3), make([]uint64, 3), bits); err == nil {
			t.Errorf("AddMod(bits %d) = nil, want error", bits)
		}
	}
}

func TestWrapAndAddMod(t *testing.T) {
	tests := []struct {
		bits uint
		x    []int64
		want []uint64
	}{
		{8, []int64{0, 1, -1, 127, -128, 300}, []uint64{0, 1, 255, 127, 128, 44}},
		{2, []int64{0, 1, -1, 2, -2, 5}, []uint64{0, 1, 3, 2, 2, 1}},
		{64, []int64{0, -1, math.MinInt64, math.MaxInt64}, []uint64{0, math.MaxUint64, 1 << 63, 1<<63 - 1}},
	}
	for _, tt := range tests {
		dim := len(tt.x)
		e := newEncoder(t, Params{Dim: dim, Clip: 1, MaxClients: 1, Bits: tt.bits, Scale: 0.1})
		x := append(tt.x, make([]int64, e.PaddedDim()-dim)...)
		got := make([]uint64, e.PaddedDim())
		if err := e.Wrap(got, x); err != nil {
			t.Fatal(err)
		}
		for i, w := range tt.want {
			if got[i] != w {
				t.Errorf("Wrap(%d, bits %d) = %d, want %d", x[i], tt.bits, got[i], w)
			}
			if (x[i] >= -1<<(tt.bits-1) && x[i] < 1<<(tt.bits-1)) && lift(got[i], tt.bits) != x[i] {
				t.Errorf("lift(Wrap(%d), bits %d) = %d", x[i], tt.bits, lift(got[i], tt.bits))
			}
		}
	}

	a := []uint64{250, 3, 255, 0x1ff}
	if err := AddMod(a, []uint64{10, 4, 1, 1}, 8); err != nil {
		t.Fatal(err)
	}
	if want := []uint64{4, 7, 0, 0}; a[0] != want[0] || a[1] != want[1] || a[2] != want[2] || a[3] != want[3] {
		t.Errorf("AddMod(bits 8) = %v, want %v", a, want)
	}
	b := []uint64{math.MaxUint64, 1 << 63}
	if err := AddMod(b, []uint64{2, 1 << 63}, 64); err != nil {
		t.Fatal(err)
	}
	if b[0] != 1 || b[1] != 0 {
		t.Errorf("AddMod(bits 64) = %v, want [1 0]", b)
	}
}

func TestClip(t *testing.T) {
	tests := []struct {
		name      string
		x         []float64
		c         float64
		want      []float64
		wantScale float64
	}{
		{"under", []float64{0.3, -0.4}, 1, []float64{0.3, -0.4}, 1},
		{"at", []float64{3, 4}, 5, []float64{3, 4}, 1},
		{"over", []float64{3, -4}, 1, []float64{0.6, -0.8}, 0.2},
		{"zero", []float64{0, 0}, 1, []float64{0, 0}, 1},
		{"empty", nil, 1, nil, 1},
		{"huge", []float64{3e300, 4e300}, 5, []float64{3, 4}, 1e-300},
		{"NaN", []float64{math.NaN(), 1}, 1, []float64{math.NaN(), 1}, math.NaN()},
		{"Inf", []float64{math.Inf(-1), 1}, 1, []float64{math.Inf(-1), 1}, math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := append([]float64(nil), tt.x...)
			s := Clip(x, tt.c)
			if !scalar.EqualWithinAbsOrRel(s, tt.wantScale, 1e-15, 1e-15) && !(math.IsNaN(s) && math.IsNaN(tt.wantScale)) {
				t.Errorf("Clip(%v, %v) = %v, want %v", tt.x, tt.c, s, tt.wantScale)
			}
			if !floats.EqualApprox(x, tt.want, 1e-15) && !sameNaN(x, tt.want) {
				t.Errorf("Clip(%v, %v) left %v, want %v", tt.x, tt.c, x, tt.want)
			}
		})
	}
	defer func() {
		if recover() == nil {
			t.Errorf("Clip(x, 0) did not panic")
		}
	}()
	Clip([]float64{1}, 0)
}

func sameNaN(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !(math.IsNaN(a[i]) && math.IsNaN(b[i])) {
			return false
		}
	}
	return true
}

// TestConcurrentUse checks that one Encoder serves many goroutines: the
// results equal those of sequential calls with the same randomness.
func TestConcurrentUse(t *testing.T) {
	const workers = 8
	e := newEncoder(t, Params{Dim: 5000, Clip: 1, MaxClients: workers})
	r := rand.New(rand.NewPCG(1, 2))
	x := vecWithNorm(r, 5000, 2, false)
	want := make([]int64, e.PaddedDim())
	if _, err := e.Encode(want, x, rand.New(rand.NewPCG(9, 9))); err != nil {
		t.Fatal(err)
	}
	wantDec := make([]float64, 5000)
	w := make([]uint64, e.PaddedDim())
	if err := e.Wrap(w, want); err != nil {
		t.Fatal(err)
	}
	if err := e.Decode(wantDec, w); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for g := range workers {
		wg.Go(func() {
			ints := make([]int64, e.PaddedDim())
			w := make([]uint64, e.PaddedDim())
			dec := make([]float64, 5000)
			for range 5 {
				if _, err := e.Encode(ints, x, rand.New(rand.NewPCG(9, 9))); err != nil {
					errs[g] = err
					return
				}
				for i := range ints {
					if ints[i] != want[i] {
						errs[g] = errors.New("concurrent Encode differs from sequential")
						return
					}
				}
				if err := e.Wrap(w, ints); err != nil {
					errs[g] = err
					return
				}
				if err := e.Decode(dec, w); err != nil {
					errs[g] = err
					return
				}
				if !floats.Equal(dec, wantDec) {
					errs[g] = errors.New("concurrent Decode differs from sequential")
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// FuzzEncode feeds arbitrary float vectors to Encode: it must return an error
// or an encoding that decodes to the clipped input, never panic.
func FuzzEncode(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f}, 1.0)                               // [1]
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0xf8, 0x7f, 0, 0, 0, 0, 0, 0, 0xf0, 0xbf}, 1.0) // [NaN, -1]
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xef, 0x7f, 1, 2, 3}, 0.5)    // [MaxFloat64], trailing bytes
	f.Fuzz(func(t *testing.T, data []byte, c float64) {
		dim := min(len(data)/8, 4096)
		if dim == 0 || !(c > 1e-100 && c < 1e100) {
			return
		}
		x := make([]float64, dim)
		for i := range x {
			var u uint64
			for k := range 8 {
				u |= uint64(data[8*i+k]) << (8 * k)
			}
			x[i] = math.Float64frombits(u)
		}
		e, err := NewEncoder(Params{Dim: dim, Clip: c, MaxClients: 1})
		if err != nil {
			t.Fatal(err)
		}
		ints := make([]int64, e.PaddedDim())
		if _, err := e.Encode(ints, x, rand.New(rand.NewPCG(1, 1))); err != nil {
			if !errors.Is(err, ErrNonFinite) {
				t.Fatalf("Encode = %v, want nil or ErrNonFinite", err)
			}
			return
		}
		w := make([]uint64, e.PaddedDim())
		if err := e.Wrap(w, ints); err != nil {
			t.Fatal(err)
		}
		got := make([]float64, dim)
		if err := e.Decode(got, w); err != nil {
			t.Fatal(err)
		}
		Clip(x, c)
		tol := math.Sqrt(float64(e.PaddedDim()))/e.Params().Scale + 1e-11*c
		if d := floats.Distance(got, x, 2); !(d <= tol) {
			t.Fatalf("||Decode(Encode(x)) - clip(x)|| = %g, want <= %g", d, tol)
		}
	})
}
