package model

import (
	"container/heap"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// Metrics are sums over users, so that each client can compute its own and
// the coordinator can add them up (evaluation can itself be federated).
type Metrics struct {
	// SSE and SAE are the squared and absolute errors over N held-out ratings.
	SSE, SAE float64
	N        int
	// RankedUsers counts the users ranked: those with at least one relevant
	// held-out item. Users without one are not counted anywhere.
	RankedUsers int
	// Cutoffs holds the sums at each cut-off, in EvalConfig order; nil until
	// a user is ranked.
	Cutoffs []Cutoff
	// Items is the catalogue size, the denominator of catalogue coverage.
	Items int
}

// Cutoff holds the ranking sums at one cut-off K.
type Cutoff struct {
	K int
	// RecallSum and NDCGSum add each ranked user's Recall@K and NDCG@K.
	RecallSum, NDCGSum float64
	// HitUsers counts ranked users with a relevant item in their top K.
	HitUsers int
	// Shown has bit i set when item i is in some ranked user's top K; a
	// bitset so that Add is a union. Nil means no item shown.
	Shown []uint64
}

// Add accumulates o into m. Both must come from the same cut-offs and
// catalogue (or one be free of ranking sums); anything else is a bug and
// panics, leaving m as it was. m never shares o's slices afterwards, but a
// copy of m shares m's: add into a zero Metrics to get a separate sum.
func (m *Metrics) Add(o Metrics) {
	if len(m.Cutoffs) > 0 && len(o.Cutoffs) > 0 {
		if m.Items != o.Items || len(m.Cutoffs) != len(o.Cutoffs) {
			panic(fmt.Sprintf("model: Metrics.Add: %d items at %d cut-offs plus %d items at %d", m.Items, len(m.Cutoffs), o.Items, len(o.Cutoffs)))
		}
		for j, c := range m.Cutoffs {
			if c.K != o.Cutoffs[j].K {
				panic(fmt.Sprintf("model: Metrics.Add: cut-off %d is @%d here and @%d in the addend", j, c.K, o.Cutoffs[j].K))
			}
		}
	}
	m.SSE += o.SSE
	m.SAE += o.SAE
	m.N += o.N
	m.RankedUsers += o.RankedUsers
	if len(o.Cutoffs) == 0 {
		return
	}
	if len(m.Cutoffs) == 0 {
		m.Items = o.Items
		m.Cutoffs = make([]Cutoff, len(o.Cutoffs))
		for j, c := range o.Cutoffs {
			m.Cutoffs[j].K = c.K
		}
	}
	for j := range m.Cutoffs {
		c, oc := &m.Cutoffs[j], o.Cutoffs[j]
		c.RecallSum += oc.RecallSum
		c.NDCGSum += oc.NDCGSum
		c.HitUsers += oc.HitUsers
		if oc.Shown == nil {
			continue
		}
		if c.Shown == nil {
			c.Shown = make([]uint64, len(oc.Shown)) // never alias the addend's
		}
		for w, x := range oc.Shown {
			c.Shown[w] |= x
		}
	}
}

// RMSE is the root mean squared error, NaN with no ratings.
func (m Metrics) RMSE() float64 { return math.Sqrt(ratio(m.SSE, m.N)) }

// MAE is the mean absolute error, NaN with no ratings.
func (m Metrics) MAE() float64 { return ratio(m.SAE, m.N) }

// Recall is the mean Recall at the first cut-off over ranked users.
func (m Metrics) Recall() float64 { return m.RecallAt(m.firstK()) }

// NDCG is the mean NDCG at the first cut-off over ranked users.
func (m Metrics) NDCG() float64 { return m.NDCGAt(m.firstK()) }

// firstK is the first cut-off evaluated, 0 if none.
func (m Metrics) firstK() int {
	if len(m.Cutoffs) == 0 {
		return 0
	}
	return m.Cutoffs[0].K
}

// RecallAt is the mean Recall@k over ranked users: a user's hits in the top
// k over min(k, relevant items), so that a perfect ranking scores 1. NaN
// when k was not evaluated or no user was ranked.
func (m Metrics) RecallAt(k int) float64 {
	if c := m.cutoff(k); c != nil {
		return ratio(c.RecallSum, m.RankedUsers)
	}
	return math.NaN()
}

// NDCGAt is the mean NDCG@k over ranked users, with binary relevance and the
// ideal DCG over min(k, relevant items). NaN when undefined.
func (m Metrics) NDCGAt(k int) float64 {
	if c := m.cutoff(k); c != nil {
		return ratio(c.NDCGSum, m.RankedUsers)
	}
	return math.NaN()
}

// UserCoverageAt is the share of ranked users with at least one relevant
// item in their top k. NaN when undefined.
func (m Metrics) UserCoverageAt(k int) float64 {
	if c := m.cutoff(k); c != nil {
		return ratio(float64(c.HitUsers), m.RankedUsers)
	}
	return math.NaN()
}

// CatalogueCoverageAt is the share of the catalogue's items that appear in
// at least one ranked user's top k. NaN when undefined.
func (m Metrics) CatalogueCoverageAt(k int) float64 {
	c := m.cutoff(k)
	if c == nil || m.RankedUsers == 0 {
		return math.NaN()
	}
	var n int
	for _, x := range c.Shown {
		n += bits.OnesCount64(x)
	}
	return ratio(float64(n), m.Items)
}

func (m Metrics) cutoff(k int) *Cutoff {
	for j := range m.Cutoffs {
		if m.Cutoffs[j].K == k {
			return &m.Cutoffs[j]
		}
	}
	return nil
}

func ratio(a float64, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	return a / float64(n)
}

// DefaultKs returns the cut-offs ranking is judged at unless told otherwise.
func DefaultKs() []int { return []int{10, 20} }

// EvalConfig says how a user's held-out data is judged.
type EvalConfig struct {
	// Ks are the cut-offs of the ranking metrics; the first is the one
	// Metrics.Recall and Metrics.NDCG report. Empty: see K.
	Ks []int
	// K, when Ks is empty, turns ranking on with K as the first cut-off,
	// followed by those of DefaultKs that differ from it. With both empty
	// (and zero) ranking is skipped, which saves scoring every item.
	K int
	// Relevant is the smallest held-out value that counts as relevant for
	// ranking (for ratings, 4 stars by convention); 0 counts every item.
	Relevant float64
	// Errors computes RMSE and MAE terms (explicit models).
	Errors bool
}

// Validate names the first bad field.
func (c EvalConfig) Validate() error {
	if c.K < 0 {
		return fmt.Errorf("model: EvalConfig.K = %d, want >= 0", c.K)
	}
	for j, k := range c.Ks {
		if k <= 0 {
			return fmt.Errorf("model: EvalConfig.Ks[%d] = %d, want > 0", j, k)
		}
		if slices.Contains(c.Ks[:j], k) {
			return fmt.Errorf("model: EvalConfig.Ks[%d] = %d repeats an earlier cut-off", j, k)
		}
	}
	if math.IsNaN(c.Relevant) {
		return fmt.Errorf("model: EvalConfig.Relevant is NaN")
	}
	return nil
}

// cutoffs returns the cut-offs to rank at, nil for none.
func (c EvalConfig) cutoffs() []int {
	if len(c.Ks) > 0 || c.K <= 0 {
		return c.Ks
	}
	ks := []int{c.K}
	for _, k := range DefaultKs() {
		if k != c.K {
			ks = append(ks, k)
		}
	}
	return ks
}

// Evaluate judges u on its held-out ratings: errors from the model's
// predictions, ranking by EvaluateScores over its scores, so that items in
// train are excluded, as a recommender would not show them again. scores is
// scratch of length Items (nil allocates).
func (m *Model) Evaluate(u *User, train, test []Rating, cfg EvalConfig, scores []float64) Metrics {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	var out Metrics
	if cfg.Errors {
		for _, x := range test {
			e := float64(x.Value) - m.Score(u, int(x.Item))
			out.SSE += e * e
			out.SAE += math.Abs(e)
			out.N++
		}
	}
	// Scoring every item is the expensive part: skip it when nothing would
	// be ranked.
	ks := cfg.cutoffs()
	if len(ks) == 0 || !slices.ContainsFunc(test, func(x Rating) bool { return float64(x.Value) >= cfg.Relevant }) {
		return out
	}
	if len(scores) != m.Items {
		scores = make([]float64, m.Items)
	}
	m.Scores(scores, u)
	cfg.Ks = ks
	cfg.Errors = false // counted above, without scoring every item
	r := EvaluateScores(scores, train, test, cfg)
	r.SSE, r.SAE, r.N = out.SSE, out.SAE, out.N
	return r
}

// EvaluateScores judges one user of any scorer, given its scores for every
// item of the catalogue: the ranking is full, over every item not in train,
// with no sampled negatives. It overwrites the scores of train items with
// -Inf. With cfg.Errors, scores are taken as predicted values of test.
// An invalid cfg or an item out of range is a bug and panics.
func EvaluateScores(scores []float64, train, test []Rating, cfg EvalConfig) Metrics {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	var out Metrics
	if cfg.Errors {
		for _, x := range test {
			e := float64(x.Value) - scores[x.Item]
			out.SSE += e * e
			out.SAE += math.Abs(e)
			out.N++
		}
	}
	ks := cfg.cutoffs()
	if len(ks) == 0 {
		return out
	}
	var relevant []int32
	for _, x := range test {
		if float64(x.Value) >= cfg.Relevant {
			relevant = append(relevant, x.Item)
		}
	}
	if len(relevant) == 0 {
		return out
	}
	slices.Sort(relevant)
	relevant = slices.Compact(relevant)
	for _, x := range train {
		scores[x.Item] = math.Inf(-1)
	}
	top := TopK(scores, slices.Max(ks))
	words := (len(scores) + 63) / 64
	shown := make([]uint64, words*len(ks)) // one allocation for all cut-offs
	out.RankedUsers = 1
	out.Items = len(scores)
	out.Cutoffs = make([]Cutoff, len(ks))
	for j, k := range ks {
		c := &out.Cutoffs[j]
		c.K = k
		c.Shown = shown[j*words : (j+1)*words : (j+1)*words]
		var hits int
		var dcg, idcg float64
		for rank, i := range top[:min(k, len(top))] {
			c.Shown[i/64] |= 1 << (i % 64)
			if _, ok := slices.BinarySearch(relevant, int32(i)); ok {
				hits++
				dcg += 1 / math.Log2(float64(rank)+2)
			}
		}
		for rank := range min(k, len(relevant)) {
			idcg += 1 / math.Log2(float64(rank)+2)
		}
		c.RecallSum = float64(hits) / float64(min(k, len(relevant)))
		c.NDCGSum = dcg / idcg
		if hits > 0 {
			c.HitUsers = 1
		}
	}
	return out
}

// TopK returns the indices of the k largest finite scores, best first
// (ties broken by lower index).
func TopK(scores []float64, k int) []int {
	h := make(minHeap, 0, k+1)
	for i, s := range scores {
		if math.IsInf(s, -1) || math.IsNaN(s) {
			continue
		}
		if len(h) < k {
			heap.Push(&h, scored{i, s})
		} else if k > 0 && s > h[0].s {
			h[0] = scored{i, s}
			heap.Fix(&h, 0)
		}
	}
	out := make([]int, len(h))
	for j := len(h) - 1; j >= 0; j-- {
		out[j] = heap.Pop(&h).(scored).i
	}
	return out
}

type scored struct {
	i int
	s float64
}

// minHeap keeps the worst of the current top k at the root.
type minHeap []scored

func (h minHeap) Len() int { return len(h) }
func (h minHeap) Less(a, b int) bool {
	if h[a].s != h[b].s {
		return h[a].s < h[b].s
	}
	return h[a].i > h[b].i
}
func (h minHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *minHeap) Push(x any)   { *h = append(*h, x.(scored)) }
func (h *minHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
