package client

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fedrec/fedrec/aggregation/secagg"
	"github.com/fedrec/fedrec/client/internal/round"
	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// Dialer is the client's connection to a coordinator cluster: it holds one
// QUIC connection at a time, to the node it last found useful, and moves
// to the leader when a node answers with a leader hint. It is safe for
// concurrent use, but a held check-in occupies one of the connection's few
// streams (wire.MaxStreams): give each participant its own Dialer, as each
// device has its own connection.
//
// To connect, it races the cluster's addresses: it dials the address that
// answered last (or the leader a node named), and if that has not answered
// within DialerConfig.Stagger, the next one as well, and so on; the first
// handshake to complete wins and the others are cancelled. Addresses that
// failed go last, for a time that doubles with each failure, and with
// DialerConfig.StateDir this is remembered between process starts. A call
// tries every address, more than once if its budget allows, before it
// fails with ErrUnavailable.
type Dialer struct {
	cfg   DialerConfig
	addrs []string
	tls   *tls.Config

	mu     sync.Mutex
	conn   *transportConn
	at     string // address of conn
	prefer string // leader hint, or the address that last worked
	health map[string]addrHealth
	closed bool

	// certs remembers the peers' device certificates checked in earlier
	// signed rounds (Identity).
	certs *certCache
}

// addrHealth is an address's record of failures since it last answered.
type addrHealth struct {
	fails   uint32
	retryAt time.Time // until then the address goes after the others
}

// Defaults of DialerConfig.
const (
	DefaultDialTimeout = 3 * time.Second
	DefaultStagger     = 250 * time.Millisecond
	DefaultBudget      = 10 * time.Second
	// An address that failed n times in a row goes last for
	// min(backoffBase·2^(n-1), backoffMax).
	backoffBase = time.Second
	backoffMax  = 10 * time.Minute
	// dialerStateFile is the file of DialerConfig.StateDir.
	dialerStateFile = "fedrec.net"
)

// DialerConfig configures a Dialer. The zero value of every field but
// Addrs and TLS means its documented default.
type DialerConfig struct {
	// Addrs are the cluster's client addresses ("host:port"); required.
	Addrs []string
	// TLS must trust the cluster's CA and, for a cluster that
	// authenticates devices, hold the device's certificate (see
	// DeviceTLS); it is cloned. Required.
	TLS *tls.Config
	// DialTimeout bounds one address's handshake. Default
	// DefaultDialTimeout; at most wire.HandshakeTimeout counts.
	DialTimeout time.Duration
	// Stagger is how long the Dialer waits for an address to answer
	// before it dials the next one too. Default DefaultStagger.
	Stagger time.Duration
	// Budget bounds the time one call spends reaching the cluster,
	// across all addresses and retries; then the call fails with
	// ErrUnavailable. The call's context may end it sooner. It does not
	// bound the request itself once a node answers (a check-in may be
	// held for wire.MaxHold). Default DefaultBudget.
	Budget time.Duration
	// StateDir is the directory where the Dialer remembers, between
	// process starts, which address answered last and which failed (the
	// file fedrec.net, which says nothing about the user); "" means
	// memory only. Apps pass Config.Dir.
	StateDir string
	// Start is the address (one of Addrs) a new device dials first; ""
	// means a random one, so that a population spreads over the cluster.
	// A crowd that plays many devices from one process sets it round
	// robin, as a load balancer would: a few hundred random starts spread
	// unevenly. A device that remembers a node (StateDir) starts there.
	Start string
	// Logger receives the Dialer's logs; nil means none.
	Logger *slog.Logger
	// Clock returns the current time, for the addresses' backoff; nil
	// means time.Now.
	Clock func() time.Time
	// Web configures the WebTransport transport of browser builds
	// (js/wasm); native builds dial QUIC and ignore it.
	Web *WebOptions
	// Transport, if set, is the UDP socket the Dialer dials over, shared
	// with other Dialers (NewTransport); nil: each connection has its own
	// socket. Browser builds have none.
	Transport *Transport
	// DeviceCA holds the device CA's certificate, against which the
	// device checks its peers' certificates in a signed secure round
	// (Identity). nil: the device takes no part in signed rounds. With
	// it, the device certificate in TLS must have an Ed25519 or ECDSA
	// P-256 key (NewDialerConfig refuses others).
	DeviceCA *x509.CertPool
}

