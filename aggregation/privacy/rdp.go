package privacy

import "math"

// This file holds the Rényi DP curves of the mechanisms the accountant knows.
// Every function returns the RDP of ONE application of the mechanism at one
// order; the accountant multiplies by the step count. Each does the same
// computation as a published accountant, so that the numbers can be compared
// with it:
//
//   - rdpPoissonGaussian: dp_accounting rdp_privacy_accountant.py
//     _compute_rdp_poisson_subsampled_gaussian (Mironov, Talwar, Zhang 2019,
//     "Rényi Differential Privacy of the Sampled Gaussian Mechanism", Sec. 3.3).
//   - rdpFixedSizeGaussian: dp_accounting _compute_rdp_sample_wor_gaussian
//     (Wang, Balle, Kasiviswanathan 2019, Theorem 27 and Corollary 10).
//   - rdpPoissonSkellam: google-research/federated distributed_dp
//     accounting_utils.py skellam_epsilon (Agarwal, Kairouz, Liu 2021, the
//     multi-dimensional Skellam bound, amplified by Poisson sampling with Zhu
//     and Wang 2019, Theorem 5), with fractional orders interpolated.

var inf = math.Inf(1)

// logAdd returns log(exp(x) + exp(y)).
func logAdd(x, y float64) float64 {
	a, b := math.Min(x, y), math.Max(x, y)
	if math.IsInf(a, -1) {
		return b
	}
	return math.Log1p(math.Exp(a-b)) + b
}

// logSubSign returns the sign and log-magnitude of exp(x) - exp(y).
func logSubSign(x, y float64) (positive bool, mag float64) {
	switch {
	case x > y:
		return true, x + math.Log1p(-math.Exp(y-x))
	case x < y:
		return false, y + math.Log1p(-math.Exp(x-y))
	default:
		return true, math.Inf(-1)
	}
}

// lgamma is log|Γ(x)|, as scipy's gammaln.
func lgamma(x float64) float64 {
	v, _ := math.Lgamma(x)
	return v
}

// logComb returns log|C(n, k)| for real n, as dp_accounting's _log_comb.
func logComb(n, k float64) float64 {
	return lgamma(n+1) - lgamma(k+1) - lgamma(n-k+1)
}

// logErfc returns log(erfc(x)), accurate where erfc underflows.
func logErfc(x float64) float64 {
	if x < 25 {
		return math.Log(math.Erfc(x))
	}
	// Asymptotic series: erfc(x) = exp(-x²)/(x√π) · Σ (-1)^k (2k-1)!!/(2x²)^k.
	// At x >= 25 the terms fall by a factor of at least 100 each; six are
	// far more than double precision needs.
	t := 1 / (2 * x * x)
	s, term := 1.0, 1.0
	for k := 1; k <= 6; k++ {
		term *= -float64(2*k-1) * t
		s += term
	}
	return -x*x - math.Log(x) - 0.5*math.Log(math.Pi) + math.Log(s)
}

// rdpPoissonGaussian is the RDP at order alpha of the Gaussian mechanism with
// noise multiplier sigma applied to a Poisson sample of rate q.
func rdpPoissonGaussian(q, sigma, alpha float64) float64 {
	switch {
	case q == 0:
		return 0
	case math.IsInf(alpha, 1) || sigma == 0:
		return inf
	case q == 1:
		return alpha / (2 * sigma * sigma)
	case alpha == math.Trunc(alpha):
		return logAInt(q, sigma, int(alpha)) / (alpha - 1)
	default:
		return logAFrac(q, sigma, alpha) / (alpha - 1)
	}
}

// logAInt is log(A_alpha) for integer alpha and 0 < q < 1: the exact binomial
// expansion Σ_i C(α,i) q^i (1-q)^(α-i) exp((i²-i)/(2σ²)), summed in log space.
func logAInt(q, sigma float64, alpha int) float64 {
	a := float64(alpha)
	logq, log1mq := math.Log(q), math.Log1p(-q)
	s2 := 2 * sigma * sigma
	logA := math.Inf(-1)
	for i := 0; i <= alpha; i++ {
		fi := float64(i)
		c := logComb(a, fi) + fi*logq + (a-fi)*log1mq
		logA = logAdd(logA, c+(fi*fi-fi)/s2)
	}
	return logA
}

// maxFracSteps bounds the series for fractional orders, as
// dp_accounting's _MAX_STEPS_LOG_A_FRAC.
const maxFracSteps = 1000

