package secagg

import (
	"bytes"
	"cmp"
	"crypto/ecdh"
	"errors"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
)

// The server is the adversary. Each test below runs one attack of an
// actively malicious coordinator on a signed round, checks that the honest
// clients refuse with the sentinel of the defence the attack runs into, and
// then tries to recover the victim's input from everything the server
// received (recoverInput). Each attack is one that succeeds against the
// round when its defence is removed; the tests that need it use a
// threshold below ActiveThreshold so that only the defence under test
// stands in the way (the threshold bound is then a second line).

// loot is what an adversarial server holds at the end of a round.
type loot struct {
	cfg Config // normalized
	// masked are the masked inputs received, by sender.
	masked map[uint32][]uint64
	// responses are the unmask responses received.
	responses []UnmaskResponse
	// colluders are clients run by the server, fake or corrupt: it knows
	// all their state.
	colluders []*Client
	// uploads are the share uploads received, by sender.
	uploads map[uint32]ShareUpload
	// subst holds the private keys of keys the server substituted for a
	// peer's, by the public key it relayed.
	subst map[[32]byte]*ecdh.PrivateKey
	// relayed are the adverts the server relayed to the victim, by peer.
	relayed map[uint32]KeyAdvert
}

type share struct {
	holder uint32
	value  []uint64
}

// sharesOf collects every share of owner's self-mask seed (self) or mask
// key the server can read.
func (l *loot) sharesOf(owner uint32, self bool, victim *Client) []share {
	var out []share
	for _, r := range l.responses {
		list := r.MaskKeyShares
		if self {
			list = r.SelfMaskShares
		}
		for _, s := range list {
			if s.Peer == owner {
				out = append(out, share{r.From, s.Value})
			}
		}
	}
	for _, c := range l.colluders {
		if p := c.peers[owner]; p != nil && slices.Contains(c.delivered, owner) {
			v := p.maskKeyShare
			if self {
				v = p.selfSeedShare
			}
			out = append(out, share{c.id, slices.Clone(v[:])})
		}
	}
	// Shares the owner encrypted to a key the server substituted.
	if up, ok := l.uploads[owner]; ok && victim != nil && victim.id == owner {
		for _, s := range up.Shares {
			priv := l.subst[[32]byte(l.relayed[s.Peer].CipherKey)]
			if priv == nil {
				continue
			}
			shared, err := priv.ECDH(victim.cipherKey.PublicKey())
			if err != nil {
				continue
			}
			key := deriveKey(shared, labelShareKey, &victim.digest, []uint32{owner, s.Peer})
			sk, b, err := openShares(key, &victim.digest, owner, s.Peer, s.Ciphertext)
			if err != nil {
				continue
			}
			v := sk
			if self {
				v = b
			}
			out = append(out, share{s.Peer, slices.Clone(v[:])})
		}
	}
	slices.SortFunc(out, func(a, b share) int { return cmp.Compare(a.holder, b.holder) })
	return slices.CompactFunc(out, func(a, b share) bool { return a.holder == b.holder })
}

func (l *loot) secret(owner uint32, self bool, victim *Client) ([secretLen]byte, bool) {
	sh := l.sharesOf(owner, self, victim)
	t := l.cfg.Threshold
	if len(sh) < t {
		return [secretLen]byte{}, false
	}
	xs, ys := make([]uint64, t), make([][]uint64, t)
	for i := range t {
		xs[i], ys[i] = holderX(sh[i].holder), sh[i].value
	}
	s, err := shamirCombine(xs, ys)
	return s, err == nil
}

// maskPriv returns a private key the server knows for client id's mask
// key: a colluder's, or one rebuilt from shares.
func (l *loot) maskPriv(id uint32, victim *Client) *ecdh.PrivateKey {
	for _, c := range l.colluders {
		if c.id == id && c.maskKey != nil {
			return c.maskKey
		}
	}
	s, ok := l.secret(id, false, victim)
	if !ok {
		return nil
	}
	k, err := ecdh.X25519().NewPrivateKey(s[:])
	if err != nil {
		return nil
	}
	return k
}

