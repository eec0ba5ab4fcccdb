package wire

import (
	"fmt"
)

// CommandVersion is the version byte of every Raft log command. A node
// panics on a committed command it cannot decode (the log is corrupt or
// written by a newer release): upgrade every node before a release that
// writes a new version or a new command type.
const CommandVersion = 1

// CommandType identifies a Raft log command. Values are only ever appended;
// a retired value is never reused. 0 is invalid.
type CommandType uint8

// Log commands.
const (
	CmdSetConfig    CommandType = 1 // set the training configuration (once)
	CmdInitModel    CommandType = 2 // the initial model, version 1
	CmdRegisterNode CommandType = 3 // a node's client address
	CmdOpenRound    CommandType = 4 // a round's manifest, before it starts
	CmdCommitRound  CommandType = 5 // a round's new model
	CmdAbandonRound CommandType = 6 // a round ends without a model
	// CmdChangeTraining: an operator changes the settings that may change
	// while the cluster runs, from the next round on.
	CmdChangeTraining CommandType = 7
	// CmdCommitUpdate: a round's mean update, from which every node steps
	// the server optimizer (CommitRound, which carried the whole model and
	// the optimizer's moments, is only read from older logs).
	CmdCommitUpdate CommandType = 8
)

func (t CommandType) String() string {
	switch t {
	case CmdSetConfig:
		return "SetConfig"
	case CmdInitModel:
		return "InitModel"
	case CmdRegisterNode:
		return "RegisterNode"
	case CmdOpenRound:
		return "OpenRound"
	case CmdCommitRound:
		return "CommitRound"
	case CmdAbandonRound:
		return "AbandonRound"
	case CmdChangeTraining:
		return "ChangeTraining"
	case CmdCommitUpdate:
		return "CommitUpdate"
	}
	return fmt.Sprintf("CommandType(%d)", uint8(t))
}

// Command is a Raft log command.
type Command interface {
	CommandType() CommandType
}

// OptimizerParams configure the server optimizer.
type OptimizerParams struct {
	Name  string  `msgpack:"name"`
	LR    float64 `msgpack:"lr"`
	Beta1 float64 `msgpack:"beta1"`
	Beta2 float64 `msgpack:"beta2"`
	Tau   float64 `msgpack:"tau"`
}

// TrainingConfig is the cluster's replicated training configuration.
type TrainingConfig struct {
	Kind            uint8           `msgpack:"kind"`
	Items           int             `msgpack:"items"`
	Rank            int             `msgpack:"rank"`
	Mean            float64         `msgpack:"mean"`
	InitStd         float64         `msgpack:"init_std"`
	Seed            uint64          `msgpack:"seed"`
	Train           TrainParams     `msgpack:"train"`
	Clip            float64         `msgpack:"clip"`
	Optimizer       OptimizerParams `msgpack:"optimizer"`
	ClientsPerRound int             `msgpack:"clients_per_round"`
	OverSelect      float64         `msgpack:"over_select"`
	MinClients      int             `msgpack:"min_clients"`
	CheckInWindowMs int64           `msgpack:"checkin_window_ms"`
	RoundTimeoutMs  int64           `msgpack:"round_timeout_ms"`
	KeepModels      int             `msgpack:"keep_models"`
	NoiseMultiplier float64         `msgpack:"noise"`
	Population      int64           `msgpack:"population"`
	SecAgg          bool            `msgpack:"secagg,omitempty"`
	SecAggPhaseMs   int64           `msgpack:"secagg_phase_ms,omitempty"`
	// NoiseMode is coordinator.NoiseMode; 0 (older configs) means central
	// with a noise multiplier, else off.
	NoiseMode        uint8   `msgpack:"noise_mode,omitempty"`
	AdaptiveClip     bool    `msgpack:"adaptive_clip,omitempty"`
	ClipQuantile     float64 `msgpack:"clip_quantile,omitempty"`
	ClipLearningRate float64 `msgpack:"clip_lr,omitempty"`
	ClipCountStddev  float64 `msgpack:"clip_count_std,omitempty"`
	// Catalogue is the CatalogueDigest of the item IDs in the model's
	// order, which every ModelHeader carries so that a device refuses
	// another catalogue; nil when the cluster was not given one.
	// Appended.
	Catalogue []byte `msgpack:"catalogue,omitempty"`
	// SecAggSigned makes secure rounds signed (SecAggParams.Signed), with
	// a threshold that resists SecAggColluders colluding devices in any
	// one neighbourhood (secagg.ActiveThreshold). Appended.
	SecAggSigned    bool `msgpack:"secagg_signed,omitempty"`
	SecAggColluders int  `msgpack:"secagg_colluders,omitempty"`
	// SecAggRoster admits to signed rounds only the devices the device
	// roster lists (SecAggParams.Roster). Appended.
	SecAggRoster bool `msgpack:"secagg_roster,omitempty"`
	// UploadBits is how devices send updates: 0, packed float64 (older
	// configs) and secure inputs in a 32-bit field; UploadBits8,
	// quantized (Plan.UploadBits, SecAggParams.Quantized). Appended.
	UploadBits uint8 `msgpack:"upload_bits,omitempty"`
}

