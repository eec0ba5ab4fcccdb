package fixedpoint

import "sync"

// scratchPools holds the float buffers of Encoder and Quantizer, by
// length, shared by all of them: a round's quantizer is new every round
// (its rotation is the round's), and a device process that plays many
// devices would otherwise take fresh pages from the kernel for every
// update (first touches cost more than the rotation itself).
var scratchPools pools

type pools struct{ m sync.Map } // length → *sync.Pool of *[]float64

// scratch returns a buffer of n floats, of unspecified contents, to put
// back when done.
func scratch(n int) *[]float64 {
	p, _ := scratchPools.m.LoadOrStore(n, &sync.Pool{New: func() any {
		b := make([]float64, n)
		return &b
	}})
	return p.(*sync.Pool).Get().(*[]float64)
}

func (p *pools) put(b *[]float64) {
	if q, ok := p.m.Load(len(*b)); ok {
		q.(*sync.Pool).Put(b)
	}
}
