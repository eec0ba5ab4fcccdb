package fixedpoint

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/floats"
)

func newQuantizer(t testing.TB, dim int, clip float64) *Quantizer {
	t.Helper()
	q, err := NewQuantizer(dim, clip, [32]byte{7})
	if err != nil {
		t.Fatalf("NewQuantizer(%d, %v) = %v", dim, clip, err)
	}
	return q
}

func TestNewQuantizerRefuses(t *testing.T) {
	for _, tc := range []struct {
		dim  int
		clip float64
	}{{0, 1}, {-1, 1}, {MaxDim + 1, 1}, {10, 0}, {10, -1}, {10, math.NaN()}, {10, math.Inf(1)}} {
		if _, err := NewQuantizer(tc.dim, tc.clip, [32]byte{}); !errors.Is(err, ErrParams) {
			t.Errorf("NewQuantizer(%d, %v) = %v, want ErrParams", tc.dim, tc.clip, err)
		}
	}
}

// TestQuantizeRoundTrip: one quantized vector decodes to the clipped
// update within the rounding error, for dimensions with and without the
// second window.
func TestQuantizeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, dim := range []int{1, 2, 3, 64, 100, 1000, 4096, 5000} {
		q := newQuantizer(t, dim, 1)
		for _, norm := range []float64{0.3, 1, 4} {
			x := vecWithNorm(r, dim, norm, false)
			want := append([]float64(nil), x...)
			if norm > 1 {
				floats.Scale(1/norm, want)
			}
			v := make([]int8, dim)
			got, sat, err := q.Quantize(v, x, r)
			if err != nil || math.Abs(got-norm) > 1e-9 {
				t.Fatalf("dim %d: Quantize = norm %v, %v, want %v", dim, got, err, norm)
			}
			// About 6e-5 of the coordinates of an update at the clip.
			if norm < 1 && sat > 0 || sat > 1+dim/1000 {
				t.Errorf("dim %d norm %v: %d coordinates saturated", dim, norm, sat)
			}
			if err := q.Check(v); err != nil {
				t.Fatalf("dim %d: Check(honest) = %v", dim, err)
			}
			sum := make([]int64, dim)
			if err := q.Add(sum, v); err != nil {
				t.Fatal(err)
			}
			dec := make([]float64, dim)
			if err := q.Decode(dec, sum); err != nil {
				t.Fatal(err)
			}
			// Each rotated coordinate is off by less than a step, and the
			// rotation keeps lengths; saturation (tiny dims) adds more.
			tol := q.Step() * math.Sqrt(float64(dim))
			if dim < 64 {
				tol += 1
			}
			if d := floats.Distance(dec, want, 2); d > tol {
				t.Errorf("dim %d norm %v: decoded off by %v, want <= %v", dim, norm, d, tol)
			}
		}
	}
}

// TestQuantizeUnbiased: the mean of many quantizations of one vector
// converges to it (fixed seed: the bound is six standard errors).
func TestQuantizeUnbiased(t *testing.T) {
	const dim, n = 300, 4000
	q := newQuantizer(t, dim, 1)
	r := rand.New(rand.NewPCG(3, 4))
	x := vecWithNorm(r, dim, 0.8, false)
	sum := make([]int64, dim)
	v := make([]int8, dim)
	for range n {
		if _, _, err := q.Quantize(v, x, r); err != nil {
			t.Fatal(err)
		}
		if err := q.Add(sum, v); err != nil {
			t.Fatal(err)
		}
	}
	mean := make([]float64, dim)
	if err := q.Decode(mean, sum); err != nil {
		t.Fatal(err)
	}
	floats.Scale(1.0/n, mean)
	// Each decoded coordinate is an orthogonal mix of rotated coordinates
	// each of rounding variance <= step²/4: std error <= step/(2·sqrt(n)).
	se := q.Step() / (2 * math.Sqrt(n))
	for i := range x {
		if d := math.Abs(mean[i] - x[i]); d > 6*se {
			t.Errorf("mean[%d] = %v, want %v ± %v", i, mean[i], x[i], 6*se)
		}
	}
}

