package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestSyntheticDeterministic(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		cfg := SyntheticConfig{Users: 5000, Items: 300, MeanPerUser: 20, Implicit: implicit, Seed: 7}
		a, _, err := synthetic(cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		// More goroutines than chunks, and a different number of them.
		for _, workers := range []int{3, 8} {
			b, _, err := synthetic(cfg, workers)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("synthetic(%+v) with 1 and %d workers differ", cfg, workers)
			}
		}
		cfg.Seed = 8
		c, err := Synthetic(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if reflect.DeepEqual(a.Interactions, c.Interactions) {
			t.Errorf("Synthetic with seeds 7 and 8 gave the same interactions")
		}
	}
}

func TestSyntheticShape(t *testing.T) {
	for _, tc := range []struct {
		cfg                    SyntheticConfig
		users, items, min, avg int
	}{
		{SyntheticConfig{Seed: 1}, 2000, 1000, 10, 50},
		{SyntheticConfig{Implicit: true, Seed: 2}, 2000, 1000, 10, 50},
		{SyntheticConfig{Users: 500, Items: 400, MeanPerUser: 40, MinPerUser: 5, Rank: 3, Noise: 0.1, Seed: 3}, 500, 400, 5, 40},
		{SyntheticConfig{Users: 300, Items: 150, MeanPerUser: 50, MinPerUser: 30, Rank: 32, Implicit: true, Seed: 4}, 300, 150, 30, 50},
		{SyntheticConfig{Users: 10, Items: 7, Seed: 5}, 10, 7, 7, 7},
	} {
		t.Run(fmt.Sprintf("%+v", tc.cfg), func(t *testing.T) {
			d, err := Synthetic(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if d.NumUsers() != tc.users || d.NumItems() != tc.items || d.Implicit != tc.cfg.Implicit || d.Name != "synthetic" {
				t.Fatalf("Synthetic = %q, %d users, %d items, implicit %v, want synthetic, %d, %d, %v",
					d.Name, d.NumUsers(), d.NumItems(), d.Implicit, tc.users, tc.items, tc.cfg.Implicit)
			}
			perUser := make([]int, d.NumUsers())
			perItem := make([]int, d.NumItems())
			seen := make(map[[2]int32]bool, len(d.Interactions))
			lastUser := int32(0)
			for _, x := range d.Interactions {
				if x.User < lastUser {
					t.Fatalf("interactions not grouped by user: %d after %d", x.User, lastUser)
				}
				lastUser = x.User
				if seen[[2]int32{x.User, x.Item}] {
					t.Fatalf("duplicate pair (%d, %d)", x.User, x.Item)
				}
				seen[[2]int32{x.User, x.Item}] = true
				perUser[x.User]++
				perItem[x.Item]++
				if tc.cfg.Implicit && x.Value != 1 {
					t.Fatalf("implicit interaction %+v has Value != 1", x)
				}
				if !tc.cfg.Implicit && (x.Value < 1 || x.Value > 5 || x.Value != float32(math.Round(float64(x.Value)))) {
					t.Fatalf("explicit rating %v not an integer in 1..5", x.Value)
				}
				if x.Time != 0 {
					t.Fatalf("interaction %+v has a time", x)
				}
			}
			if m := slices.Min(perUser); m < tc.min {
				t.Errorf("fewest interactions of a user = %d, want >= %d", m, tc.min)
			}
			if avg := float64(len(d.Interactions)) / float64(tc.users); math.Abs(avg-float64(tc.avg)) > 0.1*float64(tc.avg) {
				t.Errorf("mean interactions per user = %.1f, want %d ± 10%%", avg, tc.avg)
			}
			if tc.items < 200 {
				return // too small for the tails
			}
			slices.Sort(perItem)
			top := 0
			for _, n := range perItem[len(perItem)-len(perItem)/10:] {
				top += n
			}
			if share := float64(top) / float64(len(d.Interactions)); share < 0.3 {
				t.Errorf("top 10%% of items hold %.2f of interactions, want >= 0.3", share)
			}
			slices.Sort(perUser)
			if med, mx := perUser[len(perUser)/2], perUser[len(perUser)-1]; float64(med) > 0.9*float64(tc.avg) || mx < 3*tc.avg {
				t.Errorf("user activity median %d, max %d: want a long tail around mean %d", med, mx, tc.avg)
			}
		})
	}
}

func TestSyntheticConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg   SyntheticConfig
		field string
	}{
		{SyntheticConfig{Users: -1}, "Users"},
		{SyntheticConfig{Items: -1}, "Items"},
		{SyntheticConfig{MeanPerUser: -5}, "MeanPerUser"},
		{SyntheticConfig{MinPerUser: -1}, "MinPerUser"},
		{SyntheticConfig{Rank: -1}, "Rank"},
		{SyntheticConfig{Rank: 5000}, "Rank"},
		{SyntheticConfig{Noise: -0.1}, "Noise"},
		{SyntheticConfig{Noise: math.NaN()}, "Noise"},
		{SyntheticConfig{Noise: math.Inf(1)}, "Noise"},
		{SyntheticConfig{Items: 20, MinPerUser: 21}, "MinPerUser"},
		{SyntheticConfig{Items: 20, MeanPerUser: 21}, "MeanPerUser"},
		{SyntheticConfig{MeanPerUser: 5}, "MeanPerUser"},
		{SyntheticConfig{MinPerUser: 60, MeanPerUser: 50}, "MeanPerUser"},
		{SyntheticConfig{Users: math.MaxInt32 + 1}, "Users"},
	} {
		d, err := Synthetic(tc.cfg)
		if err == nil || d != nil || !strings.Contains(err.Error(), "SyntheticConfig."+tc.field+" ") {
			t.Errorf("Synthetic(%+v) error = %v, want one naming SyntheticConfig.%s", tc.cfg, err, tc.field)
		}
	}
	// A MinPerUser above the default mean raises the default mean.
	if _, err := Synthetic(SyntheticConfig{Users: 10, MinPerUser: 60}); err != nil {
		t.Errorf("Synthetic(MinPerUser: 60) error = %v, want nil", err)
	}
}

