package secagg

import (
	"errors"
	"slices"
	"testing"
)

// unmaskReady plays a round of cfg up to the unmask phase, with skip
// dropping after sharing keys, and returns the server and clients.
func unmaskReady(t *testing.T, cfg Config, skip map[uint32]bool) (*Server, map[uint32]*Client) {
	t.Helper()
	srv, clients := newRound(t, cfg)
	advance(t, srv, clients, nil)
	advance(t, srv, clients, nil)
	advance(t, srv, clients, skip)
	return srv, clients
}

func TestClientRefusesBothShares(t *testing.T) {
	cfg := testConfig(6, 4, 16, 0, 3)
	me, peer := cfg.Clients[0], cfg.Clients[1]
	others := cfg.Clients[2:]
	srv, clients := unmaskReady(t, cfg, nil)
	c := clients[me]

	honest, err := srv.UnmaskRequest(me)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(honest.Survivors, peer) {
		t.Fatalf("UnmaskRequest(%d).Survivors = %v, want %d in it", me, honest.Survivors, peer)
	}
	// Both shares of one peer in one request.
	both := UnmaskRequest{Round: cfg.Round, To: me, Survivors: honest.Survivors, Dropped: []uint32{peer}}
	if _, err := c.Unmask(both); !errors.Is(err, ErrConflictingReveal) {
		t.Fatalf("Unmask(peer both survived and dropped) error = %v, want ErrConflictingReveal", err)
	}
	// The refusal revealed nothing, so the honest request still works.
	first, err := c.Unmask(honest)
	if err != nil {
		t.Fatalf("Unmask(honest) = %v", err)
	}
	// A later request that claims the peer dropped must be refused: the
	// client has already revealed the peer's self-mask share.
	liar := UnmaskRequest{Round: cfg.Round, To: me, Survivors: others, Dropped: []uint32{peer}}
	if _, err := c.Unmask(liar); !errors.Is(err, ErrConflictingReveal) {
		t.Fatalf("Unmask(peer now dropped) error = %v, want ErrConflictingReveal", err)
	}
	// Repeating the honest request returns the same shares.
	again, err := c.Unmask(honest)
	if err != nil {
		t.Fatalf("Unmask(honest again) = %v", err)
	}
	if !slices.EqualFunc(first.SelfMaskShares, again.SelfMaskShares, func(a, b Share) bool {
		return a.Peer == b.Peer && slices.Equal(a.Value, b.Value)
	}) {
		t.Error("repeating a request returned different shares")
	}

	// The other way round: reveal the mask-key share first.
	c2 := clients[cfg.Clients[2]]
	dropFirst := UnmaskRequest{Round: cfg.Round, To: c2.ID(), Dropped: []uint32{peer}}
	for _, id := range cfg.Clients {
		if id != c2.ID() && id != peer {
			dropFirst.Survivors = append(dropFirst.Survivors, id)
		}
	}
	if _, err := c2.Unmask(dropFirst); err != nil {
		t.Fatalf("Unmask(peer dropped) = %v", err)
	}
	h2, _ := srv.UnmaskRequest(c2.ID())
	if _, err := c2.Unmask(h2); !errors.Is(err, ErrConflictingReveal) {
		t.Fatalf("Unmask(peer now survived) error = %v, want ErrConflictingReveal", err)
	}
}

