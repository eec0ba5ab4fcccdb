package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// The admin API's JSON bodies: what a node's HTTPS admin API
// (coordinator/adminapi/api.go) answers and what fedrec's commands read. Like the
// msgpack messages, they are defined here only. The API's version is in
// its paths (AdminPrefix): within a version, fields are only added, never
// renamed, retyped or given another meaning, so that a reader accepts the
// bodies of older and newer nodes alike (unknown fields are ignored); a
// change that breaks that takes a new prefix. DecodeAdmin reads a body.

// AdminPrefix begins every path of the admin API's version 1 but the
// probes (/healthz, /readyz) and /metrics.
const AdminPrefix = "/v1"

// The admin API's paths (coordinator/adminapi/api.go lists what each answers).
const (
	PathStatus   = AdminPrefix + "/status"  // GET: Status
	PathRounds   = AdminPrefix + "/rounds"  // GET: RoundsPage
	PathModel    = AdminPrefix + "/model"   // GET: ModelManifest, or the raw parameters
	PathCluster  = AdminPrefix + "/cluster" // GET: Cluster
	PathJoin     = PathCluster + "/join"    // POST: Cluster, or ClusterError
	PathRemove   = PathCluster + "/remove"  // POST: Cluster, or ClusterError
	PathTransfer = PathCluster + "/transfer-leadership"
	PathBackup   = AdminPrefix + "/backup"   // GET: a backup file
	PathTraining = AdminPrefix + "/training" // GET, POST: TrainingDoc
)

// Status is the answer of GET /v1/status.
type Status struct {
	Node   string `json:"node"`
	State  string `json:"raft_state"` // follower, candidate, leader, shutdown
	Term   uint64 `json:"term"`
	Commit uint64 `json:"commit_index"`
	// Applied is the Raft index last applied to this node's state.
	Applied uint64 `json:"applied_index"`
	// LeaderCommit is the leader's commit index as this node last heard
	// it (its own on the leader; 0 before it heard one).
	LeaderCommit uint64 `json:"leader_commit_index"`
	// LastContact is the time since this follower last heard from the
	// leader, in seconds; 0 on the leader, -1 if never.
	LastContact float64       `json:"last_contact_seconds"`
	Ready       bool          `json:"ready"`
	NotReady    string        `json:"not_ready,omitempty"` // why not, when not ready
	Leader      *StatusNode   `json:"leader"`              // null when unknown
	Nodes       []StatusNode  `json:"nodes"`               // the Raft configuration, by id
	Model       *StatusModel  `json:"model"`               // null before the initial model
	Round       *StatusRound  `json:"open_round"`          // null when no round is open
	LastRound   uint64        `json:"last_round"`          // highest round ever opened
	Privacy     StatusPrivacy `json:"privacy"`
	// InsecureDevices: the node serves devices without authenticating
	// them (no device CA; development only).
	InsecureDevices bool `json:"insecure_devices"`
	// Build is the node's binary: version, commit, toolchain.
	Build Build `json:"build"`
	// Certs is when the certificates the node serves with expire; null
	// without TLS.
	Certs *StatusCerts `json:"certificates"`
}

// StatusCerts says when the node's certificates expire: its own, the
// cluster CA's and the device CA's (the earliest of a file holding
// several, as during a rotation); a zero time is omitted.
type StatusCerts struct {
	Node       time.Time  `json:"node"`
	NodeSerial string     `json:"node_serial"` // hex
	CA         time.Time  `json:"ca"`
	DeviceCA   *time.Time `json:"device_ca,omitempty"` // absent without a device CA
}

// StatusNode is a member of the Raft configuration.
type StatusNode struct {
	ID         string `json:"id"`
	RaftAddr   string `json:"raft_addr"`
	ClientAddr string `json:"client_addr"` // empty until the node registered it
	// AdminAddr is the node's admin API address, as it registered it
	// (through the replicated membership); empty if unknown.
	AdminAddr string `json:"admin_addr,omitempty"`
	Suffrage  string `json:"suffrage"` // voter, nonvoter, staging
	Leader    bool   `json:"leader"`
}

// StatusModel is the newest committed model.
type StatusModel struct {
	Version uint64 `json:"version"`
	Round   uint64 `json:"round"`  // the round that produced it, 0 for the initial model
	Digest  string `json:"digest"` // hex SHA-256, see ModelManifest
}

// StatusRound is the open round's manifest.
type StatusRound struct {
	Round  uint64 `json:"round"`
	Model  uint64 `json:"model"` // the version clients train
	Cohort int    `json:"cohort"`
	Leader string `json:"leader"`
}

// StatusPrivacy is the privacy spent by the committed rounds.
type StatusPrivacy struct {
	// Epsilon is ε at Delta; null when unbounded (a round without noise)
	// or when the ledger cannot be accounted.
	Epsilon *float64 `json:"epsilon"`
	Delta   float64  `json:"delta"`
	Rounds  int      `json:"rounds"` // ledger entries
}

// RoundsPage is the answer of GET /v1/rounds: the rounds after the
// query's round id, oldest first. When more follow, Next is the value of
// ?after= for the next page.
type RoundsPage struct {
	Rounds []RoundJSON `json:"rounds"`
	Next   *uint64     `json:"next,omitempty"`
}

