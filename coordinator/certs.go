package coordinator

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
)

// DefaultCertReloadInterval is how often a node looks at its certificate
// files for a change (Config.CertReloadInterval).
const DefaultCertReloadInterval = 5 * time.Second

// ErrCertsNotFromFiles is returned by ReloadCerts when Config.TLS was made
// in memory: there is nothing to read again.
var ErrCertsNotFromFiles = errors.New("coordinator: the certificates were not loaded from files")

// certStore holds the node's TLS material and replaces it as a whole when
// its files change: every TLS user (the client protocol's listener and
// auth.peer, Raft's listener and dials, join dials, the admin server)
// takes the current bundle at each handshake. A reload that fails keeps
// the previous bundle.
type certStore struct {
	cur atomic.Pointer[pki.Bundle]
	log *slog.Logger

	mu      sync.Mutex    // one reload at a time; guards the sums
	loaded  [32]byte      // the files' hash when last tried
	seen    [32]byte      // the files' hash at the previous poll
	reloads atomic.Uint64 // fedrec_cert_reloads_total
	fails   atomic.Uint64 // fedrec_cert_reload_failures_total
}

func newCertStore(b *pki.Bundle, log *slog.Logger) *certStore {
	s := &certStore{log: log}
	s.cur.Store(b)
	if b != nil && b.Dir != "" {
		if sum, err := b.Sum(); err == nil {
			s.loaded, s.seen = sum, sum
		}
	}
	return s
}

// Bundle returns the current bundle.
func (s *certStore) Bundle() *pki.Bundle { return s.cur.Load() }

// fromFiles reports whether the bundle can be reloaded.
func (s *certStore) fromFiles() bool { b := s.Bundle(); return b != nil && b.Dir != "" }

// reload reads the files again: always when forced (SIGHUP), else when
// their content changed since the last attempt and has stayed the same
// for one poll (so that a certificate and its key replaced one after the
// other are read together).
func (s *certStore) reload(force bool) error {
	old := s.Bundle()
	if old == nil || old.Dir == "" {
		return ErrCertsNotFromFiles
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sum, err := old.Sum()
	if err == nil && !force {
		settled := sum == s.seen
		s.seen = sum
		if sum == s.loaded || !settled {
			return nil
		}
	}
	s.loaded, s.seen = sum, sum
	var nb *pki.Bundle
	if err == nil {
		nb, err = old.Reload(time.Now())
	}
	if err != nil {
		s.fails.Add(1)
		s.log.Warn("certificates: reload failed, keeping the previous ones", "dir", old.Dir, "err", err)
		return err
	}
	s.cur.Store(nb)
	s.reloads.Add(1)
	s.log.Info("certificates reloaded", "dir", old.Dir, "node_cert_serial", nb.Cert.Leaf.SerialNumber.Text(16),
		"node_cert_expires", nb.Cert.Leaf.NotAfter.UTC().Format(time.RFC3339), "ca_certs", len(nb.CACerts), "device_ca_certs", len(nb.DeviceCACerts))
	return nil
}

// peerTLS is mutual TLS between nodes with the current bundle: for a
// dial (Raft, join), built afresh each time.
func (s *certStore) peerTLS() *tls.Config { return s.Bundle().PeerTLS() }

// peerServerTLS is the Raft listener's configuration: each handshake
// takes the current certificate and cluster CA.
func (s *certStore) peerServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := s.peerTLS()
			c.ClientAuth = tls.RequireAndVerifyClientCert
			return c, nil
		},
	}
}

// GetCertificate serves the current node certificate.
func (s *certStore) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return &s.Bundle().Cert, nil
}

// expiry returns the earliest NotAfter of the node certificate, the
// cluster CA and the device CA (zero when unknown or absent).
func (s *certStore) expiry() (node, ca, deviceCA time.Time) {
	b := s.Bundle()
	if b == nil {
		return
	}
	if b.Cert.Leaf != nil {
		node = b.Cert.Leaf.NotAfter
	}
	return node, pki.Expiry(b.CACerts), pki.Expiry(b.DeviceCACerts)
}

// ReloadCerts reads the node's certificate and key, the cluster CA and
// the device CA from their files again (SIGHUP): new handshakes use them.
// On an error the node keeps the previous ones.
func (n *Node) ReloadCerts() error { return n.certs.reload(true) }

// watchCerts polls the certificate files every interval until the node
// closes.
func (n *Node) watchCerts(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.certs.reload(false)
		}
	}
}
