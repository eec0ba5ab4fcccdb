package store

import (
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// Training is the cluster's training configuration. It is set once, by the
// node that bootstraps the cluster, and replicated through Raft. Zero
// fields mean the documented defaults, which are the simulator's.
type Training struct {
	Kind    model.Kind // default model.Explicit
	Items   int        // required
	Rank    int        // default 32
	Mean    float64    // the global mean of the initial model
	InitStd float64    // std of the initial item factors, default model.Defaults(Kind).InitStd
	Seed    uint64     // seeds the initial model, default 1

	Train model.TrainConfig // default model.DefaultTrainConfig()
	// Events are, with Kind = implicit, the weights devices give the kinds
	// of event they record; zero means DefaultEventWeights(). Explicit
	// models learn from ratings only and leave it zero.
	Events    EventWeights
	Clip      float64                     // L2 clip of each update, 0 = none
	Optimizer aggregation.OptimizerConfig // default fedadam, LR 0.1, Tau 1e-3

	ClientsPerRound int     // survivors wanted per round, default 100
	OverSelect      float64 // select this fraction more than ClientsPerRound, default 0
	MinClients      int     // abandon a round with fewer survivors, default 1
	// CheckInWindow is how long the leader gathers check-ins before
	// selecting a cohort (it selects early once it has enough), default 2s.
	CheckInWindow time.Duration
	// RoundTimeout is the deadline for uploads after selection, default 60s.
	RoundTimeout time.Duration
	// KeepModels is how many model versions every node retains, default 5.
	KeepModels int

	// NoiseMultiplier and Population feed the privacy ledger: the round's
	// sampling rate is cohort/Population (0 = unknown).
	NoiseMultiplier float64
	Population      int64
	// Noise selects who adds the noise of NoiseMultiplier (see NoiseMode);
	// the zero value means NoiseCentral with a NoiseMultiplier, else
	// NoiseOff.
	Noise NoiseMode

	// AdaptiveClip moves the clip norm each round towards the
	// ClipQuantile of the update norms (Andrew et al. 2021): every update
	// carries the bit "my norm was at most the clip", the leader noises
	// their count (by ClipCountStddev under central noise) and commits
	// the next clip with the round; Clip is the initial clip. With
	// central noise NoiseMultiplier is the round's effective multiplier
	// (what the ledger charges) and the update gets a little more.
	// Distributed noise does not support it.
	AdaptiveClip bool
	// ClipQuantile is the target fraction of unclipped updates, default
	// 0.5 with AdaptiveClip.
	ClipQuantile float64
	// ClipLearningRate is η of the geometric update, default 0.2 with
	// AdaptiveClip.
	ClipLearningRate float64
	// ClipCountStddev is σ_b, the std of the noise on the count of
	// unclipped updates under central noise, default ClientsPerRound/20.
	// It must exceed NoiseMultiplier/2.
	ClipCountStddev float64

	// SecAgg runs each round's collection as secure aggregation
	// (aggregation/secagg over updates encoded by aggregation/fixedpoint):
	// the leader learns only the sum of the survivors' clipped updates.
	// It needs Clip > 0 and MinClients >= 3.
	SecAgg bool
	// SecAggPhase is the deadline of each secure-aggregation phase after
	// the first (whose deadline is RoundTimeout), default 10s with SecAgg.
	SecAggPhase time.Duration
	// SecAggSigned makes secure rounds resist an actively malicious
	// leader (aggregation/secagg signed rounds): devices sign their key
	// adverts with their device certificate's key and verify their
	// neighbours', and confirm the survivor set to their neighbours (a
	// tag under a key only the two hold) before they reveal any share.
	// The node relays each device's certificate from its TLS connection,
	// so devices need device certificates (a device CA). It needs SecAgg.
	SecAggSigned bool
	// SecAggColluders is, with SecAggSigned, how many devices in any one
	// neighbourhood may collude with a malicious leader without it
	// learning an honest device's input: the manifest's threshold is
	// secagg.ActiveThreshold(degree, SecAggColluders), and the degree is
	// raised to at least SecAggColluders+4 so that some neighbours may
	// still drop. At most MinClients-3. Default 0 (a lying leader alone).
	SecAggColluders int
	// SecAggRoster admits to signed rounds only the devices listed in the
	// node's device roster (certs/device-roster.bin): the node relays
	// their roster credentials, refuses the adverts of the others, and
	// the manifest says so (wire.SecAggParams.Roster), so that devices
	// whose policy asks for it (client.Policy.RequireDeviceRoster) take
	// part and refuse a peer's bare certificate. A device then accepts no
	// certificate revoked before the current roster, even from a leader
	// that lies. It needs SecAggSigned.
	SecAggRoster bool

	// Catalogue is the wire.CatalogueDigest of the app's item IDs in the
	// model's order (item i of the model is the i-th ID), which every
	// model download carries so that a device whose catalogue differs
	// (another order, other IDs) refuses the model rather than label
	// its recommendations with the wrong items. The zero value means the
	// cluster does not know its catalogue; devices then check its length
	// only. Set it with CatalogueOf.
	Catalogue [sha256.Size]byte

	// UploadBits is how devices send their updates in plaintext rounds:
	// 0 (or 64), packed float64, 8 bytes a parameter; 8, quantized to a
	// signed byte a parameter at a step the clip and the model's dimension
	// fix (aggregation/fixedpoint.Quantizer), which the leader sums
	// exactly; in secure rounds, the same bytes are the masked inputs, in
	// a field just wide enough for the cohort's sum (2 bytes a parameter
	// up to 258 devices). 8 needs Clip > 0 and no distributed noise.
	// Devices that predate it send float64 in plaintext rounds still, and
	// are counted as well; secure rounds need devices that know it.
	UploadBits int
}

// CatalogueOf returns the Training.Catalogue of the item IDs items, in the
// model's order.
func CatalogueOf(items []string) [sha256.Size]byte { return wire.CatalogueDigest(items) }

// WireCatalogue is t's catalogue digest on the wire: nil when unknown.
func (t Training) WireCatalogue() []byte {
	if t.Catalogue == ([sha256.Size]byte{}) {
		return nil
	}
	return t.Catalogue[:]
}

// WithDefaults returns t with its zero fields set to the documented
// defaults, as New applies them: what Validate expects.
func (t Training) WithDefaults() Training {
	if t.Kind == 0 {
		t.Kind = model.Explicit
	}
	h := model.Defaults(t.Kind)
	if t.Rank == 0 {
		t.Rank = h.Rank
	}
	if t.InitStd == 0 {
		t.InitStd = h.InitStd
	}
	if t.Seed == 0 {
		t.Seed = 1
	}
	if t.Train == (model.TrainConfig{}) {
		t.Train = h.Train
	}
	if t.Kind == model.Implicit && t.Events == (EventWeights{}) {
		t.Events = DefaultEventWeights()
	}
	if t.Optimizer.Name == "" {
		t.Optimizer.Name = "fedadam"
	}
	if t.UploadBits == 64 {
		t.UploadBits = 0 // the default: what the bytes meant before the field
	}
	if t.Optimizer.LR == 0 {
		t.Optimizer.LR = h.ServerLR
	}
	if t.Optimizer.Tau == 0 {
		t.Optimizer.Tau = 1e-3
	}
	if t.ClientsPerRound == 0 {
		t.ClientsPerRound = 100
	}
	if t.MinClients == 0 {
		t.MinClients = 1
	}
	if t.CheckInWindow == 0 {
		t.CheckInWindow = 2 * time.Second
	}
	if t.RoundTimeout == 0 {
		t.RoundTimeout = 60 * time.Second
	}
	if t.KeepModels == 0 {
		t.KeepModels = 5
	}
	if t.SecAgg && t.SecAggPhase == 0 {
		t.SecAggPhase = 10 * time.Second
	}
	if t.AdaptiveClip {
		if t.ClipQuantile == 0 {
			t.ClipQuantile = 0.5
		}
		if t.ClipLearningRate == 0 {
			t.ClipLearningRate = 0.2
		}
		if t.ClipCountStddev == 0 && t.NoiseMode() == NoiseCentral {
			t.ClipCountStddev = float64(t.ClientsPerRound) / 20
		}
	}
	return t
}

// Validate names the first bad field of a defaulted configuration.
func (t Training) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("coordinator: Training.%s = %v, want %s", field, v, want)
	}
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	t.Noise = t.NoiseMode()
	switch {
	case t.Kind != model.Explicit && t.Kind != model.Implicit:
		return bad("Kind", t.Kind, "explicit or implicit")
	case t.Kind == model.Explicit && t.Events != (EventWeights{}):
		return bad("Events", t.Events, "unset with Kind = explicit (explicit models learn from ratings only)")
	case t.Kind == model.Implicit && t.Events.toWire().Validate() != nil:
		return bad("Events", t.Events, "finite weights >= 0, not all zero")
	case t.Items <= 0:
		return bad("Items", t.Items, "> 0")
	case t.Rank <= 0 || t.Rank > 1024:
		return bad("Rank", t.Rank, "1..1024")
	case model.Dim(t.Items, t.Rank) > wire.DefaultMaxParams:
		return bad("Items", t.Items, fmt.Sprintf("a model of at most %d params", wire.DefaultMaxParams))
	case !finite(t.Mean):
		return bad("Mean", t.Mean, "finite")
	case !(t.InitStd >= 0) || !finite(t.InitStd):
		return bad("InitStd", t.InitStd, "finite >= 0")
	case !(t.Clip >= 0) || !finite(t.Clip):
		return bad("Clip", t.Clip, "finite >= 0")
	case t.ClientsPerRound < 1:
		return bad("ClientsPerRound", t.ClientsPerRound, ">= 1")
	case !(t.OverSelect >= 0) || t.OverSelect > 10:
		return bad("OverSelect", t.OverSelect, "0..10")
	case t.MinClients < 1 || t.MinClients > t.ClientsPerRound:
		return bad("MinClients", t.MinClients, fmt.Sprintf("1..ClientsPerRound (%d)", t.ClientsPerRound))
	case t.CheckInWindow < time.Millisecond:
		return bad("CheckInWindow", t.CheckInWindow, ">= 1ms")
	case t.RoundTimeout < time.Millisecond:
		return bad("RoundTimeout", t.RoundTimeout, ">= 1ms")
	case t.KeepModels < 1:
		return bad("KeepModels", t.KeepModels, ">= 1")
	case !(t.NoiseMultiplier >= 0) || !finite(t.NoiseMultiplier):
		return bad("NoiseMultiplier", t.NoiseMultiplier, "finite >= 0")
	case t.Population < 0:
		return bad("Population", t.Population, ">= 0")
	case t.Noise < NoiseOff || t.Noise > NoiseDistributed:
		return bad("Noise", t.Noise, "off, central or distributed")
	case t.Noise == NoiseOff && t.NoiseMultiplier != 0:
		return bad("NoiseMultiplier", t.NoiseMultiplier, "0 with Noise = off")
	case t.Noise != NoiseOff && !(t.NoiseMultiplier > 0):
		return bad("NoiseMultiplier", t.NoiseMultiplier, fmt.Sprintf("> 0 with Noise = %v", t.Noise))
	case t.Noise == NoiseDistributed && !t.SecAgg:
		return bad("SecAgg", t.SecAgg, "true with Noise = distributed (clients add noise shares that only secure aggregation sums)")
	case t.AdaptiveClip && t.Noise == NoiseDistributed:
		return bad("AdaptiveClip", t.AdaptiveClip, "false with Noise = distributed (the count of unclipped updates would need distributed noise too; use central noise or none)")
	case t.AdaptiveClip && !(t.Clip > 0):
		return bad("Clip", t.Clip, "> 0 with AdaptiveClip (the initial clip)")
	case t.AdaptiveClip && t.Noise == NoiseCentral && t.ClipCountStddev > 0 && !(t.NoiseMultiplier < 2*t.ClipCountStddev):
		return bad("ClipCountStddev", t.ClipCountStddev, fmt.Sprintf("> NoiseMultiplier/2 = %g (else the update would need infinite noise)", t.NoiseMultiplier/2))
	case !t.AdaptiveClip && (t.ClipQuantile != 0 || t.ClipLearningRate != 0 || t.ClipCountStddev != 0):
		return bad("AdaptiveClip", t.AdaptiveClip, "true with ClipQuantile, ClipLearningRate or ClipCountStddev")
	case t.NoiseMultiplier > 0 && t.Population == 0:
		return bad("Population", t.Population, "> 0 with NoiseMultiplier (the ledger needs the sampling rate; 0 would report ε = 0)")
	case t.NoiseMultiplier > 0 && !(t.Clip > 0):
		return bad("Clip", t.Clip, "> 0 with NoiseMultiplier (the noise is scaled to the clip norm)")
	case t.SecAgg && !(t.Clip > 0):
		return bad("Clip", t.Clip, "> 0 with SecAgg")
	case t.SecAgg && t.MinClients < 3:
		return bad("MinClients", t.MinClients, ">= 3 with SecAgg")
	case t.SecAgg && t.SecAggPhase < time.Millisecond:
		return bad("SecAggPhase", t.SecAggPhase, ">= 1ms with SecAgg")
	case !t.SecAgg && t.SecAggPhase != 0:
		return bad("SecAggPhase", t.SecAggPhase, "0 without SecAgg")
	case t.SecAggSigned && !t.SecAgg:
		return bad("SecAggSigned", t.SecAggSigned, "false without SecAgg")
	case t.SecAggSigned && float64(t.ClientsPerRound)*(1+t.OverSelect) > wire.MaxSignedCohort:
		return bad("ClientsPerRound", t.ClientsPerRound, fmt.Sprintf("a signed round's cohort (with OverSelect) of at most %d", wire.MaxSignedCohort))
	case t.UploadBits != 0 && t.UploadBits != 8 && t.UploadBits != 64:
		return bad("UploadBits", t.UploadBits, "8 or 64")
	case t.UploadBits == 8 && !(t.Clip > 0):
		return bad("Clip", t.Clip, "> 0 with UploadBits 8 (the clip fixes the quantization step)")
	case t.UploadBits == 8 && t.Noise == NoiseDistributed:
		return bad("UploadBits", t.UploadBits, "64 with distributed noise (its Skellam shares need the wider encoding)")
	case t.SecAggRoster && !t.SecAggSigned:
		return bad("SecAggRoster", t.SecAggRoster, "false without SecAggSigned")
	case t.SecAggColluders != 0 && !t.SecAggSigned:
		return bad("SecAggColluders", t.SecAggColluders, "0 without SecAggSigned")
	case t.SecAggColluders < 0 || (t.SecAggSigned && t.SecAggColluders > t.MinClients-3):
		return bad("SecAggColluders", t.SecAggColluders, fmt.Sprintf("0..MinClients-3 (%d): a threshold above the smallest cohort's degree could never be met", t.MinClients-3))
	}
	if t.AdaptiveClip {
		if _, err := t.Clipper(t.Clip); err != nil {
			return fmt.Errorf("coordinator: Training adaptive clipping: %w", err)
		}
	}
	if err := t.Train.Validate(); err != nil {
		return err
	}
	if _, err := aggregation.NewOptimizer(t.Optimizer, 1); err != nil {
		return err
	}
	return nil
}

