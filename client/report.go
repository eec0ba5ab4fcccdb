package client

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// Report is the transparency report: what the device has shared, round by
// round, and what that cost in privacy. It says nothing about which items
// the user touched. It marshals to JSON with encoding/json, for a privacy
// dashboard.
type Report struct {
	OptedIn bool `json:"opted_in"`
	// Interactions is how many interactions the device keeps, for at most
	// RetentionDays days. They never leave the device.
	Interactions  int `json:"interactions_stored"`
	RetentionDays int `json:"retention_days"`
	// Rounds lists the rounds the device gave an update to, oldest first.
	Rounds []RoundReport `json:"rounds"`
	// Declined lists recent rounds the device declined because their
	// terms fell short of the policy, oldest first.
	Declined []DeclinedRound `json:"declined"`
	Totals   Totals          `json:"totals"`
}

// RoundReport is what the device shared in one round.
type RoundReport struct {
	Round        uint64    `json:"round"`
	ModelVersion uint64    `json:"model_version"`
	Time         time.Time `json:"time"`
	// BytesSent is the size of the update: as reported by the network
	// side, or 8 bytes per parameter.
	BytesSent int64 `json:"bytes_sent"`
	Params    int64 `json:"params"`
	// ClipNorm bounds the L2 norm of the update the device sent.
	ClipNorm float64 `json:"clip_norm"`
	// NoiseMultiplier is the noise the round added to the sum of updates,
	// relative to ClipNorm; with MechSkellam it is the effective
	// multiplier the device checked against its policy: the noise sure to
	// reach the sum less the device's own share, over the integer-domain
	// sensitivity. DeviceNoiseStd is the standard deviation of the noise
	// this device added to each parameter itself: its Gaussian share with
	// Offer.DeviceNoise, its Skellam share (in the parameters' units) with
	// MechSkellam, 0 when the coordinator adds all of the noise.
	NoiseMultiplier float64 `json:"noise_multiplier"`
	DeviceNoiseStd  float64 `json:"device_noise_std"`
	// SamplingRate is the rate the ledger charged the round at (1 unless
	// the policy trusts announced rates).
	SamplingRate float64 `json:"sampling_rate"`
	// Epsilon is the privacy the round spent: how much it raised the
	// lifetime ε (at Totals.Delta), which is EpsilonTotal after it.
	// Privacy composes sub-additively, so these add up to the total.
	Epsilon      float64 `json:"epsilon"`
	EpsilonTotal float64 `json:"epsilon_total"`
	// Acknowledged: the coordinator confirmed it counted the update. An
	// unacknowledged round (cut short by an opt-out or a failure) is
	// still charged: some of it may have been sent.
	Acknowledged bool `json:"acknowledged"`
	// Mechanism is the noise the round was charged as: MechGaussian
	// (central noise, or the devices' Gaussian shares) or MechSkellam
	// (distributed DP).
	Mechanism Mechanism `json:"mechanism"`
	// The round's terms as the device checked them against its policy
	// before it sent anything; absent for rounds recorded by an SDK that
	// did not keep them. TermsDigest (hex) is wire.Plan.TermsDigest of the
	// plan they were read from, which every device of the round records
	// alike and the round's committed manifest gives too; MinCohort the
	// fewest devices aggregated together. Secure: the update went through
	// secure aggregation among SecAggClients devices with threshold
	// SecAggThreshold; Signed: a signed secure round, which resists
	// SecAggColluders colluding devices per neighbourhood (-1: none);
	// Roster: a signed round of the device roster's devices only, in which
	// the device accepted only roster credentials from its peers.
	Terms *RoundTerms `json:"terms,omitempty"`
}

// RoundTerms are the terms of a round in a RoundReport.
type RoundTerms struct {
	TermsDigest     string `json:"terms_digest,omitempty"`
	MinCohort       int64  `json:"min_cohort"`
	Secure          bool   `json:"secure"`
	Signed          bool   `json:"signed"`
	SecAggClients   int64  `json:"secagg_clients,omitempty"`
	SecAggThreshold int64  `json:"secagg_threshold,omitempty"`
	SecAggColluders int64  `json:"secagg_colluders"`
	Roster          bool   `json:"roster"`
}

// Mechanism is the noise mechanism the ledger charges a round as. Values
// start at 1 and are only ever appended.
type Mechanism uint8

// Noise mechanisms.
const (
	// MechGaussian: Gaussian noise of std NoiseMultiplier·ClipNorm on the
	// sum of the updates, added by the coordinator or, with
	// Offer.DeviceNoise, in shares by the devices; charged as the
	// Poisson-sampled Gaussian mechanism. Rounds recorded before the
	// mechanism was are Gaussian.
	MechGaussian Mechanism = iota + 1
	// MechSkellam: distributed DP (Offer.DistributedNoise). Each device
	// adds its share of Skellam noise to its integer-encoded update
	// inside secure aggregation; charged as the Poisson-sampled Skellam
	// mechanism (aggregation/privacy), counting the shares sure to reach
	// the sum less the device's own.
	MechSkellam
)

func (m Mechanism) String() string {
	switch m {
	case MechGaussian:
		return "gaussian"
	case MechSkellam:
		return "skellam"
	}
	return fmt.Sprintf("Mechanism(%d)", uint8(m))
}

