package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"slices"

	"github.com/fedrec/fedrec/aggregation/fixedpoint"
	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/aggregation/secagg"
)

// Secure aggregation over the client protocol. After a Plan whose SecAgg is
// set, a client runs the four phases of aggregation/secagg as four
// request/response exchanges with the node that sent the plan (which runs
// secure aggregation over its group of the cohort), each on its own
// stream and each carrying the round's ticket:
//
//	SecAggAdvert  → (held until advertise-keys closes) → SecAggPeerKeys
//	SecAggShares  → (held until share-keys closes)     → SecAggDelivery
//	SecAggMasked  → (held until masked-input closes)   → SecAggUnmaskRequest
//	SecAggUnmask  → UploadAck
//
// A signed round (SecAggParams.Signed) signs the adverts (SecAggKeys
// carries the signature and the device certificate) and runs the
// consistency check between the last two:
//
//	SecAggMasked  → (held until masked-input closes)   → SecAggCheckRequest
//	SecAggCheck   → (held until the check closes)      → SecAggUnmaskRequest
//
// The node holds each request until the phase closes, as it holds a
// check-in, so the client never needs server push. A client that was
// dropped from the protocol gets CodeNoRound.

// Limits of the secure-aggregation messages.
const (
	// MaxSecAggPeers bounds the peers listed in one message: a client's
	// neighbours in the round's graph.
	MaxSecAggPeers = 4096
	// secAggBody bounds the messages that carry keys and shares.
	secAggBody = 1 << 20
	// seedLen is the length of the round's public seeds.
	seedLen = 32
	keyLen  = 32
)

// SecAggParams are a secure round's parameters, committed in the manifest
// (OpenRound) and announced in every Plan so that the client can check
// them. The protocol's client ids are the cohort's indices 0..Clients-1 in
// selection order.
type SecAggParams struct {
	Clients      int     `msgpack:"clients"`
	Threshold    int     `msgpack:"threshold"`
	Degree       int     `msgpack:"degree"` // 0: the complete graph
	MinSurvivors int     `msgpack:"min_survivors"`
	Bits         int     `msgpack:"bits"`
	Clip         float64 `msgpack:"clip"`
	// Seed is the secagg graph seed and RotationSeed the fixed-point
	// rotation seed; both are SecAggSeeds of the round and model digest.
	Seed         []byte `msgpack:"seed"`
	RotationSeed []byte `msgpack:"rotation_seed"`
	// PhaseMs is the deadline of each phase after the first.
	PhaseMs int64 `msgpack:"phase_ms"`
	// ClipBit (adaptive clipping) appends one word to every input: 1 if
	// the update's norm before clipping was at most Clip, else 0, so the
	// leader learns only how many of the survivors were not clipped.
	ClipBit bool `msgpack:"clip_bit,omitempty"`
	// Signed makes the round resist an actively malicious leader
	// (secagg.Config.Signed): signed adverts and the consistency check.
	Signed bool `msgpack:"signed,omitempty"`
	// Quantized makes the inputs 8-bit uploads: the update quantized by
	// the fixedpoint.Quantizer of the model's dimension, Clip and
	// RotationSeed, wrapped modulo 2^Bits (fixedpoint.WrapQuantized),
	// without padding; Bits is then fixedpoint.QuantFieldBits(Clients) or
	// more, and the words are packed in (Bits+7)/8 bytes. Not with
	// distributed noise. Appended.
	Quantized bool `msgpack:"quantized,omitempty"`
	// Group is, in a round whose cohort is split among the nodes
	// (OpenRound.Groups), the id of the node whose group these
	// parameters are: Clients is the group's size, the protocol ids are
	// the group's indices, and Seed binds the node (SecAggGroupSeed).
	// Empty: the parameters of the whole cohort. Appended.
	Group string `msgpack:"group,omitempty"`
	// Cohort is, with Group, the size of the round's whole cohort: the
	// encoder's headroom and the noise plan count with it, so that every
	// group encodes at the same scale and the group sums add up. Appended.
	Cohort int `msgpack:"cohort,omitempty"`
	// Roster, in a signed round, says that the node relays only roster
	// credentials (RosterCredential): a device that the device roster
	// does not list takes no part, and devices refuse a peer's bare
	// certificate. A roster lists the device certificates the device CA
	// stood by when it issued it, so a device then accepts no revoked
	// certificate that an older roster did not list, whatever the leader
	// relays. Appended.
	Roster bool `msgpack:"roster,omitempty"`
}

