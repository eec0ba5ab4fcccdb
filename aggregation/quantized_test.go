package aggregation

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fedrec/fedrec/aggregation/fixedpoint"
)

// TestQuantizedMean: the mean of quantized and float updates is the mean
// of the clipped updates within the rounding error, and a vector no honest
// client sends is refused.
func TestQuantizedMean(t *testing.T) {
	const dim, clip = 500, 1.0
	q, err := fixedpoint.NewQuantizer(dim, clip, [32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	a := NewQuantized(q)
	r := rand.New(rand.NewPCG(1, 2))
	want := make([]float64, dim)
	v := make([]int8, dim)
	const n = 20
	for i := range n {
		x := make([]float64, dim)
		for j := range x {
			x[j] = r.NormFloat64() * 0.1
		}
		norm := 0.0
		for _, xj := range x {
			norm += xj * xj
		}
		s := math.Min(1, clip/math.Sqrt(norm))
		for j := range want {
			want[j] += s * x[j] / n
		}
		if i%4 == 0 { // an older device's float upload
			if err := a.Add(x, 1); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, _, err := q.Quantize(v, x, r); err != nil {
			t.Fatal(err)
		}
		if err := a.AddQuantized(v); err != nil {
			t.Fatalf("AddQuantized(honest) = %v", err)
		}
	}
	loud := make([]int8, dim)
	for i := range loud {
		loud[i] = -fixedpoint.QuantMax
	}
	if err := a.AddQuantized(loud); !errors.Is(err, fixedpoint.ErrQuantized) {
		t.Errorf("AddQuantized(beyond the clip) = %v, want ErrQuantized", err)
	}
	if err := a.AddQuantized(v[:dim-1]); !errors.Is(err, fixedpoint.ErrQuantized) {
		t.Errorf("AddQuantized(short) = %v, want ErrQuantized", err)
	}
	got := make([]float64, dim)
	sm, err := a.Result(got)
	if err != nil || sm.Clients != n || sm.Weight != n {
		t.Fatalf("Result = %+v, %v, want %d clients", sm, err, n)
	}
	var d float64
	for i := range got {
		d += (got[i] - want[i]) * (got[i] - want[i])
	}
	// Rounding: at most step·sqrt(dim) per client, about sqrt(n) of them
	// adding up, over n.
	if tol := q.Step() * math.Sqrt(dim) / math.Sqrt(n); math.Sqrt(d) > tol {
		t.Errorf("mean off by %v, want <= %v", math.Sqrt(d), tol)
	}
	if _, err := NewQuantized(q).Result(got); !errors.Is(err, ErrEmpty) {
		t.Errorf("Result(empty) = %v, want ErrEmpty", err)
	}
}
