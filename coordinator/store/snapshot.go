package store

import (
	"crypto/sha256"
	"fmt"
	"io"
	"slices"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// WriteSnapshot writes s as a versioned snapshot: a header, then typed
// records in a fixed order (counters, configuration, nodes by id, models
// oldest first, optimizer, rounds, ledger, open round), then an end record.
// The same state always gives the same bytes.
func (s *State) WriteSnapshot(w io.Writer) error {
	sw, err := wire.NewSnapshotWriter(w)
	if err != nil {
		return err
	}
	var recs []wire.Record
	recs = append(recs, &wire.Counters{LastRound: s.lastRound})
	if s.config != nil {
		c := s.config.ToWire()
		recs = append(recs, &c)
	}
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range s.nodes {
			if !yield(id) {
				return
			}
		}
	}) {
		recs = append(recs, &wire.RegisterNode{ID: id, ClientAddr: s.nodes[id], AdminAddr: s.admins[id]})
	}
	for _, v := range s.models {
		m := v.Model
		recs = append(recs, &wire.ModelRecord{Version: v.Version, Round: v.Round, Digest: v.Digest[:], Kind: wire.KindOf(m.Kind), Items: m.Items, Rank: m.Rank, Params: m.Params})
	}
	if s.optM != nil {
		recs = append(recs, &wire.OptimizerRecord{M: s.optM, V: s.optV})
	}
	for i := range s.rounds {
		recs = append(recs, s.rounds[i].toWire())
	}
	for _, e := range s.ledger {
		recs = append(recs, e.toWire())
	}
	if s.open != nil {
		recs = append(recs, s.open.toWire())
	}
	for i := range s.changes {
		recs = append(recs, &s.changes[i])
	}
	for _, r := range recs {
		if err := sw.Write(r); err != nil {
			return err
		}
	}
	return sw.Close()
}

// ReadSnapshot builds a fresh state from a snapshot written by
// WriteSnapshot, checking it as it goes.
func ReadSnapshot(r io.Reader) (*State, error) {
	sr, err := wire.NewSnapshotReader(r)
	if err != nil {
		return nil, err
	}
	s := NewState()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("coordinator: snapshot: "+format, args...)
	}
	for {
		rec, err := sr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch rec := rec.(type) {
		case *wire.Counters:
			s.lastRound = rec.LastRound
		case *wire.TrainingConfig:
			t, err := trainingFromWire(rec)
			if err != nil {
				return nil, bad("%v", err)
			}
			s.config = &t
		case *wire.RegisterNode:
			s.nodes[rec.ID] = rec.ClientAddr
			if rec.AdminAddr != "" {
				s.admins[rec.ID] = rec.AdminAddr
			}
		case *wire.ModelRecord:
			if s.config == nil {
				return nil, bad("model before configuration")
			}
			m, d, err := s.checkParams(rec.Kind, rec.Items, rec.Rank, rec.Params, rec.Digest)
			if err != nil {
				return nil, bad("model %d: %v", rec.Version, err)
			}
			if cur := s.Current(); cur != nil && rec.Version <= cur.Version {
				return nil, bad("model %d after %d", rec.Version, cur.Version)
			}
			s.models = append(s.models, &Version{Version: rec.Version, Round: rec.Round, Digest: d, Model: m})
		case *wire.OptimizerRecord:
			cur := s.Current()
			if cur == nil || len(rec.M) != len(cur.Model.Params) || len(rec.V) != len(rec.M) {
				return nil, bad("optimizer state does not match the model")
			}
			s.optM, s.optV = rec.M, rec.V
		case *wire.RoundRecord:
			s.rounds = append(s.rounds, roundFromWire(rec))
		case *wire.LedgerEntry:
			s.ledger = append(s.ledger, ledgerFromWire(rec))
		case *wire.OpenRound:
			if len(rec.Digest) != sha256.Size {
				return nil, bad("open round %d: digest of %d bytes", rec.Round, len(rec.Digest))
			}
			s.open = openFromWire(rec)
		case *wire.TrainingChange:
			s.changes = append(s.changes, *rec)
		default:
			return nil, bad("unexpected record %T", rec)
		}
	}
	return s, nil
}