// SumClients is how many inputs the round's sum may hold: the whole
// cohort's size (Cohort) for a group, else Clients.
func (p *SecAggParams) SumClients() int {
	if p.Group != "" {
		return p.Cohort
	}
	return p.Clients
}

// DistributedConfig returns the encoder and noise configuration of the
// round for updates of dim floats: the leader and every client build
// privacy.NewDistributed from it, so they agree on the scale. The noise
// is priv's when its mechanism is MechSkellam, else none.
func (p *SecAggParams) DistributedConfig(priv PrivacyParams, dim int) privacy.DistributedConfig {
	cfg := privacy.DistributedConfig{Dim: dim, Clip: p.Clip, Bits: uint(p.Bits), MaxClients: p.SumClients()}
	copy(cfg.Seed[:], p.RotationSeed)
	if priv.Mechanism == MechSkellam {
		cfg.NoiseMultiplier, cfg.NoiseClients = priv.NoiseMultiplier, priv.NoiseClients
	}
	return cfg
}

// InputLen is the length of a client's secure input for an encoded
// update of paddedDim words.
func (p *SecAggParams) InputLen(paddedDim int) int {
	if p.ClipBit {
		return paddedDim + 1
	}
	return paddedDim
}

// SecAggSeeds derives a round's public seeds from its committed manifest:
// the graph seed of secagg.Config and the rotation seed of
// fixedpoint.Params, SHA-256 of a purpose label, the round id and the
// model digest. The leader cannot choose them after seeing the cohort.
func SecAggSeeds(round uint64, digest []byte) (graph, rotation [seedLen]byte) {
	h := func(label string) [seedLen]byte {
		s := sha256.New()
		s.Write([]byte(label))
		s.Write(binary.BigEndian.AppendUint64(nil, round))
		s.Write(digest)
		var out [seedLen]byte
		s.Sum(out[:0])
		return out
	}
	return h("fedrec/secagg graph\x00"), h("fedrec/secagg rotation\x00")
}

// SecAggSignedSeed is the graph seed of a signed round: the graph seed of
// SecAggSeeds bound to the cohort's client ids in selection order (the
// manifest's Cohort, whose index i is protocol id i). The seed is part of
// the secagg config digest that every signature binds, so devices that
// were told different cohorts cannot verify each other: a leader cannot
// show one device's index as one certificate to some devices and as
// another to others.
func SecAggSignedSeed(round uint64, digest []byte, cohort []string) [seedLen]byte {
	graph, _ := SecAggSeeds(round, digest)
	s := sha256.New()
	s.Write([]byte("fedrec/secagg signed graph\x00"))
	s.Write(graph[:])
	writeIDs(s, cohort)
	var out [seedLen]byte
	s.Sum(out[:0])
	return out
}

// SecAggGroupSeed is the graph seed of node's group of a round whose
// cohort is split among the nodes: the graph seed of SecAggSeeds bound
// to the node's id and, in a signed round, to the group's client ids in
// selection order (its protocol ids), for the reason SecAggSignedSeed
// gives. The manifest commits it, and every node and device recomputes
// it, so neither the leader nor a node chooses it after seeing who is in
// the group.
func SecAggGroupSeed(round uint64, digest []byte, node string, signed bool, group []string) [seedLen]byte {
	graph, _ := SecAggSeeds(round, digest)
	s := sha256.New()
	s.Write([]byte("fedrec/secagg group graph\x00"))
	s.Write(graph[:])
	s.Write(binary.BigEndian.AppendUint32(nil, uint32(len(node))))
	s.Write([]byte(node))
	if signed {
		writeIDs(s, group)
	}
	var out [seedLen]byte
	s.Sum(out[:0])
	return out
}

