package secagg

import (
	"testing"
)

// A step-by-step driver for tests that poke at single phases.

func newRound(t testing.TB, cfg Config) (*Server, map[uint32]*Client) {
	t.Helper()
	return newRoundSeed(t, cfg, 1)
}

func newRoundSeed(t testing.TB, cfg Config, seed uint64) (*Server, map[uint32]*Client) {
	t.Helper()
	srv, err := NewServer(cfg, ServerOptions{Workers: 1})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	clients := map[uint32]*Client{}
	for _, id := range cfg.Clients {
		c, err := NewClient(cfg, id, clientRand(seed, id))
		if err != nil {
			t.Fatalf("NewClient(%d): %v", id, err)
		}
		clients[id] = c
	}
	return srv, clients
}

// stepInput is the input of client id in step-driven rounds.
func stepInput(cfg Config, id uint32) []uint64 {
	x := make([]uint64, cfg.VectorLen)
	m := valueMask(cfg.Bits)
	for i := range x {
		x[i] = (uint64(id)*1_000_003 + uint64(i)*7) & m
	}
	return x
}

// play runs the open phase for every client the server awaits except those
// in skip, and returns the messages the clients sent. Any error fails the
// test.
func play(t testing.TB, srv *Server, clients map[uint32]*Client, skip map[uint32]bool) map[uint32]any {
	t.Helper()
	sent := map[uint32]any{}
	phase := srv.Phase()
	for _, id := range srv.Awaiting() {
		if skip[id] {
			continue
		}
		c := clients[id]
		var err error
		switch phase {
		case PhaseAdvertiseKeys:
			var m KeyAdvert
			if m, err = c.AdvertiseKeys(); err == nil {
				sent[id] = m
				err = srv.HandleKeyAdvert(m)
			}
		case PhaseShareKeys:
			var in PeerKeys
			var m ShareUpload
			if in, err = srv.PeerKeys(id); err == nil {
				if m, err = c.ShareKeys(in); err == nil {
					sent[id] = m
					err = srv.HandleShareUpload(m)
				}
			}
		case PhaseMaskedInput:
			var in ShareDelivery
			var m MaskedInput
			if in, err = srv.ShareDelivery(id); err == nil {
				if m, err = c.MaskedInput(in, stepInput(c.cfg, id)); err == nil {
					sent[id] = m
					err = srv.HandleMaskedInput(m)
				}
			}
		case PhaseConsistencyCheck:
			var in ConsistencyRequest
			var m ConsistencyResponse
			if in, err = srv.ConsistencyRequest(id); err == nil {
				if m, err = c.ConsistencyCheck(in); err == nil {
					sent[id] = m
					err = srv.HandleConsistencyResponse(m)
				}
			}
		case PhaseUnmask:
			var in UnmaskRequest
			var m UnmaskResponse
			if in, err = srv.UnmaskRequest(id); err == nil {
				if m, err = c.Unmask(in); err == nil {
					sent[id] = m
					err = srv.HandleUnmaskResponse(m)
				}
			}
		default:
			t.Fatalf("play in phase %v", phase)
		}
		if err != nil {
			t.Fatalf("phase %v, client %d: %v", phase, id, err)
		}
	}
	return sent
}

// advance plays the open phase and closes it.
func advance(t testing.TB, srv *Server, clients map[uint32]*Client, skip map[uint32]bool) map[uint32]any {
	t.Helper()
	sent := play(t, srv, clients, skip)
	if err := srv.ClosePhase(); err != nil {
		t.Fatalf("ClosePhase: %v", err)
	}
	return sent
}

// advanceErr plays the open phase and returns the error closing it.
func advanceErr(t testing.TB, srv *Server, clients map[uint32]*Client, skip map[uint32]bool) error {
	t.Helper()
	play(t, srv, clients, skip)
	return srv.ClosePhase()
}

// maskedInputOf plays a round up to the masked inputs with the given seed
// and returns the first client's masked input.
func maskedInputOf(t testing.TB, cfg Config, seed uint64) []uint64 {
	t.Helper()
	srv, clients := newRoundSeed(t, cfg, seed)
	advance(t, srv, clients, nil)
	advance(t, srv, clients, nil)
	sent := play(t, srv, clients, nil)
	return sent[cfg.Clients[0]].(MaskedInput).Values
}
