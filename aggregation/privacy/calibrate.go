package privacy

// MaxNoiseMultiplier bounds the search of NoiseForEpsilon.
const MaxNoiseMultiplier = 1e6

// calibrationTol is the relative width of the final bracket in
// NoiseForEpsilon.
const calibrationTol = 1e-6

// NoiseForEpsilon returns the smallest noise multiplier z such that steps
// rounds of the Gaussian mechanism on a Poisson sample of rate q are
// (targetEps, delta)-DP under the default Config, and the optimal order at
// that z. z is found by bisection to a relative precision of 1e-6 and always
// meets the target.
func NoiseForEpsilon(targetEps, delta, q float64, steps int) (z, order float64, err error) {
	a, err := NewAccountant(Config{})
	if err != nil {
		return 0, 0, err
	}
	return a.NoiseForEpsilon(targetEps, delta, q, steps)
}

// NoiseForEpsilon returns the smallest noise multiplier z such that the
// ledger followed by steps rounds of the Gaussian mechanism on a Poisson
// sample of rate q is (targetEps, delta)-DP, with the accountant's orders and
// conversion, and the optimal order at that z. With an empty ledger this is
// plain calibration; with a non-empty one it spends the remaining budget.
// Adding the returned z with AddSampledGaussian(q, z, steps) meets the target.
// It returns ErrUnreachable if no z up to MaxNoiseMultiplier does.
func (a *Accountant) NoiseForEpsilon(targetEps, delta, q float64, steps int) (z, order float64, err error) {
	if err := checkNonNeg("targetEps", targetEps); err != nil {
		return 0, 0, err
	}
	if err := checkDelta("delta", delta); err != nil {
		return 0, 0, err
	}
	if err := checkUnit("q", q); err != nil {
		return 0, 0, err
	}
	if steps < 0 {
		return 0, 0, argErr("steps", float64(steps), ">= 0")
	}
	if err := (Entry{Mechanism: PoissonGaussian}).validate(a.cfg.Neighboring); err != nil {
		return 0, 0, err
	}
	orders := a.cfg.Orders
	r := make([]float64, len(orders))
	var buf []float64
	eval := func(z float64) (float64, float64) {
		e := Entry{Mechanism: PoissonGaussian, SamplingRate: q, NoiseMultiplier: z, Steps: steps}
		for i, o := range orders {
			r[i] = rdpPoissonGaussian(q, z, o)
		}
		buf = a.totalWith(buf, e, r)
		return epsilonFromRDP(a.cfg.Conversion, orders, buf, delta)
	}

	if q == 0 || steps == 0 {
		eps, o := eval(0)
		if eps > targetEps {
			return 0, 0, ErrUnreachable
		}
		return 0, o, nil
	}
	lo, hi := 0.0, 1.0
	epsHi, oHi := eval(hi)
	for epsHi > targetEps {
		lo, hi = hi, 2*hi
		if hi > MaxNoiseMultiplier {
			return 0, 0, ErrUnreachable
		}
		epsHi, oHi = eval(hi)
	}
	for hi-lo > calibrationTol*hi {
		mid := lo + (hi-lo)/2
		if eps, o := eval(mid); eps <= targetEps {
			hi, oHi = mid, o
		} else {
			lo = mid
		}
	}
	return hi, oHi, nil
}
