package model

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func newTestModel(t *testing.T, kind Kind, items, rank int, seed uint64) *Model {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	m, err := New(kind, items, rank, 3.5, 0.3, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := range items { // non-zero biases exercise every term
		m.Params[i*(rank+1)+rank] = r.NormFloat64() * 0.2
	}
	return m
}

func randomRatings(r *rand.Rand, items, n int, implicit bool) []Rating {
	var out []Rating
	for _, i := range r.Perm(items)[:n] {
		v := float32(1 + r.IntN(5))
		if implicit {
			v = float32(1 + r.IntN(3))
		}
		out = append(out, Rating{Item: int32(i), Value: v})
	}
	return out
}

// itemLoss is the part of a user's objective that depends on the item side.
func itemLoss(m *Model, u *User, rs []Rating, cfg TrainConfig) float64 {
	var l float64
	if m.Kind == Explicit {
		for _, x := range rs {
			e := float64(x.Value) - m.Score(u, int(x.Item))
			l += e * e
			q := m.Factor(int(x.Item))
			l += cfg.Reg * (dot(q, q) + m.Bias(int(x.Item))*m.Bias(int(x.Item)))
		}
		return l
	}
	obs := map[int32]float64{}
	for _, x := range rs {
		obs[x.Item] = 1 + cfg.Alpha*float64(x.Value)
	}
	for i := range m.Items {
		c, p := 1.0, 0.0
		if cc, ok := obs[int32(i)]; ok {
			c, p = cc, 1
			q := m.Factor(i)
			l += cfg.Reg * (dot(q, q) + m.Bias(i)*m.Bias(i))
		}
		e := p - m.Score(u, i)
		l += c * e * e
	}
	return l
}

// TestLocalUpdateIsGradientStep checks the item-side change of one local
// step against a finite-difference gradient of the user's objective: with a
// tiny step, delta/lr = -½ ∇L.
func TestLocalUpdateIsGradientStep(t *testing.T) {
	for _, kind := range []Kind{Explicit, Implicit} {
		t.Run(kind.String(), func(t *testing.T) {
			const items, rank = 30, 4
			m := newTestModel(t, kind, items, rank, 7)
			r := rand.New(rand.NewPCG(3, 4))
			rs := randomRatings(r, items, 8, kind == Implicit)
			cfg := TrainConfig{Reg: 0.1, LR: 1e-7, Epochs: 1, Alpha: 2}
			tr, err := NewTrainer(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			delta := make([]float64, len(m.Params))
			if _, err := tr.LocalUpdate(delta, rs, r); err != nil {
				t.Fatal(err)
			}
			u, _ := tr.FitUser(rs)
			const h = 1e-6
			for j := 0; j < len(m.Params)-1; j++ {
				orig := m.Params[j]
				m.Params[j] = orig + h
				lp := itemLoss(m, u, rs, cfg)
				m.Params[j] = orig - h
				lm := itemLoss(m, u, rs, cfg)
				m.Params[j] = orig
				want := -0.5 * (lp - lm) / (2 * h)
				got := delta[j] / cfg.LR
				if math.Abs(got-want) > 1e-4*math.Max(1, math.Abs(want)) {
					t.Errorf("param %d: delta/lr = %.6g, want -½∂L = %.6g", j, got, want)
				}
			}
		})
	}
}

// TestFitUserMatchesDirectSolve compares the closed-form user fit with a
// dense solve of the same normal equations built naively.
func TestFitUserMatchesDirectSolve(t *testing.T) {
	for _, kind := range []Kind{Explicit, Implicit} {
		t.Run(kind.String(), func(t *testing.T) {
			const items, rank = 40, 5
			m := newTestModel(t, kind, items, rank, 11)
			r := rand.New(rand.NewPCG(5, 6))
			rs := randomRatings(r, items, 12, kind == Implicit)
			cfg := TrainConfig{Reg: 0.2, LR: 0.01, Alpha: 3}
			tr, err := NewTrainer(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tr.FitUser(rs)
			if err != nil {
				t.Fatal(err)
			}
			var want []float64
			lambda := cfg.Reg * float64(len(rs))
			if kind == Explicit {
				// Rows z = [q_i, 1], targets r - μ - b_i.
				z := mat.NewDense(len(rs), rank+1, nil)
				y := mat.NewVecDense(len(rs), nil)
				for k, x := range rs {
					for f, q := range m.Factor(int(x.Item)) {
						z.Set(k, f, q)
					}
					z.Set(k, rank, 1)
					y.SetVec(k, float64(x.Value)-m.Mean()-m.Bias(int(x.Item)))
				}
				want = normalSolve(t, z, nil, y, lambda)
			} else {
				// All items, weights c, targets p - b_i.
				z := mat.NewDense(items, rank, nil)
				w := make([]float64, items)
				y := mat.NewVecDense(items, nil)
				pref := map[int32]float64{}
				for _, x := range rs {
					pref[x.Item] = 1 + cfg.Alpha*float64(x.Value)
				}
				for i := range items {
					for f, q := range m.Factor(i) {
						z.Set(i, f, q)
					}
					w[i], y.RawVector().Data[i] = 1, -m.Bias(i)
					if c, ok := pref[int32(i)]; ok {
						w[i] = c
						y.SetVec(i, 1-m.Bias(i))
					}
				}
				want = normalSolve(t, z, w, y, lambda)
			}
			gotv := append(append([]float64(nil), got.Factor...), got.Bias)
			for i := range want {
				if math.Abs(gotv[i]-want[i]) > 1e-9 {
					t.Errorf("FitUser[%d] = %.12g, want %.12g", i, gotv[i], want[i])
				}
			}
		})
	}
}

// normalSolve solves (ZᵀWZ + λI)x = ZᵀWy with a general LU solve.
func normalSolve(t *testing.T, z *mat.Dense, w []float64, y *mat.VecDense, lambda float64) []float64 {
	t.Helper()
	rows, cols := z.Dims()
	wz := mat.DenseCopyOf(z)
	wy := mat.VecDenseCopyOf(y)
	for i := range rows {
		if w != nil {
			for j := range cols {
				wz.Set(i, j, wz.At(i, j)*w[i])
			}
			wy.SetVec(i, wy.AtVec(i)*w[i])
		}
	}
	var a mat.Dense
	a.Mul(z.T(), wz)
	for i := range cols {
		a.Set(i, i, a.At(i, i)+lambda)
	}
	var b, x mat.VecDense
	b.MulVec(z.T(), wy)
	if err := x.SolveVec(&a, &b); err != nil {
		t.Fatal(err)
	}
	out := x.RawVector().Data
	if len(out) == cols && w != nil { // implicit: no user bias
		out = append(out, 0)
	}
	return out
}

func TestALSFitsLowRankData(t *testing.T) {
	const users, items, rank = 60, 40, 3
	r := rand.New(rand.NewPCG(1, 2))
	uf := make([][]float64, users)
	itf := make([][]float64, items)
	for u := range uf {
		uf[u] = []float64{r.NormFloat64(), r.NormFloat64(), r.NormFloat64()}
	}
	for i := range itf {
		itf[i] = []float64{r.NormFloat64(), r.NormFloat64(), r.NormFloat64()}
	}
	data := make([][]Rating, users)
	for u := range users {
		for _, i := range r.Perm(items)[:25] {
			data[u] = append(data[u], Rating{Item: int32(i), Value: float32(3 + dot(uf[u], itf[i]))})
		}
	}
	m, err := New(Explicit, items, rank, 3, 0.1, r)
	if err != nil {
		t.Fatal(err)
	}
	fitted, err := ALS(context.Background(), m, data, TrainConfig{Reg: 0.001, LR: 0.01}, 30, 2)
	if err != nil {
		t.Fatal(err)
	}
	var met Metrics
	for u := range users {
		met.Add(m.Evaluate(fitted[u], nil, data[u], EvalConfig{Errors: true}, nil))
	}
	if got := met.RMSE(); got > 0.05 {
		t.Errorf("ALS training RMSE on noiseless rank-3 data = %.4f, want <= 0.05", got)
	}
}

func TestTopK(t *testing.T) {
	tests := []struct {
		scores []float64
		k      int
		want   []int
	}{
		{[]float64{1, 5, 3, 4}, 2, []int{1, 3}},
		{[]float64{1, 1, 1}, 2, []int{0, 1}},
		{[]float64{2, math.Inf(-1), 1}, 5, []int{0, 2}},
		{[]float64{2, 1}, 0, []int{}},
	}
	for _, tt := range tests {
		got := TopK(tt.scores, tt.k)
		if len(got) != len(tt.want) {
			t.Errorf("TopK(%v, %d) = %v, want %v", tt.scores, tt.k, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("TopK(%v, %d) = %v, want %v", tt.scores, tt.k, got, tt.want)
				break
			}
		}
	}
}

func TestEvaluateRankingMetrics(t *testing.T) {
	// Two items with scores from the bias only: item 1 ranks first.
	m := &Model{Kind: Implicit, Items: 3, Rank: 1, Params: []float64{0, 0.1, 0, 0.9, 0, 0.5, 0}}
	u := &User{Factor: []float64{0}}
	got := m.Evaluate(u, []Rating{{Item: 2, Value: 1}}, []Rating{{Item: 0, Value: 1}}, EvalConfig{K: 1}, nil)
	if got.RankedUsers != 1 || got.Cutoffs[0].RecallSum != 0 || got.Cutoffs[0].NDCGSum != 0 {
		t.Errorf("Evaluate miss = %+v, want ranked 1 with zero recall and NDCG", got)
	}
	got = m.Evaluate(u, nil, []Rating{{Item: 2, Value: 1}}, EvalConfig{K: 2}, nil)
	wantNDCG := (1 / math.Log2(3)) / 1
	if got.Cutoffs[0].RecallSum != 1 || math.Abs(got.Cutoffs[0].NDCGSum-wantNDCG) > 1e-12 {
		t.Errorf("Evaluate hit at rank 2 = %+v, want recall 1, NDCG %.4f", got, wantNDCG)
	}
}

func TestBadInput(t *testing.T) {
	m := newTestModel(t, Explicit, 5, 2, 1)
	tr, err := NewTrainer(m, DefaultTrainConfig())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		rs   []Rating
	}{
		{"item out of range", []Rating{{Item: 5, Value: 1}}},
		{"negative item", []Rating{{Item: -1, Value: 1}}},
		{"NaN value", []Rating{{Item: 1, Value: float32(math.NaN())}}},
	}
	for _, tt := range tests {
		if _, err := tr.FitUser(tt.rs); err == nil {
			t.Errorf("FitUser(%s) succeeded, want error", tt.name)
		}
	}
	if _, err := tr.LocalUpdate(make([]float64, 3), nil, rand.New(rand.NewPCG(1, 1))); err == nil {
		t.Error("LocalUpdate with short dst succeeded, want ErrShape")
	}
	bad := m.Clone()
	bad.Params[0] = math.Inf(1)
	if err := bad.Validate(); err == nil {
		t.Error("Validate of a model with +Inf succeeded")
	}
	bad = m.Clone()
	bad.Params = bad.Params[:4]
	if err := bad.Validate(); err == nil {
		t.Error("Validate of a truncated model succeeded")
	}
}

func BenchmarkLocalUpdate(b *testing.B) {
	// One client's local step at the ml-1m model size (3,706 items, rank 32)
	// for a user with 165 ratings, the ml-1m mean.
	for _, kind := range []Kind{Explicit, Implicit} {
		b.Run(kind.String(), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			m, _ := New(kind, 3706, 32, 3.5, 0.1, r)
			rs := randomRatings(r, 3706, 165, kind == Implicit)
			tr, err := NewTrainer(m, DefaultTrainConfig())
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]float64, len(m.Params))
			b.ReportAllocs()
			b.SetBytes(int64(8 * len(dst)))
			for b.Loop() {
				if _, err := tr.LocalUpdate(dst, rs, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestFirstNonFinite(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 65, 200} {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = math.MaxFloat64 * float64(1-2*(i%2)) // finite, however large
		}
		if got := FirstNonFinite(xs); got != -1 {
			t.Errorf("FirstNonFinite(%d finite) = %d, want -1", n, got)
		}
		for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
			for _, at := range []int{0, 63, 64, n - 1} {
				if at < 0 || at >= n {
					continue
				}
				ys := slices.Clone(xs)
				ys[at] = bad
				if at+1 < n {
					ys[n-1] = bad // a later one does not hide the first
				}
				if got := FirstNonFinite(ys); got != at {
					t.Errorf("FirstNonFinite(%d values, %v at %d) = %d, want %d", n, bad, at, got, at)
				}
			}
		}
	}
}

// gramianRows takes two items a pass and gets the one-item loop's sums
// to the bit: the implicit user solves, and so every figure, depend on it.
func TestGramianRowsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 11))
	for _, sz := range []struct{ items, rank int }{{1, 1}, {2, 3}, {3, 2}, {257, 7}, {600, 32}} {
		m, err := New(Implicit, sz.items, sz.rank, 0, 1, r)
		if err != nil {
			t.Fatal(err)
		}
		for i := range m.Items {
			m.Params[i*(sz.rank+1)+sz.rank] = r.NormFloat64()
		}
		g, qb := gramianRows(m)
		want := make([]float64, sz.rank*sz.rank)
		wantQB := make([]float64, sz.rank)
		for i := range m.Items {
			q, b := m.Factor(i), m.Bias(i)
			for a := range sz.rank {
				wantQB[a] += q[a] * b
				for c := a; c < sz.rank; c++ {
					want[a*sz.rank+c] += q[a] * q[c]
				}
			}
		}
		for a := range sz.rank {
			for c := a; c < sz.rank; c++ {
				if got := g.At(a, c); math.Float64bits(got) != math.Float64bits(want[a*sz.rank+c]) {
					t.Errorf("%d items at rank %d: gramianRows[%d][%d] = %v, want %v", sz.items, sz.rank, a, c, got, want[a*sz.rank+c])
				}
			}
			if math.Float64bits(qb[a]) != math.Float64bits(wantQB[a]) {
				t.Errorf("%d items at rank %d: qb[%d] = %v, want %v", sz.items, sz.rank, a, qb[a], wantQB[a])
			}
		}
	}
}

