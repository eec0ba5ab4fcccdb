package client

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// deviceCA returns a new device CA and a device certificate of it for
// each of ids, with the pki's default key types.
func deviceCA(tb testing.TB, ids ...string) (*pki.CA, []tls.Certificate) {
	return deviceCAKeys(tb, keyTypes{pki.Ed25519, pki.Ed25519, pki.Ed25519}, ids...)
}

// keyTypes are the key types of a device CA and of the certificates it
// issues, the first device's and then the others'.
type keyTypes struct{ ca, first, rest pki.KeyType }

var allKeyTypes = []keyTypes{
	{pki.Ed25519, pki.Ed25519, pki.Ed25519},
	{pki.P256, pki.P256, pki.P256},
	{pki.P256, pki.Ed25519, pki.P256},
	{pki.Ed25519, pki.P256, pki.Ed25519},
}

func (k keyTypes) String() string { return fmt.Sprintf("ca=%s/a=%s/b=%s", k.ca, k.first, k.rest) }

func deviceCAKeys(tb testing.TB, kt keyTypes, ids ...string) (*pki.CA, []tls.Certificate) {
	tb.Helper()
	ca, err := pki.NewCAKey("device CA", time.Hour, kt.ca)
	if err != nil {
		tb.Fatal(err)
	}
	certs := make([]tls.Certificate, len(ids))
	for i, id := range ids {
		k := kt.rest
		if i == 0 {
			k = kt.first
		}
		if certs[i], err = ca.IssueDeviceKey(id, time.Hour, k); err != nil {
			tb.Fatal(err)
		}
	}
	return ca, certs
}

// Devices of either key type, under a device CA of either, verify each
// other and refuse what they must.
func TestIdentity(t *testing.T) {
	for _, kt := range allKeyTypes {
		t.Run(kt.String(), func(t *testing.T) { testIdentity(t, kt) })
	}
}

func testIdentity(t *testing.T, kt keyTypes) {
	ca, ab := deviceCAKeys(t, kt, "a", "b")
	other, ob := deviceCAKeys(t, kt, "b")
	cohort := []string{"a", "b", "c"}
	a, b, forged := ab[0], ab[1], ob[0]
	ia, err := NewIdentity(a, ca.Pool(), cohort)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := NewIdentity(b, ca.Pool(), cohort)
	if err != nil {
		t.Fatal(err)
	}
	ibForged, err := NewIdentity(forged, other.Pool(), cohort)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("survivor set")
	sig, err := ib.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	forgedSig, _ := ibForged.Sign(msg)
	if err := ia.Verify(1, ib.Credential(), msg, sig); err != nil {
		t.Fatalf("Verify(b's signature) = %v", err)
	}
	if err := ib.Verify(0, ia.Credential(), msg, mustSign(t, ia, msg)); err != nil {
		t.Fatalf("Verify(a's signature) = %v", err)
	}
	later := &Identity{cert: ia.cert, key: ia.key, roots: ia.roots, cohort: cohort, now: func() time.Time { return time.Now().Add(2 * time.Hour) }, keys: map[uint32]verified{}, certs: ia.certs}
	for name, tc := range map[string]struct {
		id        *Identity
		peer      uint32
		cred, sig []byte
		msg       string
	}{
		"another index":      {ia, 2, ib.Credential(), sig, "survivor set"},
		"outside the cohort": {ia, 3, ib.Credential(), sig, "survivor set"},
		"another message":    {ia, 1, ib.Credential(), sig, "another set"},
		"another CA":         {ia, 1, ibForged.Credential(), forgedSig, "survivor set"},
		"expired":            {later, 1, ib.Credential(), sig, "survivor set"},
		"not a certificate":  {ia, 1, []byte("b"), sig, "survivor set"},
		"a's key under b":    {ia, 1, ib.Credential(), mustSign(t, ia, msg), "survivor set"},
	} {
		err := tc.id.Verify(tc.peer, tc.cred, []byte(tc.msg), tc.sig)
		if !errors.Is(err, ErrIdentity) {
			t.Errorf("%s: Verify = %v, want ErrIdentity", name, err)
		}
	}
	if _, err := NewIdentity(a, ca.Pool(), []string{"a", "b", "a"}); !errors.Is(err, ErrIdentity) {
		t.Errorf("NewIdentity(cohort repeating an id) = %v, want ErrIdentity", err)
	}
}

