package secagg

import (
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
)

// TestSignedRoundSum runs signed rounds, complete and sparse, with
// dropouts at every point, and checks the sum.
func TestSignedRoundSum(t *testing.T) {
	for _, c := range []cohort{
		{n: 10, d: 33, bits: 16},             // complete, t = 5 (default)
		{n: 40, d: 20, bits: 32, degree: 16}, // sparse, t = 9 (default)
		{n: 40, d: 20, bits: 32, degree: 12, threshold: 4},
	} {
		for _, drop := range []float64{0, 0.05} {
			t.Run(fmt.Sprintf("n=%d/k=%d/t=%d/drop=%v", c.n, c.degree, c.threshold, drop), func(t *testing.T) {
				t.Parallel()
				checkRound(t, simulation{
					cfg:  signedConfig(c.n, c.d, c.bits, c.degree, c.threshold),
					drop: [numDropPoints]float64{drop, drop, drop, drop, drop},
					seed: 11,
				})
			})
		}
	}
}

// TestSignedDigest checks that Signed is bound into the config digest, and
// only when set, so unsigned digests are unchanged.
func TestSignedDigest(t *testing.T) {
	u, _ := testConfig(5, 3, 8, 0, 2).normalize()
	s, _ := signedConfig(5, 3, 8, 0, 2).normalize()
	if u.digest() == s.digest() {
		t.Fatal("signed and unsigned configs have the same digest")
	}
	// The digest of this unsigned config before Signed existed.
	const want = "a3abbb5dbbd7acf78b0bb0321d6e7e6d8fb1cb6613949f0e07a08037a479fe0a"
	if d := u.digest(); hex.EncodeToString(d[:]) != want {
		t.Errorf("unsigned digest = %x, want %s (unchanged)", d, want)
	}
}

func TestSignedConstructors(t *testing.T) {
	ca := newTestCA()
	if _, err := NewClient(signedConfig(5, 3, 8, 0, 2), 3, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("NewClient(signed config) error = %v, want ErrConfig", err)
	}
	if _, err := NewSignedClient(testConfig(5, 3, 8, 0, 2), 3, ca.issue(3), nil); !errors.Is(err, ErrConfig) {
		t.Errorf("NewSignedClient(unsigned config) error = %v, want ErrConfig", err)
	}
	if _, err := NewSignedClient(signedConfig(5, 3, 8, 0, 2), 3, nil, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("NewSignedClient(nil identity) error = %v, want ErrConfig", err)
	}
}

func TestActiveThreshold(t *testing.T) {
	tests := []struct {
		degree, corrupt, want int
	}{
		{4, 0, 3}, {8, 0, 5}, {9, 0, 5}, {20, 4, 13}, {99, 0, 50}, {99, 32, 66},
	}
	for _, tt := range tests {
		if got := ActiveThreshold(tt.degree, tt.corrupt); got != tt.want {
			t.Errorf("ActiveThreshold(%d, %d) = %d, want %d", tt.degree, tt.corrupt, got, tt.want)
		}
	}
	for _, tt := range []struct {
		cfg  Config
		want int
	}{
		{testConfig(10, 3, 8, 0, 0), -1},    // unsigned
		{signedConfig(10, 3, 8, 0, 4), -1},  // t = 4 <= k/2 = 4.5
		{signedConfig(10, 3, 8, 0, 0), 0},   // default t = 5 > 4.5
		{signedConfig(10, 3, 8, 0, 7), 4},   // 2*7-9-1
		{signedConfig(100, 3, 8, 20, 0), 1}, // t = 11, k = 20
	} {
		got, err := tt.cfg.ActiveTolerance()
		if err != nil || got != tt.want {
			t.Errorf("ActiveTolerance(n=%d k=%d t=%d signed=%v) = %d, %v, want %d", len(tt.cfg.Clients), tt.cfg.Degree, tt.cfg.Threshold, tt.cfg.Signed, got, err, tt.want)
		}
		err = tt.cfg.CheckActive(max(tt.want, 0))
		if (err == nil) != (tt.want >= 0) || (err != nil && !errors.Is(err, ErrConfig)) {
			t.Errorf("CheckActive(%d) = %v", max(tt.want, 0), err)
		}
	}
}