// SetConfig sets the training configuration.
type SetConfig struct {
	Config TrainingConfig `msgpack:"config"`
}

// InitModel installs the initial model as version 1.
type InitModel struct {
	Kind   uint8  `msgpack:"kind"`
	Items  int    `msgpack:"items"`
	Rank   int    `msgpack:"rank"`
	Params Vec    `msgpack:"params"`
	Digest []byte `msgpack:"digest"`
}

// RegisterNode records the client (QUIC) address of a node, so that any
// node can point clients at the leader, and its admin API address, so
// that an operator's command given one node finds the others. An empty
// ClientAddr forgets the node; an empty AdminAddr (an older node's
// command) keeps the admin address recorded before.
type RegisterNode struct {
	ID         string `msgpack:"id"`
	ClientAddr string `msgpack:"client_addr"`
	AdminAddr  string `msgpack:"admin_addr,omitempty"`
}

// OpenRound is a round's manifest, committed before any client is told
// about the round.
type OpenRound struct {
	Round   uint64        `msgpack:"round"`
	Model   uint64        `msgpack:"model"` // the version clients train on
	Digest  []byte        `msgpack:"digest"`
	Cohort  []string      `msgpack:"cohort"` // selected client ids, in selection order
	Clip    float64       `msgpack:"clip"`
	Privacy PrivacyParams `msgpack:"privacy"`
	Leader  string        `msgpack:"leader"` // id of the node running the round
	// SecAgg holds a secure round's parameters; nil for a plaintext round.
	// With Groups, each group runs secure aggregation with its own
	// parameters (RoundGroup.SecAgg) and SecAgg holds those of the whole
	// cohort, which still say that the round is secure and with what
	// settings, and whose MinSurvivors is the fewest inputs the leader
	// commits a sum of, over all groups.
	SecAgg *SecAggParams `msgpack:"secagg,omitempty"`
	// Groups splits Cohort, in order, among the nodes that selected its
	// members from their own devices: each node sends its group their
	// plans, collects their uploads and sends the leader one Partial.
	// Empty (rounds before the split): the whole cohort is the leader's.
	// Appended.
	Groups []RoundGroup `msgpack:"groups,omitempty"`
}

// RoundGroup is one node's share of a round's cohort.
type RoundGroup struct {
	Node string `msgpack:"node"`
	Size int    `msgpack:"size"` // members, the next Size ids of the cohort
	// Want is how many of its members' updates the node waits for before
	// it closes its part early (it closes at the deadline otherwise).
	Want int `msgpack:"want"`
	// SecAgg holds, in a secure round, the parameters of the group's own
	// secure aggregation (SecAggParams.Group is Node). Appended.
	SecAgg *SecAggParams `msgpack:"secagg,omitempty"`
}

// CommitRound ends a round with a new model (version = the base version +
// 1) and the server optimizer's state after its step.
type CommitRound struct {
	Round     uint64        `msgpack:"round"`
	Model     uint64        `msgpack:"model"` // base version
	Params    Vec           `msgpack:"params"`
	Digest    []byte        `msgpack:"digest"`
	OptM      Vec           `msgpack:"opt_m"`
	OptV      Vec           `msgpack:"opt_v"`
	Cohort    int           `msgpack:"cohort"`
	Survivors int           `msgpack:"survivors"`
	Clipped   int           `msgpack:"clipped"`
	Loss      float64       `msgpack:"loss"`
	N         int64         `msgpack:"n"`
	Privacy   PrivacyParams `msgpack:"privacy"`
	// NextClip is, with adaptive clipping, the clip of the next round,
	// computed by the leader from the round's noisy count of unclipped
	// updates; 0 keeps the clip.
	NextClip float64 `msgpack:"next_clip,omitempty"`
}

