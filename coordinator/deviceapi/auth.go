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
	// auth gives the device's credential (Credential).
	auth *auth
}

// Credential is what a signed secure round relays as the device's
// credential: its entry in the node's device roster with the entry's path
// (wire.RosterCredential), which peers check with a few hashes, or, if
// the roster does not list its certificate, the certificate (DER). Nil
// without a device certificate.
func (p Peer) Credential() []byte {
	if p.Cert == nil {
		return nil
	}
	if p.auth == nil {
		return p.Cert.Raw
	}
	return p.auth.credential(p.Cert, time.Now())
}

// auth authenticates the peers of the client protocol: nodes by a
// certificate of the cluster CA, devices by one of the device CA, and
// refuses revoked devices (the deny-list file, reloaded when it changes),
// and gives a signed round each device's credential (the device roster's
// file, reloaded likewise).
// With no device CA, devices are not authenticated (development only).
type auth struct {
	// certs holds the cluster CA, the device CA pools (nil: devices
	// are not authenticated) and the device token keys, read at each
	// peer: a reload takes effect at the next connection (certificates)
	// or session (tokens).
	certs Certs
	log   *slog.Logger
	every time.Duration // period of the files' checks

	mu         sync.Mutex
	checked    time.Time
	denyFile   watchedFile
	revoked    *pki.Revoked
	rosterFile watchedFile
	roster     *pki.Roster
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func newAuth(certs Certs, log *slog.Logger) *auth {
	b := certs.Bundle()
	a := &auth{certs: certs, log: log, every: time.Second, denyFile: watchedFile{path: b.Revoked}, rosterFile: watchedFile{path: b.Roster}}
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
	return Peer{Device: id, Cert: leaf, auth: a}
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

// current returns the deny-list and the device roster, reloading their
// files when they changed (checked at most every a.every).
func (a *auth) current(now time.Time) (*pki.Revoked, *pki.Roster) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Sub(a.checked) >= a.every {
		a.reloadLocked(now)
	}
	return a.revoked, a.roster
}

// deny returns the deny-list (current).
func (a *auth) deny(now time.Time) *pki.Revoked {
	v, _ := a.current(now)
	return v
}

// credential returns what a signed round relays for device certificate c:
// its roster credential if the node's roster lists it, else c itself.
func (a *auth) credential(c *x509.Certificate, now time.Time) []byte {
	_, r := a.current(now)
	if r != nil && !now.After(r.Info.NotAfter) {
		if b, ok := r.Credential(c); ok {
			return b
		}
	}
	return c.Raw
}

func (a *auth) reload(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reloadLocked(now)
}

// reloadLocked reads the deny-list and the roster again if their files
// changed. A file that is unreadable or invalid leaves the previous
// version in place (logged once per change); a missing one means none.
func (a *auth) reloadLocked(now time.Time) {
	a.checked = now
	if b, gone, ok := a.denyFile.changed(a.log); gone {
		if a.revoked.Len() > 0 {
			a.log.Info("deny-list removed: no device is revoked", "path", a.denyFile.path)
		}
		a.revoked = nil
	} else if ok {
		if v, err := pki.ParseRevoked(bytes.NewReader(b)); err != nil {
			a.log.Error("deny-list invalid, keeping the previous one", "path", a.denyFile.path, "err", err)
		} else {
			a.revoked = v
			a.log.Info("deny-list loaded", "path", a.denyFile.path, "entries", v.Len())
		}
	}
	if b, gone, ok := a.rosterFile.changed(a.log); gone {
		if a.roster != nil {
			a.log.Info("device roster removed: signed rounds relay device certificates", "path", a.rosterFile.path)
		}
		a.roster = nil
	} else if ok {
		if r, err := pki.ParseRoster(b, a.certs.Bundle().Devices, now); err != nil {
			a.log.Error("device roster invalid, keeping the previous one", "path", a.rosterFile.path, "err", err)
		} else {
			a.roster = r
			a.log.Info("device roster loaded", "path", a.rosterFile.path, "epoch", r.Info.Epoch, "entries", r.Len(), "valid_until", r.Info.NotAfter.UTC().Format(time.RFC3339))
		}
	}
}

// watchedFile is a file the node reads again when it changes.
type watchedFile struct {
	path  string // "" means none
	stamp fileStamp
}

// changed returns the file's contents if it changed since the last call
// (ok), or gone if it no longer exists. An unreadable file is logged and
// reported unchanged.
func (w *watchedFile) changed(log *slog.Logger) (b []byte, gone, ok bool) {
	if w.path == "" {
		return nil, false, false
	}
	fi, err := os.Stat(w.path)
	if errors.Is(err, os.ErrNotExist) {
		w.stamp = fileStamp{}
		return nil, true, false
	}
	if err != nil {
		log.Error("file unreadable, keeping the previous version", "path", w.path, "err", err)
		return nil, false, false
	}
	st := fileStamp{fi.ModTime(), fi.Size()}
	if st == w.stamp {
		return nil, false, false
	}
	if b, err = os.ReadFile(w.path); err != nil {
		log.Error("file unreadable, keeping the previous version", "path", w.path, "err", err)
		return nil, false, false
	}
	w.stamp = st // an invalid version is logged once per change
	return b, false, true
}