// recoverInput tries to remove every mask from the victim's masked input
// with what the server holds. The victim's Client is consulted only for
// public facts the server knows anyway: the public keys it relayed to it,
// and whose shares it delivered to it.
func (l *loot) recoverInput(v *Client) ([]uint64, bool) {
	y, ok := l.masked[v.id]
	if !ok {
		return nil, false
	}
	b, ok := l.secret(v.id, true, v)
	if !ok {
		return nil, false
	}
	jobs := []maskJob{newMaskJob(deriveKey(b[:], labelSelfMask, &v.digest, []uint32{v.id}), true)}
	sv := l.maskPriv(v.id, v)
	for _, w := range v.delivered {
		pub := v.peers[w].maskKey
		var shared []byte
		var err error
		switch {
		case sv != nil:
			shared, err = sv.ECDH(pub)
		case l.subst[[32]byte(pub.Bytes())] != nil:
			shared, err = l.subst[[32]byte(pub.Bytes())].ECDH(v.maskKey.PublicKey())
		default:
			sw := l.maskPriv(w, v)
			if sw == nil {
				return nil, false
			}
			shared, err = sw.ECDH(v.maskKey.PublicKey())
		}
		if err != nil {
			return nil, false
		}
		seed := deriveKey(shared, labelPairMask, &v.digest, pairIDs(v.id, w))
		jobs = append(jobs, newMaskJob(seed, !(w < v.id)))
	}
	x := slices.Clone(y)
	applyMasks(x, jobs, maskWidth(l.cfg.Bits), 1)
	reduce(x, l.cfg.Bits)
	return x, true
}

// checkNotRecovered fails the test if the victim's input can be rebuilt.
func checkNotRecovered(t *testing.T, l *loot, v *Client) {
	t.Helper()
	want := stepInput(l.cfg, v.id)
	if x, ok := l.recoverInput(v); ok && slices.Equal(x, want) {
		t.Fatalf("the server recovered client %d's input", v.id)
	}
}

// wantRefusal fails unless err wraps want.
func wantRefusal(t *testing.T, who uint32, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("client %d: error = %v, want %v", who, err, want)
	}
}

// signedUpToMasked plays a signed round honestly up to the masked inputs
// (closed) and returns the loot so far.
func signedUpToMasked(t *testing.T, cfg Config) (*Server, map[uint32]*Client, *loot) {
	t.Helper()
	srv, clients, _ := newSignedRound(t, cfg, newTestCA())
	advance(t, srv, clients, nil)
	advance(t, srv, clients, nil)
	sent := advance(t, srv, clients, nil)
	nc, _ := cfg.normalize()
	l := &loot{cfg: nc, masked: map[uint32][]uint64{}}
	for id, m := range sent {
		l.masked[id] = m.(MaskedInput).Values
	}
	return srv, clients, l
}

