package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"time"
)

// Device tokens authenticate devices that cannot present a client
// certificate: browsers over WebTransport. The shop's backend, which
// knows its users' devices, issues one with its token key (Ed25519); a
// node verifies it with the matching public key. A token is
//
//	[4-byte magic "FRDT"][version byte][msgpack TokenClaims][64-byte Ed25519 signature]
//
// the signature covering every byte before it. Its text form (what the
// backend hands the page) is unpadded base64url.

// TokenMagic opens every device token.
var TokenMagic = [4]byte{'F', 'R', 'D', 'T'}

// Device token limits.
const (
	// TokenVersion is the format version of the tokens a node reads.
	TokenVersion = 1
	// MaxTokenLen bounds a token's bytes.
	MaxTokenLen = 512
	// MaxTokenTTL bounds a token's lifetime: a node refuses a token
	// whose expiry is further than this from its issue time. Tokens are
	// short-lived, like device certificates, so that a leaked one is
	// worth little and a deny-list entry need not stay long.
	MaxTokenTTL = 24 * time.Hour
	// TokenSkew is how far in the future a token's issue time may be
	// (the backend's clock ahead of the node's).
	TokenSkew = time.Minute
	// TokenKeyIDLen is the length of a token key's ID (TokenKeyID).
	TokenKeyIDLen = 8
	// TokenIDLen is the length of a token's random ID.
	TokenIDLen     = 16
	tokenHeaderLen = len(TokenMagic) + 1
)

// TokenClaims is what a device token says.
type TokenClaims struct {
	// Device is the device's client ID: every request of a session
	// opened with the token must carry it.
	Device string `msgpack:"device"`
	// IssuedMs and ExpiresMs are Unix milliseconds.
	IssuedMs  int64 `msgpack:"iat"`
	ExpiresMs int64 `msgpack:"exp"`
	// Key is the ID of the signing key (TokenKeyID), so that a node
	// holding several keys (a rotation) tries the right one.
	Key []byte `msgpack:"key"`
	// ID is random, for logs and audits.
	ID []byte `msgpack:"id"`
}

// Validate checks the claims' shape, not their time or signature.
func (c *TokenClaims) Validate() error {
	switch {
	case checkID("token device", c.Device) != nil:
		return checkID("token device", c.Device)
	case len(c.Key) != TokenKeyIDLen:
		return Errorf(CodeMalformed, "token: key ID of %d bytes, want %d", len(c.Key), TokenKeyIDLen)
	case len(c.ID) != TokenIDLen:
		return Errorf(CodeMalformed, "token: ID of %d bytes, want %d", len(c.ID), TokenIDLen)
	case c.IssuedMs <= 0 || c.ExpiresMs <= c.IssuedMs:
		return Errorf(CodeMalformed, "token: issued %d, expires %d", c.IssuedMs, c.ExpiresMs)
	case time.Duration(c.ExpiresMs-c.IssuedMs)*time.Millisecond > MaxTokenTTL:
		return Errorf(CodeMalformed, "token: lifetime %v, at most %v", time.Duration(c.ExpiresMs-c.IssuedMs)*time.Millisecond, MaxTokenTTL)
	}
	return nil
}

// Expires returns the token's expiry.
func (c *TokenClaims) Expires() time.Time { return time.UnixMilli(c.ExpiresMs) }

// TokenKeyID returns the ID of a token key: the first bytes of the
// SHA-256 of the public key.
func TokenKeyID(pub ed25519.PublicKey) []byte {
	h := sha256.Sum256(pub)
	return h[:TokenKeyIDLen]
}

// IssueToken signs a token for device, valid from now for ttl (at most
// MaxTokenTTL), with key; rand supplies its ID.
func IssueToken(key ed25519.PrivateKey, device string, now time.Time, ttl time.Duration, rand io.Reader) ([]byte, error) {
	if ttl <= 0 || ttl > MaxTokenTTL {
		return nil, fmt.Errorf("wire: token lifetime %v, want (0, %v]", ttl, MaxTokenTTL)
	}
	c := &TokenClaims{
		Device: device, IssuedMs: now.UnixMilli(), ExpiresMs: now.Add(ttl).UnixMilli(),
		Key: TokenKeyID(key.Public().(ed25519.PublicKey)), ID: make([]byte, TokenIDLen),
	}
	if _, err := io.ReadFull(rand, c.ID); err != nil {
		return nil, err
	}
	return signToken(key, c)
}

