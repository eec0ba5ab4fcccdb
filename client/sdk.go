package client

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/fedrec/fedrec/aggregation/privacy"
	"github.com/fedrec/fedrec/client/internal/step"
	"github.com/fedrec/fedrec/model"
)

// Defaults of Config.
const (
	DefaultRetention       = 90 * 24 * time.Hour
	DefaultMaxInteractions = 10_000
)

// KeySize is the length of Config.Key: an AES-256 key.
const KeySize = 32

// Config configures a Client. The zero value of every field but Dir and Key
// means its documented default.
type Config struct {
	// Dir is the directory the SDK keeps the user's data in, created if
	// missing. The SDK owns the files named "fedrec.*" in it. In a
	// browser (js/wasm) it names the IndexedDB database instead.
	Dir string
	// Key encrypts the data at rest: 32 random bytes the app keeps in the
	// platform's key store (Android Keystore, iOS Keychain). New copies
	// it. In a browser it may be empty: the SDK then keeps a
	// non-extractable WebCrypto key in the database, which seals the
	// data key as Key would.
	Key []byte
	// Policy is what the device accepts from a round.
	Policy Policy
	// Retention is how long an interaction is kept; older ones are
	// dropped. Default DefaultRetention (90 days).
	Retention time.Duration
	// MaxInteractions bounds the interactions kept; the oldest go first.
	// Default DefaultMaxInteractions.
	MaxInteractions int
	// Train holds the local training settings used when a round does
	// not set its own, and to fit the user for recommendations. Zero means
	// model.Defaults of the model's kind, what a cluster trains with
	// unless its operator changed it.
	Train model.TrainConfig
	// Device reports the device's conditions (network, charging, idle),
	// which Policy.RequireUnmetered, RequireCharging and RequireIdle
	// need; nil means none is reported, and a policy requiring one is
	// refused.
	Device Device
	// Federation is the network side: nil means the Client never takes
	// part in rounds and never fetches models (Participate and Sync
	// return ErrNoFederation); the app installs models with SetModel.
	Federation Federation
	// Anchor keeps a record of the store outside Dir, so that a
	// directory restored from an older copy (ErrRolledBack) or emptied
	// (ErrMissing) is refused rather than used, and the privacy spent is
	// never given back; nil means no such check (see Anchor).
	Anchor Anchor
	// Logger receives the SDK's logs; nil means none.
	Logger *slog.Logger
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Rand drives local training and the device's noise; nil means a
	// generator seeded from crypto/rand. Tests pass a seeded one. The
	// Client uses it from one round at a time. In js/wasm the Gaussian
	// noise comes from crypto.getRandomValues whatever Rand is
	// (privacy.AddGaussian).
	Rand *rand.Rand

	// random supplies keys and nonces; nil means crypto/rand. Tests make
	// golden files with a seeded one.
	random io.Reader
}