// CohortSize is how many clients the leader selects per round.
func (t Training) CohortSize() int {
	return int(math.Ceil(float64(t.ClientsPerRound) * (1 + t.OverSelect)))
}

// MinGroup is the fewest devices a node's group of a secure round has:
// three for SecAgg+ to hide one input among others, and in a signed round
// enough that the threshold resisting SecAggColluders stays below the
// group's degree. A node with fewer waiting gets no group.
func (t Training) MinGroup() int {
	if t.SecAggSigned {
		return max(3, t.SecAggColluders+3)
	}
	return 3
}

// Privacy returns the privacy parameters of a round with a cohort of n
// whose secure aggregation (if any) is sa.
func (t Training) Privacy(n int, sa *wire.SecAggParams) wire.PrivacyParams {
	p := wire.PrivacyParams{NoiseMultiplier: t.NoiseMultiplier}
	if t.Population > 0 {
		p.SamplingRate = min(1, float64(n)/float64(t.Population))
	}
	switch mode := t.NoiseMode(); {
	case mode == NoiseDistributed:
		// Split over the fewest survivors secure aggregation accepts, so
		// that every committed round carries at least the whole noise.
		p.Mechanism, p.NoiseClients = wire.MechSkellam, sa.MinSurvivors
	case t.AdaptiveClip && mode == NoiseCentral:
		if c, err := t.Clipper(t.Clip); err == nil { // Validate built one
			p.CountStddev = c.CountStddev()
		}
	}
	return p
}

