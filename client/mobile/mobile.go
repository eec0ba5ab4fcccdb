// Package mobile is the gomobile binding of the fedrec SDK (package
// client): the same Client, with an exported surface that keeps to the
// types gomobile bind accepts (strings, numbers, bools, []byte, errors and
// pointers to this package's structs).
//
//	gomobile bind -target=android -javapkg=org.fedrec github.com/fedrec/fedrec/client/mobile
//	gomobile bind -target=ios -prefix=FR github.com/fedrec/fedrec/client/mobile
//
// Calls that touch the disk or the network block: make them off the main
// thread. Errors cross the language boundary as exceptions whose message
// starts with "fedrec/<code>:", where <code> is one of the Code constants,
// so that apps can branch on them.
package mobile

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// Interaction kinds, as Record takes them.
const (
	View     = int(client.View)
	Click    = int(client.Click)
	Cart     = int(client.Cart)
	Purchase = int(client.Purchase)
	Rating   = int(client.Rating)
)

// Error codes: every error from this package reads "fedrec/<code>: ...".
const (
	CodeCorrupt         = "corrupt"          // the store failed its checks; see Remove
	CodeWrongKey        = "wrong_key"        // the store was written with another key
	CodeClosed          = "closed"           // the Client was closed
	CodeNoModel         = "no_model"         // no model installed yet
	CodeNotOptedIn      = "not_opted_in"     // participation needs OptIn
	CodeOptedOut        = "opted_out"        // the round was abandoned by an opt-out
	CodeBudgetExhausted = "budget_exhausted" // the privacy budget is spent
	CodeDeclined        = "declined"         // the round's terms fell short of the policy
	CodeNoRound         = "no_round"         // no round to join now
	CodeBusy            = "busy"             // a round is already under way
	CodeNoFederation    = "no_federation"    // no network side configured
	CodeTimeout         = "timeout"          // the call ran out of time
	CodeCancelled       = "cancelled"        // Cancel stopped the call
	CodeInvalid         = "invalid"          // a bad argument or option, or an interaction Record refuses
	// No coordinator answered within the call's time (the cluster is
	// down or the network is): retry from the next background job.
	CodeUnavailable = "unavailable"
	// The app's catalogue does not match the cluster's model (another
	// length or order): fetch it again from the app's backend.
	CodeCatalogueMismatch = "catalogue_mismatch"
	// ClientID is not the device certificate's ID.
	CodeClientIDMismatch = "client_id_mismatch"
	// Another Client has the directory open (in this process or
	// another): close it first.
	CodeLocked = "locked"
	// The store's files were removed while its anchor says it held data:
	// restore them or call ResetStore.
	CodeMissing = "missing"
	// The directory holds an older copy of the store than its anchor
	// recorded (restored from a backup): call ResetStore.
	CodeRolledBack = "rolled_back"
	// CodeInternal: an error the SDK did not expect (a bug: report it).
	CodeInternal = "internal"
	// The cluster refused the device's certificate (missing, expired,
	// revoked, of another CA) or its ClientID: get a new certificate
	// from the app's backend and make a new Client.
	CodeUnauthenticated = "unauthenticated"
)

var codes = []struct {
	err  error
	code string
}{
	{client.ErrCorrupt, CodeCorrupt},
	{client.ErrWrongKey, CodeWrongKey},
	{client.ErrClosed, CodeClosed},
	{client.ErrNoModel, CodeNoModel},
	{client.ErrNotOptedIn, CodeNotOptedIn},
	{client.ErrOptedOut, CodeOptedOut},
	{client.ErrBudgetExhausted, CodeBudgetExhausted}, // before ErrDeclined: a budget decline is both
	{client.ErrDeclined, CodeDeclined},
	{client.ErrNoRound, CodeNoRound},
	{client.ErrBusy, CodeBusy},
	{client.ErrNoFederation, CodeNoFederation},
	{client.ErrInvalidInteraction, CodeInvalid},
	{client.ErrInvalidArgument, CodeInvalid},
	{errInvalid, CodeInvalid},
	{client.ErrUnauthenticated, CodeUnauthenticated},
	{client.ErrClientIDMismatch, CodeClientIDMismatch},
	{client.ErrCatalogueMismatch, CodeCatalogueMismatch},
	{client.ErrLocked, CodeLocked},
	{client.ErrMissing, CodeMissing},
	{client.ErrRolledBack, CodeRolledBack},
	{client.ErrUnavailable, CodeUnavailable}, // before the timeout: the budget ran out
	{errCancelled, CodeCancelled},
	{context.DeadlineExceeded, CodeTimeout},
}

