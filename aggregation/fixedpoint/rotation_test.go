package fixedpoint

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/floats"
)

// naiveHadamard returns H·x with H[i][j] = (-1)^popcount(i&j).
func naiveHadamard(x []float64) []float64 {
	out := make([]float64, len(x))
	for i := range x {
		for j, v := range x {
			if bits.OnesCount(uint(i&j))%2 == 1 {
				v = -v
			}
			out[i] += v
		}
	}
	return out
}

// textbookFWHT is the plain iterative radix-2 transform.
func textbookFWHT(x []float64) {
	for h := 1; h < len(x); h *= 2 {
		for i := 0; i < len(x); i += 2 * h {
			for j := i; j < i+h; j++ {
				x[j], x[j+h] = x[j]+x[j+h], x[j]-x[j+h]
			}
		}
	}
}

func randVec(r *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	return x
}

func maxAbsDiff(a, b []float64) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

func TestFWHTMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 256; n *= 2 {
		x := randVec(r, n)
		want := naiveHadamard(x)
		got := append([]float64(nil), x...)
		fwht(got)
		if d := maxAbsDiff(got, want); d > 1e-12 {
			t.Errorf("fwht(n=%d) differs from naive by %g, want <= 1e-12", n, d)
		}
	}
}

// TestFWHTBlocked covers the cache-blocked path (n > fwhtBlock), with both an
// even and an odd number of stages above the block.
// fwht computes every stage's sums as the textbook loop does, whatever
// stages it runs together, so their results agree to the bit: encodings
// must not change with the kernel.
func TestFWHTExact(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for n := 1; n <= 1<<19; n *= 2 {
		x := randVec(r, n)
		want := append([]float64(nil), x...)
		textbookFWHT(want)
		fwht(x)
		for i := range x {
			if math.Float64bits(x[i]) != math.Float64bits(want[i]) {
				t.Errorf("fwht(n=%d)[%d] = %v, textbook %v", n, i, x[i], want[i])
				break
			}
		}
	}
}

func TestFWHTBlocked(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{fwhtBlock, 2 * fwhtBlock, 4 * fwhtBlock, 8 * fwhtBlock, 32 * fwhtBlock} {
		x := randVec(r, n)
		want := append([]float64(nil), x...)
		textbookFWHT(want)
		fwht(x)
		if d := maxAbsDiff(x, want); d > 1e-9 {
			t.Errorf("fwht(n=%d) differs from textbook by %g, want <= 1e-9", n, d)
		}
	}
}

// rotate and unrotate apply R = H·D/sqrt(d) and its inverse without scaling.
func rotate(e *Encoder, x []float64) []float64 {
	y := make([]float64, e.dpad)
	signScale(y, x, 1/math.Sqrt(float64(e.dpad)), e.signs, 0)
	fwht(y)
	return y
}

func unrotate(e *Encoder, y []float64) []float64 {
	z := append([]float64(nil), y...)
	fwht(z)
	x := make([]float64, e.dpad)
	signScale(x, z, 1/math.Sqrt(float64(e.dpad)), e.signs, 0)
	return x
}

func TestRotationOrthonormal(t *testing.T) {
	for _, dim := range []int{1, 2, 3, 100, 1024, 3706, 1 << 17} {
		e, err := NewEncoder(Params{Dim: dim, Clip: 1, MaxClients: 1, Seed: [32]byte{byte(dim)}})
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(uint64(dim), 5))
		x := randVec(r, dim)
		y := rotate(e, x)
		nx, ny := floats.Norm(x, 2), floats.Norm(y, 2)
		if math.Abs(nx-ny) > 1e-12*nx {
			t.Errorf("dim %d: ||Rx|| = %v, want ||x|| = %v", dim, ny, nx)
		}
		back := unrotate(e, y)
		if d := maxAbsDiff(back[:dim], x); d > 1e-12 {
			t.Errorf("dim %d: max |R⁻¹Rx - x| = %g, want <= 1e-12", dim, d)
		}
		if d := floats.Norm(back[dim:], math.Inf(1)); d > 1e-12 {
			t.Errorf("dim %d: R⁻¹Rx has padding up to %g, want <= 1e-12", dim, d)
		}
	}
}

// TestRotationSpreads checks the property that justifies the rotation: a
// one-hot vector of norm 1 comes out with every coordinate ±1/sqrt(d).
func TestRotationSpreads(t *testing.T) {
	e, err := NewEncoder(Params{Dim: 4096, Clip: 1, MaxClients: 1})
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float64, 4096)
	x[17] = 1
	y := rotate(e, x)
	if m, want := floats.Norm(y, math.Inf(1)), 1/64.0; math.Abs(m-want) > 1e-15 {
		t.Errorf("max |R·e17| = %v, want %v", m, want)
	}
}