// ToWire is t as SetConfig carries it.
func (t Training) ToWire() wire.TrainingConfig {
	return wire.TrainingConfig{
		Kind: wire.KindOf(t.Kind), Items: t.Items, Rank: t.Rank, Mean: t.Mean, InitStd: t.InitStd, Seed: t.Seed,
		Train:           t.TrainParams(),
		Clip:            t.Clip,
		Optimizer:       wire.OptimizerParams{Name: t.Optimizer.Name, LR: t.Optimizer.LR, Beta1: t.Optimizer.Beta1, Beta2: t.Optimizer.Beta2, Tau: t.Optimizer.Tau},
		ClientsPerRound: t.ClientsPerRound, OverSelect: t.OverSelect, MinClients: t.MinClients,
		CheckInWindowMs: t.CheckInWindow.Milliseconds(), RoundTimeoutMs: t.RoundTimeout.Milliseconds(),
		KeepModels: t.KeepModels, NoiseMultiplier: t.NoiseMultiplier, Population: t.Population,
		SecAgg: t.SecAgg, SecAggPhaseMs: t.SecAggPhase.Milliseconds(),
		NoiseMode: uint8(t.Noise), AdaptiveClip: t.AdaptiveClip, ClipQuantile: t.ClipQuantile, ClipLearningRate: t.ClipLearningRate, ClipCountStddev: t.ClipCountStddev,
		Catalogue:    t.WireCatalogue(),
		SecAggSigned: t.SecAggSigned, SecAggColluders: t.SecAggColluders, SecAggRoster: t.SecAggRoster,
		UploadBits: t.PlanUploadBits(),
	}
}