// errInvalid marks this package's own argument errors.
var errInvalid = errors.New("mobile: invalid argument")

// errCancelled is the cause of a call that Cancel stopped.
var errCancelled = errors.New("mobile: cancelled")

// wrap gives err its code prefix.
func wrap(err error) error {
	if err == nil {
		return nil
	}
	code := CodeInternal
	if c := wire.CodeOf(err); c == wire.CodeUnauthenticated || c == wire.CodeForbidden {
		return fmt.Errorf("fedrec/%s: %w", CodeUnauthenticated, err)
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			code = c.code
			break
		}
	}
	return fmt.Errorf("fedrec/%s: %w", code, err)
}

// Code returns the code of err, as the SDK's errors carry it across a
// language boundary ("" for nil): for Go callers that hand errors to
// another language themselves, such as the browser build (client/web).
func Code(err error) string {
	if err == nil {
		return ""
	}
	return ErrorCode(wrap(err).Error())
}

// ErrorCode returns the code of an error message from this package ("" if
// it has none), for apps that receive the message as a string.
func ErrorCode(message string) string {
	rest, ok := strings.CutPrefix(message, "fedrec/")
	if !ok {
		return ""
	}
	code, _, ok := strings.Cut(rest, ":")
	if !ok {
		return ""
	}
	return code
}

// Options configures a Client. Zero fields mean the SDK's defaults; Dir
// and Key are required.
type Options struct {
	Dir string // the app's private files directory, e.g. filesDir + "/fedrec"
	Key []byte // 32 bytes from the Android Keystore / iOS Keychain

	// The privacy policy (see client.Policy).
	MinCohort          int
	MinNoiseMultiplier float64
	MaxClipNorm        float64
	Epsilon            float64
	Delta              float64
	TrustSamplingRate  bool
	// Participation constraints (client.Policy): take part in rounds
	// only on an unmetered network, while charging, while idle, as the
	// Device set with SetDevice reports (until one is set, none of the
	// conditions holds); and in rounds costing at most MaxRoundBytes on
	// the network (0: no bound). A round declined for them fails with
	// the code "declined".
	RequireUnmetered bool
	RequireCharging  bool
	RequireIdle      bool
	MaxRoundBytes    int64
	// RequireSignedSecAgg and MinSecAggColluders (client.Policy): take
	// part only in signed secure rounds, which resist a coordinator that
	// lies, whose threshold resists MinSecAggColluders colluding devices
	// per neighbourhood. They need DeviceCACertPEM and a device
	// certificate.
	RequireSignedSecAgg bool
	MinSecAggColluders  int
	// RequireDeviceRoster (client.Policy), with RequireSignedSecAgg:
	// take part only in signed rounds of the devices the device roster
	// lists, so that no revoked device's certificate is accepted.
	RequireDeviceRoster bool

	RetentionDays   int // default 90
	MaxInteractions int // default 10,000

	// TimeoutMillis bounds each blocking call that talks to the network
	// or waits for a round to stop; default 60,000.
	TimeoutMillis int64
	// BudgetMillis bounds the time a call spends finding a coordinator
	// that answers, across all of Coordinators; then it fails with the
	// code "unavailable". Default 10,000 (client.DefaultBudget).
	BudgetMillis int64

	// The network side; all empty means the device never takes part in
	// rounds (recommendations still work with a model set by the app).
	// Coordinators is a comma-separated list of the cluster's client
	// addresses, CACertPEM the PEM of the cluster's CA, ClientID the
	// device's opaque app-scoped ID, and Catalogue the item IDs in the
	// model's order, one per line.
	Coordinators string
	CACertPEM    []byte
	ClientID     string
	Catalogue    string
	// DeviceCertPEM and DeviceKeyPEM are the device certificate and its
	// private key (PEM), issued by the app's backend with the device CA;
	// a cluster that authenticates devices requires them. The
	// certificate's common name is the client ID: ClientID may then be
	// empty, and must match if set. Keep the key in the platform's
	// keystore; renew the certificate before it expires (a new Client).
	DeviceCertPEM []byte
	DeviceKeyPEM  []byte
	// DeviceCACertPEM is the PEM of the device CA, against which the
	// device checks its peers' certificates in a signed secure round
	// (client.DialerConfig.DeviceCA); empty: the device takes no part in
	// signed rounds.
	DeviceCACertPEM []byte

	anchor client.Anchor // set by NewWithAnchor
}

