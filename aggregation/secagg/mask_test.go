package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
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

// TestAddInput checks that addInput adds in-range vectors and leaves the
// sum untouched when a value is out of range, wherever it is.
func TestAddInput(t *testing.T) {
	for _, bits := range []int{1, 16, 32, 63, 64} {
		for _, bad := range []int{-1, 0, 5, 9} { // index of the out-of-range value; -1 for none
			t.Run(fmt.Sprintf("bits=%d/bad=%d", bits, bad), func(t *testing.T) {
				sum := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
				v := make([]uint64, len(sum))
				for i := range v {
					v[i] = uint64(i*7+1) & valueMask(bits)
				}
				want := slices.Clone(sum)
				if bad >= 0 && bits < 64 {
					v[bad] = 1 << bits
				} else {
					for i := range want {
						want[i] += v[i]
					}
				}
				err := addInput(sum, v, bits)
				if wantErr := bad >= 0 && bits < 64; wantErr != errors.Is(err, ErrOutOfRange) {
					t.Fatalf("addInput error = %v, want ErrOutOfRange: %v", err, wantErr)
				}
				if !slices.Equal(sum, want) {
					t.Fatalf("addInput sum = %v, want %v", sum, want)
				}
			})
		}
	}
}