func (c Config) withDefaults() Config {
	c.Policy = c.Policy.withDefaults()
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.MaxInteractions == 0 {
		c.MaxInteractions = DefaultMaxInteractions
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Rand == nil {
		c.Rand = privacy.NewSecureRand()
	}
	if c.random == nil {
		c.random = crand.Reader
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: Config.Dir is empty", ErrInvalidArgument)
	case len(c.Key) != KeySize && (len(c.Key) != 0 || !browser):
		return fmt.Errorf("%w: Config.Key has %d bytes, want %d", ErrInvalidArgument, len(c.Key), KeySize)
	case c.Retention < 0:
		return fmt.Errorf("%w: Config.Retention = %v, want >= 0", ErrInvalidArgument, c.Retention)
	case c.MaxInteractions < 0:
		return fmt.Errorf("%w: Config.MaxInteractions = %d, want >= 0", ErrInvalidArgument, c.MaxInteractions)
	}
	if c.Policy.requiresConditions() && c.Device == nil {
		return fmt.Errorf("%w: Config.Policy requires device conditions, and Config.Device is nil", ErrInvalidArgument)
	}
	if c.Train != (model.TrainConfig{}) {
		if err := c.Train.Validate(); err != nil {
			return fmt.Errorf("%w: Config.Train: %v", ErrInvalidArgument, err)
		}
	}
	return c.Policy.validate()
}

// Kind is the kind of an interaction. Values start at 1 and are only ever
// appended: they are stored.
type Kind uint8

// Kinds of interaction.
const (
	View Kind = iota + 1
	Click
	Cart // added to a cart or a list
	Purchase
	Rating // an explicit rating; Interaction.Value holds it
)

func (k Kind) String() string {
	switch k {
	case View:
		return "view"
	case Click:
		return "click"
	case Cart:
		return "cart"
	case Purchase:
		return "purchase"
	case Rating:
		return "rating"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// validate checks what the store needs of an interaction of kind k and
// value v; Record checks the rating scale too (Interaction.check), the
// store does not, so that ratings kept before that check still load.
func (k Kind) validate(v float64) error {
	switch {
	case k < View || k > Rating:
		return fmt.Errorf("unknown interaction kind %d", k)
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Errorf("interaction value %v is not finite", v)
	case k != Rating && v < 0:
		return fmt.Errorf("%v value %v, want >= 0", k, v)
	}
	return nil
}

// Interaction is one thing the user did with an item.
type Interaction struct {
	// Item is the app's ID of the item (at most 256 bytes).
	Item string
	Kind Kind
	// Value is the rating for Rating, on the model's scale, within
	// [MinRating, MaxRating]; for the other kinds an optional multiplier
	// of the kind's weight (0 means 1).
	Value float64
	// Time is when it happened; zero means now. The store keeps it to the
	// hour.
	Time time.Time
}

// The range of a rating Record accepts. The cluster trains one scale,
// whatever the app uses (MovieLens: 0.5 to 5 stars): ratings are compared
// with the model's predictions as they are, so the app must record them
// on that scale. The range is wide enough for 5-star, half-star and
// 10-point scales, and refuses values no such scale has (a 99 would pull
// the user's factor far from every item).
const (
	MinRating = 0
	MaxRating = 10
)

// check reports, wrapping ErrInvalidInteraction, why Record refuses in.
func (in Interaction) check() error {
	err := checkItemID(in.Item)
	if err == nil {
		err = in.Kind.validate(in.Value)
	}
	if err == nil && in.Kind == Rating && !(in.Value >= MinRating && in.Value <= MaxRating) {
		err = fmt.Errorf("rating %v outside [%d, %d]", in.Value, MinRating, MaxRating)
	}
	if err != nil {
		return fmt.Errorf("client: record: %w: %v", ErrInvalidInteraction, err)
	}
	return nil
}

// Release is a version of the global model with its item catalogue:
// Items[i] is the app's ID of the model's item i.
type Release struct {
	Version uint64 // >= 1, increasing
	Model   *model.Model
	Items   []string
	// EventWeights are, for an implicit model, the cluster's weights of
	// the kinds of event (the network Federation takes them from the
	// model's download); zero means DefaultEventWeights().
	EventWeights EventWeights
}

// validate checks the release's shape and catalogue.
func (r *Release) validate() error {
	if r.Version == 0 {
		return errors.New("client: release version 0")
	}
	if r.Model == nil {
		return errors.New("client: release without a model")
	}
	if err := r.Model.Validate(); err != nil {
		return fmt.Errorf("client: release %d: %w", r.Version, err)
	}
	if r.Model.Rank > maxRank || r.Model.Items > maxItems {
		return fmt.Errorf("client: release %d: %d items at rank %d exceeds the SDK's limits", r.Version, r.Model.Items, r.Model.Rank)
	}
	if len(r.Items) != r.Model.Items {
		return fmt.Errorf("client: release %d: %d item IDs for %d items", r.Version, len(r.Items), r.Model.Items)
	}
	if err := r.EventWeights.validate(); err != nil {
		return fmt.Errorf("client: release %d: %w", r.Version, err)
	}
	return nil
}

// index maps the release's item IDs to item indices, checking that they are
// valid and distinct.
func (r *Release) index() (map[string]int32, error) {
	ix := make(map[string]int32, len(r.Items))
	for i, id := range r.Items {
		if err := checkItemID(id); err != nil {
			return nil, fmt.Errorf("client: release %d: item %d: %w", r.Version, i, err)
		}
		if _, dup := ix[id]; dup {
			return nil, fmt.Errorf("client: release %d: item ID %s appears twice", r.Version, quote(id))
		}
		ix[id] = int32(i)
	}
	return ix, nil
}

func checkItemID(id string) error {
	if id == "" || len(id) > maxItemID || !utf8.ValidString(id) {
		return fmt.Errorf("item ID %s: want 1 to %d bytes of UTF-8", quote(id), maxItemID)
	}
	return nil
}

// Federation is the network side of federated learning as a Client sees
// it. The Client never opens a connection itself: whatever it shares
// passes through its Federation, only from Participate and Sync. The QUIC
// side of this package (Dialer, Participant) plugs in here through an
// adapter that turns the coordinator's round plan into an Offer; tests use
// an in-process fake.
type Federation interface {
	// Latest returns the newest model release if its version is above
	// have, or nil if have is the newest.
	Latest(ctx context.Context, have uint64) (*Release, error)
	// Join checks in with the coordinator and takes part in at most one
	// round through c:
	//
	//  1. It calls c.Accept with the round's announced terms before it
	//     downloads or sends anything; if Accept fails it leaves the
	//     round and returns that error.
	//  2. It obtains the round's model (unless c.Have() is that version)
	//     and calls c.Update, which trains and returns what to send.
	//  3. It sends the payload, may report the bytes with c.Sent, and
	//     returns nil once the coordinator has acknowledged it.
	//
	// When ctx is done (the user opted out, or the app cancelled) it
	// stops sending at once and returns. It returns ErrNoRound when the
	// coordinator has no round for the device.
	Join(ctx context.Context, c *Contribution) error
}

// Client is the SDK: a user's local data, on-device recommendations,
// consent, and participation in federated rounds. Its methods are safe
// for concurrent use.
type Client struct {
	cfg Config
	log *slog.Logger
	fed Federation

	lock   *dirLock     // Config.Dir's, until Close
	files  storage      // Config.Dir's, until Close
	anchor *anchorState // nil without Config.Anchor

	mu      sync.Mutex
	closed  bool
	st      *state
	store   *store
	ledger  *ledger
	round   *activeRound // the round under way, if any
	model   modelState
	scratch []float64 // Recommend's scores
}

// activeRound lets OptOut, DeleteMyData and Close stop a round and wait
// for it.
type activeRound struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// modelState is the installed model and what is derived from it.
type modelState struct {
	rel     *Release
	index   map[string]int32
	trainer *model.Trainer // built on first use
	user    *model.User    // fitted to the current interactions; nil = stale
	seen    []int32        // items the user touched, sorted; nil = stale
}

// stale marks what depends on the interactions for recomputation.
func (m *modelState) stale() { m.user, m.seen = nil, nil }

// New opens the store in cfg.Dir (creating nothing on disk until there is
// something to keep) and returns a Client. A store that fails its checks
// is reported with ErrCorrupt, one written with another key with
// ErrWrongKey.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	files, err := openStorage(cfg.Dir, true)
	if err != nil {
		return nil, err
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		files.close()
		return nil, err
	}
	c, err := openClient(cfg, files)
	if err != nil {
		files.close()
		lock.unlock()
		return nil, err
	}
	c.lock, c.files = lock, files
	return c, nil
}

// openClient is New once the directory is locked.
func openClient(cfg Config, files storage) (*Client, error) {
	kek, err := keySealerOf(cfg.Key, files)
	cfg.Key = nil
	if err != nil {
		return nil, err
	}
	s, st, err := openStore(files, kek, cfg.random, cfg.Logger)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger, fed: cfg.Federation, st: st, store: s, ledger: newLedger(cfg.Policy.Delta)}
	if cfg.Anchor != nil {
		sa, err := loadAnchor(cfg.Anchor)
		if err == nil {
			c.ledger.carried, err = checkAnchor(sa, s, st)
		}
		if err != nil {
			s.close()
			return nil, err
		}
		c.anchor = &anchorState{a: cfg.Anchor}
		if sa != nil {
			c.anchor.saved = *sa
		}
	}
	rel, err := s.loadModel()
	if err != nil {
		s.close()
		return nil, err
	}
	if rel != nil {
		// loadModel validated it.
		ix, err := rel.index()
		if err != nil {
			s.close()
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, modelFile, err)
		}
		c.use(rel, ix)
	}
	if _, err := c.ledger.spent(st.charges); err != nil {
		s.close()
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if n := c.prune(); n > 0 || s.seq >= compactEvery {
		// Expired data leaves the disk at every start.
		if err := s.compact(st); err != nil {
			s.close()
			return nil, err
		}
		c.log.Debug("client: dropped expired interactions", "dropped", n)
	}
	if err := c.syncAnchor(); err != nil {
		s.close()
		return nil, err
	}
	return c, nil
}

// use makes rel, checked, with index ix, the current model. The caller
// holds mu (or owns c).
func (c *Client) use(rel *Release, ix map[string]int32) {
	c.model = modelState{rel: rel, index: ix}
	if u := c.st.user; u != nil && c.st.userFresh && u.Version == rel.Version && len(u.User.Factor) == rel.Model.Rank {
		c.model.user = &model.User{Factor: append([]float64(nil), u.User.Factor...), Bias: u.User.Bias}
	}
}

// persist appends records to the store and then applies them to the
// state (and prunes it), so that memory never holds what the disk does
// not, and compacts the store every compactEvery records. When that
// creates the store (the first write, or the first after DeleteMyData),
// the installed model is cached too. The caller holds mu.
func (c *Client) persist(recs ...record) error {
	fresh := !c.store.exists()
	if err := c.store.append(recs...); err != nil {
		return err
	}
	for _, r := range recs {
		c.st.apply(r)
	}
	c.prune()
	if fresh && c.model.rel != nil {
		if err := c.store.saveModel(c.model.rel); err != nil {
			c.log.Warn("client: caching the model failed", "err", err)
		}
	}
	if c.store.seq >= compactEvery {
		if err := c.store.compact(c.st); err != nil {
			c.log.Warn("client: store compaction failed", "err", err)
		}
	}
	if err := c.syncAnchor(); err != nil {
		// A charge must reach the anchor before the update leaves.
		for _, r := range recs {
			if _, ok := r.(charge); ok {
				return err
			}
		}
		c.log.Warn("client: saving the store's anchor failed", "err", err)
	}
	return nil
}

// prune drops interactions past the retention window and the oldest beyond
// MaxInteractions, returning how many it dropped. The caller holds mu.
func (c *Client) prune() int {
	cutoff := storedTime(c.cfg.Clock().Add(-c.cfg.Retention))
	xs := c.st.interactions
	excess := len(xs) - c.cfg.MaxInteractions
	kept := xs[:0]
	for i, x := range xs {
		if i < excess || x.Time < cutoff {
			continue
		}
		kept = append(kept, x)
	}
	clear(xs[len(kept):])
	c.st.interactions = kept
	n := len(xs) - len(kept)
	if n > 0 {
		c.model.stale()
		c.st.userFresh = false
	}
	return n
}

// Record stores an interaction and marks the user's factor for a refresh.
// It returns once the interaction is on disk. An interaction already past
// the retention window is not kept.
func (c *Client) Record(ctx context.Context, in Interaction) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := in.check(); err != nil {
		return err
	}
	now := c.cfg.Clock()
	t := in.Time
	if t.IsZero() || t.After(now) {
		t = now
	}
	x := stored{Item: in.Item, Kind: in.Kind, Value: in.Value, Time: storedTime(t)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if x.Time < storedTime(now.Add(-c.cfg.Retention)) {
		return nil
	}
	if err := c.persist(x); err != nil {
		return err
	}
	c.model.stale()
	return nil
}

// SetModel installs a model release for recommendations and caches it
// (encrypted) in the store. A release no newer than the installed one is
// ignored. SetModel copies r.
func (c *Client) SetModel(ctx context.Context, r Release) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.validate(); err != nil {
		return err
	}
	rel := &Release{Version: r.Version, Model: r.Model.Clone(), Items: append([]string(nil), r.Items...), EventWeights: r.EventWeights}
	ix, err := rel.index()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.setModelLocked(rel, ix)
}

