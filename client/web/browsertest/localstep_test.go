package browsertest

import (
	"testing"

	"github.com/fedrec/fedrec/client/internal/step/steptest"
	"github.com/fedrec/fedrec/model"
)

// BenchmarkLocalStep is client's BenchmarkLocalStep (one definition,
// steptest.Benchmark). It is here too because this file builds for
// js/wasm, and client's tests do not: TestLocalStepInBrowser runs it in
// Chromium, and
//
//	go test -run '^$' -bench LocalStep ./client/web/browsertest
//
// natively.
func BenchmarkLocalStep(b *testing.B) {
	for _, kind := range []model.Kind{model.Explicit, model.Implicit} {
		b.Run(kind.String(), func(b *testing.B) { steptest.Benchmark(b, kind) })
	}
}
