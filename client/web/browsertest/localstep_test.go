package browsertest

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/model"
)

// BenchmarkLocalStep is a device's training step in a round at the
// issue's sizes (an implicit model of 10,000 items at rank 32, a user with
// 200 purchases): fit the user, one local pass, clip, add a noise share,
// as client.localStep does (client's BenchmarkLocalStep/implicit). It
// lives here because this file builds for js/wasm, and client's tests do
// not: TestLocalStepInBrowser runs it in Chromium, and
//
//	go test -run '^$' -bench LocalStep ./client/web/browsertest
//
// natively.
func BenchmarkLocalStep(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	m, err := model.New(model.Implicit, 10_000, 32, 0, 0.1, r)
	if err != nil {
		b.Fatal(err)
	}
	// One purchase of each of 200 items, sorted by item as the SDK
	// passes them: strength log2(1 + 8).
	items := r.Perm(10_000)[:200]
	slices.Sort(items)
	var rs []model.Rating
	for _, i := range items {
		rs = append(rs, model.Rating{Item: int32(i), Value: 3.17})
	}
	b.ReportAllocs()
	b.SetBytes(int64(8 * len(m.Params)))
	for b.Loop() {
		t, err := model.NewTrainer(m, model.DefaultTrainConfig())
		if err != nil {
			b.Fatal(err)
		}
		delta := make([]float64, len(m.Params))
		if _, err := t.LocalUpdate(delta, rs, r); err != nil {
			b.Fatal(err)
		}
		aggregation.Clip(delta, 1)
		privacy.AddGaussian(delta, 0.01, r)
	}
}
