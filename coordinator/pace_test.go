package coordinator

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// checkIns is a min-heap of devices' next check-in times.
type checkIns []struct {
	at time.Duration
	id int
}

func (h checkIns) Len() int           { return len(h) }
func (h checkIns) Less(i, j int) bool { return h[i].at < h[j].at }
func (h checkIns) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *checkIns) Push(x any) {
	*h = append(*h, x.(struct {
		at time.Duration
		id int
	}))
}
func (h *checkIns) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// paceSim plays a population of n devices against a pacer on a simulated
// clock: a selection every period takes k of the devices waiting; the
// cohort checks in again after its round, the others when the pacer says.
// It returns the check-ins of each period after warm periods, and the
// pacer.
func paceSim(t *testing.T, n, k int, period time.Duration, warm, measure int) ([]int, *pacer) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	p := newPacer(0, time.Hour, 10*time.Second, rand.New(rand.NewPCG(3, 4)))
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := make([]string, n)
	h := &checkIns{}
	for i := range ids {
		ids[i] = fmt.Sprintf("device-%d", i)
		// Everyone arrives within the first period: the worst herd.
		heap.Push(h, struct {
			at time.Duration
			id int
		}{time.Duration(rng.Int64N(int64(period))), i})
	}
	counts := make([]int, measure)
	var waiting []int
	for r := 1; r <= warm+measure; r++ {
		sel := time.Duration(r) * period
		for h.Len() > 0 && (*h)[0].at < sel {
			c := heap.Pop(h).(struct {
				at time.Duration
				id int
			})
			if w := r - 1 - warm; w >= 0 {
				counts[w]++
			}
			p.seen(ids[c.id], start.Add(c.at+10*time.Second))
			waiting = append(waiting, c.id)
		}
		now := start.Add(sel)
		rng.Shuffle(len(waiting), func(i, j int) { waiting[i], waiting[j] = waiting[j], waiting[i] })
		m := min(k, len(waiting))
		cohort := make([]string, m)
		for i, id := range waiting[:m] {
			cohort[i] = ids[id]
			heap.Push(h, struct {
				at time.Duration
				id int
			}{sel + period/2, id}) // back after its round
		}
		mean := p.selected(now, cohort, now.Add(period/2), k)
		for _, id := range waiting[m:] {
			d := p.retry(ids[id], now, mean)
			heap.Push(h, struct {
				at time.Duration
				id int
			}{sel + d, id})
		}
		waiting = waiting[:0]
	}
	return counts, p
}

// TestPaceSpreadsCheckIns: a population that all arrives at once ends up
// checking in evenly over the rounds, about one to two cohorts a round
// rather than the whole population, and the pacer estimates its size.
func TestPaceSpreadsCheckIns(t *testing.T) {
	for _, tc := range []struct{ n, k int }{{2000, 100}, {10000, 200}, {300, 100}} {
		t.Run(fmt.Sprintf("n=%d,k=%d", tc.n, tc.k), func(t *testing.T) {
			const period = 10 * time.Second
			counts, p := paceSim(t, tc.n, tc.k, period, 200, 100)
			lo, hi, sum := counts[0], counts[0], 0
			for _, c := range counts {
				lo, hi, sum = min(lo, c), max(hi, c), sum+c
			}
			mean := float64(sum) / float64(len(counts))
			t.Logf("check-ins a round: mean %.1f, min %d, max %d; population %d, period %v", mean, lo, hi, p.population(p.lastSelect), p.period)
			if mean < float64(tc.k) || mean > 2.2*float64(tc.k) {
				t.Errorf("mean check-ins a round = %.1f, want in [k, 2.2k] = [%d, %.0f]", mean, tc.k, 2.2*float64(tc.k))
			}
			// Near-uniform: every round within 25 % of the mean (the
			// binomial spread of a round's arrivals is a few percent).
			if float64(lo) < 0.75*mean || float64(hi) > 1.25*mean {
				t.Errorf("check-ins a round in [%d, %d], want within 25%% of the mean %.1f", lo, hi, mean)
			}
			if pop := p.population(p.lastSelect); pop < tc.n*9/10 || pop > tc.n {
				t.Errorf("population estimate %d, want within 10%% below %d", pop, tc.n)
			}
			if p.period != period {
				t.Errorf("period = %v, want %v", p.period, period)
			}
		})
	}
}

