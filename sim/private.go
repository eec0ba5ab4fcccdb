package sim

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/aggregation/fixedpoint"
	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/aggregation/secagg"
	"gonum.org/v1/gonum/floats"
)

// DP modes.
const (
	DPOff         = "off"
	DPCentral     = "central"
	DPDistributed = "distributed"
)

// bitsSecure is the modulus of the integer domain: 2^32 leaves room for
// cohorts of thousands at a resolution far below the model's noise.
const bitsSecure = 32

// privacyPlan is what a run decided about privacy before its first round.
type privacyPlan struct {
	mode  string
	clip  float64
	z     float64 // noise multiplier: noise std of the sum is z·clip
	q     float64 // Poisson sampling rate
	delta float64
	// denom divides the noisy sum: the expected number of surviving
	// clients, fixed so that one client's presence cannot change it.
	denom float64
	acc   *privacy.Accountant
	// clipper adapts clip each round (adaptive clipping); below counts the
	// round's clients whose update norm was at most clip.
	clipper *privacy.QuantileClipper
	below   atomic.Int64
}

// noiseStd is the std of the noise added to the round's sum.
func (p *privacyPlan) noiseStd() float64 {
	if p.mode == DPOff {
		return 0
	}
	if p.clipper != nil {
		return p.clipper.UpdateNoiseMultiplier() * p.clip
	}
	return p.z * p.clip
}

// startRound fixes the round's clip norm.
func (p *privacyPlan) startRound() {
	if p.clipper != nil {
		p.clip = p.clipper.Clip()
		p.below.Store(0)
	}
}

// observe counts a client's clipping bit for adaptive clipping.
func (p *privacyPlan) observe(norm float64) {
	if p.clipper != nil && norm <= p.clip {
		p.below.Add(1)
	}
}

// endRound moves the clip norm towards the target quantile (the count of
// bits gets its own noise, part of the round's privacy cost).
func (p *privacyPlan) endRound(clients int, r *rand.Rand) error {
	if p.clipper == nil {
		return nil
	}
	return p.clipper.Observe(int(p.below.Load()), clients, r)
}

func newPrivacyPlan(c Config, population, dim int) (*privacyPlan, error) {
	p := &privacyPlan{mode: c.DP, clip: c.Clip, z: c.NoiseMultiplier, delta: c.Delta}
	if c.DP == DPOff {
		if c.AdaptiveClip {
			var err error
			p.clipper, err = privacy.NewQuantileClipper(privacy.QuantileClipperConfig{InitialClip: c.Clip, TargetQuantile: c.ClipQuantile, ExpectedClients: c.ClientsPerRound})
			if err != nil {
				return nil, fmt.Errorf("sim: adaptive clipping: %w", err)
			}
		}
		return p, nil
	}
	p.q = math.Min(1, float64(c.ClientsPerRound)/float64(population))
	p.denom = math.Max(1, p.q*float64(population)*(1-c.Dropout-c.Straggler))
	if c.TargetEpsilon > 0 {
		z, _, err := privacy.NoiseForEpsilon(c.TargetEpsilon, c.Delta, p.q, c.Rounds)
		if err != nil {
			return nil, fmt.Errorf("sim: calibrating noise for ε = %g: %w", c.TargetEpsilon, err)
		}
		p.z = z
		if c.DP == DPDistributed {
			if p.z, err = p.calibrateSkellam(c, dim); err != nil {
				return nil, err
			}
		}
	}
	acc, err := privacy.NewAccountant(privacy.Config{})
	if err != nil {
		return nil, err
	}
	p.acc = acc
	if c.AdaptiveClip {
		if c.DP == DPDistributed {
			return nil, errors.New("sim: adaptive clipping works with --dp central or off, not distributed")
		}
		p.clipper, err = privacy.NewQuantileClipper(privacy.QuantileClipperConfig{
			InitialClip: c.Clip, TargetQuantile: c.ClipQuantile, ExpectedClients: max(1, int(p.denom)), NoiseMultiplier: p.z,
		})
		if err != nil {
			return nil, fmt.Errorf("sim: adaptive clipping: %w", err)
		}
	}
	return p, nil
}

