package client

import (
	"fmt"
	"math"
	"strings"

	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/model"
)

// Policy is what the app (on the user's behalf) accepts from a round. The
// device checks every round's announced Offer against it before it takes
// anything from the round or gives anything to it, and its own ledger stops
// participation once the lifetime budget is spent, whatever the coordinator
// says. The zero value of each field means its default (DefaultPolicy).
type Policy struct {
	// MinCohort is the fewest devices whose updates a round may
	// aggregate together. Default 100.
	MinCohort int
	// MinNoiseMultiplier is the smallest noise a round may add, as the
	// standard deviation of the Gaussian noise on the sum of updates over
	// the clipping norm. Default 1.
	MinNoiseMultiplier float64
	// MaxClipNorm is the largest L2 norm of an update the device will
	// send. Default 1.
	MaxClipNorm float64
	// Epsilon and Delta are the lifetime privacy budget: the device takes
	// part in a round only if all its rounds together stay
	// (Epsilon, Delta)-differentially private. Defaults 10 and 1e-6.
	Epsilon float64
	Delta   float64
	// RequireDistributedNoise declines rounds whose noise the coordinator
	// adds to the sum (central DP, which trusts the coordinator): only
	// rounds in which the devices add it (Offer.DistributedNoise or
	// Offer.DeviceNoise) are accepted.
	RequireDistributedNoise bool
	// TrustSamplingRate lets the ledger use the sampling rate a round
	// announces, which amplifies privacy when a device is only one of
	// many that might have been picked. By default the ledger assumes
	// the device is picked for every round (rate 1): the budget then
	// holds even against a coordinator that picks it every time, at the
	// cost of far fewer rounds per budget.
	TrustSamplingRate bool
	// RequireUnmetered, RequireCharging and RequireIdle let the device
	// take part in a round only while it is on an unmetered network,
	// charging, or idle, as Config.Device reports (which they need):
	// otherwise Participate declines with ReasonConditions before it
	// contacts the coordinator, and again if the conditions end while a
	// check-in is held.
	RequireUnmetered, RequireCharging, RequireIdle bool
	// MaxRoundBytes bounds what one round may cost the device on the
	// network: the model's download (unless it holds the model) and the
	// update's upload, as the round's offer announces them. A bigger
	// round is declined (ReasonTooLarge) before anything is downloaded.
	// 0 means no bound.
	MaxRoundBytes int64
	// RequireSignedSecAgg declines every round that is not a signed
	// secure round (ReasonSecAgg): one in which the device's update is
	// masked, the key adverts are signed with the devices' certificates,
	// and the device reveals no share unless a threshold of its neighbours
	// confirmed the same survivors to it, so that a
	// coordinator that lies learns nothing about one device's update
	// (docs/threat-model.md).
	RequireSignedSecAgg bool
	// MinSecAggColluders is, with RequireSignedSecAgg, how many devices
	// in any one neighbourhood may collude with the coordinator: rounds
	// whose threshold resists fewer (Offer.SecAggColluders, from
	// secagg.Config.ActiveTolerance) are declined. Default 0: a lying
	// coordinator alone.
	MinSecAggColluders int
	// RequireDeviceRoster, with RequireSignedSecAgg, declines signed
	// rounds that admit devices outside the device roster
	// (Offer.SecAggRoster). In those, the device accepts a peer's bare
	// certificate, which it cannot check against the coordinator's
	// deny-list: a coordinator that lies could relay a revoked device's
	// certificate until it expires. In a roster round the device accepts
	// only roster credentials, and a roster lists no certificate revoked
	// before it was issued (a day, with 'fedrec cert roster's default).
	RequireDeviceRoster bool
}

// Conditions are the device's state that a Policy may require before
// the device takes part in a round.
type Conditions struct {
	Unmetered bool // on an unmetered network (Wi-Fi, ethernet; not mobile data)
	Charging  bool // plugged in
	Idle      bool // not in use by the user
}

// Device reports the device's conditions; the app implements it with the
// platform's APIs (Android ConnectivityManager, BatteryManager,
// PowerManager; iOS NWPathMonitor, UIDevice) and passes it as
// Config.Device. The SDK calls it before each round, never while holding
// its own lock.
type Device interface {
	Conditions() Conditions
}

// requiresConditions reports whether p requires any device condition.
func (p Policy) requiresConditions() bool {
	return p.RequireUnmetered || p.RequireCharging || p.RequireIdle
}

// checkConditions returns why the policy declines round (0: before a
// check-in) on a device in conditions c, or nil.
func (p Policy) checkConditions(c Conditions, round uint64) *DeclineError {
	var missing []string
	if p.RequireUnmetered && !c.Unmetered {
		missing = append(missing, "metered network")
	}
	if p.RequireCharging && !c.Charging {
		missing = append(missing, "not charging")
	}
	if p.RequireIdle && !c.Idle {
		missing = append(missing, "in use")
	}
	if len(missing) == 0 {
		return nil
	}
	return &DeclineError{Round: round, Reason: ReasonConditions, Detail: strings.Join(missing, ", ")}
}

