package client

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/client/internal/round"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// NetworkConfig configures the Federation that reaches a real coordinator
// cluster over QUIC.
type NetworkConfig struct {
	// ClientID identifies the device to the cluster; required. Use an
	// opaque, app-scoped identifier, not the user's account.
	ClientID string
	// Dialer reaches the cluster; required (see NewDialer).
	Dialer *Dialer
	// Items is the app's item catalogue, in the order of the model's item
	// indices: item i of the model is Items[i]. The cluster ships factors,
	// not names, so the catalogue comes from the app's own backend.
	Items []string
}

// network is the Federation of a real cluster: check in, follow the
// leader, download the round's model, upload the update.
type network struct {
	cfg NetworkConfig
}

// NewNetwork returns the Federation that talks to a coordinator cluster,
// to pass as Config.Federation.
func NewNetwork(cfg NetworkConfig) (Federation, error) {
	switch {
	case cfg.ClientID == "" || len(cfg.ClientID) > wire.MaxIDLen:
		return nil, fmt.Errorf("%w: NetworkConfig.ClientID = %s, want 1..%d bytes", ErrInvalidArgument, quote(cfg.ClientID), wire.MaxIDLen)
	case cfg.Dialer == nil:
		return nil, fmt.Errorf("%w: NetworkConfig.Dialer is required", ErrInvalidArgument)
	case cfg.Dialer.DeviceID() != "" && cfg.Dialer.DeviceID() != cfg.ClientID:
		return nil, fmt.Errorf("%w: NetworkConfig.ClientID = %s, but the device certificate is %s's", ErrClientIDMismatch, quote(cfg.ClientID), quote(cfg.Dialer.DeviceID()))
	case len(cfg.Items) == 0:
		return nil, fmt.Errorf("%w: NetworkConfig.Items (the item catalogue) is required", ErrInvalidArgument)
	}
	cfg.Items = slices.Clone(cfg.Items)
	return &network{cfg: cfg}, nil
}

func (n *network) release(plan *wire.Plan, ctx context.Context) (*Release, error) {
	m, h, err := round.Fetch(ctx, n.cfg.Dialer, plan, nil)
	if e := (*wire.Error)(nil); errors.As(err, &e) && e.Code == wire.CodeNoRound {
		// The round has every update it needs: none of this device's.
		return nil, noRound(&wire.Wait{RetryAfterMs: e.RetryAfterMs})
	}
	if err != nil {
		return nil, err
	}
	return releaseOf(plan.Model, m, h, n.cfg.Items)
}

// releaseOf pairs a model from the cluster, and the event weights its
// download carried, with the app's catalogue, which must match the
// model's: its length, and its digest when the header carries one.
func releaseOf(version uint64, m *model.Model, h *wire.ModelHeader, items []string) (*Release, error) {
	if m.Items != len(items) {
		return nil, fmt.Errorf("%w: the cluster's model %d has %d items, the app's catalogue %d", ErrCatalogueMismatch, version, m.Items, len(items))
	}
	if h.Catalogue != nil {
		if d := wire.CatalogueDigest(items); string(d[:]) != string(h.Catalogue) {
			return nil, fmt.Errorf("%w: the app's catalogue of %d items is not the one model %d was trained on (another order or other IDs)", ErrCatalogueMismatch, len(items), version)
		}
	}
	return &Release{Version: version, Model: m, Items: items, EventWeights: eventWeightsOf(h.Events)}, nil
}

// Close closes the Dialer.
func (n *network) Close() error { return n.cfg.Dialer.Close() }

// Latest implements Federation: any node serves committed models; a
// device that holds the newest downloads only its header.
func (n *network) Latest(ctx context.Context, have uint64) (*Release, error) {
	m, h, err := round.Newer(ctx, n.cfg.Dialer, have)
	if err != nil {
		return nil, classify(err)
	}
	if m == nil {
		return nil, nil
	}
	return releaseOf(h.Model, m, h, n.cfg.Items)
}

// Join implements Federation. The device tells the cluster nothing about
// its data when it checks in (Examples is 0): the policy check comes
// first, and the count would say how active the user is.
func (n *network) Join(ctx context.Context, k *Contribution) error {
	return classify(n.join(ctx, k))
}

