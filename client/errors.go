package client

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/fedrec/fedrec/coordinator/wire"
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
	// Federation returns it from Join; the network's is a *NoRoundError
	// that says when to check in again.
	ErrNoRound = errors.New("client: no round offered")
	// ErrBusy: a round is already under way on this Client.
	ErrBusy = errors.New("client: a round is already under way")
	// ErrInvalidInteraction: Record was given an interaction it does not
	// keep: an item ID that is empty, too long or not UTF-8, an unknown
	// kind, a value that is not finite, a negative weight, or a rating
	// outside [MinRating, MaxRating]. The error says which.
	ErrInvalidInteraction = errors.New("client: invalid interaction")
	// ErrInvalidArgument: a Config, NetworkConfig, DialerConfig or an
	// argument is invalid; the error names the field. Fix the call.
	ErrInvalidArgument = errors.New("client: invalid argument")
	// ErrUnavailable: no coordinator could be reached within the call's
	// budget (DialerConfig.Budget) or they all said they were not ready
	// (down, partitioned, restarting). Nothing was shared. Retry later,
	// from the next background job.
	ErrUnavailable = errors.New("client: coordinators unavailable")
	// ErrUnauthenticated: the cluster refused the device's certificate
	// (missing, expired, revoked, of another CA) or its client ID. Get a
	// new certificate from the app's backend and make a new Dialer; do
	// not retry as is.
	ErrUnauthenticated = errors.New("client: refused by the cluster: unauthenticated")
	// ErrCatalogueMismatch: the app's item catalogue (NetworkConfig.Items)
	// does not match the cluster's model: another length, or another
	// order or content than the catalogue digest the model carries. The
	// model is not installed (it would label recommendations with the
	// wrong items). Fetch the catalogue again from the app's backend.
	ErrCatalogueMismatch = errors.New("client: item catalogue does not match the model")
	// ErrClientIDMismatch: NetworkConfig.ClientID is not the ID of the
	// device certificate the Dialer presents.
	ErrClientIDMismatch = errors.New("client: client ID does not match the device certificate")
	// ErrLocked: another Client (in this process or another) has the
	// directory open. Close it first; one Client per directory.
	ErrLocked = errors.New("client: directory in use by another Client")
	// ErrMissing: files of the store were removed: the directory is
	// empty or partial while its anchor (Config.Anchor) or its own files
	// say it held data. Nothing is used; the app decides: restore the
	// files, or start over with Reset (the privacy spent is kept).
	ErrMissing = errors.New("client: local store files are missing")
	// ErrRolledBack: the directory holds an older copy of the store than
	// its anchor (Config.Anchor) recorded, or another store: restored
	// from a backup or copied. It is not used, since its ledger would
	// give back privacy budget already spent. Start over with Reset (the
	// privacy spent is kept) or put the newer files back.
	ErrRolledBack = errors.New("client: local store was rolled back")
)

// unavailableError is a failure to reach any coordinator: it matches
// ErrUnavailable and whatever its cause matches (a *wire.Error with
// wire.CodeOf, context errors).
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return fmt.Sprintf("%v: %v", ErrUnavailable, e.err) }

func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// netError is an error of the cluster's that an app branches on: it
// matches its sentinel and keeps the *wire.Error for wire.CodeOf.
type netError struct {
	sentinel error
	err      error
}

func (e *netError) Error() string { return e.err.Error() }

func (e *netError) Unwrap() []error { return []error{e.sentinel, e.err} }

// classify gives a network error its sentinel: ErrUnauthenticated for a
// refused certificate or client ID, ErrUnavailable for a node that is not
// ready.
func classify(err error) error {
	var s error
	switch wire.CodeOf(err) {
	case wire.CodeUnauthenticated, wire.CodeForbidden:
		s = ErrUnauthenticated
	case wire.CodeUnavailable:
		s = ErrUnavailable
	default:
		return err
	}
	if errors.Is(err, s) {
		return err
	}
	return &netError{sentinel: s, err: err}
}

// maxQuoted bounds what an error message quotes of an untrusted or
// app-supplied string (an item ID).
const maxQuoted = 64

// quote returns s quoted for an error message, cut to maxQuoted bytes
// with its full length said.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return fmt.Sprintf("%q", s)
	}
	cut := s[:maxQuoted]
	for !utf8.ValidString(cut) && len(cut) > maxQuoted-4 {
		cut = cut[:len(cut)-1]
	}
	return fmt.Sprintf("%q... (%d bytes)", cut, len(s))
}

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
	// ReasonConditions: the device is not in the conditions the policy
	// requires (Policy.RequireUnmetered, RequireCharging, RequireIdle).
	ReasonConditions
	// ReasonTooLarge: the round would cost the device more bytes than
	// Policy.MaxRoundBytes.
	ReasonTooLarge
	// ReasonSecAgg: the round does not protect the update from a
	// malicious coordinator as the policy requires: not a signed secure
	// round, or one whose threshold resists fewer colluding devices than
	// Policy.MinSecAggColluders.
	ReasonSecAgg
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
	case ReasonConditions:
		return "device_conditions"
	case ReasonTooLarge:
		return "round_too_large"
	case ReasonSecAgg:
		return "secagg_too_weak"
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// MarshalText makes reasons read as words in JSON reports.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (r *Reason) UnmarshalText(b []byte) error {
	for x := ReasonCohort; x <= ReasonTooLarge; x++ {
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

// NoRoundError is the ErrNoRound of a coordinator that did not select the
// device: RetryAfter is when to check in again, the coordinator's pace
// (spread over the population so that devices do not all come back at
// once) with the device's own jitter. An app that schedules its own
// background jobs should not run the next Participate sooner.
type NoRoundError struct {
	RetryAfter time.Duration
}

func (e *NoRoundError) Error() string {
	return fmt.Sprintf("%v: check in again in %v", ErrNoRound, e.RetryAfter)
}

func (e *NoRoundError) Unwrap() error { return ErrNoRound }
