package privacy

import (
	"fmt"
	"math"
	"strconv"
)

// Neighboring is the relation between neighbouring datasets that a guarantee
// refers to. In federated learning a "dataset" is the population of clients
// and one neighbour step is one client's whole contribution.
type Neighboring uint8

const (
	// AddOrRemoveOne: neighbours differ by the presence of one client. This
	// is the relation for Poisson sampling and the default.
	AddOrRemoveOne Neighboring = iota
	// ReplaceOne: neighbours have the same size and differ in one client's
	// data. This is the relation for fixed-size sampling without replacement.
	ReplaceOne
)

func (n Neighboring) String() string {
	switch n {
	case AddOrRemoveOne:
		return "add-or-remove-one"
	case ReplaceOne:
		return "replace-one"
	}
	return "Neighboring(" + strconv.Itoa(int(n)) + ")"
}

// Config configures an Accountant. The zero value means dp_accounting's
// defaults: DefaultOrders, AddOrRemoveOne, ConversionImproved.
type Config struct {
	// Orders are the Rényi orders at which the curve is tracked, each in
	// (1, MaxOrder]. Nil means DefaultOrders(). Integer orders use the exact
	// binomial expansion, fractional ones the series.
	Orders []float64
	// Neighboring fixes which mechanisms may be added.
	Neighboring Neighboring
	// Conversion selects the RDP to (ε, δ) conversion.
	Conversion Conversion
}

// Mechanism identifies the kind of an Entry. Values start at 1 (0 is
// invalid) and are only ever appended.
type Mechanism uint8

const (
	// PoissonGaussian: the Gaussian mechanism on a Poisson sample with rate
	// SamplingRate; NoiseMultiplier is the noise std over the L2 sensitivity
	// (the clip norm). Needs AddOrRemoveOne.
	PoissonGaussian Mechanism = 1 + iota
	// FixedSizeGaussian: the Gaussian mechanism on a uniformly random subset
	// of fixed size m out of N, SamplingRate = m/N. NoiseMultiplier is the
	// noise std over the replace-one L2 sensitivity, which for a sum of
	// updates clipped to C is 2C. Needs ReplaceOne.
	FixedSizeGaussian
	// PoissonSkellam: the distributed Skellam mechanism on a Poisson sample
	// with rate SamplingRate; Variance, L1 and L2 are the total noise
	// variance and the sensitivities in the integer domain. Needs
	// AddOrRemoveOne. See PlanSkellam.
	PoissonSkellam
)

func (m Mechanism) String() string {
	switch m {
	case PoissonGaussian:
		return "poisson-gaussian"
	case FixedSizeGaussian:
		return "fixed-size-gaussian"
	case PoissonSkellam:
		return "poisson-skellam"
	}
	return "Mechanism(" + strconv.Itoa(int(m)) + ")"
}

// Entry is one line of the privacy ledger: Steps applications of one
// mechanism with fixed parameters. It is plain data so that the coordinator
// can replicate the ledger and rebuild an identical Accountant with Rebuild.
type Entry struct {
	Mechanism       Mechanism
	SamplingRate    float64 // q in [0, 1]
	NoiseMultiplier float64 // Gaussian kinds: z >= 0
	Variance        float64 // PoissonSkellam: total variance μ of the summed noise, integer domain
	L1, L2          float64 // PoissonSkellam: sensitivities, integer domain
	Steps           int     // >= 0; 0 is a no-op
}

// sameMechanism reports whether e and f differ at most in Steps.
func (e Entry) sameMechanism(f Entry) bool {
	return e.Mechanism == f.Mechanism && e.SamplingRate == f.SamplingRate &&
		e.NoiseMultiplier == f.NoiseMultiplier && e.Variance == f.Variance &&
		e.L1 == f.L1 && e.L2 == f.L2
}

// rdp returns the per-step RDP curve of e at the orders.
func (e Entry) rdp(orders []float64) []float64 {
	out := make([]float64, len(orders))
	for i, o := range orders {
		switch e.Mechanism {
		case PoissonGaussian:
			out[i] = rdpPoissonGaussian(e.SamplingRate, e.NoiseMultiplier, o)
		case FixedSizeGaussian:
			out[i] = rdpFixedSizeGaussian(e.SamplingRate, e.NoiseMultiplier, o)
		case PoissonSkellam:
			out[i] = rdpPoissonSkellam(e.SamplingRate, e.Variance, e.L1, e.L2, o)
		default:
			panic("privacy: rdp of " + e.Mechanism.String())
		}
	}
	return out
}

