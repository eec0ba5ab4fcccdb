package client

import (
	"fmt"
	"math"

	"github.com/fedrec/fedrec/aggregation/privacy"
)

// ledger is the device's own account of the privacy it has spent: one
// charge per round it gave an update to, composed with the Rényi-DP
// accountant of aggregation/privacy (the Poisson-sampled Gaussian
// mechanism, or the Poisson-sampled Skellam one for a distributed-DP round;
// add-or-remove-one neighbours, i.e. user-level privacy for this device's
// whole contribution) and converted to ε at the policy's δ.
//
// A charge is written to the store, and fsynced, before the update leaves
// the SDK, and it is never refunded: once bytes may have been sent, the
// privacy is spent. A crash can only make the ledger over-count.
type ledger struct {
	delta float64
	// carried is the ε spent by stores that were lost (Reset after a
	// rollback or a removal, kept by the Anchor): it is added to what the
	// charges compose to (basic composition: the total holds at 2δ).
	carried float64
	acct    *privacy.Accountant
	n       int // charges folded into acct
}

func newLedger(delta float64) *ledger { return &ledger{delta: delta} }

// sync folds the charges not yet in the accountant into it.
func (l *ledger) sync(charges []charge) error {
	if l.acct == nil || l.n > len(charges) {
		a, err := privacy.NewAccountant(privacy.Config{})
		if err != nil {
			return fmt.Errorf("client: ledger: %w", err)
		}
		l.acct, l.n = a, 0
	}
	for _, c := range charges[l.n:] {
		if err := l.acct.Add(c.entry()); err != nil {
			return fmt.Errorf("client: ledger: round %d: %w", c.Round, err)
		}
		l.n++
	}
	return nil
}

// spent returns ε at the policy's δ of the charges so far.
func (l *ledger) spent(charges []charge) (float64, error) {
	if len(charges) == 0 {
		return l.carried, nil
	}
	if err := l.sync(charges); err != nil {
		return 0, err
	}
	eps, _, err := l.acct.Epsilon(l.delta)
	if err != nil {
		return 0, fmt.Errorf("client: ledger: %w", err)
	}
	return l.carried + eps, nil
}

// after returns ε at δ if c were charged on top of charges.
func (l *ledger) after(charges []charge, c charge) (float64, error) {
	if err := l.sync(charges); err != nil {
		return 0, err
	}
	a, err := privacy.Rebuild(l.acct.Config(), l.acct.Entries())
	if err != nil {
		return 0, fmt.Errorf("client: ledger: %w", err)
	}
	if err := a.Add(c.entry()); err != nil {
		return 0, fmt.Errorf("client: ledger: %w", err)
	}
	eps, _, err := a.Epsilon(l.delta)
	if err != nil {
		return 0, fmt.Errorf("client: ledger: %w", err)
	}
	return l.carried + eps, nil
}

// admit returns a decline if charging c would take the ledger over budget.
func (l *ledger) admit(charges []charge, c charge, budget float64) (*DeclineError, error) {
	eps, err := l.after(charges, c)
	if err != nil {
		return nil, err
	}
	if !(eps <= budget) {
		return &DeclineError{Round: c.Round, Reason: ReasonBudget,
			Detail: fmt.Sprintf("ε would reach %.4g of a budget of %.4g at δ=%g", eps, budget, l.delta)}, nil
	}
	return nil, nil
}

// cumulative returns ε at δ after each charge in turn, without carried.
func (l *ledger) cumulative(charges []charge) ([]float64, error) {
	a, err := privacy.NewAccountant(privacy.Config{})
	if err != nil {
		return nil, fmt.Errorf("client: ledger: %w", err)
	}
	out := make([]float64, len(charges))
	for i, c := range charges {
		if err := a.Add(c.entry()); err != nil {
			return nil, fmt.Errorf("client: ledger: round %d: %w", c.Round, err)
		}
		if out[i], _, err = a.Epsilon(l.delta); err != nil {
			return nil, fmt.Errorf("client: ledger: %w", err)
		}
	}
	return out, nil
}

// reset forgets everything (after DeleteMyData).
func (l *ledger) reset() { l.acct, l.n, l.carried = nil, 0, 0 }

// entry is c's line in the accountant, as the coordinator's ledger has it
// (coordinator.LedgerEntry.Entry): a Gaussian of c's noise multiplier, or
// the Skellam mechanism of c's integer-domain variance and sensitivities.
func (c charge) entry() privacy.Entry {
	if c.Mechanism == MechSkellam {
		return privacy.Entry{Mechanism: privacy.PoissonSkellam, SamplingRate: c.SamplingRate, Variance: c.Variance, L1: c.L1, L2: c.L2, Steps: 1}
	}
	return privacy.Entry{Mechanism: privacy.PoissonGaussian, SamplingRate: c.SamplingRate, NoiseMultiplier: c.NoiseMultiplier, Steps: 1}
}

// checkNoise returns why the ledger cannot account for o's noise, or nil:
// a distributed-DP offer must carry the Skellam plan the ledger charges,
// consistent with the noise multiplier the policy judged.
func checkNoise(o Offer) *DeclineError {
	if !o.DistributedNoise {
		return nil
	}
	no := func(format string, args ...any) *DeclineError {
		return &DeclineError{Round: o.Round, Reason: ReasonInvalid, Detail: fmt.Sprintf(format, args...)}
	}
	s := o.Skellam
	switch {
	case o.DeviceNoise:
		return no("both Gaussian and Skellam device noise")
	case !finitePos(s.L2) || !finitePos(s.L1) || !finiteNonNeg(s.Variance) || !finiteNonNeg(s.ClientVariance) || !finitePos(o.SkellamScale):
		return no("distributed noise without a valid Skellam plan (%+v, scale %v)", s, o.SkellamScale)
	case o.NoiseMultiplier > s.NoiseMultiplier()*(1+1e-12):
		return no("noise multiplier %v, but the Skellam plan gives %v", o.NoiseMultiplier, s.NoiseMultiplier())
	}
	return nil
}

func finiteNonNeg(x float64) bool { return x >= 0 && !math.IsInf(x, 0) }