// TestQuantizeRange: every value is within ±QuantMax, a vector far beyond
// the clip is clipped first, and one that the rotation maps onto a single
// coordinate (an adversarial input: it must know the seed) saturates and
// says so.
func TestQuantizeRange(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	q := newQuantizer(t, 1000, 1)
	e0 := make([]int64, 1000)
	e0[0] = 1
	spike := make([]float64, 1000)
	if err := q.Decode(spike, e0); err != nil {
		t.Fatal(err)
	}
	floats.Scale(1/floats.Norm(spike, 2), spike)
	v := make([]int8, 1000)
	if _, sat, err := q.Quantize(v, spike, r); err != nil || sat != 1 || v[0] != QuantMax {
		t.Fatalf("Quantize(spike) = %d saturated, v[0] = %d, %v; want 1, %d", sat, v[0], err, QuantMax)
	}
	for _, x := range v {
		if x < -QuantMax || x > QuantMax {
			t.Fatalf("value %d beyond ±%d", x, QuantMax)
		}
	}
	big := newQuantizer(t, 1000, 0.5)
	w := make([]int8, 1000)
	if norm, sat, err := big.Quantize(w, vecWithNorm(r, 1000, 50, true), r); err != nil || math.Abs(norm-50) > 1e-9 || sat != 0 {
		t.Fatalf("Quantize(norm 50, clip 0.5) = %v, %d saturated, %v; want 50, 0, nil", norm, sat, err)
	}
	if err := big.Check(w); err != nil {
		t.Fatalf("Check(clipped) = %v", err)
	}
}

// TestQuantizeExactSum: the server's integer sum of many clients is the
// sum of their vectors exactly, whatever the order, and decodes to the sum
// of their clipped updates within the rounding error of n clients.
func TestQuantizeExactSum(t *testing.T) {
	const dim, n = 777, 50
	q := newQuantizer(t, dim, 2)
	r := rand.New(rand.NewPCG(7, 8))
	vs := make([][]int8, n)
	want := make([]float64, dim)
	for i := range vs {
		x := vecWithNorm(r, dim, 0.5+3*r.Float64(), false)
		vs[i] = make([]int8, dim)
		norm, _, err := q.Quantize(vs[i], x, r)
		if err != nil {
			t.Fatal(err)
		}
		floats.AddScaled(want, math.Min(1, 2/norm), x)
	}
	fwd, bwd := make([]int64, dim), make([]int64, dim)
	for i := range vs {
		_ = q.Add(fwd, vs[i])
		_ = q.Add(bwd, vs[n-1-i])
	}
	for i := range fwd {
		var s int64
		for _, v := range vs {
			s += int64(v[i])
		}
		if fwd[i] != s || bwd[i] != s {
			t.Fatalf("sum[%d] = %d / %d, want %d", i, fwd[i], bwd[i], s)
		}
	}
	got := make([]float64, dim)
	if err := q.Decode(got, fwd); err != nil {
		t.Fatal(err)
	}
	// Rounding noise of n clients: norm about step·sqrt(n·dim)/2; allow 2×.
	if d, tol := floats.Distance(got, want, 2), q.Step()*math.Sqrt(n*dim); d > tol {
		t.Errorf("decoded sum off by %v, want <= %v", d, tol)
	}
}

func TestQuantizedCheckRefuses(t *testing.T) {
	q := newQuantizer(t, 100, 1)
	loud := make([]int8, 100)
	for i := range loud {
		loud[i] = QuantMax
	}
	for name, v := range map[string][]int8{"short": make([]int8, 99), "long": make([]int8, 101), "beyond the clip": loud} {
		if err := q.Check(v); !errors.Is(err, ErrQuantized) {
			t.Errorf("Check(%s) = %v, want ErrQuantized", name, err)
		}
	}
	if _, _, err := q.Quantize(make([]int8, 100), []float64{math.NaN()}, rand.New(rand.NewPCG(1, 1))); !errors.Is(err, ErrLength) {
		t.Errorf("Quantize(short x) = %v, want ErrLength", err)
	}
	x := make([]float64, 100)
	x[3] = math.Inf(1)
	if _, _, err := q.Quantize(make([]int8, 100), x, rand.New(rand.NewPCG(1, 1))); !errors.Is(err, ErrNonFinite) {
		t.Errorf("Quantize(Inf) = %v, want ErrNonFinite", err)
	}
}

// TestQuantizedField: wrapped quantized vectors summed modulo
// 2^QuantFieldBits(n) lift to their exact integer sum, even at the extremes.
func TestQuantizedField(t *testing.T) {
	for _, n := range []int{1, 3, 100, 129, 1000} {
		bits := QuantFieldBits(n)
		if lim := int64(1) << (bits - 1); lim <= int64(QuantMax*n) || (bits > 2 && lim/2 > int64(QuantMax*n)) {
			t.Errorf("QuantFieldBits(%d) = %d, not the fewest bits above ±%d", n, bits, QuantMax*n)
		}
		for _, x := range []int8{QuantMax, -QuantMax, 1, -1} {
			v := make([]int8, 3)
			v[0], v[2] = x, -x
			sum, w := make([]uint64, 3), make([]uint64, 3)
			for range n {
				WrapQuantized(w, v, bits)
				_ = AddMod(sum, w, bits)
			}
			got := make([]int64, 3)
			Lift(got, sum, bits)
			if want := int64(x) * int64(n); got[0] != want || got[1] != 0 || got[2] != -want {
				t.Errorf("n %d, bits %d: lifted %v, want [%d 0 %d]", n, bits, got, want, -want)
			}
		}
	}
}

