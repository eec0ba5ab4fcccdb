package aggregation

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"gonum.org/v1/gonum/floats"
)

// Errors callers branch on.
var (
	// ErrShape: an update's length differs from the aggregator's dimension.
	ErrShape = errors.New("aggregation: update has the wrong dimension")
	// ErrNotFinite: an update holds NaN or ±Inf.
	ErrNotFinite = errors.New("aggregation: update is not finite")
	// ErrEmpty: no update (or no weight) was added.
	ErrEmpty = errors.New("aggregation: no updates")
)

// Aggregator collects one round's client updates and yields their weighted
// mean. The plaintext path (Plain) sees each update; the secure path sees
// only masked ones and learns the same mean.
type Aggregator interface {
	// Add contributes one client's update with its weight. It may be
	// called concurrently and does not keep or modify update.
	Add(update []float64, weight float64) error
	// Result writes the weighted mean of the updates into dst.
	Result(dst []float64) (Summary, error)
}

// Summary describes what went into an aggregate.
type Summary struct {
	Clients int     // updates added
	Weight  float64 // their total weight
	Clipped int     // updates scaled down by clipping
}

// Plain aggregates updates in the clear: per-client L2 clipping, then a
// weighted mean (FedAvg's aggregation step).
type Plain struct {
	clip float64

	mu  sync.Mutex
	sum []float64
	sm  Summary
}

// NewPlain returns an aggregator for updates of length dim, clipping each to
// L2 norm clip (0 = no clipping).
func NewPlain(dim int, clip float64) (*Plain, error) {
	if dim <= 0 {
		return nil, fmt.Errorf("aggregation: dim = %d, want > 0", dim)
	}
	if !(clip >= 0) || math.IsInf(clip, 0) {
		return nil, fmt.Errorf("aggregation: clip = %v, want finite >= 0", clip)
	}
	return &Plain{clip: clip, sum: make([]float64, dim)}, nil
}

// Add implements Aggregator.
func (p *Plain) Add(update []float64, weight float64) error {
	if len(update) != len(p.sum) {
		return fmt.Errorf("%w: %d, want %d", ErrShape, len(update), len(p.sum))
	}
	if !(weight > 0) || math.IsInf(weight, 0) {
		return fmt.Errorf("aggregation: weight = %v, want finite > 0", weight)
	}
	norm := floats.Norm(update, 2)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return ErrNotFinite
	}
	scale, clipped := ClipFactor(norm, p.clip)
	p.mu.Lock()
	defer p.mu.Unlock()
	floats.AddScaled(p.sum, weight*scale, update)
	p.sm.Clients++
	p.sm.Weight += weight
	if clipped {
		p.sm.Clipped++
	}
	return nil
}

// Result implements Aggregator.
func (p *Plain) Result(dst []float64) (Summary, error) {
	if len(dst) != len(p.sum) {
		return Summary{}, fmt.Errorf("%w: dst %d, want %d", ErrShape, len(dst), len(p.sum))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sm.Clients == 0 || p.sm.Weight == 0 {
		return p.sm, ErrEmpty
	}
	floats.ScaleTo(dst, 1/p.sm.Weight, p.sum)
	return p.sm, nil
}

// ClipFactor returns the factor that scales a vector of L2 norm `norm` down
// to at most clip, and whether it is below one. clip <= 0 means no clipping.
func ClipFactor(norm, clip float64) (float64, bool) {
	if clip <= 0 || norm <= clip {
		return 1, false
	}
	return clip / norm, true
}

// Clip scales x in place to L2 norm at most clip and returns its norm before
// clipping.
func Clip(x []float64, clip float64) float64 {
	norm := floats.Norm(x, 2)
	if f, ok := ClipFactor(norm, clip); ok {
		floats.Scale(f, x)
	}
	return norm
}
