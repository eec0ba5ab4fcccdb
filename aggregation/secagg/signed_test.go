package secagg

import (
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
)

// TestSignedRoundSum runs signed rounds, complete and sparse, with
// dropouts at every point, and checks the sum.
func TestSignedRoundSum(t *testing.T) {
	for _, c := range []cohort{
		{n: 10, d: 33, bits: 16},             // complete, t = 5 (default)
		{n: 40, d: 20, bits: 32, degree: 16}, // sparse, t = 9 (default)
		{n: 40, d: 20, bits: 32, degree: 12, threshold: 4},
	} {
		for _, drop := range []float64{0, 0.05} {
			t.Run(fmt.Sprintf("n=%d/k=%d/t=%d/drop=%v", c.n, c.degree, c.threshold, drop), func(t *testing.T) {
				t.Parallel()
				checkRound(t, simulation{
					cfg:  signedConfig(c.n, c.d, c.bits, c.degree, c.threshold),
					drop: [numDropPoints]float64{drop, drop, drop, drop, drop},
					seed: 11,
				})
			})
		}
	}
}

// TestSignedDigest checks that Signed is bound into the config digest, and
// only when set, so unsigned digests are unchanged.
func TestSignedDigest(t *testing.T) {
	u, _ := testConfig(5, 3, 8, 0, 2).normalize()
	s, _ := signedConfig(5, 3, 8, 0, 2).normalize()
	if u.digest() == s.digest() {
		t.Fatal("signed and unsigned configs have the same digest")
	}
	// The digest of this unsigned config before Signed existed.
	const want = "a3abbb5dbbd7acf78b0bb0321d6e7e6d8fb1cb6613949f0e07a08037a479fe0a"
	if d := u.digest(); hex.EncodeToString(d[:]) != want {
		t.Errorf("unsigned digest = %x, want %s (unchanged)", d, want)
	}
}

func TestSignedConstructors(t *testing.T) {
	ca := newTestCA()
	if _, err := NewClient(signedConfig(5, 3, 8, 0, 2), 3, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("NewClient(signed config) error = %v, want ErrConfig", err)
	}
	if _, err := NewSignedClient(testConfig(5, 3, 8, 0, 2), 3, ca.issue(3), nil); !errors.Is(err, ErrConfig) {
		t.Errorf("NewSignedClient(unsigned config) error = %v, want ErrConfig", err)
	}
	if _, err := NewSignedClient(signedConfig(5, 3, 8, 0, 2), 3, nil, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("NewSignedClient(nil identity) error = %v, want ErrConfig", err)
	}
}

func TestActiveThreshold(t *testing.T) {
	tests := []struct {
		degree, corrupt, want int
	}{
		{4, 0, 3}, {8, 0, 5}, {9, 0, 5}, {20, 4, 13}, {99, 0, 50}, {99, 32, 66},
	}
	for _, tt := range tests {
		if got := ActiveThreshold(tt.degree, tt.corrupt); got != tt.want {
			t.Errorf("ActiveThreshold(%d, %d) = %d, want %d", tt.degree, tt.corrupt, got, tt.want)
		}
	}
	for _, tt := range []struct {
		cfg  Config
		want int
	}{
		{testConfig(10, 3, 8, 0, 0), -1},    // unsigned
		{signedConfig(10, 3, 8, 0, 4), -1},  // t = 4 <= k/2 = 4.5
		{signedConfig(10, 3, 8, 0, 0), 0},   // default t = 5 > 4.5
		{signedConfig(10, 3, 8, 0, 7), 4},   // 2*7-9-1
		{signedConfig(100, 3, 8, 20, 0), 1}, // t = 11, k = 20
	} {
		got, err := tt.cfg.ActiveTolerance()
		if err != nil || got != tt.want {
			t.Errorf("ActiveTolerance(n=%d k=%d t=%d signed=%v) = %d, %v, want %d", len(tt.cfg.Clients), tt.cfg.Degree, tt.cfg.Threshold, tt.cfg.Signed, got, err, tt.want)
		}
		err = tt.cfg.CheckActive(max(tt.want, 0))
		if (err == nil) != (tt.want >= 0) || (err != nil && !errors.Is(err, ErrConfig)) {
			t.Errorf("CheckActive(%d) = %v", max(tt.want, 0), err)
		}
	}
}
