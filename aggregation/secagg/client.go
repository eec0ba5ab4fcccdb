package secagg

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
)

// Client is one client's side of a round. Each method consumes the server's
// message for a phase and returns the client's reply. A method that returns
// an error leaves the client unchanged, so the driver may retry with a
// corrected message; calling the methods out of order returns ErrWrongPhase.
// A Client is not safe for concurrent use.
type Client struct {
	cfg    Config // normalized
	digest [32]byte
	g      *graph
	id     uint32
	idx    int
	nbrs   []int // indices, ascending
	rand   io.Reader
	next   Phase    // the phase whose method is expected next
	ident  Identity // nil in an unsigned round

	cipherKey, maskKey *ecdh.PrivateKey
	selfSeed           [secretLen]byte

	// From ShareKeys: the neighbours that advertised keys (the client's view
	// of U1), by id.
	peers map[uint32]*peer
	// From MaskedInput: the neighbours that delivered shares (the client's
	// view of U2), ascending.
	delivered []uint32
	// revealed records which share of each peer has been revealed.
	revealed map[uint32]reveal
	// From ConsistencyCheck, in a signed round: the survivor set the client
	// confirmed, ascending, and its hash.
	checked     []uint32
	checkedHash [32]byte
}

type peer struct {
	recvKey [32]byte // decrypts the shares this peer sent us
	// Signed rounds only: the keys of the consistency tags this peer sends
	// us and we send it.
	tagRecv, tagSend [32]byte
	maskKey          *ecdh.PublicKey
	maskKeyShare     [ShareLen]uint64
	selfSeedShare    [ShareLen]uint64
}

type reveal uint8

const (
	revealSelfSeed reveal = iota + 1
	revealMaskKey
)

// NewClient returns the state machine of client id for the round cfg.
// Randomness for keys, self-mask seed and shares is read from r; nil means
// crypto/rand.Reader.
func NewClient(cfg Config, id uint32, r io.Reader) (*Client, error) {
	if cfg.Signed {
		return nil, configErr("Signed is true: a signed round needs an Identity (NewSignedClient)")
	}
	return newClient(cfg, id, nil, r)
}

// NewSignedClient returns the state machine of client id for the signed
// round cfg (Config.Signed must be true): it signs its key advert with
// ident and verifies its neighbours' adverts with it. Randomness is read from
// r as in NewClient.
func NewSignedClient(cfg Config, id uint32, ident Identity, r io.Reader) (*Client, error) {
	if !cfg.Signed {
		return nil, configErr("Signed is false: an Identity needs a signed round")
	}
	if ident == nil {
		return nil, configErr("nil Identity")
	}
	return newClient(cfg, id, ident, r)
}

func newClient(cfg Config, id uint32, ident Identity, r io.Reader) (*Client, error) {
	nc, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	g := newGraph(&nc)
	idx, ok := g.index(id)
	if !ok {
		return nil, fmt.Errorf("%w: %d is not in Config.Clients", ErrUnknownClient, id)
	}
	if r == nil {
		r = rand.Reader
	}
	return &Client{
		cfg:    nc,
		digest: nc.digest(),
		g:      g,
		id:     id,
		idx:    idx,
		nbrs:   g.neighbours(idx, nil),
		rand:   r,
		next:   PhaseAdvertiseKeys,
		ident:  ident,
	}, nil
}

// ID returns the client's id.
func (c *Client) ID() uint32 { return c.id }

func (c *Client) expect(p Phase, round uint64, to uint32) error {
	if c.next != p {
		return fmt.Errorf("%w: client %d expects %v, got %v", ErrWrongPhase, c.id, c.next, p)
	}
	if round != c.cfg.Round {
		return fmt.Errorf("%w: %d, want %d", ErrWrongRound, round, c.cfg.Round)
	}
	if to != c.id {
		return fmt.Errorf("%w: addressed to %d, not %d", ErrMalformed, to, c.id)
	}
	return nil
}

