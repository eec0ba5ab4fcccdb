package secagg

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestFieldMul(t *testing.T) {
	p := big.NewInt(fieldP)
	r := rand.New(rand.NewPCG(1, 2))
	edge := []uint64{0, 1, 2, fieldP - 1, fieldP - 2, 1 << 60, 1<<61 - 2}
	for i := range 10000 {
		a, b := r.Uint64N(fieldP), r.Uint64N(fieldP)
		if i < len(edge)*len(edge) {
			a, b = edge[i/len(edge)], edge[i%len(edge)]
		}
		want := new(big.Int).Mul(new(big.Int).SetUint64(a), new(big.Int).SetUint64(b))
		want.Mod(want, p)
		if got := fieldMul(a, b); got != want.Uint64() {
			t.Fatalf("fieldMul(%d, %d) = %d, want %d", a, b, got, want)
		}
		if a != 0 {
			if got := fieldMul(a, fieldInv(a)); got != 1 {
				t.Fatalf("fieldMul(%d, fieldInv(%d)) = %d, want 1", a, a, got)
			}
		}
		if got := fieldSub(fieldAdd(a, b), b); got != a {
			t.Fatalf("(%d + %d) - %d = %d, want %d", a, b, b, got, a)
		}
	}
}

func TestFieldInvBatch(t *testing.T) {
	v := []uint64{1, 2, 3, fieldP - 1, 123456789}
	got := slices.Clone(v)
	fieldInvBatch(got, make([]uint64, len(v)))
	for i := range v {
		if want := fieldInv(v[i]); got[i] != want {
			t.Errorf("fieldInvBatch[%d] = %d, want %d", i, got[i], want)
		}
	}
}

func TestSecretChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		var s [secretLen]byte
		for i := range s {
			s[i] = byte(r.Uint32())
		}
		c := secretChunks(&s)
		got, ok := chunksSecret(c[:])
		if !ok || got != s {
			t.Fatalf("chunksSecret(secretChunks(%x)) = %x, %v", s, got, ok)
		}
	}
	if _, ok := chunksSecret([]uint64{0, 0, 0, 0, 1 << 32}); ok {
		t.Error("chunksSecret accepted a last chunk wider than 4 bytes")
	}
	if _, ok := chunksSecret([]uint64{1 << 56, 0, 0, 0, 0}); ok {
		t.Error("chunksSecret accepted a chunk wider than 7 bytes")
	}
}

// TestShamir deals secrets and reconstructs them from random subsets of
// exactly t shares; t-1 shares must fail or give garbage.
func TestShamir(t *testing.T) {
	tests := []struct{ holders, threshold int }{
		{2, 2}, {5, 3}, {10, 10}, {20, 11}, {99, 50},
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, tt := range tests {
		ids := make([]uint32, tt.holders)
		xs := make([]uint64, tt.holders)
		for i := range ids {
			ids[i] = uint32(r.Uint64N(math.MaxUint32)) // any uint32 is a valid id
			if i == 0 {
				ids[i] = math.MaxUint32
			}
			xs[i] = holderX(ids[i])
		}
		slices.Sort(xs)
		xs = slices.Compact(xs)
		var secret [secretLen]byte
		for i := range secret {
			secret[i] = byte(r.Uint32())
		}
		shares := make([][ShareLen]uint64, len(xs))
		if err := shamirDeal(&secret, tt.threshold, xs, rand.NewChaCha8([32]byte{1}), shares); err != nil {
			t.Fatal(err)
		}
		pick := func(k int) ([]uint64, [][]uint64) {
			perm := r.Perm(len(xs))[:k]
			px, py := make([]uint64, k), make([][]uint64, k)
			for i, j := range perm {
				px[i], py[i] = xs[j], shares[j][:]
			}
			return px, py
		}
		for range 20 {
			px, py := pick(tt.threshold)
			got, err := shamirCombine(px, py)
			if err != nil || got != secret {
				t.Fatalf("holders=%d t=%d: shamirCombine(t shares) = %x, %v; want %x", tt.holders, tt.threshold, got, err, secret)
			}
			px, py = pick(tt.threshold - 1)
			got, err = shamirCombine(px, py)
			if err == nil && got == secret {
				t.Fatalf("holders=%d t=%d: t-1 shares reconstructed the secret", tt.holders, tt.threshold)
			}
			if err != nil && !errors.Is(err, ErrReconstruct) {
				t.Fatalf("shamirCombine(t-1 shares) error = %v, want ErrReconstruct", err)
			}
		}
	}
}

// TestShamirBelowThresholdDetected checks that garbage from t-1 shares is
// almost always rejected outright rather than returned as a wrong secret.
func TestShamirBelowThresholdDetected(t *testing.T) {
	const trials = 200
	xs := []uint64{11, 22, 33, 44, 55}
	shares := make([][ShareLen]uint64, len(xs))
	rejected := 0
	for i := range trials {
		secret := [secretLen]byte{byte(i)}
		if err := shamirDeal(&secret, 5, xs, rand.NewChaCha8([32]byte{byte(i)}), shares); err != nil {
			t.Fatal(err)
		}
		ys := [][]uint64{shares[0][:], shares[1][:], shares[2][:], shares[3][:]}
		if _, err := shamirCombine(xs[:4], ys); errors.Is(err, ErrReconstruct) {
			rejected++
		}
	}
	if rejected != trials {
		t.Errorf("t-1 shares rejected in %d of %d trials, want all (a pass has probability 2^-145)", rejected, trials)
	}
}
