package sim

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/aggregation/fixedpoint"
)

// quantAgg is the plaintext path of 8-bit uploads, as a cluster runs it:
// each client clips and quantizes its update with the round's
// fixedpoint.Quantizer (the client SDK's code), and the server adds the
// bytes as integers and decodes the sum once (aggregation.Quantized, the
// coordinator's code), then adds central noise if asked.
type quantAgg struct {
	p   *privacyPlan
	q   *fixedpoint.Quantizer
	agg *aggregation.Quantized
	buf sync.Pool // *[]int8

	saturated *atomic.Int64 // coordinates clamped to ±QuantMax, whole run
}

func newQuantAgg(p *privacyPlan, dim int, seed [32]byte, saturated *atomic.Int64) (*quantAgg, error) {
	q, err := fixedpoint.NewQuantizer(dim, p.clip, seed)
	if err != nil {
		return nil, err
	}
	a := &quantAgg{p: p, q: q, agg: aggregation.NewQuantized(q), saturated: saturated}
	a.buf.New = func() any { b := make([]int8, dim); return &b }
	return a, nil
}

func (a *quantAgg) add(update []float64, _ int, r *rand.Rand) error {
	bp := a.buf.Get().(*[]int8)
	defer a.buf.Put(bp)
	norm, sat, err := a.q.Quantize(*bp, update, r)
	if err != nil {
		return err
	}
	if a.p.clipper != nil {
		a.p.observe(norm)
	}
	a.saturated.Add(int64(sat))
	return a.agg.AddQuantized(*bp)
}

func (a *quantAgg) finish(dst []float64, _ int, r *rand.Rand) error {
	sm, err := a.agg.Result(dst)
	if err != nil {
		return err
	}
	a.p.noiseMean(dst, sm.Weight, r)
	return nil
}