// AdvertiseKeys generates the round's key pairs and self-mask seed and
// returns the public keys to send to the server (phase 1).
func (c *Client) AdvertiseKeys() (KeyAdvert, error) {
	if err := c.expect(PhaseAdvertiseKeys, c.cfg.Round, c.id); err != nil {
		return KeyAdvert{}, err
	}
	var buf [3 * 32]byte
	if _, err := io.ReadFull(c.rand, buf[:]); err != nil {
		return KeyAdvert{}, fmt.Errorf("secagg: read randomness: %w", err)
	}
	ck, err := ecdh.X25519().NewPrivateKey(buf[:32])
	if err != nil {
		return KeyAdvert{}, err
	}
	sk, err := ecdh.X25519().NewPrivateKey(buf[32:64])
	if err != nil {
		return KeyAdvert{}, err
	}
	m := KeyAdvert{
		Round:        c.cfg.Round,
		Client:       c.id,
		ConfigDigest: bytes.Clone(c.digest[:]),
		CipherKey:    ck.PublicKey().Bytes(),
		MaskKey:      sk.PublicKey().Bytes(),
	}
	if c.ident != nil {
		m.Credential = bytes.Clone(c.ident.Credential())
		if len(m.Credential) == 0 || len(m.Credential) > MaxCredentialLen {
			return KeyAdvert{}, fmt.Errorf("%w: credential has %d bytes, want 1 to %d", ErrBadLength, len(m.Credential), MaxCredentialLen)
		}
		if m.Signature, err = c.ident.Sign(advertMessage(&c.digest, c.id, m.CipherKey, m.MaskKey)); err != nil {
			return KeyAdvert{}, fmt.Errorf("secagg: sign key advert: %w", err)
		}
		if len(m.Signature) == 0 || len(m.Signature) > MaxSignatureLen {
			return KeyAdvert{}, fmt.Errorf("%w: signature has %d bytes, want 1 to %d", ErrBadLength, len(m.Signature), MaxSignatureLen)
		}
	}
	c.cipherKey, c.maskKey = ck, sk
	c.selfSeed = [secretLen]byte(buf[64:])
	c.next = PhaseShareKeys
	return m, nil
}

// checkNeighbour reports whether id is a neighbour of the client, with
// ErrUnknownClient or ErrNotNeighbour.
func (c *Client) checkNeighbour(id uint32) error {
	j, ok := c.g.index(id)
	if !ok {
		return fmt.Errorf("%w: peer %d", ErrUnknownClient, id)
	}
	if !c.g.adjacent(c.idx, j) {
		return fmt.Errorf("%w: %d and %d", ErrNotNeighbour, c.id, id)
	}
	return nil
}

