//go:build !amd64 || purego

package fixedpoint

// useAVX2 is false where there are no AVX2 kernels: the Go loops run.
const useAVX2 = false

func radix8AVX2(x []float64, h int) { radix8Go(x, h) }
func radix4AVX2(x []float64, h int) { radix4Go(x, h) }
func radix2AVX2(x []float64, h int) { radix2Go(x, h) }

func roundBlockAVX2(dst []int8, y []float64, u *[roundBlock / 4]uint64) int {
	panic("fixedpoint: no AVX2 kernels here")
}
