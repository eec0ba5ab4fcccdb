package secagg

import (
	"bytes"
	"cmp"
	"crypto/ecdh"
	"fmt"
	"runtime"
	"slices"
	"sync"
)

// ServerOptions tunes a Server; the zero value is ready to use.
type ServerOptions struct {
	// Workers bounds the goroutines used while unmasking, to reconstruct
	// secrets and regenerate masks. All of them have returned when
	// ClosePhase returns. Zero means runtime.GOMAXPROCS(0).
	Workers int
}

// Server is the coordinator's side of a round: it collects and relays the
// clients' messages and finally removes the masks from the sum. It holds no
// clock: the driver decides when a phase's deadline has passed and calls
// ClosePhase, and whoever has not answered by then has dropped.
//
// The Server is safe for concurrent use. Masked inputs are added into a
// running sum as they arrive, so memory is O(VectorLen) however many
// clients take part.
type Server struct {
	mu      sync.Mutex
	cfg     Config // normalized
	digest  [32]byte
	g       *graph
	workers int

	stage stage // the open phase, or stDone or stAborted
	err   error // wraps ErrAborted and the cause once the round aborted

	// level[i] is the last phase client i survived: 0 for none, p for U_p.
	level []stage
	got   []bool // client i's message for the current phase has arrived

	adverts   []KeyAdvert        // phase 1, by client index
	keys      map[[32]byte]bool  // every public key advertised
	uploads   [][]SealedShare    // phase 2, by sender index, ascending by Peer
	sum       []uint64           // phase 3, Σ y_u mod 2^64
	survivors []uint32           // consistency check, U3 ascending
	checkTags [][]ConsistencyTag // consistency check, by client index
	selfSeed  [][]heldShare      // phase 4, shares of b_u, by owner index
	maskKey   [][]heldShare      // phase 4, shares of s_u^SK, by owner index

	result Result
}

// stage is a phase in protocol order. Phase values are append-only, so the
// consistency check, added later, has a larger value than the phases
// around it; the server orders phases by stage instead. A client's level
// is the stage of the last phase it completed.
type stage uint8

const (
	stNone      stage = iota
	stAdvertise       // U1
	stShare           // U2
	stMasked          // U3
	stCheck           // U4 of a signed round: confirmed the survivor set
	stUnmask          // answered the unmask request
	stDone
	stAborted
)

var stagePhases = [...]Phase{
	stAdvertise: PhaseAdvertiseKeys,
	stShare:     PhaseShareKeys,
	stMasked:    PhaseMaskedInput,
	stCheck:     PhaseConsistencyCheck,
	stUnmask:    PhaseUnmask,
	stDone:      PhaseDone,
	stAborted:   PhaseAborted,
}

func (st stage) phase() Phase { return stagePhases[st] }

func stageOf(p Phase) stage {
	for st, q := range stagePhases {
		if q == p && p != 0 {
			return stage(st)
		}
	}
	panic(fmt.Sprintf("secagg: no stage for phase %d", p))
}

// prev is the phase before st in this round: unsigned rounds skip the
// consistency check.
func (s *Server) prev(st stage) stage {
	if st == stUnmask && !s.cfg.Signed {
		return stMasked
	}
	return st - 1
}

func (s *Server) next(st stage) stage {
	if st == stMasked && !s.cfg.Signed {
		return stUnmask
	}
	return st + 1
}

type heldShare struct {
	holder int
	value  [ShareLen]uint64
}

// Result is the outcome of a completed round.
type Result struct {
	// Sum is the sum of the inputs of the clients in Clients, mod 2^Bits.
	Sum []uint64
	// Clients lists, ascending, the clients whose inputs are in Sum: those
	// whose masked input arrived before the masked-input phase closed (U3).
	Clients []uint32
	// Count is len(Clients).
	Count int
}

