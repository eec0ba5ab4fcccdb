package sim

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// SyntheticConfig configures Synthetic. The zero value of every field means its
// documented default.
//
// The generating model: item popularity weights are log-normal (σ = 1.2), a
// long tail whose head falls off like Zipf's law while its tail reaches items
// with a handful of interactions, as in MovieLens; user activity is MinPerUser
// plus a log-normal (σ = 1) excess with mean MeanPerUser-MinPerUser, capped at
// Items. A user's items are drawn by popularity without replacement. Each user
// u and item i have biases b_u ~ N(0, 0.4²), b_i ~ N(0, 0.45²) and latent
// factors p_u, q_i of length Rank scaled so that p_u·q_i has standard deviation
// 0.7 whatever the rank. An explicit rating is 3.6 + b_u + b_i + p_u·q_i +
// N(0, Noise²), rounded to an integer and clipped to 1..5. For implicit data a
// drawn item is kept with probability σ(2·p_u·q_i/0.7 - 1), so the chance of an
// interaction grows with the true affinity, and Value is 1.
type SyntheticConfig struct {
	Users, Items int     // 0 = defaults: 2000 users, 1000 items
	MeanPerUser  int     // mean interactions per user (long-tailed around it); 0 = 4.5 % of Items, at least 20
	MinPerUser   int     // 0 = 10 (at most Items)
	Rank         int     // true rank of the latent tastes; 0 = 8
	Noise        float64 // standard deviation of explicit rating noise; 0 = 0.5
	Implicit     bool    // implicit feedback (Value 1) instead of ratings
	Seed         uint64
}

// Generating-model constants; see SyntheticConfig.
const (
	synthMeanRating  = 3.6
	synthUserBiasStd = 0.4
	synthItemBiasStd = 0.45
	synthAffinityStd = 0.7 // standard deviation of p_u·q_i
	synthActivitySig = 1.0 // log-normal sigma of user activity above MinPerUser
	synthPopSigma    = 1.2 // log-normal sigma of item popularity
	synthMaxRank     = 1024

	// PCG stream selectors: parameters, activity and sampling each get their
	// own stream so that, for example, Implicit does not change the tastes.
	streamParams   = 1
	streamActivity = 2
	streamSample   = 3
)

// withDefaults fills in defaults and validates the configuration.
func (c SyntheticConfig) withDefaults() (SyntheticConfig, error) {
	for _, f := range []struct {
		name string
		v    int
	}{{"Users", c.Users}, {"Items", c.Items}, {"MeanPerUser", c.MeanPerUser}, {"MinPerUser", c.MinPerUser}, {"Rank", c.Rank}} {
		if f.v < 0 {
			return c, fmt.Errorf("sim: SyntheticConfig.%s %d is negative", f.name, f.v)
		}
	}
	if c.Users == 0 {
		c.Users = 2000
	}
	if c.Items == 0 {
		c.Items = 1000
	}
	if c.Users > math.MaxInt32 {
		return c, fmt.Errorf("sim: SyntheticConfig.Users %d exceeds %d", c.Users, math.MaxInt32)
	}
	if c.Items > math.MaxInt32 {
		return c, fmt.Errorf("sim: SyntheticConfig.Items %d exceeds %d", c.Items, math.MaxInt32)
	}
	if c.MinPerUser == 0 {
		c.MinPerUser = min(10, c.Items)
	}
	if c.MinPerUser > c.Items {
		return c, fmt.Errorf("sim: SyntheticConfig.MinPerUser %d exceeds Items %d", c.MinPerUser, c.Items)
	}
	if c.MeanPerUser == 0 {
		// MovieLens 1M's density (4.5 % of items per user on average), so
		// that --users 6040 --items 3706 is about a million interactions.
		c.MeanPerUser = min(max(int(math.Round(0.045*float64(c.Items))), 20, c.MinPerUser), c.Items)
	}
	if c.MeanPerUser < c.MinPerUser {
		return c, fmt.Errorf("sim: SyntheticConfig.MeanPerUser %d is less than MinPerUser %d", c.MeanPerUser, c.MinPerUser)
	}
	if c.MeanPerUser > c.Items {
		return c, fmt.Errorf("sim: SyntheticConfig.MeanPerUser %d exceeds Items %d", c.MeanPerUser, c.Items)
	}
	if c.Rank == 0 {
		c.Rank = 8
	}
	if c.Rank > synthMaxRank {
		return c, fmt.Errorf("sim: SyntheticConfig.Rank %d exceeds %d", c.Rank, synthMaxRank)
	}
	if math.IsNaN(c.Noise) || math.IsInf(c.Noise, 0) || c.Noise < 0 {
		return c, fmt.Errorf("sim: SyntheticConfig.Noise %v is not a finite non-negative number", c.Noise)
	}
	if c.Noise == 0 {
		c.Noise = 0.5
	}
	return c, nil
}

