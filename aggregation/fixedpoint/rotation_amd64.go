//go:build amd64 && !purego

package fixedpoint

import "golang.org/x/sys/cpu"

// useAVX2 routes the transform's stages with h >= 4 to the AVX2 kernels of
// rotation_amd64.s, which compute the same sums four at a time: the same
// adds and subtracts in the same order, so the result is the same to the
// bit (TestRadixAVX2). A device spends most of its quantization here.
var useAVX2 = cpu.X86.HasAVX2

// radix8AVX2, radix4AVX2 and radix2AVX2 are radix8, radix4 and radix2 for
// h a multiple of 4.
//
//go:noescape
func radix8AVX2(x []float64, h int)

//go:noescape
func radix4AVX2(x []float64, h int)

//go:noescape
func radix2AVX2(x []float64, h int)

// roundBlockAVX2 is roundBytes's loop over roundBlock values, the draw
// u[k] rounding values 4k to 4k+3, and returns how many it clamped.
//
//go:noescape
func roundBlockAVX2(dst []int8, y []float64, u *[roundBlock / 4]uint64) int
