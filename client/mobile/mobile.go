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
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
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
	CodeInvalid         = "invalid"          // a bad argument or option, or an interaction Record refuses
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
	{context.DeadlineExceeded, CodeTimeout},
}

// wrap gives err its code prefix.
func wrap(err error) error {
	if err == nil {
		return nil
	}
	code := CodeInvalid
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

	RetentionDays   int // default 90
	MaxInteractions int // default 10,000

	// TimeoutMillis bounds each blocking call that talks to the network
	// or waits for a round to stop; default 60,000.
	TimeoutMillis int64

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
}

// federation builds the network side from o, or nil when it is not set.
func (o *Options) federation() (client.Federation, error) {
	if o.Coordinators == "" {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(o.CACertPEM) {
		return nil, errors.New("mobile: CACertPEM holds no certificate")
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
			return nil, fmt.Errorf("mobile: DeviceCertPEM, DeviceKeyPEM: %w", err)
		}
		certID, err := client.DeviceID(cert)
		if err != nil {
			return nil, err
		}
		if id == "" {
			id = certID
		} else if id != certID {
			return nil, fmt.Errorf("mobile: ClientID %q, but the device certificate is %q's", id, certID)
		}
		conf = client.DeviceTLS(pool, cert)
	}
	d, err := client.NewDialer(addrs, conf)
	if err != nil {
		return nil, err
	}
	items := strings.Split(strings.TrimRight(o.Catalogue, "\n"), "\n")
	if o.Catalogue == "" {
		items = nil
	}
	return client.NewNetwork(client.NetworkConfig{ClientID: id, Dialer: d, Items: items})
}

// Client is the SDK for an app. Its methods are safe to call from any
// thread.
type Client struct {
	c       *client.Client
	timeout time.Duration
	fed     client.Federation // closed with the Client if it is an io.Closer

	mu     sync.Mutex
	base   context.Context // cancelled by Close
	cancel context.CancelFunc
}

// New opens the SDK's store in o.Dir.
func New(o *Options) (*Client, error) {
	if o == nil {
		return nil, wrap(errors.New("mobile: nil Options"))
	}
	fed, err := o.federation()
	if err != nil {
		return nil, wrap(err)
	}
	return newClient(o, fed)
}

// newClient is New with a Federation; the network side plugs in here.
func newClient(o *Options, fed client.Federation) (*Client, error) {
	if o.RetentionDays < 0 || o.TimeoutMillis < 0 {
		return nil, wrap(fmt.Errorf("mobile: RetentionDays %d and TimeoutMillis %d must be >= 0", o.RetentionDays, o.TimeoutMillis))
	}
	cfg := client.Config{
		Dir: o.Dir,
		Key: o.Key,
		Policy: client.Policy{
			MinCohort: o.MinCohort, MinNoiseMultiplier: o.MinNoiseMultiplier, MaxClipNorm: o.MaxClipNorm,
			Epsilon: o.Epsilon, Delta: o.Delta, TrustSamplingRate: o.TrustSamplingRate,
		},
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
	base, cancel := context.WithCancel(context.Background())
	return &Client{c: c, timeout: timeout, base: base, cancel: cancel, fed: fed}, nil
}

func (c *Client) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.base, c.timeout)
}

// Record stores an interaction: kind is one of View, Click, Cart, Purchase,
// Rating; value is the rating for Rating (0 to 10, on the model's scale),
// else a weight (0 means 1); unixSeconds is when it happened (0 means
// now). An interaction it refuses fails with the code "invalid".
func (c *Client) Record(item string, kind int, value float64, unixSeconds int64) error {
	if kind < View || kind > Rating {
		return wrap(fmt.Errorf("mobile: unknown kind %d", kind))
	}
	var t time.Time
	if unixSeconds != 0 {
		t = time.Unix(unixSeconds, 0)
	}
	ctx, cancel := c.ctx()
	defer cancel()
	return wrap(c.c.Record(ctx, client.Interaction{Item: item, Kind: client.Kind(kind), Value: value, Time: t}))
}

// Recommendations is a ranked list of items.
type Recommendations struct{ recs []client.Recommendation }

// Len returns the number of items.
func (r *Recommendations) Len() int { return len(r.recs) }

// Item returns the ID of the i-th item, best first.
func (r *Recommendations) Item(i int) string { return r.recs[i].Item }

// Score returns the model's score of the i-th item.
func (r *Recommendations) Score(i int) float64 { return r.recs[i].Score }

// Recommend returns the k best items for the user, computed on the device.
func (c *Client) Recommend(k int, includeSeen bool) (*Recommendations, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	recs, err := c.c.Recommend(ctx, k, client.Filter{IncludeSeen: includeSeen})
	if err != nil {
		return nil, wrap(err)
	}
	return &Recommendations{recs: recs}, nil
}

// Sync fetches a newer model if there is one; it reports whether it did.
func (c *Client) Sync() (bool, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	ok, err := c.c.Sync(ctx)
	return ok, wrap(err)
}

// Participate takes part in one round if the user opted in and the round
// meets the policy. Run it from a background job.
func (c *Client) Participate() error {
	ctx, cancel := c.ctx()
	defer cancel()
	_, err := c.c.Participate(ctx)
	return wrap(err)
}

// OptIn records the user's consent to take part in training.
func (c *Client) OptIn() error { return wrap(c.c.OptIn()) }

// OptOut withdraws consent at once and abandons a round under way.
func (c *Client) OptOut() error {
	ctx, cancel := c.ctx()
	defer cancel()
	return wrap(c.c.OptOut(ctx))
}

// OptedIn reports whether the user takes part in training.
func (c *Client) OptedIn() bool { return c.c.OptedIn() }

// DeleteMyData wipes the user's data, factor, ledger and keys from the
// device; the Client stays usable, empty and opted out.
func (c *Client) DeleteMyData() error {
	ctx, cancel := c.ctx()
	defer cancel()
	return wrap(c.c.DeleteMyData(ctx))
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
	c.cancel()
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
