package aggregation

import (
	"fmt"
	"math"
	"sync"

	"github.com/fedrec/fedrec/aggregation/fixedpoint"
)

// Quantized aggregates a round of 8-bit uploads: each client's update
// quantized by the round's fixedpoint.Quantizer, which the server adds
// exactly as integers and decodes once, in Result. Updates of clients that
// still send floats (older devices) are clipped and added in the clear
// alongside; the mean covers both.
type Quantized struct {
	q *fixedpoint.Quantizer

	mu     sync.Mutex
	sum    []int64
	n      int
	floats *Plain
}

// NewQuantized returns the aggregator of the updates q quantizes.
func NewQuantized(q *fixedpoint.Quantizer) *Quantized {
	p, _ := NewPlain(q.Dim(), q.Clip()) // a Quantizer's dim and clip are valid
	return &Quantized{q: q, sum: make([]int64, q.Dim()), floats: p}
}

// AddQuantized adds one client's quantized update with weight 1, after
// checking that an honest client can have sent it (fixedpoint.ErrQuantized
// if not). It may be called concurrently and does not keep v.
func (a *Quantized) AddQuantized(v []int8) error {
	if err := a.q.Check(v); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	return a.q.Add(a.sum, v)
}

// Add implements Aggregator for float updates, clipped to the quantizer's
// clip; weight must be 1, as for quantized ones.
func (a *Quantized) Add(update []float64, weight float64) error {
	if weight != 1 {
		return fmt.Errorf("aggregation: weight = %v in a quantized round, want 1", weight)
	}
	return a.floats.Add(update, 1)
}

// Result implements Aggregator: the mean of every update added.
func (a *Quantized) Result(dst []float64) (Summary, error) {
	if len(dst) != a.q.Dim() {
		return Summary{}, fmt.Errorf("%w: dst %d, want %d", ErrShape, len(dst), a.q.Dim())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.floats.mu.Lock()
	defer a.floats.mu.Unlock()
	sm := a.floats.sm
	sm.Clients += a.n
	sm.Weight += float64(a.n)
	if sm.Clients == 0 {
		return sm, ErrEmpty
	}
	if err := a.q.Decode(dst, a.sum); err != nil {
		return sm, err
	}
	for i, x := range a.floats.sum {
		dst[i] = (dst[i] + x) / sm.Weight
		if math.IsNaN(dst[i]) || math.IsInf(dst[i], 0) {
			return sm, ErrNotFinite
		}
	}
	return sm, nil
}
