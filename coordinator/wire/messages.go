package wire

import (
	"crypto/sha256"
	"fmt"
	"unicode/utf8"
	"unsafe"

	"github.com/fedrec/fedrec/model"
)

// Message is a message of the client protocol.
type Message interface {
	Type() Type
	// Validate checks what can be checked without server state: the
	// protocol version of a request, ranges, lengths, finite values. It
	// returns an *Error.
	Validate() error
}

// MaxIDLen bounds client and node identifiers.
const MaxIDLen = 128

// TicketLen is the length of a round ticket.
const TicketLen = 16

func checkVersion(v uint16) error {
	if v != Version {
		return Errorf(CodeVersion, "protocol version %d, this node speaks %d", v, Version)
	}
	return nil
}

func checkID(what, id string) error {
	if id == "" || len(id) > MaxIDLen || !utf8.ValidString(id) {
		return Errorf(CodeMalformed, "%s must be 1..%d bytes of UTF-8", what, MaxIDLen)
	}
	return nil
}

// CheckIn announces a client ready to train. The leader holds the request
// open until it selects the next cohort and answers with a Plan or a Wait.
type CheckIn struct {
	Version  uint16 `msgpack:"v"`
	ClientID string `msgpack:"client"`
	// Examples is how many local examples the client holds.
	Examples int64 `msgpack:"examples"`
	// Have is the newest model version the client holds, 0 for none.
	Have uint64 `msgpack:"have"`
}

func (*CheckIn) Type() Type { return TypeCheckIn }

func (m *CheckIn) Validate() error {
	if err := checkVersion(m.Version); err != nil {
		return err
	}
	if m.Examples < 0 {
		return Errorf(CodeMalformed, "examples = %d", m.Examples)
	}
	return checkID("client id", m.ClientID)
}

// Wait tells a client that checked in that it was not selected; it should
// check in again after RetryAfterMs, which the leader spreads over the
// population (pace steering) and the device jitters a little more.
type Wait struct {
	Round        uint64 `msgpack:"round"` // the round being run, 0 for none
	Model        uint64 `msgpack:"model"` // the newest committed model version
	RetryAfterMs int64  `msgpack:"retry_ms"`
}

func (*Wait) Type() Type { return TypeWait }

func (m *Wait) Validate() error {
	if m.RetryAfterMs < 0 {
		return Errorf(CodeMalformed, "retry_ms = %d", m.RetryAfterMs)
	}
	return nil
}

// TrainParams are the local training hyper-parameters of a round.
type TrainParams struct {
	LR     float64 `msgpack:"lr"`
	Reg    float64 `msgpack:"reg"`
	Epochs int     `msgpack:"epochs"`
	Alpha  float64 `msgpack:"alpha"`
	// Events is, for an implicit model, how devices turn the events they
	// record into its input; nil means DefaultEventWeights (what devices
	// used before the field existed). Explicit models leave it nil.
	Events *EventWeights `msgpack:"events,omitempty"`
}

// problem describes what is out of range in p, "" if nothing.
func (p *TrainParams) problem() string {
	switch {
	case !(p.LR > 0) || !finite(p.LR) || !(p.Reg >= 0) || !finite(p.Reg) ||
		p.Epochs < 0 || p.Epochs > 1000 || !(p.Alpha >= 0) || !finite(p.Alpha):
		return fmt.Sprintf("bad training parameters lr %v, reg %v, epochs %d, alpha %v", p.LR, p.Reg, p.Epochs, p.Alpha)
	case p.Events != nil:
		return p.Events.problem()
	}
	return ""
}

// EventWeights are an implicit model's weights of the kinds of event a
// device records (the client SDK's View, Click, Cart and Purchase): an
// item's input is log2(1 + the sum of the weights of its events). The
// cluster's training configuration sets them, so that every device of a
// cluster maps events the same way. Kinds added later get a new key here.
type EventWeights struct {
	View     float64 `msgpack:"view"`
	Click    float64 `msgpack:"click"`
	Cart     float64 `msgpack:"cart"`
	Purchase float64 `msgpack:"purchase"`
}

// DefaultEventWeights are what an implicit plan, model header or
// configuration without event weights means: the weights devices used
// before clusters carried them.
func DefaultEventWeights() EventWeights {
	return EventWeights{View: 1, Click: 2, Cart: 4, Purchase: 8}
}

