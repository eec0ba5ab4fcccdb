package secagg

import "errors"

// Sentinel errors. Every rejection returned by a Client or a Server wraps
// one of these, so callers can branch with errors.Is.
var (
	// ErrConfig reports an invalid Config; the message names the field.
	ErrConfig = errors.New("secagg: invalid config")

	// ErrWrongRound reports a message whose Round differs from the Config's.
	ErrWrongRound = errors.New("secagg: wrong round")
	// ErrWrongPhase reports a message or call for a phase that is not open
	// yet (or an out-of-order call on a Client).
	ErrWrongPhase = errors.New("secagg: wrong phase")
	// ErrPhaseClosed reports a message for a phase that has been closed.
	ErrPhaseClosed = errors.New("secagg: phase closed")
	// ErrUnknownClient reports a client id that is not in Config.Clients.
	ErrUnknownClient = errors.New("secagg: unknown client")
	// ErrNotNeighbour reports a peer that is not a neighbour of the client
	// in the round's graph.
	ErrNotNeighbour = errors.New("secagg: not a neighbour")
	// ErrDropped reports a message from, or for, a client that is not among
	// the survivors of the previous phase.
	ErrDropped = errors.New("secagg: client dropped from the round")
	// ErrDuplicate reports a second message from the same client in a phase.
	ErrDuplicate = errors.New("secagg: duplicate message")
	// ErrBadLength reports a key, ciphertext, share or vector of the wrong
	// length.
	ErrBadLength = errors.New("secagg: wrong length")
	// ErrOutOfRange reports a value that is not below 2^Bits, or a share
	// element that is not a field element.
	ErrOutOfRange = errors.New("secagg: value out of range")
	// ErrMalformed reports a message whose structure is wrong: peers missing,
	// repeated, out of order, or in the wrong list.
	ErrMalformed = errors.New("secagg: malformed message")
	// ErrBadKey reports a public key that is invalid, low-order, or reused.
	ErrBadKey = errors.New("secagg: bad public key")
	// ErrDecrypt reports an encrypted share that fails authentication.
	ErrDecrypt = errors.New("secagg: share decryption failed")
	// ErrConflictingReveal is returned by Client.Unmask when the server asks
	// for the self-mask share and the mask-key share of the same peer, in
	// one request or across requests. Revealing both would unmask that
	// peer's input.
	ErrConflictingReveal = errors.New("secagg: refusing to reveal both shares of a peer")
	// ErrBadSignature reports, in a signed round, a key advert whose
	// signature is missing or does not verify under the peer's identity: the
	// server, or whoever relayed it, may have substituted the keys.
	ErrBadSignature = errors.New("secagg: missing or invalid signature")
	// ErrTooFewTags is returned by Client.Unmask in a signed round when
	// fewer than Threshold neighbours validly confirmed (ConsistencyTag)
	// the survivor set the client confirmed. The client reveals nothing.
	ErrTooFewTags = errors.New("secagg: too few consistency tags")
	// ErrInconsistent reports, in a signed round, a survivor set or an
	// unmask request that contradicts what the client saw or confirmed: a
	// neighbour claimed to survive that delivered it no shares, the client
	// itself left out, or survivors and dropped clients that differ from the
	// confirmed set.
	ErrInconsistent = errors.New("secagg: inconsistent view of the round")

	// ErrTooFewSurvivors reports that fewer clients than the threshold
	// survived a phase, overall or in some neighbourhood. The round aborts.
	ErrTooFewSurvivors = errors.New("secagg: too few survivors")
	// ErrDisconnected reports that the graph between the surviving clients
	// fell apart; unmasking would reveal partial sums, so the round aborts.
	ErrDisconnected = errors.New("secagg: survivor graph disconnected")
	// ErrReconstruct reports shares that do not reconstruct a valid secret.
	// The round aborts.
	ErrReconstruct = errors.New("secagg: secret reconstruction failed")
	// ErrAborted is wrapped, together with the cause, by every Server call
	// after the round aborted.
	ErrAborted = errors.New("secagg: round aborted")
)
