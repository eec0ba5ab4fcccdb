package wire

import (
	"errors"
	"fmt"
)

// Version is the protocol version every request carries. A server answers a
// request of another version with CodeVersion.
const Version = 1

// ALPN is the TLS application protocol of the client protocol over QUIC.
// Its suffix is the major version: a change that old peers cannot parse
// gets a new ALPN, never a silent reinterpretation of "fedrec/1".
const ALPN = "fedrec/1"

// Type identifies a message. Values are only ever appended; a retired value
// is never reused. 0 is invalid.
type Type uint8

// Message types of the client protocol.
const (
	TypeError       Type = 1  // server → client: a request failed
	TypeCheckIn     Type = 2  // client → leader: ready to train
	TypeWait        Type = 3  // leader → client: not selected now, come back later
	TypePlan        Type = 4  // leader → client: selected for a round
	TypeGetModel    Type = 5  // client → any node: send a committed model
	TypeModelHeader Type = 6  // node → client: a model's shape and digest
	TypeModelChunk  Type = 7  // node → client: a slice of a model's parameters
	TypeUpload      Type = 8  // client → leader: a round's update
	TypeUploadAck   Type = 9  // leader → client: the update was counted
	TypeJoin        Type = 10 // node → any node: add me to the cluster
	TypeJoinAck     Type = 11 // leader → node: you are a member
	// Secure aggregation's phases (see secagg.go).
	TypeSecAggAdvert        Type = 12 // client → leader: phase 1, public keys
	TypeSecAggPeerKeys      Type = 13 // leader → client: the neighbours' keys
	TypeSecAggShares        Type = 14 // client → leader: phase 2, encrypted shares
	TypeSecAggDelivery      Type = 15 // leader → client: the shares addressed to the client
	TypeSecAggMasked        Type = 16 // client → leader: phase 3, the masked input
	TypeSecAggUnmaskRequest Type = 17 // leader → client: who survived, who dropped
	TypeSecAggUnmask        Type = 18 // client → leader: phase 4, shares for unmasking
	// The consistency check of signed secure rounds (SecAggParams.Signed).
	TypeSecAggCheckRequest Type = 19 // leader → client: the survivor set to confirm
	TypeSecAggCheck        Type = 20 // client → leader: the signature of the survivor set
	// Device tokens, the first request of a WebTransport session (token.go).
	TypeAuthenticate  Type = 21 // device → node: its device token
	TypeAuthenticated Type = 22 // node → device: the token is accepted
	// Between the nodes of a cluster (nodes.go).
	TypeLobby    Type = 23 // node → leader: devices waiting here
	TypeNodeAck  Type = 24 // leader → node: Lobby or Partial received
	TypeSelect   Type = 25 // leader → node: hold your share of the cohort
	TypeSelected Type = 26 // node → leader: the devices held
	TypePartial  Type = 27 // node → leader: the sum of its devices' updates
)

var typeNames = [...]string{
	TypeError: "Error", TypeCheckIn: "CheckIn", TypeWait: "Wait", TypePlan: "Plan",
	TypeGetModel: "GetModel", TypeModelHeader: "ModelHeader", TypeModelChunk: "ModelChunk",
	TypeUpload: "Upload", TypeUploadAck: "UploadAck", TypeJoin: "Join", TypeJoinAck: "JoinAck",
	TypeSecAggAdvert: "SecAggAdvert", TypeSecAggPeerKeys: "SecAggPeerKeys", TypeSecAggShares: "SecAggShares",
	TypeSecAggDelivery: "SecAggDelivery", TypeSecAggMasked: "SecAggMasked", TypeSecAggUnmaskRequest: "SecAggUnmaskRequest",
	TypeSecAggUnmask: "SecAggUnmask", TypeSecAggCheckRequest: "SecAggCheckRequest", TypeSecAggCheck: "SecAggCheck",
	TypeAuthenticate: "Authenticate", TypeAuthenticated: "Authenticated",
	TypeLobby: "Lobby", TypeNodeAck: "NodeAck", TypeSelect: "Select", TypeSelected: "Selected", TypePartial: "Partial",
}

// Direction is which way a message travels.
type Direction uint8

const (
	// Requests travel from a client (a device, or a node joining) to a
	// node.
	Requests Direction = 1
	// Replies travel from a node to a client.
	Replies Direction = 2
)

