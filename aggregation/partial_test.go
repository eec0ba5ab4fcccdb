package aggregation

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fedrec/fedrec/aggregation/fixedpoint"
)

// TestPartialMerge: the updates of a round split among three aggregators
// (a cluster's nodes), their partials merged into a fourth (the leader),
// give the Result of one aggregator of every update: exactly for the
// quantized sums, to rounding for the float ones.
func TestPartialMerge(t *testing.T) {
	const dim, clip = 300, 1.0
	q, err := fixedpoint.NewQuantizer(dim, clip, [32]byte{3})
	if err != nil {
		t.Fatal(err)
	}
	for _, quantized := range []bool{false, true} {
		newAgg := func() partialAggregator {
			if quantized {
				return NewQuantized(q)
			}
			p, _ := NewPlain(dim, clip)
			return p
		}
		one, leader := newAgg(), newAgg()
		nodes := []partialAggregator{newAgg(), newAgg(), newAgg()}
		r := rand.New(rand.NewPCG(1, 2))
		v := make([]int8, dim)
		for i := range 30 {
			x := make([]float64, dim)
			for j := range x {
				x[j] = r.NormFloat64() * 0.2
			}
			node := nodes[i%3]
			if quantized && i%5 != 0 { // most devices upload 8 bits
				if _, _, err := q.Quantize(v, x, r); err != nil {
					t.Fatal(err)
				}
				one.(*Quantized).AddQuantized(v)
				node.(*Quantized).AddQuantized(v)
				continue
			}
			one.Add(x, 1)
			node.Add(x, 1)
		}
		for _, n := range nodes {
			if err := leader.Merge(n.Partial()); err != nil {
				t.Fatal(err)
			}
		}
		want, got := make([]float64, dim), make([]float64, dim)
		sw, err1 := one.Result(want)
		sg, err2 := leader.Result(got)
		if err1 != nil || err2 != nil || sw != sg {
			t.Fatalf("quantized %v: summaries %+v (%v) and %+v (%v)", quantized, sw, err1, sg, err2)
		}
		for i := range want {
			if math.Abs(want[i]-got[i]) > 1e-12 {
				t.Fatalf("quantized %v: mean[%d] = %v merged, %v in one", quantized, i, got[i], want[i])
			}
		}
	}
}

// TestMergeRefuses: partials that no honest node can send change nothing.
func TestMergeRefuses(t *testing.T) {
	const dim = 4
	q, _ := fixedpoint.NewQuantizer(dim, 1, [32]byte{3})
	nan := []float64{0, math.NaN(), 0, 0}
	cases := []struct {
		name      string
		quantized bool
		x         Partial
	}{
		{"short sum", false, Partial{Summary: Summary{Clients: 1, Weight: 1}, Sum: make([]float64, dim-1)}},
		{"NaN", false, Partial{Summary: Summary{Clients: 1, Weight: 1}, Sum: nan}},
		{"quantized in a float round", false, Partial{Summary: Summary{Clients: 1, Weight: 1}, QSum: make([]int64, dim), QClients: 1}},
		{"more clipped than clients", false, Partial{Summary: Summary{Clients: 1, Weight: 1, Clipped: 2}, Sum: make([]float64, dim)}},
		{"float updates without a sum", false, Partial{Summary: Summary{Clients: 2, Weight: 2}}},
		{"integer sum beyond its updates", true, Partial{Summary: Summary{Clients: 1, Weight: 1}, QSum: []int64{0, fixedpoint.QuantMax + 1, 0, 0}, QClients: 1}},
		{"short integer sum", true, Partial{Summary: Summary{Clients: 1, Weight: 1}, QSum: make([]int64, dim-1), QClients: 1}},
		{"more quantized than clients", true, Partial{Summary: Summary{Clients: 1, Weight: 1}, QSum: make([]int64, dim), QClients: 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var a partialAggregator
			if c.quantized {
				a = NewQuantized(q)
			} else {
				a, _ = NewPlain(dim, 1)
			}
			if err := a.Merge(c.x); err == nil {
				t.Fatal("Merge accepted it")
			}
			if _, err := a.Result(make([]float64, dim)); !errors.Is(err, ErrEmpty) {
				t.Errorf("after a refused merge, Result = %v, want ErrEmpty", err)
			}
		})
	}
}

// partialAggregator is what a cluster's leader needs of an aggregator.
type partialAggregator interface {
	Aggregator
	Partial() Partial
	Merge(Partial) error
}