// synthTruth holds the parameters that generated a synthetic data set.
type synthTruth struct {
	rank               int
	mean               float64
	userBias, itemBias []float64
	p, q               []float64 // row-major: users × rank, items × rank
	pop                []float64 // unnormalized item popularity weights
}

// affinity returns p_u·q_i.
func (t *synthTruth) affinity(u, i int) float64 {
	k := t.rank
	pu := t.p[u*k : u*k+k]
	qi := t.q[i*k : i*k+k]
	var s float64
	for j, x := range pu {
		s += x * qi[j]
	}
	return s
}

// keep returns the probability that an implicit interaction is kept given its
// affinity.
func keep(affinity float64) float64 {
	return 1 / (1 + math.Exp(1-2*affinity/synthAffinityStd))
}

// Synthetic generates a seeded data set with long-tailed item popularity and
// user activity and low-rank user tastes, as described at SyntheticConfig.
// Every user has at least MinPerUser interactions and no (user, item) pair
// occurs twice. Interactions are grouped by user in user order. The result is
// deterministic for a configuration.
func Synthetic(cfg SyntheticConfig) (*Dataset, error) {
	d, _, err := synthetic(cfg, runtime.GOMAXPROCS(0))
	return d, err
}

func synthetic(cfg SyntheticConfig, workers int) (*Dataset, *synthTruth, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	nu, ni, k := c.Users, c.Items, c.Rank

	// Parameters.
	pr := newRand(c.Seed, streamParams)
	t := &synthTruth{
		rank:     k,
		mean:     synthMeanRating,
		userBias: make([]float64, nu),
		itemBias: make([]float64, ni),
		p:        make([]float64, nu*k),
		q:        make([]float64, ni*k),
		pop:      make([]float64, ni),
	}
	// Entries N(0, s²) give Var(p·q) = k·s⁴.
	s := math.Sqrt(synthAffinityStd / math.Sqrt(float64(k)))
	for i := range t.p {
		t.p[i] = s * pr.NormFloat64()
	}
	for i := range t.q {
		t.q[i] = s * pr.NormFloat64()
	}
	for i := range t.userBias {
		t.userBias[i] = synthUserBiasStd * pr.NormFloat64()
	}
	for i := range t.itemBias {
		t.itemBias[i] = synthItemBiasStd * pr.NormFloat64()
	}
	for i := range t.pop {
		t.pop[i] = math.Exp(synthPopSigma * pr.NormFloat64())
	}

	// Activity: MinPerUser plus a log-normal excess, capped at Items.
	ar := newRand(c.Seed, streamActivity)
	counts := make([]int32, nu)
	total := 0
	excess := float64(c.MeanPerUser - c.MinPerUser)
	const sig = synthActivitySig
	for u := range counts {
		x := excess * math.Exp(sig*ar.NormFloat64()-sig*sig/2)
		n := min(c.MinPerUser+int(math.Round(x)), ni)
		counts[u] = int32(n)
		total += n
	}

	d := &Dataset{
		Name:         "synthetic",
		Implicit:     c.Implicit,
		UserIDs:      make([]string, nu),
		ItemIDs:      make([]string, ni),
		Interactions: make([]Interaction, total),
	}
	for u := range d.UserIDs {
		d.UserIDs[u] = strconv.Itoa(u)
	}
	for i := range d.ItemIDs {
		d.ItemIDs[i] = strconv.Itoa(i)
	}

	sampleUsers(d.Interactions, counts, t, c, workers)
	return d, t, nil
}

// synthChunk is the number of users that share a random stream; the output
// does not depend on how many goroutines generate the chunks.
const synthChunk = 2048

