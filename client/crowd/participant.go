package crowd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/internal/round"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// ParticipantConfig configures a Participant. Zero fields mean the
// documented defaults.
type ParticipantConfig struct {
	// ID identifies the client to the cluster; required.
	ID string
	// Ratings are the client's local training data, with item indices of
	// the cluster's model.
	Ratings []model.Rating
	// Dialer connects to the cluster; required, one per participant.
	Dialer *client.Dialer
	// Models caches downloaded models and lends update buffers; nil gives
	// the participant its own. Virtual clients in one process should share
	// one: a client then holds no model-sized memory between its rounds,
	// and 64 at most take part in a plain round at once (download, train,
	// upload).
	Models *ModelCache
	// MinBackoff and MaxBackoff bound the waits between retries
	// (exponential with full jitter); defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// Seed seeds local training and jitter; 0 derives one from ID.
	Seed uint64
	// Logger receives the participant's logs; nil discards them.
	Logger *slog.Logger
}

// Participant is one client taking part in federated rounds: it checks
// in, downloads the round's model, trains on its own ratings with
// model.Trainer.LocalUpdate, clips the change to the round's norm and
// uploads it. In a secure round (Plan.SecAgg set) it checks the round's
// announced parameters, encodes the update with aggregation/fixedpoint and
// takes part in secure aggregation instead, so that the coordinator sees
// only the cohort's sum. Its methods must not be called concurrently.
type Participant struct {
	cfg   ParticipantConfig
	log   *slog.Logger
	rng   *rand.Rand
	have  uint64
	fails int
}

// RoundResult reports one attempt at a round.
type RoundResult struct {
	// Selected is false when the leader had no place for the client; it
	// should check in again after Wait: the leader's retry time, with the
	// participant's own jitter (Run waits so).
	Selected bool
	Wait     time.Duration
	// Round and Model identify the round and the model it trained.
	Round, Model uint64
	// Loss is the training loss over N local examples before the update.
	Loss float64
	N    int
	// Norm is the L2 norm of the update before clipping.
	Norm float64
	// Bytes counts the update's payload.
	Bytes int
	// Saturated counts the coordinates of an 8-bit upload that were
	// clamped to its range.
	Saturated int
}