// QuantizeWith gives Quantize's bytes, with a scratch buffer of any
// content or with x itself as its scratch.
func TestQuantizeWith(t *testing.T) {
	for _, dim := range []int{1, 64, 1000, 4096, 10_001} {
		q := newQuantizer(t, dim, 1)
		r := rand.New(rand.NewPCG(uint64(dim), 1))
		x := make([]float64, dim)
		for i := range x {
			x[i] = r.NormFloat64()
		}
		want := make([]int8, dim)
		wantNorm, wantSat, err := q.Quantize(want, x, rand.New(rand.NewPCG(9, 9)))
		if err != nil {
			t.Fatal(err)
		}
		scratch := make([]float64, dim)
		for i := range scratch {
			scratch[i] = math.NaN()
		}
		inPlace := append([]float64(nil), x...)
		for name, y := range map[string][]float64{"scratch": scratch, "in place": inPlace} {
			xs := x
			if name == "in place" {
				xs = inPlace
			}
			got := make([]int8, dim)
			norm, sat, err := q.QuantizeWith(got, xs, y, rand.New(rand.NewPCG(9, 9)))
			if err != nil {
				t.Fatal(err)
			}
			if norm != wantNorm || sat != wantSat || string(int8Bytes(got)) != string(int8Bytes(want)) {
				t.Errorf("dim %d, %s: QuantizeWith = (%v, %d, ...), want Quantize's (%v, %d, ...) and its bytes", dim, name, norm, sat, wantNorm, wantSat)
			}
		}
	}
	q := newQuantizer(t, 10, 1)
	if _, _, err := q.QuantizeWith(make([]int8, 10), make([]float64, 10), make([]float64, 9), nil); !errors.Is(err, ErrLength) {
		t.Errorf("QuantizeWith(short scratch) = %v, want ErrLength", err)
	}
}

func int8Bytes(v []int8) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

// referenceRotation is the quantizer's rotation the plain way, one step
// after the other: clip, divide by the step, the first window's signs and
// normalised transform, then the last window's.
func referenceRotation(q *Quantizer, x []float64) []float64 {
	y := append([]float64(nil), x...)
	n := floats.Norm(y, 2)
	if n > q.clip {
		floats.Scale(q.clip/n, y)
	}
	floats.Scale(1/q.step, y)
	w := 1 / math.Sqrt(float64(q.win))
	for _, win := range []struct {
		off   int
		signs []uint64
	}{{0, q.signsA}, {q.dim - q.win, q.signsB}} {
		if win.signs == nil {
			break
		}
		b := y[win.off : win.off+q.win]
		for i := range b {
			if win.signs[i/64]>>(i%64)&1 == 1 {
				b[i] = -b[i]
			}
		}
		textbookFWHT(b)
		floats.Scale(w, b)
	}
	return y
}

// TestQuantizeRotation: every byte is the floor or the ceiling of the
// plainly computed rotated coordinate (clamped), for dimensions of one
// window and of two, with windows of one block and of many, and a second
// window that starts and ends inside blocks.
func TestQuantizeRotation(t *testing.T) {
	for _, dim := range []int{1, 7, 64, 1000, 2048, 4096, 5000, 3*fwhtBlock + 777, 1<<15 + 3} {
		for _, norm := range []float64{0.3, 5} { // within the clip, and clipped
			q := newQuantizer(t, dim, 1)
			r := rand.New(rand.NewPCG(uint64(dim), 3))
			x := vecWithNorm(r, dim, norm, false)
			want := referenceRotation(q, x)
			got := make([]int8, dim)
			if _, _, err := q.Quantize(got, x, r); err != nil {
				t.Fatal(err)
			}
			for i, v := range want {
				v = min(max(v, -QuantMax), QuantMax)
				if f := math.Floor(v + 1e-9); float64(got[i]) != f && float64(got[i]) != math.Floor(v-1e-9)+1 {
					t.Fatalf("dim %d, norm %v: coordinate %d quantized to %d, want the floor or the ceiling of %v", dim, norm, i, got[i], v)
				}
			}
		}
	}
}