// RoundJSON is a round of the history.
type RoundJSON struct {
	Round     uint64  `json:"round"`
	Outcome   string  `json:"outcome"` // committed or abandoned
	Model     uint64  `json:"model"`
	NewModel  uint64  `json:"new_model,omitempty"`
	Cohort    int     `json:"cohort"`
	Survivors int     `json:"survivors"`
	Clipped   int     `json:"clipped"`
	Loss      float64 `json:"loss"`
	N         int64   `json:"n"`
	Reason    string  `json:"reason,omitempty"`
	// LossUnknown: a secure round, whose leader saw only the sum; loss, n
	// and clipped were not collected (they read 0).
	LossUnknown bool `json:"loss_unknown,omitempty"`
	// Clip and NextClip are the round's and the next round's clip norms
	// with adaptive clipping.
	Clip     float64 `json:"clip,omitempty"`
	NextClip float64 `json:"next_clip,omitempty"`
}

// ModelManifest is the answer of GET /v1/model. The raw form
// (?format=raw) is the Params little-endian float64 values, in the order of
// model.Model.Params; Digest is the hex SHA-256 of the big-endian uint32s
// kind code, items and rank followed by those raw bytes.
type ModelManifest struct {
	Version  uint64 `json:"version"`
	Round    uint64 `json:"round"`
	Kind     string `json:"kind"` // explicit or implicit
	KindCode uint8  `json:"kind_code"`
	Items    int    `json:"items"`
	Rank     int    `json:"rank"`
	Params   int    `json:"params"` // items×(rank+1)+1
	Digest   string `json:"digest"`
	Layout   string `json:"layout"`
}

// Build describes the running binary, from the build information the Go
// toolchain embeds: enough to check an upgrade node by node.
type Build struct {
	// Version is the main module's version: a release tag for a binary
	// built with 'go install module@version', "(devel)" for one built
	// from a work tree.
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from ("" if
	// unknown), Modified whether the work tree had changes, Time the
	// commit's time.
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Time     string `json:"time,omitempty"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"go_version"`
}

// String is the version as one line: "v1.2.0 (abc123…, go1.26.0)".
func (b Build) String() string {
	s := b.Version + " ("
	if b.Revision != "" {
		s += b.Revision
		if b.Modified {
			s += "+modified"
		}
		s += ", "
	}
	return s + b.GoVersion + ")"
}

// Cluster is the answer of GET /v1/cluster and of the membership calls:
// the answering node's view of the Raft configuration.
type Cluster struct {
	Node   string       `json:"node"`   // the node that answered
	Leader *StatusNode  `json:"leader"` // null when unknown
	Nodes  []StatusNode `json:"nodes"`  // by id
}

// ClusterError is the JSON body of a failed membership call. On a
// follower (409) Leader names the leader, when known: repeat the call on
// that node's admin API.
type ClusterError struct {
	Error  string      `json:"error"`
	Leader *StatusNode `json:"leader,omitempty"`
}

// TrainingDoc is the answer of GET and POST /v1/training: the settings
// rounds use now and every change operators made, oldest first.
type TrainingDoc struct {
	Settings TrainingSettings     `json:"settings"`
	Changes  []TrainingChangeJSON `json:"changes"`
}

// TrainingSettings are the replicated training settings; those marked
// "may change" can be changed with POST /v1/training.
type TrainingSettings struct {
	Objective       string  `json:"objective"`
	Items           int     `json:"items"`
	Rank            int     `json:"rank"`
	Clip            float64 `json:"clip"`
	Population      int64   `json:"population"`
	Noise           string  `json:"noise"` // off, central, distributed
	SecAgg          bool    `json:"secagg"`
	ClientsPerRound int     `json:"clients_per_round"`      // may change
	MinClients      int     `json:"min_clients"`            // may change
	CheckInWindow   string  `json:"checkin_window"`         // may change
	RoundTimeout    string  `json:"round_timeout"`          // may change
	SecAggPhase     string  `json:"secagg_phase,omitempty"` // may change, with secagg
	NoiseMultiplier float64 `json:"noise_multiplier"`       // may change, unless noise is off
}

// TrainingChangeJSON is one change of the audit trail: who, when, why, after
// which round, and the values it set.
type TrainingChangeJSON struct {
	AfterRound uint64         `json:"after_round"`
	Time       time.Time      `json:"time"`
	Operator   string         `json:"operator"`
	Reason     string         `json:"reason"`
	Set        map[string]any `json:"set"`
}

// MaxAdminBody bounds the admin API's JSON bodies that DecodeAdmin reads:
// the largest, a RoundsPage of a thousand rounds or a TrainingDoc with its
// changes, takes a few hundred KiB.
const MaxAdminBody = 8 << 20

// AdminBody is a JSON body of the admin API.
type AdminBody interface {
	Status | RoundsPage | ModelManifest | Cluster | ClusterError | TrainingDoc | Build
}

// DecodeAdmin reads one JSON body of the admin API: a single JSON object
// of at most MaxAdminBody bytes. Fields it does not know are ignored (a
// newer node's, see the package's rule above); anything else that is not
// a T is an error.
func DecodeAdmin[T AdminBody](b []byte) (*T, error) {
	v := new(T)
	if len(b) > MaxAdminBody {
		return nil, fmt.Errorf("wire: %T of %d bytes, at most %d", *v, len(b), MaxAdminBody)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return nil, fmt.Errorf("wire: %T: %w", *v, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("wire: %T: data after the JSON object", *v)
	}
	return v, nil
}
