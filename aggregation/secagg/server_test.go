package secagg

import (
	"errors"
	"slices"
	"testing"
)

func TestServerRejects(t *testing.T) {
	cfg := testConfig(8, 6, 16, 0, 3)
	a, b, late := cfg.Clients[0], cfg.Clients[1], cfg.Clients[7]

	// Servers at each phase; `late` never advertises keys.
	at := func(t *testing.T, p Phase) (*Server, map[uint32]*Client) {
		srv, clients := newRound(t, cfg)
		for srv.Phase() < p {
			var skip map[uint32]bool
			if srv.Phase() == PhaseAdvertiseKeys {
				skip = map[uint32]bool{late: true}
			}
			advance(t, srv, clients, skip)
		}
		return srv, clients
	}
	// sent returns the message client id sends in the open phase.
	sent := func(t *testing.T, srv *Server, clients map[uint32]*Client, id uint32) any {
		t.Helper()
		c := clients[id]
		switch srv.Phase() {
		case PhaseAdvertiseKeys:
			m, err := c.AdvertiseKeys()
			if err != nil {
				t.Fatal(err)
			}
			return m
		case PhaseShareKeys:
			in, err := srv.PeerKeys(id)
			if err != nil {
				t.Fatal(err)
			}
			m, err := c.ShareKeys(in)
			if err != nil {
				t.Fatal(err)
			}
			return m
		case PhaseMaskedInput:
			in, err := srv.ShareDelivery(id)
			if err != nil {
				t.Fatal(err)
			}
			m, err := c.MaskedInput(in, stepInput(cfg, id))
			if err != nil {
				t.Fatal(err)
			}
			return m
		case PhaseUnmask:
			in, err := srv.UnmaskRequest(id)
			if err != nil {
				t.Fatal(err)
			}
			m, err := c.Unmask(in)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		t.Fatalf("no message in phase %v", srv.Phase())
		return nil
	}

	tests := []struct {
		name  string
		phase Phase
		call  func(t *testing.T, srv *Server, clients map[uint32]*Client) error
		want  error
	}{
		{"advert-wrong-round", PhaseAdvertiseKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(KeyAdvert)
			m.Round++
			return srv.HandleKeyAdvert(m)
		}, ErrWrongRound},
		{"advert-other-config", PhaseAdvertiseKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			other := cfg
			other.VectorLen++
			c, err := NewClient(other, a, nil)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := c.AdvertiseKeys()
			return srv.HandleKeyAdvert(m)
		}, ErrWrongRound},
		{"advert-unknown-client", PhaseAdvertiseKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(KeyAdvert)
			m.Client = 1
			return srv.HandleKeyAdvert(m)
		}, ErrUnknownClient},
		{"advert-duplicate", PhaseAdvertiseKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(KeyAdvert)
			if err := srv.HandleKeyAdvert(m); err != nil {
				t.Fatal(err)
			}
			return srv.HandleKeyAdvert(m)
		}, ErrDuplicate},
		{"advert-short-key", PhaseAdvertiseKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(KeyAdvert)
			m.CipherKey = nil
			return srv.HandleKeyAdvert(m)
		}, ErrBadLength},
		{"advert-long-signature", PhaseAdvertiseKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(KeyAdvert)
			m.Signature = make([]byte, MaxSignatureLen+1)
			return srv.HandleKeyAdvert(m)
		}, ErrBadLength},
		{"advert-replayed-keys", PhaseAdvertiseKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(KeyAdvert)
			if err := srv.HandleKeyAdvert(m); err != nil {
				t.Fatal(err)
			}
			m.Client = b
			return srv.HandleKeyAdvert(m)
		}, ErrBadKey},
		{"advert-after-close", PhaseShareKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m, _ := cl[late].AdvertiseKeys()
			return srv.HandleKeyAdvert(m)
		}, ErrPhaseClosed},
		{"upload-early", PhaseAdvertiseKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			return srv.HandleShareUpload(ShareUpload{Round: cfg.Round, From: a})
		}, ErrWrongPhase},
		{"peer-keys-early", PhaseAdvertiseKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			_, err := srv.PeerKeys(a)
			return err
		}, ErrWrongPhase},
		{"peer-keys-dropped", PhaseShareKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			_, err := srv.PeerKeys(late)
			return err
		}, ErrDropped},
		{"peer-keys-unknown", PhaseShareKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			_, err := srv.PeerKeys(2)
			return err
		}, ErrUnknownClient},
		{"upload-from-dropped", PhaseShareKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			return srv.HandleShareUpload(ShareUpload{Round: cfg.Round, From: late})
		}, ErrDropped},
		{"upload-missing-share", PhaseShareKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(ShareUpload)
			m.Shares = m.Shares[1:]
			return srv.HandleShareUpload(m)
		}, ErrMalformed},
		{"upload-extra-share", PhaseShareKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(ShareUpload)
			m.Shares = append(m.Shares, SealedShare{Peer: late, Ciphertext: make([]byte, SealedShareLen)})
			return srv.HandleShareUpload(m)
		}, ErrMalformed},
		{"upload-short-ciphertext", PhaseShareKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(ShareUpload)
			m.Shares[2].Ciphertext = m.Shares[2].Ciphertext[1:]
			return srv.HandleShareUpload(m)
		}, ErrBadLength},
		{"upload-duplicate", PhaseShareKeys, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(ShareUpload)
			if err := srv.HandleShareUpload(m); err != nil {
				t.Fatal(err)
			}
			return srv.HandleShareUpload(m)
		}, ErrDuplicate},
		{"masked-wrong-length", PhaseMaskedInput, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(MaskedInput)
			m.Values = append(m.Values, 0)
			return srv.HandleMaskedInput(m)
		}, ErrBadLength},
		{"masked-out-of-range", PhaseMaskedInput, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(MaskedInput)
			m.Values[0] = 1 << 16
			return srv.HandleMaskedInput(m)
		}, ErrOutOfRange},
		{"masked-from-dropped", PhaseMaskedInput, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			return srv.HandleMaskedInput(MaskedInput{Round: cfg.Round, From: late, Values: make([]uint64, cfg.VectorLen)})
		}, ErrDropped},
		{"masked-wrong-round", PhaseMaskedInput, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(MaskedInput)
			m.Round = 7
			return srv.HandleMaskedInput(m)
		}, ErrWrongRound},
		{"result-early", PhaseMaskedInput, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			_, err := srv.Result()
			return err
		}, ErrWrongPhase},
		{"unmask-short-share", PhaseUnmask, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(UnmaskResponse)
			m.SelfMaskShares[0].Value = m.SelfMaskShares[0].Value[1:]
			return srv.HandleUnmaskResponse(m)
		}, ErrBadLength},
		{"unmask-not-field-element", PhaseUnmask, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(UnmaskResponse)
			m.SelfMaskShares[0].Value[0] = fieldP
			return srv.HandleUnmaskResponse(m)
		}, ErrOutOfRange},
		{"unmask-wrong-kind", PhaseUnmask, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			m := sent(t, srv, cl, a).(UnmaskResponse)
			m.MaskKeyShares = append(m.MaskKeyShares, m.SelfMaskShares[0])
			m.SelfMaskShares = m.SelfMaskShares[1:]
			return srv.HandleUnmaskResponse(m)
		}, ErrMalformed},
		{"close-after-done", PhaseDone, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			return srv.ClosePhase()
		}, ErrWrongPhase},
		{"unmask-after-done", PhaseDone, func(t *testing.T, srv *Server, cl map[uint32]*Client) error {
			return srv.HandleUnmaskResponse(UnmaskResponse{Round: cfg.Round, From: a})
		}, ErrPhaseClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, clients := at(t, tt.phase)
			if err := tt.call(t, srv, clients); !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestServerAfterAbort checks that every call fails with ErrAborted once the
// round aborted, and that no sum is available.
func TestServerAfterAbort(t *testing.T) {
	cfg := testConfig(6, 4, 16, 0, 0) // t = 3
	srv, clients := newRound(t, cfg)
	skip := map[uint32]bool{}
	for _, id := range cfg.Clients[:4] {
		skip[id] = true
	}
	if err := advanceErr(t, srv, clients, skip); !errors.Is(err, ErrTooFewSurvivors) || !errors.Is(err, ErrAborted) {
		t.Fatalf("ClosePhase() = %v, want ErrAborted and ErrTooFewSurvivors", err)
	}
	id := cfg.Clients[5]
	calls := map[string]error{
		"HandleKeyAdvert":      srv.HandleKeyAdvert(KeyAdvert{Round: cfg.Round, Client: id}),
		"HandleShareUpload":    srv.HandleShareUpload(ShareUpload{Round: cfg.Round, From: id}),
		"HandleMaskedInput":    srv.HandleMaskedInput(MaskedInput{Round: cfg.Round, From: id, Values: make([]uint64, 4)}),
		"HandleUnmaskResponse": srv.HandleUnmaskResponse(UnmaskResponse{Round: cfg.Round, From: id}),
		"ClosePhase":           srv.ClosePhase(),
	}
	_, calls["PeerKeys"] = srv.PeerKeys(id)
	_, calls["ShareDelivery"] = srv.ShareDelivery(id)
	_, calls["UnmaskRequest"] = srv.UnmaskRequest(id)
	_, calls["Result"] = srv.Result()
	for name, err := range calls {
		if !errors.Is(err, ErrAborted) {
			t.Errorf("%s after abort: error = %v, want ErrAborted", name, err)
		}
	}
	if s := srv.Survivors(); s != nil {
		t.Errorf("Survivors() after abort = %v, want nil", s)
	}
}

// TestServerDetectsBadShares corrupts the mask-key shares of a dropped
// client: the reconstructed key does not match its public key.
func TestServerDetectsBadShares(t *testing.T) {
	cfg := testConfig(6, 4, 16, 0, 3)
	gone := cfg.Clients[2]
	srv, clients := unmaskReady(t, cfg, map[uint32]bool{gone: true})
	for _, id := range srv.Awaiting() {
		in, err := srv.UnmaskRequest(id)
		if err != nil {
			t.Fatal(err)
		}
		m, err := clients[id].Unmask(in)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.MaskKeyShares) != 1 || m.MaskKeyShares[0].Peer != gone {
			t.Fatalf("MaskKeyShares = %v, want the share of %d", m.MaskKeyShares, gone)
		}
		m.MaskKeyShares[0].Value[1] = fieldAdd(m.MaskKeyShares[0].Value[1], 1)
		if err := srv.HandleUnmaskResponse(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.ClosePhase(); !errors.Is(err, ErrReconstruct) {
		t.Fatalf("ClosePhase() = %v, want ErrReconstruct", err)
	}
}

func TestServerAwaitingAndSurvivors(t *testing.T) {
	cfg := testConfig(5, 4, 16, 0, 2)
	srv, clients := newRound(t, cfg)
	if got := srv.Awaiting(); !slices.Equal(got, cfg.Clients) {
		t.Fatalf("Awaiting() = %v, want %v", got, cfg.Clients)
	}
	play(t, srv, clients, map[uint32]bool{cfg.Clients[4]: true})
	if got, want := srv.Awaiting(), cfg.Clients[4:]; !slices.Equal(got, want) {
		t.Errorf("Awaiting() = %v, want %v", got, want)
	}
	if err := srv.ClosePhase(); err != nil {
		t.Fatal(err)
	}
	if got, want := srv.Survivors(), cfg.Clients[:4]; !slices.Equal(got, want) {
		t.Errorf("Survivors() = %v, want %v", got, want)
	}
}

// TestDroppedClientWithSilentNeighbours drops a client after it shared keys
// and then silences all its neighbours in the unmask phase: nobody can give
// the shares of its mask key, so the round must abort rather than return a
// sum that still carries its pairwise masks.
func TestDroppedClientWithSilentNeighbours(t *testing.T) {
	cfg := testConfig(40, 4, 16, 8, 2)
	gone := cfg.Clients[5]
	nb, err := cfg.Neighbours(gone)
	if err != nil {
		t.Fatal(err)
	}
	silent := map[uint32]bool{}
	for _, id := range nb {
		silent[id] = true
	}
	srv, clients := unmaskReady(t, cfg, map[uint32]bool{gone: true})
	err = advanceErr(t, srv, clients, silent)
	if !errors.Is(err, ErrTooFewSurvivors) || !errors.Is(err, ErrAborted) {
		t.Fatalf("ClosePhase() = %v, want ErrAborted and ErrTooFewSurvivors", err)
	}
}