// federation builds the network side from o, or nil when it is not set.
func (o *Options) federation(log *slog.Logger) (client.Federation, error) {
	if o.Coordinators == "" {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(o.CACertPEM) {
		return nil, fmt.Errorf("%w: CACertPEM holds no certificate", errInvalid)
	}
	var addrs []string
	for _, a := range strings.Split(o.Coordinators, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
	id := o.ClientID
	if len(o.DeviceCertPEM) > 0 || len(o.DeviceKeyPEM) > 0 {
		cert, err := tls.X509KeyPair(o.DeviceCertPEM, o.DeviceKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("%w: DeviceCertPEM, DeviceKeyPEM: %v", errInvalid, err)
		}
		certID, err := client.DeviceID(cert)
		if err != nil {
			return nil, err
		}
		if id == "" {
			id = certID
		} else if id != certID {
			return nil, fmt.Errorf("%w: ClientID %q, but the device certificate is %q's", client.ErrClientIDMismatch, id, certID)
		}
		conf = client.DeviceTLS(pool, cert)
	}
	var deviceCA *x509.CertPool
	if len(o.DeviceCACertPEM) > 0 {
		deviceCA = x509.NewCertPool()
		if !deviceCA.AppendCertsFromPEM(o.DeviceCACertPEM) {
			return nil, fmt.Errorf("%w: DeviceCACertPEM holds no certificate", errInvalid)
		}
	}
	// The Dialer remembers which coordinators failed in the SDK's
	// directory, so that the next background job starts with one that
	// answered.
	d, err := client.NewDialerConfig(client.DialerConfig{Addrs: addrs, TLS: conf, StateDir: o.Dir,
		Budget: time.Duration(o.BudgetMillis) * time.Millisecond, Logger: log, DeviceCA: deviceCA})
	if err != nil {
		return nil, err
	}
	items := splitLines(o.Catalogue)
	return client.NewNetwork(client.NetworkConfig{ClientID: id, Dialer: d, Items: items})
}

// Client is the SDK for an app. Its methods are safe to call from any
// thread.
type Client struct {
	c       *client.Client
	timeout time.Duration
	fed     client.Federation // closed with the Client if it is an io.Closer
	log     *logHandler
	dev     *device

	mu     sync.Mutex
	closed bool
	base   context.Context // cancelled by Close and Cancel
	cancel context.CancelCauseFunc
	retry  time.Duration // the last no_round's wait (client.NoRoundError)
}

// Logger receives the SDK's log lines: level is -4 debug, 0 info, 4 warn,
// 8 error (log/slog's levels), msg the message and attrs its key=value
// pairs. Implement it in Kotlin/Swift and pass it to SetLogger.
type Logger interface {
	Log(level int, msg string, attrs string)
}

// Anchor is the place outside Options.Dir where the SDK keeps its record
// of the store (client.Anchor): an EncryptedSharedPreferences entry
// excluded from backup on Android, a Keychain item "ThisDeviceOnly" on
// iOS. Load returns nil (an empty array) when nothing was saved.
type Anchor interface {
	Load() ([]byte, error)
	Save(b []byte) error
}

// anchor adapts an app's Anchor: gomobile hands an empty array for nil.
type anchor struct{ a Anchor }

func (a anchor) Load() ([]byte, error) {
	b, err := a.a.Load()
	if len(b) == 0 {
		b = nil
	}
	return b, err
}

func (a anchor) Save(b []byte) error { return a.a.Save(b) }

// NewWithAnchor is New with an Anchor, so that a directory restored from
// a backup ("rolled_back") or emptied ("missing") is refused, and the
// privacy spent survives ResetStore. Apps should use it.
func NewWithAnchor(o *Options, a Anchor) (*Client, error) {
	if o == nil {
		return nil, wrap(fmt.Errorf("%w: nil Options", errInvalid))
	}
	o2 := *o
	if a != nil {
		o2.anchor = anchor{a}
	}
	return New(&o2)
}

// ResetStore starts the store in dir over after "missing", "rolled_back"
// or "corrupt", keeping in a (which may be nil) the privacy spent.
func ResetStore(dir string, a Anchor) error {
	var ca client.Anchor
	if a != nil {
		ca = anchor{a}
	}
	return wrap(client.Reset(dir, ca))
}

// New opens the SDK's store in o.Dir.
func New(o *Options) (*Client, error) {
	if o == nil {
		return nil, wrap(fmt.Errorf("%w: nil Options", errInvalid))
	}
	h := newLogHandler()
	fed, err := o.federation(slog.New(h))
	if err != nil {
		return nil, wrap(err)
	}
	return newClient(o, fed, h)
}

// newClient is New with a Federation; the network side plugs in here.
func newClient(o *Options, fed client.Federation, h *logHandler) (*Client, error) {
	if o.RetentionDays < 0 || o.TimeoutMillis < 0 || o.BudgetMillis < 0 {
		return nil, wrap(fmt.Errorf("%w: RetentionDays %d, TimeoutMillis %d and BudgetMillis %d must be >= 0", errInvalid, o.RetentionDays, o.TimeoutMillis, o.BudgetMillis))
	}
	dev := &device{}
	cfg := client.Config{
		Logger: slog.New(h),
		Anchor: o.anchor,
		Dir:    o.Dir,
		Key:    o.Key,
		Policy: client.Policy{
			MinCohort: o.MinCohort, MinNoiseMultiplier: o.MinNoiseMultiplier, MaxClipNorm: o.MaxClipNorm,
			Epsilon: o.Epsilon, Delta: o.Delta, TrustSamplingRate: o.TrustSamplingRate,
			RequireUnmetered: o.RequireUnmetered, RequireCharging: o.RequireCharging, RequireIdle: o.RequireIdle,
			MaxRoundBytes:       o.MaxRoundBytes,
			RequireSignedSecAgg: o.RequireSignedSecAgg, MinSecAggColluders: o.MinSecAggColluders,
			RequireDeviceRoster: o.RequireDeviceRoster,
		},
		Device:          dev,
		Retention:       time.Duration(o.RetentionDays) * 24 * time.Hour,
		MaxInteractions: o.MaxInteractions,
		Federation:      fed,
	}
	c, err := client.New(cfg)
	if err != nil {
		return nil, wrap(err)
	}
	timeout := time.Duration(o.TimeoutMillis) * time.Millisecond
	if timeout == 0 {
		timeout = time.Minute
	}
	base, cancel := context.WithCancelCause(context.Background())
	return &Client{c: c, timeout: timeout, base: base, cancel: cancel, fed: fed, log: h, dev: dev}, nil
}

// Device reports the device's conditions, which the Options'
// RequireUnmetered, RequireCharging and RequireIdle need: implement it in
// Kotlin (ConnectivityManager.isActiveNetworkMetered, BatteryManager,
// PowerManager.isDeviceIdleMode) or Swift (NWPathMonitor, UIDevice) and
// pass it to SetDevice. The SDK calls it before each round.
type Device interface {
	Unmetered() bool
	Charging() bool
	Idle() bool
}

// SetDevice sets the Device whose conditions rounds check (nil: none,
// and no required condition holds).
func (c *Client) SetDevice(d Device) { c.dev.set(d) }

// device adapts the app's Device to client.Device.
type device struct{ d atomic.Pointer[Device] }

func (v *device) set(d Device) {
	if d == nil {
		v.d.Store(nil)
		return
	}
	v.d.Store(&d)
}

func (v *device) Conditions() client.Conditions {
	p := v.d.Load()
	if p == nil {
		return client.Conditions{}
	}
	d := *p
	return client.Conditions{Unmetered: d.Unmetered(), Charging: d.Charging(), Idle: d.Idle()}
}

// ctx returns the context of one call: bounded by the timeout, ended by
// Cancel and Close. It fails with the code "closed" after Close.
func (c *Client) ctx() (context.Context, context.CancelFunc, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, client.ErrClosed
	}
	ctx, cancel := context.WithTimeout(c.base, c.timeout)
	return ctx, cancel, nil
}

// Cancel stops the calls under way (they fail with the code "cancelled");
// later calls run as usual. Call it when the app leaves the screen or the
// OS ends the background job.
func (c *Client) Cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.cancel(errCancelled)
	c.base, c.cancel = context.WithCancelCause(context.Background())
}