// ErrClosedDialer is returned by a closed Dialer. It matches ErrClosed.
var ErrClosedDialer = fmt.Errorf("%w (dialer)", ErrClosed)

// NewDialer returns a Dialer for the cluster's client addresses with the
// defaults of DialerConfig. tlsConf must trust the cluster's CA and, for a
// cluster that authenticates devices, hold the device's certificate (see
// DeviceTLS); it is cloned.
func NewDialer(addrs []string, tlsConf *tls.Config) (*Dialer, error) {
	return NewDialerConfig(DialerConfig{Addrs: addrs, TLS: tlsConf})
}

// NewDialerConfig returns a Dialer configured by cfg.
func NewDialerConfig(cfg DialerConfig) (*Dialer, error) {
	switch {
	case len(cfg.Addrs) == 0:
		return nil, fmt.Errorf("%w: no coordinator addresses", ErrInvalidArgument)
	case len(cfg.Addrs) > wire.MaxStateAddrs:
		return nil, fmt.Errorf("%w: %d coordinator addresses, at most %d", ErrInvalidArgument, len(cfg.Addrs), wire.MaxStateAddrs)
	case cfg.TLS == nil:
		return nil, fmt.Errorf("%w: no TLS configuration", ErrInvalidArgument)
	case cfg.Start != "" && !slices.Contains(cfg.Addrs, cfg.Start):
		return nil, fmt.Errorf("%w: DialerConfig.Start %q is not one of Addrs", ErrInvalidArgument, cfg.Start)
	case cfg.DialTimeout < 0 || cfg.Stagger < 0 || cfg.Budget < 0:
		return nil, fmt.Errorf("%w: DialerConfig.DialTimeout %v, Stagger %v, Budget %v: want >= 0", ErrInvalidArgument, cfg.DialTimeout, cfg.Stagger, cfg.Budget)
	}
	for _, a := range cfg.Addrs {
		if a == "" || len(a) > wire.MaxAddrLen {
			return nil, fmt.Errorf("%w: coordinator address of %d bytes", ErrInvalidArgument, len(a))
		}
	}
	if cfg.DeviceCA != nil && len(cfg.TLS.Certificates) > 0 {
		// Now rather than in the first signed round.
		if _, err := signingKey(cfg.TLS.Certificates[0]); err != nil {
			return nil, fmt.Errorf("%w: DialerConfig.DeviceCA is set for signed rounds, but %w", ErrInvalidArgument, err)
		}
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.Stagger == 0 {
		cfg.Stagger = DefaultStagger
	}
	if cfg.Budget == 0 {
		cfg.Budget = DefaultBudget
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	cfg.Addrs = slices.Clone(cfg.Addrs)
	// A new device starts at a random node, so that a population spreads
	// over the cluster (every node serves devices); it stays with the one
	// that answers.
	start := cfg.Start
	if start == "" {
		start = cfg.Addrs[rand.IntN(len(cfg.Addrs))]
	}
	d := &Dialer{cfg: cfg, addrs: cfg.Addrs, tls: cfg.TLS.Clone(), prefer: start, health: map[string]addrHealth{}, certs: newCertCache()}
	cfg.TLS = nil
	d.load()
	return d, nil
}

// load reads what the Dialer remembered in StateDir; a missing or
// unreadable file means starting afresh.
func (d *Dialer) load() {
	if d.cfg.StateDir == "" {
		return
	}
	b, err := os.ReadFile(filepath.Join(d.cfg.StateDir, dialerStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var s *wire.ClientState
	if err == nil {
		s, err = wire.DecodeClientState(b)
	}
	if err != nil {
		d.cfg.Logger.Warn("client: dialer state unreadable; starting afresh", "err", err)
		return
	}
	if slices.Contains(d.addrs, s.Preferred) {
		d.prefer = s.Preferred
	}
	for _, a := range s.Addrs {
		if slices.Contains(d.addrs, a.Addr) {
			d.health[a.Addr] = addrHealth{fails: a.Failures, retryAt: time.UnixMilli(a.RetryAtMs)}
		}
	}
}

// saveLocked writes what the Dialer remembers to StateDir. The caller
// holds mu.
func (d *Dialer) saveLocked() {
	if d.cfg.StateDir == "" {
		return
	}
	s := &wire.ClientState{}
	if slices.Contains(d.addrs, d.prefer) {
		s.Preferred = d.prefer
	}
	for _, a := range d.addrs {
		if h, ok := d.health[a]; ok {
			s.Addrs = append(s.Addrs, wire.AddrState{Addr: a, Failures: h.fails, RetryAtMs: max(h.retryAt.UnixMilli(), 0)})
		}
	}
	b, err := wire.EncodeClientState(s)
	if err == nil {
		err = writeFileAtomic(d.cfg.StateDir, dialerStateFile, b)
	}
	if err != nil {
		d.cfg.Logger.Warn("client: saving the dialer state failed", "err", err)
	}
}

// writeFileAtomic replaces dir/name with b through a fresh temporary file
// and a rename, so that a reader sees the old bytes or the new.
func writeFileAtomic(dir, name string, b []byte) error {
	f, err := os.CreateTemp(dir, name+".*"+tmpSuffix)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// DeviceTLS returns the TLS configuration of a device: it trusts the
// cluster's CA pool and presents cert, the device certificate the app's
// backend issued (its common name is the device's client ID).
func DeviceTLS(ca *x509.CertPool, cert tls.Certificate) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca, Certificates: []tls.Certificate{cert}}
}

// DeviceID returns the client ID in a device certificate, which must be
// the ClientID of every request the device makes.
func DeviceID(cert tls.Certificate) (string, error) {
	leaf := cert.Leaf
	if leaf == nil {
		if len(cert.Certificate) == 0 {
			return "", fmt.Errorf("%w: empty device certificate", ErrInvalidArgument)
		}
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return "", fmt.Errorf("%w: device certificate: %v", ErrInvalidArgument, err)
		}
	}
	return wire.DeviceID(leaf), nil
}

// Identity returns the device's identity in a signed secure round of
// cohort: the Dialer's device certificate (the first of its TLS
// certificates) checked against DialerConfig.DeviceCA.
func (d *Dialer) Identity(cohort []string) (*Identity, error) {
	if len(d.tls.Certificates) == 0 {
		return nil, fmt.Errorf("%w: no device certificate", ErrIdentity)
	}
	return newIdentity(d.tls.Certificates[0], d.cfg.DeviceCA, cohort, d.certs)
}

// signing is what the Dialer's device brings to a signed secure round
// that must resist colluders colluding devices per neighbourhood.
func (d *Dialer) signing(colluders int) round.SecureOptions {
	return round.SecureOptions{Identity: d.RoundIdentity, Colluders: colluders}
}

// RoundIdentity is Identity for a signed secure round: with roster (the
// plan's wire.SecAggParams.Roster, a round of listed devices only) it
// refuses a peer's bare certificate (Identity.RequireRoster).
func (d *Dialer) RoundIdentity(cohort []string, roster bool) (secagg.Identity, error) {
	id, err := d.Identity(cohort)
	if err != nil {
		return nil, err
	}
	if roster {
		id.RequireRoster()
	}
	return id, nil
}

// DeviceID returns the client ID of the Dialer's device certificate, ""
// if it presents none.
func (d *Dialer) DeviceID() string {
	if len(d.tls.Certificates) == 0 {
		return ""
	}
	id, _ := DeviceID(d.tls.Certificates[0])
	return id
}

// Close closes the connection.
func (d *Dialer) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.conn != nil {
		d.conn.CloseWithError(0, "")
		d.conn = nil
	}
	return nil
}

// Release closes the connection the Dialer holds, if any, without
// counting a failure of its node: the next request dials again. A device
// that will not talk to the cluster for a while (told to check in again
// later) releases it so as to hold no connection meanwhile.
func (d *Dialer) Release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.CloseWithError(0, "")
		d.conn = nil
	}
}