// NewServer returns the server state machine for the round cfg, open for
// the advertise-keys phase.
func NewServer(cfg Config, opts ServerOptions) (*Server, error) {
	nc, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if opts.Workers < 0 {
		return nil, fmt.Errorf("%w: ServerOptions.Workers %d is negative", ErrConfig, opts.Workers)
	}
	w := opts.Workers
	if w == 0 {
		w = runtime.GOMAXPROCS(0)
	}
	n := len(nc.Clients)
	return &Server{
		cfg:     nc,
		digest:  nc.digest(),
		g:       newGraph(&nc),
		workers: w,
		stage:   stAdvertise,
		level:   make([]stage, n),
		got:     make([]bool, n),
		adverts: make([]KeyAdvert, n),
		keys:    make(map[[32]byte]bool, 2*n),
	}, nil
}

// Phase returns the phase that is open, or PhaseDone or PhaseAborted.
func (s *Server) Phase() Phase {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stage.phase()
}

// Awaiting returns, ascending, the clients expected to send a message in
// the open phase that have not sent it yet. A driver may close the phase
// early once it is empty.
func (s *Server) Awaiting() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stage > stUnmask {
		return nil
	}
	var out []uint32
	prev := s.prev(s.stage)
	for i, l := range s.level {
		if l == prev && !s.got[i] {
			out = append(out, s.g.ids[i])
		}
	}
	return out
}

// Survivors returns, ascending, the clients that survived the last closed
// phase: U1 after advertise-keys, U2 after share-keys, U3 after
// masked-input, the clients that confirmed the survivor set after the
// consistency check, and those that answered after unmask. Clients whose
// neighbourhood became smaller than the threshold are pruned from U1 and
// U2.
func (s *Server) Survivors() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stage == stAborted {
		return nil
	}
	closed := s.prev(s.stage)
	var out []uint32
	for i, l := range s.level {
		if closed > 0 && l >= closed {
			out = append(out, s.g.ids[i])
		}
	}
	return out
}

// Result returns the outcome once the unmask phase has been closed.
func (s *Server) Result() (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return Result{}, s.err
	}
	if s.stage != stDone {
		return Result{}, fmt.Errorf("%w: the round is in phase %v", ErrWrongPhase, s.stage.phase())
	}
	r := s.result
	r.Sum = slices.Clone(r.Sum)
	r.Clients = slices.Clone(r.Clients)
	return r, nil
}

// admit checks a message from client `from` for phase p and returns the
// client's index.
func (s *Server) admit(p Phase, round uint64, from uint32) (int, error) {
	st := stageOf(p)
	if s.err != nil {
		return 0, s.err
	}
	if round != s.cfg.Round {
		return 0, fmt.Errorf("%w: %d, want %d", ErrWrongRound, round, s.cfg.Round)
	}
	i, ok := s.g.index(from)
	if !ok {
		return 0, fmt.Errorf("%w: %d", ErrUnknownClient, from)
	}
	switch {
	case st == stCheck && !s.cfg.Signed:
		return 0, fmt.Errorf("%w: %v message from %d in an unsigned round", ErrWrongPhase, p, from)
	case s.stage < st:
		return 0, fmt.Errorf("%w: %v message from %d during %v", ErrWrongPhase, p, from, s.stage.phase())
	case s.stage > st:
		return 0, fmt.Errorf("%w: %v message from %d", ErrPhaseClosed, p, from)
	}
	if s.level[i] < s.prev(st) {
		return 0, fmt.Errorf("%w: %d", ErrDropped, from)
	}
	if s.got[i] {
		return 0, fmt.Errorf("%w: %v message from %d", ErrDuplicate, p, from)
	}
	return i, nil
}

// recipient checks a request for client `to`'s message in phase p, which
// must be open; the client must have survived the phase before.
func (s *Server) recipient(p Phase, to uint32) (int, error) {
	st := stageOf(p)
	if s.err != nil {
		return 0, s.err
	}
	i, ok := s.g.index(to)
	if !ok {
		return 0, fmt.Errorf("%w: %d", ErrUnknownClient, to)
	}
	switch {
	case st == stCheck && !s.cfg.Signed:
		return 0, fmt.Errorf("%w: %v in an unsigned round", ErrWrongPhase, p)
	case s.stage < st:
		return 0, fmt.Errorf("%w: %v not open yet", ErrWrongPhase, p)
	case s.stage > st:
		return 0, fmt.Errorf("%w: %v", ErrPhaseClosed, p)
	}
	if s.level[i] < s.prev(st) {
		return 0, fmt.Errorf("%w: %d", ErrDropped, to)
	}
	return i, nil
}

