package model

import (
	"container/heap"
	"math"
)

// Metrics are sums over users, so that each client can compute its own and
// the coordinator can add them up (evaluation can itself be federated).
type Metrics struct {
	// SSE and SAE are the squared and absolute errors over N held-out ratings.
	SSE, SAE float64
	N        int
	// RecallSum and NDCGSum add each ranked user's Recall@K and NDCG@K over
	// RankedUsers users (users with at least one relevant held-out item).
	RecallSum, NDCGSum float64
	RankedUsers        int
}

// Add accumulates o into m.
func (m *Metrics) Add(o Metrics) {
	m.SSE += o.SSE
	m.SAE += o.SAE
	m.N += o.N
	m.RecallSum += o.RecallSum
	m.NDCGSum += o.NDCGSum
	m.RankedUsers += o.RankedUsers
}

// RMSE is the root mean squared error, NaN with no ratings.
func (m Metrics) RMSE() float64 { return math.Sqrt(ratio(m.SSE, m.N)) }

// MAE is the mean absolute error, NaN with no ratings.
func (m Metrics) MAE() float64 { return ratio(m.SAE, m.N) }

// Recall is the mean Recall@K over ranked users.
func (m Metrics) Recall() float64 { return ratio(m.RecallSum, m.RankedUsers) }

// NDCG is the mean NDCG@K over ranked users.
func (m Metrics) NDCG() float64 { return ratio(m.NDCGSum, m.RankedUsers) }

func ratio(a float64, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	return a / float64(n)
}

// EvalConfig says how a user's held-out data is judged.
type EvalConfig struct {
	// K is the cut-off of the ranking metrics; 0 skips them.
	K int
	// Relevant is the smallest held-out value that counts as relevant for
	// ranking (for ratings, 4 stars by convention); 0 counts every item.
	Relevant float64
	// Errors computes RMSE and MAE terms (explicit models).
	Errors bool
}

// Evaluate judges u on its held-out ratings. Items in train are excluded
// from the ranking, as a recommender would not show them again. scores is
// scratch of length Items (nil allocates).
func (m *Model) Evaluate(u *User, train, test []Rating, cfg EvalConfig, scores []float64) Metrics {
	var out Metrics
	if cfg.Errors {
		for _, x := range test {
			e := float64(x.Value) - m.Score(u, int(x.Item))
			out.SSE += e * e
			out.SAE += math.Abs(e)
			out.N++
		}
	}
	if cfg.K <= 0 {
		return out
	}
	relevant := make(map[int32]bool)
	for _, x := range test {
		if float64(x.Value) >= cfg.Relevant {
			relevant[x.Item] = true
		}
	}
	if len(relevant) == 0 {
		return out
	}
	if len(scores) != m.Items {
		scores = make([]float64, m.Items)
	}
	m.Scores(scores, u)
	for _, x := range train {
		scores[x.Item] = math.Inf(-1)
	}
	top := TopK(scores, cfg.K)
	var hits int
	var dcg, idcg float64
	for rank, i := range top {
		if relevant[int32(i)] {
			hits++
			dcg += 1 / math.Log2(float64(rank)+2)
		}
	}
	for rank := range min(cfg.K, len(relevant)) {
		idcg += 1 / math.Log2(float64(rank)+2)
	}
	out.RecallSum = float64(hits) / float64(min(cfg.K, len(relevant)))
	out.NDCGSum = dcg / idcg
	out.RankedUsers = 1
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