// setModelLocked installs rel, checked, with index ix. The caller holds
// mu.
func (c *Client) setModelLocked(rel *Release, ix map[string]int32) error {
	if c.closed {
		return ErrClosed
	}
	if c.model.rel != nil && rel.Version <= c.model.rel.Version {
		return nil
	}
	if c.store.exists() {
		if err := c.store.saveModel(rel); err != nil {
			return err
		}
	}
	c.use(rel, ix)
	return nil
}

// ModelVersion returns the version of the installed model, 0 for none.
func (c *Client) ModelVersion() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.model.rel == nil {
		return 0
	}
	return c.model.rel.Version
}

// Sync fetches the newest model from the Federation if there is one and
// installs it; it reports whether it did. It shares nothing about the user
// and works whether or not the user opted in.
func (c *Client) Sync(ctx context.Context) (bool, error) {
	if c.fed == nil {
		return false, ErrNoFederation
	}
	rel, err := c.fed.Latest(ctx, c.ModelVersion())
	if err != nil {
		return false, fmt.Errorf("client: sync: %w", err)
	}
	if rel == nil {
		return false, nil
	}
	if err := c.SetModel(ctx, *rel); err != nil {
		return false, err
	}
	return true, nil
}

// OptIn records the user's consent to take part in federated rounds.
// Participation is off until the app calls it.
func (c *Client) OptIn() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.st.optedIn {
		return nil
	}
	now := c.cfg.Clock().Unix()
	return c.persist(consentRec{In: true, Time: now})
}