func (n *network) join(ctx context.Context, k *Contribution) error {
	d := n.cfg.Dialer
	cctx, cancel := context.WithTimeout(ctx, round.CheckInTimeout)
	rep, err := round.CheckIn(cctx, d, &wire.CheckIn{Version: wire.Version, ClientID: n.cfg.ClientID, Have: k.Have()})
	cancel()
	if err != nil {
		return fmt.Errorf("client: check in: %w", err)
	}
	plan, ok := rep.(*wire.Plan)
	if !ok {
		return noRound(rep.(*wire.Wait))
	}
	offer := Offer{
		Round: plan.Round, ModelVersion: plan.Model, CohortSize: plan.MinClients,
		NoiseMultiplier: plan.Privacy.NoiseMultiplier, ClipNorm: plan.Clip, SamplingRate: plan.Privacy.SamplingRate,
	}
	if plan.Privacy.Mechanism == wire.MechSkellam {
		// The devices add the noise inside secure aggregation; the policy
		// judges what is sure to reach the sum, computed here.
		if offer.Skellam, offer.SkellamScale, err = announcedNoise(plan); err != nil {
			return &DeclineError{Round: plan.Round, Reason: ReasonInvalid, Detail: err.Error()}
		}
		offer.NoiseMultiplier, offer.DistributedNoise = offer.Skellam.NoiseMultiplier(), true
	}
	offer.Train.LR, offer.Train.Reg, offer.Train.Epochs, offer.Train.Alpha = plan.Train.LR, plan.Train.Reg, plan.Train.Epochs, plan.Train.Alpha
	offer.EventWeights = eventWeightsOf(plan.Train.Events)
	offer.DownloadBytes, offer.UploadBytes = roundSizes(plan, k.Have())
	offer.SecAggColluders = -1
	offer.TermsDigest = plan.TermsDigest()
	if plan.SecAgg != nil {
		offer.SecAgg, offer.SecAggClients, offer.SecAggThreshold = true, plan.SecAgg.Clients, plan.SecAgg.Threshold
	}
	if plan.SecAgg != nil && plan.SecAgg.Signed {
		offer.SignedSecAgg, offer.SecAggRoster = true, plan.SecAgg.Roster
		if offer.SecAggColluders, err = plan.SecAgg.Config(plan.Round, 1).ActiveTolerance(); err != nil {
			return &DeclineError{Round: plan.Round, Reason: ReasonInvalid, Detail: err.Error()}
		}
	}
	if err := k.Accept(offer); err != nil {
		return err
	}
	rctx, cancel := context.WithDeadline(ctx, time.Now().Add(time.Duration(plan.TimeLeftMs)*time.Millisecond))
	defer cancel()
	var rel *Release
	if k.Have() != plan.Model {
		if rel, err = n.release(plan, rctx); err != nil {
			return fmt.Errorf("client: round %d: download model %d: %w", plan.Round, plan.Model, err)
		}
	}
	p, err := k.Update(rctx, rel)
	if err != nil {
		return err
	}
	if err := rctx.Err(); err != nil {
		return err // opted out or past the deadline: send nothing
	}
	if plan.SecAgg != nil {
		// The coordinator learns only the cohort's sum.
		r, err := deviceRand()
		if err != nil {
			return err
		}
		_, sent, err := round.Secure(rctx, d, n.cfg.ClientID, plan, p.Delta, true, r, d.signing(k.c.cfg.Policy.MinSecAggColluders))
		if err != nil {
			return fmt.Errorf("client: round %d: secure aggregation: %w", plan.Round, err)
		}
		k.Sent(int64(sent))
		return nil
	}
	r, err := deviceRand()
	if err != nil {
		return err
	}
	req, _, _, err := round.NewUpload(plan, n.cfg.ClientID, p.Loss, p.N, p.Delta, true, r, nil)
	if err != nil {
		return fmt.Errorf("client: round %d: quantize the update: %w", plan.Round, err)
	}
	if err := round.Upload(rctx, d, req); err != nil {
		return fmt.Errorf("client: round %d: upload: %w", plan.Round, err)
	}
	k.Sent(int64(8*len(req.Delta) + len(req.Quantized)))
	return nil
}

// deviceRand is the randomness of a device's rounding: a stream seeded
// from crypto/rand, which the coordinator cannot predict.
func deviceRand() (*rand.Rand, error) {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, err
	}
	return rand.New(rand.NewChaCha8(seed)), nil
}

// roundSizes are the bytes plan costs a device that holds model version
// have: the sizes the plan announces, but never less than the model's
// shape implies (4 bytes a parameter down, as float32; 1 up in a round of
// 8-bit uploads, else 4), whatever a coordinator (or an older one, which
// announces none) says.
func roundSizes(plan *wire.Plan, have uint64) (down, up int64) {
	dim := int64(model.Dim(plan.Items, plan.Rank))
	if have != plan.Model {
		down = max(plan.DownloadBytes, 4*dim)
	}
	if plan.UploadBits == wire.UploadBits8 {
		return down, max(plan.UploadBytes, dim)
	}
	return down, max(plan.UploadBytes, 4*dim)
}

// announcedNoise is the noise of a distributed-DP round as a device can
// verify it from the plan alone: the Skellam plan of the fewest survivors
// the secure round accepts, less the device's own share, whose
// NoiseMultiplier() is the effective multiplier over the integer-domain
// sensitivity (privacy.SkellamPlan), and the encoder's scale.
func announcedNoise(plan *wire.Plan) (privacy.SkellamPlan, float64, error) {
	sp := plan.SecAgg
	if sp == nil || plan.Privacy.Mechanism != wire.MechSkellam {
		return privacy.SkellamPlan{}, 0, errors.New("not a distributed-DP round")
	}
	least := sp.MinSurvivors
	if sp.Group != "" {
		// A group of a round split among the nodes: the leader commits a
		// sum over groups of at least as many inputs as noise shares.
		least = plan.Privacy.NoiseClients
	}
	if plan.Privacy.NoiseClients > least {
		return privacy.SkellamPlan{}, 0, fmt.Errorf("noise split into %d shares, the round sums as few as %d", plan.Privacy.NoiseClients, least)
	}
	dist, err := privacy.NewDistributed(sp.DistributedConfig(plan.Privacy, model.Dim(plan.Items, plan.Rank)))
	if err != nil {
		return privacy.SkellamPlan{}, 0, err
	}
	return dist.Survivors(least), dist.Encoder.Params().Scale, nil
}

// noRound is the NoRoundError of the coordinator's w: its retry time with
// the device's own jitter, so that devices turned away together do not
// come back together.
func noRound(w *wire.Wait) *NoRoundError {
	var seed [32]byte
	crand.Read(seed[:])
	return &NoRoundError{RetryAfter: round.RetryAfter(w, rand.New(rand.NewChaCha8(seed)))}
}