// ShareKeys secret-shares the client's mask key and self-mask seed among
// the neighbours listed in m and returns the encrypted shares (phase 2).
func (c *Client) ShareKeys(m PeerKeys) (ShareUpload, error) {
	if err := c.expect(PhaseShareKeys, m.Round, m.To); err != nil {
		return ShareUpload{}, err
	}
	if len(m.Peers) < c.cfg.Threshold {
		return ShareUpload{}, fmt.Errorf("%w: %d neighbours advertised keys, threshold %d", ErrTooFewSurvivors, len(m.Peers), c.cfg.Threshold)
	}
	seen := map[[32]byte]bool{
		[32]byte(c.cipherKey.PublicKey().Bytes()): true,
		[32]byte(c.maskKey.PublicKey().Bytes()):   true,
	}
	peers := make(map[uint32]*peer, len(m.Peers))
	xs := make([]uint64, len(m.Peers))
	sendKeys := make([][32]byte, len(m.Peers))
	for i, a := range m.Peers {
		if a.Round != c.cfg.Round || !bytes.Equal(a.ConfigDigest, c.digest[:]) {
			return ShareUpload{}, fmt.Errorf("%w: keys of %d are for another round or config", ErrWrongRound, a.Client)
		}
		if i > 0 && a.Client <= m.Peers[i-1].Client {
			return ShareUpload{}, fmt.Errorf("%w: peers not strictly ascending at %d", ErrMalformed, a.Client)
		}
		if err := c.checkNeighbour(a.Client); err != nil {
			return ShareUpload{}, err
		}
		if len(a.CipherKey) != 32 || len(a.MaskKey) != 32 {
			return ShareUpload{}, fmt.Errorf("%w: keys of %d", ErrBadLength, a.Client)
		}
		if c.ident != nil {
			// Before the keys are used: a substituted key would let the
			// server read the shares sent to it.
			msg := advertMessage(&c.digest, a.Client, a.CipherKey, a.MaskKey)
			if err := verifySignature(c.ident, a.Client, a.Credential, msg, a.Signature); err != nil {
				return ShareUpload{}, fmt.Errorf("key advert: %w", err)
			}
		}
		for _, k := range [][]byte{a.CipherKey, a.MaskKey} {
			if seen[[32]byte(k)] {
				return ShareUpload{}, fmt.Errorf("%w: key of %d repeats another key", ErrBadKey, a.Client)
			}
			seen[[32]byte(k)] = true
		}
		cpk, err := ecdh.X25519().NewPublicKey(a.CipherKey)
		if err != nil {
			return ShareUpload{}, fmt.Errorf("%w: cipher key of %d: %v", ErrBadKey, a.Client, err)
		}
		spk, err := ecdh.X25519().NewPublicKey(a.MaskKey)
		if err != nil {
			return ShareUpload{}, fmt.Errorf("%w: mask key of %d: %v", ErrBadKey, a.Client, err)
		}
		shared, err := c.cipherKey.ECDH(cpk)
		if err != nil {
			return ShareUpload{}, fmt.Errorf("%w: cipher key of %d: %v", ErrBadKey, a.Client, err)
		}
		p := &peer{maskKey: spk}
		if c.ident == nil {
			p.recvKey = deriveKey(shared, labelShareKey, &c.digest, []uint32{a.Client, c.id})
			sendKeys[i] = deriveKey(shared, labelShareKey, &c.digest, []uint32{c.id, a.Client})
		} else {
			// Each direction's share key comes with its tag key.
			recv, send := [2][32]byte{}, [2][32]byte{}
			deriveKeys(shared, labelShareKey, &c.digest, []uint32{a.Client, c.id}, recv[:])
			deriveKeys(shared, labelShareKey, &c.digest, []uint32{c.id, a.Client}, send[:])
			p.recvKey, p.tagRecv = recv[0], recv[1]
			sendKeys[i], p.tagSend = send[0], send[1]
		}
		peers[a.Client] = p
		xs[i] = holderX(a.Client)
	}

	skShares := make([][ShareLen]uint64, len(xs))
	bShares := make([][ShareLen]uint64, len(xs))
	sk := [secretLen]byte(c.maskKey.Bytes())
	if err := shamirDeal(&sk, c.cfg.Threshold, xs, c.rand, skShares); err != nil {
		return ShareUpload{}, err
	}
	if err := shamirDeal(&c.selfSeed, c.cfg.Threshold, xs, c.rand, bShares); err != nil {
		return ShareUpload{}, err
	}
	out := ShareUpload{Round: c.cfg.Round, From: c.id, Shares: make([]SealedShare, len(xs))}
	for i, a := range m.Peers {
		out.Shares[i] = SealedShare{
			Peer:       a.Client,
			Ciphertext: sealShares(sendKeys[i], &c.digest, c.id, a.Client, &skShares[i], &bShares[i]),
		}
	}
	c.peers = peers
	c.next = PhaseMaskedInput
	return out, nil
}

// MaskedInput decrypts the shares delivered in m and returns the client's
// input x masked with its self mask and with a pairwise mask for every
// neighbour that delivered shares (phase 3). x must hold VectorLen values
// below 2^Bits; it is not modified.
func (c *Client) MaskedInput(m ShareDelivery, x []uint64) (MaskedInput, error) {
	return c.maskedInput(m, x, false)
}

// MaskInPlace is MaskedInput masking x itself, a copy of the input the
// less (a model-sized vector on a device): the result's Values is x. On
// an error x is left as it was.
func (c *Client) MaskInPlace(m ShareDelivery, x []uint64) (MaskedInput, error) {
	return c.maskedInput(m, x, true)
}