// TestRoundByteExact: over all 2^16 values of the random bits roundByte
// uses, the mean of a coordinate's rounding is the coordinate rounded to
// a multiple of 2^-16, within 2^-17 of it (2^-16 to the bits), and exactly
// it when it is such a multiple; every result is the floor or the ceiling.
func TestRoundByteExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	vs := []float64{0, 0.5, -0.5, 1e-9, -1e-9, 0.3, -0.3, 3 + 5.0/65536, -100 - 1.0/65536, QuantMax, -QuantMax, 126.99999, -126.99999}
	for range 20 {
		vs = append(vs, (2*r.Float64()-1)*QuantMax)
	}
	for _, v := range vs {
		var sum int64
		lo, hi := math.Floor(v), math.Ceil(v)
		for u := range uint64(1 << roundBits) {
			k := roundByte(v, u|0xfedc_ba98_7654_0000) // the high bits must not count
			if float64(k) != lo && float64(k) != hi {
				t.Fatalf("roundByte(%v, %d) = %d, want %v or %v", v, u, k, lo, hi)
			}
			sum += int64(k)
		}
		mean := float64(sum) / (1 << roundBits)
		grid := math.Round(v*(1<<roundBits)) / (1 << roundBits)
		if mean != grid || math.Abs(mean-v) > 1.0/(1<<(roundBits+1)) {
			t.Errorf("mean of roundByte(%v, ·) over its 2^16 bits = %v, want %v (within 2^-17 of it)", v, mean, grid)
		}
	}
}

// TestRoundBytesStatistics: with the bits of one draw shared by four
// coordinates, each position of the four still rounds up as often as its
// fraction says, and two coordinates of one draw round independently.
func TestRoundBytesStatistics(t *testing.T) {
	const n, trials = 8, 50_000
	y := []float64{0.25, -0.25, 0.5, 0.75, 10.1, -3.9, 0.5, 0.5}
	r := rand.New(rand.NewPCG(11, 12))
	dst := make([]int8, n)
	var up [n]float64
	var both float64 // coordinates 6 and 7, each up with probability 1/2
	for range trials {
		if sat := roundBytes(dst, y, r); sat != 0 {
			t.Fatalf("roundBytes saturated %d values of %v", sat, y)
		}
		for i, k := range dst {
			if float64(k) > math.Floor(y[i]) {
				up[i]++
			}
		}
		if dst[6] == 1 && dst[7] == 1 {
			both++
		}
	}
	for i, v := range y {
		f := v - math.Floor(v)
		if p := up[i] / trials; math.Abs(p-f) > 5*math.Sqrt(f*(1-f)/trials) {
			t.Errorf("coordinate %d (%v) rounded up in %v of trials, want %v", i, v, p, f)
		}
	}
	if p := both / trials; math.Abs(p-0.25) > 5*math.Sqrt(0.25*0.75/trials) {
		t.Errorf("two coordinates of one draw both rounded up in %v of trials, want 0.25", p)
	}
}

// TestRoundBytesSaturates: values beyond ±QuantMax are clamped and counted.
func TestRoundBytesSaturates(t *testing.T) {
	y := []float64{200, -127.5, 127, -127, 0, 1e300, 126.5}
	dst := make([]int8, len(y))
	if sat := roundBytes(dst, y, rand.New(rand.NewPCG(1, 2))); sat != 3 {
		t.Errorf("roundBytes(%v) saturated %d, want 3", y, sat)
	}
	for i, want := range []int8{127, -127, 127, -127, 0, 127} {
		if dst[i] != want {
			t.Errorf("roundBytes(%v)[%d] = %d, want %d", y, i, dst[i], want)
		}
	}
}

// int8Squares is the plain sum of squares, at every length around its
// blocks and unrolling and at the extremes of int8.
func TestInt8Squares(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 3, 4, 5, 1<<16 - 1, 1 << 16, 1<<16 + 7, 320893} {
		for _, fill := range []string{"random", "min", "max"} {
			v := make([]int8, n)
			var want int64
			for i := range v {
				switch fill {
				case "random":
					v[i] = int8(r.IntN(256) - 128)
				case "min":
					v[i] = -128
				case "max":
					v[i] = 127
				}
				want += int64(v[i]) * int64(v[i])
			}
			if got := int8Squares(v); got != want {
				t.Errorf("n=%d %s: int8Squares = %d, want %d", n, fill, got, want)
			}
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	const dim = 320893
	q, err := NewQuantizer(dim, 1, [32]byte{})
	if err != nil {
		b.Fatal(err)
	}
	v := make([]int8, dim)
	b.SetBytes(dim)
	for b.Loop() {
		if err := q.Check(v); err != nil {
			b.Fatal(err)
		}
	}
}