// writeIDs hashes ids unambiguously: their count, then each one's length
// and bytes.
func writeIDs(h hash.Hash, ids []string) {
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(ids))))
	for _, id := range ids {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(id))))
		h.Write([]byte(id))
	}
}

// WantSeeds returns the seeds that p must carry in round on the model of
// digest, cohort being its clients in protocol-id order (the whole
// cohort, or the group's; read only in a signed round): the graph seed
// of SecAggSeeds, SecAggSignedSeed or SecAggGroupSeed, and the rotation
// seed of SecAggSeeds, which every group of a round shares so that their
// sums decode at the same rotation and add up to the sum the noise plan
// describes.
func (p *SecAggParams) WantSeeds(round uint64, digest []byte, cohort []string) (graph, rotation [seedLen]byte) {
	graph, rotation = SecAggSeeds(round, digest)
	switch {
	case p.Group != "":
		graph = SecAggGroupSeed(round, digest, p.Group, p.Signed, cohort)
	case p.Signed:
		graph = SecAggSignedSeed(round, digest, cohort)
	}
	return graph, rotation
}

// Validate checks the parameters' ranges.
func (p *SecAggParams) Validate() error {
	switch {
	case p.Clients < 3 || p.Clients > secagg.MaxClients:
		return Errorf(CodeMalformed, "secagg: %d clients", p.Clients)
	case p.Degree < 0 || p.Degree%2 != 0 || p.Degree > MaxSecAggPeers:
		return Errorf(CodeMalformed, "secagg: degree %d", p.Degree)
	case p.Threshold < 2 || p.Threshold > p.Clients-1:
		return Errorf(CodeMalformed, "secagg: threshold %d of %d clients", p.Threshold, p.Clients)
	case p.MinSurvivors < p.Threshold || p.MinSurvivors > p.Clients:
		return Errorf(CodeMalformed, "secagg: min survivors %d", p.MinSurvivors)
	case p.Bits < 1 || p.Bits > 64:
		return Errorf(CodeMalformed, "secagg: %d bits", p.Bits)
	case !(p.Clip > 0) || !finite(p.Clip):
		return Errorf(CodeMalformed, "secagg: clip %v", p.Clip)
	case len(p.Seed) != seedLen || len(p.RotationSeed) != seedLen:
		return Errorf(CodeMalformed, "secagg: seeds of %d and %d bytes", len(p.Seed), len(p.RotationSeed))
	case p.PhaseMs <= 0:
		return Errorf(CodeMalformed, "secagg: phase_ms %d", p.PhaseMs)
	case p.Quantized && p.Bits < int(fixedpoint.QuantFieldBits(p.Clients)):
		// The sum of the cohort's bytes would wrap: the decoded sum would
		// be garbage.
		return Errorf(CodeMalformed, "secagg: %d bits for the 8-bit inputs of %d clients, want >= %d", p.Bits, p.Clients, fixedpoint.QuantFieldBits(p.Clients))
	case p.Roster && !p.Signed:
		return Errorf(CodeMalformed, "secagg: roster credentials in an unsigned round")
	case p.Group == "" && p.Cohort != 0:
		return Errorf(CodeMalformed, "secagg: a cohort of %d without a group", p.Cohort)
	case p.Group != "" && (p.Cohort < p.Clients || p.Cohort > maxCohort):
		return Errorf(CodeMalformed, "secagg: a group of %d in a cohort of %d", p.Clients, p.Cohort)
	}
	if p.Group != "" {
		return checkID("secagg group", p.Group)
	}
	return nil
}