func (c *Client) maskedInput(m ShareDelivery, x []uint64, inPlace bool) (MaskedInput, error) {
	if err := c.expect(PhaseMaskedInput, m.Round, m.To); err != nil {
		return MaskedInput{}, err
	}
	if len(x) != c.cfg.VectorLen {
		return MaskedInput{}, fmt.Errorf("%w: input has %d values, want %d", ErrBadLength, len(x), c.cfg.VectorLen)
	}
	if err := checkRange(x, c.cfg.Bits); err != nil {
		return MaskedInput{}, err
	}
	if len(m.Shares) < c.cfg.Threshold {
		return MaskedInput{}, fmt.Errorf("%w: %d neighbours shared keys, threshold %d", ErrTooFewSurvivors, len(m.Shares), c.cfg.Threshold)
	}
	type opened struct{ sk, b [ShareLen]uint64 }
	open := make([]opened, len(m.Shares))
	jobs := make([]maskJob, 0, len(m.Shares)+1)
	jobs = append(jobs, newMaskJob(deriveKey(c.selfSeed[:], labelSelfMask, &c.digest, []uint32{c.id}), false))
	delivered := make([]uint32, len(m.Shares))
	for i, s := range m.Shares {
		if i > 0 && s.Peer <= m.Shares[i-1].Peer {
			return MaskedInput{}, fmt.Errorf("%w: senders not strictly ascending at %d", ErrMalformed, s.Peer)
		}
		p := c.peers[s.Peer]
		if p == nil {
			if err := c.checkNeighbour(s.Peer); err != nil {
				return MaskedInput{}, err
			}
			return MaskedInput{}, fmt.Errorf("%w: %d sent shares without advertising keys", ErrDropped, s.Peer)
		}
		sk, b, err := openShares(p.recvKey, &c.digest, s.Peer, c.id, s.Ciphertext)
		if err != nil {
			return MaskedInput{}, err
		}
		open[i] = opened{sk, b}
		shared, err := c.maskKey.ECDH(p.maskKey)
		if err != nil {
			return MaskedInput{}, fmt.Errorf("%w: mask key of %d: %v", ErrBadKey, s.Peer, err)
		}
		seed := deriveKey(shared, labelPairMask, &c.digest, pairIDs(c.id, s.Peer))
		// Added for a higher id, subtracted for a lower: the pair cancels.
		jobs = append(jobs, newMaskJob(seed, s.Peer < c.id))
		delivered[i] = s.Peer
	}

	y := x
	if !inPlace {
		y = slices.Clone(x)
	}
	applyMasks(y, jobs, maskWidth(c.cfg.Bits), 1)
	reduce(y, c.cfg.Bits)

	for i, id := range delivered {
		c.peers[id].maskKeyShare = open[i].sk
		c.peers[id].selfSeedShare = open[i].b
	}
	c.delivered = delivered
	c.revealed = make(map[uint32]reveal, len(delivered))
	c.next = PhaseUnmask
	if c.ident != nil {
		c.next = PhaseConsistencyCheck
	}
	return MaskedInput{Round: c.cfg.Round, From: c.id, Values: y}, nil
}

