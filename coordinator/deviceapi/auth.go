package deviceapi

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// Peer describes who sent a request.
type Peer struct {
	// Node is true when the peer presented a certificate of the cluster
	// CA: only nodes may join.
	Node bool
	// Device is the client ID of the device certificate the peer
	// presented, verified against the device CA; "" if none. When the
	// node authenticates devices, every request that names a client must
	// name this one.
	Device string
	// Cert is the device certificate (nil for nodes and for devices of
	// a WebTransport session), checked again on every request (expiry,
	// deny-list); a signed secure round takes the device's key from it.
	Cert *x509.Certificate
	// tokenExpires, for a device authenticated by a device token (a
	// WebTransport session), is the token's expiry, checked again on
	// every request with the deny-list.
	tokenExpires time.Time
	// why says why the peer is not authenticated, for its error message.
	why string
}

// auth authenticates the peers of the client protocol: nodes by a
// certificate of the cluster CA, devices by one of the device CA, and
// refuses revoked devices (the deny-list file, reloaded when it changes).
// With no device CA, devices are not authenticated (development only).
type auth struct {
	// certs holds the cluster CA, the device CA pools (nil: devices
	// are not authenticated) and the device token keys, read at each
	// peer: a reload takes effect at the next connection (certificates)
	// or session (tokens).
	certs Certs
	path  string // deny-list; "" means none
	log   *slog.Logger
	every time.Duration // deny-list check period

	mu      sync.Mutex
	checked time.Time
	stamp   fileStamp
	revoked *pki.Revoked
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func newAuth(certs Certs, log *slog.Logger) *auth {
	b := certs.Bundle()
	a := &auth{certs: certs, path: b.Revoked, log: log, every: time.Second}
	if b.Devices == nil {
		log.Warn("devices are not authenticated: no device CA (anyone may check in under any client ID)")
	}
	a.reload(time.Now())
	return a
}

// required reports whether devices must authenticate.
// A reload never adds nor removes the device CA (pki.Bundle.Reload).
func (a *auth) required() bool { return a != nil && a.certs.Bundle().Devices != nil }

// tokens returns the keys that verify device tokens (webtransport.go),
// from the current bundle: a reload that changed device-token.pem takes
// effect at the next session.
func (a *auth) tokens() []ed25519.PublicKey { return a.certs.Bundle().TokenKeys }

// serverTLS is the client protocol's TLS configuration: the node's
// certificate, and a client certificate requested but verified here
// (peer), so that a refused one gets a clear error code rather than a
// failed handshake. TLS 1.3 still proves the peer holds its key.
// Each handshake serves the current certificate.
func serverTLS(certs Certs) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequestClientCert, GetCertificate: certs.GetCertificate}
}

// peer classifies the peer of a connection by its certificate.
func (a *auth) peer(cs tls.ConnectionState) Peer {
	if len(cs.PeerCertificates) == 0 {
		return Peer{why: "no client certificate (a device certificate of the device CA is required)"}
	}
	leaf := cs.PeerCertificates[0]
	b := a.certs.Bundle()
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.CA, Intermediates: inter, KeyUsages: usage}); err == nil {
		return Peer{Node: true}
	}
	if b.Devices == nil {
		return Peer{why: "no device CA configured"}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.Devices, Intermediates: inter, KeyUsages: usage}); err != nil {
		return Peer{why: fmt.Sprintf("device certificate refused: %v", err)}
	}
	id := wire.DeviceID(leaf)
	if id == "" || len(id) > wire.MaxIDLen {
		return Peer{why: "device certificate without a valid client ID"}
	}
	return Peer{Device: id, Cert: leaf}
}