// HandleKeyAdvert accepts a client's public keys (phase 1).
func (s *Server) HandleKeyAdvert(m KeyAdvert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.admit(PhaseAdvertiseKeys, m.Round, m.Client)
	if err != nil {
		return err
	}
	if !bytes.Equal(m.ConfigDigest, s.digest[:]) {
		return fmt.Errorf("%w: client %d has a different view of the round (config digest)", ErrWrongRound, m.Client)
	}
	if len(m.CipherKey) != 32 || len(m.MaskKey) != 32 {
		return fmt.Errorf("%w: keys of %d have %d and %d bytes, want 32", ErrBadLength, m.Client, len(m.CipherKey), len(m.MaskKey))
	}
	if len(m.Signature) > MaxSignatureLen {
		return fmt.Errorf("%w: signature of %d has %d bytes, more than %d", ErrBadLength, m.Client, len(m.Signature), MaxSignatureLen)
	}
	if len(m.Credential) > MaxCredentialLen {
		return fmt.Errorf("%w: credential of %d has %d bytes, more than %d", ErrBadLength, m.Client, len(m.Credential), MaxCredentialLen)
	}
	if s.cfg.Signed && (len(m.Signature) == 0 || len(m.Credential) == 0) {
		// The server cannot verify it (it holds no identities), but an
		// advert without one would only make every neighbour refuse.
		return fmt.Errorf("%w: keys of %d are not signed in a signed round", ErrBadSignature, m.Client)
	}
	ck, sk := [32]byte(m.CipherKey), [32]byte(m.MaskKey)
	if ck == sk || s.keys[ck] || s.keys[sk] {
		return fmt.Errorf("%w: keys of %d repeat a key", ErrBadKey, m.Client)
	}
	s.keys[ck], s.keys[sk] = true, true
	s.adverts[i] = KeyAdvert{
		Round:        m.Round,
		Client:       m.Client,
		ConfigDigest: s.digest[:],
		CipherKey:    ck[:],
		MaskKey:      sk[:],
		Signature:    bytes.Clone(m.Signature),
		Credential:   bytes.Clone(m.Credential),
	}
	s.got[i] = true
	return nil
}

// PeerKeys returns the message for client `to` in phase 2: the keys of its
// neighbours in U1.
func (s *Server) PeerKeys(to uint32) (PeerKeys, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.recipient(PhaseShareKeys, to)
	if err != nil {
		return PeerKeys{}, err
	}
	m := PeerKeys{Round: s.cfg.Round, To: to}
	var peers []*KeyAdvert
	size := 0
	for _, j := range s.g.neighbours(i, nil) {
		if s.level[j] >= stAdvertise {
			a := &s.adverts[j]
			peers = append(peers, a)
			size += len(a.CipherKey) + len(a.MaskKey) + len(a.Signature) + len(a.Credential) + len(a.ConfigDigest)
		}
	}
	if len(peers) > 0 {
		// One copy of every byte slice, so the message shares nothing
		// with the server, in one allocation.
		buf := make([]byte, 0, size)
		m.Peers = make([]KeyAdvert, len(peers))
		for k, a := range peers {
			p := *a
			p.CipherKey, buf = appendCopy(buf, a.CipherKey)
			p.MaskKey, buf = appendCopy(buf, a.MaskKey)
			p.Signature, buf = appendCopy(buf, a.Signature)
			p.Credential, buf = appendCopy(buf, a.Credential)
			p.ConfigDigest, buf = appendCopy(buf, a.ConfigDigest)
			m.Peers[k] = p
		}
	}
	return m, nil
}