// ConsistencyCheck confirms the survivor set U3 of a signed round, after
// checking it against what the client saw: ascending ids of the cohort,
// the client itself among them, at least MinSurvivors of them, and every
// neighbour in it one that delivered shares to the client, with at least
// Threshold such neighbours. It confirms the set to each of those
// neighbours with a ConsistencyTag. A client confirms one set per round:
// once it has answered, the phase is over for it.
func (c *Client) ConsistencyCheck(m ConsistencyRequest) (ConsistencyResponse, error) {
	if err := c.expect(PhaseConsistencyCheck, m.Round, m.To); err != nil {
		return ConsistencyResponse{}, err
	}
	set := m.Survivors
	self := false
	var nbrs []uint32
	for i, id := range set {
		if i > 0 && id <= set[i-1] {
			return ConsistencyResponse{}, fmt.Errorf("%w: survivors not strictly ascending at %d", ErrMalformed, id)
		}
		j, ok := c.g.index(id)
		switch {
		case !ok:
			return ConsistencyResponse{}, fmt.Errorf("%w: survivor %d", ErrUnknownClient, id)
		case j == c.idx:
			self = true
		case c.g.adjacent(c.idx, j):
			if _, ok := slices.BinarySearch(c.delivered, id); !ok {
				return ConsistencyResponse{}, fmt.Errorf("%w: neighbour %d survived but delivered no shares", ErrInconsistent, id)
			}
			nbrs = append(nbrs, id)
		}
	}
	if !self {
		return ConsistencyResponse{}, fmt.Errorf("%w: survivors leave out %d, which sent its masked input", ErrInconsistent, c.id)
	}
	if len(set) < c.cfg.MinSurvivors {
		return ConsistencyResponse{}, fmt.Errorf("%w: %d survivors, need %d", ErrTooFewSurvivors, len(set), c.cfg.MinSurvivors)
	}
	if len(nbrs) < c.cfg.Threshold {
		return ConsistencyResponse{}, fmt.Errorf("%w: %d neighbours survived, threshold %d", ErrTooFewSurvivors, len(nbrs), c.cfg.Threshold)
	}
	h := survivorSetHash(set)
	out := ConsistencyResponse{Round: c.cfg.Round, From: c.id, Tags: make([]ConsistencyTag, len(nbrs))}
	for i, id := range nbrs {
		out.Tags[i] = ConsistencyTag{Peer: id, Tag: consistencyTag(&c.peers[id].tagSend, &c.digest, &h)}
	}
	c.checked, c.checkedHash = slices.Clone(set), h
	c.next = PhaseUnmask
	return out, nil
}

// checkTags counts the valid consistency tags in tags from distinct
// neighbours in the confirmed survivor set and refuses with ErrTooFewTags
// if there are fewer than Threshold. Invalid tags are not counted, so a
// neighbour that sends garbage cannot stall the round alone.
func (c *Client) checkTags(tags []ConsistencyTag) error {
	valid, bad := 0, 0
	for i, pt := range tags {
		if i > 0 && pt.Peer <= tags[i-1].Peer {
			return fmt.Errorf("%w: tags not strictly ascending at %d", ErrMalformed, pt.Peer)
		}
		if err := c.checkNeighbour(pt.Peer); err != nil {
			return err
		}
		if _, ok := slices.BinarySearch(c.checked, pt.Peer); !ok {
			return fmt.Errorf("%w: %d confirmed but is not in the survivor set", ErrInconsistent, pt.Peer)
		}
		if valid >= c.cfg.Threshold {
			continue // the rule needs no more; the rest is checked for form
		}
		p := c.peers[pt.Peer] // in the set, so it delivered shares
		if !hmac.Equal(pt.Tag, consistencyTag(&p.tagRecv, &c.digest, &c.checkedHash)) {
			bad++
			continue
		}
		valid++
	}
	if valid < c.cfg.Threshold {
		return fmt.Errorf("%w: %d valid tags on the survivor set (%d invalid), threshold %d", ErrTooFewTags, valid, bad, c.cfg.Threshold)
	}
	return nil
}