// OptOut withdraws consent at once: no further update leaves the SDK, and a
// round under way is abandoned. It waits, until ctx is done, for the
// network side to stop; when it returns nil nothing more is being sent.
func (c *Client) OptOut(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	var err error
	if c.st.optedIn {
		c.st.optedIn = false // first, so nothing else is released even if the write fails
		err = c.persist(consentRec{In: false, Time: c.cfg.Clock().Unix()})
	}
	r := c.round
	c.mu.Unlock()
	if werr := stopRound(ctx, r, ErrOptedOut); werr != nil {
		return werr
	}
	return err
}

// stopRound cancels r, if any, and waits for it to end or ctx to be done.
func stopRound(ctx context.Context, r *activeRound, cause error) error {
	if r == nil {
		return nil
	}
	r.cancel(cause)
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("client: waiting for the round to stop: %w", context.Cause(ctx))
	}
}

// OptedIn reports whether the user currently takes part in rounds.
func (c *Client) OptedIn() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.optedIn
}

// DeleteMyData opts the user out, abandons any round under way, and wipes
// everything the SDK holds about the user from disk and memory:
// interactions, the user's factor, the consent record, the ledger and the
// data key. The Client stays usable in a clean state: opted out, empty,
// with the installed global model kept in memory (it describes no one), so
// recommendations fall back to the cold-start ranking. The next write
// creates a new store under a new data key.
func (c *Client) DeleteMyData(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.st.optedIn = false
	r := c.round
	c.mu.Unlock()
	if err := stopRound(ctx, r, ErrOptedOut); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.wipe()
	if u := c.model.user; u != nil {
		clear(u.Factor)
	}
	c.model.stale()
	clear(c.scratch)
	c.ledger.reset()
	if err := c.store.wipe(); err != nil {
		return fmt.Errorf("client: delete my data: %w", err)
	}
	if c.anchor != nil {
		// The ledger is the user's data too: it goes, carried ε included.
		c.anchor.saved.Carried = 0
		if err := c.syncAnchor(); err != nil {
			return fmt.Errorf("client: delete my data: %w", err)
		}
	}
	c.log.Info("client: deleted the user's data")
	return nil
}

