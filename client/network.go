package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedrec/fedrec/coordinator/wire"
	"github.com/fedrec/fedrec/model"
)

// Dialer is the client's connection to a coordinator cluster: it holds one
// QUIC connection at a time, to the node it last found useful, and moves
// to the leader when a node answers with a leader hint or to the next
// address when a node is unreachable. It is safe for concurrent use, but a
// held check-in occupies one of the connection's few streams
// (wire.MaxStreams): give each participant its own Dialer, as each device
// has its own connection.
type Dialer struct {
	addrs []string
	tls   *tls.Config

	mu     sync.Mutex
	conn   *quic.Conn
	at     string // address of conn
	prefer string // leader hint, or the address that last worked
	next   int    // next address to try
	closed bool
}

// ErrClosedDialer is returned by a closed Dialer.
var ErrClosedDialer = errors.New("client: dialer closed")

// NewDialer returns a Dialer for the cluster's client addresses. tlsConf
// must trust the cluster's CA and, for a cluster that authenticates
// devices, hold the device's certificate (see DeviceTLS); it is cloned.
func NewDialer(addrs []string, tlsConf *tls.Config) (*Dialer, error) {
	if len(addrs) == 0 {
		return nil, errors.New("client: no coordinator addresses")
	}
	if tlsConf == nil {
		return nil, errors.New("client: no TLS configuration")
	}
	return &Dialer{addrs: append([]string(nil), addrs...), tls: tlsConf.Clone(), prefer: addrs[0]}, nil
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
			return "", errors.New("client: empty device certificate")
		}
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return "", fmt.Errorf("client: device certificate: %w", err)
		}
	}
	return wire.DeviceID(leaf), nil
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

// connect returns a live connection, dialing the preferred address or, if
// that fails, the next one.
func (d *Dialer) connect(ctx context.Context) (*quic.Conn, string, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, "", ErrClosedDialer
	}
	if d.conn != nil && d.conn.Context().Err() == nil && d.at == d.prefer {
		c, at := d.conn, d.at
		d.mu.Unlock()
		return c, at, nil
	}
	addr := d.prefer
	d.mu.Unlock()

	conn, err := wire.Dial(ctx, addr, d.tls)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		// Try another node next time.
		d.prefer = d.addrs[d.next%len(d.addrs)]
		d.next++
		return nil, "", fmt.Errorf("dial %s: %w", addr, err)
	}
	if d.closed {
		conn.CloseWithError(0, "")
		return nil, "", ErrClosedDialer
	}
	if d.conn != nil {
		d.conn.CloseWithError(0, "")
	}
	d.conn, d.at = conn, addr
	return conn, addr, nil
}

// drop forgets a connection that failed and moves on to another address.
func (d *Dialer) drop(conn *quic.Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == conn {
		d.conn.CloseWithError(0, "")
		d.conn = nil
		d.prefer = d.addrs[d.next%len(d.addrs)]
		d.next++
	}
}

// follow makes the next request go to the leader the cluster named.
func (d *Dialer) follow(leader string) {
	if leader == "" {
		return
	}
	d.mu.Lock()
	d.prefer = leader
	d.mu.Unlock()
}

// exchange runs one request, following up to three leader hints. A
// connection failure drops the connection; the caller retries.
func (d *Dialer) exchange(ctx context.Context, req wire.Message, recv func(wire.Message) (bool, error)) error {
	for hop := 0; ; hop++ {
		conn, addr, err := d.connect(ctx)
		if err != nil {
			return err
		}
		err = wire.Exchange(ctx, conn, req, wire.Limits{}, recv)
		var we *wire.Error
		switch {
		case err == nil:
			return nil
		case errors.As(err, &we):
			if (we.Code == wire.CodeNotLeader || we.Code == wire.CodeUnknownModel) && we.Leader != "" && we.Leader != addr && hop < 3 {
				d.follow(we.Leader)
				continue
			}
			return err
		case ctx.Err() != nil:
			return err
		}
		// Transport failure: the node may be dead.
		d.drop(conn)
		return fmt.Errorf("%s: %w", addr, err)
	}
}

// checkIn checks in and returns the Plan or Wait the leader answers with.
func (d *Dialer) checkIn(ctx context.Context, req *wire.CheckIn) (wire.Message, error) {
	var out wire.Message
	err := d.exchange(ctx, req, func(m wire.Message) (bool, error) {
		switch m.(type) {
		case *wire.Plan, *wire.Wait:
			out = m
			return true, nil
		}
		return true, wire.Errorf(wire.CodeUnknownType, "unexpected %s after CheckIn", m.Type())
	})
	return out, err
}

// upload sends an update and waits for the acknowledgement.
func (d *Dialer) upload(ctx context.Context, req *wire.Upload) error {
	return d.exchange(ctx, req, func(m wire.Message) (bool, error) {
		if _, ok := m.(*wire.UploadAck); !ok {
			return true, wire.Errorf(wire.CodeUnknownType, "unexpected %s after Upload", m.Type())
		}
		return true, nil
	})
}

// secAgg sends one phase's message of a secure round and returns the
// leader's reply, which must be of type want. The leader holds the request
// until the phase closes.
func (d *Dialer) secAgg(ctx context.Context, req wire.Message, want wire.Type) (wire.Message, error) {
	var out wire.Message
	err := d.exchange(ctx, req, func(m wire.Message) (bool, error) {
		if m.Type() != want {
			return true, wire.Errorf(wire.CodeUnknownType, "unexpected %s after %s", m.Type(), req.Type())
		}
		out = m
		return true, nil
	})
	return out, err
}

