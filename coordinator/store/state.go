package store

import (
	"time"

	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/fedrec/fedrec/aggregation"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// Business rejections of log commands: Apply returns them as the result of
// a committed entry, and the state does not change.
var (
	ErrConfigured  = errors.New("coordinator: training configuration already set")
	ErrNotReady    = errors.New("coordinator: no configuration or no model yet")
	ErrHasModel    = errors.New("coordinator: the initial model is already set")
	ErrRoundOpen   = errors.New("coordinator: a round is already open")
	ErrStaleRound  = errors.New("coordinator: not the open round")
	ErrStaleModel  = errors.New("coordinator: not the current model version")
	ErrBadCommand  = errors.New("coordinator: invalid command")
	errUnknownType = errors.New("coordinator: unknown command type")
)

// Version is a committed model version. Its fields are never modified
// after it is stored, so it can be shared without copying.
type Version struct {
	Version uint64 // 1 is the initial model
	Round   uint64 // the round that produced it, 0 for the initial model
	Digest  [sha256.Size]byte
	Model   *model.Model
}

// Outcome is how a round ended.
type Outcome uint8

// Round outcomes.
const (
	Committed Outcome = Outcome(wire.OutcomeCommitted)
	Abandoned Outcome = Outcome(wire.OutcomeAbandoned)
)

// RoundRecord is a round of the history.
type RoundRecord struct {
	Round    uint64
	Outcome  Outcome
	Model    uint64 // the version the round trained
	NewModel uint64 // the version it produced, 0 if abandoned
	// Cohort clients were selected, Survivors updates counted, Clipped
	// of them scaled down by the server's clip.
	Cohort, Survivors, Clipped int
	// Loss is the survivors' training loss summed over N examples.
	Loss   float64
	N      int64
	Reason string // why an abandoned round was abandoned
	// LossUnknown says that the leader saw only the sum of the updates (a
	// secure round): Loss, N and Clipped were not collected and read 0.
	LossUnknown bool
	// Clip is the round's clip norm and NextClip the next round's, with
	// adaptive clipping (0 otherwise).
	Clip, NextClip float64
}

// LedgerEntry is one committed round's privacy-ledger entry: the plain
// numbers a privacy accountant composes (sampling rate q, noise multiplier,
// steps; see Entry).
type LedgerEntry struct {
	Round           uint64
	SamplingRate    float64
	NoiseMultiplier float64
	Steps           int
	// Mechanism is wire.MechGaussian (central noise, or none) or
	// wire.MechSkellam (distributed noise), whose accountant needs the
	// survivors' noise Variance (less one share) and the sensitivities L1
	// and L2, integer domain.
	Mechanism uint8
	Variance  float64
	L1, L2    float64
}

// OpenRound is the manifest of the round in progress, committed before
// any client hears of it.
type OpenRound struct {
	Round   uint64
	Model   uint64 // the version clients train
	Digest  [sha256.Size]byte
	Cohort  []string // selected client ids, in selection order
	Clip    float64
	Privacy wire.PrivacyParams
	Leader  string // id of the node that runs it
	// SecAgg holds a secure round's parameters, nil for a plaintext round.
	SecAgg *wire.SecAggParams
	// Groups splits Cohort among the nodes that hold its members (empty:
	// all are the leader's).
	Groups []wire.RoundGroup
}

// Group returns the ids of node's share of the cohort and how many
// updates it waits for; ok is false when the node has none.
func (o *OpenRound) Group(node string) (ids []string, want int, ok bool) {
	if len(o.Groups) == 0 {
		return o.Cohort, len(o.Cohort), node == o.Leader
	}
	at := 0
	for _, g := range o.Groups {
		if g.Node == node {
			return o.Cohort[at : at+g.Size], g.Want, true
		}
		at += g.Size
	}
	return nil, 0, false
}

// GroupSecAgg returns the parameters of node's group's secure
// aggregation in a secure round; nil in a plaintext round, or when node
// has no group.
func (o *OpenRound) GroupSecAgg(node string) *wire.SecAggParams {
	for _, g := range o.Groups {
		if g.Node == node {
			return g.SecAgg
		}
	}
	return nil
}

func openFromWire(c *wire.OpenRound) *OpenRound {
	o := &OpenRound{Round: c.Round, Model: c.Model, Cohort: slices.Clone(c.Cohort), Clip: c.Clip, Privacy: c.Privacy, Leader: c.Leader, Groups: slices.Clone(c.Groups)}
	copy(o.Digest[:], c.Digest)
	o.SecAgg = cloneSecAgg(c.SecAgg)
	for i := range o.Groups {
		o.Groups[i].SecAgg = cloneSecAgg(o.Groups[i].SecAgg)
	}
	return o
}

func cloneSecAgg(p *wire.SecAggParams) *wire.SecAggParams {
	if p == nil {
		return nil
	}
	sa := *p
	sa.Seed, sa.RotationSeed = slices.Clone(sa.Seed), slices.Clone(sa.RotationSeed)
	return &sa
}

func (o *OpenRound) toWire() *wire.OpenRound {
	return &wire.OpenRound{Round: o.Round, Model: o.Model, Digest: o.Digest[:], Cohort: o.Cohort, Clip: o.Clip, Privacy: o.Privacy, Leader: o.Leader, SecAgg: o.SecAgg, Groups: o.Groups}
}

func (r *RoundRecord) toWire() *wire.RoundRecord {
	return &wire.RoundRecord{Round: r.Round, Outcome: uint8(r.Outcome), Model: r.Model, NewModel: r.NewModel, Cohort: r.Cohort,
		Survivors: r.Survivors, Clipped: r.Clipped, Loss: r.Loss, N: r.N, Reason: r.Reason,
		LossUnknown: r.LossUnknown, Clip: r.Clip, NextClip: r.NextClip}
}

func roundFromWire(w *wire.RoundRecord) RoundRecord {
	return RoundRecord{Round: w.Round, Outcome: Outcome(w.Outcome), Model: w.Model, NewModel: w.NewModel, Cohort: w.Cohort,
		Survivors: w.Survivors, Clipped: w.Clipped, Loss: w.Loss, N: w.N, Reason: w.Reason,
		LossUnknown: w.LossUnknown, Clip: w.Clip, NextClip: w.NextClip}
}

// State is everything the cluster must not lose: the configuration, the
// retained models, the server optimizer's state, the round history, the
// privacy ledger and the open round. It is plain data: Apply is
// deterministic (no clock, no randomness, no map-order dependence) and
// tests drive it without Raft. It is not safe for concurrent use.
type State struct {
	config    *Training
	nodes     map[string]string // node id → client address
	admins    map[string]string // node id → admin API address, of the nodes that have one
	models    []*Version        // oldest first; the last is current
	optM      []float64         // server optimizer moments, nil before the first commit
	optV      []float64
	rounds    []RoundRecord
	ledger    []LedgerEntry
	open      *OpenRound
	lastRound uint64
	changes   []wire.TrainingChange // the operators' changes, oldest first
}

// NewState returns an empty state.
func NewState() *State { return &State{nodes: map[string]string{}, admins: map[string]string{}} }

// Config returns the training configuration, or false before it is set.
func (s *State) Config() (Training, bool) {
	if s.config == nil {
		return Training{}, false
	}
	return *s.config, true
}

// Current returns the newest committed model, or nil.
func (s *State) Current() *Version {
	if len(s.models) == 0 {
		return nil
	}
	return s.models[len(s.models)-1]
}

// Model returns a retained model version, or nil.
func (s *State) Model(v uint64) *Version {
	for _, m := range s.models {
		if m.Version == v {
			return m
		}
	}
	return nil
}

// Versions returns the retained versions, oldest first.
func (s *State) Versions() []uint64 {
	out := make([]uint64, len(s.models))
	for i, m := range s.models {
		out[i] = m.Version
	}
	return out
}

// Optimizer returns the server optimizer's moments (nil before the first
// commit). The slices must not be modified.
func (s *State) Optimizer() (m, v []float64) { return s.optM, s.optV }

// Rounds returns the round history, oldest first. It must not be modified.
func (s *State) Rounds() []RoundRecord { return s.rounds }

// Ledger returns the privacy ledger, oldest first. It must not be modified.
func (s *State) Ledger() []LedgerEntry { return s.ledger }

// Clip returns the clip norm of the next round: with adaptive clipping the
// NextClip of the last committed round that set one, else the configured
// Clip.
func (s *State) Clip() float64 {
	for i := len(s.rounds) - 1; i >= 0; i-- {
		if c := s.rounds[i].NextClip; c > 0 {
			return c
		}
	}
	if s.config == nil {
		return 0
	}
	return s.config.Clip
}

// Open returns the open round's manifest, or nil.
func (s *State) Open() *OpenRound { return s.open }

// LastRound returns the highest round number ever opened.
func (s *State) LastRound() uint64 { return s.lastRound }

// NodeAddr returns a node's client address.
func (s *State) NodeAddr(id string) string { return s.nodes[id] }

// AdminAddr returns a node's admin API address, "" if it registered none.
func (s *State) AdminAddr(id string) string { return s.admins[id] }

// Apply applies a committed command. It returns nil or the new model
// version on success, and an error wrapping one of the Err* rejections
// when the command is refused; a refused command leaves s unchanged.
func (s *State) Apply(c wire.Command) any {
	var err error
	var res any
	switch c := c.(type) {
	case *wire.SetConfig:
		err = s.setConfig(c)
	case *wire.InitModel:
		err = s.initModel(c)
	case *wire.RegisterNode:
		err = s.registerNode(c)
	case *wire.OpenRound:
		err = s.openRound(c)
	case *wire.CommitRound:
		res, err = s.commitRound(c)
	case *wire.CommitUpdate:
		res, err = s.commitUpdate(c)
	case *wire.AbandonRound:
		err = s.abandonRound(c)
	case *wire.ChangeTraining:
		err = s.changeTraining(c)
	default:
		err = fmt.Errorf("%w %T", errUnknownType, c)
	}
	if err != nil {
		return err
	}
	return res
}

func (s *State) setConfig(c *wire.SetConfig) error {
	if s.config != nil {
		return ErrConfigured
	}
	t, err := trainingFromWire(&c.Config)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	s.config = &t
	return nil
}

// Changes returns the operators' changes of the training settings, oldest
// first: the audit trail.
func (s *State) Changes() []wire.TrainingChange { return s.changes }

// Longest audit fields kept.
const (
	maxOperatorLen = 128
	maxReasonLen   = 1024
)

// changeTraining applies an operator's change to the settings the next
// rounds read. It refuses a change of nothing, one that turns noise on or
// off (the devices and the ledger were told whether rounds are noised)
// and one that leaves an invalid configuration.
func (s *State) changeTraining(c *wire.ChangeTraining) error {
	if s.config == nil {
		return ErrNotReady
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: training change: "+format, append([]any{ErrBadCommand}, args...)...)
	}
	t := *s.config
	switch {
	case len(c.Operator) > maxOperatorLen || len(c.Reason) > maxReasonLen:
		return bad("operator or reason too long (%d, %d bytes; at most %d, %d)", len(c.Operator), len(c.Reason), maxOperatorLen, maxReasonLen)
	case c.ClientsPerRound < 0 || c.MinClients < 0 || c.CheckInWindowMs < 0 || c.RoundTimeoutMs < 0 || c.SecAggPhaseMs < 0 || !(c.NoiseMultiplier >= 0):
		return bad("negative or not a number")
	case *c == wire.ChangeTraining{Operator: c.Operator, Reason: c.Reason, TimeMs: c.TimeMs}:
		return bad("changes nothing")
	case c.NoiseMultiplier != 0 && t.NoiseMode() == NoiseOff:
		return bad("the cluster adds no noise: noise cannot be turned on after it was founded")
	case c.SecAggPhaseMs != 0 && !t.SecAgg:
		return bad("the cluster does not run secure aggregation: no phase deadline to change")
	}
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	if c.ClientsPerRound > 0 {
		t.ClientsPerRound = c.ClientsPerRound
	}
	if c.MinClients > 0 {
		t.MinClients = c.MinClients
	}
	if c.CheckInWindowMs > 0 {
		t.CheckInWindow = ms(c.CheckInWindowMs)
	}
	if c.RoundTimeoutMs > 0 {
		t.RoundTimeout = ms(c.RoundTimeoutMs)
	}
	if c.SecAggPhaseMs > 0 {
		t.SecAggPhase = ms(c.SecAggPhaseMs)
	}
	if c.NoiseMultiplier > 0 {
		t.NoiseMultiplier = c.NoiseMultiplier
	}
	if err := t.Validate(); err != nil {
		return bad("%v", err)
	}
	s.config = &t
	s.changes = append(s.changes, wire.TrainingChange{Change: *c, AfterRound: s.lastRound})
	return nil
}

func (s *State) checkParams(kind uint8, items, rank int, params []float64, digest []byte) (*model.Model, [sha256.Size]byte, error) {
	var d [sha256.Size]byte
	cfg := s.config
	k, err := wire.ModelKind(kind)
	if err != nil || k != cfg.Kind || items != cfg.Items || rank != cfg.Rank {
		return nil, d, fmt.Errorf("%w: model %d×%d of kind %d does not match the configuration", ErrBadCommand, items, rank, kind)
	}
	m := &model.Model{Kind: k, Items: items, Rank: rank, Params: params}
	if err := m.Validate(); err != nil {
		return nil, d, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	d = wire.Digest(m)
	if string(d[:]) != string(digest) {
		return nil, d, fmt.Errorf("%w: model does not match its digest", ErrBadCommand)
	}
	return m, d, nil
}

func (s *State) initModel(c *wire.InitModel) error {
	if s.config == nil {
		return ErrNotReady
	}
	if len(s.models) > 0 {
		return ErrHasModel
	}
	m, d, err := s.checkParams(c.Kind, c.Items, c.Rank, c.Params, c.Digest)
	if err != nil {
		return err
	}
	s.models = []*Version{{Version: 1, Digest: d, Model: m}}
	return nil
}

func (s *State) registerNode(c *wire.RegisterNode) error {
	if c.ID == "" {
		return fmt.Errorf("%w: empty node id", ErrBadCommand)
	}
	if c.ClientAddr == "" {
		delete(s.nodes, c.ID)
		delete(s.admins, c.ID)
		return nil
	}
	s.nodes[c.ID] = c.ClientAddr
	if c.AdminAddr != "" {
		s.admins[c.ID] = c.AdminAddr
	}
	return nil
}

func (s *State) openRound(c *wire.OpenRound) error {
	cur := s.Current()
	switch {
	case cur == nil:
		return ErrNotReady
	case s.open != nil:
		return fmt.Errorf("%w: round %d", ErrRoundOpen, s.open.Round)
	case c.Round != s.lastRound+1:
		return fmt.Errorf("%w: round %d, next is %d", ErrStaleRound, c.Round, s.lastRound+1)
	case c.Model != cur.Version || len(c.Digest) != sha256.Size || string(c.Digest) != string(cur.Digest[:]):
		return fmt.Errorf("%w: round on version %d, current is %d", ErrStaleModel, c.Model, cur.Version)
	}
	if err := checkGroups(c); err != nil {
		return err
	}
	s.open = openFromWire(c)
	s.lastRound = c.Round
	return nil
}

// checkGroups checks that a manifest's groups split its cohort, each
// node at most once.
func checkGroups(c *wire.OpenRound) error {
	if len(c.Groups) == 0 {
		return nil
	}
	total := 0
	seen := map[string]bool{}
	for _, g := range c.Groups {
		if g.Node == "" || seen[g.Node] || g.Size < 0 || g.Want < 0 || g.Want > g.Size || total+g.Size > len(c.Cohort) {
			return fmt.Errorf("%w: group of node %q, %d members, %d wanted", ErrBadCommand, g.Node, g.Size, g.Want)
		}
		if err := checkGroupSecAgg(c, g, c.Cohort[total:total+g.Size]); err != nil {
			return err
		}
		seen[g.Node] = true
		total += g.Size
	}
	if total != len(c.Cohort) {
		return fmt.Errorf("%w: groups of %d members, cohort of %d", ErrBadCommand, total, len(c.Cohort))
	}
	return nil
}

// checkGroupSecAgg checks the secure aggregation of group g (its members
// ids) against its manifest c: a secure round's every group has its own,
// of its own size, within the round's settings, and with the seeds the
// round, the model and the group determine.
func checkGroupSecAgg(c *wire.OpenRound, g wire.RoundGroup, ids []string) error {
	p, r := g.SecAgg, c.SecAgg
	switch {
	case r == nil && p == nil:
		return nil
	case r == nil || p == nil:
		return fmt.Errorf("%w: group of node %q: secure aggregation in a round that has none, or none in a secure round", ErrBadCommand, g.Node)
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: group of node %q: %v", ErrBadCommand, g.Node, err)
	}
	graph, rot := p.WantSeeds(c.Round, c.Digest, ids)
	switch {
	case p.Group != g.Node || p.Clients != g.Size || p.Cohort != len(c.Cohort):
		return fmt.Errorf("%w: group of node %q: secure aggregation of group %q, %d of %d clients", ErrBadCommand, g.Node, p.Group, p.Clients, p.Cohort)
	case p.Clip != r.Clip || p.PhaseMs != r.PhaseMs || p.ClipBit != r.ClipBit || p.Signed != r.Signed || p.Quantized != r.Quantized || !p.Quantized && p.Bits != r.Bits:
		return fmt.Errorf("%w: group of node %q: secure aggregation settings differ from the round's", ErrBadCommand, g.Node)
	case string(p.Seed) != string(graph[:]) || string(p.RotationSeed) != string(rot[:]):
		return fmt.Errorf("%w: group of node %q: seeds not derived from the round, the model and the group", ErrBadCommand, g.Node)
	}
	return nil
}

// roundEnd is what CommitRound and CommitUpdate both say about a round.
type roundEnd struct {
	round, model               uint64
	cohort, survivors, clipped int
	loss                       float64
	n                          int64
	privacy                    wire.PrivacyParams
	nextClip                   float64
}

// checkEnd checks what a commit says about the round against the open
// round and the current model.
func (s *State) checkEnd(e roundEnd) error {
	cur := s.Current()
	switch {
	case cur == nil:
		return ErrNotReady
	case s.open == nil || s.open.Round != e.round:
		return fmt.Errorf("%w: commit for round %d", ErrStaleRound, e.round)
	case e.model != cur.Version:
		return fmt.Errorf("%w: commit on version %d, current is %d", ErrStaleModel, e.model, cur.Version)
	case e.survivors < 1 || e.survivors > e.cohort || e.n < 0:
		return fmt.Errorf("%w: %d survivors of %d", ErrBadCommand, e.survivors, e.cohort)
	case e.privacy.Validate() != nil || e.privacy.Mechanism != s.open.Privacy.Mechanism:
		return fmt.Errorf("%w: privacy %+v for a round opened with %+v", ErrBadCommand, e.privacy, s.open.Privacy)
	case e.privacy.Mechanism == wire.MechSkellam && e.privacy.NoiseMultiplier > 0 && !(e.privacy.Variance > 0 && e.privacy.L1 > 0 && e.privacy.L2 > 0):
		return fmt.Errorf("%w: distributed noise without the accountant's figures %+v", ErrBadCommand, e.privacy)
	case e.nextClip != 0 && (!s.config.AdaptiveClip || !(e.nextClip > 0) || math.IsInf(e.nextClip, 0)):
		return fmt.Errorf("%w: next clip %v", ErrBadCommand, e.nextClip)
	}
	return nil
}

// commitRound applies a CommitRound of an older log: the entry carries
// the new model and moments.
func (s *State) commitRound(c *wire.CommitRound) (uint64, error) {
	e := roundEnd{round: c.Round, model: c.Model, cohort: c.Cohort, survivors: c.Survivors, clipped: c.Clipped,
		loss: c.Loss, n: c.N, privacy: c.Privacy, nextClip: c.NextClip}
	if err := s.checkEnd(e); err != nil {
		return 0, err
	}
	cur := s.Current()
	dim := len(cur.Model.Params)
	if (len(c.OptM) != 0 || len(c.OptV) != 0) && (len(c.OptM) != dim || len(c.OptV) != dim) {
		return 0, fmt.Errorf("%w: optimizer state of %d and %d, want %d", ErrBadCommand, len(c.OptM), len(c.OptV), dim)
	}
	for _, x := range [][]float64{c.OptM, c.OptV} {
		if i := model.FirstNonFinite(x); i >= 0 {
			return 0, fmt.Errorf("%w: optimizer state [%d] is %v", ErrBadCommand, i, x[i])
		}
	}
	m, d, err := s.checkParams(wire.KindOf(cur.Model.Kind), cur.Model.Items, cur.Model.Rank, c.Params, c.Digest)
	if err != nil {
		return 0, err
	}
	return s.commit(e, m, d, c.OptM, c.OptV), nil
}

// commitUpdate steps the server optimizer with the round's mean update,
// as the leader did before it proposed the command.
func (s *State) commitUpdate(c *wire.CommitUpdate) (uint64, error) {
	e := roundEnd{round: c.Round, model: c.Model, cohort: c.Cohort, survivors: c.Survivors, clipped: c.Clipped,
		loss: c.Loss, n: c.N, privacy: c.Privacy, nextClip: c.NextClip}
	if err := s.checkEnd(e); err != nil {
		return 0, err
	}
	m, optM, optV, err := NextModel(s.config.Optimizer, s.Current().Model, s.optM, s.optV, c.Delta.Float64s())
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	d := wire.Digest(m)
	if string(d[:]) != string(c.Digest) {
		return 0, fmt.Errorf("%w: the server step gave another model than the leader's", ErrBadCommand)
	}
	return s.commit(e, m, d, optM, optV), nil
}

// NextModel steps the server optimizer opt, from the moments optM and
// optV (nil before the first commit: fresh ones), with a round's mean
// update delta on a copy of base. It returns the new model and moments,
// all newly allocated: a committed version is never modified. The leader
// calls it before it proposes a commit, and every node when it applies
// one, so that they store the same bits.
func NextModel(opt aggregation.OptimizerConfig, base *model.Model, optM, optV, delta []float64) (m *model.Model, nextM, nextV []float64, err error) {
	dim := len(base.Params)
	if len(delta) != dim {
		return nil, nil, nil, fmt.Errorf("update of %d values for a model of %d", len(delta), dim)
	}
	if i := model.FirstNonFinite(delta); i >= 0 {
		return nil, nil, nil, fmt.Errorf("update [%d] is %v", i, delta[i])
	}
	o, err := aggregation.NewOptimizer(opt, dim)
	if err != nil {
		return nil, nil, nil, err
	}
	ad, adaptive := o.(*aggregation.Adaptive)
	if adaptive && optM != nil {
		if len(optM) != dim || len(optV) != dim {
			return nil, nil, nil, fmt.Errorf("optimizer state of %d and %d, want %d", len(optM), len(optV), dim)
		}
		copy(ad.M, optM)
		copy(ad.V, optV)
	}
	m = base.Clone()
	if err := o.Step(m.Params, delta); err != nil {
		return nil, nil, nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, nil, nil, fmt.Errorf("after the server step: %w", err)
	}
	if adaptive {
		nextM, nextV = ad.M, ad.V
	}
	return m, nextM, nextV, nil
}

// commit stores a round's new model and moments and closes it.
func (s *State) commit(e roundEnd, m *model.Model, d [sha256.Size]byte, optM, optV []float64) uint64 {
	cur := s.Current()
	v := &Version{Version: cur.Version + 1, Round: e.round, Digest: d, Model: m}
	s.models = append(s.models, v)
	if n := len(s.models) - s.config.KeepModels; n > 0 {
		s.models = slices.Clone(s.models[n:])
	}
	s.optM, s.optV = optM, optV
	rec := RoundRecord{
		Round: e.round, Outcome: Committed, Model: e.model, NewModel: v.Version,
		Cohort: e.cohort, Survivors: e.survivors, Clipped: e.clipped, Loss: e.loss, N: e.n,
		LossUnknown: s.open.SecAgg != nil, NextClip: e.nextClip,
	}
	if s.config.AdaptiveClip {
		rec.Clip = s.open.Clip
	}
	s.rounds = append(s.rounds, rec)
	p := e.privacy
	s.ledger = append(s.ledger, LedgerEntry{Round: e.round, SamplingRate: p.SamplingRate, NoiseMultiplier: p.NoiseMultiplier, Steps: 1,
		Mechanism: p.Mechanism, Variance: p.Variance, L1: p.L1, L2: p.L2})
	s.open = nil
	return v.Version
}

func (s *State) abandonRound(c *wire.AbandonRound) error {
	if s.open == nil || s.open.Round != c.Round {
		return fmt.Errorf("%w: abandon round %d", ErrStaleRound, c.Round)
	}
	s.rounds = append(s.rounds, RoundRecord{
		Round: c.Round, Outcome: Abandoned, Model: s.open.Model,
		Cohort: len(s.open.Cohort), Survivors: c.Survivors, Reason: c.Reason,
	})
	s.open = nil
	return nil
}

// clone returns a copy that shares the immutable parts (models, vectors)
// and copies the slices and maps that Apply appends to or mutates.
func (s *State) Clone() *State {
	c := *s
	c.nodes = maps.Clone(s.nodes)
	c.admins = maps.Clone(s.admins)
	c.models = slices.Clone(s.models)
	c.rounds = slices.Clip(s.rounds)
	c.ledger = slices.Clip(s.ledger)
	c.changes = slices.Clip(s.changes)
	return &c
}