// TestConsistencyResponseRejects: the server keeps only tags of the form
// an honest client sends, each for a neighbour in the survivor set.
func TestConsistencyResponseRejects(t *testing.T) {
	cfg := signedConfig(12, 4, 16, 6, 0)
	const dropped = 2
	tests := []struct {
		name string
		edit func(s *Server, m *ConsistencyResponse)
		want error
	}{
		{"honest", func(*Server, *ConsistencyResponse) {}, nil},
		{"no-tags", func(_ *Server, m *ConsistencyResponse) { m.Tags = nil }, nil},
		{"unordered", func(_ *Server, m *ConsistencyResponse) { m.Tags[0], m.Tags[1] = m.Tags[1], m.Tags[0] }, ErrMalformed},
		{"repeated", func(_ *Server, m *ConsistencyResponse) { m.Tags[1].Peer = m.Tags[0].Peer }, ErrMalformed},
		{"self", func(_ *Server, m *ConsistencyResponse) { m.Tags = []ConsistencyTag{{Peer: m.From, Tag: m.Tags[0].Tag}} }, ErrUnknownClient},
		{"unknown", func(_ *Server, m *ConsistencyResponse) { m.Tags[len(m.Tags)-1].Peer = 1 << 30 }, ErrUnknownClient},
		{"not-neighbour", func(s *Server, m *ConsistencyResponse) {
			i, _ := s.g.index(m.From)
			for j, id := range s.g.ids {
				if j != i && !s.g.adjacent(i, j) {
					m.Tags = []ConsistencyTag{{Peer: id, Tag: m.Tags[0].Tag}}
					return
				}
			}
			t.Fatal("complete graph")
		}, ErrUnknownClient},
		{"dropped-neighbour", func(_ *Server, m *ConsistencyResponse) {
			m.Tags = []ConsistencyTag{{Peer: cfg.Clients[dropped], Tag: m.Tags[0].Tag}}
		}, ErrInconsistent},
		{"short", func(_ *Server, m *ConsistencyResponse) { m.Tags[0].Tag = m.Tags[0].Tag[:TagLen-1] }, ErrBadLength},
		{"long", func(_ *Server, m *ConsistencyResponse) { m.Tags[0].Tag = append(m.Tags[0].Tag, 0) }, ErrBadLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, clients, _ := newSignedRound(t, cfg, newTestCA())
			d := cfg.Clients[dropped]
			advance(t, srv, clients, nil)
			advance(t, srv, clients, nil)
			advance(t, srv, clients, map[uint32]bool{d: true})
			// A survivor beside the dropped client, so its tags name it.
			di, _ := srv.g.index(d)
			from := uint32(0)
			for j, id := range srv.g.ids {
				if j != di && srv.g.adjacent(di, j) {
					from = id
					break
				}
			}
			req, err := srv.ConsistencyRequest(from)
			if err != nil {
				t.Fatal(err)
			}
			m, err := clients[from].ConsistencyCheck(req)
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(srv, &m)
			if err := srv.HandleConsistencyResponse(m); !errors.Is(err, tt.want) {
				t.Errorf("HandleConsistencyResponse = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestDeriveKeysPrefix: the first of several keys is deriveKey's, so a
// signed round's share keys are those of an unsigned round.
func TestDeriveKeysPrefix(t *testing.T) {
	digest := [32]byte{7}
	ids := []uint32{3, 9}
	var ks [2][32]byte
	deriveKeys([]byte("secret"), labelShareKey, &digest, ids, ks[:])
	if k := deriveKey([]byte("secret"), labelShareKey, &digest, ids); ks[0] != k {
		t.Errorf("deriveKeys first key %x, deriveKey %x", ks[0], k)
	}
	if ks[0] == ks[1] {
		t.Error("deriveKeys gave the same key twice")
	}
}