// validate checks e's fields and its fit with the neighbouring relation.
func (e Entry) validate(rel Neighboring) error {
	if e.Steps < 0 {
		return argErr("Entry.Steps", float64(e.Steps), ">= 0")
	}
	if err := checkUnit("Entry.SamplingRate", e.SamplingRate); err != nil {
		return err
	}
	want := AddOrRemoveOne
	switch e.Mechanism {
	case PoissonGaussian, FixedSizeGaussian:
		if err := checkNonNeg("Entry.NoiseMultiplier", e.NoiseMultiplier); err != nil {
			return err
		}
		if e.Mechanism == FixedSizeGaussian {
			want = ReplaceOne
		}
	case PoissonSkellam:
		if err := checkNonNeg("Entry.Variance", e.Variance); err != nil {
			return err
		}
		if err := checkNonNeg("Entry.L1", e.L1); err != nil {
			return err
		}
		if err := checkNonNeg("Entry.L2", e.L2); err != nil {
			return err
		}
	default:
		return argErr("Entry.Mechanism", float64(e.Mechanism), "a known Mechanism")
	}
	if rel != want {
		return fmt.Errorf("%w: %v under %v", ErrUnsupported, e.Mechanism, rel)
	}
	return nil
}

// Accountant is a privacy ledger with its Rényi DP curve. It composes any
// sequence of entries (heterogeneous rounds) by adding their curves, and
// converts the total to (ε, δ) on demand. It is not safe for concurrent use.
//
// Consecutive entries that differ only in Steps are merged, so a ledger of
// T identical rounds is one entry. The curve is a left-to-right sum over the
// merged entries, so an accountant rebuilt from Entries() computes bit for
// bit the same curve on the same machine.
type Accountant struct {
	cfg     Config
	entries []Entry
	prefix  []float64 // Σ Steps·rdp over entries[:len-1], left to right
	last    []float64 // per-step rdp of entries[len-1]
}

// NewAccountant returns an empty accountant. It copies cfg.Orders.
func NewAccountant(cfg Config) (*Accountant, error) {
	if cfg.Orders == nil {
		cfg.Orders = DefaultOrders()
	} else {
		cfg.Orders = append([]float64(nil), cfg.Orders...)
	}
	if len(cfg.Orders) == 0 {
		return nil, argErr("len(Config.Orders)", 0, "> 0")
	}
	for i, o := range cfg.Orders {
		if !(o > 1 && o <= MaxOrder) {
			return nil, argErr("Config.Orders["+strconv.Itoa(i)+"]", o, "in (1, MaxOrder]")
		}
	}
	if cfg.Neighboring > ReplaceOne {
		return nil, argErr("Config.Neighboring", float64(cfg.Neighboring), "AddOrRemoveOne or ReplaceOne")
	}
	if cfg.Conversion > ConversionClassic {
		return nil, argErr("Config.Conversion", float64(cfg.Conversion), "ConversionImproved or ConversionClassic")
	}
	return &Accountant{cfg: cfg, prefix: make([]float64, len(cfg.Orders))}, nil
}

