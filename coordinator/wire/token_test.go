package wire

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"
)

// sampleTokenTime is the issue time of sampleToken.
var sampleTokenTime = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// sampleTokenKey is a fixed token key (Ed25519 signatures are
// deterministic, so sampleToken's bytes are too).
func sampleTokenKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, ed25519.SeedSize))
}

// sampleToken is a token for user-42, valid for an hour from
// sampleTokenTime.
func sampleToken() []byte {
	b, err := IssueToken(sampleTokenKey(), "user-42", sampleTokenTime, time.Hour, bytes.NewReader(bytes.Repeat([]byte{7}, TokenIDLen)))
	if err != nil {
		panic(err)
	}
	return b
}

func TestTokenGolden(t *testing.T) {
	golden(t, "token_v1.golden", sampleToken())
}

func TestVerifyToken(t *testing.T) {
	key := sampleTokenKey()
	pub := key.Public().(ed25519.PublicKey)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	tok := sampleToken()
	otherTok, err := IssueToken(other, "user-42", sampleTokenTime, time.Hour, bytes.NewReader(make([]byte, TokenIDLen)))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(tok)
	flipped[len(flipped)-70] ^= 1 // inside the claims
	badSig := bytes.Clone(tok)
	badSig[len(badSig)-1] ^= 1
	long, err := signToken(key, &TokenClaims{Device: "user-42", IssuedMs: sampleTokenTime.UnixMilli(), ExpiresMs: sampleTokenTime.Add(time.Hour).UnixMilli(), Key: TokenKeyID(pub), ID: make([]byte, TokenIDLen)})
	if err != nil {
		t.Fatal(err)
	}
	long[4] = 2 // a version this node does not read
	in := sampleTokenTime.Add(time.Minute)
	tests := []struct {
		name string
		tok  []byte
		keys []ed25519.PublicKey
		now  time.Time
		ok   bool
	}{
		{"valid", tok, []ed25519.PublicKey{pub}, in, true},
		{"rotation: second key", tok, []ed25519.PublicKey{other.Public().(ed25519.PublicKey), pub}, in, true},
		{"unknown key", otherTok, []ed25519.PublicKey{pub}, in, false},
		{"no keys", tok, nil, in, false},
		{"expired", tok, []ed25519.PublicKey{pub}, sampleTokenTime.Add(time.Hour), false},
		{"from the future", tok, []ed25519.PublicKey{pub}, sampleTokenTime.Add(-2 * TokenSkew), false},
		{"within the skew", tok, []ed25519.PublicKey{pub}, sampleTokenTime.Add(-TokenSkew / 2), true},
		{"claims changed", flipped, []ed25519.PublicKey{pub}, in, false},
		{"bad signature", badSig, []ed25519.PublicKey{pub}, in, false},
		{"version 2", long, []ed25519.PublicKey{pub}, in, false},
		{"empty", nil, []ed25519.PublicKey{pub}, in, false},
		{"truncated", tok[:40], []ed25519.PublicKey{pub}, in, false},
		{"too long", append(bytes.Clone(tok), make([]byte, MaxTokenLen)...), []ed25519.PublicKey{pub}, in, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := VerifyToken(tt.tok, tt.keys, tt.now)
			if tt.ok {
				if err != nil || c.Device != "user-42" {
					t.Fatalf("VerifyToken = %+v, %v, want user-42's claims", c, err)
				}
				return
			}
			if CodeOf(err) != CodeUnauthenticated {
				t.Fatalf("VerifyToken = %+v, %v, want CodeUnauthenticated", c, err)
			}
		})
	}
}

func TestIssueTokenTTL(t *testing.T) {
	for _, ttl := range []time.Duration{0, -time.Second, MaxTokenTTL + time.Millisecond} {
		if _, err := IssueToken(sampleTokenKey(), "d", sampleTokenTime, ttl, bytes.NewReader(make([]byte, TokenIDLen))); err == nil {
			t.Errorf("IssueToken(ttl %v) = nil error, want one", ttl)
		}
	}
	if _, err := IssueToken(sampleTokenKey(), strings.Repeat("x", MaxIDLen+1), sampleTokenTime, time.Hour, bytes.NewReader(make([]byte, TokenIDLen))); err == nil {
		t.Error("IssueToken(long device ID) = nil error, want one")
	}
	if _, err := IssueToken(sampleTokenKey(), "d", sampleTokenTime, time.Hour, bytes.NewReader(nil)); err == nil {
		t.Error("IssueToken(empty rand) = nil error, want one")
	}
}

func TestTokenText(t *testing.T) {
	tok := sampleToken()
	got, err := ParseTokenText(TokenText(tok))
	if err != nil || !bytes.Equal(got, tok) {
		t.Fatalf("ParseTokenText(TokenText(tok)) = %x, %v, want %x", got, err, tok)
	}
	for _, s := range []string{"not base64!", strings.Repeat("A", 2*MaxTokenLen)} {
		if _, err := ParseTokenText(s); err == nil {
			t.Errorf("ParseTokenText(%.20q...) = nil error, want one", s)
		}
	}
}

// FuzzToken: any bytes either fail to verify or are a token signed by the
// key, and parse to the claims they verify to.
func FuzzToken(f *testing.F) {
	for _, b := range goldenFiles(f, "token_*.golden") {
		f.Add(b)
	}
	f.Add(TokenMagic[:])
	pub := sampleTokenKey().Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := VerifyToken(b, []ed25519.PublicKey{pub}, sampleTokenTime.Add(time.Minute))
		if err != nil {
			if CodeOf(err) != CodeUnauthenticated {
				t.Fatalf("VerifyToken = %v, want CodeUnauthenticated", err)
			}
			return
		}
		p, err := ParseToken(b)
		if err != nil || p.Device != c.Device || p.ExpiresMs != c.ExpiresMs {
			t.Fatalf("ParseToken = %+v, %v, want %+v", p, err, c)
		}
	})
}