// TestPaceBounds: retry times stay within the bounds; before a round
// period is known, devices come back after about the minimum.
func TestPaceBounds(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		min, max time.Duration
		selects  int // selections 10 s apart before the retries
		lo, hi   time.Duration
	}{
		{"no period yet", time.Second, time.Hour, 1, time.Second, 1500 * time.Millisecond},
		{"unbounded", 0, time.Hour, 2, 50 * time.Second, 150 * time.Second}, // 100 devices × 10 s / 10
		{"max", 0, 60 * time.Second, 2, 50 * time.Second, 60 * time.Second},
		{"min", 120 * time.Second, time.Hour, 2, 120 * time.Second, 150 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPacer(tc.min, tc.max, 10*time.Second, rand.New(rand.NewPCG(5, 6)))
			for i := range 100 {
				p.seen(fmt.Sprint(i), start.Add(time.Hour))
			}
			var mean time.Duration
			var now time.Time
			for s := range tc.selects {
				now = start.Add(time.Duration(s) * 10 * time.Second)
				mean = p.selected(now, nil, now, 10)
			}
			for i := range 1000 {
				d := p.retry(fmt.Sprint(i%100), now, mean)
				if d < tc.lo || d > tc.hi {
					t.Fatalf("retry = %v, want in [%v, %v]", d, tc.lo, tc.hi)
				}
			}
		})
	}
}

// TestPaceNode: a leader under a population of 8 cohorts, whose devices
// come back when told, sees about one to two cohorts waiting at each
// selection rather than the whole population, and estimates the
// population. It runs in a synctest bubble: the clock is the bubble's.
func TestPaceNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k, n = 5, 40
		tr := testTraining()
		tr.ClientsPerRound, tr.MinClients, tr.OverSelect, tr.Population = k, k, 0, n
		c := newTestClusterWith(t, 1, tr, nil)
		t.Cleanup(func() { c.nodes[0].crashed.Store(true) })
		l := c.nodes[0]
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		var mu sync.Mutex
		waiting := map[uint64]int{} // devices answered at each round's selection
		var wg sync.WaitGroup
		for i := range n {
			id := fmt.Sprintf("d%d", i)
			wg.Go(func() {
				for ctx.Err() == nil {
					var round uint64
					var wait time.Duration
					switch m := call(ctx, l, &wire.CheckIn{Version: wire.Version, ClientID: id})[0].(type) {
					case *wire.Plan:
						round = m.Round
						call(ctx, l, &wire.Upload{Version: wire.Version, Round: m.Round, ClientID: id, Ticket: m.Ticket, Model: m.Model, N: 1, Delta: constDelta(c.dim(), 0.01)})
					case *wire.Wait:
						round, wait = m.Round, time.Duration(m.RetryAfterMs)*time.Millisecond
					}
					mu.Lock()
					waiting[round]++
					mu.Unlock()
					select {
					case <-ctx.Done():
					case <-time.After(max(wait, 10*time.Millisecond)):
					}
				}
			})
		}
		c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= 60 })
		pop := int(testutil.ToFloat64(l.metrics.pacePopulation))
		cancel()
		wg.Wait()
		var rounds, sum int
		for r, w := range waiting {
			if r > 20 && r <= 60 { // after the herd of the start
				rounds++
				sum += w
			}
		}
		mean := float64(sum) / float64(rounds)
		t.Logf("devices waiting at a selection: %.1f over %d rounds; population estimate %d", mean, rounds, pop)
		if mean < k || mean > 2.5*k {
			t.Errorf("devices waiting at a selection = %.1f, want in [%d, %.1f] (the population is %d)", mean, k, 2.5*k, n)
		}
		if pop < n*9/10 || pop > n {
			t.Errorf("population estimate %d, want within 10%% below %d", pop, n)
		}
	})
}
