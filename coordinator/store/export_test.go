package store

import "github.com/fedrec/fedrec/coordinator/wire"

// For the tests of package store_test.

// TrainingFromWire is trainingFromWire.
var TrainingFromWire = trainingFromWire

// MaxReasonLen is maxReasonLen.
const MaxReasonLen = maxReasonLen

// ToWire is w on the wire.
func (w EventWeights) ToWire() wire.EventWeights { return w.toWire() }

// SetLastRound sets the last round opened, as if round r had been.
func (s *State) SetLastRound(r uint64) { s.lastRound = r }