// Config returns the secagg.Config of round for vectors of length n.
func (p *SecAggParams) Config(round uint64, n int) secagg.Config {
	ids := make([]uint32, p.Clients)
	for i := range ids {
		ids[i] = uint32(i)
	}
	return secagg.Config{Round: round, Seed: slices.Clone(p.Seed), Clients: ids, VectorLen: n, Bits: p.Bits,
		Degree: p.Degree, Threshold: p.Threshold, MinSurvivors: p.MinSurvivors, Signed: p.Signed}
}

// SecAggKeys is a client's advertised public keys (secagg.KeyAdvert).
type SecAggKeys struct {
	Client       uint32 `msgpack:"client"`
	ConfigDigest []byte `msgpack:"config_digest"`
	CipherKey    []byte `msgpack:"cipher_key"`
	MaskKey      []byte `msgpack:"mask_key"`
	Signature    []byte `msgpack:"sig"`
	// Credential verifies Signature in a signed round: the device
	// certificate, DER.
	Credential []byte `msgpack:"credential,omitempty"`
}

func (k *SecAggKeys) validate() error {
	if len(k.ConfigDigest) != sha256.Size || len(k.CipherKey) != keyLen || len(k.MaskKey) != keyLen || len(k.Signature) > secagg.MaxSignatureLen || len(k.Credential) > secagg.MaxCredentialLen {
		return Errorf(CodeMalformed, "secagg: keys of client %d have the wrong lengths", k.Client)
	}
	return nil
}

// SealedShare is one encrypted pair of Shamir shares (secagg.SealedShare).
type SealedShare struct {
	Peer       uint32 `msgpack:"peer"`
	Ciphertext []byte `msgpack:"ct"`
}

// Share is one plaintext Shamir share (secagg.Share).
type Share struct {
	Peer  uint32   `msgpack:"peer"`
	Value []uint64 `msgpack:"value"`
}

// SecAggHeader is the identity of a secure-round request.
type SecAggHeader struct {
	Version  uint16 `msgpack:"v"`
	Round    uint64 `msgpack:"round"`
	ClientID string `msgpack:"client"`
	Ticket   []byte `msgpack:"ticket"`
}

// Header returns h: through it a server reads the identity of any
// secure-round request (SecAggRequest) without a switch over their types.
func (h *SecAggHeader) Header() *SecAggHeader { return h }

// SecAggRequest is a secure-round request: SecAggAdvert, SecAggShares,
// SecAggMasked, SecAggCheck or SecAggUnmask, each with its SecAggHeader.
type SecAggRequest interface {
	Message
	Header() *SecAggHeader
}

func (h *SecAggHeader) check(what string) error {
	if err := checkVersion(h.Version); err != nil {
		return err
	}
	if err := checkID("client id", h.ClientID); err != nil {
		return err
	}
	if h.Round == 0 || len(h.Ticket) != TicketLen {
		return Errorf(CodeMalformed, "%s: round %d, ticket of %d bytes", what, h.Round, len(h.Ticket))
	}
	return nil
}

// SecAggAdvert is phase 1 (advertise keys), client → leader. The reply,
// once the phase closes, is SecAggPeerKeys.
type SecAggAdvert struct {
	SecAggHeader `msgpack:",inline"`
	Keys         SecAggKeys `msgpack:"keys"`
}

func (*SecAggAdvert) Type() Type { return TypeSecAggAdvert }

func (m *SecAggAdvert) Validate() error {
	if err := m.check("secagg advert"); err != nil {
		return err
	}
	return m.Keys.validate()
}

// SecAggPeerKeys gives a client its neighbours' keys (phase 2), leader →
// client.
type SecAggPeerKeys struct {
	Round uint64       `msgpack:"round"`
	To    uint32       `msgpack:"to"`
	Peers []SecAggKeys `msgpack:"peers"`
}

func (*SecAggPeerKeys) Type() Type { return TypeSecAggPeerKeys }