// Validate checks that every weight is finite and >= 0 and that one is
// positive (all zero would leave a device no input at all).
func (w EventWeights) Validate() error {
	if p := w.problem(); p != "" {
		return Errorf(CodeMalformed, "%s", p)
	}
	return nil
}

func (w EventWeights) problem() string {
	for _, x := range [...]float64{w.View, w.Click, w.Cart, w.Purchase} {
		if !(x >= 0) || !finite(x) {
			return fmt.Sprintf("event weights view %v, click %v, cart %v, purchase %v: want finite weights >= 0", w.View, w.Click, w.Cart, w.Purchase)
		}
	}
	if w == (EventWeights{}) {
		return "event weights are all zero"
	}
	return ""
}

// Noise mechanisms of PrivacyParams.Mechanism and LedgerEntry.Mechanism.
// 0 is the meaning the field had before it existed, so that old commands
// and records keep it; values are only ever appended.
const (
	// MechGaussian: central DP, the leader adds Gaussian noise of std
	// NoiseMultiplier·clip to the sum (no noise when the multiplier is 0).
	MechGaussian uint8 = 0
	// MechSkellam: distributed DP, each client adds its share of Skellam
	// noise to its encoded update before secure aggregation
	// (privacy.NewDistributed); the leader adds none.
	MechSkellam uint8 = 1
)

// PrivacyParams are a round's differential-privacy parameters. The fields
// after SamplingRate were appended (omitempty) and are zero for rounds
// without distributed noise or adaptive clipping.
type PrivacyParams struct {
	NoiseMultiplier float64 `msgpack:"noise"`
	SamplingRate    float64 `msgpack:"q"`
	Mechanism       uint8   `msgpack:"mech,omitempty"`
	// NoiseClients is, with MechSkellam, the number of shares the noise
	// of std NoiseMultiplier·clip is split into: each client adds
	// 1/NoiseClients of the variance.
	NoiseClients int `msgpack:"noise_clients,omitempty"`
	// CountStddev is, with adaptive clipping under noise, σ_b, the std of
	// the noise on the count of unclipped updates (Andrew et al. 2021);
	// NoiseMultiplier is then the round's effective multiplier and the
	// update itself gets the larger (z⁻² - (2σ_b)⁻²)^(-1/2).
	CountStddev float64 `msgpack:"count_std,omitempty"`
	// Variance, L1 and L2 are, in a committed MechSkellam round, what the
	// accountant charges (privacy.Entry): the survivors' summed noise
	// variance less one share, and the sensitivities, integer domain.
	Variance float64 `msgpack:"variance,omitempty"`
	L1       float64 `msgpack:"l1,omitempty"`
	L2       float64 `msgpack:"l2,omitempty"`
}

// Validate checks the ranges of p.
func (p *PrivacyParams) Validate() error {
	switch {
	case !(p.NoiseMultiplier >= 0) || !finite(p.NoiseMultiplier) || !(p.SamplingRate >= 0) || p.SamplingRate > 1:
		return Errorf(CodeMalformed, "bad privacy parameters %+v", *p)
	case p.Mechanism > MechSkellam:
		return Errorf(CodeMalformed, "unknown noise mechanism %d", p.Mechanism)
	case p.NoiseClients < 0 || (p.Mechanism == MechSkellam && p.NoiseMultiplier > 0 && p.NoiseClients < 1):
		return Errorf(CodeMalformed, "noise split into %d shares", p.NoiseClients)
	case !(p.CountStddev >= 0) || !finite(p.CountStddev) || !(p.Variance >= 0) || !finite(p.Variance) ||
		!(p.L1 >= 0) || !finite(p.L1) || !(p.L2 >= 0) || !finite(p.L2):
		return Errorf(CodeMalformed, "bad privacy parameters %+v", *p)
	}
	return nil
}

// MaxSignedCohort bounds the cohort of a signed secure round, which every
// device of the round receives in its Plan (up to about 2 MiB of client
// IDs): a device never accepts more from a node.
const MaxSignedCohort = 1 << 14