// HandleShareUpload accepts a client's encrypted shares (phase 2). There
// must be exactly one per neighbour in U1, ascending.
func (s *Server) HandleShareUpload(m ShareUpload) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.admit(PhaseShareKeys, m.Round, m.From)
	if err != nil {
		return err
	}
	k := 0
	for _, j := range s.g.neighbours(i, nil) {
		if s.level[j] < stAdvertise {
			continue
		}
		if k >= len(m.Shares) || m.Shares[k].Peer != s.g.ids[j] {
			return fmt.Errorf("%w: shares from %d do not match its neighbours in U1", ErrMalformed, m.From)
		}
		if len(m.Shares[k].Ciphertext) != SealedShareLen {
			return fmt.Errorf("%w: share from %d for %d has %d bytes, want %d", ErrBadLength, m.From, s.g.ids[j], len(m.Shares[k].Ciphertext), SealedShareLen)
		}
		k++
	}
	if k != len(m.Shares) {
		return fmt.Errorf("%w: shares from %d do not match its neighbours in U1", ErrMalformed, m.From)
	}
	up := make([]SealedShare, len(m.Shares))
	for k, sh := range m.Shares {
		up[k] = SealedShare{Peer: sh.Peer, Ciphertext: bytes.Clone(sh.Ciphertext)}
	}
	if s.uploads == nil {
		s.uploads = make([][]SealedShare, s.g.size())
	}
	s.uploads[i] = up
	s.got[i] = true
	return nil
}

// ShareDelivery returns the message for client `to` in phase 3: the shares
// addressed to it by its neighbours in U2.
func (s *Server) ShareDelivery(to uint32) (ShareDelivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.recipient(PhaseMaskedInput, to)
	if err != nil {
		return ShareDelivery{}, err
	}
	m := ShareDelivery{Round: s.cfg.Round, To: to}
	nb := s.g.neighbours(i, nil)
	var buf []byte // one copy of every ciphertext, in one allocation
	for _, j := range nb {
		if s.level[j] < stShare {
			continue
		}
		up := s.uploads[j]
		k, ok := slices.BinarySearchFunc(up, to, func(x SealedShare, id uint32) int { return cmp.Compare(x.Peer, id) })
		if !ok {
			panic("secagg: upload lacks a share for a neighbour in U2") // checked in HandleShareUpload
		}
		if buf == nil {
			buf = make([]byte, 0, len(nb)*SealedShareLen)
			m.Shares = make([]SealedShare, 0, len(nb))
		}
		var ct []byte
		ct, buf = appendCopy(buf, up[k].Ciphertext)
		m.Shares = append(m.Shares, SealedShare{Peer: s.g.ids[j], Ciphertext: ct})
	}
	return m, nil
}

// appendCopy appends b to buf, which must have room for it, and returns
// the copy (capped, so that appending to it cannot overwrite what follows
// in buf) and the rest of buf. A nil b stays nil.
func appendCopy(buf, b []byte) (cp, rest []byte) {
	if b == nil {
		return nil, buf
	}
	n := len(buf)
	buf = append(buf, b...)
	return buf[n:len(buf):len(buf)], buf
}