func (m *SecAggPeerKeys) Validate() error {
	if len(m.Peers) > MaxSecAggPeers {
		return Errorf(CodeMalformed, "secagg peer keys: %d peers", len(m.Peers))
	}
	for i := range m.Peers {
		if err := m.Peers[i].validate(); err != nil {
			return err
		}
	}
	return nil
}

func checkSealed(what string, s []SealedShare) error {
	if len(s) > MaxSecAggPeers {
		return Errorf(CodeMalformed, "%s: %d shares", what, len(s))
	}
	for _, x := range s {
		if len(x.Ciphertext) != secagg.SealedShareLen {
			return Errorf(CodeMalformed, "%s: share for %d of %d bytes", what, x.Peer, len(x.Ciphertext))
		}
	}
	return nil
}

// SecAggShares is phase 2 (share keys), client → leader: encrypted shares
// for each neighbour. The reply, once the phase closes, is SecAggDelivery.
type SecAggShares struct {
	SecAggHeader `msgpack:",inline"`
	Shares       []SealedShare `msgpack:"shares"`
}

func (*SecAggShares) Type() Type { return TypeSecAggShares }

func (m *SecAggShares) Validate() error {
	if err := m.check("secagg shares"); err != nil {
		return err
	}
	return checkSealed("secagg shares", m.Shares)
}

// SecAggDelivery forwards the shares addressed to a client (phase 3),
// leader → client.
type SecAggDelivery struct {
	Round  uint64        `msgpack:"round"`
	To     uint32        `msgpack:"to"`
	Shares []SealedShare `msgpack:"shares"`
}

func (*SecAggDelivery) Type() Type { return TypeSecAggDelivery }

func (m *SecAggDelivery) Validate() error { return checkSealed("secagg delivery", m.Shares) }

// SecAggMasked is phase 3 (masked input), client → leader: the masked
// vector, packed little-endian in Width bytes per value, (Bits+7)/8 for
// the round's Bits (4 for the 32 of unquantized rounds). The reply, once
// the phase closes, is SecAggUnmaskRequest.
type SecAggMasked struct {
	SecAggHeader `msgpack:",inline"`
	Width        uint8  `msgpack:"width"`
	Values       []byte `msgpack:"values"`
}

func (*SecAggMasked) Type() Type { return TypeSecAggMasked }

func (m *SecAggMasked) Validate() error {
	if err := m.check("secagg masked input"); err != nil {
		return err
	}
	if m.Width < 1 || m.Width > 8 || len(m.Values) == 0 || len(m.Values)%int(m.Width) != 0 {
		return Errorf(CodeMalformed, "secagg masked input: %d bytes of width %d", len(m.Values), m.Width)
	}
	return nil
}

// WordWidth is the bytes per word of a masked vector of the round's bits.
func WordWidth(bits int) int { return (bits + 7) / 8 }

// PackWords packs v (values below 2^bits) into a SecAggMasked's Width and
// Values: WordWidth(bits) little-endian bytes each.
func PackWords(v []uint64, bits int) (uint8, []byte) {
	w := WordWidth(bits)
	b := make([]byte, w*len(v))
	var x8 [8]byte
	for i, x := range v {
		binary.LittleEndian.PutUint64(x8[:], x)
		copy(b[w*i:], x8[:w])
	}
	return uint8(w), b
}

// Words unpacks the masked vector.
func (m *SecAggMasked) Words() []uint64 {
	w := int(m.Width)
	out := make([]uint64, len(m.Values)/w)
	var x8 [8]byte
	for i := range out {
		copy(x8[:], m.Values[w*i:w*i+w])
		out[i] = binary.LittleEndian.Uint64(x8[:])
	}
	return out
}

// SecAggUnmaskRequest tells a client which neighbours survived and which
// dropped (phase 4), leader → client.
type SecAggUnmaskRequest struct {
	Round     uint64   `msgpack:"round"`
	To        uint32   `msgpack:"to"`
	Survivors []uint32 `msgpack:"survivors"`
	Dropped   []uint32 `msgpack:"dropped"`
	// Tags are the consistency tags the client's neighbours addressed to
	// it, in a signed round (secagg.UnmaskRequest.Tags).
	Tags []SecAggTag `msgpack:"tags,omitempty"`
}

