package secagg

import (
	"errors"
	"reflect"
	"testing"
)

var sentinels = []error{
	ErrConfig, ErrWrongRound, ErrWrongPhase, ErrPhaseClosed, ErrUnknownClient,
	ErrNotNeighbour, ErrDropped, ErrDuplicate, ErrBadLength, ErrOutOfRange,
	ErrMalformed, ErrBadKey, ErrDecrypt, ErrConflictingReveal,
	ErrTooFewSurvivors, ErrDisconnected, ErrReconstruct, ErrAborted,
	ErrBadSignature, ErrTooFewTags, ErrInconsistent,
}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// mutate edits the message pointed to by v as ops dictate: it walks the
// integer, slice and nested struct fields and sets, flips, truncates,
// extends or swaps them.
func mutate(v reflect.Value, ops []byte) {
	var fields []reflect.Value
	var walk func(reflect.Value)
	walk = func(x reflect.Value) {
		switch x.Kind() {
		case reflect.Struct:
			for i := range x.NumField() {
				walk(x.Field(i))
			}
		case reflect.Slice:
			fields = append(fields, x)
			for i := range x.Len() {
				walk(x.Index(i))
			}
		case reflect.Uint64, reflect.Uint32, reflect.Uint8:
			fields = append(fields, x)
		}
	}
	walk(v.Elem())
	for len(ops) >= 3 && len(fields) > 0 {
		f := fields[int(ops[0])%len(fields)]
		op, arg := ops[1], ops[2]
		ops = ops[3:]
		switch f.Kind() {
		case reflect.Slice:
			switch op % 4 {
			case 0:
				f.SetLen(int(arg) % (f.Len() + 1))
			case 1:
				f.Set(reflect.Append(f, reflect.Zero(f.Type().Elem())))
			case 2:
				if f.Len() > 1 {
					i, j := int(arg)%f.Len(), int(arg/2)%f.Len()
					a, b := reflect.ValueOf(f.Index(i).Interface()), reflect.ValueOf(f.Index(j).Interface())
					f.Index(i).Set(b)
					f.Index(j).Set(a)
				}
			case 3:
				f.Set(reflect.Zero(f.Type()))
			}
			return // the field list is stale now
		default:
			switch op % 4 {
			case 0:
				f.SetUint(f.Uint() ^ 1<<(arg%64))
			case 1:
				f.SetUint(uint64(arg))
			case 2:
				f.SetUint(f.Uint() + 1)
			case 3:
				f.SetUint(^uint64(0))
			}
		}
	}
}

// FuzzMessages mutates each kind of message, in both directions, and
// checks that the receiver neither panics nor returns anything but a
// sentinel error.
func FuzzMessages(f *testing.F) {
	for w := range 8 {
		f.Add(uint8(w), []byte{})
		f.Add(uint8(w), []byte{0, 0, 0})
		f.Add(uint8(w), []byte{3, 1, 0, 5, 2, 7})
		f.Add(uint8(w), []byte{9, 2, 1, 1, 3, 0})
		f.Add(uint8(w), []byte{4, 0, 200})
	}
	cfg := testConfig(5, 3, 8, 0, 2)
	f.Fuzz(func(t *testing.T, which uint8, ops []byte) {
		srv, clients := newRound(t, cfg)
		phase := Phase(which%4 + 1)
		toServer := which&4 == 0
		for srv.Phase() < phase {
			advance(t, srv, clients, nil)
		}
		id := cfg.Clients[0]
		c := clients[id]
		var err error
		switch phase {
		case PhaseAdvertiseKeys:
			m, _ := c.AdvertiseKeys()
			mutate(reflect.ValueOf(&m), ops)
			err = srv.HandleKeyAdvert(m)
		case PhaseShareKeys:
			in, _ := srv.PeerKeys(id)
			if toServer {
				m, _ := c.ShareKeys(in)
				mutate(reflect.ValueOf(&m), ops)
				err = srv.HandleShareUpload(m)
			} else {
				mutate(reflect.ValueOf(&in), ops)
				_, err = c.ShareKeys(in)
			}
		case PhaseMaskedInput:
			in, _ := srv.ShareDelivery(id)
			x := stepInput(cfg, id)
			if toServer {
				m, _ := c.MaskedInput(in, x)
				mutate(reflect.ValueOf(&m), ops)
				err = srv.HandleMaskedInput(m)
			} else {
				mutate(reflect.ValueOf(&in), ops)
				_, err = c.MaskedInput(in, x)
			}
		case PhaseUnmask:
			in, _ := srv.UnmaskRequest(id)
			if toServer {
				m, _ := c.Unmask(in)
				mutate(reflect.ValueOf(&m), ops)
				err = srv.HandleUnmaskResponse(m)
			} else {
				mutate(reflect.ValueOf(&in), ops)
				_, err = c.Unmask(in)
			}
		}
		if err != nil && !isSentinel(err) {
			t.Fatalf("phase %v: error %v wraps no sentinel", phase, err)
		}
		// The round must still finish or abort cleanly. Clients that refuse
		// (a mutated ciphertext makes its receivers refuse) count as dropped.
		for srv.Phase() <= PhaseUnmask {
			for _, id := range srv.Awaiting() {
				if err := step(srv, clients[id]); err != nil && !isSentinel(err) {
					t.Fatalf("phase %v, client %d: %v wraps no sentinel", srv.Phase(), id, err)
				}
			}
			if err := srv.ClosePhase(); err != nil {
				if !isSentinel(err) {
					t.Fatalf("ClosePhase: %v wraps no sentinel", err)
				}
				return
			}
		}
	})
}

