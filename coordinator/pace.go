package coordinator

import (
	"hash/maphash"
	"math/rand/v2"
	"time"
)

// Pace steering (Bonawitz et al. 2019, "Towards Federated Learning at
// Scale", 2.3): a device its node does not select is told when to check
// in again, so that the population's check-ins spread evenly over the next
// rounds instead of all devices holding a check-in open at their node, or
// coming back at once.
//
// With P devices, a cohort of K and a round every T, a device is selected
// about once every P/K rounds; told to come back after about P·T/K, the
// population checks in at about K devices a round (plus the cohort itself,
// which checks in again after its round), so that each selection finds
// roughly one to two cohorts waiting. Every retry is that mean times a
// uniform factor in [0.5, 1.5), which spreads the returns evenly over a
// round period, bounded by Config.PaceMin and Config.PaceMax.
const (
	// DefaultPaceMax bounds the retry time a device not selected is given.
	DefaultPaceMax = 10 * time.Minute
	// paceJitter is the half-width of the uniform jitter on retry times.
	paceJitter = 0.5
	// paceTracked bounds the devices the population estimate remembers
	// (about 40 bytes each): beyond it the estimate stops growing.
	paceTracked = 1 << 20
	// periodWeight is the weight of the newest interval between
	// selections in the round period's moving average.
	periodWeight = 0.3
)

// pacer estimates a node's population and round period and
// computes the retry times of devices not selected. It takes the time as an
// argument and draws from its own source, so that tests run it on a
// simulated clock. It is not safe for concurrent use (the node's lobby
// calls it under lobby.mu).
type pacer struct {
	min, max time.Duration
	// grace, plus two round periods, is how long past its due time a
	// device still counts in the population: late devices (a slow
	// network, a device asleep) are not forgotten at once.
	grace time.Duration
	rng   *rand.Rand
	seed  maphash.Seed

	// due maps a hash of each device's ID to when it should be back: the
	// end of its hold, round or retry. Devices past due+grace are dropped.
	due       map[uint64]time.Time
	lastPrune time.Time
	// lastSelect is the time of the last selection; period the moving
	// average of the intervals between selections (0 until two).
	lastSelect time.Time
	period     time.Duration
}

func newPacer(min, max, grace time.Duration, rng *rand.Rand) *pacer {
	return &pacer{min: min, max: max, grace: grace, rng: rng, seed: maphash.MakeSeed(), due: map[uint64]time.Time{}}
}

// seen records a device's check-in at now, held until at most until.
func (p *pacer) seen(id string, until time.Time) {
	h := maphash.String(p.seed, id)
	if _, ok := p.due[h]; !ok && len(p.due) >= paceTracked {
		return
	}
	p.due[h] = until
}

// population is the number of devices seen that are not overdue at now.
func (p *pacer) population(now time.Time) int {
	if now.Sub(p.lastPrune) >= time.Second || len(p.due) >= paceTracked {
		p.lastPrune = now
		grace := p.grace + 2*p.period
		for h, at := range p.due {
			if now.After(at.Add(grace)) {
				delete(p.due, h)
			}
		}
	}
	return len(p.due)
}

// selected records a selection at now of cohort, whose devices are busy
// until roundEnd, for a cohort size of k, and returns the mean retry time
// of the devices not selected.
func (p *pacer) selected(now time.Time, cohort []string, roundEnd time.Time, k int) time.Duration {
	if !p.lastSelect.IsZero() {
		d := now.Sub(p.lastSelect)
		if p.period == 0 {
			p.period = d
		} else {
			p.period = time.Duration(periodWeight*float64(d) + (1-periodWeight)*float64(p.period))
		}
	}
	p.lastSelect = now
	for _, id := range cohort {
		p.seen(id, roundEnd)
	}
	return p.mean(now, k)
}

// mean is the mean retry time at now for a cohort of k: the time the
// cluster takes to select every device of the population once.
func (p *pacer) mean(now time.Time, k int) time.Duration {
	if p.period == 0 || k <= 0 {
		return p.min
	}
	return time.Duration(float64(p.period) * float64(p.population(now)) / float64(k))
}

// jitter spreads mean uniformly over [1-paceJitter, 1+paceJitter) of it,
// within [min, max].
func (p *pacer) jitter(mean time.Duration) time.Duration {
	d := time.Duration(float64(mean) * (1 - paceJitter + 2*paceJitter*p.rng.Float64()))
	return min(max(d, p.min), p.max)
}

// retry returns the retry time, around mean, of device id not selected at
// now, and expects it back then.
func (p *pacer) retry(id string, now time.Time, mean time.Duration) time.Duration {
	d := p.jitter(mean)
	p.seen(id, now.Add(d))
	return d
}