// DefaultPolicy returns the policy a zero Policy stands for.
func DefaultPolicy() Policy {
	return Policy{MinCohort: 100, MinNoiseMultiplier: 1, MaxClipNorm: 1, Epsilon: 10, Delta: 1e-6}
}

func (p Policy) withDefaults() Policy {
	d := DefaultPolicy()
	if p.MinCohort == 0 {
		p.MinCohort = d.MinCohort
	}
	if p.MinNoiseMultiplier == 0 {
		p.MinNoiseMultiplier = d.MinNoiseMultiplier
	}
	if p.MaxClipNorm == 0 {
		p.MaxClipNorm = d.MaxClipNorm
	}
	if p.Epsilon == 0 {
		p.Epsilon = d.Epsilon
	}
	if p.Delta == 0 {
		p.Delta = d.Delta
	}
	return p
}

// validate names the first bad field of a defaulted policy.
func (p Policy) validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: Config.Policy.%s = %v, want %s", ErrInvalidArgument, field, v, want)
	}
	switch {
	case p.MinCohort < 1:
		return bad("MinCohort", p.MinCohort, ">= 1")
	case !finitePos(p.MinNoiseMultiplier):
		return bad("MinNoiseMultiplier", p.MinNoiseMultiplier, "finite > 0")
	case !finitePos(p.MaxClipNorm):
		return bad("MaxClipNorm", p.MaxClipNorm, "finite > 0")
	case !finitePos(p.Epsilon):
		return bad("Epsilon", p.Epsilon, "finite > 0")
	case !(p.Delta > 0 && p.Delta < 1):
		return bad("Delta", p.Delta, "in (0, 1)")
	case p.MaxRoundBytes < 0:
		return bad("MaxRoundBytes", p.MaxRoundBytes, ">= 0 (0: no bound)")
	case p.MinSecAggColluders < 0:
		return bad("MinSecAggColluders", p.MinSecAggColluders, ">= 0")
	case p.MinSecAggColluders > 0 && !p.RequireSignedSecAgg:
		return bad("MinSecAggColluders", p.MinSecAggColluders, "0 without RequireSignedSecAgg")
	case p.RequireDeviceRoster && !p.RequireSignedSecAgg:
		return bad("RequireDeviceRoster", p.RequireDeviceRoster, "false without RequireSignedSecAgg")
	}
	return nil
}

func finitePos(x float64) bool { return x > 0 && !math.IsInf(x, 0) }

// Offer is what a coordinator announces about a round before a device
// joins it. A Federation fills it in from the coordinator's round plan.
type Offer struct {
	Round        uint64
	ModelVersion uint64 // the model the round trains
	// CohortSize is the fewest devices whose updates the coordinator
	// aggregates together in this round (a minimum it enforces, such as
	// a secure-aggregation threshold, not a target).
	CohortSize int
	// NoiseMultiplier is the standard deviation of the Gaussian noise on
	// the sum of the cohort's updates over ClipNorm.
	NoiseMultiplier float64
	// ClipNorm is the L2 norm every update is clipped to; the device
	// clips its own update before it leaves the SDK.
	ClipNorm float64
	// SamplingRate is the announced chance that a given device takes
	// part in the round, in (0, 1]; 0 means unknown and counts as 1.
	SamplingRate float64
	// DeviceNoise says that each device adds its share of the noise,
	// N(0, (NoiseMultiplier·ClipNorm)²/CohortSize) per coordinate, before
	// the update leaves it (distributed noise, for use with secure
	// aggregation); otherwise the coordinator adds the noise to the sum.
	DeviceNoise bool
	// DistributedNoise says that each device adds its share of Skellam
	// noise to its encoded update inside secure aggregation, so the
	// coordinator sees only the noisy sum (distributed DP). The network
	// Federation does it, and announces as NoiseMultiplier what is sure to
	// reach the sum: the fewest survivors' shares less the device's own,
	// over the integer-domain sensitivity.
	DistributedNoise bool
	// Skellam and SkellamScale are, with DistributedNoise, the noise the
	// ledger charges: Skellam is the plan of the shares sure to reach the
	// sum less the device's own (privacy.Distributed.Survivors of the
	// fewest survivors; its NoiseMultiplier() is NoiseMultiplier), and
	// SkellamScale the encoder's scale, so that the device's own share
	// has std sqrt(Skellam.ClientVariance)/SkellamScale per parameter.
	Skellam      privacy.SkellamPlan
	SkellamScale float64
	// Train holds the round's local training settings; the zero value
	// means Config.Train.
	Train model.TrainConfig
	// EventWeights are, for an implicit model, the weights the round
	// trains with (the cluster's); the zero value means the release's.
	EventWeights EventWeights
	// DownloadBytes and UploadBytes are what the round costs the device
	// on the network: the model's download (0 when the device holds the
	// model) and at most the update's upload, with their framing.
	DownloadBytes, UploadBytes int64
	// SignedSecAgg says the round is a signed secure round (the plan's
	// SecAggParams.Signed), and SecAggColluders how many colluding devices
	// per neighbourhood its threshold resists (secagg.Config.
	// ActiveTolerance of the round's configuration); -1 when it resists
	// none.
	SignedSecAgg    bool
	SecAggColluders int
	// SecAggRoster says the signed round admits only the devices of the
	// device roster, whose roster credentials the device then requires
	// of its peers (the plan's SecAggParams.Roster).
	SecAggRoster bool
	// SecAgg says the update goes through secure aggregation among
	// SecAggClients devices with threshold SecAggThreshold (the plan's
	// SecAggParams); the device's record of the round keeps them.
	SecAgg                         bool
	SecAggClients, SecAggThreshold int
	// TermsDigest is the digest of the round's terms as the plan
	// announced them (wire.Plan.TermsDigest: the same for every device of
	// the round, and the committed manifest's), kept in the device's
	// record of the round; zero when there is no plan.
	TermsDigest [32]byte
}