// lie runs the consistency check and unmask phases as a lying server:
// client id is sent the survivor set sets[id] to confirm, and then told
// that the neighbours in claims[id] survived and its other delivered
// neighbours dropped, with every tag the server holds from its neighbours
// for it (and a forged one from each other neighbour in sets[id]). Clients in corrupt confirm whatever set each recipient was sent
// and are not asked to unmask (the server has their state, tag keys
// included). It returns each honest client's first error.
func lie(t *testing.T, clients map[uint32]*Client, corrupt map[uint32]bool, sets, claims map[uint32][]uint32, l *loot) map[uint32]error {
	t.Helper()
	errs := map[uint32]error{}
	tags := map[uint32][]ConsistencyTag{}
	for _, id := range slices.Sorted(maps.Keys(sets)) {
		if corrupt[id] {
			continue
		}
		r, err := clients[id].ConsistencyCheck(ConsistencyRequest{Round: l.cfg.Round, To: id, Survivors: sets[id]})
		if err != nil {
			errs[id] = err
			continue
		}
		tags[id] = r.Tags
	}
	for _, id := range slices.Sorted(maps.Keys(claims)) {
		c := clients[id]
		if corrupt[id] || errs[id] != nil {
			continue
		}
		m := UnmaskRequest{Round: l.cfg.Round, To: id}
		for _, w := range c.delivered {
			if slices.Contains(claims[id], w) {
				m.Survivors = append(m.Survivors, w)
			} else {
				m.Dropped = append(m.Dropped, w)
			}
			if !slices.Contains(sets[id], w) {
				continue // relaying it would only give the lie away
			}
			if corrupt[w] { // confirms whatever set the recipient confirmed
				h := survivorSetHash(sets[id])
				m.Tags = append(m.Tags, ConsistencyTag{Peer: w, Tag: consistencyTag(&clients[w].peers[id].tagSend, &c.digest, &h)})
				continue
			}
			// An honest w tagged only the neighbours in the set it
			// confirmed; where it did not tag id, the server forges a tag.
			tag := bytes.Repeat([]byte{0xf0}, TagLen)
			if k := slices.IndexFunc(tags[w], func(pt ConsistencyTag) bool { return pt.Peer == id }); k >= 0 {
				tag = tags[w][k].Tag
			}
			m.Tags = append(m.Tags, ConsistencyTag{Peer: w, Tag: tag})
		}
		r, err := c.Unmask(m)
		if err != nil {
			errs[id] = err
			continue
		}
		l.responses = append(l.responses, r)
	}
	return errs
}

func without(ids []uint32, drop ...uint32) []uint32 {
	return slices.DeleteFunc(slices.Clone(ids), func(id uint32) bool { return slices.Contains(drop, id) })
}

