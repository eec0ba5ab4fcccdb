package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// at holds one cut-off's expected means.
type at struct{ recall, ndcg, userCov, catCov float64 }

func TestEvaluateScores(t *testing.T) {
	// scoresA ranks, with item 1 (train) excluded: 3, 2, 4, 0.
	scoresA := []float64{0.1, 0.9, 0.4, 0.8, 0.3}
	trainA := []Rating{{Item: 1, Value: 1}}
	l2, l3, l5 := math.Log2(2), math.Log2(3), math.Log2(5)
	tests := []struct {
		name   string
		scores []float64
		train  []Rating
		test   []Rating
		cfg    EvalConfig
		want   map[int]at
	}{{
		// Relevant {0, 2}. @2: top [3 2], one hit at rank 2:
		// recall 1/min(2,2), NDCG (1/log2 3)/(1/log2 2 + 1/log2 3).
		// @4: top [3 2 4 0], hits at ranks 2 and 4: recall 2/2,
		// NDCG (1/log2 3 + 1/log2 5)/(1/log2 2 + 1/log2 3).
		name:   "train item excluded",
		scores: scoresA, train: trainA,
		test: []Rating{{Item: 0, Value: 1}, {Item: 2, Value: 1}},
		cfg:  EvalConfig{Ks: []int{2, 4}},
		want: map[int]at{
			2: {0.5, (1 / l3) / (1/l2 + 1/l3), 1, 2.0 / 5},
			4: {1, (1/l3 + 1/l5) / (1/l2 + 1/l3), 1, 4.0 / 5},
		},
	}, {
		// Only item 0 reaches 4 stars. @2: top [3 2], no hit. @4: hit at
		// rank 4: recall 1/min(4,1), NDCG (1/log2 5)/1.
		name:   "relevance threshold",
		scores: scoresA, train: trainA,
		test: []Rating{{Item: 0, Value: 5}, {Item: 2, Value: 3}},
		cfg:  EvalConfig{Ks: []int{2, 4}, Relevant: 4},
		want: map[int]at{
			2: {0, 0, 0, 2.0 / 5},
			4: {1, 1 / l5, 1, 4.0 / 5},
		},
	}, {
		// Four relevant items, all ranked first: recall divides by
		// min(K, 4), so both cut-offs are perfect.
		name:   "more relevant than K",
		scores: scoresA, train: trainA,
		test: []Rating{{Item: 0, Value: 1}, {Item: 2, Value: 1}, {Item: 3, Value: 1}, {Item: 4, Value: 1}},
		cfg:  EvalConfig{Ks: []int{2, 4}},
		want: map[int]at{
			2: {1, 1, 1, 2.0 / 5},
			4: {1, 1, 1, 4.0 / 5},
		},
	}, {
		// All tied: lower index first, so @2 is [0 1] (a miss) and @4
		// is [0 1 2 3], item 3 at rank 4.
		name:   "ties",
		scores: []float64{0.5, 0.5, 0.5, 0.5, 0.5},
		test:   []Rating{{Item: 3, Value: 1}},
		cfg:    EvalConfig{Ks: []int{2, 4}},
		want: map[int]at{
			2: {0, 0, 0, 2.0 / 5},
			4: {1, 1 / l5, 1, 4.0 / 5},
		},
	}, {
		// K above the items left: the top list is shorter than K.
		name:   "K beyond catalogue",
		scores: scoresA, train: trainA,
		test: []Rating{{Item: 0, Value: 1}},
		cfg:  EvalConfig{Ks: []int{10}},
		want: map[int]at{
			10: {1, 1 / l5, 1, 4.0 / 5},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EvaluateScores(slices.Clone(tt.scores), tt.train, tt.test, tt.cfg)
			if got.RankedUsers != 1 {
				t.Fatalf("EvaluateScores().RankedUsers = %d, want 1", got.RankedUsers)
			}
			for k, w := range tt.want {
				checkAt(t, got, k, w)
			}
			first := tt.cfg.Ks[0]
			if got.Recall() != got.RecallAt(first) || got.NDCG() != got.NDCGAt(first) {
				t.Errorf("Recall(), NDCG() = %v, %v, want the first cut-off's %v, %v", got.Recall(), got.NDCG(), got.RecallAt(first), got.NDCGAt(first))
			}
		})
	}
}

func checkAt(t *testing.T, m Metrics, k int, w at) {
	t.Helper()
	const tol = 1e-12
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"RecallAt", m.RecallAt(k), w.recall},
		{"NDCGAt", m.NDCGAt(k), w.ndcg},
		{"UserCoverageAt", m.UserCoverageAt(k), w.userCov},
		{"CatalogueCoverageAt", m.CatalogueCoverageAt(k), w.catCov},
	} {
		if !(math.Abs(c.got-c.want) <= tol) {
			t.Errorf("%s(%d) = %v, want %v", c.name, k, c.got, c.want)
		}
	}
}