// check returns why the policy declines o, or nil. It does not look at the
// budget (see ledger.admit).
func (p Policy) check(o Offer) *DeclineError {
	no := func(r Reason, format string, args ...any) *DeclineError {
		return &DeclineError{Round: o.Round, Reason: r, Detail: fmt.Sprintf(format, args...)}
	}
	switch {
	case o.ModelVersion == 0:
		return no(ReasonInvalid, "model version 0")
	case o.CohortSize < 1:
		return no(ReasonInvalid, "cohort size %d", o.CohortSize)
	case !(o.NoiseMultiplier >= 0) || math.IsInf(o.NoiseMultiplier, 0):
		return no(ReasonInvalid, "noise multiplier %v", o.NoiseMultiplier)
	case !(o.ClipNorm >= 0) || math.IsInf(o.ClipNorm, 0):
		return no(ReasonInvalid, "clip norm %v", o.ClipNorm)
	case !(o.SamplingRate >= 0 && o.SamplingRate <= 1):
		return no(ReasonInvalid, "sampling rate %v", o.SamplingRate)
	case o.Train != (model.TrainConfig{}) && o.Train.Validate() != nil:
		return no(ReasonInvalid, "%v", o.Train.Validate())
	case o.EventWeights.validate() != nil:
		return no(ReasonInvalid, "%v", o.EventWeights.validate())
	case o.DownloadBytes < 0 || o.UploadBytes < 0:
		return no(ReasonInvalid, "round sizes %d down, %d up", o.DownloadBytes, o.UploadBytes)
	case p.MaxRoundBytes > 0 && o.DownloadBytes+o.UploadBytes > p.MaxRoundBytes:
		return no(ReasonTooLarge, "%d bytes down and %d up > %d", o.DownloadBytes, o.UploadBytes, p.MaxRoundBytes)
	case p.RequireSignedSecAgg && !o.SignedSecAgg:
		return no(ReasonSecAgg, "not a signed secure round: the coordinator could learn the update")
	case p.RequireSignedSecAgg && o.SecAggColluders < p.MinSecAggColluders:
		return no(ReasonSecAgg, "the round resists %d colluding devices per neighbourhood < %d", o.SecAggColluders, p.MinSecAggColluders)
	case p.RequireDeviceRoster && !o.SecAggRoster:
		return no(ReasonSecAgg, "the round admits devices outside the device roster, whose revoked certificates the device cannot tell")
	case o.CohortSize < p.MinCohort:
		return no(ReasonCohort, "cohort of %d < %d", o.CohortSize, p.MinCohort)
	case o.NoiseMultiplier < p.MinNoiseMultiplier:
		return no(ReasonNoise, "noise multiplier %v < %v", o.NoiseMultiplier, p.MinNoiseMultiplier)
	case p.RequireDistributedNoise && !o.DistributedNoise && !o.DeviceNoise:
		return no(ReasonNoise, "the coordinator, not the devices, adds the noise")
	case o.ClipNorm == 0:
		return no(ReasonClip, "no clipping")
	case o.ClipNorm > p.MaxClipNorm:
		return no(ReasonClip, "clip norm %v > %v", o.ClipNorm, p.MaxClipNorm)
	}
	return nil
}

// accountedRate is the sampling rate the ledger charges for o.
func (p Policy) accountedRate(o Offer) float64 {
	if p.TrustSamplingRate && o.SamplingRate > 0 {
		return o.SamplingRate
	}
	return 1
}

// deviceNoiseStd is the noise the device adds to each coordinate for o.
func deviceNoiseStd(o Offer) float64 {
	if !o.DeviceNoise {
		return 0
	}
	return o.NoiseMultiplier * o.ClipNorm / math.Sqrt(float64(o.CohortSize))
}
