package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/model"
)

// downBytesPerParam is what one parameter of a model download costs:
// devices receive models as packed float32 (and train on them).
const downBytesPerParam = 4

// cosineFloor is where the cosine schedule ends, as a share of ServerLR.
const cosineFloor = 0.05

// lrSetter is a server optimizer whose step a schedule can change.
type lrSetter interface{ SetLR(lr float64) }

// federate runs the rounds: sample a cohort, let each surviving client train
// locally on its own data, aggregate, step the server optimizer.
func (e *env) federate(ctx context.Context, start time.Time, res *Result, obs Observer) error {
	c := e.c
	m, err := e.newModel()
	if err != nil {
		return err
	}
	dim := len(m.Params)
	opt, err := aggregation.NewOptimizer(aggregation.OptimizerConfig{Name: c.ServerOpt, LR: c.ServerLR, Tau: c.Tau}, dim)
	if err != nil {
		return err
	}
	plan, err := newPrivacyPlan(c, len(e.active), dim)
	if err != nil {
		return err
	}
	res.NoiseMultiplier = plan.z
	sampler := rand.New(rand.NewPCG(c.Seed, 0x5a3b1e))
	serverRand := rand.New(rand.NewPCG(c.Seed, 0x5e77e7))
	delta := make([]float64, dim)
	want := min(len(e.active), int(math.Ceil(float64(c.ClientsPerRound)*(1+c.OverSelect))))
	var up, down, uploads, downloads int64
	defer func() {
		// Bytes per client per round, per parameter.
		res.UpPerParam = float64(up) / float64(max(1, uploads)*int64(dim))
		res.DownPerParam = float64(down) / float64(max(1, downloads)*int64(dim))
		res.Saturated = float64(e.saturated.Load()) / float64(max(1, uploads)*int64(dim))
	}()
	type part struct {
		loss float64
		n    int
	}
	parts := make([]part, c.Workers)
	m32 := m.Clone()
	for round := 1; round <= c.Rounds; round++ {
		// Clients train on the model as they download it, in float32.
		for i, x := range m.Params {
			m32.Params[i] = float64(float32(x))
		}
		t, err := model.NewTrainer(m32, e.tc)
		if err != nil {
			return err
		}
		var cohort []int
		if plan.acc != nil {
			// The privacy analysis assumes Poisson sampling, so that is
			// what the simulator does.
			cohort = poissonSample(sampler, e.active, plan.q)
		} else {
			cohort = sample(sampler, e.active, want)
		}
		plan.startRound()
		agg, upBytes, err := e.newRoundAgg(plan, dim, len(cohort), round)
		if err != nil {
			return err
		}
		// Every selected client downloads the model; those that drop out or
		// straggle past the deadline never get their update counted.
		down += int64(len(cohort)) * int64(dim) * downBytesPerParam
		downloads += int64(len(cohort))
		survivors := cohort[:0:0]
		for _, u := range cohort {
			if f := sampler.Float64(); f >= c.Dropout+c.Straggler {
				survivors = append(survivors, u)
			}
		}
		clear(parts)
		err = e.parallel(ctx, len(survivors), func(w, k int, scratch []float64) error {
			u := survivors[k]
			r := rand.New(rand.NewPCG(c.Seed^uint64(round)<<20, uint64(u)))
			upd, err := t.LocalUpdate(scratch, e.train[u], r)
			if err != nil {
				return fmt.Errorf("client %d: %w", u, err)
			}
			parts[w].loss += upd.Loss
			parts[w].n += upd.N
			return agg.add(scratch, u, r)
		})
		if err != nil {
			return fmt.Errorf("sim: round %d: %w", round, err)
		}
		var loss float64
		var n int
		for _, p := range parts {
			loss += p.loss
			n += p.n
		}
		if len(survivors) < c.MinClients {
			res.Abandoned++
		} else {
			up += int64(len(survivors)) * upBytes
			uploads += int64(len(survivors))
			if err := agg.finish(delta, len(survivors), serverRand); err != nil {
				return fmt.Errorf("sim: round %d: %w", round, err)
			}
			if err := plan.account(agg, len(survivors)); err != nil {
				return fmt.Errorf("sim: round %d: privacy ledger: %w", round, err)
			}
			if err := plan.endRound(len(survivors), serverRand); err != nil {
				return fmt.Errorf("sim: round %d: %w", round, err)
			}
			if c.ServerDecay == DecayCosine {
				opt.(lrSetter).SetLR(aggregation.CosineDecay(c.ServerLR, cosineFloor, round, c.Rounds))
			}
			if err := opt.Step(m.Params, delta); err != nil {
				return fmt.Errorf("sim: round %d: %w", round, err)
			}
			if err := m.Validate(); err != nil {
				return fmt.Errorf("sim: round %d: training diverged (lower --lr or --server-lr): %w", round, err)
			}
		}
		if round%c.EvalEvery != 0 && round != c.Rounds {
			obs.Round(round, c.Rounds, nil)
			continue
		}
		row, err := e.evaluate(ctx, m)
		if err != nil {
			return err
		}
		row.Round = round
		row.Clients = len(survivors)
		row.TrainLoss = math.NaN()
		if n > 0 {
			row.TrainLoss = loss / float64(n)
		}
		row.BytesUp, row.BytesDown = up, down
		row.Clip = plan.clip
		if row.Epsilon, err = plan.epsilon(); err != nil {
			return err
		}
		row.WallS = time.Since(start).Seconds()
		res.Rows = append(res.Rows, row)
		res.Final = row
		obs.Round(round, c.Rounds, &row)
	}
	return nil
}

// newRoundAgg picks the round's aggregation path and says how many bytes
// one client uploads on it.
func (e *env) newRoundAgg(plan *privacyPlan, dim, cohort, round int) (roundAgg, int64, error) {
	c := e.c
	var sum secureSum
	if c.SecAgg {
		sum = e.secureSum(round)
	}
	if c.UploadBits == 8 {
		agg, err := newQuantAgg(plan, dim, max(cohort, 1), roundSeed(c.Seed, round), sum, &e.saturated)
		if err != nil {
			return nil, 0, err
		}
		return agg, int64(dim) * agg.bytesPerParam(), nil
	}
	if !c.SecAgg && c.DP != DPDistributed {
		agg, err := aggregation.NewPlain(dim, plan.clip)
		return &plainAgg{p: plan, agg: agg}, int64(dim) * 8, err
	}
	a, err := newEncodedAgg(plan, dim, max(cohort, 1), round, c.Seed, sum)
	if err != nil {
		return nil, 0, err
	}
	return a, int64(a.enc.PaddedDim()) * bitsSecure / 8, nil
}

// poissonSample includes each member of pop independently with
// probability q.
func poissonSample(r *rand.Rand, pop []int, q float64) []int {
	var out []int
	for _, u := range pop {
		if r.Float64() < q {
			out = append(out, u)
		}
	}
	return out
}

// sample picks k distinct members of pop uniformly (partial Fisher-Yates on
// a copy, so pop keeps its order).
func sample(r *rand.Rand, pop []int, k int) []int {
	if k >= len(pop) {
		return append([]int(nil), pop...)
	}
	idx := make(map[int]int, 2*k)
	out := make([]int, k)
	at := func(i int) int {
		if v, ok := idx[i]; ok {
			return v
		}
		return i
	}
	for i := range k {
		j := i + r.IntN(len(pop)-i)
		vi, vj := at(i), at(j)
		idx[i], idx[j] = vj, vi
		out[i] = pop[vj]
	}
	return out
}