// HandleMaskedInput adds a client's masked input into the sum (phase 3).
func (s *Server) HandleMaskedInput(m MaskedInput) error {
	if len(m.Values) != s.cfg.VectorLen {
		return fmt.Errorf("%w: masked input from %d has %d values, want %d", ErrBadLength, m.From, len(m.Values), s.cfg.VectorLen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.admit(PhaseMaskedInput, m.Round, m.From)
	if err != nil {
		return err
	}
	if s.sum == nil {
		s.sum = make([]uint64, s.cfg.VectorLen)
	}
	if err := addInput(s.sum, m.Values, s.cfg.Bits); err != nil {
		return fmt.Errorf("masked input from %d: %w", m.From, err)
	}
	s.got[i] = true
	return nil
}

// ConsistencyRequest returns the message for client `to` in the
// consistency check of a signed round: the survivor set U3.
func (s *Server) ConsistencyRequest(to uint32) (ConsistencyRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.recipient(PhaseConsistencyCheck, to); err != nil {
		return ConsistencyRequest{}, err
	}
	return ConsistencyRequest{Round: s.cfg.Round, To: to, Survivors: slices.Clone(s.survivors)}, nil
}

// HandleConsistencyResponse accepts a client's consistency tags on the
// survivor set (consistency check of a signed round): at most one for
// each of its neighbours in the set, ascending, TagLen bytes each. The
// server cannot check them; the neighbours they are for do.
func (s *Server) HandleConsistencyResponse(m ConsistencyResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.admit(PhaseConsistencyCheck, m.Round, m.From)
	if err != nil {
		return err
	}
	for k, t := range m.Tags {
		if k > 0 && t.Peer <= m.Tags[k-1].Peer {
			return fmt.Errorf("%w: tags of %d not strictly ascending at %d", ErrMalformed, m.From, t.Peer)
		}
		j, ok := s.g.index(t.Peer)
		if !ok || j == i || !s.g.adjacent(i, j) {
			return fmt.Errorf("%w: %d tagged %d, not its neighbour", ErrUnknownClient, m.From, t.Peer)
		}
		if s.level[j] < stMasked {
			return fmt.Errorf("%w: %d tagged %d, not a survivor", ErrInconsistent, m.From, t.Peer)
		}
		if len(t.Tag) != TagLen {
			return fmt.Errorf("%w: tag of %d for %d has %d bytes, want %d", ErrBadLength, m.From, t.Peer, len(t.Tag), TagLen)
		}
	}
	if s.checkTags == nil {
		s.checkTags = make([][]ConsistencyTag, s.g.size())
	}
	tags := make([]ConsistencyTag, len(m.Tags))
	buf := make([]byte, 0, TagLen*len(m.Tags))
	for k, t := range m.Tags {
		tags[k].Peer = t.Peer
		tags[k].Tag, buf = appendCopy(buf, t.Tag)
	}
	s.checkTags[i] = tags
	s.got[i] = true
	return nil
}

// checkSigned runs when the consistency check closes. A client that
// confirmed the set will reveal shares only with Threshold tags from its
// neighbours that confirmed it too, and every secret to be reconstructed
// needs Threshold such clients among its owner's neighbours; otherwise the
// round aborts before anyone is asked to reveal anything.
func (s *Server) checkSigned() error {
	t := s.cfg.Threshold
	able := make([]bool, s.g.size())
	var nb []int
	n4 := s.count(stCheck)
	for i, l := range s.level {
		if l < stCheck {
			continue
		}
		c := n4 - 1
		if !s.g.complete {
			c = 0
			nb = s.g.neighbours(i, nb)
			for _, j := range nb {
				if s.level[j] >= stCheck {
					c++
				}
			}
		}
		able[i] = c >= t
	}
	nAble := 0
	for _, a := range able {
		if a {
			nAble++
		}
	}
	for i, l := range s.level {
		if l < stShare {
			continue
		}
		needed, c := l >= stMasked, 0
		if s.g.complete {
			needed = needed || s.count(stMasked) > 0
			c = nAble
			if able[i] {
				c--
			}
		} else {
			nb = s.g.neighbours(i, nb)
			for _, j := range nb {
				needed = needed || s.level[j] >= stMasked
				if able[j] {
					c++
				}
			}
		}
		if needed && c < t {
			return fmt.Errorf("%w: client %d has %d neighbours that confirmed the survivor set with enough confirmations, threshold %d", ErrTooFewSurvivors, s.g.ids[i], c, t)
		}
	}
	return nil
}

// UnmaskRequest returns the message for client `to` in phase 4: which of
// its neighbours in U2 sent a masked input and which dropped, and in a
// signed round the consistency tags its neighbours addressed to it.
func (s *Server) UnmaskRequest(to uint32) (UnmaskRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.recipient(PhaseUnmask, to)
	if err != nil {
		return UnmaskRequest{}, err
	}
	m := UnmaskRequest{Round: s.cfg.Round, To: to}
	for _, j := range s.g.neighbours(i, nil) {
		switch l := s.level[j]; {
		case l == stShare:
			m.Dropped = append(m.Dropped, s.g.ids[j])
		case l >= stMasked:
			m.Survivors = append(m.Survivors, s.g.ids[j])
			if l >= stCheck && s.cfg.Signed {
				tags := s.checkTags[j]
				if k, ok := slices.BinarySearchFunc(tags, to, func(t ConsistencyTag, id uint32) int { return cmp.Compare(t.Peer, id) }); ok {
					m.Tags = append(m.Tags, ConsistencyTag{Peer: s.g.ids[j], Tag: bytes.Clone(tags[k].Tag)})
				}
			}
		}
	}
	return m, nil
}

// HandleUnmaskResponse accepts a client's shares (phase 4). They must cover
// exactly the client's UnmaskRequest.
func (s *Server) HandleUnmaskResponse(m UnmaskResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.admit(PhaseUnmask, m.Round, m.From)
	if err != nil {
		return err
	}
	var self, key []int // owners, in the order of m
	for _, j := range s.g.neighbours(i, nil) {
		switch l := s.level[j]; {
		case l == stShare:
			key = append(key, j)
		case l >= stMasked:
			self = append(self, j)
		}
	}
	for _, c := range []struct {
		owners []int
		shares []Share
		what   string
	}{{self, m.SelfMaskShares, "self-mask"}, {key, m.MaskKeyShares, "mask-key"}} {
		if len(c.owners) != len(c.shares) {
			return fmt.Errorf("%w: %d has %d %s shares, want %d", ErrMalformed, m.From, len(c.shares), c.what, len(c.owners))
		}
		for k, sh := range c.shares {
			if sh.Peer != s.g.ids[c.owners[k]] {
				return fmt.Errorf("%w: %s shares of %d do not match its request", ErrMalformed, c.what, m.From)
			}
			if len(sh.Value) != ShareLen {
				return fmt.Errorf("%w: %s share of %d from %d has %d elements, want %d", ErrBadLength, c.what, sh.Peer, m.From, len(sh.Value), ShareLen)
			}
			for _, v := range sh.Value {
				if v >= fieldP {
					return fmt.Errorf("%w: %s share of %d from %d", ErrOutOfRange, c.what, sh.Peer, m.From)
				}
			}
		}
	}
	if s.selfSeed == nil {
		s.selfSeed = make([][]heldShare, s.g.size())
		s.maskKey = make([][]heldShare, s.g.size())
	}
	for k, j := range self {
		s.selfSeed[j] = append(s.selfSeed[j], heldShare{holder: i, value: [ShareLen]uint64(m.SelfMaskShares[k].Value)})
	}
	for k, j := range key {
		s.maskKey[j] = append(s.maskKey[j], heldShare{holder: i, value: [ShareLen]uint64(m.MaskKeyShares[k].Value)})
	}
	s.got[i] = true
	return nil
}

// ClosePhase ends the open phase: the clients that have not sent their
// message for it have dropped. Closing a phase with too few survivors, or
// with a neighbourhood too small to reconstruct a secret, aborts the round
// with an error wrapping ErrAborted and ErrTooFewSurvivors (or
// ErrDisconnected, ErrReconstruct). Closing the unmask phase reconstructs
// the secrets and computes the Result.
func (s *Server) ClosePhase() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	p := s.stage
	if p > stUnmask {
		return fmt.Errorf("%w: the round is done", ErrWrongPhase)
	}
	prev := s.prev(p)
	for i, l := range s.level {
		if l == prev && s.got[i] {
			s.level[i] = p
		}
	}
	clear(s.got)
	var err error
	switch p {
	case stAdvertise, stShare:
		s.prune(p)
		if c := s.count(p); c < s.cfg.MinSurvivors {
			err = fmt.Errorf("%w: %d clients completed %v, need %d", ErrTooFewSurvivors, c, p.phase(), s.cfg.MinSurvivors)
		}
	case stMasked:
		err = s.checkUnmaskable()
		if err == nil && s.cfg.Signed {
			for i, l := range s.level {
				if l >= stMasked {
					s.survivors = append(s.survivors, s.g.ids[i])
				}
			}
		}
	case stCheck:
		err = s.checkSigned()
	case stUnmask:
		err = s.unmask()
	}
	if err != nil {
		return s.abort(err)
	}
	s.stage = s.next(p)
	if s.stage == stDone {
		s.release()
	}
	return nil
}

func (s *Server) abort(cause error) error {
	s.stage = stAborted
	s.err = fmt.Errorf("%w: %w", ErrAborted, cause)
	clear(s.sum)
	s.release()
	return s.err
}

// release drops everything but the result.
func (s *Server) release() {
	s.sum, s.uploads, s.selfSeed, s.maskKey, s.adverts, s.keys = nil, nil, nil, nil, nil, nil
	s.survivors, s.checkTags = nil, nil
}

func (s *Server) count(p stage) int {
	c := 0
	for _, l := range s.level {
		if l >= p {
			c++
		}
	}
	return c
}

// prune removes from U_p, repeatedly, every client with fewer than
// Threshold neighbours in U_p: its secrets could not be shared with, or
// reconstructed by, enough neighbours. A pruned client is treated as having
// dropped in phase p.
func (s *Server) prune(p stage) {
	t := s.cfg.Threshold
	if s.g.complete {
		if s.count(p)-1 < t {
			for i, l := range s.level {
				if l >= p {
					s.level[i] = p - 1
				}
			}
		}
		return
	}
	cnt := make([]int, s.g.size())
	var queue, nb []int
	for i, l := range s.level {
		if l < p {
			continue
		}
		nb = s.g.neighbours(i, nb)
		for _, j := range nb {
			if s.level[j] >= p {
				cnt[i]++
			}
		}
		if cnt[i] < t {
			s.level[i] = p - 1
			queue = append(queue, i)
		}
	}
	for len(queue) > 0 {
		i := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		nb = s.g.neighbours(i, nb)
		for _, j := range nb {
			if s.level[j] < p {
				continue
			}
			if cnt[j]--; cnt[j] < t {
				s.level[j] = p - 1
				queue = append(queue, j)
			}
		}
	}
}

// checkUnmaskable runs when the masked-input phase closes, before any
// client is asked to reveal anything. Every survivor needs Threshold
// surviving neighbours to reconstruct its self-mask seed, every dropped
// client with a surviving neighbour needs as many to reconstruct its mask
// key, and the survivors must form one connected component (otherwise the
// unmasked sum of each component would be learned separately).
func (s *Server) checkUnmaskable() error {
	t := s.cfg.Threshold
	n3 := s.count(stMasked)
	if n3 < s.cfg.MinSurvivors {
		return fmt.Errorf("%w: %d masked inputs, need %d", ErrTooFewSurvivors, n3, s.cfg.MinSurvivors)
	}
	var nb []int
	for i, l := range s.level {
		if l < stShare {
			continue
		}
		c := 0
		if s.g.complete {
			c = n3
			if l >= stMasked {
				c--
			}
		} else {
			nb = s.g.neighbours(i, nb)
			for _, j := range nb {
				if s.level[j] >= stMasked {
					c++
				}
			}
		}
		if c < t && (l >= stMasked || c > 0) {
			return fmt.Errorf("%w: client %d has %d surviving neighbours, threshold %d", ErrTooFewSurvivors, s.g.ids[i], c, t)
		}
	}
	if s.g.complete {
		return nil
	}
	// Breadth-first search over the survivors.
	seen := make([]bool, s.g.size())
	var queue []int
	for i, l := range s.level {
		if l >= stMasked {
			seen[i] = true
			queue = append(queue, i)
			break
		}
	}
	reached := 0
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		reached++
		nb = s.g.neighbours(i, nb)
		for _, j := range nb {
			if !seen[j] && s.level[j] >= stMasked {
				seen[j] = true
				queue = append(queue, j)
			}
		}
	}
	if reached != n3 {
		return fmt.Errorf("%w: %d of %d survivors reachable", ErrDisconnected, reached, n3)
	}
	return nil
}