func TestEvaluateScoresNotRanked(t *testing.T) {
	scores := []float64{3, 2, 1}
	tests := []struct {
		name string
		test []Rating
		cfg  EvalConfig
	}{
		{"no held-out items", nil, EvalConfig{Ks: []int{2}}},
		{"none relevant", []Rating{{Item: 0, Value: 3}}, EvalConfig{Ks: []int{2}, Relevant: 4}},
		{"ranking off", []Rating{{Item: 0, Value: 5}}, EvalConfig{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EvaluateScores(slices.Clone(scores), nil, tt.test, tt.cfg)
			if got.RankedUsers != 0 || got.Cutoffs != nil {
				t.Errorf("EvaluateScores() = %+v, want no ranked user and no cut-offs", got)
			}
			if !math.IsNaN(got.RecallAt(2)) || !math.IsNaN(got.CatalogueCoverageAt(2)) || !math.IsNaN(got.Recall()) {
				t.Errorf("RecallAt(2), CatalogueCoverageAt(2), Recall() = %v, %v, %v, want NaN", got.RecallAt(2), got.CatalogueCoverageAt(2), got.Recall())
			}
			// An unranked user adds nothing to a ranked one.
			sum := EvaluateScores(slices.Clone(scores), nil, []Rating{{Item: 1, Value: 5}}, EvalConfig{Ks: []int{2}})
			want := sum.RecallAt(2)
			sum.Add(got)
			if sum.RankedUsers != 1 || sum.RecallAt(2) != want {
				t.Errorf("after adding an unranked user: ranked %d, RecallAt(2) %v, want 1, %v", sum.RankedUsers, sum.RecallAt(2), want)
			}
		})
	}
}

func TestEvaluateScoresErrors(t *testing.T) {
	got := EvaluateScores([]float64{4, 2, 3}, nil, []Rating{{Item: 0, Value: 5}, {Item: 1, Value: 4}}, EvalConfig{Errors: true})
	// Errors 1 and 2: SSE 5, SAE 3 over 2.
	if got.SSE != 5 || got.SAE != 3 || got.N != 2 {
		t.Errorf("EvaluateScores errors = SSE %v SAE %v N %d, want 5 3 2", got.SSE, got.SAE, got.N)
	}
}

// TestMetricsAddPartials sums per-user metrics in two partials, as two
// workers or clients would, and checks that the sum of the partials is the
// whole, including the union of top-K items behind catalogue coverage.
func TestMetricsAddPartials(t *testing.T) {
	cfg := EvalConfig{Ks: []int{2, 4}}
	type user struct {
		scores      []float64
		train, test []Rating
	}
	users := []user{
		// Top [3 2 4 0]; relevant 2: hit at rank 2.
		{[]float64{0.1, 0.9, 0.4, 0.8, 0.3}, []Rating{{Item: 1}}, []Rating{{Item: 2, Value: 1}}},
		// Top [0 1 2 3]; relevant 4: never in the top 4.
		{[]float64{5, 4, 3, 2, 1}, nil, []Rating{{Item: 4, Value: 1}}},
		// Not ranked: nothing relevant.
		{[]float64{1, 2, 3, 4, 5}, nil, nil},
	}
	var whole, a, b Metrics
	for i, u := range users {
		m := EvaluateScores(slices.Clone(u.scores), u.train, u.test, cfg)
		whole.Add(m)
		if i == 0 {
			a.Add(m)
		} else {
			b.Add(m)
		}
	}
	var sum Metrics
	sum.Add(a)
	sum.Add(b)
	if sum.RankedUsers != 2 || whole.RankedUsers != 2 {
		t.Fatalf("ranked users: sum of partials %d, whole %d, want 2", sum.RankedUsers, whole.RankedUsers)
	}
	// @2: users' top 2 are {3, 2} and {0, 1}: 4 of 5 items. @4: all 5.
	want := map[int]at{
		2: {0.5, 0.5 * 1 / math.Log2(3), 0.5, 4.0 / 5},
		4: {0.5, 0.5 * 1 / math.Log2(3), 0.5, 1},
	}
	for k, w := range want {
		checkAt(t, sum, k, w)
		checkAt(t, whole, k, w)
	}
	// Adding did not alias a partial's bitset.
	if a.CatalogueCoverageAt(2) != 2.0/5 {
		t.Errorf("partial a's CatalogueCoverageAt(2) = %v after being added, want 0.4", a.CatalogueCoverageAt(2))
	}
}