// BenchmarkNewTrainer is a fresh trainer at ml-latest-small's size: for
// an implicit model, its Gramian over every item.
func BenchmarkNewTrainer(b *testing.B) {
	for _, kind := range []Kind{Explicit, Implicit} {
		b.Run(kind.String(), func(b *testing.B) {
			m, _ := New(kind, 9724, 32, 3.5, 0.1, rand.New(rand.NewPCG(1, 2)))
			b.ReportAllocs()
			b.SetBytes(int64(8 * len(m.Params)))
			for b.Loop() {
				if _, err := NewTrainer(m, DefaultTrainConfig()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The two Gramian kernels (WebAssembly runs the blocked one) agree.
func TestGramianKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	for _, sz := range []struct{ items, rank int }{{1, 1}, {3, 2}, {300, 3}, {257, 7}, {600, 32}} {
		m, err := New(Implicit, sz.items, sz.rank, 0, 1, r)
		if err != nil {
			t.Fatal(err)
		}
		for i := range m.Items {
			m.Params[i*(sz.rank+1)+sz.rank] = r.NormFloat64()
		}
		g0, qb0 := gramianRows(m)
		g1, qb1 := gramianBlocked(m)
		if !mat.EqualApprox(g0, g1, 1e-9) || !slices.EqualFunc(qb0, qb1, func(a, b float64) bool { return math.Abs(a-b) <= 1e-9 }) {
			t.Errorf("%d items at rank %d: gramianBlocked = %v, %v, want %v, %v", sz.items, sz.rank, g1, qb1, g0, qb0)
		}
	}
}
