package aggregation

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

func TestPlainWeightedMean(t *testing.T) {
	tests := []struct {
		name    string
		clip    float64
		updates [][]float64
		weights []float64
		want    []float64
		clipped int
	}{
		{"equal weights", 0, [][]float64{{1, 2}, {3, 4}}, []float64{1, 1}, []float64{2, 3}, 0},
		{"weighted", 0, [][]float64{{1, 0}, {0, 1}}, []float64{3, 1}, []float64{0.75, 0.25}, 0},
		{"clipped to norm 1", 1, [][]float64{{3, 4}, {0, 0.5}}, []float64{1, 1}, []float64{0.3, 0.65}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPlain(2, tt.clip)
			if err != nil {
				t.Fatal(err)
			}
			for i, u := range tt.updates {
				if err := p.Add(u, tt.weights[i]); err != nil {
					t.Fatal(err)
				}
			}
			got := make([]float64, 2)
			sm, err := p.Result(got)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if math.Abs(got[i]-tt.want[i]) > 1e-12 {
					t.Errorf("Result = %v, want %v", got, tt.want)
					break
				}
			}
			if sm.Clipped != tt.clipped || sm.Clients != len(tt.updates) {
				t.Errorf("Summary = %+v, want %d clients, %d clipped", sm, len(tt.updates), tt.clipped)
			}
			if tt.updates[0][0] == 0.3 {
				t.Error("Add modified its input")
			}
		})
	}
}

func TestPlainRejectsBadInput(t *testing.T) {
	p, _ := NewPlain(2, 0)
	tests := []struct {
		name   string
		update []float64
		weight float64
		want   error
	}{
		{"short", []float64{1}, 1, ErrShape},
		{"NaN", []float64{math.NaN(), 1}, 1, ErrNotFinite},
		{"Inf", []float64{math.Inf(1), 1}, 1, ErrNotFinite},
		{"zero weight", []float64{1, 1}, 0, nil},
		{"NaN weight", []float64{1, 1}, math.NaN(), nil},
	}
	for _, tt := range tests {
		err := p.Add(tt.update, tt.weight)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("Add(%s) = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := p.Result(make([]float64, 2)); !errors.Is(err, ErrEmpty) {
		t.Errorf("Result after only rejected updates = %v, want ErrEmpty", err)
	}
}

func TestPlainConcurrentAdd(t *testing.T) {
	p, _ := NewPlain(3, 0)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { _ = p.Add([]float64{1, 2, 3}, 1) })
	}
	wg.Wait()
	got := make([]float64, 3)
	if sm, err := p.Result(got); err != nil || sm.Clients != 50 || got[2] != 3 {
		t.Errorf("after 50 concurrent Adds: %v %+v %v", got, sm, err)
	}
}

func TestOptimizerFirstStep(t *testing.T) {
	// Hand-computed first steps from Reddi et al.'s update rules, with
	// v₀ = τ²: m₁ = (1-β₁)Δ and v₁ = β₂τ² + (1-β₂)Δ² (Adam) or
	// τ² + (1-β₂)Δ² (Yogi, since v₀ < Δ²).
	const lr, b1, b2, tau, d = 0.1, 0.9, 0.99, 1e-3, 0.5
	m1 := (1 - b1) * d
	tests := []struct {
		name string
		want float64
	}{
		{"fedavg", lr * d},
		{"fedadam", lr * m1 / (math.Sqrt(b2*tau*tau+(1-b2)*d*d) + tau)},
		{"fedyogi", lr * m1 / (math.Sqrt(tau*tau+(1-b2)*d*d) + tau)},
	}
	for _, tt := range tests {
		opt, err := NewOptimizer(OptimizerConfig{Name: tt.name, LR: lr}, 1)
		if err != nil {
			t.Fatal(err)
		}
		params := []float64{1}
		if err := opt.Step(params, []float64{d}); err != nil {
			t.Fatal(err)
		}
		if got := params[0] - 1; math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("%s first step = %.12g, want %.12g", tt.name, got, tt.want)
		}
	}
}

// TestOptimizersMinimizeQuadratic runs each optimizer on noisy pseudo-
// gradients of f(x) = ½‖x - x*‖² and checks it gets close to x*.
func TestOptimizersMinimizeQuadratic(t *testing.T) {
	for _, name := range []string{"fedavg", "fedadam", "fedyogi"} {
		t.Run(name, func(t *testing.T) {
			lr := 0.05
			if name == "fedavg" {
				lr = 0.5
			}
			opt, err := NewOptimizer(OptimizerConfig{Name: name, LR: lr}, 4)
			if err != nil {
				t.Fatal(err)
			}
			target := []float64{1, -2, 0.5, 3}
			x := make([]float64, 4)
			r := rand.New(rand.NewPCG(1, 1))
			d := make([]float64, 4)
			for range 2000 {
				for i := range d {
					d[i] = target[i] - x[i] + 0.01*r.NormFloat64()
				}
				if err := opt.Step(x, d); err != nil {
					t.Fatal(err)
				}
			}
			for i := range x {
				if math.Abs(x[i]-target[i]) > 0.05 {
					t.Errorf("%s reached %v, want near %v", name, x, target)
					break
				}
			}
		})
	}
}

func TestNewOptimizerErrors(t *testing.T) {
	tests := []OptimizerConfig{
		{Name: "sgd", LR: 1},
		{Name: "fedadam", LR: 0},
		{Name: "fedadam", LR: math.NaN()},
		{Name: "fedadam", LR: 1, Beta1: 1},
	}
	for _, c := range tests {
		if _, err := NewOptimizer(c, 3); err == nil {
			t.Errorf("NewOptimizer(%+v) succeeded, want error", c)
		}
	}
}

func BenchmarkAggregationStep(b *testing.B) {
	// One round's aggregation at the ml-1m model size (3,706 items, rank 32)
	// for 100 clients: clip and add each update, take the mean, FedAdam step.
	const dim, clients = 3706*33 + 1, 100
	r := rand.New(rand.NewPCG(1, 2))
	u := make([]float64, dim)
	for i := range u {
		u[i] = r.NormFloat64()
	}
	params := make([]float64, dim)
	delta := make([]float64, dim)
	opt, _ := NewOptimizer(OptimizerConfig{Name: "fedadam", LR: 0.1}, dim)
	b.ReportAllocs()
	b.SetBytes(int64(8 * dim * clients))
	for b.Loop() {
		p, _ := NewPlain(dim, 1)
		for range clients {
			if err := p.Add(u, 1); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := p.Result(delta); err != nil {
			b.Fatal(err)
		}
		if err := opt.Step(params, delta); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCosineDecay(t *testing.T) {
	tests := []struct {
		t, n int
		want float64
	}{
		{1, 5, 1}, {3, 5, 0.525}, {5, 5, 0.05}, {9, 5, 0.05}, {0, 5, 1}, {1, 1, 1},
	}
	for _, tt := range tests {
		if got := CosineDecay(1, 0.05, tt.t, tt.n); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("CosineDecay(1, 0.05, %d, %d) = %v, want %v", tt.t, tt.n, got, tt.want)
		}
	}
}