func TestMetricsAddMismatchPanics(t *testing.T) {
	scores := []float64{3, 2, 1}
	test := []Rating{{Item: 0, Value: 1}}
	m := EvaluateScores(slices.Clone(scores), nil, test, EvalConfig{Ks: []int{1, 2}})
	for _, o := range []Metrics{
		EvaluateScores(slices.Clone(scores), nil, test, EvalConfig{Ks: []int{2, 1}}),
		EvaluateScores(slices.Clone(scores), nil, test, EvalConfig{Ks: []int{1}}),
		EvaluateScores([]float64{3, 2, 1, 0}, nil, test, EvalConfig{Ks: []int{1, 2}}),
	} {
		var c Metrics
		c.Add(m)
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Add of cut-offs %v over %d items to %v over %d did not panic", o.Cutoffs, o.Items, c.Cutoffs, c.Items)
				}
			}()
			c.Add(o)
		}()
		if c.RankedUsers != 1 || c.RecallAt(1) != 1 {
			t.Errorf("after a panicking Add: ranked %d, RecallAt(1) %v, want 1, 1 (unchanged)", c.RankedUsers, c.RecallAt(1))
		}
	}
}

func TestEvalConfigCutoffs(t *testing.T) {
	tests := []struct {
		cfg  EvalConfig
		want []int
	}{
		{EvalConfig{}, nil},
		{EvalConfig{Errors: true}, nil},
		{EvalConfig{K: 10}, []int{10, 20}},
		{EvalConfig{K: 20}, []int{20, 10}},
		{EvalConfig{K: 5}, []int{5, 10, 20}},
		{EvalConfig{K: 5, Ks: []int{50}}, []int{50}},
	}
	for _, tt := range tests {
		if got := tt.cfg.cutoffs(); !slices.Equal(got, tt.want) {
			t.Errorf("%+v.cutoffs() = %v, want %v", tt.cfg, got, tt.want)
		}
	}
	for _, bad := range []EvalConfig{
		{K: -1},
		{Ks: []int{10, 0}},
		{Ks: []int{10, 20, 10}},
		{Ks: []int{10}, Relevant: math.NaN()},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v.Validate() = nil, want an error", bad)
		}
	}
}

// TestModelEvaluateMatchesScores checks that the model's evaluation is
// EvaluateScores over its scores, with K-only configs reporting at K.
func TestModelEvaluateMatchesScores(t *testing.T) {
	const items = 30
	r := rand.New(rand.NewPCG(7, 8))
	m, err := New(Implicit, items, 3, 0, 0.5, r)
	if err != nil {
		t.Fatal(err)
	}
	u := &User{Factor: []float64{0.3, -1, 0.5}}
	train := []Rating{{Item: 1, Value: 1}, {Item: 7, Value: 1}}
	test := []Rating{{Item: 2, Value: 1}, {Item: 9, Value: 1}, {Item: 20, Value: 1}}
	scores := make([]float64, items)
	m.Scores(scores, u)
	want := EvaluateScores(scores, train, test, EvalConfig{Ks: []int{5, 10, 20}})
	got := m.Evaluate(u, train, test, EvalConfig{K: 5}, nil)
	for _, k := range []int{5, 10, 20} {
		checkAt(t, got, k, at{want.RecallAt(k), want.NDCGAt(k), want.UserCoverageAt(k), want.CatalogueCoverageAt(k)})
	}
	if got.Recall() != want.RecallAt(5) || got.NDCG() != want.NDCGAt(5) {
		t.Errorf("Evaluate(K 5): Recall(), NDCG() = %v, %v, want @5's %v, %v", got.Recall(), got.NDCG(), want.RecallAt(5), want.NDCGAt(5))
	}
}

// TestTopKMatchesSort compares TopK with a full stable sort on scores with
// many ties and excluded items.
func TestTopKMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		n := 1 + r.IntN(60)
		scores := make([]float64, n)
		for i := range scores {
			scores[i] = float64(r.IntN(8))
			if r.IntN(10) == 0 {
				scores[i] = math.Inf(-1)
			}
		}
		var idx []int
		for i, s := range scores {
			if !math.IsInf(s, -1) {
				idx = append(idx, i)
			}
		}
		sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
		k := r.IntN(n + 3)
		want := idx[:min(k, len(idx))]
		if got := TopK(scores, k); !slices.Equal(got, want) {
			t.Fatalf("TopK(%v, %d) = %v, want %v", scores, k, got, want)
		}
	}
}

func BenchmarkEvaluateScores(b *testing.B) {
	const items = 10_000
	r := rand.New(rand.NewPCG(3, 4))
	base := make([]float64, items)
	for i := range base {
		base[i] = r.NormFloat64()
	}
	var train, test []Rating
	for i := range 200 {
		train = append(train, Rating{Item: int32(i * 37 % items), Value: 1})
		test = append(test, Rating{Item: int32(i*53%items + 1), Value: 1})
	}
	scores := make([]float64, items)
	cfg := EvalConfig{Ks: DefaultKs()}
	b.ReportAllocs()
	b.SetBytes(items * 8)
	for b.Loop() {
		copy(scores, base)
		EvaluateScores(scores, train, test, cfg)
	}
}