// Plan tells a selected client what to do in a round: train on model
// version Model (whose SHA-256 digest is Digest), clip its update to L2
// norm Clip (0 = none) and upload it with Ticket within TimeLeftMs.
type Plan struct {
	Round   uint64        `msgpack:"round"`
	Model   uint64        `msgpack:"model"`
	Digest  []byte        `msgpack:"digest"`
	Kind    uint8         `msgpack:"kind"`
	Items   int           `msgpack:"items"`
	Rank    int           `msgpack:"rank"`
	Train   TrainParams   `msgpack:"train"`
	Clip    float64       `msgpack:"clip"`
	Privacy PrivacyParams `msgpack:"privacy"`
	// MinClients is the fewest updates the round is committed with; a
	// device's policy compares it with its minimum cohort.
	MinClients int    `msgpack:"min_clients"`
	TimeLeftMs int64  `msgpack:"time_left_ms"`
	Ticket     []byte `msgpack:"ticket"`
	// SecAgg, when set, makes the round a secure one: the client encodes
	// its update with aggregation/fixedpoint and runs the phases of
	// secure aggregation as client SecAggID instead of uploading it.
	SecAgg   *SecAggParams `msgpack:"secagg,omitempty"`
	SecAggID uint32        `msgpack:"secagg_id,omitempty"`
	// DownloadBytes is the size of the model's download (the frames of
	// a GetModel answer), and UploadBytes the most a device sends in the
	// round (its update, framed, or all its secure-aggregation
	// messages), so that a device can decline a round too big for it
	// before it downloads anything; 0 when not announced (an older
	// node). Appended.
	DownloadBytes int64 `msgpack:"download_bytes,omitempty"`
	UploadBytes   int64 `msgpack:"upload_bytes,omitempty"`
	// Cohort, in a signed secure round, lists the cohort's client IDs in
	// selection order: protocol id i is Cohort[i]. The device checks it
	// against SecAgg.Seed (SecAggSignedSeed) and its peers' certificates
	// against it. Appended.
	Cohort []string `msgpack:"cohort,omitempty"`
	// UploadBits is how the device sends its update: 0, packed float64
	// (Upload.Delta); UploadBits8, quantized by the fixedpoint.Quantizer of
	// the model's dimension, the round's Clip and UploadSeed (Upload.
	// Quantized), which the node sums exactly. Appended.
	UploadBits uint8 `msgpack:"upload_bits,omitempty"`
	// Digest32 is the Digest32 of the model, what a device that downloads
	// it as float32 checks; nil from an older node. Appended.
	Digest32 []byte `msgpack:"digest32,omitempty"`
}

// UploadBits8 is Plan.UploadBits of 8-bit uploads.
const UploadBits8 = 8

func (*Plan) Type() Type { return TypePlan }

func (m *Plan) Validate() error {
	switch {
	case m.Round == 0 || m.Model == 0:
		return Errorf(CodeMalformed, "plan: round %d, model %d", m.Round, m.Model)
	case len(m.Digest) != sha256.Size:
		return Errorf(CodeMalformed, "plan: digest of %d bytes", len(m.Digest))
	case len(m.Ticket) != TicketLen:
		return Errorf(CodeMalformed, "plan: ticket of %d bytes", len(m.Ticket))
	case m.Train.problem() != "":
		return Errorf(CodeMalformed, "plan: %s", m.Train.problem())
	case !(m.Clip >= 0) || !finite(m.Clip):
		return Errorf(CodeMalformed, "plan: clip %v", m.Clip)
	case m.MinClients < 0:
		return Errorf(CodeMalformed, "plan: min clients %d", m.MinClients)
	case m.Privacy.Validate() != nil:
		return Errorf(CodeMalformed, "plan: %v", m.Privacy.Validate())
	case m.Privacy.Mechanism == MechSkellam && m.SecAgg == nil:
		return Errorf(CodeMalformed, "plan: distributed noise without secure aggregation")
	case m.Privacy.Mechanism == MechSkellam && m.SecAgg.Quantized:
		return Errorf(CodeMalformed, "plan: distributed noise on 8-bit secure inputs")
	case m.TimeLeftMs <= 0:
		return Errorf(CodeMalformed, "plan: time_left_ms %d", m.TimeLeftMs)
	case m.DownloadBytes < 0 || m.UploadBytes < 0:
		return Errorf(CodeMalformed, "plan: sizes %d down, %d up", m.DownloadBytes, m.UploadBytes)
	case m.UploadBits != 0 && (m.UploadBits != UploadBits8 || !(m.Clip > 0) || m.SecAgg != nil):
		return Errorf(CodeMalformed, "plan: %d-bit uploads with clip %v (8-bit uploads need a clip and a plaintext round)", m.UploadBits, m.Clip)
	case m.Digest32 != nil && len(m.Digest32) != sha256.Size:
		return Errorf(CodeMalformed, "plan: float32 digest of %d bytes", len(m.Digest32))
	}
	if m.SecAgg != nil {
		if err := m.SecAgg.Validate(); err != nil {
			return err
		}
		if int(m.SecAggID) >= m.SecAgg.Clients {
			return Errorf(CodeMalformed, "plan: secagg id %d of %d clients", m.SecAggID, m.SecAgg.Clients)
		}
	}
	if len(m.Cohort) > 0 {
		if m.SecAgg == nil || !m.SecAgg.Signed || len(m.Cohort) != m.SecAgg.Clients || len(m.Cohort) > MaxSignedCohort {
			return Errorf(CodeMalformed, "plan: a cohort of %d outside a signed secure round of its size", len(m.Cohort))
		}
		for _, id := range m.Cohort {
			if err := checkID("plan: cohort id", id); err != nil {
				return err
			}
		}
	}
	_, err := checkShape(m.Kind, m.Items, m.Rank, DefaultMaxParams)
	return err
}

