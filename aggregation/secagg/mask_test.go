package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
)

// TestMaskMatchesKeystream checks the mask against AES-256-CTR read
// directly, across tile and worker boundaries and both widths.
func TestMaskMatchesKeystream(t *testing.T) {
	seed := [32]byte{7, 7, 7}
	for _, bits := range []int{1, 32, 33, 64} {
		for _, d := range []int{1, 3, 5, maskTile - 1, maskTile + 3, 3*maskTile + 17} {
			for _, workers := range []int{1, 2, 5} {
				t.Run(fmt.Sprintf("bits=%d/d=%d/workers=%d", bits, d, workers), func(t *testing.T) {
					w := maskWidth(bits)
					ks := make([]byte, d*w)
					blk, _ := aes.NewCipher(seed[:])
					cipher.NewCTR(blk, make([]byte, 16)).XORKeyStream(ks, ks)
					want := make([]uint64, d)
					for i := range want {
						if w == 4 {
							want[i] = uint64(binary.LittleEndian.Uint32(ks[4*i:]))
						} else {
							want[i] = binary.LittleEndian.Uint64(ks[8*i:])
						}
					}
					got := make([]uint64, d)
					applyMasks(got, []maskJob{newMaskJob(seed, false)}, w, workers)
					if !slices.Equal(got, want) {
						t.Fatalf("applyMasks differs from the keystream")
					}
					applyMasks(got, []maskJob{newMaskJob(seed, true)}, w, workers)
					if slices.ContainsFunc(got, func(v uint64) bool { return v != 0 }) {
						t.Fatalf("adding and subtracting a mask left a non-zero value")
					}
				})
			}
		}
	}
}