// unmask reconstructs the secrets and removes every mask from the sum.
func (s *Server) unmask() error {
	t := s.cfg.Threshold
	if n4 := s.count(stUnmask); n4 < t {
		return fmt.Errorf("%w: %d clients answered the unmask request, threshold %d", ErrTooFewSurvivors, n4, t)
	}
	if s.selfSeed == nil { // no responses at all; unreachable after the check above
		return fmt.Errorf("%w: no shares", ErrTooFewSurvivors)
	}
	// The owners whose secret is needed: the self-mask seed of every
	// survivor, the mask key of every dropped client with a surviving
	// neighbour (whose mask must be cancelled).
	type task struct {
		owner int
		self  bool
	}
	var tasks []task
	var nb []int
	for i, l := range s.level {
		switch {
		case l >= stMasked:
			tasks = append(tasks, task{i, true})
		case l == stShare:
			nb = s.g.neighbours(i, nb)
			if slices.ContainsFunc(nb, func(j int) bool { return s.level[j] >= stMasked }) {
				tasks = append(tasks, task{i, false})
			}
		}
	}
	for _, tk := range tasks {
		held := s.maskKey[tk.owner]
		if tk.self {
			held = s.selfSeed[tk.owner]
		}
		if len(held) < t {
			return fmt.Errorf("%w: %d shares of client %d's secret, threshold %d", ErrTooFewSurvivors, len(held), s.g.ids[tk.owner], t)
		}
	}

	jobs := make([][]maskJob, len(tasks))
	errs := make([]error, len(tasks))
	w := min(s.workers, len(tasks))
	recoverEvery := func(k int) {
		var nb []int // scratch
		for x := k; x < len(tasks); x += w {
			jobs[x], errs[x] = s.recoverMasks(tasks[x].owner, tasks[x].self, &nb)
		}
	}
	if w <= 1 {
		recoverEvery(0) // on the caller's goroutine, as applyMasks does with one worker
	} else {
		var wg sync.WaitGroup
		for k := range w {
			wg.Go(func() { recoverEvery(k) })
		}
		wg.Wait()
	}
	var all []maskJob
	for x := range tasks {
		if errs[x] != nil {
			return errs[x]
		}
		all = append(all, jobs[x]...)
	}
	applyMasks(s.sum, all, maskWidth(s.cfg.Bits), s.workers)
	reduce(s.sum, s.cfg.Bits)

	var ids []uint32
	for i, l := range s.level {
		if l >= stMasked {
			ids = append(ids, s.g.ids[i])
		}
	}
	s.result = Result{Sum: s.sum, Clients: ids, Count: len(ids)}
	return nil
}