// GetModel asks any node for a committed model: version Model, or the
// newest when Model is 0. The answer is a ModelHeader followed by its
// chunks, or an Error.
type GetModel struct {
	Version uint16 `msgpack:"v"`
	Model   uint64 `msgpack:"model"`
	// Float32 asks for the parameters as float32, half the bytes; an
	// older node ignores it and sends float64 (ModelHeader.Float32 says
	// which). Appended.
	Float32 bool `msgpack:"f32,omitempty"`
	// Have is the version the device holds, 0 for none: when the model
	// asked for is not newer, the node sends its header alone, with
	// Current set, and no chunks. An older node ignores it (the device
	// then stops reading after the header). Appended.
	Have uint64 `msgpack:"have,omitempty"`
	// Round is the round the download is for, 0 for none: a node whose
	// part of that round needs no more uploads (its group has all it
	// wants, or the round has moved on) answers CodeNoRound instead of
	// the model, so that a device that starts late spends neither its
	// data nor its battery on an update no one will count. An older node
	// ignores it. Appended.
	Round uint64 `msgpack:"round,omitempty"`
}

func (*GetModel) Type() Type { return TypeGetModel }

func (m *GetModel) Validate() error { return checkVersion(m.Version) }

// ModelHeader opens a model transfer: the model's identity, shape and
// SHA-256 digest (see Digest), then Chunks ModelChunk frames follow.
type ModelHeader struct {
	Model  uint64 `msgpack:"model"`
	Round  uint64 `msgpack:"round"` // the round that produced it, 0 for the initial model
	Digest []byte `msgpack:"digest"`
	Kind   uint8  `msgpack:"kind"`
	Items  int    `msgpack:"items"`
	Rank   int    `msgpack:"rank"`
	Chunks int    `msgpack:"chunks"`
	// Events is, for an implicit model, the cluster's event weights (see
	// TrainParams.Events), so that a device that only downloads models
	// scores its user as the devices that train do; nil means
	// DefaultEventWeights. Not covered by Digest.
	Events *EventWeights `msgpack:"events,omitempty"`
	// Catalogue is the CatalogueDigest of the item catalogue the model
	// was trained on (item i of the model is the catalogue's i-th ID), so
	// that a device refuses a catalogue of the same length in another
	// order; nil when the cluster was not given one. Not covered by
	// Digest.
	Catalogue []byte `msgpack:"catalogue,omitempty"`
	// Float32 says that the chunks carry float32 parameters
	// (ModelChunk.Params32) and that Digest is their Digest32. Appended.
	Float32 bool `msgpack:"f32,omitempty"`
	// Current answers a GetModel whose Have is this version or newer: no
	// chunks follow. Appended.
	Current bool `msgpack:"current,omitempty"`
}

func (*ModelHeader) Type() Type { return TypeModelHeader }

