package aggregation

import (
	"fmt"
	"math"

	"github.com/fedrec/fedrec/aggregation/fixedpoint"
)

// Partial is what an aggregator has summed so far, for an aggregator
// elsewhere (the leader of a cluster, summing its nodes' devices) to
// merge: merging the partials of several aggregators gives the Result one
// aggregator of every update would.
type Partial struct {
	Summary
	// Sum is the sum of the float updates, clipped and weighted.
	Sum []float64
	// QSum is the integer sum of QClients quantized updates (Quantized
	// only; nil for Plain).
	QSum     []int64
	QClients int
}

// Partial returns p's sums; it shares nothing with p.
func (p *Plain) Partial() Partial {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Partial{Summary: p.sm, Sum: append([]float64(nil), p.sum...)}
}

// Merge adds another aggregator's partial sums to p. It refuses a partial
// of another dimension, a non-finite one, and quantized sums, which only
// a Quantized aggregator can decode.
func (p *Plain) Merge(x Partial) error {
	if x.QClients != 0 || len(x.QSum) != 0 {
		return fmt.Errorf("%w: quantized sums in a round of float updates", ErrShape)
	}
	if err := checkPartial(x, len(p.sum)); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mergeLocked(x)
	return nil
}

func (p *Plain) mergeLocked(x Partial) {
	for i, v := range x.Sum {
		p.sum[i] += v
	}
	p.sm.Clients += x.Clients
	p.sm.Weight += x.Weight
	p.sm.Clipped += x.Clipped
}

// checkPartial checks the float part of x against dimension dim.
func checkPartial(x Partial, dim int) error {
	if len(x.Sum) != 0 && len(x.Sum) != dim {
		return fmt.Errorf("%w: partial sum %d, want %d", ErrShape, len(x.Sum), dim)
	}
	if x.Clients < 0 || x.Clipped < 0 || x.Clipped > x.Clients || !(x.Weight >= 0) || math.IsInf(x.Weight, 0) {
		return fmt.Errorf("aggregation: partial of %d clients, %d clipped, weight %v", x.Clients, x.Clipped, x.Weight)
	}
	if len(x.Sum) == 0 && x.Clients > x.QClients {
		return fmt.Errorf("%w: %d float updates without their sum", ErrShape, x.Clients-x.QClients)
	}
	for _, v := range x.Sum {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return ErrNotFinite
		}
	}
	return nil
}

// Partial returns a's sums, float and quantized; it shares nothing with
// a.
func (a *Quantized) Partial() Partial {
	x := a.floats.Partial()
	a.mu.Lock()
	defer a.mu.Unlock()
	x.QSum, x.QClients = append([]int64(nil), a.sum...), a.n
	x.Clients += a.n
	x.Weight += float64(a.n)
	return x
}

// Merge adds another aggregator's partial sums to a. The integer sum must
// be one that QClients honest quantized updates can reach: within
// QClients times the largest level in every coordinate.
func (a *Quantized) Merge(x Partial) error {
	if len(x.QSum) != 0 && len(x.QSum) != a.q.Dim() || len(x.QSum) == 0 && x.QClients != 0 || x.QClients < 0 || x.QClients > x.Clients {
		return fmt.Errorf("%w: integer sum of %d (%d updates), want %d", ErrShape, len(x.QSum), x.QClients, a.q.Dim())
	}
	floats := x
	floats.Clients -= x.QClients
	floats.Weight -= float64(x.QClients)
	floats.QSum, floats.QClients = nil, 0
	if err := checkPartial(floats, a.q.Dim()); err != nil {
		return err
	}
	bound := int64(x.QClients) * fixedpoint.QuantMax
	for i, v := range x.QSum {
		if v > bound || v < -bound {
			return fmt.Errorf("%w: integer sum %d at %d, beyond %d updates", ErrShape, v, i, x.QClients)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, v := range x.QSum {
		a.sum[i] += v
	}
	a.n += x.QClients
	if floats.Clients > 0 {
		a.floats.mu.Lock()
		a.floats.mergeLocked(floats)
		a.floats.mu.Unlock()
	}
	return nil
}