// Close abandons a round under way, waits for it to stop, and releases
// the store. The data stays on disk.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	r := c.round
	c.mu.Unlock()
	stopRound(context.Background(), r, ErrClosed)
	c.mu.Lock()
	defer c.mu.Unlock()
	if u := c.model.user; u != nil {
		clear(u.Factor)
	}
	err := c.store.close()
	return errors.Join(err, c.files.close(), c.lock.unlock())
}

// Participate takes part in one federated round, if the user opted in, the
// budget allows and the Federation offers one whose terms meet the policy.
// It returns what the device shared in the round. Errors: ErrNotOptedIn,
// ErrBudgetExhausted, ErrNoRound (a *NoRoundError from the network, which
// says when to try again), a *DeclineError (ErrDeclined), ErrOptedOut
// if the user opted out mid-round, ErrBusy, ErrNoFederation, or the
// Federation's own error.
func (c *Client) Participate(ctx context.Context) (RoundReport, error) {
	if err := ctx.Err(); err != nil {
		return RoundReport{}, err
	}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return RoundReport{}, ErrClosed
	case c.fed == nil:
		c.mu.Unlock()
		return RoundReport{}, ErrNoFederation
	case !c.st.optedIn:
		c.mu.Unlock()
		return RoundReport{}, ErrNotOptedIn
	case c.round != nil:
		c.mu.Unlock()
		return RoundReport{}, ErrBusy
	}
	spent, err := c.ledger.spent(c.st.charges)
	if err != nil {
		c.mu.Unlock()
		return RoundReport{}, err
	}
	if !(spent < c.cfg.Policy.Epsilon) {
		c.mu.Unlock()
		return RoundReport{}, fmt.Errorf("%w: ε = %.4g of %.4g at δ = %g", ErrBudgetExhausted, spent, c.cfg.Policy.Epsilon, c.cfg.Policy.Delta)
	}
	rctx, cancel := context.WithCancelCause(ctx)
	r := &activeRound{cancel: cancel, done: make(chan struct{})}
	c.round = r
	c.mu.Unlock()

	k := &Contribution{c: c, ctx: rctx, have: c.ModelVersion()}
	var jerr error
	// The device checks in only in the conditions its policy requires
	// (asked outside the lock: it is the app's code).
	if d := c.conditions(0); d != nil {
		k.decline, jerr = d, d
	} else {
		jerr = c.fed.Join(rctx, k)
	}

	c.mu.Lock()
	k.finished = true
	var rep RoundReport
	if k.charged {
		var recs []record
		if k.sent > 0 {
			recs = append(recs, bytesRec{Round: k.offer.Round, Bytes: k.sent})
		}
		if jerr == nil {
			recs = append(recs, ackRec{Round: k.offer.Round})
		}
		if len(recs) > 0 {
			if err := c.persist(recs...); err != nil {
				c.log.Warn("client: recording the round's outcome failed", "round", k.offer.Round, "err", err)
			}
		}
		rep = c.roundReportLocked(k.offer.Round)
	}
	c.round = nil
	c.mu.Unlock()
	cancel(nil)
	close(r.done)

	cause := context.Cause(rctx)
	switch {
	case jerr == nil && k.charged:
		c.log.Info("client: took part in a round", "round", rep.Round, "model_version", rep.ModelVersion, "epsilon_total", rep.EpsilonTotal)
		return rep, nil
	case k.decline != nil:
		c.log.Info("client: declined a round", "round", k.decline.Round, "reason", k.decline.Reason.String(), "detail", k.decline.Detail)
		return rep, k.decline
	case errors.Is(cause, ErrOptedOut) || errors.Is(cause, ErrClosed):
		return rep, fmt.Errorf("client: round abandoned: %w", cause)
	case jerr == nil:
		return rep, fmt.Errorf("client: the federation ended the round without an update: %w", ErrNoRound)
	case errors.Is(jerr, ErrNoRound):
		return rep, jerr // a *NoRoundError says when to come back
	}
	return rep, fmt.Errorf("client: round: %w", jerr)
}

