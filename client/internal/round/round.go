package round

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/aggregation/fixedpoint"
	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
	"gonum.org/v1/gonum/floats"
)

// Exchanger runs one request of the wire protocol, passing each reply to
// recv until recv is done or fails: a *client.Dialer.
type Exchanger interface {
	Exchange(ctx context.Context, req wire.Message, recv func(wire.Message) (done bool, err error)) error
}

// CheckInTimeout bounds a check-in, which the leader may hold for
// wire.MaxHold.
const CheckInTimeout = wire.MaxHold + 5*time.Second

// CheckIn checks in and returns the Plan or Wait the leader answers with.
func CheckIn(ctx context.Context, d Exchanger, req *wire.CheckIn) (wire.Message, error) {
	var out wire.Message
	err := d.Exchange(ctx, req, func(m wire.Message) (bool, error) {
		switch m.(type) {
		case *wire.Plan, *wire.Wait:
			out = m
			return true, nil
		}
		return true, wire.Errorf(wire.CodeUnknownType, "unexpected %s after CheckIn", m.Type())
	})
	return out, err
}

// NewUpload returns the upload of update x for plan, clipped to the
// plan's clip: as float64 (x itself, clipped in place unless preClipped
// says it was clipped already), or in a round of 8-bit uploads quantized
// by the round's fixedpoint.Quantizer (the model's dimension, the clip and
// wire.UploadSeed), which clips as it rotates, r driving the unbiased
// rounding. The quantizer works in scratch (len(x) floats; nil: a buffer
// of its own), which may be x: otherwise x is not modified. It also
// returns the norm of x before clipping, which sets the upload's
// BelowClip, and how many coordinates saturated.
func NewUpload(plan *wire.Plan, id string, loss float64, n int, x []float64, preClipped bool, r *rand.Rand, scratch []float64) (*wire.Upload, float64, int, error) {
	up := &wire.Upload{Version: wire.Version, Round: plan.Round, ClientID: id, Ticket: plan.Ticket, Model: plan.Model, Loss: loss, N: int64(n)}
	if plan.UploadBits != wire.UploadBits8 {
		var norm float64
		if preClipped {
			norm = floats.Norm(x, 2)
		} else {
			norm = aggregation.Clip(x, plan.Clip)
		}
		up.Delta, up.BelowClip = x, plan.Clip > 0 && BelowClip(norm, plan.Clip, preClipped)
		return up, norm, 0, nil
	}
	q, err := fixedpoint.NewQuantizer(len(x), plan.Clip, wire.UploadSeed(plan.Round, plan.Digest))
	if err != nil {
		return nil, 0, 0, err
	}
	// The quantizer's signed bytes are written in place as the upload's
	// two's complement bytes (wire.QuantizedOf without its copy).
	up.Quantized = make([]byte, len(x))
	v := wire.Int8View(up.Quantized)
	var norm float64
	var sat int
	if scratch != nil {
		norm, sat, err = q.QuantizeWith(v, x, scratch, r)
	} else {
		norm, sat, err = q.Quantize(v, x, r)
	}
	if err != nil {
		return nil, 0, 0, err
	}
	up.Step, up.BelowClip = q.Step(), BelowClip(norm, plan.Clip, preClipped)
	return up, norm, sat, nil
}

// retryJitter is the half-width of the device's own jitter on the
// leader's retry time.
const retryJitter = 0.1

// RetryAfter is how long a device not selected waits before it checks in
// again: the leader's RetryAfterMs (already spread over the population,
// pace steering) times the device's own uniform jitter in [0.9, 1.1), so
// that devices told alike, or a leader that does not jitter, still do not
// bring them back in step.
func RetryAfter(w *wire.Wait, r *rand.Rand) time.Duration {
	d := time.Duration(w.RetryAfterMs) * time.Millisecond
	return time.Duration(float64(d) * (1 - retryJitter + 2*retryJitter*r.Float64()))
}