// CommitUpdate ends a round with its mean update: every node applying it
// steps the server optimizer from the base version and its replicated
// moments with Delta, and stores the new model (version = base + 1) and
// moments. A sixth of CommitRound's bytes, which is what a follower
// receives and every node writes to its log each round: the update is in
// float32, finer than the 8-bit updates it sums, and the leader steps
// from the same float32 values as every other node.
type CommitUpdate struct {
	Round uint64 `msgpack:"round"`
	Model uint64 `msgpack:"model"` // base version
	Delta Vec32  `msgpack:"delta"`
	// Digest is the new model's, as the leader computed it: a node whose
	// step gave another model refuses the command rather than diverge.
	Digest    []byte        `msgpack:"digest"`
	Cohort    int           `msgpack:"cohort"`
	Survivors int           `msgpack:"survivors"`
	Clipped   int           `msgpack:"clipped"`
	Loss      float64       `msgpack:"loss"`
	N         int64         `msgpack:"n"`
	Privacy   PrivacyParams `msgpack:"privacy"`
	NextClip  float64       `msgpack:"next_clip,omitempty"` // as CommitRound's
}

// AbandonRound ends a round without a model.
type AbandonRound struct {
	Round     uint64 `msgpack:"round"`
	Survivors int    `msgpack:"survivors"`
	Reason    string `msgpack:"reason"`
}

// ChangeTraining changes, from the next round opened on, the training
// settings that may change while a cluster runs; a zero field keeps its
// value. What fixes the model or what devices were promised (kind, items,
// rank, clip, population, noise mode, secure aggregation) cannot change.
// Operator, Reason and TimeMs (the proposing leader's clock) are the audit
// trail.
type ChangeTraining struct {
	ClientsPerRound int     `msgpack:"clients_per_round,omitempty"`
	MinClients      int     `msgpack:"min_clients,omitempty"`
	CheckInWindowMs int64   `msgpack:"checkin_window_ms,omitempty"`
	RoundTimeoutMs  int64   `msgpack:"round_timeout_ms,omitempty"`
	SecAggPhaseMs   int64   `msgpack:"secagg_phase_ms,omitempty"`
	NoiseMultiplier float64 `msgpack:"noise,omitempty"`
	Operator        string  `msgpack:"operator"`
	Reason          string  `msgpack:"reason"`
	TimeMs          int64   `msgpack:"time_ms"`
}

func (*SetConfig) CommandType() CommandType    { return CmdSetConfig }
func (*InitModel) CommandType() CommandType    { return CmdInitModel }
func (*RegisterNode) CommandType() CommandType { return CmdRegisterNode }
func (*OpenRound) CommandType() CommandType    { return CmdOpenRound }
func (*CommitRound) CommandType() CommandType  { return CmdCommitRound }
func (*CommitUpdate) CommandType() CommandType { return CmdCommitUpdate }
func (*AbandonRound) CommandType() CommandType { return CmdAbandonRound }
func (*ChangeTraining) CommandType() CommandType {
	return CmdChangeTraining
}

func newCommand(t CommandType) Command {
	switch t {
	case CmdSetConfig:
		return new(SetConfig)
	case CmdInitModel:
		return new(InitModel)
	case CmdRegisterNode:
		return new(RegisterNode)
	case CmdOpenRound:
		return new(OpenRound)
	case CmdCommitRound:
		return new(CommitRound)
	case CmdAbandonRound:
		return new(AbandonRound)
	case CmdChangeTraining:
		return new(ChangeTraining)
	case CmdCommitUpdate:
		return new(CommitUpdate)
	}
	return nil
}

// EncodeCommand returns the log entry data for c: [CommandVersion][type]
// [msgpack body].
func EncodeCommand(c Command) ([]byte, error) {
	body, err := marshal(c)
	if err != nil {
		return nil, fmt.Errorf("wire: encode %s: %w", c.CommandType(), err)
	}
	return append([]byte{CommandVersion, byte(c.CommandType())}, body...), nil
}

// DecodeCommand decodes log entry data written by EncodeCommand.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) < 3 {
		return nil, fmt.Errorf("wire: command of %d bytes", len(b))
	}
	if b[0] != CommandVersion {
		return nil, fmt.Errorf("wire: command version %d, this node reads %d", b[0], CommandVersion)
	}
	c := newCommand(CommandType(b[1]))
	if c == nil {
		return nil, fmt.Errorf("wire: unknown command type %d", b[1])
	}
	if err := unmarshal(b[2:], c); err != nil {
		return nil, fmt.Errorf("wire: decode %s: %w", CommandType(b[1]), err)
	}
	return c, nil
}