func union(sets ...[]uint32) []uint32 {
	var out []uint32
	for _, s := range sets {
		out = append(out, s...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestAttackSubstitutedKeys: the server relays its own keys in place of
// the victim's neighbours' keys, to read the shares the victim encrypts to
// them (all of them: both of its secrets) and to know every pairwise mask.
// Defence: signed adverts, verified in ShareKeys (ErrBadSignature).
func TestAttackSubstitutedKeys(t *testing.T) {
	for _, how := range []string{"unsigned", "original-signature", "corrupt-device-signs", "rogue-ca"} {
		t.Run(how, func(t *testing.T) {
			cfg := signedConfig(7, 16, 16, 0, 0) // t = 4 = ActiveThreshold(6, 0)
			ca := newTestCA()
			srv, clients, idents := newSignedRound(t, cfg, ca)
			advance(t, srv, clients, nil)
			v, corrupt := cfg.Clients[0], cfg.Clients[1]
			victim := clients[v]
			rogue := newTestCA()
			l := &loot{masked: map[uint32][]uint64{}, uploads: map[uint32]ShareUpload{},
				subst: map[[32]byte]*ecdh.PrivateKey{}, relayed: map[uint32]KeyAdvert{}}
			l.cfg, _ = cfg.normalize()

			in, err := srv.PeerKeys(v)
			if err != nil {
				t.Fatal(err)
			}
			cipherPriv := map[uint32]*ecdh.PrivateKey{}
			for i := range in.Peers {
				a := &in.Peers[i]
				ck, sk := newX25519(t), newX25519(t)
				cipherPriv[a.Client] = ck
				l.subst[[32]byte(ck.PublicKey().Bytes())] = ck
				l.subst[[32]byte(sk.PublicKey().Bytes())] = sk
				a.CipherKey, a.MaskKey = ck.PublicKey().Bytes(), sk.PublicKey().Bytes()
				msg := advertMessage(&victim.digest, a.Client, a.CipherKey, a.MaskKey)
				var signer *testIdentity
				switch how {
				case "unsigned":
					a.Signature, a.Credential = nil, nil
				case "corrupt-device-signs":
					signer = idents[corrupt]
				case "rogue-ca":
					signer = rogue.issue(a.Client)
				}
				if signer != nil {
					a.Credential = signer.Credential()
					if a.Signature, err = signer.Sign(msg); err != nil {
						t.Fatal(err)
					}
				}
				l.relayed[a.Client] = *a
			}
			up, err := victim.ShareKeys(in)
			if err == nil {
				// Undefended: the victim uploads shares encrypted to the
				// server's keys, and gets made-up shares back so that it
				// sends its masked input.
				l.uploads[v] = up
				if err := srv.HandleShareUpload(up); err != nil {
					t.Fatal(err)
				}
				play(t, srv, clients, map[uint32]bool{v: true})
				if err := srv.ClosePhase(); err != nil {
					t.Fatal(err)
				}
				d := ShareDelivery{Round: cfg.Round, To: v}
				var zero [ShareLen]uint64
				for _, a := range in.Peers {
					shared, err := cipherPriv[a.Client].ECDH(victim.cipherKey.PublicKey())
					if err != nil {
						t.Fatal(err)
					}
					key := deriveKey(shared, labelShareKey, &victim.digest, []uint32{a.Client, v})
					d.Shares = append(d.Shares, SealedShare{Peer: a.Client, Ciphertext: sealShares(key, &victim.digest, a.Client, v, &zero, &zero)})
				}
				m, err := victim.MaskedInput(d, stepInput(cfg, v))
				if err != nil {
					t.Fatal(err)
				}
				l.masked[v] = m.Values
			}
			checkNotRecovered(t, l, victim)
			wantRefusal(t, v, err, ErrBadSignature)
		})
	}
}

var testKeys atomic.Uint32

func newX25519(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(clientRand(uint64(len(t.Name())), uint32(testKeys.Add(1))))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestAttackMadeUpClients: the server fills the cohort with clients it
// made up, holding no device certificate (their credentials come from a
// CA of the server's own), so that the victim's neighbours are mostly its
// own and hold Threshold shares of both of the victim's secrets.
// Defence: signed adverts (ErrBadSignature).
func TestAttackMadeUpClients(t *testing.T) {
	cfg := signedConfig(7, 16, 16, 0, 0) // t = 4
	ca, rogue := newTestCA(), newTestCA()
	srv, err := NewServer(cfg, ServerOptions{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	honest := cfg.Clients[:3]
	v := honest[0]
	clients := map[uint32]*Client{}
	l := &loot{masked: map[uint32][]uint64{}}
	l.cfg, _ = cfg.normalize()
	for _, id := range cfg.Clients {
		ident := ca.issue(id)
		if !slices.Contains(honest, id) {
			ident = rogue.issue(id)
		}
		if clients[id], err = NewSignedClient(cfg, id, ident, clientRand(3, id)); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(honest, id) {
			l.colluders = append(l.colluders, clients[id])
		}
	}
	errs := map[uint32]error{}
	for srv.Phase() != PhaseConsistencyCheck && srv.Phase() != PhaseAborted {
		for _, id := range srv.Awaiting() {
			c := clients[id]
			if srv.Phase() == PhaseMaskedInput {
				in, err := srv.ShareDelivery(id)
				if err != nil {
					t.Fatal(err)
				}
				m, err := c.MaskedInput(in, stepInput(cfg, id))
				if err != nil {
					errs[id] = err
					continue
				}
				l.masked[id] = m.Values
				if err := srv.HandleMaskedInput(m); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := step(srv, c); err != nil {
				errs[id] = err
			}
		}
		srv.ClosePhase() // aborts once the honest clients have refused
	}
	checkNotRecovered(t, l, clients[v])
	for _, id := range honest {
		wantRefusal(t, id, errs[id], ErrBadSignature)
	}
}

// TestAttackSplitSurvivorSets: the server shows two halves of the cohort
// different survivor sets, each with the victim and without the other
// half, so that each half reveals the victim's self-mask seed and the
// other half's mask keys. Defence: Threshold tags on the confirmed set
// (ErrTooFewTags): the victim confirms one set, so one half is short.
// t = 4 with n = 9 is below ActiveThreshold(8, 0) = 5, where counting
// alone would already refuse.
func TestAttackSplitSurvivorSets(t *testing.T) {
	cfg := signedConfig(9, 16, 16, 0, 4)
	srv, clients, l := signedUpToMasked(t, cfg)
	_ = srv
	v, a, b := cfg.Clients[0], cfg.Clients[1:5], cfg.Clients[5:]
	sa, sb := union(a, []uint32{v}), union(b, []uint32{v})
	sets, claims := map[uint32][]uint32{v: sa}, map[uint32][]uint32{v: sa}
	for _, id := range a {
		sets[id], claims[id] = sa, sa
	}
	for _, id := range b {
		sets[id], claims[id] = sb, sb
	}
	errs := lie(t, clients, nil, sets, claims, l)
	checkNotRecovered(t, l, clients[v])
	for _, id := range b {
		wantRefusal(t, id, errs[id], ErrTooFewTags)
	}
}

// TestAttackLiveClientDropped: every client confirms the true survivor set,
// and then the server tells half of the victim's neighbours that it
// survived (revealing its self-mask seed) and the other half that it
// dropped (revealing its mask key). Defence: the unmask request must agree
// with the confirmed set (ErrInconsistent). t = 3 with n = 7 is below
// ActiveThreshold(6, 0) = 4, where the share-reveal rule would suffice.
func TestAttackLiveClientDropped(t *testing.T) {
	cfg := signedConfig(7, 16, 16, 0, 3)
	_, clients, l := signedUpToMasked(t, cfg)
	v, x, y := cfg.Clients[0], cfg.Clients[1:4], cfg.Clients[4:]
	sets, claims := map[uint32][]uint32{}, map[uint32][]uint32{}
	for _, id := range cfg.Clients {
		sets[id], claims[id] = cfg.Clients, cfg.Clients
	}
	for _, id := range y {
		claims[id] = without(cfg.Clients, v)
	}
	_ = x
	errs := lie(t, clients, nil, sets, claims, l)
	checkNotRecovered(t, l, clients[v])
	for _, id := range y {
		wantRefusal(t, id, errs[id], ErrInconsistent)
	}
}

// TestAttackIsolate: with two corrupt clients, the server shows each honest
// client a round in which only it, the victim and the corrupt clients
// survived, so that each reveals the victim's self-mask seed and the
// others' mask keys. Defence: Threshold tags on the confirmed set
// (ErrTooFewTags): the corrupt clients confirm anything, but that is
// c = 2 < t = 3 tags. (t = 3 < ActiveThreshold(6, 2) = 5.)
func TestAttackIsolate(t *testing.T) {
	cfg := signedConfig(7, 16, 16, 0, 3)
	_, clients, l := signedUpToMasked(t, cfg)
	v, bad, honest := cfg.Clients[0], cfg.Clients[1:3], cfg.Clients[3:]
	corrupt := map[uint32]bool{}
	for _, id := range bad {
		corrupt[id] = true
		l.colluders = append(l.colluders, clients[id])
	}
	sets := map[uint32][]uint32{v: cfg.Clients}
	for _, id := range bad {
		sets[id] = cfg.Clients
	}
	for _, h := range honest {
		sets[h] = union([]uint32{v, h}, bad)
	}
	errs := lie(t, clients, corrupt, sets, sets, l)
	checkNotRecovered(t, l, clients[v])
	for _, id := range append([]uint32{v}, honest...) {
		wantRefusal(t, id, errs[id], ErrTooFewTags)
	}
}