// order returns the addresses in the order to dial them: the preferred
// one, then the configured ones in their order, except that the addresses
// still backing off go last, those that may be retried soonest first. The
// caller holds mu.
func (d *Dialer) orderLocked(now time.Time) []string {
	out := make([]string, 0, len(d.addrs)+1)
	if d.prefer != "" {
		out = append(out, d.prefer)
	}
	for _, a := range d.addrs {
		if a != d.prefer {
			out = append(out, a)
		}
	}
	wait := func(a string) time.Duration {
		if h, ok := d.health[a]; ok && h.retryAt.After(now) {
			return h.retryAt.Sub(now)
		}
		return 0
	}
	slices.SortStableFunc(out, func(a, b string) int { return cmp.Compare(wait(a), wait(b)) })
	return out
}

// failedLocked records a failure of addr. The caller holds mu.
func (d *Dialer) failedLocked(addr string, now time.Time) {
	h := d.health[addr]
	h.fails++
	h.retryAt = now.Add(min(backoffBase<<min(h.fails-1, 30), backoffMax))
	d.health[addr] = h
	if d.prefer == addr {
		d.prefer = ""
	}
}

// connect returns a live connection: the one it holds if it is to the
// preferred address, or a new one from racing the addresses until one
// answers or ctx is done.
func (d *Dialer) connect(ctx context.Context) (*transportConn, string, error) {
	var errs []error
	for attempt := 0; ; attempt++ {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return nil, "", ErrClosedDialer
		}
		if d.conn != nil && d.conn.Context().Err() == nil && (d.at == d.prefer || d.prefer == "") {
			c, at := d.conn, d.at
			d.mu.Unlock()
			return c, at, nil
		}
		order := d.orderLocked(d.cfg.Clock())
		d.mu.Unlock()

		conn, addr, failed := d.race(ctx, order)

		d.mu.Lock()
		now := d.cfg.Clock()
		for a, err := range failed {
			d.failedLocked(a, now)
			errs = append(errs, fmt.Errorf("dial %s: %w", a, err))
		}
		if conn != nil {
			delete(d.health, addr)
			d.prefer = addr
		}
		d.saveLocked()
		switch {
		case d.closed:
			if conn != nil {
				conn.CloseWithError(0, "")
			}
			d.mu.Unlock()
			return nil, "", ErrClosedDialer
		case conn != nil:
			if d.conn != nil {
				d.conn.CloseWithError(0, "")
			}
			d.conn, d.at = conn, addr
			d.mu.Unlock()
			return conn, addr, nil
		}
		d.mu.Unlock()
		d.cfg.Logger.Debug("client: no coordinator answered", "attempt", attempt, "addrs", len(order))
		// Every address failed: try them all again after a pause, until
		// the budget is spent.
		if err := round.Sleep(ctx, min(DefaultStagger<<min(attempt, 4), 2*time.Second)); err != nil {
			errs = append(errs, err)
			return nil, "", errors.Join(errs...)
		}
	}
}