// NewIdentity refuses device keys a peer could not verify, and a key
// that is not its certificate's; Verify refuses a peer certificate with
// such a key.
func TestIdentityKeyTypes(t *testing.T) {
	ca, ab := deviceCA(t, "a", "b")
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, otherEd, _ := ed25519.GenerateKey(rand.Reader)
	// certify returns a device certificate of ca for key.
	certify := func(id string, key interface{ Public() crypto.PublicKey }) tls.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: id},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	for _, tc := range []struct {
		name string
		cert tls.Certificate
		want string // in NewIdentity's error; "" for none
	}{
		{"ed25519", ab[0], ""},
		{"p256", certify("a", p256), ""},
		{"p384", certify("a", p384), "P-384"},
		{"rsa", certify("a", rsaKey), "want Ed25519 or ECDSA P-256"},
		{"another key", tls.Certificate{Certificate: ab[0].Certificate, PrivateKey: otherEd}, "not the certificate's"},
		{"no signer", tls.Certificate{Certificate: ab[0].Certificate, PrivateKey: "key"}, "cannot sign"},
	} {
		_, err := NewIdentity(tc.cert, ca.Pool(), []string{"a", "b"})
		// A Dialer for signed rounds refuses such a key at once.
		d, derr := NewDialerConfig(DialerConfig{Addrs: []string{"127.0.0.1:1"}, TLS: DeviceTLS(ca.Pool(), tc.cert), DeviceCA: ca.Pool()})
		if derr == nil {
			d.Close()
		}
		if tc.want == "" {
			if err != nil || derr != nil {
				t.Errorf("NewIdentity(%s) = %v, NewDialerConfig = %v", tc.name, err, derr)
			}
			continue
		}
		if !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewIdentity(%s) = %v, want ErrIdentity saying %q", tc.name, err, tc.want)
		}
		if !errors.Is(derr, ErrInvalidArgument) || !strings.Contains(fmt.Sprint(derr), tc.want) {
			t.Errorf("NewDialerConfig(DeviceCA, %s) = %v, want ErrInvalidArgument saying %q", tc.name, derr, tc.want)
		}
	}
	ib, err := NewIdentity(ab[1], ca.Pool(), []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]crypto.Signer{"p384": p384, "rsa": rsaKey} {
		c := certify("a", key)
		if err := ib.Verify(0, c.Certificate[0], []byte("m"), []byte("sig")); !errors.Is(err, ErrIdentity) {
			t.Errorf("Verify(a %s certificate) = %v, want ErrIdentity", name, err)
		}
	}
}

