package secagg

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
)

// Limits on a Config. They keep a hostile or mistaken config from asking
// for absurd amounts of memory; raise them if a deployment needs to.
const (
	MaxClients   = 1 << 20
	MaxVectorLen = 1 << 28
	// MinSeedLen is the shortest Seed accepted when the graph is sparse.
	MinSeedLen = 16
	// MaxSignatureLen bounds KeyAdvert.Signature.
	MaxSignatureLen = 1024
	// TagLen is the length of ConsistencyTag.Tag (HMAC-SHA256).
	TagLen = 32
	// MaxCredentialLen bounds KeyAdvert.Credential (a device certificate,
	// or a short chain of them).
	MaxCredentialLen = 8192
)

// Config describes one round. The server and every client must be given
// the same Config: its digest is bound into every key derivation and every
// authenticated ciphertext, so a client with a different view of the round
// cannot take part, and nothing from one round is usable in another.
//
// The zero values of Degree, Threshold and MinSurvivors select documented
// defaults; Validate reports the first invalid field by name.
type Config struct {
	// Round identifies the round. It must never repeat with the same
	// Clients and Seed.
	Round uint64
	// Seed is public randomness from which the neighbour graph is derived.
	// It must be at least MinSeedLen bytes when the graph is sparse; it is
	// ignored (but still bound into the digest) for a complete graph. The
	// server must not be able to choose it after seeing the cohort; see
	// docs/threat-model.md.
	Seed []byte
	// Clients lists the cohort's ids, in any order, without repeats. At
	// least 3.
	Clients []uint32
	// VectorLen is the length of every input vector.
	VectorLen int
	// Bits is b: inputs are values in [0, 2^b) and are summed mod 2^b.
	// 1 to 64.
	Bits int
	// Degree is k, the number of neighbours of each client in the SecAgg+
	// graph (Bell et al. 2020): a Harary graph over a permutation of the
	// clients derived from Seed. It must be even. Zero, or any value of at
	// least len(Clients)-1, selects the complete graph: the original
	// protocol of Bonawitz et al. 2017.
	Degree int
	// Threshold is t, the number of a client's neighbours needed to
	// reconstruct its secrets; fewer learn nothing about them. 2 to the
	// effective degree. Zero means a majority of the neighbours,
	// floor(k/2)+1, which is what makes the share-reveal rule effective
	// against a server that lies about dropouts (see docs/threat-model.md).
	Threshold int
	// MinSurvivors is the smallest number of clients whose inputs the round
	// will sum; below it, at any phase, the round aborts. Zero means
	// Threshold; otherwise it must be between Threshold and len(Clients).
	MinSurvivors int
	// Signed makes the round resist a server that actively lies (Bonawitz
	// et al. 2017, section 4, the malicious model): clients sign their key
	// adverts with a long-term Identity and verify their neighbours'
	// (NewSignedClient), and a consistency-check phase between the masked
	// inputs and unmasking makes every client confirm the survivor set to
	// its neighbours (ConsistencyTag) and reveal nothing until Threshold of
	// them confirmed the same set to it.
	// It is bound into the config digest only when true, so the digests of
	// unsigned rounds are those of earlier versions. See ActiveThreshold
	// for the threshold it needs.
	Signed bool
}

// Validate reports whether c describes a valid round. The error wraps
// ErrConfig and names the offending field.
func (c Config) Validate() error {
	_, err := c.normalize()
	return err
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
}

// normalize validates c and returns a copy with sorted clients and the
// defaults filled in.
func (c Config) normalize() (Config, error) {
	n := len(c.Clients)
	if n < 3 {
		return c, configErr("Clients has %d ids, need at least 3", n)
	}
	if n > MaxClients {
		return c, configErr("Clients has %d ids, more than %d", n, MaxClients)
	}
	ids := slices.Clone(c.Clients)
	slices.Sort(ids)
	for i := 1; i < n; i++ {
		if ids[i] == ids[i-1] {
			return c, configErr("Clients repeats id %d", ids[i])
		}
	}
	c.Clients = ids
	if c.VectorLen < 1 || c.VectorLen > MaxVectorLen {
		return c, configErr("VectorLen %d not in [1, %d]", c.VectorLen, MaxVectorLen)
	}
	if c.Bits < 1 || c.Bits > 64 {
		return c, configErr("Bits %d not in [1, 64]", c.Bits)
	}
	if c.Degree < 0 {
		return c, configErr("Degree %d is negative", c.Degree)
	}
	if c.Degree == 0 || c.Degree >= n-1 {
		c.Degree = n - 1
	} else {
		if c.Degree%2 != 0 {
			return c, configErr("Degree %d is odd; a sparse graph needs an even degree", c.Degree)
		}
		if len(c.Seed) < MinSeedLen {
			return c, configErr("Seed has %d bytes, a sparse graph needs at least %d", len(c.Seed), MinSeedLen)
		}
	}
	c.Seed = slices.Clone(c.Seed)
	if c.Threshold == 0 {
		c.Threshold = c.Degree/2 + 1
	}
	if c.Threshold < 2 || c.Threshold > c.Degree {
		return c, configErr("Threshold %d not in [2, %d] (the neighbour degree)", c.Threshold, c.Degree)
	}
	if c.MinSurvivors == 0 {
		c.MinSurvivors = c.Threshold
	}
	if c.MinSurvivors < c.Threshold || c.MinSurvivors > n {
		return c, configErr("MinSurvivors %d not in [%d, %d] (Threshold to the cohort size)", c.MinSurvivors, c.Threshold, n)
	}
	return c, nil
}

// complete reports whether a normalized config uses the complete graph.
func (c *Config) complete() bool { return c.Degree == len(c.Clients)-1 }

// digest hashes a normalized config. It is the round context bound into
// every key derivation and every ciphertext.
func (c *Config) digest() [32]byte {
	h := sha256.New()
	var b [8]byte
	put := func(v uint64) {
		binary.BigEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	h.Write([]byte("fedrec/secagg/v1 config\x00"))
	put(c.Round)
	put(uint64(len(c.Seed)))
	h.Write(c.Seed)
	put(uint64(c.VectorLen))
	put(uint64(c.Bits))
	put(uint64(c.Degree))
	put(uint64(c.Threshold))
	put(uint64(c.MinSurvivors))
	put(uint64(len(c.Clients)))
	for _, id := range c.Clients {
		binary.BigEndian.PutUint32(b[:4], id)
		h.Write(b[:4])
	}
	if c.Signed {
		// Appended, not a field in every digest: unsigned rounds keep the
		// digests (and golden files) of the versions before signing.
		h.Write([]byte("signed\x00"))
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// Neighbours returns the neighbours of client id in the round's graph,
// ascending.
func (c Config) Neighbours(id uint32) ([]uint32, error) {
	nc, err := c.normalize()
	if err != nil {
		return nil, err
	}
	g := newGraph(&nc)
	i, ok := g.index(id)
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrUnknownClient, id)
	}
	var out []uint32
	for _, j := range g.neighbours(i, nil) {
		out = append(out, g.ids[j])
	}
	return out, nil
}
