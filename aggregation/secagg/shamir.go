package secagg

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Shamir secret sharing of 32-byte secrets over GF(2^61-1).
//
// A secret is cut into ShareLen chunks of at most 7 bytes (56 bits, below
// the field size), and each chunk is shared with its own random polynomial
// of degree t-1. A share is therefore ShareLen field elements. Holder v
// evaluates at x = v+1, so any uint32 client id is a distinct non-zero
// point and no re-numbering is needed for sparse or non-dense ids.
//
// Why this field: GF(2^8) would cap the number of holders at 255 (too few
// for a complete graph of 1,000 clients), and a 256-bit prime with math/big
// is slow and allocates. The Mersenne prime reduces with shifts and adds.
// Reconstructed chunks must fit in 56 (last: 32) bits, which rejects most
// garbage from too few or corrupted shares.

const (
	// ShareLen is the number of field elements in one share of a 32-byte
	// secret.
	ShareLen = 5

	secretLen  = 32
	chunkBytes = 7
)

// secretChunks splits a secret into field elements, little-endian.
func secretChunks(s *[secretLen]byte) (c [ShareLen]uint64) {
	var b [ShareLen * chunkBytes]byte
	copy(b[:], s[:])
	for i := range c {
		var w [8]byte
		copy(w[:], b[i*chunkBytes:(i+1)*chunkBytes])
		c[i] = binary.LittleEndian.Uint64(w[:])
	}
	return c
}

// chunksSecret reverses secretChunks. It reports false when a chunk does not
// fit, which is what garbage from a bad reconstruction almost always does.
func chunksSecret(c []uint64) (s [secretLen]byte, ok bool) {
	var b [ShareLen*chunkBytes + 1]byte
	for i, v := range c {
		if v>>(8*chunkBytes) != 0 {
			return s, false
		}
		binary.LittleEndian.PutUint64(b[i*chunkBytes:], v)
	}
	for _, x := range b[secretLen:] {
		if x != 0 {
			return s, false
		}
	}
	copy(s[:], b[:secretLen])
	return s, true
}

// holderX is the evaluation point of client id.
func holderX(id uint32) uint64 { return uint64(id) + 1 }

// fieldRandom fills dst with uniform field elements read from r.
func fieldRandom(r io.Reader, dst []uint64) error {
	buf := make([]byte, 8*len(dst))
	for len(dst) > 0 {
		if _, err := io.ReadFull(r, buf[:8*len(dst)]); err != nil {
			return fmt.Errorf("secagg: read randomness: %w", err)
		}
		n := 0
		for i := range dst {
			v := binary.LittleEndian.Uint64(buf[8*i:]) & fieldP
			if v == fieldP { // reject the one value ≥ p; probability 2^-61
				continue
			}
			dst[n] = v
			n++
		}
		dst = dst[n:]
	}
	return nil
}

// shamirDeal writes into shares[i] the share of secret for the holder at
// point xs[i], with threshold t (any t shares reconstruct, t-1 reveal
// nothing).
func shamirDeal(secret *[secretLen]byte, t int, xs []uint64, r io.Reader, shares [][ShareLen]uint64) error {
	coef := make([]uint64, ShareLen*(t-1))
	if err := fieldRandom(r, coef); err != nil {
		return err
	}
	c0 := secretChunks(secret)
	for i, x := range xs {
		for c := range ShareLen {
			// Horner: f(x) = c0 + x(a1 + x(a2 + ... )).
			a := coef[c*(t-1) : (c+1)*(t-1)]
			y := uint64(0)
			for j := len(a) - 1; j >= 0; j-- {
				y = fieldAdd(fieldMul(y, x), a[j])
			}
			shares[i][c] = fieldAdd(fieldMul(y, x), c0[c])
		}
	}
	return nil
}

// lagrangeAtZero returns the coefficients l with f(0) = Σ l[i] f(xs[i]) for
// any polynomial of degree < len(xs). The xs must be distinct and non-zero.
func lagrangeAtZero(xs []uint64) []uint64 {
	n := len(xs)
	l := make([]uint64, n)
	den := make([]uint64, n)
	scratch := make([]uint64, n)
	// Numerators Π_{j≠i} x_j from prefix and suffix products.
	acc := uint64(1)
	for i, x := range xs {
		l[i] = acc
		acc = fieldMul(acc, x)
	}
	acc = 1
	for i := n - 1; i >= 0; i-- {
		l[i] = fieldMul(l[i], acc)
		acc = fieldMul(acc, xs[i])
	}
	// Denominators Π_{j≠i} (x_j - x_i).
	for i, xi := range xs {
		d := uint64(1)
		for j, xj := range xs {
			if j != i {
				d = fieldMul(d, fieldSub(xj, xi))
			}
		}
		den[i] = d
	}
	fieldInvBatch(den, scratch)
	for i := range l {
		l[i] = fieldMul(l[i], den[i])
	}
	return l
}

// shamirCombine reconstructs a secret from shares ys[i] held at xs[i]. It
// uses every share given, so pass exactly the threshold number. It fails
// with ErrReconstruct when the result is not a well-formed secret.
func shamirCombine(xs []uint64, ys [][]uint64) ([secretLen]byte, error) {
	l := lagrangeAtZero(xs)
	var c [ShareLen]uint64
	for i, y := range ys {
		for k := range c {
			c[k] = fieldAdd(c[k], fieldMul(l[i], y[k]))
		}
	}
	s, ok := chunksSecret(c[:])
	if !ok {
		return s, ErrReconstruct
	}
	return s, nil
}