func TestClientRejects(t *testing.T) {
	cfg := testConfig(12, 4, 16, 4, 2)
	nc, _ := cfg.normalize()
	g := newGraph(&nc)
	me := cfg.Clients[0]
	myIdx, _ := g.index(me)
	var stranger uint32 // a client that is not a neighbour of me
	for j, id := range g.ids {
		if j != myIdx && !g.adjacent(myIdx, j) {
			stranger = id
			break
		}
	}

	// Fresh clients at each phase, from identical seeds.
	atShare := func(t *testing.T) (*Client, PeerKeys) {
		srv, clients := newRound(t, cfg)
		advance(t, srv, clients, nil)
		in, err := srv.PeerKeys(me)
		if err != nil {
			t.Fatal(err)
		}
		return clients[me], in
	}
	atMasked := func(t *testing.T) (*Client, ShareDelivery) { return atMaskedInput(t, cfg, me) }
	atUnmask := func(t *testing.T) (*Client, UnmaskRequest) {
		srv, clients := unmaskReady(t, cfg, nil)
		in, err := srv.UnmaskRequest(me)
		if err != nil {
			t.Fatal(err)
		}
		return clients[me], in
	}
	x := stepInput(cfg, me)

	tests := []struct {
		name string
		call func(t *testing.T) error
		want error
	}{
		{"share-before-advertise", func(t *testing.T) error {
			c, err := NewClient(cfg, me, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.ShareKeys(PeerKeys{Round: cfg.Round, To: me})
			return err
		}, ErrWrongPhase},
		{"advertise-twice", func(t *testing.T) error {
			c, _ := atShare(t)
			_, err := c.AdvertiseKeys()
			return err
		}, ErrWrongPhase},
		{"peer-keys-wrong-round", func(t *testing.T) error {
			c, in := atShare(t)
			in.Round++
			_, err := c.ShareKeys(in)
			return err
		}, ErrWrongRound},
		{"peer-keys-other-config", func(t *testing.T) error {
			c, in := atShare(t)
			in.Peers[0].ConfigDigest = make([]byte, 32)
			_, err := c.ShareKeys(in)
			return err
		}, ErrWrongRound},
		{"peer-keys-wrong-recipient", func(t *testing.T) error {
			c, in := atShare(t)
			in.To++
			_, err := c.ShareKeys(in)
			return err
		}, ErrMalformed},
		{"peer-keys-unsorted", func(t *testing.T) error {
			c, in := atShare(t)
			slices.Reverse(in.Peers)
			_, err := c.ShareKeys(in)
			return err
		}, ErrMalformed},
		{"peer-keys-not-neighbour", func(t *testing.T) error {
			c, in := atShare(t)
			in.Peers[0].Client = stranger
			slices.SortFunc(in.Peers, func(a, b KeyAdvert) int { return int(a.Client) - int(b.Client) })
			_, err := c.ShareKeys(in)
			return err
		}, ErrNotNeighbour},
		{"peer-keys-unknown", func(t *testing.T) error {
			c, in := atShare(t)
			in.Peers[len(in.Peers)-1].Client = 1 << 31
			_, err := c.ShareKeys(in)
			return err
		}, ErrUnknownClient},
		{"peer-keys-short-key", func(t *testing.T) error {
			c, in := atShare(t)
			in.Peers[0].MaskKey = in.Peers[0].MaskKey[:31]
			_, err := c.ShareKeys(in)
			return err
		}, ErrBadLength},
		{"peer-keys-reused-key", func(t *testing.T) error {
			c, in := atShare(t)
			in.Peers[1].MaskKey = in.Peers[0].CipherKey
			_, err := c.ShareKeys(in)
			return err
		}, ErrBadKey},
		{"peer-keys-low-order", func(t *testing.T) error {
			c, in := atShare(t)
			in.Peers[0].CipherKey = make([]byte, 32) // the point 0
			_, err := c.ShareKeys(in)
			return err
		}, ErrBadKey},
		{"peer-keys-too-few", func(t *testing.T) error {
			c, in := atShare(t)
			in.Peers = in.Peers[:1]
			_, err := c.ShareKeys(in)
			return err
		}, ErrTooFewSurvivors},
		{"delivery-tampered", func(t *testing.T) error {
			c, in := atMasked(t)
			in.Shares[0].Ciphertext = slices.Clone(in.Shares[0].Ciphertext)
			in.Shares[0].Ciphertext[3] ^= 1
			_, err := c.MaskedInput(in, x)
			return err
		}, ErrDecrypt},
		{"delivery-swapped", func(t *testing.T) error {
			c, in := atMasked(t)
			in.Shares[0].Ciphertext, in.Shares[1].Ciphertext = in.Shares[1].Ciphertext, in.Shares[0].Ciphertext
			_, err := c.MaskedInput(in, x)
			return err
		}, ErrDecrypt},
		{"delivery-short", func(t *testing.T) error {
			c, in := atMasked(t)
			in.Shares[0].Ciphertext = in.Shares[0].Ciphertext[:10]
			_, err := c.MaskedInput(in, x)
			return err
		}, ErrBadLength},
		{"delivery-stranger", func(t *testing.T) error {
			c, in := atMasked(t)
			in.Shares = append(in.Shares, SealedShare{Peer: max(stranger, in.Shares[len(in.Shares)-1].Peer+1)})
			_, err := c.MaskedInput(in, x)
			if errors.Is(err, ErrUnknownClient) {
				return ErrNotNeighbour
			}
			return err
		}, ErrNotNeighbour},
		{"input-wrong-length", func(t *testing.T) error {
			c, in := atMasked(t)
			_, err := c.MaskedInput(in, x[1:])
			return err
		}, ErrBadLength},
		{"input-out-of-range", func(t *testing.T) error {
			c, in := atMasked(t)
			y := slices.Clone(x)
			y[2] = 1 << 16
			_, err := c.MaskedInput(in, y)
			return err
		}, ErrOutOfRange},
		{"unmask-missing-peer", func(t *testing.T) error {
			c, in := atUnmask(t)
			in.Survivors = in.Survivors[1:]
			_, err := c.Unmask(in)
			return err
		}, ErrMalformed},
		{"unmask-stranger", func(t *testing.T) error {
			c, in := atUnmask(t)
			in.Dropped = []uint32{stranger}
			_, err := c.Unmask(in)
			return err
		}, ErrNotNeighbour},
		{"unmask-too-few-survivors", func(t *testing.T) error {
			c, in := atUnmask(t)
			in.Dropped = append(in.Dropped, in.Survivors[1:]...)
			slices.Sort(in.Dropped)
			in.Survivors = in.Survivors[:1]
			_, err := c.Unmask(in)
			return err
		}, ErrTooFewSurvivors},
		{"unmask-wrong-round", func(t *testing.T) error {
			c, in := atUnmask(t)
			in.Round = 0
			_, err := c.Unmask(in)
			return err
		}, ErrWrongRound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(t); !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

// atMaskedInput returns client me of a fresh round of cfg (seed 1) at
// the masked-input phase, with the shares the server delivers to it.
func atMaskedInput(t *testing.T, cfg Config, me uint32) (*Client, ShareDelivery) {
	t.Helper()
	srv, clients := newRound(t, cfg)
	advance(t, srv, clients, nil)
	advance(t, srv, clients, nil)
	in, err := srv.ShareDelivery(me)
	if err != nil {
		t.Fatal(err)
	}
	return clients[me], in
}

// MaskInPlace masks as MaskedInput does, in the input itself, and leaves
// the input as it was when it refuses the delivery.
func TestMaskInPlace(t *testing.T) {
	cfg := testConfig(12, 40, 16, 4, 2)
	me := cfg.Clients[0]
	atMasked := func() (*Client, ShareDelivery) { return atMaskedInput(t, cfg, me) } // identical seeds: identical masks
	x := stepInput(cfg, me)
	c, in := atMasked()
	want, err := c.MaskedInput(in, x)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(x, stepInput(cfg, me)) {
		t.Fatal("MaskedInput changed its input")
	}
	c, in = atMasked()
	y := slices.Clone(x)
	bad := in
	bad.Shares = slices.Clone(in.Shares)
	bad.Shares[0].Ciphertext = slices.Clone(bad.Shares[0].Ciphertext)
	bad.Shares[0].Ciphertext[0] ^= 1
	if _, err := c.MaskInPlace(bad, y); err == nil || !slices.Equal(y, x) {
		t.Fatalf("MaskInPlace of a tampered delivery = %v, input changed: %v; want an error, the input as it was", err, !slices.Equal(y, x))
	}
	c, in = atMasked()
	got, err := c.MaskInPlace(in, y)
	switch {
	case err != nil:
		t.Fatal(err)
	case &got.Values[0] != &y[0]:
		t.Error("MaskInPlace's values are not its input")
	case !slices.Equal(got.Values, want.Values):
		t.Error("MaskInPlace masked otherwise than MaskedInput")
	}
}

func TestNewClientUnknown(t *testing.T) {
	cfg := testConfig(5, 4, 16, 0, 0)
	if _, err := NewClient(cfg, 1, nil); !errors.Is(err, ErrUnknownClient) {
		t.Errorf("NewClient(unknown id) error = %v, want ErrUnknownClient", err)
	}
	cfg.Bits = 0
	if _, err := NewClient(cfg, cfg.Clients[0], nil); !errors.Is(err, ErrConfig) {
		t.Errorf("NewClient(bad config) error = %v, want ErrConfig", err)
	}
}
