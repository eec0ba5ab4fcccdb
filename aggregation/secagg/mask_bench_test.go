package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkMaskExpand compares mask expansion with raw AES-256-CTR on the
// same machine, under the same conditions: each iteration adds `masks`
// masks of d elements into a vector (applyMasks, one worker) and then runs
// cipher.NewCTR(...).XORKeyStream over a buffer of the same size in bytes
// (width·d bytes per mask, one large call per mask). ns/op covers both. It
// reports the keystream throughput of each, prg-GB/s and aes-GB/s, and
// ratio = prg time / raw time (the goal is at most 2). masks=16 is the
// server's case (tile-major over many masks); masks=1 the worst case. On
// Linux the times are the CPU time of the benchmark's thread, so that
// other processes on a shared machine do not inflate them.
//
//	go test -run '^$' -bench MaskExpand ./aggregation/secagg/
func BenchmarkMaskExpand(b *testing.B) {
	for _, d := range []int{118_592, 1_000_000} {
		for _, bits := range []int{32, 64} {
			for _, masks := range []int{1, 16} {
				b.Run(fmt.Sprintf("d=%d/bits=%d/masks=%d", d, bits, masks), func(b *testing.B) {
					width := maskWidth(bits)
					dst := make([]uint64, d)
					jobs := make([]maskJob, masks)
					blocks := make([]cipher.Block, masks)
					for j := range jobs {
						jobs[j] = newMaskJob([32]byte{byte(j)}, j%2 == 1)
						blocks[j] = jobs[j].block
					}
					buf := make([]byte, width*d)
					iv := make([]byte, aes.BlockSize)
					clock := wallClock
					if haveThreadCPU {
						runtime.LockOSThread()
						defer runtime.UnlockOSThread()
						clock = threadCPU
					}
					expand := func() { applyMasks(dst, jobs, width, 1) }
					aesCTR := func() {
						for _, blk := range blocks {
							cipher.NewCTR(blk, iv).XORKeyStream(buf, buf)
						}
					}
					expand() // touch every page before timing
					aesCTR()
					b.ReportAllocs()
					var prg, raw time.Duration
					for b.Loop() {
						start := clock()
						expand()
						prg += clock() - start
						start = clock()
						aesCTR()
						raw += clock() - start
					}
					bytes := float64(b.N * masks * width * d)
					b.ReportMetric(bytes/float64(prg.Nanoseconds()), "prg-GB/s")
					b.ReportMetric(bytes/float64(raw.Nanoseconds()), "aes-GB/s")
					b.ReportMetric(float64(prg)/float64(raw), "ratio")
				})
			}
		}
	}
}