// Rebuild returns an accountant with cfg holding entries, as replicated from
// another accountant's Config() and Entries().
func Rebuild(cfg Config, entries []Entry) (*Accountant, error) {
	a, err := NewAccountant(cfg)
	if err != nil {
		return nil, err
	}
	for i, e := range entries {
		if err := a.Add(e); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return a, nil
}

// Config returns the accountant's configuration, with its order list.
func (a *Accountant) Config() Config {
	c := a.cfg
	c.Orders = append([]float64(nil), a.cfg.Orders...)
	return c
}

// Entries returns a copy of the ledger.
func (a *Accountant) Entries() []Entry {
	return append([]Entry(nil), a.entries...)
}

// Add records e. An entry with Steps == 0 changes nothing.
func (a *Accountant) Add(e Entry) error {
	if err := e.validate(a.cfg.Neighboring); err != nil {
		return err
	}
	if e.Steps == 0 {
		return nil
	}
	n := len(a.entries)
	if n > 0 && a.entries[n-1].sameMechanism(e) {
		if a.entries[n-1].Steps > math.MaxInt-e.Steps {
			return argErr("Entry.Steps", float64(e.Steps), "a total below MaxInt")
		}
		a.entries[n-1].Steps += e.Steps
		return nil
	}
	if n > 0 {
		s := float64(a.entries[n-1].Steps)
		for i, r := range a.last {
			a.prefix[i] += float64(s * r) // conversion forbids FMA fusion
		}
	}
	a.last = e.rdp(a.cfg.Orders)
	a.entries = append(a.entries, e)
	return nil
}

// AddSampledGaussian records steps rounds of the Gaussian mechanism with
// noise multiplier z (noise std over clip norm) on a Poisson sample of rate q.
func (a *Accountant) AddSampledGaussian(q, noiseMultiplier float64, steps int) error {
	if err := checkSampled(q, noiseMultiplier, steps); err != nil {
		return err
	}
	return a.Add(Entry{Mechanism: PoissonGaussian, SamplingRate: q, NoiseMultiplier: noiseMultiplier, Steps: steps})
}

// AddFixedSizeGaussian records steps rounds of the Gaussian mechanism on a
// uniformly random subset of sampleSize out of populationSize clients. The
// noise multiplier is relative to the replace-one sensitivity (2C for a sum
// of updates clipped to C). The accountant must use ReplaceOne.
func (a *Accountant) AddFixedSizeGaussian(sampleSize, populationSize int, noiseMultiplier float64, steps int) error {
	if populationSize <= 0 {
		return argErr("populationSize", float64(populationSize), "> 0")
	}
	if sampleSize < 0 || sampleSize > populationSize {
		return argErr("sampleSize", float64(sampleSize), "in [0, populationSize]")
	}
	q := float64(sampleSize) / float64(populationSize)
	if err := checkSampled(q, noiseMultiplier, steps); err != nil {
		return err
	}
	return a.Add(Entry{Mechanism: FixedSizeGaussian, SamplingRate: q, NoiseMultiplier: noiseMultiplier, Steps: steps})
}

// AddSkellam records steps rounds of the distributed Skellam mechanism
// described by plan on a Poisson sample of rate q. If fewer clients than
// planned contributed noise, pass plan.Survivors(m).
func (a *Accountant) AddSkellam(q float64, plan SkellamPlan, steps int) error {
	if err := checkUnit("q", q); err != nil {
		return err
	}
	if steps < 0 {
		return argErr("steps", float64(steps), ">= 0")
	}
	return a.Add(plan.entry(q, steps))
}

func checkSampled(q, z float64, steps int) error {
	if err := checkUnit("q", q); err != nil {
		return err
	}
	if err := checkNonNeg("noiseMultiplier", z); err != nil {
		return err
	}
	if steps < 0 {
		return argErr("steps", float64(steps), ">= 0")
	}
	return nil
}

// RDP returns copies of the orders and of the composed RDP at each order.
func (a *Accountant) RDP() (orders, rdp []float64) {
	return append([]float64(nil), a.cfg.Orders...), a.total(nil)
}

// total returns the composed curve, reusing dst if it is long enough.
func (a *Accountant) total(dst []float64) []float64 {
	return a.totalWith(dst, Entry{}, nil)
}

// totalWith returns the curve that the ledger would have after Add(e), given
// e's per-step curve r, without changing the ledger. With r == nil it
// returns the current curve. It performs exactly the arithmetic of Add
// followed by total, so a calibrated entry meets its target once added.
func (a *Accountant) totalWith(dst []float64, e Entry, r []float64) []float64 {
	if cap(dst) < len(a.prefix) {
		dst = make([]float64, len(a.prefix))
	}
	dst = dst[:len(a.prefix)]
	copy(dst, a.prefix)
	n := len(a.entries)
	if r != nil && e.Steps > 0 && n > 0 && a.entries[n-1].sameMechanism(e) {
		s := float64(a.entries[n-1].Steps + e.Steps)
		for i, v := range r {
			dst[i] += float64(s * v)
		}
		return dst
	}
	if n > 0 {
		s := float64(a.entries[n-1].Steps)
		for i, v := range a.last {
			dst[i] += float64(s * v)
		}
	}
	if r != nil && e.Steps > 0 {
		s := float64(e.Steps)
		for i, v := range r {
			dst[i] += float64(s * v)
		}
	}
	return dst
}

// Epsilon returns the smallest ε such that the ledger is (ε, delta)-DP, and
// the order that achieves it. ε may be +Inf (for example after a round with
// no noise).
func (a *Accountant) Epsilon(delta float64) (eps, order float64, err error) {
	if err := checkDelta("delta", delta); err != nil {
		return 0, 0, err
	}
	eps, order = epsilonFromRDP(a.cfg.Conversion, a.cfg.Orders, a.total(nil), delta)
	return eps, order, nil
}

// Delta returns the smallest δ such that the ledger is (eps, δ)-DP, and the
// order that achieves it.
func (a *Accountant) Delta(eps float64) (delta, order float64, err error) {
	if err := checkNonNeg("eps", eps); err != nil {
		return 0, 0, err
	}
	delta, order = deltaFromRDP(a.cfg.Conversion, a.cfg.Orders, a.total(nil), eps)
	return delta, order, nil
}