// Upload sends an update and waits for the acknowledgement.
func Upload(ctx context.Context, d Exchanger, req *wire.Upload) error {
	return d.Exchange(ctx, req, func(m wire.Message) (bool, error) {
		if _, ok := m.(*wire.UploadAck); !ok {
			return true, wire.Errorf(wire.CodeUnknownType, "unexpected %s after Upload", m.Type())
		}
		return true, nil
	})
}

// secAgg sends one phase's message of a secure round and returns the
// leader's reply, which must be of type want. The leader holds the request
// until the phase closes.
func secAgg(ctx context.Context, d Exchanger, req wire.Message, want wire.Type) (wire.Message, error) {
	var out wire.Message
	err := d.Exchange(ctx, req, func(m wire.Message) (bool, error) {
		if m.Type() != want {
			return true, wire.Errorf(wire.CodeUnknownType, "unexpected %s after %s", m.Type(), req.Type())
		}
		out = m
		return true, nil
	})
	return out, err
}

// Model downloads a committed model (version 0: the newest) from whichever
// node d is connected to, as float32 (half the bytes; an older node sends
// float64), checking it against the digest its header announces, and
// returns it with its header, which carries the cluster's event weights
// and catalogue digest and says which it sent.
func Model(ctx context.Context, d Exchanger, version uint64) (*model.Model, *wire.ModelHeader, error) {
	return download(ctx, d, version, 0, 0, nil)
}

// Newer downloads the newest committed model if it is newer than have;
// otherwise it returns a nil model with the header, the only frame a node
// sends a device that holds the newest model (GetModel.Have; an older
// node sends the chunks too, which it stops reading).
func Newer(ctx context.Context, d Exchanger, have uint64) (*model.Model, *wire.ModelHeader, error) {
	return download(ctx, d, 0, have, 0, nil)
}

// download is Model, Newer and Fetch: with have > 0, it stops after the
// header of a model no newer than have; with round > 0, the node may
// answer that the round needs no more uploads (wire.CodeNoRound). The
// model's params go in buf if it has room (wire.NewModelBuilderInto).
func download(ctx context.Context, d Exchanger, version, have, round uint64, buf []float64) (*model.Model, *wire.ModelHeader, error) {
	var b *wire.ModelBuilder
	var hdr *wire.ModelHeader
	err := d.Exchange(ctx, &wire.GetModel{Version: wire.Version, Model: version, Float32: true, Have: have, Round: round}, func(m wire.Message) (bool, error) {
		switch m := m.(type) {
		case *wire.ModelHeader:
			if hdr != nil {
				return true, wire.Errorf(wire.CodeMalformed, "second model header")
			}
			if version != 0 && m.Model != version {
				return true, wire.Errorf(wire.CodeMalformed, "asked for model %d, got %d", version, m.Model)
			}
			hdr = m
			if have != 0 && m.Model <= have {
				return true, nil // current: an older node sends chunks anyway
			}
			if m.Current {
				return true, wire.Errorf(wire.CodeMalformed, "model %d sent as current to a device that holds %d", m.Model, have)
			}
			var err error
			b, err = wire.NewModelBuilderInto(m, buf)
			return false, err
		case *wire.ModelChunk:
			if b == nil {
				return true, wire.Errorf(wire.CodeMalformed, "model chunk before its header")
			}
			if err := b.Add(m); err != nil {
				return true, err
			}
			return b.Done(), nil
		}
		return true, wire.Errorf(wire.CodeUnknownType, "unexpected %s in a model transfer", m.Type())
	})
	if err != nil {
		return nil, nil, err
	}
	if b == nil {
		return nil, hdr, nil // no newer than have
	}
	m, err := b.Model()
	if err != nil {
		return nil, nil, err
	}
	return m, hdr, nil
}