// SetLogger sends the SDK's logs to l (nil: none). The SDK logs nothing
// about the user's data.
func (c *Client) SetLogger(l Logger) { c.log.set(l) }

// ModelVersion returns the version of the installed model, 0 for none.
func (c *Client) ModelVersion() int64 { return int64(c.c.ModelVersion()) }

// SetModel installs a model bundled with the app, for recommendations
// before the first Sync (cold start): model holds the model as the
// cluster sends it (wire frames: a ModelHeader and its ModelChunks, as
// "fedrec model export" writes them), catalogue the item IDs in the
// model's order, one per line. A model no newer than the installed one is
// ignored.
func (c *Client) SetModel(model []byte, catalogue string) error {
	rel, err := client.ReadRelease(bytes.NewReader(model), splitLines(catalogue))
	if err != nil {
		return wrap(err)
	}
	ctx, cancel, err := c.ctx()
	if err != nil {
		return wrap(err)
	}
	defer cancel()
	return c.wrapCtx(ctx, c.c.SetModel(ctx, *rel))
}

// wrapCtx is wrap for a call under ctx: an error caused by Cancel or
// Close gets their code.
func (c *Client) wrapCtx(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); errors.Is(cause, errCancelled) || errors.Is(cause, client.ErrClosed) {
		if !errors.Is(err, cause) {
			err = fmt.Errorf("%w (%v)", cause, err)
		}
	}
	return wrap(err)
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}