// logAFrac is log(A_alpha) for fractional alpha and 0 < q < 1, by the two
// series of Mironov, Talwar, Zhang 2019 Sec. 3.3, split at
// z0 = σ² log(1/q - 1) + 1/2. Terms are added in absolute value, as current
// dp_accounting does, which can only over-estimate A. If the series has not
// converged after maxFracSteps terms the order is excluded (+Inf).
func logAFrac(q, sigma, alpha float64) float64 {
	logA0, logA1 := math.Inf(-1), math.Inf(-1)
	z0 := sigma*sigma*math.Log(1/q-1) + 0.5
	logq, log1mq := math.Log(q), math.Log1p(-q)
	s2 := 2 * sigma * sigma
	sq2s := math.Sqrt2 * sigma
	lastS0, lastS1 := math.Inf(-1), math.Inf(-1)
	for n := 0; n < maxFracSteps; n++ {
		i := float64(n)
		coef := logComb(alpha, i)
		j := alpha - i
		t0 := coef + i*logq + j*log1mq
		t1 := coef + j*logq + i*log1mq
		e0 := math.Log(0.5) + logErfc((i-z0)/sq2s)
		e1 := math.Log(0.5) + logErfc((z0-j)/sq2s)
		s0 := t0 + (i*i-i)/s2 + e0
		s1 := t1 + (j*j-j)/s2 + e1
		logA0 = logAdd(logA0, s0)
		logA1 = logAdd(logA1, s1)
		total := logAdd(logA0, logA1)
		if s0 < lastS0 && s1 < lastS1 && math.Max(s0, s1) < total-30 {
			return total
		}
		lastS0, lastS1 = s0, s1
	}
	return inf
}

// rdpFixedSizeGaussian is the RDP at order alpha of the Gaussian mechanism
// with noise multiplier sigma applied to a uniformly random subset of fixed
// size m = q·N, under the replace-one relation (Wang, Balle, Kasiviswanathan
// 2019, Theorem 27). Fractional orders interpolate the cumulant generating
// function between the neighbouring integers (their Corollary 10).
func rdpFixedSizeGaussian(q, sigma, alpha float64) float64 {
	switch {
	case q == 0:
		return 0
	case math.IsInf(alpha, 1) || sigma == 0:
		return inf
	case q == 1:
		return alpha / (2 * sigma * sigma)
	case alpha == math.Trunc(alpha):
		return worLogA(q, sigma, int(alpha)) / (alpha - 1)
	}
	lo, hi := math.Floor(alpha), math.Ceil(alpha)
	x := worLogA(q, sigma, int(lo))
	y := worLogA(q, sigma, int(hi))
	t := alpha - lo
	return ((1-t)*x + t*y) / (alpha - 1)
}

// worExactMax is the largest order for which Theorem 27 is evaluated exactly,
// at O(α²) cost; above it the cheaper, looser bound is used, as dp_accounting.
const worExactMax = 256

// worLogA is (α-1)·RDP(α) for sampling without replacement, integer α.
func worLogA(q, sigma float64, alpha int) float64 {
	if alpha == 1 {
		return 0
	}
	a := float64(alpha)
	s2 := 2 * sigma * sigma
	cgf := func(x float64) float64 { return x * (x + 1) / s2 } // (x)·RDP_Gauss(x+1)
	f2 := 2 / s2                                               // RDP_Gauss(2)
	logq := math.Log(q)
	logF2m1 := f2 + math.Log1p(-math.Exp(-f2))
	second := 2*logq + logComb(a, 2) + math.Min(math.Log(4)+logF2m1, f2+math.Ln2)

	logA := 0.0
	if alpha <= worExactMax {
		deltas := forwardDiffs(cgf, alpha)
		for i := 2; i <= alpha; i++ {
			var s float64
			if i == 2 {
				s = second
			} else {
				lo := deltas[2*(i/2)-1]
				hi := deltas[2*((i+1)/2)-1]
				s = math.Log(4) + 0.5*(lo+hi)
				s = math.Min(s, math.Ln2+cgf(float64(i-1)))
				s += float64(i)*logq + logComb(a, float64(i))
			}
			logA = logAdd(logA, s)
		}
		return logA
	}
	for i := 2; i <= alpha; i++ {
		var s float64
		if i == 2 {
			s = second
		} else {
			fi := float64(i)
			s = math.Ln2 + cgf(fi-1) + fi*logq + logComb(a, fi)
		}
		logA = logAdd(logA, s)
	}
	return logA
}