// conditions returns why the device's conditions keep it from round
// (0: before a check-in), or nil. The caller does not hold mu.
func (c *Client) conditions(round uint64) *DeclineError {
	p := c.cfg.Policy
	if !p.requiresConditions() {
		return nil
	}
	return p.checkConditions(c.cfg.Device.Conditions(), round)
}

// Contribution is the device's part in one round, handed by Participate to
// the Federation's Join. The Federation calls Accept, then Update, then
// optionally Sent, from one goroutine.
type Contribution struct {
	c    *Client
	ctx  context.Context // the round's; done when the user opts out
	have uint64

	// Guarded by c.mu.
	offer    *Offer
	decline  *DeclineError
	charged  bool
	finished bool
	sent     int64
}

// Payload is what the device sends in a round: the change to the model's
// parameters, clipped to the round's norm (and noised if the round asks
// the device to add noise), and the training loss over N examples before
// the update, for the round's metrics.
type Payload struct {
	Delta []float64
	Loss  float64
	N     int
}

// Have returns the version of the model the device holds, 0 for none, so
// that the Federation need not download it again.
func (k *Contribution) Have() uint64 { return k.have }

// Accept checks a round's announced terms against the user's consent, the
// policy and the ledger. A non-nil error means the device does not take
// part: a *DeclineError (nothing is recorded but the decline), or
// ErrOptedOut.
func (k *Contribution) Accept(o Offer) error {
	c := k.c
	// A check-in may be held for seconds: the conditions are checked
	// again, outside the lock (the app's code).
	cond := c.conditions(o.Round)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case k.finished:
		return errors.New("client: Accept after the round ended")
	case k.offer != nil || k.decline != nil:
		return errors.New("client: Accept called twice")
	case c.closed:
		return ErrClosed
	case !c.st.optedIn:
		return ErrOptedOut
	case k.ctx.Err() != nil:
		return context.Cause(k.ctx)
	}
	d := cond
	if d == nil {
		d = c.cfg.Policy.check(o)
	}
	if d == nil {
		d = checkNoise(o)
	}
	if d == nil && len(c.st.interactions) == 0 {
		d = &DeclineError{Round: o.Round, Reason: ReasonNoData, Detail: "no interactions"}
	}
	if d == nil {
		var err error
		if d, err = c.ledger.admit(c.st.charges, k.chargeFor(o), c.cfg.Policy.Epsilon); err != nil {
			return err
		}
	}
	if d != nil {
		k.decline = d
		c.recordDecline(o, d.Reason)
		return d
	}
	k.offer = &o
	return nil
}

