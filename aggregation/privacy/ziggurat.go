package privacy

import "math"

// The ziggurat of Marsaglia and Tsang (2000, "The Ziggurat Method for
// Generating Random Variables", J. Statistical Software 5(8)) with 128
// layers, the one Go's math/rand/v2 NormFloat64 draws: the tables are
// built at start by the paper's zigset, which gives NormFloat64's own
// tables, so that AddGaussian's block sampler gives, word for word, the
// deviates NormFloat64 gives (TestNormalsMatchNormFloat64). zigK holds the
// acceptance bounds on the 32-bit draw, zigW the layer widths scaled by
// 2⁻³¹ and zigF the density at each layer.

// zigR is where the base layer's tail starts; zigV is the area of each
// layer.
const (
	zigR = 3.442619855899
	zigV = 9.91256303526217e-3
)

var zigK, zigW, zigF = zigTables()

func zigTables() (k [128]uint32, w, f [128]float32) {
	const m = 1 << 31
	d, t := zigR, zigR
	q := zigV / math.Exp(-0.5*d*d)
	k[0] = uint32(d / q * m)
	w[0], w[127] = float32(q/m), float32(d/m)
	f[0], f[127] = 1, float32(math.Exp(-0.5*d*d))
	for i := 126; i >= 1; i-- {
		d = math.Sqrt(-2 * math.Log(zigV/d+math.Exp(-0.5*d*d)))
		k[i+1] = uint32(d / t * m)
		t = d
		f[i] = float32(math.Exp(-0.5 * d * d))
		w[i] = float32(d / m)
	}
	return k, w, f
}