// PlanUploadBits is Plan.UploadBits of t's plaintext rounds.
func (t Training) PlanUploadBits() uint8 {
	if t.UploadBits == 8 {
		return wire.UploadBits8
	}
	return 0
}

func trainingFromWire(w *wire.TrainingConfig) (Training, error) {
	kind, err := wire.ModelKind(w.Kind)
	if err != nil {
		return Training{}, err
	}
	t := Training{
		Kind: kind, Items: w.Items, Rank: w.Rank, Mean: w.Mean, InitStd: w.InitStd, Seed: w.Seed,
		Train:           model.TrainConfig{LR: w.Train.LR, Reg: w.Train.Reg, Epochs: w.Train.Epochs, Alpha: w.Train.Alpha},
		Events:          eventWeightsFromWire(kind, w.Train.Events),
		Clip:            w.Clip,
		Optimizer:       aggregation.OptimizerConfig{Name: w.Optimizer.Name, LR: w.Optimizer.LR, Beta1: w.Optimizer.Beta1, Beta2: w.Optimizer.Beta2, Tau: w.Optimizer.Tau},
		ClientsPerRound: w.ClientsPerRound, OverSelect: w.OverSelect, MinClients: w.MinClients,
		CheckInWindow: time.Duration(w.CheckInWindowMs) * time.Millisecond, RoundTimeout: time.Duration(w.RoundTimeoutMs) * time.Millisecond,
		KeepModels: w.KeepModels, NoiseMultiplier: w.NoiseMultiplier, Population: w.Population,
		SecAgg: w.SecAgg, SecAggPhase: time.Duration(w.SecAggPhaseMs) * time.Millisecond,
		Noise: NoiseMode(w.NoiseMode), AdaptiveClip: w.AdaptiveClip, ClipQuantile: w.ClipQuantile, ClipLearningRate: w.ClipLearningRate, ClipCountStddev: w.ClipCountStddev,
		SecAggSigned: w.SecAggSigned, SecAggColluders: w.SecAggColluders, SecAggRoster: w.SecAggRoster,
		UploadBits: int(w.UploadBits),
	}
	switch len(w.Catalogue) {
	case 0:
	case sha256.Size:
		t.Catalogue = [sha256.Size]byte(w.Catalogue)
	default:
		return Training{}, fmt.Errorf("coordinator: Training.Catalogue: a digest of %d bytes, want %d", len(w.Catalogue), sha256.Size)
	}
	return t, t.Validate()
}

