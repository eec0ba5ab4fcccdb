package coordinator

import (
	"io"

	"github.com/fedrec/fedrec/coordinator/store"
)

// The replicated state lives in package store; these names keep the
// coordinator's API (cmd/fedrec, sim, the SDK's tests) as it was.
type (
	State        = store.State
	Training     = store.Training
	EventWeights = store.EventWeights
	NoiseMode    = store.NoiseMode
	Version      = store.Version
	OpenRound    = store.OpenRound
	RoundRecord  = store.RoundRecord
	LedgerEntry  = store.LedgerEntry
	Outcome      = store.Outcome
	BackupHeader = store.BackupHeader
)

// Noise modes and round outcomes: see package store.
const (
	NoiseOff         = store.NoiseOff
	NoiseCentral     = store.NoiseCentral
	NoiseDistributed = store.NoiseDistributed

	Committed = store.Committed
	Abandoned = store.Abandoned

	BackupMagic  = store.BackupMagic
	BackupFormat = store.BackupFormat
)

// Business rejections of log commands: see package store.
var (
	ErrConfigured = store.ErrConfigured
	ErrNotReady   = store.ErrNotReady
	ErrHasModel   = store.ErrHasModel
	ErrRoundOpen  = store.ErrRoundOpen
	ErrStaleRound = store.ErrStaleRound
	ErrStaleModel = store.ErrStaleModel
	ErrBadCommand = store.ErrBadCommand
	ErrBadBackup  = store.ErrBadBackup
)

// ParseNoiseMode parses off, central or distributed.
func ParseNoiseMode(s string) (NoiseMode, error) { return store.ParseNoiseMode(s) }

// ParseEventWeights parses the event weights of an implicit model (see
// store.ParseEventWeights).
func ParseEventWeights(s string) (EventWeights, error) { return store.ParseEventWeights(s) }

// DefaultEventWeights are the event weights of an implicit model unless
// configured.
func DefaultEventWeights() EventWeights { return store.DefaultEventWeights() }

// CatalogueOf returns the Training.Catalogue of the item IDs items, in the
// model's order.
func CatalogueOf(items []string) [32]byte { return store.CatalogueOf(items) }

// ReadBackupHeader reads and checks a backup's header (see
// store.ReadBackupHeader).
func ReadBackupHeader(r io.Reader) (BackupHeader, error) { return store.ReadBackupHeader(r) }

// ReadBackup reads a whole backup and checks it (see store.ReadBackup).
func ReadBackup(r io.Reader) (BackupHeader, *State, error) { return store.ReadBackup(r) }