// step plays the open phase for one client and returns the first error.
func step(srv *Server, c *Client) error {
	switch srv.Phase() {
	case PhaseAdvertiseKeys:
		m, err := c.AdvertiseKeys()
		if err != nil {
			return err
		}
		return srv.HandleKeyAdvert(m)
	case PhaseShareKeys:
		in, err := srv.PeerKeys(c.ID())
		if err != nil {
			return err
		}
		m, err := c.ShareKeys(in)
		if err != nil {
			return err
		}
		return srv.HandleShareUpload(m)
	case PhaseMaskedInput:
		in, err := srv.ShareDelivery(c.ID())
		if err != nil {
			return err
		}
		m, err := c.MaskedInput(in, stepInput(c.cfg, c.ID()))
		if err != nil {
			return err
		}
		return srv.HandleMaskedInput(m)
	case PhaseConsistencyCheck:
		in, err := srv.ConsistencyRequest(c.ID())
		if err != nil {
			return err
		}
		m, err := c.ConsistencyCheck(in)
		if err != nil {
			return err
		}
		return srv.HandleConsistencyResponse(m)
	case PhaseUnmask:
		in, err := srv.UnmaskRequest(c.ID())
		if err != nil {
			return err
		}
		m, err := c.Unmask(in)
		if err != nil {
			return err
		}
		return srv.HandleUnmaskResponse(m)
	}
	return nil
}

// FuzzSignedMessages mutates the messages of a signed round, those that
// only signed rounds have (consistency request and response, signatures in
// the unmask request) and the signed key adverts, and checks that the
// receiver neither panics nor returns anything but a sentinel error, and
// that the round still finishes or aborts cleanly.
func FuzzSignedMessages(f *testing.F) {
	for w := range 8 {
		f.Add(uint8(w), []byte{})
		f.Add(uint8(w), []byte{0, 0, 0})
		f.Add(uint8(w), []byte{3, 1, 0, 5, 2, 7})
		f.Add(uint8(w), []byte{9, 2, 1, 1, 3, 0})
		f.Add(uint8(w), []byte{4, 0, 200})
	}
	cfg := signedConfig(5, 3, 8, 0, 0)
	ca := newTestCA()
	idents := map[uint32]*testIdentity{}
	for _, id := range cfg.Clients {
		idents[id] = ca.issue(id)
	}
	f.Fuzz(func(t *testing.T, which uint8, ops []byte) {
		srv, err := NewServer(cfg, ServerOptions{Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		clients := map[uint32]*Client{}
		for _, id := range cfg.Clients {
			if clients[id], err = NewSignedClient(cfg, id, idents[id], clientRand(1, id)); err != nil {
				t.Fatal(err)
			}
		}
		order := []Phase{PhaseAdvertiseKeys, PhaseShareKeys, PhaseConsistencyCheck, PhaseUnmask}
		phase := order[which%4]
		toServer := which&4 == 0
		for srv.Phase() != phase {
			advance(t, srv, clients, nil)
		}
		id := cfg.Clients[0]
		c := clients[id]
		switch phase {
		case PhaseAdvertiseKeys:
			m, _ := c.AdvertiseKeys()
			mutate(reflect.ValueOf(&m), ops)
			err = srv.HandleKeyAdvert(m)
		case PhaseShareKeys:
			in, _ := srv.PeerKeys(id)
			mutate(reflect.ValueOf(&in), ops)
			var up ShareUpload
			if up, err = c.ShareKeys(in); err == nil {
				err = srv.HandleShareUpload(up)
			}
		case PhaseConsistencyCheck:
			in, _ := srv.ConsistencyRequest(id)
			if toServer {
				m, _ := c.ConsistencyCheck(in)
				mutate(reflect.ValueOf(&m), ops)
				err = srv.HandleConsistencyResponse(m)
			} else {
				mutate(reflect.ValueOf(&in), ops)
				_, err = c.ConsistencyCheck(in)
			}
		case PhaseUnmask:
			in, _ := srv.UnmaskRequest(id)
			mutate(reflect.ValueOf(&in), ops)
			_, err = c.Unmask(in)
		}
		if err != nil && !isSentinel(err) {
			t.Fatalf("phase %v: error %v wraps no sentinel", phase, err)
		}
		for p := srv.Phase(); p != PhaseDone && p != PhaseAborted; p = srv.Phase() {
			for _, id := range srv.Awaiting() {
				if err := step(srv, clients[id]); err != nil && !isSentinel(err) {
					t.Fatalf("phase %v, client %d: %v wraps no sentinel", p, id, err)
				}
			}
			if err := srv.ClosePhase(); err != nil {
				if !isSentinel(err) {
					t.Fatalf("ClosePhase: %v wraps no sentinel", err)
				}
				return
			}
		}
	})
}