// SecAggTag is a consistency tag (secagg.ConsistencyTag): Peer is the
// neighbour it is for in a SecAggCheck and the neighbour it is from in a
// SecAggUnmaskRequest.
type SecAggTag struct {
	Peer uint32 `msgpack:"peer"`
	Tag  []byte `msgpack:"tag"`
}

func (*SecAggUnmaskRequest) Type() Type { return TypeSecAggUnmaskRequest }

func (m *SecAggUnmaskRequest) Validate() error {
	if len(m.Survivors)+len(m.Dropped) > MaxSecAggPeers {
		return Errorf(CodeMalformed, "secagg unmask request: %d peers", len(m.Survivors)+len(m.Dropped))
	}
	return checkTags("secagg unmask request", m.Tags)
}

func checkTags(what string, tags []SecAggTag) error {
	if len(tags) > MaxSecAggPeers {
		return Errorf(CodeMalformed, "%s: %d tags", what, len(tags))
	}
	for _, t := range tags {
		if len(t.Tag) != secagg.TagLen {
			return Errorf(CodeMalformed, "%s: tag of %d bytes, want %d", what, len(t.Tag), secagg.TagLen)
		}
	}
	return nil
}

// SecAggCheckRequest gives a client of a signed round the survivor set to
// sign (the consistency check), leader → client.
type SecAggCheckRequest struct {
	Round     uint64   `msgpack:"round"`
	To        uint32   `msgpack:"to"`
	Survivors []uint32 `msgpack:"survivors"`
}

func (*SecAggCheckRequest) Type() Type { return TypeSecAggCheckRequest }

func (m *SecAggCheckRequest) Validate() error {
	if len(m.Survivors) > secagg.MaxClients {
		return Errorf(CodeMalformed, "secagg check request: %d survivors", len(m.Survivors))
	}
	return nil
}

// CheckRequestOf converts a secagg.ConsistencyRequest.
func CheckRequestOf(m secagg.ConsistencyRequest) *SecAggCheckRequest {
	return &SecAggCheckRequest{Round: m.Round, To: m.To, Survivors: m.Survivors}
}

// ConsistencyRequest converts to a secagg.ConsistencyRequest.
func (m *SecAggCheckRequest) ConsistencyRequest() secagg.ConsistencyRequest {
	return secagg.ConsistencyRequest{Round: m.Round, To: m.To, Survivors: m.Survivors}
}

// SecAggCheck is a client's confirmation of the survivor set (the
// consistency check of a signed round): a tag for each neighbour in the
// set, client → leader. The reply, once the check closes, is
// SecAggUnmaskRequest.
type SecAggCheck struct {
	SecAggHeader `msgpack:",inline"`
	Tags         []SecAggTag `msgpack:"tags"`
}

func (*SecAggCheck) Type() Type { return TypeSecAggCheck }

func (m *SecAggCheck) Validate() error {
	if err := m.check("secagg check"); err != nil {
		return err
	}
	return checkTags("secagg check", m.Tags)
}

// TagsOf converts secagg.ConsistencyTags.
func TagsOf(s []secagg.ConsistencyTag) []SecAggTag {
	if len(s) == 0 {
		return nil
	}
	out := make([]SecAggTag, len(s))
	for i, x := range s {
		out[i] = SecAggTag{Peer: x.Peer, Tag: x.Tag}
	}
	return out
}

// ConsistencyTags converts to secagg.ConsistencyTags.
func ConsistencyTags(s []SecAggTag) []secagg.ConsistencyTag {
	if len(s) == 0 {
		return nil
	}
	out := make([]secagg.ConsistencyTag, len(s))
	for i, x := range s {
		out[i] = secagg.ConsistencyTag{Peer: x.Peer, Tag: x.Tag}
	}
	return out
}

