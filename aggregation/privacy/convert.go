package privacy

import (
	"math"
	"strconv"
)

// Conversion selects how an RDP curve is turned into an (ε, δ) guarantee.
type Conversion uint8

const (
	// ConversionImproved is the conversion of Canonne, Kamath, Steinke 2020
	// (Proposition 12 of arXiv:2004.00010 v4; also Asoodeh et al. 2021, and
	// Balle et al. 2020 Theorem 21), as used by current dp_accounting and
	// Opacus:
	//
	//	ε = rdp(α) + log((α-1)/α) - (log δ + log α)/(α-1),
	//
	// minimised over the orders. Orders at or below 1.01 are skipped
	// (numerically unstable), and a curve whose KL divergence already
	// guarantees δ gives ε = 0. It is never worse than ConversionClassic.
	ConversionImproved Conversion = iota

	// ConversionClassic is Mironov 2017, Proposition 3:
	//
	//	ε = rdp(α) - log δ/(α-1),
	//
	// as used by TF Privacy's rdp_accountant before 2020 and by the numbers
	// quoted in many papers.
	ConversionClassic
)

func (c Conversion) String() string {
	switch c {
	case ConversionImproved:
		return "improved"
	case ConversionClassic:
		return "classic"
	}
	return "Conversion(" + strconv.Itoa(int(c)) + ")"
}

// epsilonFromRDP returns the smallest ε over the orders and the order that
// gives it. 0 < delta < 1 and len(orders) == len(rdp) > 0 are the caller's
// responsibility. Ties go to the first order, as numpy's argmin.
func epsilonFromRDP(conv Conversion, orders, rdp []float64, delta float64) (eps, order float64) {
	best, bestOrder := inf, orders[0]
	logDelta := math.Log(delta)
	for i, a := range orders {
		r := rdp[i]
		var e float64
		if conv == ConversionClassic {
			switch {
			case r == 0:
				// Identical output distributions: (0, 0)-DP.
				e = 0
			default:
				e = r - logDelta/(a-1)
			}
			if math.IsNaN(e) {
				continue
			}
		} else {
			switch {
			case r < 0:
				// Only from numerical trouble at extreme parameters.
				e = 0
			case delta*delta+math.Expm1(-r) > 0:
				// δ <= sqrt(1 - exp(-KL)) already holds.
				e = 0
			case a > 1.01:
				e = r + math.Log1p(-1/a) - math.Log(delta*a)/(a-1)
			default:
				e = inf
			}
		}
		if e < best {
			best, bestOrder = e, a
		}
	}
	return math.Max(0, best), bestOrder
}

// deltaFromRDP returns the smallest δ over the orders for the given ε >= 0,
// and the order that gives it.
func deltaFromRDP(conv Conversion, orders, rdp []float64, eps float64) (delta, order float64) {
	best, bestOrder := inf, orders[0]
	for i, a := range orders {
		r := rdp[i]
		var logDelta float64
		if conv == ConversionClassic {
			logDelta = (a - 1) * (r - eps)
			if r == 0 {
				logDelta = math.Inf(-1)
			}
			if math.IsNaN(logDelta) {
				continue
			}
		} else {
			switch {
			case r <= 0:
				logDelta = math.Inf(-1)
			default:
				logDelta = 0.5 * math.Log1p(-math.Exp(-r))
			}
			if a > 1.01 {
				b := (a-1)*(r-eps+math.Log1p(-1/a)) - math.Log(a)
				logDelta = math.Min(logDelta, b)
			}
		}
		if logDelta < best {
			best, bestOrder = logDelta, a
		}
	}
	return math.Min(math.Exp(best), 1), bestOrder
}
