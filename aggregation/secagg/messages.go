package secagg

// Messages between the phases. They are plain structs of integers and byte
// and integer slices so that the wire package can convert them to msgpack;
// they carry no tags and no behaviour. Lists of peers are in ascending id
// order, and receivers reject anything else.

// KeyAdvert is a client's public keys for the round (phase 1, client to
// server; relayed by the server inside PeerKeys).
type KeyAdvert struct {
	Round  uint64
	Client uint32
	// ConfigDigest is the SHA-256 digest of the client's normalized Config.
	// The server and the other clients reject keys from a client whose
	// view of the round differs, before it can spoil its neighbours' work.
	ConfigDigest []byte
	// CipherKey is c_pk, the X25519 public key used to agree keys that
	// encrypt shares.
	CipherKey []byte
	// MaskKey is s_pk, the X25519 public key used to agree pairwise masks.
	MaskKey []byte
	// Signature signs the advert with the client's long-term identity in a
	// signed round (Config.Signed): Identity.Sign of the domain-separated
	// message binding the config digest, the client id and both keys. The
	// server relays it; every neighbour verifies it. Empty in an unsigned
	// round, where it is relayed as is and not verified.
	Signature []byte
	// Credential is what a peer's Identity needs to verify Signature and to
	// tie it to Client (for the SDK: the device certificate, DER), opaque to
	// this package. Empty in an unsigned round.
	Credential []byte
}

// PeerKeys gives a client the keys of its neighbours that advertised keys
// (phase 2, server to client).
type PeerKeys struct {
	Round uint64
	To    uint32
	Peers []KeyAdvert
}

// SealedShare is one encrypted pair of shares. Peer is the receiver in a
// ShareUpload and the sender in a ShareDelivery.
type SealedShare struct {
	Peer       uint32
	Ciphertext []byte
}

// ShareUpload carries a client's encrypted shares, one per peer listed in
// its PeerKeys (phase 2, client to server).
type ShareUpload struct {
	Round  uint64
	From   uint32
	Shares []SealedShare
}

// ShareDelivery forwards to a client the shares addressed to it by the
// neighbours that completed phase 2 (phase 3, server to client). Its
// senders are the client's view of the phase-2 survivors.
type ShareDelivery struct {
	Round  uint64
	To     uint32
	Shares []SealedShare
}

// MaskedInput is a client's masked vector y (phase 3, client to server).
type MaskedInput struct {
	Round  uint64
	From   uint32
	Values []uint64
}

// ConsistencyRequest gives a client that sent its masked input the set U3
// of all the clients whose masked input the server accepted, ascending
// (consistency-check phase of a signed round, server to client).
type ConsistencyRequest struct {
	Round     uint64
	To        uint32
	Survivors []uint32
}

// ConsistencyResponse is a client's confirmation of the survivor set it
// was sent (consistency-check phase, client to server): one tag for each
// of its neighbours in the set, ascending by Peer. A client confirms one
// set per round.
type ConsistencyResponse struct {
	Round uint64
	From  uint32
	Tags  []ConsistencyTag
}

// ConsistencyTag is one client's confirmation of a survivor set for one
// neighbour: an HMAC-SHA256 of the config digest and the set, TagLen
// bytes, under a key only the two of them hold (derived from the
// agreement of their signed cipher keys). Peer is the receiver in a
// ConsistencyResponse and the sender in an UnmaskRequest.
type ConsistencyTag struct {
	Peer uint32
	Tag  []byte
}

// UnmaskRequest tells a client which of its neighbours from ShareDelivery
// sent a masked input and which dropped (phase 4, server to client). In a
// signed round it also carries the consistency tags addressed to the
// client by its neighbours that completed the consistency check,
// ascending by Peer.
type UnmaskRequest struct {
	Round     uint64
	To        uint32
	Survivors []uint32
	Dropped   []uint32
	Tags      []ConsistencyTag
}

// Share is a plaintext Shamir share of a peer's secret: ShareLen field
// elements.
type Share struct {
	Peer  uint32
	Value []uint64
}

// UnmaskResponse carries a client's shares for unmasking (phase 4, client
// to server): the self-mask seed share of each survivor and the mask-key
// share of each dropped neighbour, never both for one peer.
type UnmaskResponse struct {
	Round          uint64
	From           uint32
	SelfMaskShares []Share
	MaskKeyShares  []Share
}

// Phase is a step of the protocol. Values start at 1 and are only ever
// appended, so their numeric order is not the order of the protocol: a
// signed round runs PhaseConsistencyCheck between PhaseMaskedInput and
// PhaseUnmask.
type Phase uint8

const (
	PhaseAdvertiseKeys Phase = 1
	PhaseShareKeys     Phase = 2
	PhaseMaskedInput   Phase = 3
	PhaseUnmask        Phase = 4
	PhaseDone          Phase = 5
	PhaseAborted       Phase = 6
	// PhaseConsistencyCheck runs only in signed rounds, after
	// PhaseMaskedInput and before PhaseUnmask.
	PhaseConsistencyCheck Phase = 7
)

func (p Phase) String() string {
	switch p {
	case PhaseAdvertiseKeys:
		return "advertise-keys"
	case PhaseShareKeys:
		return "share-keys"
	case PhaseMaskedInput:
		return "masked-input"
	case PhaseUnmask:
		return "unmask"
	case PhaseDone:
		return "done"
	case PhaseAborted:
		return "aborted"
	case PhaseConsistencyCheck:
		return "consistency-check"
	}
	return "invalid"
}