func (m *ModelHeader) Validate() error {
	if m.Model == 0 || len(m.Digest) != sha256.Size {
		return Errorf(CodeMalformed, "model header: version %d, digest of %d bytes", m.Model, len(m.Digest))
	}
	dim, err := checkShape(m.Kind, m.Items, m.Rank, DefaultMaxParams)
	if err != nil {
		return err
	}
	if m.Chunks != chunks(dim) {
		return Errorf(CodeMalformed, "model header: %d chunks for %d params, want %d", m.Chunks, dim, chunks(dim))
	}
	if m.Events != nil {
		if p := m.Events.problem(); p != "" {
			return Errorf(CodeMalformed, "model header: %s", p)
		}
	}
	if m.Catalogue != nil && len(m.Catalogue) != sha256.Size {
		return Errorf(CodeMalformed, "model header: catalogue digest of %d bytes", len(m.Catalogue))
	}
	return nil
}

// ModelChunk carries params [Index*ChunkParams, ...) of a model transfer,
// as float64 (Params) or, after a header with Float32, as float32
// (Params32): exactly one is set.
type ModelChunk struct {
	Index    int   `msgpack:"i"`
	Params   Vec   `msgpack:"params,omitempty"`
	Params32 Vec32 `msgpack:"p32,omitempty"` // appended
}

func (*ModelChunk) Type() Type { return TypeModelChunk }

// Len is the number of parameters the chunk carries.
func (m *ModelChunk) Len() int { return len(m.Params) + len(m.Params32) }

func (m *ModelChunk) Validate() error {
	if m.Index < 0 || m.Len() == 0 || m.Len() > ChunkParams || (len(m.Params) > 0 && len(m.Params32) > 0) {
		return Errorf(CodeMalformed, "model chunk %d of %d float64 and %d float32 params", m.Index, len(m.Params), len(m.Params32))
	}
	if i := model.FirstNonFinite(m.Params); i >= 0 {
		return Errorf(CodeNotFinite, "model chunk %d: param %d is %v", m.Index, i, m.Params[i])
	}
	if i := firstNonFinite32(m.Params32); i >= 0 {
		return Errorf(CodeNotFinite, "model chunk %d: param %d is %v", m.Index, i, m.Params32[i])
	}
	return nil
}

// Upload is a selected client's update for a round: the change to the
// parameters of model version Model, already clipped by the client.
type Upload struct {
	Version  uint16 `msgpack:"v"`
	Round    uint64 `msgpack:"round"`
	ClientID string `msgpack:"client"`
	Ticket   []byte `msgpack:"ticket"`
	Model    uint64 `msgpack:"model"`
	// Loss and N are the client's training loss sum over N examples
	// before the update (for the round's metrics).
	Loss  float64 `msgpack:"loss"`
	N     int64   `msgpack:"n"`
	Delta Vec     `msgpack:"delta"`
	// BelowClip is the adaptive-clipping bit: the update's norm before
	// clipping was at most the round's clip.
	BelowClip bool `msgpack:"below_clip,omitempty"`
	// Quantized replaces Delta in a round of Plan.UploadBits 8: the
	// update quantized to one signed byte per parameter (Int8s) by the
	// round's fixedpoint.Quantizer, whose Step the device states so that
	// a node refuses an upload made for another clip or dimension.
	// Appended.
	Quantized []byte  `msgpack:"q,omitempty"`
	Step      float64 `msgpack:"step,omitempty"`
}

// QuantizedOf returns v as Upload.Quantized bytes (two's complement).
func QuantizedOf(v []int8) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

// Int8s returns Quantized as signed bytes: a view of the same memory
// (Int8View), no copy.
func (m *Upload) Int8s() []int8 { return Int8View(m.Quantized) }

// Int8View returns b's memory read as signed bytes (two's complement, as
// Upload.Quantized carries them): a quantizer writes an upload's bytes
// through it, and a node reads them, without a copy of 1 byte a parameter.
func Int8View(b []byte) []int8 {
	return unsafe.Slice((*int8)(unsafe.Pointer(unsafe.SliceData(b))), len(b))
}

func (*Upload) Type() Type { return TypeUpload }