// TrainParams are the local training parameters of t, as every plan
// carries them.
func (t Training) TrainParams() wire.TrainParams {
	p := wire.TrainParams{LR: t.Train.LR, Reg: t.Train.Reg, Epochs: t.Train.Epochs, Alpha: t.Train.Alpha}
	p.Events = t.WireEvents()
	return p
}

// WireEvents are t's event weights on the wire: nil for explicit models.
func (t Training) WireEvents() *wire.EventWeights {
	if t.Kind != model.Implicit {
		return nil
	}
	w := t.Events.toWire()
	return &w
}

// EventWeights say how much one event of each kind a device records adds to
// an item's input in an implicit model: the device trains on, and scores
// its user from, log2(1 + Σ weight) per item (a rating adds its value).
// The cluster's training configuration carries them to every device, in
// each round's plan and with every model download, so that all devices of
// a cluster map events alike.
type EventWeights struct {
	View, Click, Cart, Purchase float64
}

// DefaultEventWeights are view 1, click 2, cart 4, purchase 8: a purchase
// says as much as eight views.
func DefaultEventWeights() EventWeights {
	return eventWeightsFromWire(model.Implicit, nil)
}

// eventKinds name the kinds in the order of EventWeights' fields.
var eventKinds = [...]string{"view", "click", "cart", "purchase"}