// sampleUsers fills xs with the users' interactions, counts[u] for user u,
// grouped by user in user order, using up to workers goroutines.
func sampleUsers(xs []Interaction, counts []int32, t *synthTruth, c SyntheticConfig, workers int) {
	starts := make([]int, len(counts)+1)
	for u, n := range counts {
		starts[u+1] = starts[u] + int(n)
	}
	chunks := (len(counts) + synthChunk - 1) / synthChunk
	workers = max(1, min(workers, chunks))
	al := newAlias(t.pop)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		g := &sampler{
			t:        t,
			noise:    c.Noise,
			implicit: c.Implicit,
			alias:    al,
			seen:     make([]int32, len(t.pop)),
		}
		wg.Go(func() {
			for {
				ch := int(next.Add(1) - 1)
				if ch >= chunks {
					return
				}
				g.r = newRand(c.Seed, streamSample<<32|uint64(ch))
				lo, hi := ch*synthChunk, min((ch+1)*synthChunk, len(counts))
				for u := lo; u < hi; u++ {
					g.user(xs[starts[u]:starts[u]:starts[u+1]], u, int(counts[u]))
				}
			}
		})
	}
	wg.Wait()
}

// newRand returns a generator for a seed and a stream; distinct streams of a
// seed are independent for all practical purposes.
func newRand(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, splitmix(stream)))
}

// splitmix is SplitMix64's finalizer, a bijective bit mixer.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// sampler draws users' interactions. seen[i] == u+1 marks item i as taken
// by user u, so the set needs no clearing between users.
type sampler struct {
	t        *synthTruth
	noise    float64
	implicit bool
	r        *rand.Rand
	alias    alias
	seen     []int32
	keyed    []keyedItem // scratch for the exhaustive fallback
}

type keyedItem struct {
	key  float64
	item int32
}

// user appends n distinct interactions of user u to dst.
func (g *sampler) user(dst []Interaction, u, n int) []Interaction {
	mark := int32(u + 1)
	ni := len(g.seen)
	got := 0
	// Rejection sampling from the popularity alias table: O(n) expected while
	// few items are taken. Heavy users, for whom duplicates (or, for implicit
	// data, low acceptance) make it slow, finish with an exhaustive draw.
	limit := 0
	if n <= ni/2 {
		limit = 16*n + 64
	}
	for tries := 0; got < n && tries < limit; tries++ {
		i := g.alias.draw(g.r)
		if g.seen[i] == mark {
			continue
		}
		if g.implicit && g.r.Float64() >= keep(g.t.affinity(u, int(i))) {
			continue
		}
		g.seen[i] = mark
		dst = append(dst, g.interaction(u, i))
		got++
	}
	if got == n {
		return dst
	}
	// Weighted sampling without replacement of the rest (Efraimidis and
	// Spirakis): the items with the smallest Exp(1)/weight keys, in key order,
	// have the distribution of successive weighted draws.
	g.keyed = g.keyed[:0]
	for i := range ni {
		if g.seen[i] == mark {
			continue
		}
		w := g.t.pop[i]
		if g.implicit {
			w *= keep(g.t.affinity(u, i))
		}
		g.keyed = append(g.keyed, keyedItem{g.r.ExpFloat64() / w, int32(i)})
	}
	slices.SortFunc(g.keyed, func(a, b keyedItem) int { return cmp.Compare(a.key, b.key) })
	for _, x := range g.keyed[:n-got] {
		g.seen[x.item] = mark
		dst = append(dst, g.interaction(u, x.item))
	}
	return dst
}

func (g *sampler) interaction(u int, i int32) Interaction {
	x := Interaction{User: int32(u), Item: i, Value: 1}
	if !g.implicit {
		t := g.t
		r := t.mean + t.userBias[u] + t.itemBias[i] + t.affinity(u, int(i)) + g.noise*g.r.NormFloat64()
		x.Value = float32(min(max(math.Round(r), 1), 5))
	}
	return x
}

// alias is Vose's alias table for O(1) draws from a discrete distribution.
type alias struct {
	prob  []float64
	alias []int32
}

// newAlias builds a table for the positive weights w.
func newAlias(w []float64) alias {
	n := len(w)
	a := alias{prob: make([]float64, n), alias: make([]int32, n)}
	var sum float64
	for _, x := range w {
		sum += x
	}
	small := make([]int32, 0, n)
	large := make([]int32, 0, n)
	for i, x := range w {
		a.prob[i] = x * float64(n) / sum
		if a.prob[i] < 1 {
			small = append(small, int32(i))
		} else {
			large = append(large, int32(i))
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		a.alias[s] = l
		a.prob[l] += a.prob[s] - 1
		if a.prob[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// Leftovers are 1 up to rounding.
	for _, i := range large {
		a.prob[i] = 1
	}
	for _, i := range small {
		a.prob[i] = 1
	}
	return a
}

func (a *alias) draw(r *rand.Rand) int32 {
	i := r.IntN(len(a.prob))
	if r.Float64() < a.prob[i] {
		return int32(i)
	}
	return a.alias[i]
}