// recoverMasks reconstructs one secret of client u from the first Threshold
// shares (by holder id) and returns the masks it cancels: the negated self
// mask of a survivor, or the pairwise masks between a dropped client and
// its surviving neighbours.
func (s *Server) recoverMasks(u int, self bool, nb *[]int) ([]maskJob, error) {
	t := s.cfg.Threshold
	held := s.maskKey[u]
	if self {
		held = s.selfSeed[u]
	}
	held = slices.Clone(held)
	slices.SortFunc(held, func(a, b heldShare) int { return cmp.Compare(a.holder, b.holder) })
	xs := make([]uint64, t)
	ys := make([][]uint64, t)
	for k := range t {
		xs[k] = holderX(s.g.ids[held[k].holder])
		ys[k] = held[k].value[:]
	}
	secret, err := shamirCombine(xs, ys)
	id := s.g.ids[u]
	if err != nil {
		return nil, fmt.Errorf("%w: client %d", err, id)
	}
	if self {
		seed := deriveKey(secret[:], labelSelfMask, &s.digest, []uint32{id})
		return []maskJob{newMaskJob(seed, true)}, nil
	}
	sk, err := ecdh.X25519().NewPrivateKey(secret[:])
	if err != nil {
		return nil, fmt.Errorf("%w: client %d: %v", ErrReconstruct, id, err)
	}
	if !bytes.Equal(sk.PublicKey().Bytes(), s.adverts[u].MaskKey) {
		return nil, fmt.Errorf("%w: mask key of client %d does not match its public key", ErrReconstruct, id)
	}
	var jobs []maskJob
	*nb = s.g.neighbours(u, *nb)
	for _, v := range *nb {
		if s.level[v] < stMasked {
			continue
		}
		pk, err := ecdh.X25519().NewPublicKey(s.adverts[v].MaskKey)
		if err != nil {
			return nil, fmt.Errorf("%w: client %d: %v", ErrBadKey, s.g.ids[v], err)
		}
		shared, err := sk.ECDH(pk)
		if err != nil {
			return nil, fmt.Errorf("%w: client %d: %v", ErrBadKey, s.g.ids[v], err)
		}
		seed := deriveKey(shared, labelPairMask, &s.digest, pairIDs(id, s.g.ids[v]))
		// v added this mask if u > v and subtracted it otherwise.
		jobs = append(jobs, newMaskJob(seed, u > v))
	}
	return jobs, nil
}