func mustSign(t testing.TB, id *Identity, msg []byte) []byte {
	sig, err := id.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// A policy that requires signed secure aggregation declines rounds that
// are not signed, or whose threshold resists too few colluders.
func TestPolicySignedSecAgg(t *testing.T) {
	p := Policy{MinCohort: 1, RequireSignedSecAgg: true, MinSecAggColluders: 2}.withDefaults()
	if err := p.validate(); err != nil {
		t.Fatal(err)
	}
	o := Offer{Round: 1, ModelVersion: 1, CohortSize: 100, NoiseMultiplier: 1, ClipNorm: 1, SignedSecAgg: true, SecAggColluders: 2}
	if d := p.check(o); d != nil {
		t.Fatalf("check(signed, tolerating 2) = %v", d)
	}
	for name, f := range map[string]func(*Offer){
		"unsigned":       func(o *Offer) { o.SignedSecAgg, o.SecAggColluders = false, -1 },
		"one colluder":   func(o *Offer) { o.SecAggColluders = 1 },
		"none tolerated": func(o *Offer) { o.SecAggColluders = -1 },
	} {
		o := o
		f(&o)
		if d := p.check(o); d == nil || d.Reason != ReasonSecAgg {
			t.Errorf("check(%s) = %v, want ReasonSecAgg", name, d)
		}
	}
	if err := (Policy{MinSecAggColluders: 1}).withDefaults().validate(); err == nil {
		t.Error("validate(MinSecAggColluders without RequireSignedSecAgg) = nil")
	}
	// With RequireDeviceRoster, only signed rounds of listed devices.
	p.RequireDeviceRoster = true
	if d := p.check(o); d == nil || d.Reason != ReasonSecAgg {
		t.Errorf("check(signed, devices outside the roster) = %v, want ReasonSecAgg", d)
	}
	o.SecAggRoster = true
	if d := p.check(o); d != nil {
		t.Errorf("check(signed, listed devices only) = %v", d)
	}
	if err := (Policy{RequireDeviceRoster: true}).withDefaults().validate(); err == nil {
		t.Error("validate(RequireDeviceRoster without RequireSignedSecAgg) = nil")
	}
}

// A certificate checked in one round serves the next rounds of the same
// Dialer without a second chain check, but only for the client ID it
// names, at that client's index in the new cohort, and only within its
// validity.
func TestIdentityCertCache(t *testing.T) {
	ca, ab := deviceCA(t, "a", "b")
	a, b := ab[0], ab[1]
	certs := newCertCache()
	ib, err := NewIdentity(b, ca.Pool(), []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("advert")
	sig := mustSign(t, ib, msg)
	round1, err := newIdentity(a, ca.Pool(), []string{"a", "b"}, certs)
	if err != nil {
		t.Fatal(err)
	}
	if err := round1.Verify(1, ib.Credential(), msg, sig); err != nil {
		t.Fatalf("round 1: Verify = %v", err)
	}
	if len(certs.m) != 1 {
		t.Fatalf("cache holds %d certificates after one check, want 1", len(certs.m))
	}
	// Round 2, another cohort: b's cached certificate is good at b's index
	// only.
	round2, err := newIdentity(a, ca.Pool(), []string{"b", "c", "a"}, certs)
	if err != nil {
		t.Fatal(err)
	}
	if err := round2.Verify(0, ib.Credential(), msg, sig); err != nil {
		t.Errorf("round 2, b at index 0: Verify = %v", err)
	}
	if err := round2.Verify(1, ib.Credential(), msg, sig); !errors.Is(err, ErrIdentity) {
		t.Errorf("round 2, b's certificate at c's index: Verify = %v, want ErrIdentity", err)
	}
	// After the certificate expires the cache does not vouch for it.
	round3, err := newIdentity(a, ca.Pool(), []string{"a", "b"}, certs)
	if err != nil {
		t.Fatal(err)
	}
	round3.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if err := round3.Verify(1, ib.Credential(), msg, sig); !errors.Is(err, ErrIdentity) {
		t.Errorf("expired certificate, cached: Verify = %v, want ErrIdentity", err)
	}
	// Bounded: a full cache starts over rather than grow.
	for i := range maxCachedCerts + 10 {
		certs.put([32]byte{byte(i), byte(i >> 8), 1}, checkedCert{notAfter: time.Now().Add(time.Hour)}, time.Now())
	}
	if len(certs.m) > maxCachedCerts {
		t.Errorf("cache holds %d certificates, more than %d", len(certs.m), maxCachedCerts)
	}
}

// BenchmarkIdentityVerify is the cost to a device of checking one peer's
// advert signature in a signed round: cold, the peer's credential is new
// (a certificate: parse, chain to the device CA, then the signature; a
// roster credential: its path to the roster's root, then the signature,
// the roster certificate being known from an earlier round; first, the
// roster certificate is new too); warm, a later round of the same Dialer
// met the credential before (the signature only). With the device CA and
// certificates Ed25519 (the default) or P-256.
func BenchmarkIdentityVerify(b *testing.B) {
	for _, kt := range []keyTypes{{pki.Ed25519, pki.Ed25519, pki.Ed25519}, {pki.P256, pki.P256, pki.P256}} {
		ca, ap := deviceCAKeys(b, kt, "a", "b")
		a, p := ap[0], ap[1]
		ip, err := NewIdentity(p, ca.Pool(), []string{"a", "b"})
		if err != nil {
			b.Fatal(err)
		}
		msg := []byte("advert")
		sig := mustSign(b, ip, msg)
		pool := ca.Pool()
		rosterCred := rosterCredentials(b, ca, ap, time.Hour)[1]
		rc, _ := wire.DecodeRosterCredential(rosterCred)
		creds := map[string][]byte{"cert": ip.Credential(), "roster": rosterCred}
		for _, v := range []struct{ cred, mode string }{{"cert", "cold"}, {"cert", "warm"}, {"roster", "first"}, {"roster", "cold"}, {"roster", "warm"}} {
			cred, mode := creds[v.cred], v.mode
			b.Run(fmt.Sprintf("key=%s/credential=%s/%s", kt.ca, v.cred, mode), func(b *testing.B) {
				certs := newCertCache()
				b.ReportAllocs()
				for b.Loop() {
					switch mode {
					case "first":
						certs = newCertCache()
					case "cold": // the roster certificate checked in an earlier round
						b.StopTimer()
						certs = newCertCache()
						if _, err := certs.roster(rc.Roster, pool, time.Now()); v.cred == "roster" && err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
					id, err := newIdentity(a, pool, []string{"a", "b"}, certs)
					if err != nil {
						b.Fatal(err)
					}
					if err := id.Verify(1, cred, msg, sig); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// rosterCredentials returns the device roster of certs under ca and each
// certificate's roster credential.
func rosterCredentials(tb testing.TB, ca *pki.CA, certs []tls.Certificate, validFor time.Duration) [][]byte {
	tb.Helper()
	leaves := make([]*x509.Certificate, len(certs))
	for i, c := range certs {
		leaves[i] = c.Leaf
	}
	f, _, err := ca.IssueRoster(leaves, nil, 1, validFor)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := wire.EncodeRosterFile(f)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := pki.ParseRoster(b, ca.Pool(), time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	creds := make([][]byte, len(certs))
	for i, c := range leaves {
		var ok bool
		if creds[i], ok = r.Credential(c); !ok {
			tb.Fatalf("no roster credential for %s", wire.DeviceID(c))
		}
	}
	return creds
}

// TestIdentityRoster: a peer's roster credential stands for its
// certificate, under the same rules (the device CA's, valid, the cohort's
// ID at its index), and a changed one fails.
func TestIdentityRoster(t *testing.T) {
	for _, kt := range allKeyTypes {
		t.Run(kt.String(), func(t *testing.T) {
			ca, certs := deviceCAKeys(t, kt, "a", "b", "c")
			creds := rosterCredentials(t, ca, certs, time.Hour)
			other, _ := deviceCAKeys(t, kt, "a", "b", "c")
			cohort := []string{"a", "b", "c"}
			pb, err := NewIdentity(certs[1], ca.Pool(), cohort)
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte("advert")
			sig := mustSign(t, pb, msg)
			verify := func(pool *x509.CertPool, cohort []string, peer uint32, cred []byte, now time.Time) error {
				pa, err := NewIdentity(certs[0], pool, cohort)
				if err != nil {
					t.Fatal(err)
				}
				pa.now = func() time.Time { return now }
				return pa.Verify(peer, cred, msg, sig)
			}
			now := time.Now()
			if err := verify(ca.Pool(), cohort, 1, creds[1], now); err != nil {
				t.Fatalf("Verify(b's roster credential) = %v", err)
			}
			rc, _ := wire.DecodeRosterCredential(creds[1])
			edit := func(f func(*wire.RosterCredential)) []byte {
				c := *rc
				c.Entry.Key = bytes.Clone(rc.Entry.Key)
				c.Path = slices.Clone(rc.Path)
				f(&c)
				b, err := wire.EncodeRosterCredential(&c)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			cRC, _ := wire.DecodeRosterCredential(creds[2])
			for name, c := range map[string]struct {
				pool   *x509.CertPool
				cohort []string
				peer   uint32
				cred   []byte
				now    time.Time
			}{
				"another device's credential": {ca.Pool(), cohort, 1, creds[2], now},
				"at another index":            {ca.Pool(), []string{"b", "a", "c"}, 1, creds[1], now},
				"another device CA":           {other.Pool(), cohort, 1, creds[1], now},
				"after the roster":            {ca.Pool(), cohort, 1, creds[1], now.Add(2 * time.Hour)},
				"renamed entry":               {ca.Pool(), []string{"a", "x", "c"}, 1, edit(func(c *wire.RosterCredential) { c.Entry.ID = "x" }), now},
				"other key":                   {ca.Pool(), cohort, 1, edit(func(c *wire.RosterCredential) { c.Entry.Key = cRC.Entry.Key }), now},
				"longer validity":             {ca.Pool(), cohort, 1, edit(func(c *wire.RosterCredential) { c.Entry.NotAfter += 3600 }), now},
				"other index":                 {ca.Pool(), cohort, 1, edit(func(c *wire.RosterCredential) { c.Index = 2 }), now},
				"path of another":             {ca.Pool(), cohort, 1, edit(func(c *wire.RosterCredential) { c.Path = cRC.Path }), now},
				"not a roster certificate":    {ca.Pool(), cohort, 1, edit(func(c *wire.RosterCredential) { c.Roster = certs[1].Certificate[0] }), now},
				"junk":                        {ca.Pool(), cohort, 1, []byte{0x84, 1, 2}, now},
			} {
				if err := verify(c.pool, c.cohort, c.peer, c.cred, c.now); !errors.Is(err, ErrIdentity) {
					t.Errorf("%s: Verify = %v, want ErrIdentity", name, err)
				}
			}
			// In a round of listed devices only, the roster credential
			// passes and the bare certificate, valid as it is, does not.
			pa, err := NewIdentity(certs[0], ca.Pool(), cohort)
			if err != nil {
				t.Fatal(err)
			}
			if err := pa.Verify(1, pb.Credential(), msg, sig); err != nil {
				t.Fatalf("Verify(b's certificate) = %v", err)
			}
			pa, _ = NewIdentity(certs[0], ca.Pool(), cohort)
			pa.RequireRoster()
			if err := pa.Verify(1, pb.Credential(), msg, sig); !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), "roster") {
				t.Errorf("RequireRoster: Verify(b's certificate) = %v, want ErrIdentity about the roster", err)
			}
			if err := pa.Verify(1, creds[1], msg, sig); err != nil {
				t.Errorf("RequireRoster: Verify(b's roster credential) = %v", err)
			}
		})
	}
}
