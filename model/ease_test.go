package model

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"
)

var (
	easeItems = flag.Int("ease.items", 2000, "catalogue size of BenchmarkFitEASE")
	easeUsers = flag.Int("ease.users", 0, "users of BenchmarkFitEASE (0: twice the items)")
)

// easeData draws users with perUser distinct items each, skewed towards
// low item indices as real catalogues are towards popular items.
func easeData(r *rand.Rand, users, items, perUser int) [][]Rating {
	z := rand.NewZipf(r, 1.1, 10, uint64(items-1))
	out := make([][]Rating, users)
	seen := make([]int, items)
	for u := range out {
		for len(out[u]) < min(perUser, items) {
			i := int(z.Uint64())
			if seen[i] == u+1 {
				continue
			}
			seen[i] = u + 1
			out[u] = append(out[u], Rating{Item: int32(i), Value: float32(1 + r.IntN(5))})
		}
	}
	return out
}

// directEASE computes B by the paper's formulas on a dense X.
func directEASE(t *testing.T, users [][]Rating, items int, lambda float64) *mat.Dense {
	t.Helper()
	x := mat.NewDense(len(users), items, nil)
	for u, rs := range users {
		for _, r := range rs {
			x.Set(u, int(r.Item), 1)
		}
	}
	var g mat.Dense
	g.Mul(x.T(), x)
	for i := range items {
		g.Set(i, i, g.At(i, i)+lambda)
	}
	var p mat.Dense
	if err := p.Inverse(&g); err != nil {
		t.Fatalf("inverting G: %v", err)
	}
	b := mat.NewDense(items, items, nil)
	for i := range items {
		for j := range items {
			if i != j {
				b.Set(i, j, -p.At(i, j)/p.At(j, j))
			}
		}
	}
	return b
}

func TestFitEASEMatchesDirect(t *testing.T) {
	tests := []struct {
		name                  string
		users, items, perUser int
		lambda                float64
	}{
		{"more users than items", 40, 12, 4, 2},
		{"fewer users than items", 9, 25, 6, 0.5},
		{"unused items", 5, 30, 3, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users := easeData(rand.New(rand.NewPCG(uint64(tt.items), 1)), tt.users, tt.items, tt.perUser)
			users = append(users, nil) // a user without training data is ignored
			want := directEASE(t, users, tt.items, tt.lambda)
			for _, route := range []easeRoute{routeAuto, routePrimal, routeDual} {
				e, err := fitEASE(t.Context(), users, tt.items, tt.lambda, route)
				if err != nil {
					t.Fatalf("fitEASE(route %d): %v", route, err)
				}
				for i := range tt.items {
					for j := range tt.items {
						if got := e.B[i*tt.items+j]; math.Abs(got-want.At(i, j)) > 1e-10 {
							t.Fatalf("route %d: B[%d,%d] = %v, want %v", route, i, j, got, want.At(i, j))
						}
					}
				}
				// Scores are x_u B.
				u := users[0]
				got := make([]float64, tt.items)
				e.Scores(got, u)
				xu := mat.NewVecDense(tt.items, nil)
				for _, r := range u {
					xu.SetVec(int(r.Item), 1)
				}
				var s mat.VecDense
				s.MulVec(want.T(), xu)
				for j := range tt.items {
					if math.Abs(got[j]-s.AtVec(j)) > 1e-10 {
						t.Fatalf("route %d: Scores()[%d] = %v, want (x_u B)_%d = %v", route, j, got[j], j, s.AtVec(j))
					}
				}
			}
		})
	}
}

// TestEASETrainItemsExcluded: EASE scores a user's own items like any
// other, and the evaluation leaves them out of every top-K list.
func TestEASETrainItemsExcluded(t *testing.T) {
	const items = 20
	users := easeData(rand.New(rand.NewPCG(3, 3)), 30, items, 5)
	e, err := FitEASE(t.Context(), users, items, 1)
	if err != nil {
		t.Fatal(err)
	}
	train, test := users[0][:3], users[0][3:]
	scores := make([]float64, items)
	e.Scores(scores, train)
	got := EvaluateScores(scores, train, test, EvalConfig{Ks: []int{items}})
	shown := got.Cutoffs[0].Shown
	for _, x := range train {
		if shown[x.Item/64]&(1<<(x.Item%64)) != 0 {
			t.Errorf("train item %d is in the top %d", x.Item, items)
		}
	}
	if want := float64(items-len(train)) / items; got.CatalogueCoverageAt(items) != want {
		t.Errorf("CatalogueCoverageAt(%d) = %v, want %v (every item but the train ones)", items, got.CatalogueCoverageAt(items), want)
	}
	if got.RecallAt(items) != 1 {
		t.Errorf("RecallAt(%d) = %v, want 1 (every held-out item is ranked)", items, got.RecallAt(items))
	}
}

func TestFitEASEBadInput(t *testing.T) {
	ok := [][]Rating{{{Item: 0, Value: 1}, {Item: 1, Value: 1}}}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		users   [][]Rating
		items   int
		lambda  float64
		wantErr error
	}{
		{"no items", t.Context(), ok, 0, 1, nil},
		{"too many items", t.Context(), ok, MaxEASEItems + 1, 1, ErrTooManyItems},
		{"zero lambda", t.Context(), ok, 2, 0, nil},
		{"negative lambda", t.Context(), ok, 2, -1, nil},
		{"NaN lambda", t.Context(), ok, 2, math.NaN(), nil},
		{"infinite lambda", t.Context(), ok, 2, math.Inf(1), nil},
		{"item out of range", t.Context(), [][]Rating{{{Item: 2, Value: 1}}}, 2, 1, ErrShape},
		{"negative item", t.Context(), [][]Rating{{{Item: -1, Value: 1}}}, 2, 1, ErrShape},
		{"cancelled", cancelled, ok, 2, 1, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := FitEASE(tt.ctx, tt.users, tt.items, tt.lambda)
			if err == nil || e != nil {
				t.Fatalf("FitEASE() = %v, %v, want an error", e, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("FitEASE() error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// BenchmarkFitEASE fits a synthetic catalogue of -ease.items items; with
// the default twice as many users, the route inverts items×items.
func BenchmarkFitEASE(b *testing.B) {
	items, users := *easeItems, *easeUsers
	if users == 0 {
		users = 2 * items
	}
	data := easeData(rand.New(rand.NewPCG(1, 2)), users, items, 50)
	b.Run(fmt.Sprintf("items=%d/users=%d", items, users), func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(items) * int64(items) * 8)
		for b.Loop() {
			if _, err := FitEASE(b.Context(), data, items, DefaultEASELambda); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEASEScores(b *testing.B) {
	const items = 2000
	e := &EASE{Items: items, B: make([]float64, items*items)}
	train := easeData(rand.New(rand.NewPCG(5, 6)), 1, items, 100)[0]
	dst := make([]float64, items)
	b.ReportAllocs()
	for b.Loop() {
		e.Scores(dst, train)
	}
	_ = slices.Max(dst)
}