// check reports why a peer may not make device requests now, or nil.
func (a *auth) check(p Peer) *wire.Error {
	if p.Device == "" {
		why := p.why
		if why == "" {
			why = "a device certificate is required"
		}
		return wire.Errorf(wire.CodeUnauthenticated, "%s", why)
	}
	now := time.Now()
	if p.Cert != nil {
		if now.After(p.Cert.NotAfter) {
			return wire.Errorf(wire.CodeUnauthenticated, "device certificate of %q expired at %s", p.Device, p.Cert.NotAfter.UTC().Format(time.RFC3339))
		}
		if a.deny(now).Has(p.Cert, p.Device) {
			return wire.Errorf(wire.CodeUnauthenticated, "device certificate of %q is revoked", p.Device)
		}
	}
	if !p.tokenExpires.IsZero() {
		if !now.Before(p.tokenExpires) {
			return wire.Errorf(wire.CodeUnauthenticated, "device token of %q expired at %s", p.Device, p.tokenExpires.UTC().Format(time.RFC3339))
		}
		if a.deny(now).HasDevice(p.Device) {
			return wire.Errorf(wire.CodeUnauthenticated, "device %q is revoked", p.Device)
		}
	}
	return nil
}

// early refuses, from the frame header alone, a request the peer may not
// make whatever its body: before the body is read.
func (a *auth) early(t wire.Type, p Peer) *wire.Error {
	if p.Node {
		return nil
	}
	if nodeOnly(t) { // a partial sum is as large as three uploads
		return wire.Errorf(wire.CodeForbidden, "%s needs a node certificate of the cluster CA", t)
	}
	if !a.required() {
		return nil
	}
	if t == wire.TypeJoin {
		return nil // Handle answers CodeForbidden
	}
	return a.check(p)
}

// nodeOnly reports whether only the cluster's nodes may send requests of
// type t.
func nodeOnly(t wire.Type) bool {
	return t == wire.TypeLobby || t == wire.TypeSelect || t == wire.TypePartial
}

// authorize checks a decoded request against its peer.
func (a *auth) authorize(req wire.Message, p Peer) *wire.Error {
	if !a.required() {
		return nil
	}
	var id string
	switch m := req.(type) {
	case *wire.Join:
		return nil // Handle checks p.Node
	case *wire.GetModel:
		if p.Node {
			return nil
		}
		return a.check(p)
	case *wire.CheckIn:
		id = m.ClientID
	case *wire.Upload:
		id = m.ClientID
	case *wire.SecAggAdvert, *wire.SecAggShares, *wire.SecAggMasked, *wire.SecAggCheck, *wire.SecAggUnmask:
		id = m.(wire.SecAggRequest).Header().ClientID
	default:
		return nil
	}
	if e := a.check(p); e != nil {
		return e
	}
	if id != p.Device {
		return wire.Errorf(wire.CodeForbidden, "client ID %q is not this device's (%q, from its certificate)", id, p.Device)
	}
	return nil
}

// deny returns the deny-list, reloading it when the file changed (checked
// at most every a.every).
func (a *auth) deny(now time.Time) *pki.Revoked {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Sub(a.checked) >= a.every {
		a.reloadLocked(now)
	}
	return a.revoked
}

func (a *auth) reload(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reloadLocked(now)
}

func (a *auth) reloadLocked(now time.Time) {
	a.checked = now
	if a.path == "" {
		return
	}
	fi, err := os.Stat(a.path)
	if errors.Is(err, os.ErrNotExist) {
		if a.revoked.Len() > 0 {
			a.log.Info("deny-list removed: no device is revoked", "path", a.path)
		}
		a.revoked, a.stamp = nil, fileStamp{}
		return
	}
	if err != nil {
		a.log.Error("deny-list unreadable, keeping the previous one", "path", a.path, "err", err)
		return
	}
	st := fileStamp{fi.ModTime(), fi.Size()}
	if st == a.stamp {
		return
	}
	b, err := os.ReadFile(a.path)
	if err != nil {
		a.log.Error("deny-list unreadable, keeping the previous one", "path", a.path, "err", err)
		return
	}
	v, err := pki.ParseRevoked(bytes.NewReader(b))
	if err != nil {
		a.stamp = st // logged once per change
		a.log.Error("deny-list invalid, keeping the previous one", "path", a.path, "err", err)
		return
	}
	a.revoked, a.stamp = v, st
	a.log.Info("deny-list loaded", "path", a.path, "entries", v.Len())
}