// TestSyntheticSignal checks with the true parameters that the low-rank part
// carries clearly more of the ratings than the noise: the true model's error
// is well below that of the true biases alone.
func TestSyntheticSignal(t *testing.T) {
	d, truth, err := synthetic(SyntheticConfig{Seed: 11}, 1)
	if err != nil {
		t.Fatal(err)
	}
	var sseBias, sseFull float64
	for _, x := range d.Interactions {
		u, i := int(x.User), int(x.Item)
		b := truth.mean + truth.userBias[u] + truth.itemBias[i]
		full := min(max(b+truth.affinity(u, i), 1), 5)
		sseBias += sq(float64(x.Value) - b)
		sseFull += sq(float64(x.Value) - full)
	}
	n := float64(len(d.Interactions))
	rmseBias, rmseFull := math.Sqrt(sseBias/n), math.Sqrt(sseFull/n)
	t.Logf("true biases RMSE %.3f, true model RMSE %.3f", rmseBias, rmseFull)
	if rmseFull > 0.8*rmseBias {
		t.Errorf("true model RMSE %.3f, want <= 0.8 × biases-only %.3f", rmseFull, rmseBias)
	}
}

// TestSyntheticLearnable trains biases-only and rank-8 biased matrix
// factorization by alternating least squares and checks that MF is at least
// 5% better on a held-out split.
func TestSyntheticLearnable(t *testing.T) {
	d, err := Synthetic(SyntheticConfig{Seed: 12})
	if err != nil {
		t.Fatal(err)
	}
	train, test := d.Split(0.2, 1)
	rmseBias := alsRMSE(d.NumUsers(), d.NumItems(), train, test, 0, 5)
	rmseMF := alsRMSE(d.NumUsers(), d.NumItems(), train, test, 8, 2)
	t.Logf("test RMSE: biases %.4f, rank-8 MF %.4f (%.1f%% better)", rmseBias, rmseMF, 100*(1-rmseMF/rmseBias))
	if rmseMF > 0.95*rmseBias {
		t.Errorf("MF test RMSE %.4f, want <= 0.95 × biases-only %.4f", rmseMF, rmseBias)
	}
}

// TestSyntheticImplicitAffinity checks that implicit interactions favour
// pairs with a high true affinity.
func TestSyntheticImplicitAffinity(t *testing.T) {
	d, truth, err := synthetic(SyntheticConfig{Implicit: true, Seed: 13}, 2)
	if err != nil {
		t.Fatal(err)
	}
	var observed float64
	for _, x := range d.Interactions {
		observed += truth.affinity(int(x.User), int(x.Item))
	}
	observed /= float64(len(d.Interactions))
	r := rand.New(rand.NewPCG(1, 2))
	var random float64
	const n = 100000
	for range n {
		random += truth.affinity(r.IntN(d.NumUsers()), r.IntN(d.NumItems()))
	}
	random /= n
	t.Logf("mean affinity: observed %.3f, random %.3f", observed, random)
	if observed-random < 0.5*synthAffinityStd {
		t.Errorf("mean affinity of observed pairs %.3f, want >= random %.3f + %.2f", observed, random, 0.5*synthAffinityStd)
	}
}

