package secagg

import (
	"fmt"
	"math"
	"testing"
)

// chiSquareCritical approximates the upper 1e-6 quantile of the chi-square
// distribution with df degrees of freedom (Wilson–Hilferty).
func chiSquareCritical(df int) float64 {
	const z = 4.753 // standard normal upper 1e-6 quantile
	k := float64(df)
	h := 2 / (9 * k)
	return k * math.Pow(1-h+z*math.Sqrt(h), 3)
}

// bucketCounts counts values by their top log2(buckets) bits below 2^bits.
func bucketCounts(v []uint64, bits, buckets int) []float64 {
	shift := bits - int(math.Log2(float64(buckets)))
	c := make([]float64, buckets)
	for _, x := range v {
		c[x>>shift]++
	}
	return c
}

func chiSquareUniform(c []float64) float64 {
	total := 0.0
	for _, x := range c {
		total += x
	}
	e := total / float64(len(c))
	s := 0.0
	for _, x := range c {
		s += (x - e) * (x - e) / e
	}
	return s
}

// chiSquareHomogeneity tests whether two equal-size samples come from the
// same distribution.
func chiSquareHomogeneity(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		if a[i]+b[i] > 0 {
			s += (a[i] - b[i]) * (a[i] - b[i]) / (a[i] + b[i])
		}
	}
	return s
}

// TestMaskedInputLooksUniform checks that what the server sees of one
// client, its masked input y, does not depend on the input: for an all-zero
// input and a very different structured one, every coordinate of y is
// uniform mod 2^b (chi-square over buckets), and the two samples are
// indistinguishable (chi-square homogeneity). The same statistics do flag
// the raw inputs, so the test has power.
func TestMaskedInputLooksUniform(t *testing.T) {
	for _, tc := range []struct{ bits, buckets int }{{3, 8}, {8, 256}, {32, 256}, {64, 256}} {
		t.Run(fmt.Sprintf("bits=%d", tc.bits), func(t *testing.T) {
			const d = 1 << 15
			cfg := testConfig(3, d, tc.bits, 0, 2)
			me := cfg.Clients[0]
			zero := make([]uint64, d)
			ramp := make([]uint64, d)
			m := valueMask(tc.bits)
			for i := range ramp {
				ramp[i] = m - uint64(i%7) // at the top of the range
			}
			masked := func(x []uint64, seed uint64) []uint64 {
				out, err := simulation{cfg: cfg, seed: seed, input: func(id uint32, dst []uint64) {
					if id == me {
						copy(dst, x)
					}
				}}.runUntilMasked(me)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			crit := chiSquareCritical(tc.buckets - 1)
			if s := chiSquareUniform(bucketCounts(ramp, tc.bits, tc.buckets)); s < crit {
				t.Fatalf("raw structured input passes the uniformity test (chi2 = %.0f < %.0f); the test has no power", s, crit)
			}
			ya, yb := masked(zero, 1), masked(ramp, 2)
			ca, cb := bucketCounts(ya, tc.bits, tc.buckets), bucketCounts(yb, tc.bits, tc.buckets)
			for name, c := range map[string][]float64{"zero input": ca, "structured input": cb} {
				if s := chiSquareUniform(c); s > crit {
					t.Errorf("masked %s: chi2 uniformity = %.1f, critical %.1f (df %d)", name, s, crit, tc.buckets-1)
				}
			}
			if s := chiSquareHomogeneity(ca, cb); s > crit {
				t.Errorf("masked inputs distinguishable: chi2 homogeneity = %.1f, critical %.1f", s, crit)
			}
		})
	}
}

// runUntilMasked plays a round with no dropouts up to the masked inputs and
// returns client id's.
func (s simulation) runUntilMasked(id uint32) ([]uint64, error) {
	srv, err := NewServer(s.cfg, ServerOptions{Workers: 1})
	if err != nil {
		return nil, err
	}
	clients := map[uint32]*Client{}
	for _, c := range s.cfg.Clients {
		if clients[c], err = NewClient(s.cfg, c, clientRand(s.seed, c)); err != nil {
			return nil, err
		}
	}
	for _, c := range s.cfg.Clients {
		m, err := clients[c].AdvertiseKeys()
		if err != nil {
			return nil, err
		}
		if err := srv.HandleKeyAdvert(m); err != nil {
			return nil, err
		}
	}
	if err := srv.ClosePhase(); err != nil {
		return nil, err
	}
	for _, c := range s.cfg.Clients {
		in, err := srv.PeerKeys(c)
		if err != nil {
			return nil, err
		}
		m, err := clients[c].ShareKeys(in)
		if err != nil {
			return nil, err
		}
		if err := srv.HandleShareUpload(m); err != nil {
			return nil, err
		}
	}
	if err := srv.ClosePhase(); err != nil {
		return nil, err
	}
	in, err := srv.ShareDelivery(id)
	if err != nil {
		return nil, err
	}
	x := make([]uint64, s.cfg.VectorLen)
	s.input(id, x)
	m, err := clients[id].MaskedInput(in, x)
	return m.Values, err
}