func TestRotationSigns(t *testing.T) {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(i)
	}
	a := rotationSigns(seed, 130)
	b := rotationSigns(seed, 130)
	if len(a) != 3 {
		t.Fatalf("len(rotationSigns(seed, 130)) = %d, want 3", len(a))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("rotationSigns is not deterministic: word %d %#x != %#x", i, a[i], b[i])
		}
	}
	if a[2]>>2 != 0 {
		t.Errorf("rotationSigns(seed, 130)[2] = %#x, want bits >= 2 clear", a[2])
	}
	// Golden: every client and the server must derive the same signs, in any
	// implementation and Go version. Changing this breaks interoperability.
	const want0, want1 = 0xb8911a1ddaf4c45e, 0xbbf0a8c1c8d66918
	if a[0] != want0 || a[1] != want1 {
		t.Errorf("rotationSigns(0..31, 130)[:2] = %#x, %#x, want %#x, %#x", a[0], a[1], uint64(want0), uint64(want1))
	}
	seed[0] ^= 1
	if c := rotationSigns(seed, 130); c[0] == a[0] && c[1] == a[1] {
		t.Errorf("rotationSigns ignores the seed")
	}
	var ones int
	for _, w := range rotationSigns(seed, 1<<16) {
		ones += bits.OnesCount64(w)
	}
	if ones < 1<<15-1000 || ones > 1<<15+1000 { // 7.8 standard deviations
		t.Errorf("rotationSigns(seed, 65536) has %d minus signs, want about 32768", ones)
	}
}

// TestRadixAVX2 checks that every kernel gives the Go loop's result to the
// bit, for every h the transform uses and for values that overflow, cancel
// or are not numbers. Where there are no AVX2 kernels it compares the Go
// loops with themselves.
func TestRadixAVX2(t *testing.T) {
	if !useAVX2 {
		t.Log("no AVX2 here: the kernels are the Go loops")
	}
	kernels := []struct {
		name     string
		r        int
		asm, ref func([]float64, int)
	}{
		{"radix8", 8, radix8AVX2, radix8Go},
		{"radix4", 4, radix4AVX2, radix4Go},
		{"radix2", 2, radix2AVX2, radix2Go},
	}
	r := rand.New(rand.NewPCG(7, 8))
	special := []float64{math.MaxFloat64, -math.MaxFloat64, math.Inf(1), math.Inf(-1), math.NaN(), 0, math.Copysign(0, -1), 5e-324, 1e300}
	for _, k := range kernels {
		for n := 4 * k.r; n <= 1<<13; n *= 2 {
			for h := 4; k.r*h <= n; h *= 2 {
				x := randVec(r, n)
				for i := range x {
					if r.IntN(16) == 0 {
						x[i] = special[r.IntN(len(special))]
					} else {
						x[i] *= math.Pow(2, float64(r.IntN(200)-100))
					}
				}
				got, want := append([]float64(nil), x...), append([]float64(nil), x...)
				k.asm(got, h)
				k.ref(want, h)
				for i := range got {
					if math.Float64bits(got[i]) != math.Float64bits(want[i]) && !(math.IsNaN(got[i]) && math.IsNaN(want[i])) {
						t.Fatalf("%s n=%d h=%d: [%d] = %v (%#x), want %v (%#x)", k.name, n, h, i, got[i], math.Float64bits(got[i]), want[i], math.Float64bits(want[i]))
					}
				}
			}
		}
	}
}

// TestRoundBytesAVX2 checks that roundBytes, which rounds blocks with the
// AVX2 kernel where there is one, gives the Go loop's bytes and count of
// clamped values, draw for draw.
func TestRoundBytesAVX2(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{roundBlock, roundBlock + 3, 5*roundBlock + 7, 100_003} {
		y := make([]float64, n)
		for i := range y {
			switch r.IntN(5) {
			case 0: // beyond the range, either side
				y[i] = math.Copysign(QuantMax+r.Float64()*100, r.Float64()-0.5)
			case 1: // an integer, or halfway between two
				y[i] = float64(r.IntN(2*QuantMax+1)-QuantMax) + 0.5*float64(r.IntN(2))
			case 2: // the edges
				y[i] = []float64{QuantMax, -QuantMax, math.Nextafter(QuantMax, 200), math.Nextafter(-QuantMax, -200), 0, math.Copysign(0, -1)}[r.IntN(6)]
			default:
				y[i] = (r.Float64()*2 - 1) * QuantMax
			}
		}
		got, want := make([]int8, n), make([]int8, n)
		seed := r.Uint64()
		satGot := roundBytes(got, y, rand.New(rand.NewPCG(seed, 1)))
		src := rand.New(rand.NewPCG(seed, 1))
		var g rand.PCG
		g.Seed(src.Uint64(), src.Uint64())
		satWant := roundTail(want, y, &g)
		if satGot != satWant {
			t.Errorf("n=%d: %d clamped, want %d", n, satGot, satWant)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("n=%d: [%d] = %d, want %d (y = %v)", n, i, got[i], want[i], y[i])
			}
		}
	}
}