// MarshalText makes mechanisms read as words in JSON reports.
func (m Mechanism) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (m *Mechanism) UnmarshalText(b []byte) error {
	for x := MechGaussian; x <= MechSkellam; x++ {
		if x.String() == string(b) {
			*m = x
			return nil
		}
	}
	return fmt.Errorf("client: unknown noise mechanism %q", b)
}

// DeclinedRound is a round the device declined.
type DeclinedRound struct {
	Round        uint64    `json:"round"`
	ModelVersion uint64    `json:"model_version"`
	Time         time.Time `json:"time"`
	Reason       Reason    `json:"reason"`
}

// Totals sums the report.
type Totals struct {
	Rounds    int   `json:"rounds"`
	BytesSent int64 `json:"bytes_sent"`
	// Epsilon is the privacy spent over the device's lifetime, at Delta,
	// out of the policy's Budget; Remaining is what is left.
	Epsilon   float64 `json:"epsilon"`
	Delta     float64 `json:"delta"`
	Budget    float64 `json:"epsilon_budget"`
	Remaining float64 `json:"epsilon_remaining"`
	Declined  int     `json:"declined"`
	// Carried is the privacy spent by a store that was lost and reset
	// (see Reset), part of Epsilon; absent when none.
	Carried float64 `json:"epsilon_carried,omitempty"`
}

// Report returns the transparency report.
func (c *Client) Report() (Report, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return Report{}, ErrClosed
	}
	eps, err := c.ledger.cumulative(c.st.charges)
	if err != nil {
		return Report{}, err
	}
	p := c.cfg.Policy
	r := Report{
		OptedIn:       c.st.optedIn,
		Interactions:  len(c.st.interactions),
		RetentionDays: int(c.cfg.Retention / (24 * time.Hour)),
		Rounds:        make([]RoundReport, len(c.st.charges)),
		Declined:      make([]DeclinedRound, len(c.st.declines)),
		Totals:        Totals{Delta: p.Delta, Budget: p.Epsilon, Remaining: p.Epsilon, Declined: len(c.st.declines)},
	}
	carried := c.ledger.carried
	r.Totals.Carried, r.Totals.Epsilon = carried, carried
	r.Totals.Remaining = max(p.Epsilon-carried, 0)
	for i, ch := range c.st.charges {
		r.Rounds[i] = roundReport(ch, eps, i, carried)
		r.Totals.Rounds++
		r.Totals.BytesSent += ch.Bytes
	}
	if n := len(eps); n > 0 {
		r.Totals.Epsilon = carried + eps[n-1]
		r.Totals.Remaining = max(p.Epsilon-r.Totals.Epsilon, 0)
	}
	for i, d := range c.st.declines {
		r.Declined[i] = DeclinedRound{Round: d.Round, ModelVersion: d.ModelVersion, Time: time.Unix(d.Time, 0).UTC(), Reason: d.Reason}
	}
	return r, nil
}

// roundReport reports charge i; carried is the ledger's ε from lost
// stores, part of every total.
func roundReport(ch charge, eps []float64, i int, carried float64) RoundReport {
	r := RoundReport{
		Round: ch.Round, ModelVersion: ch.ModelVersion, Time: time.Unix(ch.Time, 0).UTC(),
		BytesSent: ch.Bytes, Params: ch.Params, ClipNorm: ch.ClipNorm,
		NoiseMultiplier: ch.NoiseMultiplier, DeviceNoiseStd: ch.DeviceNoiseStd, SamplingRate: ch.SamplingRate,
		EpsilonTotal: carried + eps[i], Acknowledged: ch.Acked, Mechanism: ch.Mechanism,
	}
	if t := ch.Terms; t != (roundTerms{}) {
		r.Terms = &RoundTerms{MinCohort: t.MinCohort, Secure: t.Secure, Signed: t.Signed,
			SecAggClients: t.SecAggClients, SecAggThreshold: t.SecAggThreshold, SecAggColluders: t.SecAggColluders, Roster: t.Roster}
		if t.TermsDigest != ([32]byte{}) {
			r.Terms.TermsDigest = hex.EncodeToString(t.TermsDigest[:])
		}
	}
	r.Epsilon = eps[i]
	if i > 0 {
		r.Epsilon -= eps[i-1]
	}
	return r
}

// roundReportLocked reports the latest charge of a round. The caller holds
// mu.
func (c *Client) roundReportLocked(round uint64) RoundReport {
	eps, err := c.ledger.cumulative(c.st.charges)
	if err != nil {
		c.log.Warn("client: ledger", "err", err)
		return RoundReport{}
	}
	for i := len(c.st.charges) - 1; i >= 0; i-- {
		if c.st.charges[i].Round == round {
			return roundReport(c.st.charges[i], eps, i, c.ledger.carried)
		}
	}
	return RoundReport{}
}

// StoredBytes returns the size of what the store keeps on the device, in
// Config.Dir or the browser's database, for a privacy dashboard: 0 before
// anything is recorded and after DeleteMyData.
func (c *Client) StoredBytes() (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, ErrClosed
	}
	names, err := c.files.list()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, name := range names {
		b, err := c.files.read(name)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("client: store: %w", err)
		}
		n += int64(len(b))
	}
	return n, nil
}