// chargeFor is the ledger's charge for taking part in o: a Gaussian of
// o's noise multiplier or, for a distributed-DP round (checked by
// checkNoise), the Skellam mechanism of o's plan, with the std of the
// device's own share of the noise.
func (k *Contribution) chargeFor(o Offer) charge {
	p := k.c.cfg.Policy
	ch := charge{
		Round: o.Round, ModelVersion: o.ModelVersion, Time: k.c.cfg.Clock().Unix(),
		SamplingRate: p.accountedRate(o), NoiseMultiplier: o.NoiseMultiplier,
		ClipNorm: o.ClipNorm, DeviceNoiseStd: deviceNoiseStd(o), Mechanism: MechGaussian,
		Terms: roundTerms{
			TermsDigest: o.TermsDigest, MinCohort: int64(o.CohortSize),
			Secure: o.SecAgg || o.SignedSecAgg, Signed: o.SignedSecAgg, Roster: o.SignedSecAgg && o.SecAggRoster,
			SecAggClients: int64(o.SecAggClients), SecAggThreshold: int64(o.SecAggThreshold), SecAggColluders: int64(o.SecAggColluders),
		},
	}
	if !ch.Terms.Secure {
		ch.Terms.SecAggClients, ch.Terms.SecAggThreshold = 0, 0
	}
	if !ch.Terms.Signed {
		ch.Terms.SecAggColluders = -1
	}
	if o.DistributedNoise {
		s := o.Skellam
		ch.Mechanism, ch.Variance, ch.L1, ch.L2 = MechSkellam, s.Variance, s.L1, s.L2
		ch.DeviceNoiseStd = math.Sqrt(s.ClientVariance) / o.SkellamScale
	}
	return ch
}

// maxDeclines bounds the declines kept for the report.
const maxDeclines = 100

// recordDecline keeps a decline for the report (except for lack of data,
// which says nothing about the coordinator). The caller holds mu.
func (c *Client) recordDecline(o Offer, r Reason) {
	if r == ReasonNoData {
		return
	}
	d := decline{Round: o.Round, ModelVersion: o.ModelVersion, Time: c.cfg.Clock().Unix(), Reason: r}
	if err := c.persist(d); err != nil {
		c.log.Warn("client: recording a decline failed", "round", o.Round, "err", err)
	}
}