// Fetch downloads the model of plan and checks it against the plan's
// digest of what it received: Digest32 for a float32 download, Digest for
// a float64 one. It returns the model and its header. The model's params
// go in buf if it has room (nil: a new buffer), so that a device that
// takes part in many rounds can reuse one. A node whose part of the round
// needs no more uploads answers a *wire.Error of CodeNoRound instead: the
// device has nothing to do in this round.
func Fetch(ctx context.Context, d Exchanger, plan *wire.Plan, buf []float64) (*model.Model, *wire.ModelHeader, error) {
	m, h, err := download(ctx, d, plan.Model, 0, plan.Round, buf)
	if err != nil {
		return nil, nil, err
	}
	// The builder checked what arrived against the header's digest (of
	// the float32 values for a float32 download): the header's digest must
	// be the plan's. Hashing the model again would cost a device a third
	// of its download's CPU.
	want := plan.Digest
	if h.Float32 {
		want = plan.Digest32
	}
	if m == nil || string(h.Digest) != string(want) {
		return nil, nil, fmt.Errorf("client: model %d (float32 %v) does not match the round's digest", plan.Model, h.Float32)
	}
	return m, h, nil
}

// Secure takes part in a secure round with update x: it checks the
// round's announced parameters, encodes x with privacy.NewDistributed
// (clipping it; r drives the randomized rounding), adds its share of the
// round's Skellam noise with distributed DP, appends the adaptive-clipping
// bit if asked, and runs the four phases of secure aggregation with the
// leader. preClipped says that x was clipped to the round's clip already
// (the adaptive-clipping bit is then inferred from its norm). It returns
// the update's norm before clipping and the bytes sent.
//
// In a round whose cohort is split among the nodes (SecAggParams.Group),
// the device runs secure aggregation with its node's group, whose graph
// seed binds the node (and, signed, the group in Plan.Cohort).
//
// Each step that computes much (encoding x, sharing keys, masking) runs
// within opt.Compute, if set; the last steps, cheap (signing the
// survivors, revealing shares), do not wait behind other devices' masking
// to end a round their node has nearly finished.
//
// A signed round (SecAggParams.Signed) also needs opt.Identity: the
// device checks that the round's graph seed binds the plan's cohort, with
// itself at its index, and that the threshold resists opt.Colluders,
// signs its key advert with its identity, confirms the survivor set to
// its neighbours, and reveals its shares only when enough of them
// confirmed that set to it.
func Secure(ctx context.Context, d Exchanger, id string, plan *wire.Plan, x []float64, preClipped bool, r *rand.Rand, opt SecureOptions) (float64, int, error) {
	sp := plan.SecAgg
	graph, rot := sp.WantSeeds(plan.Round, plan.Digest, plan.Cohort)
	switch {
	case sp.Signed && opt.Identity == nil:
		return 0, 0, errors.New("a signed round, and the device has no identity to sign with")
	case sp.Signed && len(plan.Cohort) != sp.Clients:
		return 0, 0, fmt.Errorf("a signed round of %d clients, the plan lists a cohort of %d", sp.Clients, len(plan.Cohort))
	case sp.Signed && plan.Cohort[plan.SecAggID] != id:
		return 0, 0, fmt.Errorf("the plan's cohort has %q at this device's index %d", plan.Cohort[plan.SecAggID], plan.SecAggID)
	case !bytes.Equal(sp.Seed, graph[:]) || !bytes.Equal(sp.RotationSeed, rot[:]):
		return 0, 0, errors.New("the round's seeds are not derived from its manifest")
	case sp.Clip != plan.Clip:
		return 0, 0, fmt.Errorf("secure clip %v differs from the plan's %v", sp.Clip, plan.Clip)
	case sp.Group == "" && sp.MinSurvivors < plan.MinClients:
		return 0, 0, fmt.Errorf("secure round sums as few as %d inputs, the plan promises %d", sp.MinSurvivors, plan.MinClients)
	case sp.Group == "" && plan.Privacy.Mechanism == wire.MechSkellam && plan.Privacy.NoiseClients > sp.MinSurvivors:
		// Fewer survivors than shares would carry less noise than announced.
		return 0, 0, fmt.Errorf("noise split into %d shares, the round sums as few as %d", plan.Privacy.NoiseClients, sp.MinSurvivors)
	case sp.Group != "" && plan.Privacy.Mechanism == wire.MechSkellam && plan.Privacy.NoiseClients > sp.Cohort:
		// A group's sum is one of the round's: the leader commits a sum
		// over groups of at least the shares' count (docs/privacy.md).
		return 0, 0, fmt.Errorf("noise split into %d shares, the round's cohort has %d", plan.Privacy.NoiseClients, sp.Cohort)
	}
	var in []uint64
	var words int
	var norm float64
	err := opt.compute(ctx, func() (err error) {
		in, words, norm, err = secureInput(plan, x, r)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	if sp.ClipBit && BelowClip(norm, sp.Clip, preClipped) {
		in[words] = 1 // adaptive clipping: only the cohort's count is revealed
	}
	cfg := sp.Config(plan.Round, len(in))
	var c *secagg.Client
	if sp.Signed {
		if err := cfg.CheckActive(opt.Colluders); err != nil {
			return norm, 0, err
		}
		var ident secagg.Identity
		if ident, err = opt.Identity(plan.Cohort, sp.Roster); err != nil {
			return norm, 0, err
		}
		c, err = secagg.NewSignedClient(cfg, plan.SecAggID, ident, nil)
	} else {
		c, err = secagg.NewClient(cfg, plan.SecAggID, nil)
	}
	if err != nil {
		return norm, 0, err
	}
	hdr := wire.SecAggHeader{Version: wire.Version, Round: plan.Round, ClientID: id, Ticket: plan.Ticket}
	adv, err := c.AdvertiseKeys()
	if err != nil {
		return norm, 0, err
	}
	rep, err := secAgg(ctx, d, &wire.SecAggAdvert{SecAggHeader: hdr, Keys: wire.SecAggKeysOf(adv)}, wire.TypeSecAggPeerKeys)
	if err != nil {
		return norm, 0, fmt.Errorf("advertise keys: %w", err)
	}
	var up secagg.ShareUpload
	if err := opt.compute(ctx, func() (err error) {
		up, err = c.ShareKeys(rep.(*wire.SecAggPeerKeys).PeerKeys())
		return err
	}); err != nil {
		return norm, 0, err
	}
	if rep, err = secAgg(ctx, d, &wire.SecAggShares{SecAggHeader: hdr, Shares: wire.SealedOf(up.Shares)}, wire.TypeSecAggDelivery); err != nil {
		return norm, 0, fmt.Errorf("share keys: %w", err)
	}
	dl := rep.(*wire.SecAggDelivery)
	var width uint8
	var vals []byte
	if err := opt.compute(ctx, func() error {
		// in is this function's own: masked where it is, not copied.
		mi, err := c.MaskInPlace(secagg.ShareDelivery{Round: dl.Round, To: dl.To, Shares: wire.Sealed(dl.Shares)}, in)
		if err != nil {
			return err
		}
		width, vals = wire.PackWords(mi.Values, sp.Bits)
		in = nil // packed: free once this step ends
		return nil
	}); err != nil {
		return norm, 0, err
	}
	if !sp.Signed {
		if rep, err = secAgg(ctx, d, &wire.SecAggMasked{SecAggHeader: hdr, Width: width, Values: vals}, wire.TypeSecAggUnmaskRequest); err != nil {
			return norm, len(vals), fmt.Errorf("masked input: %w", err)
		}
	} else {
		if rep, err = secAgg(ctx, d, &wire.SecAggMasked{SecAggHeader: hdr, Width: width, Values: vals}, wire.TypeSecAggCheckRequest); err != nil {
			return norm, len(vals), fmt.Errorf("masked input: %w", err)
		}
		cs, err := c.ConsistencyCheck(rep.(*wire.SecAggCheckRequest).ConsistencyRequest())
		if err != nil {
			return norm, len(vals), err
		}
		if rep, err = secAgg(ctx, d, &wire.SecAggCheck{SecAggHeader: hdr, Tags: wire.TagsOf(cs.Tags)}, wire.TypeSecAggUnmaskRequest); err != nil {
			return norm, len(vals), fmt.Errorf("consistency check: %w", err)
		}
	}
	ur := rep.(*wire.SecAggUnmaskRequest)
	um, err := c.Unmask(secagg.UnmaskRequest{Round: ur.Round, To: ur.To, Survivors: ur.Survivors, Dropped: ur.Dropped, Tags: wire.ConsistencyTags(ur.Tags)})
	if err != nil {
		return norm, len(vals), err
	}
	if _, err := secAgg(ctx, d, &wire.SecAggUnmask{SecAggHeader: hdr, SelfMaskShares: wire.SharesOf(um.SelfMaskShares), MaskKeyShares: wire.SharesOf(um.MaskKeyShares)}, wire.TypeUploadAck); err != nil {
		return norm, len(vals), fmt.Errorf("unmask: %w", err)
	}
	return norm, len(vals), nil
}

// secureInput encodes update x for the secure round of plan: quantized to
// 8 bits and wrapped into the field (SecAggParams.Quantized), or encoded by
// privacy.NewDistributed with the round's Skellam noise share if any. It
// returns the input, with room for the clip bit, the number of words the
// update took and its norm before clipping.
func secureInput(plan *wire.Plan, x []float64, r *rand.Rand) (in []uint64, words int, norm float64, err error) {
	sp := plan.SecAgg
	if sp.Quantized {
		q, err := fixedpoint.NewQuantizer(len(x), sp.Clip, [32]byte(sp.RotationSeed))
		if err != nil {
			return nil, 0, 0, err
		}
		v := make([]int8, len(x))
		if norm, _, err = q.Quantize(v, x, r); err != nil {
			return nil, 0, 0, err
		}
		in = make([]uint64, sp.InputLen(len(x)))
		fixedpoint.WrapQuantized(in, v, uint(sp.Bits))
		return in, len(x), norm, nil
	}
	dist, err := privacy.NewDistributed(sp.DistributedConfig(plan.Privacy, len(x)))
	if err != nil {
		return nil, 0, 0, err
	}
	if dist.Skellam.ClientVariance > 0 {
		// The noise must be secret to the client: a seeded generator
		// would let the coordinator subtract it.
		r = privacy.NewSecureRand()
	}
	pad := dist.Encoder.PaddedDim()
	in = make([]uint64, sp.InputLen(pad))
	norm, err = dist.Encode(in[:pad], x, r)
	return in, pad, norm, err
}

// SecureOptions is what a device brings to a secure round.
type SecureOptions struct {
	// Identity returns the device's identity in a round of cohort (a
	// client.Identity), which accepts only roster credentials if roster
	// (the plan's SecAggParams.Roster); nil: the device has none and
	// refuses signed rounds.
	Identity func(cohort []string, roster bool) (secagg.Identity, error)
	// Colluders is how many devices per neighbourhood may collude with
	// the coordinator: a signed round whose threshold resists fewer is
	// refused (Policy.MinSecAggColluders).
	Colluders int
	// Compute, if set, admits each of the round's steps that computes much
	// and returns the func that ends it: many virtual devices of one process
	// (client/crowd) take turns at its cores, so that each step takes its
	// own time rather than all of them, shared, finishing together after
	// a phase's deadline.
	Compute func(ctx context.Context) (done func(), err error)
}

// compute runs f within o.Compute.
func (o SecureOptions) compute(ctx context.Context, f func() error) error {
	if o.Compute == nil {
		return f()
	}
	done, err := o.Compute(ctx)
	if err != nil {
		return err
	}
	defer done()
	return f()
}

// BelowClip is the adaptive-clipping bit of an update of L2 norm norm: it
// was at most the clip. An update clipped already has norm clip when it
// was clipped, so the bit is then its norm being strictly, beyond rounding,
// below the clip.
func BelowClip(norm, clip float64, preClipped bool) bool {
	if preClipped {
		return norm < clip*(1-1e-9)
	}
	return norm <= clip
}

// Sleep waits for d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