func (w *EventWeights) fields() [4]*float64 {
	return [...]*float64{&w.View, &w.Click, &w.Cart, &w.Purchase}
}

// String returns the weights as ParseEventWeights reads them:
// "view=1,click=2,cart=4,purchase=8".
func (w EventWeights) String() string {
	var b strings.Builder
	for i, x := range w.fields() {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%s", eventKinds[i], strconv.FormatFloat(*x, 'g', -1, 64))
	}
	return b.String()
}

// ParseEventWeights reads comma-separated kind=weight pairs, kinds view,
// click, cart and purchase; a kind not named keeps its default weight
// ("purchase=20" is view 1, click 2, cart 4, purchase 20). It checks the
// syntax; Training.Validate checks the values.
func ParseEventWeights(s string) (EventWeights, error) {
	w := DefaultEventWeights()
	seen := map[string]bool{}
	for pair := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		k = strings.ToLower(strings.TrimSpace(k))
		i := slices.Index(eventKinds[:], k)
		if !ok || i < 0 {
			return EventWeights{}, fmt.Errorf("coordinator: event weights %q: %q is not kind=weight with kind view, click, cart or purchase", s, pair)
		}
		if seen[k] {
			return EventWeights{}, fmt.Errorf("coordinator: event weights %q: %s given twice", s, k)
		}
		seen[k] = true
		x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return EventWeights{}, fmt.Errorf("coordinator: event weights %q: %s: %q is not a number", s, k, v)
		}
		*w.fields()[i] = x
	}
	if w == (EventWeights{}) {
		// The zero value would read as the defaults.
		return EventWeights{}, fmt.Errorf("coordinator: event weights %q are all zero: no event would count", s)
	}
	return w, nil
}

func (w EventWeights) toWire() wire.EventWeights {
	return wire.EventWeights{View: w.View, Click: w.Click, Cart: w.Cart, Purchase: w.Purchase}
}

// eventWeightsFromWire reads the event weights of a configuration of
// kind: for an implicit one that carries none (written before the field
// existed), the defaults.
func eventWeightsFromWire(kind model.Kind, w *wire.EventWeights) EventWeights {
	if w == nil {
		if kind != model.Implicit {
			return EventWeights{}
		}
		d := wire.DefaultEventWeights()
		w = &d
	}
	return EventWeights{View: w.View, Click: w.Click, Cart: w.Cart, Purchase: w.Purchase}
}