// Model downloads a committed model (version 0: the newest) from whichever
// node the Dialer is connected to, checking it against its digest. It
// returns the model and its version.
func (d *Dialer) Model(ctx context.Context, version uint64) (*model.Model, uint64, error) {
	m, h, err := d.model(ctx, version)
	if err != nil {
		return nil, 0, err
	}
	return m, h.Model, nil
}

// model downloads a committed model as Model does and returns it with its
// header, which carries the cluster's event weights.
func (d *Dialer) model(ctx context.Context, version uint64) (*model.Model, *wire.ModelHeader, error) {
	var b *wire.ModelBuilder
	var hdr *wire.ModelHeader
	err := d.exchange(ctx, &wire.GetModel{Version: wire.Version, Model: version}, func(m wire.Message) (bool, error) {
		switch m := m.(type) {
		case *wire.ModelHeader:
			if b != nil {
				return true, wire.Errorf(wire.CodeMalformed, "second model header")
			}
			if version != 0 && m.Model != version {
				return true, wire.Errorf(wire.CodeMalformed, "asked for model %d, got %d", version, m.Model)
			}
			var err error
			b, err = wire.NewModelBuilder(m)
			hdr = m
			return false, err
		case *wire.ModelChunk:
			if b == nil {
				return true, wire.Errorf(wire.CodeMalformed, "model chunk before its header")
			}
			if err := b.Add(m); err != nil {
				return true, err
			}
			return b.Done(), nil
		}
		return true, wire.Errorf(wire.CodeUnknownType, "unexpected %s in a model transfer", m.Type())
	})
	if err != nil {
		return nil, nil, err
	}
	m, err := b.Model()
	if err != nil {
		return nil, nil, err
	}
	return m, hdr, nil
}

// ModelCache shares downloaded models among participants (many virtual
// clients in one process download each version once). It keeps the two
// newest versions. It also lends the participants their update buffers
// and bounds how many of them train and upload at once.
type ModelCache struct {
	mu      sync.Mutex
	entries map[uint64]*cacheEntry
	// updates holds update buffers (*[]float64) between rounds: a buffer
	// is model-sized (2.5 MB for ml-latest-small) and needed only while a
	// participant trains and uploads, and most virtual clients sit idle
	// between their rounds.
	updates sync.Pool
	// uploads is a semaphore of maxUploads slots.
	uploads chan struct{}
}

// maxUploads bounds the participants sharing a ModelCache that train and
// upload a plain (not secure) round's update at once. Each holds its
// update and the encoded upload, twice the model's size, until the leader
// has read it: with ml-latest-small, a cohort of 100 virtual clients
// uploading together made 1.1 GB of fedrec client's 1.5 GB peak RSS.
// Training takes milliseconds and the leader paces the uploads, so rounds
// take no longer for the bound.
const maxUploads = 16

type cacheEntry struct {
	digest string
	ready  chan struct{}
	m      *model.Model
	events *wire.EventWeights // the header's
	err    error
}

// NewModelCache returns an empty cache.
func NewModelCache() *ModelCache {
	return &ModelCache{entries: map[uint64]*cacheEntry{}, uploads: make(chan struct{}, maxUploads)}
}

// get returns model version with the given digest and the event weights
// its header carried, downloading it through d once however many callers
// ask at the same time.
func (c *ModelCache) get(ctx context.Context, d *Dialer, version uint64, digest []byte) (*model.Model, *wire.EventWeights, error) {
	c.mu.Lock()
	e := c.entries[version]
	if e != nil && e.digest != string(digest) {
		e = nil // a different model under the same version: never trust it
	}
	if e == nil {
		e = &cacheEntry{digest: string(digest), ready: make(chan struct{})}
		c.entries[version] = e
		for v := range c.entries {
			if v+1 < version {
				delete(c.entries, v) // keep the newest two
			}
		}
		c.mu.Unlock()
		e.m, e.events, e.err = fetch(ctx, d, version, digest)
		close(e.ready)
		if e.err != nil {
			c.mu.Lock()
			if c.entries[version] == e {
				delete(c.entries, version)
			}
			c.mu.Unlock()
		}
		return e.m, e.events, e.err
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
		return e.m, e.events, e.err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// update returns a buffer of n entries for a round's update, of any
// content; give it back with release when the round is over.
func (c *ModelCache) update(n int) *[]float64 {
	if b, _ := c.updates.Get().(*[]float64); b != nil && len(*b) == n {
		return b
	}
	b := make([]float64, n)
	return &b
}

// release returns an update buffer once nothing refers to it.
func (c *ModelCache) release(b *[]float64) { c.updates.Put(b) }

// uploadSlot waits for one of the maxUploads slots and returns the func
// that frees it.
func (c *ModelCache) uploadSlot(ctx context.Context) (func(), error) {
	select {
	case c.uploads <- struct{}{}:
		return func() { <-c.uploads }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetch downloads a model and checks its digest against the plan's; it
// returns the model and its header's event weights.
func fetch(ctx context.Context, d *Dialer, version uint64, digest []byte) (*model.Model, *wire.EventWeights, error) {
	m, h, err := d.model(ctx, version)
	if err != nil {
		return nil, nil, err
	}
	if got := wire.Digest(m); string(got[:]) != string(digest) {
		return nil, nil, fmt.Errorf("client: model %d does not match the round's digest", version)
	}
	return m, h.Events, nil
}

// backoff returns the wait before retry attempt (0-based): exponential
// from lo to hi with full jitter.
func backoff(r *rand.Rand, attempt int, lo, hi time.Duration) time.Duration {
	d := lo << min(attempt, 20)
	if d > hi || d <= 0 {
		d = hi
	}
	return lo/2 + time.Duration(r.Int64N(int64(d)))
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