func TestAlias(t *testing.T) {
	w := []float64{1, 2, 3, 4, 0.5, 9.5}
	a := newAlias(w)
	r := rand.New(rand.NewPCG(3, 4))
	const n = 200000
	counts := make([]float64, len(w))
	for range n {
		counts[a.draw(r)]++
	}
	// 20 is the sum of the weights.
	for i, c := range counts {
		want := w[i] / 20 * n
		if math.Abs(c-want) > 5*math.Sqrt(want) {
			t.Errorf("item %d drawn %v times, want %v", i, c, want)
		}
	}
}

func BenchmarkSynthetic(b *testing.B) {
	for _, implicit := range []bool{false, true} {
		// MovieLens 1M: 6,040 users, 3,706 movies, about 1M ratings.
		cfg := SyntheticConfig{Users: 6040, Items: 3706, MeanPerUser: 165, MinPerUser: 20, Implicit: implicit, Seed: 1}
		b.Run(fmt.Sprintf("ml-1m/implicit=%v", implicit), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d, err := Synthetic(cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(d.Interactions)) * 24)
			}
		})
	}
}

func sq(x float64) float64 { return x * x }

// alsRMSE fits r ≈ μ + b_u + b_i + p_u·q_i of the given rank to train by
// alternating ridge regressions (regularization lambda) and returns the RMSE on
// test, with predictions clipped to 1..5.
func alsRMSE(numUsers, numItems int, train, test []Interaction, rank int, lambda float64) float64 {
	var mu float64
	for _, x := range train {
		mu += float64(x.Value)
	}
	mu /= float64(len(train))

	// Row u of users is [p_u, b_u]; row i of items is [q_i, b_i].
	dim := rank + 1
	r := rand.New(rand.NewPCG(5, 6))
	users := make([]float64, numUsers*dim)
	items := make([]float64, numItems*dim)
	for i := range items {
		if i%dim != rank {
			items[i] = 0.1 * r.NormFloat64()
		}
	}
	byUser := ByUser(numUsers, train)
	byItem := make([][]Interaction, numItems)
	for _, x := range train {
		byItem[x.Item] = append(byItem[x.Item], x)
	}
	a := make([]float64, dim*dim)
	rhs := make([]float64, dim)
	// solve sets row dst to the ridge regression of the residuals on
	// [other row factors, 1], the other side's bias subtracted.
	solve := func(dst []float64, xs []Interaction, other []float64, otherIdx func(Interaction) int) {
		clear(a)
		clear(rhs)
		for _, x := range xs {
			o := other[otherIdx(x)*dim : otherIdx(x)*dim+dim]
			y := float64(x.Value) - mu - o[rank]
			f := func(j int) float64 {
				if j == rank {
					return 1
				}
				return o[j]
			}
			for j := range dim {
				fj := f(j)
				rhs[j] += fj * y
				for k := 0; k <= j; k++ {
					a[j*dim+k] += fj * f(k)
				}
			}
		}
		for j := range dim {
			a[j*dim+j] += lambda
		}
		cholSolve(dst, a, rhs, dim)
	}
	for range 10 {
		for u, xs := range byUser {
			solve(users[u*dim:u*dim+dim], xs, items, func(x Interaction) int { return int(x.Item) })
		}
		for i, xs := range byItem {
			solve(items[i*dim:i*dim+dim], xs, users, func(x Interaction) int { return int(x.User) })
		}
	}
	var sse float64
	for _, x := range test {
		p := users[int(x.User)*dim : int(x.User)*dim+dim]
		q := items[int(x.Item)*dim : int(x.Item)*dim+dim]
		pred := mu + p[rank] + q[rank]
		for k := range rank {
			pred += p[k] * q[k]
		}
		sse += sq(float64(x.Value) - min(max(pred, 1), 5))
	}
	return math.Sqrt(sse / float64(len(test)))
}

// cholSolve solves a·x = b for symmetric positive definite a, of which only
// the lower triangle is read, overwriting a with its Cholesky factor.
func cholSolve(x, a, b []float64, n int) {
	for j := range n {
		s := a[j*n+j]
		for k := range j {
			s -= a[j*n+k] * a[j*n+k]
		}
		a[j*n+j] = math.Sqrt(s)
		for i := j + 1; i < n; i++ {
			s := a[i*n+j]
			for k := range j {
				s -= a[i*n+k] * a[j*n+k]
			}
			a[i*n+j] = s / a[j*n+j]
		}
	}
	for i := range n { // L y = b
		s := b[i]
		for k := range i {
			s -= a[i*n+k] * x[k]
		}
		x[i] = s / a[i*n+i]
	}
	for i := n - 1; i >= 0; i-- { // Lᵀ x = y
		s := x[i]
		for k := i + 1; k < n; k++ {
			s -= a[k*n+i] * x[k]
		}
		x[i] = s / a[i*n+i]
	}
}