// Unmask returns the shares the server needs to remove the masks (phase 4):
// the self-mask seed share of every survivor and the mask-key share of
// every dropped neighbour. It refuses, with ErrConflictingReveal, to reveal
// both shares of one peer, in this request or together with an earlier
// one; repeating a request returns the same shares. It refuses with
// ErrTooFewSurvivors when fewer than Threshold neighbours survived. In a
// signed round it also refuses, with ErrInconsistent, a request whose
// survivors and dropped neighbours differ from the survivor set it confirmed,
// and with ErrTooFewTags unless at least Threshold of its neighbours
// in that set sent it valid tags on exactly that set.
func (c *Client) Unmask(m UnmaskRequest) (UnmaskResponse, error) {
	if err := c.expect(PhaseUnmask, m.Round, m.To); err != nil {
		return UnmaskResponse{}, err
	}
	kind := make(map[uint32]reveal, len(c.delivered))
	for _, list := range []struct {
		ids  []uint32
		want reveal
	}{{m.Survivors, revealSelfSeed}, {m.Dropped, revealMaskKey}} {
		for i, id := range list.ids {
			if i > 0 && id <= list.ids[i-1] {
				return UnmaskResponse{}, fmt.Errorf("%w: peers not strictly ascending at %d", ErrMalformed, id)
			}
			if _, ok := slices.BinarySearch(c.delivered, id); !ok {
				if err := c.checkNeighbour(id); err != nil {
					return UnmaskResponse{}, err
				}
				return UnmaskResponse{}, fmt.Errorf("%w: %d delivered no shares", ErrDropped, id)
			}
			if kind[id] != 0 || (c.revealed[id] != 0 && c.revealed[id] != list.want) {
				return UnmaskResponse{}, fmt.Errorf("%w: peer %d", ErrConflictingReveal, id)
			}
			kind[id] = list.want
		}
	}
	if len(kind) != len(c.delivered) {
		return UnmaskResponse{}, fmt.Errorf("%w: %d of %d neighbours classified", ErrMalformed, len(kind), len(c.delivered))
	}
	if c.ident != nil {
		// The request must say what the confirmed set says about every
		// neighbour: this is what stops the server from telling different
		// neighbours different stories about one client.
		for _, id := range c.delivered {
			k := kind[id]
			if _, in := slices.BinarySearch(c.checked, id); in != (k == revealSelfSeed) {
				return UnmaskResponse{}, fmt.Errorf("%w: request says %d %s, the confirmed survivor set does not", ErrInconsistent, id, map[bool]string{true: "survived", false: "dropped"}[k == revealSelfSeed])
			}
		}
		if err := c.checkTags(m.Tags); err != nil {
			return UnmaskResponse{}, err
		}
	} else if len(m.Tags) > 0 {
		return UnmaskResponse{}, fmt.Errorf("%w: consistency tags in an unsigned round", ErrMalformed)
	}
	if len(m.Survivors) < c.cfg.Threshold {
		return UnmaskResponse{}, fmt.Errorf("%w: %d neighbours survived, threshold %d", ErrTooFewSurvivors, len(m.Survivors), c.cfg.Threshold)
	}
	out := UnmaskResponse{
		Round:          c.cfg.Round,
		From:           c.id,
		SelfMaskShares: make([]Share, len(m.Survivors)),
		MaskKeyShares:  make([]Share, len(m.Dropped)),
	}
	for i, id := range m.Survivors {
		out.SelfMaskShares[i] = Share{Peer: id, Value: slices.Clone(c.peers[id].selfSeedShare[:])}
	}
	for i, id := range m.Dropped {
		out.MaskKeyShares[i] = Share{Peer: id, Value: slices.Clone(c.peers[id].maskKeyShare[:])}
	}
	for id, k := range kind {
		c.revealed[id] = k
	}
	return out, nil
}

// checkRange reports ErrOutOfRange unless every value is below 2^bits.
func checkRange(v []uint64, bits int) error {
	if bits == 64 {
		return nil
	}
	var or uint64
	for _, x := range v {
		or |= x
	}
	if or>>bits != 0 {
		for i, x := range v {
			if x>>bits != 0 {
				return fmt.Errorf("%w: value %d at %d is not below 2^%d", ErrOutOfRange, x, i, bits)
			}
		}
	}
	return nil
}

// addInput adds v into sum (wrapping mod 2^64) if every value of v is
// below 2^bits; otherwise it leaves sum unchanged and reports
// ErrOutOfRange. Checking and adding in one pass reads v once, which
// halves the time of checkRange followed by a separate add when v is not
// in cache.
func addInput(sum, v []uint64, bits int) error {
	sum = sum[:len(v)]
	var or uint64
	for i, x := range v {
		sum[i] += x
		or |= x
	}
	if bits == 64 || or>>bits == 0 {
		return nil
	}
	for i, x := range v {
		sum[i] -= x
	}
	return checkRange(v, bits)
}

// reduce reduces v mod 2^bits in place.
func reduce(v []uint64, bits int) {
	if bits == 64 {
		return
	}
	m := valueMask(bits)
	for i := range v {
		v[i] &= m
	}
}
