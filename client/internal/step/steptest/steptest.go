// Package steptest is the benchmark of a device's local training step,
// defined once: client's BenchmarkLocalStep runs it natively and
// client/web/browsertest's compiled to WebAssembly in Chromium, so that
// the two times compare the same work.
package steptest

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fedrec/fedrec/client/internal/step"
	"github.com/fedrec/fedrec/model"
)

// The target is a step for 200 interactions against a
// 10,000-item model.
const (
	Items = 10_000
	Rank  = 32
	User  = 200
)

// Input is the benchmark's input: a seeded random model of kind, and a
// user's ratings of User distinct items in item order (for an implicit
// model one purchase each, strength log2(1 + 8) under the default event
// weights; for an explicit one ratings 1 to 5).
func Input(kind model.Kind) (*model.Model, []model.Rating) {
	r := rand.New(rand.NewPCG(3, 4))
	m, err := model.New(kind, Items, Rank, 3, 0.1, r)
	if err != nil {
		panic(err) // the sizes are constants
	}
	items := r.Perm(Items)[:User]
	slices.Sort(items)
	rs := make([]model.Rating, len(items))
	for k, i := range items {
		rs[k] = model.Rating{Item: int32(i), Value: float32(1 + r.IntN(5))}
		if kind == model.Implicit {
			rs[k].Value = 3.169925 // log2(9)
		}
	}
	return m, rs
}

// Benchmark runs the step of a round of a model the device has not
// installed: a fresh trainer (for an implicit model, its Gramian), the
// user's fit and local pass, clipping to norm 1 and noise of std 0.01.
func Benchmark(b *testing.B, kind model.Kind) {
	m, rs := Input(kind)
	r := rand.New(rand.NewPCG(5, 6))
	b.ReportAllocs()
	b.SetBytes(int64(8 * len(m.Params)))
	for b.Loop() {
		t, err := model.NewTrainer(m, model.DefaultTrainConfig())
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := step.Run(t, rs, 1, 0.01, r); err != nil {
			b.Fatal(err)
		}
	}
}
