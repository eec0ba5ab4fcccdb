package sim

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/aggregation/fixedpoint"
)

// quantAgg is the path of 8-bit uploads, as a cluster runs it: each
// client clips and quantizes its update with the round's
// fixedpoint.Quantizer (the client SDK's code), and the server adds the
// bytes as integers and decodes the sum once (aggregation.Quantized, the
// coordinator's code), then adds central noise if asked. With sum set
// (secure aggregation) the bytes are wrapped into a field of
// QuantFieldBits(cohort) bits and summed by the secagg protocol.
type quantAgg struct {
	p   *privacyPlan
	q   *fixedpoint.Quantizer
	agg *aggregation.Quantized
	buf sync.Pool // *[]int8

	sum       secureSum
	bits      uint
	mu        sync.Mutex
	inputs    map[int][]uint64 // client -> wrapped input, secure only
	secureRes secureResult

	saturated *atomic.Int64 // coordinates clamped to ±QuantMax, whole run
}

func newQuantAgg(p *privacyPlan, dim, cohort int, seed [32]byte, sum secureSum, saturated *atomic.Int64) (*quantAgg, error) {
	q, err := fixedpoint.NewQuantizer(dim, p.clip, seed)
	if err != nil {
		return nil, err
	}
	a := &quantAgg{p: p, q: q, agg: aggregation.NewQuantized(q), saturated: saturated}
	a.buf.New = func() any { b := make([]int8, dim); return &b }
	if sum != nil {
		a.sum, a.bits, a.inputs = sum, fixedpoint.QuantFieldBits(cohort), make(map[int][]uint64)
	}
	return a, nil
}

// bytesPerParam is what a client's update costs on the wire, a parameter.
func (a *quantAgg) bytesPerParam() int64 {
	if a.sum == nil {
		return 1
	}
	return int64(a.bits+7) / 8
}

func (a *quantAgg) add(update []float64, client int, r *rand.Rand) error {
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
	if a.sum == nil {
		return a.agg.AddQuantized(*bp)
	}
	w := make([]uint64, len(*bp))
	fixedpoint.WrapQuantized(w, *bp, a.bits)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inputs[client] = w
	return nil
}

func (a *quantAgg) finish(dst []float64, _ int, r *rand.Rand) error {
	if a.sum != nil {
		// The server learns only the field sum of the survivors' bytes.
		sum, res, err := a.sum(a.inputs, a.bits, r)
		if err != nil {
			return err
		}
		a.secureRes = res
		ints := make([]int64, len(sum))
		fixedpoint.Lift(ints, sum, a.bits)
		if err := a.q.Decode(dst, ints); err != nil {
			return err
		}
		for i := range dst {
			dst[i] /= float64(res.Survivors)
		}
		a.p.noiseMean(dst, float64(res.Survivors), r)
		return nil
	}
	sm, err := a.agg.Result(dst)
	if err != nil {
		return err
	}
	a.p.noiseMean(dst, sm.Weight, r)
	return nil
}
