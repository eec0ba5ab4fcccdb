package client

import (
	"errors"
	"fmt"
)

// Errors callers branch on with errors.Is.
var (
	// ErrCorrupt: a file of the local store failed its checksum or
	// authentication, is truncated, or is inconsistent with the others. The
	// store is not used; see Remove.
	ErrCorrupt = errors.New("client: local store is corrupt")
	// ErrWrongKey: the store in Config.Dir was written with another key.
	ErrWrongKey = errors.New("client: wrong key for local store")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("client: closed")
	// ErrNoModel: no model has been installed yet (see SetModel and Sync).
	ErrNoModel = errors.New("client: no model")
	// ErrNoFederation: Config.Federation is nil, so the Client cannot
	// take part in rounds or fetch models.
	ErrNoFederation = errors.New("client: no federation configured")
	// ErrNotOptedIn: participation was asked for but the user has not
	// opted in.
	ErrNotOptedIn = errors.New("client: user has not opted in")
	// ErrOptedOut: the user opted out (or deleted their data) while a
	// round was under way; nothing further was handed to the network.
	ErrOptedOut = errors.New("client: user opted out")
	// ErrBudgetExhausted: the device's own ledger has spent the privacy
	// budget of its Policy; it takes part in no further rounds.
	ErrBudgetExhausted = errors.New("client: privacy budget exhausted")
	// ErrDeclined: the device declined a round; the error is a
	// *DeclineError saying why.
	ErrDeclined = errors.New("client: round declined")
	// ErrNoRound: the coordinator has no round for this device now. A
	// Federation returns it from Join.
	ErrNoRound = errors.New("client: no round offered")
	// ErrBusy: a round is already under way on this Client.
	ErrBusy = errors.New("client: a round is already under way")
	// ErrInvalidInteraction: Record was given an interaction it does not
	// keep: an item ID that is empty, too long or not UTF-8, an unknown
	// kind, a value that is not finite, a negative weight, or a rating
	// outside [MinRating, MaxRating]. The error says which.
	ErrInvalidInteraction = errors.New("client: invalid interaction")
)

// Reason says why a device declined a round. Values start at 1 and are
// only ever appended: they are stored in the ledger.
type Reason uint8

// Reasons for declining a round.
const (
	// ReasonCohort: the round aggregates fewer devices than
	// Policy.MinCohort.
	ReasonCohort Reason = iota + 1
	// ReasonNoise: the round's noise multiplier is below
	// Policy.MinNoiseMultiplier.
	ReasonNoise
	// ReasonClip: the round's clipping norm is above Policy.MaxClipNorm
	// (or absent).
	ReasonClip
	// ReasonBudget: taking part would spend more than the lifetime budget.
	ReasonBudget
	// ReasonInvalid: the round's announced parameters are malformed.
	ReasonInvalid
	// ReasonNoData: the device has nothing the round's model can learn
	// from.
	ReasonNoData
)

func (r Reason) String() string {
	switch r {
	case ReasonCohort:
		return "cohort_too_small"
	case ReasonNoise:
		return "noise_too_low"
	case ReasonClip:
		return "clip_too_large"
	case ReasonBudget:
		return "over_budget"
	case ReasonInvalid:
		return "invalid_offer"
	case ReasonNoData:
		return "no_data"
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// MarshalText makes reasons read as words in JSON reports.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (r *Reason) UnmarshalText(b []byte) error {
	for x := ReasonCohort; x <= ReasonNoData; x++ {
		if x.String() == string(b) {
			*r = x
			return nil
		}
	}
	return fmt.Errorf("client: unknown reason %q", b)
}

// DeclineError reports a round the device declined before anything was
// sent. It matches ErrDeclined, and ErrBudgetExhausted when the reason is
// the budget.
type DeclineError struct {
	Round  uint64
	Reason Reason
	Detail string // what fell short, for logs: "noise multiplier 0.5 < 1"
}

func (e *DeclineError) Error() string {
	return fmt.Sprintf("client: declined round %d: %v: %s", e.Round, e.Reason, e.Detail)
}

// Unwrap lets errors.Is match ErrDeclined and, for ReasonBudget,
// ErrBudgetExhausted.
func (e *DeclineError) Unwrap() []error {
	if e.Reason == ReasonBudget {
		return []error{ErrDeclined, ErrBudgetExhausted}
	}
	return []error{ErrDeclined}
}

// corruptf returns an error wrapping ErrCorrupt.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}
