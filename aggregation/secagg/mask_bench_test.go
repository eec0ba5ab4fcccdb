package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"testing"
)

// BenchmarkMaskExpand measures adding one mask into a vector against raw
// AES-256-CTR XORKeyStream over a buffer of the same size in bytes
// (8 bytes per element). At Bits <= 32 a mask consumes 4 bytes of keystream
// per element, so it can beat the raw figure.
func BenchmarkMaskExpand(b *testing.B) {
	for _, d := range []int{118_592, 1_000_000} {
		for _, bits := range []int{32, 64} {
			b.Run(fmt.Sprintf("d=%d/bits=%d", d, bits), func(b *testing.B) {
				dst := make([]uint64, d)
				jobs := []maskJob{newMaskJob([32]byte{1}, false)}
				b.SetBytes(int64(8 * d))
				b.ReportAllocs()
				for b.Loop() {
					applyMasks(dst, jobs, maskWidth(bits), 1)
				}
			})
		}
		b.Run(fmt.Sprintf("d=%d/raw-aes-ctr", d), func(b *testing.B) {
			buf := make([]byte, 8*d)
			key := [32]byte{1}
			blk, _ := aes.NewCipher(key[:])
			iv := make([]byte, aes.BlockSize)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				cipher.NewCTR(blk, iv).XORKeyStream(buf, buf)
			}
		})
	}
}