func signToken(key ed25519.PrivateKey, c *TokenClaims) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Write(TokenMagic[:])
	buf.WriteByte(TokenVersion)
	if err := marshalTo(&buf, c); err != nil {
		return nil, err
	}
	return append(buf.Bytes(), ed25519.Sign(key, buf.Bytes())...), nil
}

// ParseToken decodes a token's claims without checking its signature or
// time: for tools that show a token. A node uses VerifyToken.
func ParseToken(b []byte) (*TokenClaims, error) {
	c, _, err := parseToken(b)
	return c, err
}

func parseToken(b []byte) (c *TokenClaims, signed []byte, err error) {
	switch {
	case len(b) > MaxTokenLen:
		return nil, nil, Errorf(CodeTooLarge, "token: %d bytes, at most %d", len(b), MaxTokenLen)
	case len(b) < tokenHeaderLen+ed25519.SignatureSize || !bytes.Equal(b[:len(TokenMagic)], TokenMagic[:]):
		return nil, nil, Errorf(CodeMalformed, "token: not a device token")
	case b[len(TokenMagic)] != TokenVersion:
		return nil, nil, Errorf(CodeMalformed, "token: version %d, this node reads %d", b[len(TokenMagic)], TokenVersion)
	}
	signed = b[:len(b)-ed25519.SignatureSize]
	c = new(TokenClaims)
	if err := unmarshal(signed[tokenHeaderLen:], c); err != nil {
		return nil, nil, fmt.Errorf("token: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	return c, signed, nil
}

// VerifyToken checks a token's structure, its signature by one of keys
// (chosen by the token's key ID) and its time at now, and returns its
// claims. Every failure is a *Error with CodeUnauthenticated. Revocation
// (the deny-list) is the caller's to check.
func VerifyToken(b []byte, keys []ed25519.PublicKey, now time.Time) (*TokenClaims, error) {
	c, signed, err := parseToken(b)
	if err != nil {
		return nil, Errorf(CodeUnauthenticated, "device token refused: %v", err)
	}
	var key ed25519.PublicKey
	for _, k := range keys {
		if bytes.Equal(TokenKeyID(k), c.Key) {
			key = k
			break
		}
	}
	switch {
	case key == nil:
		return nil, Errorf(CodeUnauthenticated, "device token of %q signed by an unknown key %x", c.Device, c.Key)
	case !ed25519.Verify(key, signed, b[len(signed):]):
		return nil, Errorf(CodeUnauthenticated, "device token of %q: bad signature", c.Device)
	case now.Add(TokenSkew).UnixMilli() < c.IssuedMs:
		return nil, Errorf(CodeUnauthenticated, "device token of %q issued in the future (%s)", c.Device, time.UnixMilli(c.IssuedMs).UTC().Format(time.RFC3339))
	case now.UnixMilli() >= c.ExpiresMs:
		return nil, Errorf(CodeUnauthenticated, "device token of %q expired at %s", c.Device, c.Expires().UTC().Format(time.RFC3339))
	}
	return c, nil
}

// TokenText returns a token's text form, unpadded base64url.
func TokenText(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// ParseTokenText returns the bytes of a token's text form.
func ParseTokenText(s string) ([]byte, error) {
	if len(s) > base64.RawURLEncoding.EncodedLen(MaxTokenLen) {
		return nil, Errorf(CodeTooLarge, "token: %d characters", len(s))
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, Errorf(CodeMalformed, "token: %v", err)
	}
	return b, nil
}

// Authenticate is the first request of a WebTransport session: the
// device's token. The node answers Authenticated, and then serves the
// session's other streams as the token's device; or Error
// (CodeUnauthenticated) and closes the session.
type Authenticate struct {
	Version uint16 `msgpack:"v"`
	Token   []byte `msgpack:"token"`
}

func (*Authenticate) Type() Type { return TypeAuthenticate }

func (m *Authenticate) Validate() error {
	if err := checkVersion(m.Version); err != nil {
		return err
	}
	if len(m.Token) == 0 || len(m.Token) > MaxTokenLen {
		return Errorf(CodeMalformed, "token of %d bytes, want 1..%d", len(m.Token), MaxTokenLen)
	}
	return nil
}

// Authenticated accepts a session's token.
type Authenticated struct {
	// Device is the token's client ID.
	Device string `msgpack:"device"`
	// ExpiresMs is when the token expires (Unix milliseconds): the
	// session's requests are refused from then on, and the device opens
	// a new session with a fresh token.
	ExpiresMs int64 `msgpack:"exp"`
}

func (*Authenticated) Type() Type { return TypeAuthenticated }

func (m *Authenticated) Validate() error { return checkID("device", m.Device) }