// forwardDiffs returns the log-magnitudes of the forward differences of
// exp(fun) at 0 up to order n+1, exactly as dp_accounting's
// _get_forward_diffs, including its leading exp(0) = 1 entry.
func forwardDiffs(fun func(float64) float64, n int) []float64 {
	vec := make([]float64, n+3)
	pos := make([]bool, n+3)
	for i := range pos {
		pos[i] = true
	}
	for i := 1; i < n+3; i++ {
		vec[i] = fun(float64(i - 1))
	}
	deltas := make([]float64, n+2)
	for i := 0; i < n+2; i++ {
		diffInLog(vec, pos, n+2-i)
		deltas[i] = vec[0]
	}
	return deltas
}

// diffInLog replaces the first n entries of the signed log-space vector
// (vec, pos) with their forward differences, as dp_accounting's
// _stable_inplace_diff_in_log.
func diffInLog(vec []float64, pos []bool, n int) {
	for j := 0; j < n; j++ {
		if pos[j] == pos[j+1] {
			pos[j], vec[j] = logSubSign(vec[j+1], vec[j])
			if !pos[j+1] {
				pos[j] = !pos[j]
			}
		} else {
			vec[j] = logAdd(vec[j], vec[j+1])
			pos[j] = pos[j+1]
		}
	}
}

// skellamRDP is the RDP at order alpha of adding symmetric Skellam noise of
// total variance mu to an integer vector query with L1 and L2 sensitivities
// l1 and l2 (all in the integer domain):
//
//	ε(α) = α·Δ₂²/(2μ) + min( ((2α-1)·Δ₂² + 6·Δ₁) / (4μ²), 3·Δ₁/(2μ) ).
//
// This is the paper's bound for Sk(μ/2, μ/2) noise (variance μ), in the form
// of google-research/federated's _skellam_rdp with the scale folded into the
// integer-domain quantities.
func skellamRDP(alpha, mu, l1, l2 float64) float64 {
	r := alpha * l2 * l2 / (2 * mu)
	return r + math.Min(((2*alpha-1)*l2*l2+6*l1)/(4*mu*mu), 3*l1/(2*mu))
}

// rdpPoissonSkellam is the RDP at order alpha of the Skellam mechanism on a
// Poisson sample of rate q. At integer orders it is the smaller of the
// amplified bound (Zhu and Wang 2019, Theorem 5) and the unamplified one, as
// the reference implementation. The amplification bound needs integer
// orders, so a fractional order interpolates (α-1)·ε(α) linearly between the
// neighbouring integers: (α-1)·D_α is convex in α for any pair of
// distributions, so the chord lies above it (the argument of Wang, Balle,
// Kasiviswanathan 2019, Corollary 10). Below order 2 the chord runs from
// (α-1)·D_α = 0 at α = 1.
func rdpPoissonSkellam(q, mu, l1, l2, alpha float64) float64 {
	switch {
	case q == 0 || (l1 == 0 && l2 == 0):
		return 0
	case math.IsInf(alpha, 1) || mu == 0:
		return inf
	}
	cgf := func(a int) float64 { // (a-1)·ε(a) for integer a >= 1
		if a == 1 {
			return 0
		}
		fa := float64(a)
		r := skellamRDP(fa, mu, l1, l2)
		if q < 1 {
			eps := func(x float64) float64 { return skellamRDP(x, mu, l1, l2) }
			r = math.Min(subsampledRDP(a, q, eps), r)
		}
		return (fa - 1) * r
	}
	if alpha == math.Trunc(alpha) {
		return cgf(int(alpha)) / (alpha - 1)
	}
	lo := math.Floor(alpha)
	t := alpha - lo
	return ((1-t)*cgf(int(lo)) + t*cgf(int(lo)+1)) / (alpha - 1)
}

// subsampledRDP is the general upper bound of Zhu and Wang 2019, "Poisson
// Subsampled Rényi Differential Privacy", Theorem 5, at integer order alpha
// >= 2, for a base mechanism whose RDP curve is eps:
//
//	1/(α-1) · log( (1-q)^(α-1)·(αq-q+1) + C(α,2)·q²·(1-q)^(α-2)·e^ε(2)
//	               + 3·Σ_{l=3..α} C(α,l)·(1-q)^(α-l)·q^l·e^((l-1)·ε(l)) ).
func subsampledRDP(alpha int, q float64, eps func(float64) float64) float64 {
	a := float64(alpha)
	logq, log1mq := math.Log(q), math.Log1p(-q)
	sum := (a-1)*log1mq + math.Log(a*q-q+1)
	sum = logAdd(sum, logComb(a, 2)+2*logq+(a-2)*log1mq+eps(2))
	for l := 3; l <= alpha; l++ {
		fl := float64(l)
		sum = logAdd(sum, math.Log(3)+(fl-1)*eps(fl)+logComb(a, fl)+(a-fl)*log1mq+fl*logq)
	}
	return sum / (a - 1)
}