func (m *Upload) Validate() error {
	if err := checkVersion(m.Version); err != nil {
		return err
	}
	if err := checkID("client id", m.ClientID); err != nil {
		return err
	}
	switch {
	case m.Round == 0 || m.Model == 0:
		return Errorf(CodeMalformed, "upload: round %d, model %d", m.Round, m.Model)
	case len(m.Ticket) != TicketLen:
		return Errorf(CodeMalformed, "upload: ticket of %d bytes", len(m.Ticket))
	case m.N < 0 || !(m.Loss >= 0) || !finite(m.Loss):
		return Errorf(CodeMalformed, "upload: loss %v over %d examples", m.Loss, m.N)
	case len(m.Delta) == 0 && len(m.Quantized) == 0:
		return Errorf(CodeShape, "upload: empty update")
	case len(m.Delta) > 0 && len(m.Quantized) > 0:
		return Errorf(CodeMalformed, "upload: both a float64 and a quantized update")
	case len(m.Quantized) > 0 && (!(m.Step > 0) || !finite(m.Step)):
		return Errorf(CodeMalformed, "upload: quantized at step %v", m.Step)
	case len(m.Delta) > 0 && m.Step != 0:
		return Errorf(CodeMalformed, "upload: a step for a float64 update")
	}
	if i := model.FirstNonFinite(m.Delta); i >= 0 {
		return Errorf(CodeNotFinite, "upload: delta[%d] is %v", i, m.Delta[i])
	}
	return nil
}

// UploadAck confirms that an upload was counted in Round.
type UploadAck struct {
	Round uint64 `msgpack:"round"`
}

func (*UploadAck) Type() Type { return TypeUploadAck }

func (m *UploadAck) Validate() error { return nil }

// Join asks the cluster to add a node as a voter. Only peers presenting a
// certificate of the cluster's CA may send it.
type Join struct {
	Version    uint16 `msgpack:"v"`
	ID         string `msgpack:"id"`
	RaftAddr   string `msgpack:"raft_addr"`
	ClientAddr string `msgpack:"client_addr"`
	// AdminAddr is the joining node's admin API address, "" if it has
	// none (or is older).
	AdminAddr string `msgpack:"admin_addr,omitempty"`
}

func (*Join) Type() Type { return TypeJoin }

func (m *Join) Validate() error {
	if err := checkVersion(m.Version); err != nil {
		return err
	}
	if err := checkID("node id", m.ID); err != nil {
		return err
	}
	if err := checkID("raft address", m.RaftAddr); err != nil {
		return err
	}
	if m.AdminAddr != "" {
		if err := checkID("admin address", m.AdminAddr); err != nil {
			return err
		}
	}
	return checkID("client address", m.ClientAddr)
}

// JoinAck confirms that the node is a member.
type JoinAck struct {
	Leader string `msgpack:"leader"` // the leader's node id
}

func (*JoinAck) Type() Type { return TypeJoinAck }

func (m *JoinAck) Validate() error { return nil }

// New returns an empty message of type t, or nil for an unknown type.
func New(t Type) Message {
	switch t {
	case TypeError:
		return new(Error)
	case TypeCheckIn:
		return new(CheckIn)
	case TypeWait:
		return new(Wait)
	case TypePlan:
		return new(Plan)
	case TypeGetModel:
		return new(GetModel)
	case TypeModelHeader:
		return new(ModelHeader)
	case TypeModelChunk:
		return new(ModelChunk)
	case TypeUpload:
		return new(Upload)
	case TypeUploadAck:
		return new(UploadAck)
	case TypeJoin:
		return new(Join)
	case TypeJoinAck:
		return new(JoinAck)
	case TypeSecAggAdvert:
		return new(SecAggAdvert)
	case TypeSecAggPeerKeys:
		return new(SecAggPeerKeys)
	case TypeSecAggShares:
		return new(SecAggShares)
	case TypeSecAggDelivery:
		return new(SecAggDelivery)
	case TypeSecAggMasked:
		return new(SecAggMasked)
	case TypeSecAggUnmaskRequest:
		return new(SecAggUnmaskRequest)
	case TypeSecAggUnmask:
		return new(SecAggUnmask)
	case TypeSecAggCheckRequest:
		return new(SecAggCheckRequest)
	case TypeSecAggCheck:
		return new(SecAggCheck)
	case TypeAuthenticate:
		return new(Authenticate)
	case TypeAuthenticated:
		return new(Authenticated)
	case TypeLobby:
		return new(Lobby)
	case TypeNodeAck:
		return new(NodeAck)
	case TypeSelect:
		return new(Select)
	case TypeSelected:
		return new(Selected)
	case TypePartial:
		return new(Partial)
	}
	return nil
}
