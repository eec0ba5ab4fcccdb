package client

import (
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
)

func TestIdentity(t *testing.T) {
	ca, err := pki.NewCA("device CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("another device CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *pki.CA, id string) tls.Certificate {
		c, err := ca.IssueDevice(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cohort := []string{"a", "b", "c"}
	a, b, forged := issue(ca, "a"), issue(ca, "b"), issue(other, "b")
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
	later := &Identity{cert: ia.cert, key: ia.key, roots: ia.roots, cohort: cohort, now: func() time.Time { return time.Now().Add(2 * time.Hour) }, keys: map[uint32]verified{}}
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

func mustSign(t *testing.T, id *Identity, msg []byte) []byte {
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
}