// NewParticipant checks cfg and returns a Participant.
func NewParticipant(cfg ParticipantConfig) (*Participant, error) {
	switch {
	case cfg.ID == "" || len(cfg.ID) > wire.MaxIDLen:
		return nil, fmt.Errorf("crowd: ParticipantConfig.ID = %q, want 1..%d bytes", cfg.ID, wire.MaxIDLen)
	case cfg.Dialer == nil:
		return nil, errors.New("crowd: ParticipantConfig.Dialer is required")
	case cfg.MinBackoff < 0 || cfg.MaxBackoff < 0:
		return nil, errors.New("crowd: negative backoff")
	}
	if cfg.Models == nil {
		cfg.Models = NewModelCache()
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	seed := cfg.Seed
	if seed == 0 {
		for _, b := range []byte(cfg.ID) {
			seed = seed*1099511628211 ^ uint64(b)
		}
	}
	return &Participant{cfg: cfg, log: cfg.Logger.With("client", cfg.ID), rng: rand.New(rand.NewPCG(seed, 0xc1e27))}, nil
}

// downloadTimeout bounds a model's download.
const downloadTimeout = 2 * time.Minute

// RunRound checks in once and, if selected, takes part in the round. It
// returns the first error; wire errors are *wire.Error (see wire.CodeOf).
func (p *Participant) RunRound(ctx context.Context) (RoundResult, error) {
	d := p.cfg.Dialer
	cctx, cancel := context.WithTimeout(ctx, round.CheckInTimeout)
	rep, err := round.CheckIn(cctx, d, &wire.CheckIn{Version: wire.Version, ClientID: p.cfg.ID, Examples: int64(len(p.cfg.Ratings)), Have: p.have})
	cancel()
	if err != nil {
		return RoundResult{}, fmt.Errorf("check in: %w", err)
	}
	plan, ok := rep.(*wire.Plan)
	if !ok {
		return RoundResult{Wait: round.RetryAfter(rep.(*wire.Wait), p.rng)}, nil
	}
	deadline := time.Now().Add(time.Duration(plan.TimeLeftMs) * time.Millisecond)
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return p.take(rctx, d, plan)
}

// take takes part in the round of plan, until rctx's deadline (the
// round's): download, train, upload, all through d.
func (p *Participant) take(rctx context.Context, d round.Exchanger, plan *wire.Plan) (RoundResult, error) {
	res := RoundResult{Selected: true, Round: plan.Round, Model: plan.Model}
	// The slot is taken before the download, not after it: thousands of
	// participants downloading at once held a model each while they
	// queued for the slots, and the downloads' memory and the queue behind
	// few slots, not the nodes, bounded a round. A secure round's phases
	// need the whole cohort to advance together: its participants give
	// the slot back once trained (1,200 downloading at once, some waited
	// for the nodes past QUIC's idle timeout).
	slots := uploadSlots(model.Dim(plan.Items, plan.Rank))
	if plan.SecAgg != nil {
		slots = maxUploads
	}
	free, err := p.cfg.Models.uploadSlot(rctx, slots)
	if err != nil {
		return res, fmt.Errorf("round %d: wait to train: %w", plan.Round, err)
	}
	free = sync.OnceFunc(free)
	defer free()

	dctx, dcancel := context.WithTimeout(rctx, downloadTimeout)
	m, _, done, err := p.cfg.Models.get(dctx, d, plan)
	dcancel()
	if e := (*wire.Error)(nil); errors.As(err, &e) && e.Code == wire.CodeNoRound {
		// The round has every upload it needs: check in again when told.
		return RoundResult{Wait: round.RetryAfter(&wire.Wait{RetryAfterMs: e.RetryAfterMs}, p.rng)}, nil
	}
	if err != nil {
		return res, fmt.Errorf("round %d: download model %d: %w", plan.Round, plan.Model, err)
	}
	// The model is given back as soon as the update is computed: the
	// upload may wait long for the node, and a buffer given back early
	// serves the next download while still in the cache.
	var once sync.Once
	release := func() { once.Do(done) }
	defer release()
	if wire.KindOf(m.Kind) != plan.Kind || m.Items != plan.Items || m.Rank != plan.Rank {
		return res, fmt.Errorf("round %d: model %d is not the planned shape", plan.Round, plan.Model)
	}
	p.have = plan.Model
	t, err := model.NewTrainer(m, model.TrainConfig{LR: plan.Train.LR, Reg: plan.Train.Reg, Epochs: plan.Train.Epochs, Alpha: plan.Train.Alpha})
	if err != nil {
		return res, fmt.Errorf("round %d: %w", plan.Round, err)
	}
	// LocalUpdate overwrites all of buf. An upload of float64s is buf, free
	// again when RunRound returns; a quantized one frees it once quantized.
	buf := p.cfg.Models.update(len(m.Params))
	var bufOnce sync.Once
	releaseBuf := func() { bufOnce.Do(func() { p.cfg.Models.release(buf) }) }
	defer releaseBuf()
	scr := *buf
	up, err := t.LocalUpdate(scr, p.cfg.Ratings, p.rng)
	release()
	if err != nil {
		return res, fmt.Errorf("round %d: train: %w", plan.Round, err)
	}
	res.Loss, res.N = up.Loss, up.N
	if plan.SecAgg != nil {
		free()
		res.Norm, res.Bytes, err = round.Secure(rctx, d, p.cfg.ID, plan, scr, false, p.rng, round.SecureOptions{Identity: p.cfg.Dialer.RoundIdentity, Compute: p.cfg.Models.coreSlot})
		if err != nil {
			return res, fmt.Errorf("round %d: secure aggregation: %w", plan.Round, err)
		}
		return res, nil
	}
	// The update is not needed once quantized: it is the quantizer's
	// scratch (of an upload of float64s, it is the upload, clipped in
	// place). The quantizer clips it as it rotates it: no pass of its own.
	req, norm, sat, err := round.NewUpload(plan, p.cfg.ID, up.Loss, up.N, scr, false, p.rng, scr)
	res.Norm = norm
	if err != nil {
		return res, fmt.Errorf("round %d: quantize the update: %w", plan.Round, err)
	}
	res.Saturated = sat
	res.Bytes = 8*len(req.Delta) + len(req.Quantized)
	if req.Delta == nil {
		// Quantized: the buffer is free before the upload, which may wait
		// long for the node, and serves the next participant's download
		// while still in the cache.
		releaseBuf()
	}
	// Retry the upload on transport failures until the deadline; a wire
	// error is final for this round.
	for attempt := 0; ; attempt++ {
		err = round.Upload(rctx, d, req)
		if err == nil || wire.CodeOf(err) != 0 || rctx.Err() != nil {
			break
		}
		if round.Sleep(rctx, backoff(p.rng, attempt, p.cfg.MinBackoff, p.cfg.MaxBackoff)) != nil {
			break
		}
	}
	if err != nil {
		return res, fmt.Errorf("round %d: upload: %w", plan.Round, err)
	}
	return res, nil
}

// Run takes part in rounds until ctx ends, checking in again when the
// leader said (RoundResult.Wait), and retrying with exponential backoff
// and jitter after failures (a dead node, a leader change, a round
// abandoned). While it waits a second or more it holds no connection
// (Dialer.Release). It returns ctx's error, or the first error no retry can fix
// (an unsupported protocol version, a forbidden request). After each
// round, done (if not nil) is called with its result; a non-nil return
// stops Run with that error.
func (p *Participant) Run(ctx context.Context, done func(RoundResult) error) error {
	for {
		res, err := p.RunRound(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch code := wire.CodeOf(err); {
		case err == nil:
			p.fails = 0
			if done != nil && res.Selected {
				if err := done(res); err != nil {
					return err
				}
			}
			if err := p.idle(ctx, res.Wait); err != nil {
				return err
			}
			continue
		case code == wire.CodeVersion || code == wire.CodeForbidden:
			return err
		}
		p.fails++
		wait := backoff(p.rng, p.fails-1, p.cfg.MinBackoff, p.cfg.MaxBackoff)
		p.log.Debug("round failed", "err", err, "retry_in", wait)
		if err := p.idle(ctx, wait); err != nil {
			return err
		}
	}
}

// releaseAfter is the shortest wait before which a participant releases
// its connection: a shorter one keeps it, as a new handshake would cost
// more than the idle connection.
const releaseAfter = time.Second

// idle waits d, holding no connection if d is long.
func (p *Participant) idle(ctx context.Context, d time.Duration) error {
	if d >= releaseAfter {
		p.cfg.Dialer.Release()
	}
	return round.Sleep(ctx, d)
}

// backoff returns the wait before retry attempt (0-based): exponential
// from lo to hi with full jitter.
func backoff(r *rand.Rand, attempt int, lo, hi time.Duration) time.Duration {
	d := lo << min(attempt, 20)
	if d > hi || d <= 0 {
		d = hi
	}
	return lo/2 + time.Duration(r.Int64N(int64(d)))
}
