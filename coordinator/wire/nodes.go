package wire

import (
	"encoding/binary"
	"math"

	"github.com/fedrec/fedrec/model"
)

// The messages between the nodes of a cluster (the roles of
// coordinator/DESIGN.md, "Every node serves devices"): every node holds
// its own devices' check-ins and uploads; the leader, which owns the
// round, learns how many devices wait where (Lobby), asks each node for
// its share of the cohort (Select → Selected), and adds the nodes' sums of
// their devices' updates (Partial). Only peers with a node certificate of
// the cluster CA may send them.

// MaxSelect bounds the devices one node selects for one round.
const MaxSelect = 1 << 16

// Lobby tells the leader how many devices wait at a node.
type Lobby struct {
	Version uint16 `msgpack:"v"`
	Node    string `msgpack:"node"`
	Waiting int    `msgpack:"waiting"`
}

func (*Lobby) Type() Type { return TypeLobby }

func (m *Lobby) Validate() error {
	if err := checkVersion(m.Version); err != nil {
		return err
	}
	if m.Waiting < 0 {
		return Errorf(CodeMalformed, "lobby: %d waiting", m.Waiting)
	}
	return checkID("node id", m.Node)
}

// NodeAck confirms a Lobby or a Partial.
type NodeAck struct {
	Round uint64 `msgpack:"round"`
}

func (*NodeAck) Type() Type { return TypeNodeAck }

func (m *NodeAck) Validate() error { return nil }

// Select asks a node for up to Quota of its waiting devices for the round
// the leader is about to open (Round, on model version Model). The node
// holds them, tells its other devices when to come back, and answers with
// their ids; it sends them plans once the round's manifest, naming them,
// is committed.
//
// A Select with Redirect (and Quota 0) asks the node instead to send its
// waiting devices to the node whose client address is Redirect (an Error
// CodeNotLeader with that address as its hint, which devices follow): in
// a secure round a node needs enough devices for secure aggregation to
// hide each among the others, and the leader gathers small lobbies into
// one. Appended.
type Select struct {
	Version  uint16 `msgpack:"v"`
	Round    uint64 `msgpack:"round"`
	Model    uint64 `msgpack:"model"`
	Quota    int    `msgpack:"quota"`
	Redirect string `msgpack:"redirect,omitempty"`
}

func (*Select) Type() Type { return TypeSelect }

func (m *Select) Validate() error {
	if err := checkVersion(m.Version); err != nil {
		return err
	}
	if m.Redirect != "" {
		if m.Quota != 0 || len(m.Redirect) > MaxAddrLen {
			return Errorf(CodeMalformed, "select: redirect to %d bytes of address with quota %d", len(m.Redirect), m.Quota)
		}
		return nil
	}
	if m.Round == 0 || m.Model == 0 || m.Quota <= 0 || m.Quota > MaxSelect {
		return Errorf(CodeMalformed, "select: round %d, model %d, quota %d (1..%d)", m.Round, m.Model, m.Quota, MaxSelect)
	}
	return nil
}

// Selected is a node's answer to Select: the devices it holds for the
// round, in selection order.
type Selected struct {
	Round   uint64   `msgpack:"round"`
	Clients []string `msgpack:"clients"`
}

func (*Selected) Type() Type { return TypeSelected }

func (m *Selected) Validate() error {
	if len(m.Clients) > MaxSelect {
		return Errorf(CodeMalformed, "selected: %d clients, at most %d", len(m.Clients), MaxSelect)
	}
	for _, id := range m.Clients {
		if err := checkID("client id", id); err != nil {
			return err
		}
	}
	return nil
}

// Partial is a node's sum of its devices' updates in a round, which the
// leader adds to the other nodes' before its server step. Float updates
// are clipped and summed in Sum; 8-bit updates are summed exactly as
// integers in QSum (QClients of them), so that the leader decodes the
// cluster's integer sum once, as a single node would.
type Partial struct {
	Version uint16 `msgpack:"v"`
	Round   uint64 `msgpack:"round"`
	Node    string `msgpack:"node"`
	// Clients counts every update summed, float and quantized; Clipped
	// the float ones clipping scaled down; Below the adaptive-clipping
	// bits set.
	Clients  int     `msgpack:"clients"`
	Clipped  int     `msgpack:"clipped"`
	Below    int     `msgpack:"below"`
	Loss     float64 `msgpack:"loss"`
	N        int64   `msgpack:"n"`
	Sum      Vec     `msgpack:"sum,omitempty"`
	QClients int     `msgpack:"q_clients,omitempty"`
	// QSum is the integer sum of the quantized updates, four bytes a
	// parameter, little-endian two's complement (Int32s).
	QSum []byte `msgpack:"q_sum,omitempty"`
}

func (*Partial) Type() Type { return TypePartial }

func (m *Partial) Validate() error {
	if err := checkVersion(m.Version); err != nil {
		return err
	}
	if err := checkID("node id", m.Node); err != nil {
		return err
	}
	switch {
	case m.Round == 0:
		return Errorf(CodeMalformed, "partial: round 0")
	case m.Clients < 0 || m.QClients < 0 || m.QClients > m.Clients || m.Clipped < 0 || m.Clipped > m.Clients || m.Below < 0 || m.Below > m.Clients:
		return Errorf(CodeMalformed, "partial: %d clients, %d quantized, %d clipped, %d below the clip", m.Clients, m.QClients, m.Clipped, m.Below)
	case m.N < 0 || !(m.Loss >= 0) || !finite(m.Loss):
		return Errorf(CodeMalformed, "partial: loss %v over %d examples", m.Loss, m.N)
	case len(m.QSum)%4 != 0:
		return Errorf(CodeShape, "partial: integer sum of %d bytes", len(m.QSum))
	case len(m.Sum) > 0 && len(m.QSum) > 0 && len(m.Sum) != len(m.QSum)/4:
		return Errorf(CodeShape, "partial: float sum of %d, integer sum of %d", len(m.Sum), len(m.QSum)/4)
	}
	if i := model.FirstNonFinite(m.Sum); i >= 0 {
		return Errorf(CodeNotFinite, "partial: sum[%d] is %v", i, m.Sum[i])
	}
	return nil
}

// Int32sOf returns v as Partial.QSum bytes; false when a value does not
// fit 32 bits.
func Int32sOf(v []int64) ([]byte, bool) {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		if x < math.MinInt32 || x > math.MaxInt32 {
			return nil, false
		}
		binary.LittleEndian.PutUint32(b[4*i:], uint32(int32(x)))
	}
	return b, true
}

// Int64s returns QSum's values.
func (m *Partial) Int64s() []int64 {
	v := make([]int64, len(m.QSum)/4)
	for i := range v {
		v[i] = int64(int32(binary.LittleEndian.Uint32(m.QSum[4*i:])))
	}
	return v
}