// Update trains on the device's data against the round's model and
// returns the payload to send. rel is the round's model and catalogue, or
// nil if it is the model the device holds (Have). Update installs a newer
// model for recommendations. Before it returns the payload it writes the
// round's charge to the ledger: from then on the round counts as spent. It
// fails with ErrOptedOut if the user opted out, and with a *DeclineError
// (ReasonNoData) if the device has nothing this model can learn from.
func (k *Contribution) Update(ctx context.Context, rel *Release) (Payload, error) {
	c := k.c
	c.mu.Lock()
	o, err := k.readyLocked()
	if err == nil && rel == nil {
		rel = c.model.rel
		if rel == nil || rel.Version != o.ModelVersion {
			err = fmt.Errorf("client: round %d trains model %d; the device holds %d", o.Round, o.ModelVersion, k.have)
		}
	}
	c.mu.Unlock()
	if err != nil {
		return Payload{}, err
	}
	if rel.Version != o.ModelVersion {
		return Payload{}, fmt.Errorf("client: round %d trains model %d, got release %d", o.Round, o.ModelVersion, rel.Version)
	}
	if err := rel.validate(); err != nil {
		return Payload{}, err
	}
	ix, err := rel.index()
	if err != nil {
		return Payload{}, err
	}
	c.mu.Lock()
	if c.model.rel == nil || rel.Version > c.model.rel.Version {
		own := &Release{Version: rel.Version, Model: rel.Model.Clone(), Items: append([]string(nil), rel.Items...), EventWeights: rel.EventWeights}
		if err := c.setModelLocked(own, ix); err != nil {
			c.log.Warn("client: installing the round's model failed", "model_version", rel.Version, "err", err)
		}
	}
	// The round's weights are the cluster's; a round that announces none
	// (an older cluster) trains as the release says.
	w := o.EventWeights
	if w == (EventWeights{}) {
		w = rel.EventWeights.orDefault()
	}
	rs := ratingsFor(c.st.interactions, ix, rel.Model.Kind, w)
	tc := o.Train
	if tc == (model.TrainConfig{}) {
		tc = c.cfg.trainFor(rel.Model.Kind)
	}
	var t *model.Trainer
	if len(rs) > 0 && c.model.rel != nil && c.model.rel.Version == rel.Version && tc == c.cfg.trainFor(rel.Model.Kind) {
		// The installed model's trainer serves the round too: its
		// Gramian is computed once per model, not again each round.
		t, err = c.trainerLocked()
	}
	c.mu.Unlock()
	if err != nil {
		return Payload{}, err
	}
	if len(rs) == 0 {
		d := &DeclineError{Round: o.Round, Reason: ReasonNoData, Detail: "no interaction with the model's items"}
		c.mu.Lock()
		k.decline = d
		c.mu.Unlock()
		return Payload{}, d
	}

	if t == nil {
		if t, err = model.NewTrainer(rel.Model, tc); err != nil {
			return Payload{}, fmt.Errorf("client: round %d: %w", o.Round, err)
		}
	}
	ch := k.chargeFor(*o)
	// The device adds Gaussian noise here; Skellam noise is added to the
	// encoded update by the Federation (secure aggregation).
	p, u, err := localStep(t, rs, o.ClipNorm, deviceNoiseStd(*o), c.cfg.Rand)
	if err != nil {
		return Payload{}, fmt.Errorf("client: round %d: %w", o.Round, err)
	}
	ch.Params = int64(len(p.Delta))
	ch.Bytes = 8 * ch.Params

	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := k.readyLocked(); err != nil {
		return Payload{}, err
	}
	if err := ctx.Err(); err != nil {
		return Payload{}, err
	}
	// The ledger needs to hold this round before the payload leaves.
	if d, err := c.ledger.admit(c.st.charges, ch, c.cfg.Policy.Epsilon); err != nil {
		return Payload{}, err
	} else if d != nil {
		k.decline = d
		return Payload{}, d
	}
	// The round's terms go with the charge, in the same append.
	recs := []record{ch, termsRec{Round: ch.Round, Terms: ch.Terms}}
	var user *userRec
	if c.model.rel != nil && c.model.rel.Version == rel.Version {
		user = &userRec{Version: rel.Version, User: *u}
		recs = append(recs, *user)
	}
	if err := c.persist(recs...); err != nil {
		return Payload{}, err
	}
	k.charged = true
	return p, nil
}

// localStep is the device's training step in a round: fit the user and
// take the local passes over its ratings against t's model, then clip the
// change to the parameters to norm clip and add N(0, std²) to each
// coordinate.
func localStep(t *model.Trainer, rs []model.Rating, clip, std float64, r *rand.Rand) (Payload, *model.User, error) {
	delta, up, err := step.Run(t, rs, clip, std, r)
	if err != nil {
		return Payload{}, nil, err
	}
	return Payload{Delta: delta, Loss: up.Loss, N: up.N}, up.User, nil
}

// readyLocked checks that the contribution may still release an update.
// The caller holds mu.
func (k *Contribution) readyLocked() (*Offer, error) {
	c := k.c
	switch {
	case k.finished:
		return nil, errors.New("client: Update after the round ended")
	case k.offer == nil:
		return nil, errors.New("client: Update before Accept")
	case k.charged:
		return nil, errors.New("client: Update called twice")
	case c.closed:
		return nil, ErrClosed
	case !c.st.optedIn:
		return nil, ErrOptedOut
	case k.ctx.Err() != nil:
		return nil, context.Cause(k.ctx)
	}
	return k.offer, nil
}

// Sent records how many bytes the Federation actually sent for the
// payload, for the transparency report (which otherwise counts 8 bytes per
// parameter).
func (k *Contribution) Sent(bytes int64) {
	if bytes < 0 {
		return
	}
	k.c.mu.Lock()
	defer k.c.mu.Unlock()
	if !k.finished {
		k.sent = bytes
	}
}

// trainFor is the local training the app set, or the defaults for a model
// of kind k: the settings the device's recommendations are fitted with
// should be those the model was trained with.
func (c *Config) trainFor(k model.Kind) model.TrainConfig {
	if c.Train != (model.TrainConfig{}) {
		return c.Train
	}
	return model.Defaults(k).Train
}