func (d Direction) String() string {
	switch d {
	case Requests:
		return "request"
	case Replies:
		return "reply"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// typeDirections says which way each type travels. A type without one is
// refused by every reader that sets Limits.Only (and fails TestTypeTables).
var typeDirections = [...]Direction{
	TypeError: Replies, TypeCheckIn: Requests, TypeWait: Replies, TypePlan: Replies,
	TypeGetModel: Requests, TypeModelHeader: Replies, TypeModelChunk: Replies,
	TypeUpload: Requests, TypeUploadAck: Replies, TypeJoin: Requests, TypeJoinAck: Replies,
	TypeSecAggAdvert: Requests, TypeSecAggPeerKeys: Replies, TypeSecAggShares: Requests,
	TypeSecAggDelivery: Replies, TypeSecAggMasked: Requests, TypeSecAggUnmaskRequest: Replies,
	TypeSecAggUnmask: Requests, TypeSecAggCheckRequest: Replies, TypeSecAggCheck: Requests,
	TypeAuthenticate: Requests, TypeAuthenticated: Replies,
	TypeLobby: Requests, TypeNodeAck: Replies, TypeSelect: Requests, TypeSelected: Replies, TypePartial: Requests,
}

// Direction returns which way messages of type t travel; 0 for an unknown
// type.
func (t Type) Direction() Direction {
	if int(t) < len(typeDirections) {
		return typeDirections[t]
	}
	return 0
}

func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Code is an error code carried by an Error message. Values are only ever
// appended; a retired value is never reused. 0 is invalid.
type Code uint16

// Error codes.
const (
	CodeInternal     Code = 1  // the server failed; retry later
	CodeMalformed    Code = 2  // the request did not parse or is structurally invalid
	CodeTooLarge     Code = 3  // the frame exceeds its type's size limit
	CodeVersion      Code = 4  // unsupported protocol version
	CodeUnknownType  Code = 5  // unknown or unexpected message type
	CodeNotLeader    Code = 6  // ask the leader; Error.Leader names it when known
	CodeNoRound      Code = 7  // no such round is open (over, abandoned, or never was)
	CodeNotSelected  Code = 8  // the client is not in the round's cohort
	CodeDuplicate    Code = 9  // the client already uploaded in this round
	CodeShape        Code = 10 // the update's dimension does not match the model
	CodeNotFinite    Code = 11 // the update holds NaN or ±Inf
	CodeStaleModel   Code = 12 // the update was computed on another model version
	CodeUnknownModel Code = 13 // the model version is not held by this node
	CodeUnavailable  Code = 14 // not ready (no model yet, shutting down, overloaded); retry later
	CodeForbidden    Code = 15 // the peer may not make this request (e.g. a ClientID that is not its certificate's)
	// CodeUnauthenticated: the node requires a device certificate and
	// the peer presented none, or one that is expired, revoked or not
	// signed by the device CA. Get a new certificate; do not retry as is.
	CodeUnauthenticated Code = 16
	// CodeTooSlow: the request's bytes arrived below the node's minimum
	// transfer rate, and the node stopped reading it. Retry on a better
	// network.
	CodeTooSlow Code = 17
)

var codeNames = [...]string{
	CodeInternal: "internal", CodeMalformed: "malformed", CodeTooLarge: "too large",
	CodeVersion: "unsupported version", CodeUnknownType: "unknown message type",
	CodeNotLeader: "not the leader", CodeNoRound: "no such round",
	CodeNotSelected: "not selected", CodeDuplicate: "duplicate upload",
	CodeShape: "wrong dimension", CodeNotFinite: "not finite",
	CodeStaleModel: "stale model", CodeUnknownModel: "unknown model version",
	CodeUnavailable: "unavailable", CodeForbidden: "forbidden",
	CodeUnauthenticated: "unauthenticated", CodeTooSlow: "too slow",
}

func (c Code) String() string {
	if int(c) < len(codeNames) && codeNames[c] != "" {
		return codeNames[c]
	}
	return fmt.Sprintf("Code(%d)", uint16(c))
}

// Retryable reports whether the same request may succeed later, at this
// node or (for CodeNotLeader) at the leader.
func (c Code) Retryable() bool {
	switch c {
	case CodeInternal, CodeNotLeader, CodeUnavailable, CodeUnknownModel:
		return true
	}
	return false
}

// Error is the reply to a request that failed. It is also a Go error: code
// that receives one returns it, and callers branch on Code with errors.As.
type Error struct {
	Code    Code   `msgpack:"code"`
	Message string `msgpack:"msg"`
	// Leader is the client address of the leader, set with CodeNotLeader
	// when the node knows it.
	Leader string `msgpack:"leader"`
	// RetryAfterMs suggests when to retry a retryable error.
	RetryAfterMs int64 `msgpack:"retry_ms"`
}

// Errorf returns an Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "wire: " + e.Code.String()
	}
	return fmt.Sprintf("wire: %s: %s", e.Code, e.Message)
}

// Type implements Message.
func (*Error) Type() Type { return TypeError }

// Validate implements Message.
func (e *Error) Validate() error {
	if e.Code == 0 {
		return Errorf(CodeMalformed, "error code 0")
	}
	return nil
}

// AsError returns err as an *Error: itself if it is one (or wraps one),
// else CodeInternal carrying err's text.
func AsError(err error) *Error {
	var we *Error
	if errors.As(err, &we) {
		return we
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}

// CodeOf returns the code of the *Error in err's chain, or 0.
func CodeOf(err error) Code {
	var we *Error
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}
