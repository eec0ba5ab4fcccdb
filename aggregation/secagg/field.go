package secagg

import "math/bits"

// Arithmetic in GF(p), p = 2^61 - 1 (a Mersenne prime). Elements are uint64
// values in [0, p). Reduction needs no division: 2^61 ≡ 1 (mod p).

const fieldP = 1<<61 - 1

func fieldAdd(a, b uint64) uint64 {
	s := a + b
	if s >= fieldP {
		s -= fieldP
	}
	return s
}

func fieldSub(a, b uint64) uint64 {
	if a >= b {
		return a - b
	}
	return a + fieldP - b
}

func fieldMul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	// a, b < 2^61, so the product is below 2^122 and splits as
	// q*2^61 + r with q, r < 2^61; q*2^61 + r ≡ q + r.
	s := (hi<<3 | lo>>61) + lo&fieldP
	s = s&fieldP + s>>61
	if s >= fieldP {
		s -= fieldP
	}
	return s
}

// fieldInv returns a^(p-2) = 1/a for a != 0.
func fieldInv(a uint64) uint64 {
	r := uint64(1)
	for e := uint64(fieldP - 2); e > 0; e >>= 1 {
		if e&1 == 1 {
			r = fieldMul(r, a)
		}
		a = fieldMul(a, a)
	}
	return r
}

// fieldInvBatch replaces every (non-zero) element of v by its inverse with
// one inversion and 3(len(v)-1) multiplications (Montgomery's trick).
// prefix is scratch of len(v).
func fieldInvBatch(v, prefix []uint64) {
	if len(v) == 0 {
		return
	}
	acc := uint64(1)
	for i, x := range v {
		prefix[i] = acc
		acc = fieldMul(acc, x)
	}
	inv := fieldInv(acc)
	for i := len(v) - 1; i >= 0; i-- {
		x := v[i]
		v[i] = fieldMul(inv, prefix[i])
		inv = fieldMul(inv, x)
	}
}