// SecAggUnmask is phase 4 (unmask), client → leader. The reply is
// UploadAck.
type SecAggUnmask struct {
	SecAggHeader   `msgpack:",inline"`
	SelfMaskShares []Share `msgpack:"self_mask_shares"`
	MaskKeyShares  []Share `msgpack:"mask_key_shares"`
}

func (*SecAggUnmask) Type() Type { return TypeSecAggUnmask }

func (m *SecAggUnmask) Validate() error {
	if err := m.check("secagg unmask"); err != nil {
		return err
	}
	if len(m.SelfMaskShares)+len(m.MaskKeyShares) > MaxSecAggPeers {
		return Errorf(CodeMalformed, "secagg unmask: %d shares", len(m.SelfMaskShares)+len(m.MaskKeyShares))
	}
	for _, shares := range [2][]Share{m.SelfMaskShares, m.MaskKeyShares} {
		for _, s := range shares {
			if len(s.Value) != secagg.ShareLen {
				return Errorf(CodeMalformed, "secagg unmask: share of %d of %d elements", s.Peer, len(s.Value))
			}
		}
	}
	return nil
}

// Conversions to and from aggregation/secagg, at the boundary.

// SecAggKeysOf converts a secagg.KeyAdvert.
func SecAggKeysOf(k secagg.KeyAdvert) SecAggKeys {
	return SecAggKeys{Client: k.Client, ConfigDigest: k.ConfigDigest, CipherKey: k.CipherKey, MaskKey: k.MaskKey, Signature: k.Signature, Credential: k.Credential}
}

// KeyAdvert converts to a secagg.KeyAdvert of round.
func (k *SecAggKeys) KeyAdvert(round uint64) secagg.KeyAdvert {
	return secagg.KeyAdvert{Round: round, Client: k.Client, ConfigDigest: k.ConfigDigest, CipherKey: k.CipherKey, MaskKey: k.MaskKey, Signature: k.Signature, Credential: k.Credential}
}

// PeerKeysOf converts a secagg.PeerKeys.
func PeerKeysOf(m secagg.PeerKeys) *SecAggPeerKeys {
	out := &SecAggPeerKeys{Round: m.Round, To: m.To, Peers: make([]SecAggKeys, len(m.Peers))}
	for i, p := range m.Peers {
		out.Peers[i] = SecAggKeysOf(p)
	}
	return out
}

// PeerKeys converts to a secagg.PeerKeys.
func (m *SecAggPeerKeys) PeerKeys() secagg.PeerKeys {
	out := secagg.PeerKeys{Round: m.Round, To: m.To, Peers: make([]secagg.KeyAdvert, len(m.Peers))}
	for i := range m.Peers {
		out.Peers[i] = m.Peers[i].KeyAdvert(m.Round)
	}
	return out
}

// SealedOf converts secagg.SealedShares.
func SealedOf(s []secagg.SealedShare) []SealedShare {
	out := make([]SealedShare, len(s))
	for i, x := range s {
		out[i] = SealedShare{Peer: x.Peer, Ciphertext: x.Ciphertext}
	}
	return out
}

// Sealed converts to secagg.SealedShares.
func Sealed(s []SealedShare) []secagg.SealedShare {
	out := make([]secagg.SealedShare, len(s))
	for i, x := range s {
		out[i] = secagg.SealedShare{Peer: x.Peer, Ciphertext: x.Ciphertext}
	}
	return out
}

// SharesOf converts secagg.Shares.
func SharesOf(s []secagg.Share) []Share {
	out := make([]Share, len(s))
	for i, x := range s {
		out[i] = Share{Peer: x.Peer, Value: x.Value}
	}
	return out
}

// Shares converts to secagg.Shares.
func Shares(s []Share) []secagg.Share {
	out := make([]secagg.Share, len(s))
	for i, x := range s {
		out[i] = secagg.Share{Peer: x.Peer, Value: x.Value}
	}
	return out
}
