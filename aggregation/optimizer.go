package aggregation

import (
	"fmt"
	"math"
	"strings"
)

// ServerOptimizer turns a round's aggregated client change into a step on
// the global parameters (Reddi et al., "Adaptive Federated Optimization",
// ICLR 2021). The aggregate is the clients' mean change, a pseudo-gradient
// with the sign of a descent direction.
type ServerOptimizer interface {
	// Step updates params in place from delta (same length).
	Step(params, delta []float64) error
}

// OptimizerConfig selects and tunes a server optimizer. Zero fields take
// the defaults of the paper's experiments.
type OptimizerConfig struct {
	Name  string  // "fedavg", "fedadam" or "fedyogi"
	LR    float64 // server learning rate η
	Beta1 float64 // 0 = 0.9
	Beta2 float64 // 0 = 0.99
	Tau   float64 // adaptivity τ; 0 = 1e-3
}

// NewOptimizer builds the optimizer named in c for parameter vectors of
// length dim.
func NewOptimizer(c OptimizerConfig, dim int) (ServerOptimizer, error) {
	if !(c.LR > 0) || math.IsInf(c.LR, 0) {
		return nil, fmt.Errorf("aggregation: server LR = %v, want finite > 0", c.LR)
	}
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.99
	}
	if c.Tau == 0 {
		c.Tau = 1e-3
	}
	if c.Beta1 < 0 || c.Beta1 >= 1 || c.Beta2 < 0 || c.Beta2 >= 1 || !(c.Tau > 0) {
		return nil, fmt.Errorf("aggregation: need 0 <= beta1, beta2 < 1 and tau > 0, got %v, %v, %v", c.Beta1, c.Beta2, c.Tau)
	}
	switch strings.ToLower(c.Name) {
	case "fedavg", "":
		return &FedAvg{LR: c.LR}, nil
	case "fedadam":
		return newAdaptive(c, dim, false), nil
	case "fedyogi":
		return newAdaptive(c, dim, true), nil
	}
	return nil, fmt.Errorf("aggregation: unknown server optimizer %q (want fedavg, fedadam or fedyogi)", c.Name)
}

// FedAvg applies the mean change scaled by LR (LR = 1 is plain FedAvg).
type FedAvg struct{ LR float64 }

// Step implements ServerOptimizer.
func (o *FedAvg) Step(params, delta []float64) error {
	if len(params) != len(delta) {
		return fmt.Errorf("%w: delta %d, params %d", ErrShape, len(delta), len(params))
	}
	for i, d := range delta {
		// The conversion keeps the compiler from fusing a multiply-add
		// on some architectures: every node of a cluster must step to the
		// same bits.
		params[i] += float64(o.LR * d)
	}
	return nil
}

// Adaptive is FedAdam or FedYogi: per-coordinate step sizes from running
// moments of the pseudo-gradient.
type Adaptive struct {
	LR, Beta1, Beta2, Tau float64
	Yogi                  bool
	// M and V are the first and second moments; exported so that a
	// coordinator can replicate the optimizer's state with the model.
	M, V []float64
}

func newAdaptive(c OptimizerConfig, dim int, yogi bool) *Adaptive {
	v := make([]float64, dim)
	// Reddi et al. initialise v to τ² so the first steps are not huge.
	for i := range v {
		v[i] = c.Tau * c.Tau
	}
	return &Adaptive{LR: c.LR, Beta1: c.Beta1, Beta2: c.Beta2, Tau: c.Tau, Yogi: yogi, M: make([]float64, dim), V: v}
}

// Step implements ServerOptimizer.
func (o *Adaptive) Step(params, delta []float64) error {
	if len(params) != len(delta) || len(delta) != len(o.M) {
		return fmt.Errorf("%w: delta %d, params %d, state %d", ErrShape, len(delta), len(params), len(o.M))
	}
	b1, b2 := o.Beta1, o.Beta2
	// Each product is converted before it is added, so that no
	// architecture fuses a multiply-add: every node of a cluster steps the
	// replicated moments and model to the same bits (see FedAvg.Step).
	for i, d := range delta {
		m := float64(b1*o.M[i]) + float64((1-b1)*d)
		d2 := d * d
		v := o.V[i]
		if o.Yogi {
			if v > d2 {
				v -= float64((1 - b2) * d2)
			} else if v < d2 {
				v += float64((1 - b2) * d2)
			}
		} else {
			v = float64(b2*v) + float64((1-b2)*d2)
		}
		o.M[i], o.V[i] = m, v
		params[i] += o.LR * m / (math.Sqrt(v) + o.Tau)
	}
	return nil
}

// SetLR changes the step for the following rounds (a schedule's hook).
func (o *FedAvg) SetLR(lr float64) { o.LR = lr }

// SetLR changes the step for the following rounds (a schedule's hook).
func (o *Adaptive) SetLR(lr float64) { o.LR = lr }

// CosineDecay is the step of round t (1-based) of n under a half-cosine
// schedule: lr at the first round, falling to floor·lr at the last.
// Adaptive optimizers keep a constant step's worth of jitter once the model
// has converged; decaying the step removes it.
func CosineDecay(lr, floor float64, t, n int) float64 {
	if n <= 1 {
		return lr
	}
	frac := float64(min(max(t, 1), n)-1) / float64(n-1)
	return lr * (floor + (1-floor)*0.5*(1+math.Cos(math.Pi*frac)))
}