// Record stores an interaction: kind is one of View, Click, Cart, Purchase,
// Rating; value is the rating for Rating (0 to 10, on the model's scale),
// else a weight (0 means 1); unixSeconds is when it happened (0 means
// now). An interaction it refuses fails with the code "invalid".
func (c *Client) Record(item string, kind int, value float64, unixSeconds int64) error {
	if kind < View || kind > Rating {
		return wrap(fmt.Errorf("%w: unknown kind %d", errInvalid, kind))
	}
	var t time.Time
	if unixSeconds != 0 {
		t = time.Unix(unixSeconds, 0)
	}
	ctx, cancel, err := c.ctx()
	if err != nil {
		return wrap(err)
	}
	defer cancel()
	return c.wrapCtx(ctx, c.c.Record(ctx, client.Interaction{Item: item, Kind: client.Kind(kind), Value: value, Time: t}))
}

// Recommendations is a ranked list of items.
type Recommendations struct{ recs []client.Recommendation }

// Len returns the number of items.
func (r *Recommendations) Len() int {
	if r == nil {
		return 0
	}
	return len(r.recs)
}

// Item returns the ID of the i-th item, best first; "" if i is out of
// range [0, Len()).
func (r *Recommendations) Item(i int) string {
	if r == nil || i < 0 || i >= len(r.recs) {
		return ""
	}
	return r.recs[i].Item
}

// Score returns the model's score of the i-th item; 0 if i is out of
// range [0, Len()).
func (r *Recommendations) Score(i int) float64 {
	if r == nil || i < 0 || i >= len(r.recs) {
		return 0
	}
	return r.recs[i].Score
}

// Recommend returns the k best items for the user, computed on the device.
func (c *Client) Recommend(k int, includeSeen bool) (*Recommendations, error) {
	return c.RecommendFiltered(k, includeSeen, "", nil)
}

// ItemFilter is the app's say over what Recommend returns (in stock,
// age-appropriate, not already in the basket…): implement it in Kotlin or
// Swift. Allow is asked about candidates in order of score until k are
// allowed; it must not call back into the Client.
type ItemFilter interface {
	Allow(item string) bool
}

