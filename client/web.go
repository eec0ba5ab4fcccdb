package client

import (
	"context"
	"crypto/tls"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// WebOptions configure how a browser build (GOOS=js GOARCH=wasm) reaches
// the cluster: over the browser's WebTransport API, to each address's
// WebTransport listener (coordinator --webtransport-addr, path
// wire.WebTransportPath), authenticating each session with a device
// token instead of a certificate (docs/security.md, "Browsers").
type WebOptions struct {
	// Token returns a device token for a new session; the shop's backend
	// issues it (short-lived, so fetch one per session). Required.
	Token func(ctx context.Context) ([]byte, error)
	// CertHashes are SHA-256 hashes of self-signed node certificates the
	// browser accepts (serverCertificateHashes: ECDSA, valid for less
	// than 14 days): development only. Empty: the browser checks the
	// nodes' certificates against its public CAs.
	CertHashes [][32]byte
}

// BrowserTLS is DialerConfig.TLS in a browser, which does TLS itself
// (DialerConfig.Web.CertHashes, or its public CAs).
func BrowserTLS() *tls.Config { return &tls.Config{MinVersion: tls.VersionTLS13} }

// ParseDeviceToken returns the bytes of a device token's text form
// (base64url, what 'fedrec cert token' and the shop's backend hand out).
func ParseDeviceToken(s string) ([]byte, error) { return wire.ParseTokenText(s) }
