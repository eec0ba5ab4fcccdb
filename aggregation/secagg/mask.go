package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"sync"
)

// Masks are the keystream of AES-256-CTR (zero IV) under a 32-byte seed,
// read as little-endian words: 4 bytes per element when Bits <= 32 and 8
// otherwise. The low Bits bits of a uniform word are uniform mod 2^Bits.
// Masks are added with ordinary uint64 arithmetic and reduced mod 2^Bits
// once at the end, which is exact because 2^Bits divides 2^64.
//
// The expansion never allocates per element: the keystream is produced in
// tiles into a reusable scratch buffer and added into the destination
// straight away. With many masks over one vector (the server) the loop is
// tile-major, so a tile of the destination stays in cache while every
// mask is added to it.

const maskTile = 4096 // elements per tile; 16 or 32 KiB of keystream

func maskWidth(bits int) int {
	if bits <= 32 {
		return 4
	}
	return 8
}

func valueMask(bits int) uint64 { return ^uint64(0) >> (64 - bits) }

// maskJob is one mask to add to (or, when neg, subtract from) a vector.
type maskJob struct {
	block cipher.Block
	neg   bool
}

func newMaskJob(seed [32]byte, neg bool) maskJob {
	b, err := aes.NewCipher(seed[:])
	if err != nil {
		panic(err) // unreachable: 32-byte key
	}
	return maskJob{block: b, neg: neg}
}

// ctrAt returns the keystream of block starting at element off; off*width
// must be a multiple of the AES block size.
func ctrAt(block cipher.Block, off, width int) cipher.Stream {
	var iv [aes.BlockSize]byte
	binary.BigEndian.PutUint64(iv[8:], uint64(off*width/aes.BlockSize))
	return cipher.NewCTR(block, iv[:])
}

// applyMasks adds every job's mask into dst using up to workers goroutines,
// each owning a contiguous range of dst. It returns when all are done.
func applyMasks(dst []uint64, jobs []maskJob, width, workers int) {
	if len(jobs) == 0 || len(dst) == 0 {
		return
	}
	const align = 4 // elements; 16 bytes of keystream at width 4
	per := (len(dst)/workers + align - 1) / align * align
	if per < maskTile {
		per = maskTile
	}
	if per >= len(dst) {
		applyRange(dst, 0, jobs, width)
		return
	}
	var wg sync.WaitGroup
	for lo := 0; lo < len(dst); lo += per {
		hi := min(lo+per, len(dst))
		wg.Go(func() { applyRange(dst[lo:hi], lo, jobs, width) })
	}
	wg.Wait()
}

// applyRange adds the jobs' masks for elements [off, off+len(dst)) into dst.
func applyRange(dst []uint64, off int, jobs []maskJob, width int) {
	streams := make([]cipher.Stream, len(jobs))
	for j, job := range jobs {
		streams[j] = ctrAt(job.block, off, width)
	}
	buf := make([]byte, maskTile*width)
	for lo := 0; lo < len(dst); lo += maskTile {
		d := dst[lo:min(lo+maskTile, len(dst))]
		ks := buf[:len(d)*width]
		for j, job := range jobs {
			clear(ks)
			streams[j].XORKeyStream(ks, ks)
			switch {
			case width == 4 && !job.neg:
				add32(d, ks)
			case width == 4:
				sub32(d, ks)
			case !job.neg:
				add64(d, ks)
			default:
				sub64(d, ks)
			}
		}
	}
}

func add64(d []uint64, ks []byte) {
	ks = ks[:8*len(d)]
	for len(d) >= 4 && len(ks) >= 32 {
		d[0] += binary.LittleEndian.Uint64(ks[0:8])
		d[1] += binary.LittleEndian.Uint64(ks[8:16])
		d[2] += binary.LittleEndian.Uint64(ks[16:24])
		d[3] += binary.LittleEndian.Uint64(ks[24:32])
		d, ks = d[4:], ks[32:]
	}
	for i := range d {
		d[i] += binary.LittleEndian.Uint64(ks[8*i:])
	}
}

func sub64(d []uint64, ks []byte) {
	ks = ks[:8*len(d)]
	for len(d) >= 4 && len(ks) >= 32 {
		d[0] -= binary.LittleEndian.Uint64(ks[0:8])
		d[1] -= binary.LittleEndian.Uint64(ks[8:16])
		d[2] -= binary.LittleEndian.Uint64(ks[16:24])
		d[3] -= binary.LittleEndian.Uint64(ks[24:32])
		d, ks = d[4:], ks[32:]
	}
	for i := range d {
		d[i] -= binary.LittleEndian.Uint64(ks[8*i:])
	}
}

func add32(d []uint64, ks []byte) {
	ks = ks[:4*len(d)]
	for len(d) >= 4 && len(ks) >= 16 {
		d[0] += uint64(binary.LittleEndian.Uint32(ks[0:4]))
		d[1] += uint64(binary.LittleEndian.Uint32(ks[4:8]))
		d[2] += uint64(binary.LittleEndian.Uint32(ks[8:12]))
		d[3] += uint64(binary.LittleEndian.Uint32(ks[12:16]))
		d, ks = d[4:], ks[16:]
	}
	for i := range d {
		d[i] += uint64(binary.LittleEndian.Uint32(ks[4*i:]))
	}
}

func sub32(d []uint64, ks []byte) {
	ks = ks[:4*len(d)]
	for len(d) >= 4 && len(ks) >= 16 {
		d[0] -= uint64(binary.LittleEndian.Uint32(ks[0:4]))
		d[1] -= uint64(binary.LittleEndian.Uint32(ks[4:8]))
		d[2] -= uint64(binary.LittleEndian.Uint32(ks[8:12]))
		d[3] -= uint64(binary.LittleEndian.Uint32(ks[12:16]))
		d, ks = d[4:], ks[16:]
	}
	for i := range d {
		d[i] -= uint64(binary.LittleEndian.Uint32(ks[4*i:]))
	}
}