// race dials the addresses in order, starting the next one whenever the
// last one started has not answered within the stagger or has failed. The
// first connection wins; the other dials are cancelled (and any other
// connection closed) before race returns. failed holds the addresses that
// failed on their own, not by cancellation.
func (d *Dialer) race(ctx context.Context, order []string) (win *transportConn, at string, failed map[string]error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i    int
		conn *transportConn
		err  error
	}
	results := make(chan result, len(order))
	started, pending := 0, 0
	start := func() {
		i := started
		started++
		pending++
		go func() {
			dctx, dcancel := context.WithTimeout(rctx, d.cfg.DialTimeout)
			defer dcancel()
			c, err := d.dial(dctx, order[i])
			if err != nil && rctx.Err() == nil && dctx.Err() != nil {
				err = fmt.Errorf("no answer within %v: %w", d.cfg.DialTimeout, err)
			}
			results <- result{i, c, err}
		}()
	}
	failed = map[string]error{}
	start()
	stagger := time.NewTimer(d.cfg.Stagger)
	defer stagger.Stop()
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			switch {
			case r.err == nil && win == nil:
				win, at = r.conn, order[r.i]
				cancel()
			case r.err == nil:
				r.conn.CloseWithError(0, "")
			case win == nil && ctx.Err() == nil:
				failed[order[r.i]] = r.err
				if started < len(order) {
					start()
					stagger.Reset(d.cfg.Stagger)
				}
			}
		case <-stagger.C:
			if win == nil && started < len(order) {
				start()
				stagger.Reset(d.cfg.Stagger)
			}
		}
	}
	return win, at, failed
}

