package fixedpoint

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchDims are the model sizes benchmarked: 3,706 items × 32 factors
// (padded to 131,072) and a million parameters (padded to 1,048,576).
var benchDims = []int{3706 * 32, 1_000_000}

// quantDims are the update sizes of the 8-bit upload benchmarked: those of
// benchDims and ml-latest-small's model (9,724 items at rank 32, two
// windows of 262,144), what a device of fedrec bench quantizes.
var quantDims = append(benchDims, 9724*33+1)

func BenchmarkEncode(b *testing.B) {
	for _, dim := range benchDims {
		b.Run(fmt.Sprintf("d=%d", dim), func(b *testing.B) {
			e := newEncoder(b, Params{Dim: dim, Clip: 1, MaxClients: 1000, NoiseStd: 0.01})
			r := rand.New(rand.NewPCG(1, 2))
			x := vecWithNorm(r, dim, 2, false)
			dst := make([]int64, e.PaddedDim())
			b.SetBytes(int64(8 * dim))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Encode(dst, x, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, dim := range benchDims {
		b.Run(fmt.Sprintf("d=%d", dim), func(b *testing.B) {
			e := newEncoder(b, Params{Dim: dim, Clip: 1, MaxClients: 1000, NoiseStd: 0.01})
			r := rand.New(rand.NewPCG(1, 2))
			ints := make([]int64, e.PaddedDim())
			if _, err := e.Encode(ints, vecWithNorm(r, dim, 2, false), r); err != nil {
				b.Fatal(err)
			}
			sum := make([]uint64, e.PaddedDim())
			if err := e.Wrap(sum, ints); err != nil {
				b.Fatal(err)
			}
			dst := make([]float64, dim)
			b.SetBytes(int64(8 * dim))
			b.ReportAllocs()
			for b.Loop() {
				if err := e.Decode(dst, sum); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkWrapAddMod(b *testing.B) {
	e := newEncoder(b, Params{Dim: benchDims[0], Clip: 1, MaxClients: 1000})
	x := make([]int64, e.PaddedDim())
	w := make([]uint64, e.PaddedDim())
	sum := make([]uint64, e.PaddedDim())
	b.SetBytes(int64(8 * e.PaddedDim()))
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Wrap(w, x); err != nil {
			b.Fatal(err)
		}
		if err := AddMod(sum, w, 32); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFWHT(b *testing.B) {
	for _, n := range []int{1 << 17, 1 << 18, 1 << 20} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			x := randVec(rand.New(rand.NewPCG(1, 2)), n)
			b.SetBytes(int64(8 * n))
			b.ReportAllocs()
			for b.Loop() {
				fwht(x)
				// Keep the values bounded across iterations: H·H = n·I.
				if x[0] > 1e200 || x[0] < -1e200 {
					b.StopTimer()
					x = randVec(rand.New(rand.NewPCG(1, 2)), n)
					b.StartTimer()
				}
			}
		})
	}
}

func BenchmarkQuantize(b *testing.B) {
	for _, dim := range quantDims {
		b.Run(fmt.Sprintf("d=%d", dim), func(b *testing.B) {
			q := newQuantizer(b, dim, 1)
			r := rand.New(rand.NewPCG(1, 2))
			x := vecWithNorm(r, dim, 0.5, false)
			dst := make([]int8, dim)
			b.SetBytes(int64(8 * dim))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := q.Quantize(dst, x, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkQuantizedAdd(b *testing.B) {
	for _, dim := range benchDims {
		b.Run(fmt.Sprintf("d=%d", dim), func(b *testing.B) {
			q := newQuantizer(b, dim, 1)
			r := rand.New(rand.NewPCG(1, 2))
			v := make([]int8, dim)
			if _, _, err := q.Quantize(v, vecWithNorm(r, dim, 0.5, false), r); err != nil {
				b.Fatal(err)
			}
			sum := make([]int64, dim)
			b.SetBytes(int64(dim))
			b.ReportAllocs()
			for b.Loop() {
				if err := q.Check(v); err != nil {
					b.Fatal(err)
				}
				_ = q.Add(sum, v)
			}
		})
	}
}

// BenchmarkRoundBytes is the 8-bit quantizer's last pass: clamp and
// round at random to signed bytes.
func BenchmarkRoundBytes(b *testing.B) {
	const n = 9724*33 + 1
	r := rand.New(rand.NewPCG(1, 2))
	y := randVec(r, n)
	for i := range y {
		y[i] *= 30
	}
	dst := make([]int8, n)
	b.SetBytes(8 * n)
	b.ReportAllocs()
	for b.Loop() {
		roundBytes(dst, y, r)
	}
}