// noiseClients is how many clients' shares of distributed noise a round
// is planned for: two standard deviations below the expected number of
// Poisson-sampled survivors, so that almost every round carries at least
// the planned noise (more survivors only add noise).
func (p *privacyPlan) noiseClients() int {
	return privacy.NoiseClients(p.denom)
}

// calibrateSkellam raises the Gaussian calibration until the Skellam
// accountant, as the rounds will be charged (other survivors' noise only,
// integer sensitivity), meets the target: the distributed mechanism's bound
// is looser than the Gaussian one.
func (p *privacyPlan) calibrateSkellam(c Config, dim int) (float64, error) {
	n := p.noiseClients()
	eps := func(z float64) (float64, error) {
		d, err := privacy.NewDistributed(privacy.DistributedConfig{Dim: dim, Clip: p.clip, Bits: bitsSecure, MaxClients: n + 6*int(math.Sqrt(float64(n))) + 10, NoiseMultiplier: z, NoiseClients: n})
		if err != nil {
			return 0, err
		}
		acc, err := privacy.NewAccountant(privacy.Config{})
		if err != nil {
			return 0, err
		}
		if err := acc.AddSkellam(p.q, d.Survivors(n), c.Rounds); err != nil {
			return 0, err
		}
		e, _, err := acc.Epsilon(c.Delta)
		return e, err
	}
	lo, hi := p.z, p.z
	for k := 0; ; k++ {
		e, err := eps(hi)
		if err != nil {
			return 0, fmt.Errorf("sim: calibrating Skellam noise: %w", err)
		}
		if e <= c.TargetEpsilon {
			break
		}
		if k == 20 {
			return 0, fmt.Errorf("sim: no noise multiplier up to %g meets ε = %g with distributed DP", hi, c.TargetEpsilon)
		}
		lo, hi = hi, hi*1.5
	}
	for hi-lo > 1e-3*hi {
		mid := (lo + hi) / 2
		e, err := eps(mid)
		if err != nil {
			return 0, fmt.Errorf("sim: calibrating Skellam noise: %w", err)
		}
		if e <= c.TargetEpsilon {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}

// epsilon is the privacy spent so far, NaN without DP.
func (p *privacyPlan) epsilon() (float64, error) {
	if p.acc == nil {
		return math.NaN(), nil
	}
	eps, _, err := p.acc.Epsilon(p.delta)
	return eps, err
}

// roundAgg is one round's aggregation as the simulator drives it: every
// surviving client adds its update (from its own worker), then finish
// writes the step's delta.
type roundAgg interface {
	add(update []float64, client int, r *rand.Rand) error
	finish(dst []float64, survivors int, r *rand.Rand) error
}

// plainAgg is the float path: clipping, a sum in the clear, central noise
// if asked.
type plainAgg struct {
	p   *privacyPlan
	agg *aggregation.Plain
}

func (a *plainAgg) add(update []float64, _ int, _ *rand.Rand) error {
	if a.p.clipper != nil {
		a.p.observe(floats.Norm(update, 2))
	}
	return a.agg.Add(update, 1)
}

func (a *plainAgg) finish(dst []float64, _ int, r *rand.Rand) error {
	sm, err := a.agg.Result(dst)
	if err != nil {
		return err
	}
	a.p.noiseMean(dst, sm.Weight, r)
	return nil
}

// noiseMean adds central noise, if the run has it, to dst, the mean of n
// updates, and divides by the fixed denominator instead: the guarantee is
// about the sum.
func (p *privacyPlan) noiseMean(dst []float64, n float64, r *rand.Rand) {
	if p.mode == DPOff {
		return
	}
	for i := range dst {
		dst[i] *= n
	}
	privacy.AddGaussian(dst, p.noiseStd(), r)
	for i := range dst {
		dst[i] /= p.denom
	}
}

// encodedAgg is the integer path that secure aggregation needs: each client
// clips, rotates and rounds its update to integers mod 2^32 and (for
// distributed DP) adds its share of Skellam noise; the server only ever
// handles the modular sum (through secure aggregation if sum is set).
type encodedAgg struct {
	p         *privacyPlan
	enc       *fixedpoint.Encoder
	dist      *privacy.Distributed // the encoder and noise shares, distributed DP only
	sum       secureSum
	scratchI  sync.Pool
	mu        sync.Mutex
	inputs    map[int][]uint64 // client -> encoded input, for secure aggregation
	plainSum  []uint64
	secureRes secureResult
}

// secureSum adds the clients' encoded inputs by secure aggregation and
// reports what the protocol cost.
type secureSum func(inputs map[int][]uint64, bits uint, r *rand.Rand) ([]uint64, secureResult, error)

// secureResult is what a secure-aggregation round reports.
type secureResult struct {
	Survivors int
	BytesUp   int64 // per client, all phases
}

// roundSeed is the public seed of a round's rotation.
func roundSeed(seed uint64, round int) [32]byte {
	var rs [32]byte
	h := sha256.New()
	_ = binary.Write(h, binary.LittleEndian, [2]uint64{seed, uint64(round)})
	copy(rs[:], h.Sum(nil))
	return rs
}

func newEncodedAgg(p *privacyPlan, dim, maxClients, round int, seed uint64, sum secureSum) (*encodedAgg, error) {
	rs := roundSeed(seed, round)
	clip := p.clip
	if clip == 0 {
		return nil, errors.New("sim: the integer path needs --clip > 0")
	}
	a := &encodedAgg{p: p, sum: sum}
	if p.mode == DPDistributed {
		// Every client adds 1/n of the noise, n from noiseClients; more
		// survivors only add noise. The coordinator builds the same.
		d, err := privacy.NewDistributed(privacy.DistributedConfig{Dim: dim, Clip: clip, Bits: bitsSecure, MaxClients: maxClients,
			NoiseMultiplier: p.z, NoiseClients: min(p.noiseClients(), maxClients), Seed: rs})
		if err != nil {
			return nil, err
		}
		a.dist, a.enc = d, d.Encoder
	} else {
		enc, err := fixedpoint.NewEncoder(fixedpoint.Params{Dim: dim, Clip: clip, Bits: bitsSecure, MaxClients: maxClients, NoiseStd: p.noiseStd(), Seed: rs})
		if err != nil {
			return nil, err
		}
		a.enc = enc
	}
	if sum != nil {
		a.inputs = make(map[int][]uint64)
	} else {
		a.plainSum = make([]uint64, a.enc.PaddedDim())
	}
	a.scratchI.New = func() any { s := make([]int64, a.enc.PaddedDim()); return &s }
	return a, nil
}

func (a *encodedAgg) add(update []float64, client int, r *rand.Rand) error {
	w := make([]uint64, a.enc.PaddedDim())
	var norm float64
	var err error
	if a.dist != nil {
		norm, err = a.dist.Encode(w, update, r)
	} else {
		sp := a.scratchI.Get().(*[]int64)
		defer a.scratchI.Put(sp)
		x := *sp
		if norm, err = a.enc.Encode(x, update, r); err == nil {
			err = a.enc.Wrap(w, x)
		}
	}
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.p.observe(norm)
	if a.inputs != nil {
		a.inputs[client] = w
		return nil
	}
	return fixedpoint.AddMod(a.plainSum, w, bitsSecure)
}

func (a *encodedAgg) finish(dst []float64, survivors int, r *rand.Rand) error {
	sum := a.plainSum
	if a.inputs != nil {
		var err error
		sum, a.secureRes, err = a.sum(a.inputs, bitsSecure, r)
		if err != nil {
			return err
		}
		survivors = a.secureRes.Survivors
	}
	if err := a.enc.Decode(dst, sum); err != nil {
		return err
	}
	denom := float64(survivors)
	switch a.p.mode {
	case DPCentral:
		privacy.AddGaussian(dst, a.p.noiseStd(), r)
		denom = a.p.denom
	case DPDistributed:
		denom = a.p.denom
	}
	if denom <= 0 {
		return aggregation.ErrEmpty
	}
	for i := range dst {
		dst[i] /= denom
	}
	return nil
}

// account records a committed round in the ledger.
func (p *privacyPlan) account(a roundAgg, survivors int) error {
	if p.acc == nil {
		return nil
	}
	if ea, ok := a.(*encodedAgg); ok && p.mode == DPDistributed {
		if ea.inputs != nil {
			survivors = ea.secureRes.Survivors
		}
		// Conservatively, a client's own noise share does not protect it:
		// only the other survivors' noise counts.
		return p.acc.AddSkellam(p.q, ea.dist.Survivors(survivors), 1)
	}
	return p.acc.AddSampledGaussian(p.q, p.z, 1)
}

// secureSum returns the round's secure-aggregation driver: the four phases
// of aggregation/secagg run in process, every client its own state machine,
// the server seeing only what the protocol sends it.
func (e *env) secureSum(round int) secureSum {
	return func(inputs map[int][]uint64, bits uint, _ *rand.Rand) ([]uint64, secureResult, error) {
		var res secureResult
		ids := make([]uint32, 0, len(inputs))
		for u := range inputs {
			ids = append(ids, uint32(u))
		}
		slices.Sort(ids)
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], e.c.Seed)
		binary.LittleEndian.PutUint64(seed[8:], uint64(round))
		cfg := secagg.Config{Round: uint64(round), Seed: seed[:], Clients: ids, VectorLen: len(inputs[int(ids[0])]), Bits: int(bits), Degree: secaggDegree(len(ids))}
		srv, err := secagg.NewServer(cfg, secagg.ServerOptions{Workers: e.c.Workers})
		if err != nil {
			return nil, res, err
		}
		clients := make([]*secagg.Client, len(ids))
		for i, id := range ids {
			if clients[i], err = secagg.NewClient(cfg, id, nil); err != nil {
				return nil, res, err
			}
		}
		var up atomic.Int64
		// each runs one phase on every client the server still expects.
		each := func(f func(c *secagg.Client) error) error {
			alive := make(map[uint32]bool)
			for _, id := range srv.Awaiting() {
				alive[id] = true
			}
			var wg sync.WaitGroup
			errs := make([]error, len(clients))
			sem := make(chan struct{}, e.c.Workers)
			for i, c := range clients {
				if !alive[c.ID()] {
					continue
				}
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					errs[i] = f(c)
				}()
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				return err
			}
			return srv.ClosePhase()
		}
		phases := []func(c *secagg.Client) error{
			func(c *secagg.Client) error {
				m, err := c.AdvertiseKeys()
				if err != nil {
					return err
				}
				up.Add(int64(len(m.CipherKey) + len(m.MaskKey) + len(m.ConfigDigest)))
				return srv.HandleKeyAdvert(m)
			},
			func(c *secagg.Client) error {
				pk, err := srv.PeerKeys(c.ID())
				if err != nil {
					return err
				}
				m, err := c.ShareKeys(pk)
				if err != nil {
					return err
				}
				up.Add(int64(len(m.Shares) * (4 + secagg.SealedShareLen)))
				return srv.HandleShareUpload(m)
			},
			func(c *secagg.Client) error {
				sd, err := srv.ShareDelivery(c.ID())
				if err != nil {
					return err
				}
				m, err := c.MaskedInput(sd, inputs[int(c.ID())])
				if err != nil {
					return err
				}
				up.Add(int64(len(m.Values)) * int64((bits+7)/8)) // whole bytes a word, as on the wire
				return srv.HandleMaskedInput(m)
			},
			func(c *secagg.Client) error {
				req, err := srv.UnmaskRequest(c.ID())
				if err != nil {
					return err
				}
				m, err := c.Unmask(req)
				if err != nil {
					return err
				}
				up.Add(int64(len(m.SelfMaskShares)+len(m.MaskKeyShares)) * (4 + 8*secagg.ShareLen))
				return srv.HandleUnmaskResponse(m)
			},
		}
		for i, f := range phases {
			if err := each(f); err != nil {
				return nil, res, fmt.Errorf("secure aggregation, phase %d: %w", i+1, err)
			}
		}
		out, err := srv.Result()
		if err != nil {
			return nil, res, err
		}
		res.Survivors = out.Count
		res.BytesUp = up.Load() / int64(max(1, len(ids)))
		return out.Sum, res, nil
	}
}

// secaggDegree is the SecAgg+ neighbourhood: about 2·log2(n) neighbours
// (even, as the Harary graph needs), the complete graph for small cohorts.
func secaggDegree(n int) int {
	k := 2 * int(math.Ceil(math.Log2(float64(max(n, 2)))))
	if k%2 == 1 {
		k++
	}
	if k >= n-1 {
		return 0
	}
	return k
}