// drop forgets a connection that failed and records the failure of its
// address.
func (d *Dialer) drop(conn *transportConn, addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == conn {
		d.conn.CloseWithError(0, "")
		d.conn = nil
	}
	d.failedLocked(addr, d.cfg.Clock())
	d.saveLocked()
}

// forget closes conn, if it is the Dialer's, without counting a failure
// of its address: the next request dials it again.
func (d *Dialer) forget(conn *transportConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == conn {
		d.conn.CloseWithError(0, "")
		d.conn = nil
	}
}

// follow makes the next request go to the leader the cluster named.
func (d *Dialer) follow(leader string) {
	if leader == "" || len(leader) > wire.MaxAddrLen {
		return
	}
	d.mu.Lock()
	d.prefer = leader
	d.mu.Unlock()
}

// Exchange runs one request of the wire protocol: it sends req and passes
// each reply to recv until recv is done or fails, following up to three
// leader hints. A node that cannot be reached, or whose connection fails,
// or that answers CodeUnavailable, is left for another within the
// Dialer's budget; when none answers, the error matches ErrUnavailable.
// A reply that breaks off after recv took its first message is not asked
// of another node (recv would see it begin twice, a model its second
// header): the error then matches ErrUnavailable too. An app has no need
// of it: NewNetwork speaks the protocol. It serves packages that take
// part in rounds themselves, such as client/crowd.
func (d *Dialer) Exchange(ctx context.Context, req wire.Message, recv func(wire.Message) (done bool, err error)) error {
	bctx, cancel := context.WithTimeout(ctx, d.cfg.Budget)
	defer cancel()
	var errs []error
	delivered := false
	take := func(m wire.Message) (bool, error) {
		delivered = true
		return recv(m)
	}
	for hop := 0; ; {
		conn, addr, err := d.connect(bctx)
		if err != nil {
			if errors.Is(err, ErrClosedDialer) {
				return err
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%w (%v)", ctx.Err(), errors.Join(append(errs, err)...))
			}
			return &unavailableError{errors.Join(append(errs, err)...)}
		}
		err = exchangeOn(ctx, conn, req, wire.Limits{}, take)
		var we *wire.Error
		switch {
		case err == nil:
			return nil
		case errors.Is(err, wire.ErrNoStream) && ctx.Err() == nil:
			// The node answers but the connection lost its stream
			// slots: a new connection, to the same node, has them all.
			d.cfg.Logger.Warn("client: no stream free on the connection; dialing again", "addr", addr)
			d.forget(conn)
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			if bctx.Err() != nil || len(errs) >= 2*len(d.addrs)+1 {
				return &unavailableError{errors.Join(errs...)}
			}
			continue
		case errors.As(err, &we) && we.Code != wire.CodeUnavailable:
			if (we.Code == wire.CodeNotLeader || we.Code == wire.CodeUnknownModel) && we.Leader != "" && we.Leader != addr && hop < 3 && !delivered {
				hop++
				d.follow(we.Leader)
				continue
			}
			return err
		case ctx.Err() != nil:
			return err
		}
		// Transport failure or an unavailable node: try another.
		d.drop(conn, addr)
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if delivered {
			return &unavailableError{fmt.Errorf("%w (the reply broke off after its first message)", errors.Join(errs...))}
		}
		if bctx.Err() != nil || len(errs) >= 2*len(d.addrs) {
			return &unavailableError{errors.Join(errs...)}
		}
	}
}

// Model downloads a committed model (version 0: the newest) from whichever
// node the Dialer is connected to, checking it against its digest. It
// returns the model and its version.
func (d *Dialer) Model(ctx context.Context, version uint64) (*model.Model, uint64, error) {
	m, h, err := round.Model(ctx, d, version)
	if err != nil {
		return nil, 0, err
	}
	return m, h.Model, nil
}
