package secagg

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// Round benchmarks. They are slow at the larger sizes; run them once:
//
//	go test -run '^$' -bench 'Round' -benchtime 1x ./aggregation/secagg/
//
// Each iteration plays a whole round in process with Bits = 32, a SecAgg+
// graph of degree k = 2*ceil(log2 n) and t = k/4 + 1, and reports
// client-ns (mean time one client spends in its four methods),
// server-ns (time in all server methods, including adding the masked
// inputs and unmasking) and unmask-ns (the part spent closing the unmask
// phase: reconstruction and mask regeneration), against
// BenchmarkPlaintextRound's server-ns for the same n and d. The 30% dropouts happen after ShareKeys, the costly
// case for the server: it reconstructs each dropped client's mask key and
// regenerates its pairwise masks with every surviving neighbour.

var benchSizes = []struct{ n, d int }{
	{100, 118_592}, {500, 118_592}, {1000, 118_592},
	{100, 1_000_000}, {500, 1_000_000}, {1000, 1_000_000},
}

func benchDegree(n int) (k, t int) {
	k = 2 * bits.Len(uint(n-1))
	return k, k/4 + 1
}

func BenchmarkRound(b *testing.B) {
	type bcase struct {
		n, d, workers int
		drop          float64
	}
	var cases []bcase
	for _, s := range benchSizes {
		for _, drop := range []float64{0, 0.3} {
			cases = append(cases, bcase{s.n, s.d, 1, drop})
		}
	}
	if p := runtime.GOMAXPROCS(0); p > 1 {
		cases = append(cases, bcase{500, 118_592, p, 0}, bcase{500, 118_592, p, 0.3})
	}
	for _, c := range cases {
		k, t := benchDegree(c.n)
		name := fmt.Sprintf("n=%d/d=%d/drop=%d%%/k=%d/workers=%d", c.n, c.d, int(c.drop*100), k, c.workers)
		b.Run(name, func(b *testing.B) {
			cfg := testConfig(c.n, c.d, 32, k, t)
			sim := simulation{cfg: cfg, seed: 1, workers: c.workers}
			sim.drop[dropAfterShare] = c.drop
			b.SetBytes(int64(8 * c.n * c.d))
			b.ReportAllocs()
			var ct, st, ut time.Duration
			for b.Loop() {
				out, err := sim.run()
				if err != nil {
					b.Fatal(err)
				}
				ct += out.clientTime / time.Duration(c.n)
				st += out.serverTime
				ut += out.unmaskTime
			}
			b.ReportMetric(float64(ct.Nanoseconds())/float64(b.N), "client-ns")
			b.ReportMetric(float64(st.Nanoseconds())/float64(b.N), "server-ns")
			b.ReportMetric(float64(ut.Nanoseconds())/float64(b.N), "unmask-ns")
		})
	}
}

// BenchmarkPlaintextRound is the baseline: the server checks and adds n
// plaintext vectors, as it would without secure aggregation.
func BenchmarkPlaintextRound(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(fmt.Sprintf("n=%d/d=%d", s.n, s.d), func(b *testing.B) {
			x := make([]uint64, s.d)
			sum := make([]uint64, s.d)
			r := rand.New(rand.NewPCG(1, 2))
			b.SetBytes(int64(8 * s.n * s.d))
			b.ReportAllocs()
			var st time.Duration
			for b.Loop() {
				clear(sum)
				for range s.n {
					for i := range x { // the client's input, not timed
						x[i] = r.Uint64() & 0xffffffff
					}
					start := time.Now()
					if err := checkRange(x, 32); err != nil {
						b.Fatal(err)
					}
					for i, v := range x {
						sum[i] += v
					}
					st += time.Since(start)
				}
				reduce(sum, 32)
			}
			b.ReportMetric(float64(st.Nanoseconds())/float64(b.N), "server-ns")
		})
	}
}

func BenchmarkShamir(b *testing.B) {
	for _, c := range []struct{ holders, t int }{{20, 6}, {100, 51}} {
		xs := make([]uint64, c.holders)
		for i := range xs {
			xs[i] = uint64(i + 1)
		}
		shares := make([][ShareLen]uint64, c.holders)
		secret := [secretLen]byte{1, 2, 3}
		r := rand.NewChaCha8([32]byte{})
		b.Run(fmt.Sprintf("deal/holders=%d/t=%d", c.holders, c.t), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := shamirDeal(&secret, c.t, xs, r, shares); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("combine/t=%d", c.t), func(b *testing.B) {
			ys := make([][]uint64, c.t)
			for i := range ys {
				ys[i] = shares[i][:]
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := shamirCombine(xs[:c.t], ys); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