// RecommendFiltered is Recommend that never returns the items listed in
// exclude (one ID a line) nor those filter refuses (nil: no filter).
func (c *Client) RecommendFiltered(k int, includeSeen bool, exclude string, filter ItemFilter) (*Recommendations, error) {
	ctx, cancel, err := c.ctx()
	if err != nil {
		return nil, wrap(err)
	}
	defer cancel()
	f := client.Filter{IncludeSeen: includeSeen, Exclude: splitLines(exclude)}
	if filter != nil {
		f.Allow = filter.Allow
	}
	recs, err := c.c.Recommend(ctx, k, f)
	if err != nil {
		return nil, c.wrapCtx(ctx, err)
	}
	return &Recommendations{recs: recs}, nil
}

// Sync fetches a newer model if there is one; it reports whether it did.
func (c *Client) Sync() (bool, error) {
	ctx, cancel, err := c.ctx()
	if err != nil {
		return false, wrap(err)
	}
	defer cancel()
	ok, err := c.c.Sync(ctx)
	return ok, c.wrapCtx(ctx, err)
}

// Participate takes part in one round if the user opted in and the round
// meets the policy. Run it from a background job; after a no_round error,
// schedule the next one no sooner than RetryAfterMs.
func (c *Client) Participate() error {
	ctx, cancel, err := c.ctx()
	if err != nil {
		return wrap(err)
	}
	defer cancel()
	_, err = c.c.Participate(ctx)
	var nr *client.NoRoundError
	c.mu.Lock()
	c.retry = 0
	if errors.As(err, &nr) {
		c.retry = nr.RetryAfter
	}
	c.mu.Unlock()
	return c.wrapCtx(ctx, err)
}

// RetryAfterMs is, after Participate failed with no_round, how many
// milliseconds the cluster asked the device to wait before it checks in
// again (it spreads its devices' check-ins over time); 0 otherwise.
func (c *Client) RetryAfterMs() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.retry.Milliseconds()
}

// OptIn records the user's consent to take part in training.
func (c *Client) OptIn() error { return wrap(c.c.OptIn()) }

// OptOut withdraws consent at once and abandons a round under way.
func (c *Client) OptOut() error {
	ctx, cancel, err := c.ctx()
	if err != nil {
		return wrap(err)
	}
	defer cancel()
	return c.wrapCtx(ctx, c.c.OptOut(ctx))
}

// OptedIn reports whether the user takes part in training.
func (c *Client) OptedIn() bool { return c.c.OptedIn() }

// DeleteMyData wipes the user's data, factor, ledger and keys from the
// device; the Client stays usable, empty and opted out.
func (c *Client) DeleteMyData() error {
	ctx, cancel, err := c.ctx()
	if err != nil {
		return wrap(err)
	}
	defer cancel()
	return c.wrapCtx(ctx, c.c.DeleteMyData(ctx))
}

// ReportJSON returns the transparency report as JSON (see client.Report).
func (c *Client) ReportJSON() (string, error) {
	r, err := c.c.Report()
	if err != nil {
		return "", wrap(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", wrap(err)
	}
	return string(b), nil
}

// Close abandons a round under way and releases the store.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cancel(client.ErrClosed)
	c.mu.Unlock()
	err := c.c.Close()
	if cl, ok := c.fed.(io.Closer); ok {
		err = errors.Join(err, cl.Close())
	}
	return wrap(err)
}

// Remove deletes the SDK's files from dir, for starting over after a
// "corrupt" or "wrong_key" error.
func Remove(dir string) error { return wrap(client.Remove(dir)) }

// logHandler is the slog.Handler that passes the SDK's logs to the app's
// Logger, if it set one. Handlers derived by WithAttrs share its sink.
type logHandler struct {
	sink  *atomic.Pointer[Logger]
	attrs []slog.Attr
}

func newLogHandler() *logHandler { return &logHandler{sink: new(atomic.Pointer[Logger])} }

func (h *logHandler) set(l Logger) {
	if l == nil {
		h.sink.Store(nil)
		return
	}
	h.sink.Store(&l)
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return h.sink.Load() != nil }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	lp := h.sink.Load()
	if lp == nil {
		return nil
	}
	var b strings.Builder
	add := func(a slog.Attr) bool {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	(*lp).Log(int(r.Level), r.Message, b.String())
	return nil
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{sink: h.sink, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *logHandler) WithGroup(string) slog.Handler { return h }
