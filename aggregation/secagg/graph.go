package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"math/bits"
	"slices"
)

// graph is the SecAgg+ communication graph of a round: who shares secrets
// with and masks against whom.
//
// Sparse graphs follow Bell et al. (CCS 2020): the clients are placed on a
// ring in the order of a permutation drawn from the round's public seed, and
// each is joined to the k/2 nearest on either side (the Harary graph H(k,n)
// for even k). Every client has exactly k neighbours, the graph is
// k-connected, and which clients neighbour whom is unpredictable before the
// seed is fixed. Clients are referred to by their index in the sorted id
// list.
type graph struct {
	ids      []uint32 // sorted
	complete bool
	half     int     // k/2, sparse only
	pos      []int32 // pos[i] is the ring position of client i, sparse only
	at       []int32 // at[p] is the client at ring position p, sparse only
}

func newGraph(c *Config) *graph {
	g := &graph{ids: c.Clients, complete: c.complete()}
	if g.complete {
		return g
	}
	n := len(c.Clients)
	g.half = c.Degree / 2
	g.at = make([]int32, n)
	g.pos = make([]int32, n)
	for i := range g.at {
		g.at[i] = int32(i)
	}
	d := c.digest()
	r := newKeyStream(deriveKey(d[:], labelGraph, &d, nil))
	for i := n - 1; i > 0; i-- { // Fisher–Yates
		j := r.uintn(uint64(i + 1))
		g.at[i], g.at[j] = g.at[j], g.at[i]
	}
	for p, i := range g.at {
		g.pos[i] = int32(p)
	}
	return g
}

func (g *graph) size() int { return len(g.ids) }

// index returns the index of client id.
func (g *graph) index(id uint32) (int, bool) {
	return slices.BinarySearch(g.ids, id)
}

// degree returns the number of neighbours of every client.
func (g *graph) degree() int {
	if g.complete {
		return len(g.ids) - 1
	}
	return 2 * g.half
}

// adjacent reports whether clients i and j are neighbours.
func (g *graph) adjacent(i, j int) bool {
	if i == j {
		return false
	}
	if g.complete {
		return true
	}
	n := len(g.ids)
	d := int(g.pos[i]) - int(g.pos[j])
	if d < 0 {
		d = -d
	}
	return min(d, n-d) <= g.half
}

// neighbours appends the neighbours of client i to dst[:0], ascending.
func (g *graph) neighbours(i int, dst []int) []int {
	dst = dst[:0]
	n := len(g.ids)
	if g.complete {
		for j := range n {
			if j != i {
				dst = append(dst, j)
			}
		}
		return dst
	}
	p := int(g.pos[i])
	for d := 1; d <= g.half; d++ {
		dst = append(dst, int(g.at[(p+d)%n]), int(g.at[(p-d+n)%n]))
	}
	slices.Sort(dst)
	return dst
}

// keyStream reads pseudorandom integers from AES-256-CTR.
type keyStream struct {
	s   cipher.Stream
	buf [512]byte
	off int
}

func newKeyStream(key [32]byte) *keyStream {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // unreachable: the key is 32 bytes
	}
	r := &keyStream{s: cipher.NewCTR(b, make([]byte, aes.BlockSize))}
	r.off = len(r.buf)
	return r
}

func (r *keyStream) uint64() uint64 {
	if r.off == len(r.buf) {
		clear(r.buf[:])
		r.s.XORKeyStream(r.buf[:], r.buf[:])
		r.off = 0
	}
	v := binary.LittleEndian.Uint64(r.buf[r.off:])
	r.off += 8
	return v
}

// uintn returns a uniform integer in [0, n), n > 0 (Lemire's method).
func (r *keyStream) uintn(n uint64) uint64 {
	hi, lo := bits.Mul64(r.uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(r.uint64(), n)
		}
	}
	return hi
}
