package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// A device roster lets a device check a peer's identity in a signed secure
// round with a few hashes instead of a signature check: the device CA
// signs, once per period, a Merkle tree of the device certificates it
// stands by, and each peer's credential is then its roster entry with the
// entry's path to the tree's root.
//
// The CA's signature is an X.509 certificate (the roster certificate),
// issued by the device CA, whose one URI (RosterURI) names the roster's
// version, epoch, size and root, and whose validity is the roster's. A
// device checks it against the same device CA pool as device certificates.
// Its public key is a hash of the root (rosterKey), so nobody holds its
// private key and it can authenticate nothing else.
//
// The tree is RFC 9162's (section 2.1): leaves hash with a 0x00 prefix,
// interior nodes with 0x01, and a tree of n leaves splits at the largest
// power of two below n.

// RosterVersion is the version of the roster's tree, URI and files.
const RosterVersion = 1

// MaxRosterSize bounds a roster's entries; MaxRosterPath, the path of one
// entry (a tree of MaxRosterSize leaves is that deep).
const (
	MaxRosterSize = 1 << 24
	MaxRosterPath = 24
)

const rosterURIPrefix = "urn:fedrec:roster:"

// RosterEntry is one device certificate in a roster: the client ID (its
// common name), its public key and its validity.
type RosterEntry struct {
	ID string `msgpack:"id"`
	// Key is the certificate's public key, PKIX DER
	// (x509.Certificate.RawSubjectPublicKeyInfo).
	Key []byte `msgpack:"key"`
	// NotBefore and NotAfter are the certificate's validity, Unix seconds.
	NotBefore int64 `msgpack:"not_before"`
	NotAfter  int64 `msgpack:"not_after"`
}

// maxRosterKey bounds RosterEntry.Key (an Ed25519 key takes 44 bytes of
// DER, a P-256 key 91).
const maxRosterKey = 256

func (e *RosterEntry) check() error {
	if err := checkID("roster entry", e.ID); err != nil {
		return err
	}
	if len(e.Key) == 0 || len(e.Key) > maxRosterKey {
		return Errorf(CodeMalformed, "roster entry %q: key of %d bytes", e.ID, len(e.Key))
	}
	if e.NotAfter < e.NotBefore {
		return Errorf(CodeMalformed, "roster entry %q: valid until before it is valid", e.ID)
	}
	return nil
}

// RosterLeaf is the hash of an entry's leaf.
func RosterLeaf(e *RosterEntry) [32]byte {
	b := make([]byte, 0, 1+2+len(e.ID)+2+len(e.Key)+16)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.ID)))
	b = append(b, e.ID...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.NotBefore))
	b = binary.BigEndian.AppendUint64(b, uint64(e.NotAfter))
	return sha256.Sum256(b)
}

func rosterNode(l, r *[32]byte) [32]byte {
	var b [65]byte
	b[0] = 1
	copy(b[1:], l[:])
	copy(b[33:], r[:])
	return sha256.Sum256(b[:])
}

// RosterTree holds every level of a roster's tree, so that the path of any
// entry is a lookup: a node keeps one to hand each device its path.
type RosterTree struct {
	levels [][][32]byte // levels[0] the leaves; the last, the root alone
}

// NewRosterTree builds the tree of leaves (at least one). A level's last
// node without a sibling moves up unchanged, which gives RFC 9162's tree.
func NewRosterTree(leaves [][32]byte) (*RosterTree, error) {
	if len(leaves) == 0 || len(leaves) > MaxRosterSize {
		return nil, fmt.Errorf("wire: a roster of %d entries, want 1 to %d", len(leaves), MaxRosterSize)
	}
	t := &RosterTree{levels: [][][32]byte{leaves}}
	for l := leaves; len(l) > 1; {
		up := make([][32]byte, (len(l)+1)/2)
		for i := range up {
			if 2*i+1 < len(l) {
				up[i] = rosterNode(&l[2*i], &l[2*i+1])
			} else {
				up[i] = l[2*i]
			}
		}
		t.levels = append(t.levels, up)
		l = up
	}
	return t, nil
}

// Size is the number of leaves.
func (t *RosterTree) Size() uint64 { return uint64(len(t.levels[0])) }

// Root is the tree's root hash.
func (t *RosterTree) Root() [32]byte { return t.levels[len(t.levels)-1][0] }

// Path returns the inclusion path of leaf i, from the leaf up.
func (t *RosterTree) Path(i uint64) ([][]byte, error) {
	if i >= t.Size() {
		return nil, fmt.Errorf("wire: roster leaf %d of %d", i, t.Size())
	}
	var path [][]byte
	for _, l := range t.levels[:len(t.levels)-1] {
		if s := i ^ 1; s < uint64(len(l)) {
			path = append(path, l[s][:])
		}
		i /= 2
	}
	return path, nil
}

// VerifyRosterPath reports whether path proves that leaf is leaf number
// index of the tree of size leaves with the given root (RFC 9162, section
// 2.1.3.2).
func VerifyRosterPath(leaf [32]byte, index, size uint64, path [][]byte, root [32]byte) bool {
	if index >= size || len(path) > MaxRosterPath {
		return false
	}
	fn, sn, r := index, size-1, leaf
	for _, p := range path {
		if len(p) != 32 || sn == 0 {
			return false
		}
		sib := [32]byte(p)
		if fn&1 == 1 || fn == sn {
			r = rosterNode(&sib, &r)
			if fn&1 == 0 { // promoted: skip the levels where it had no sibling
				k := bits.TrailingZeros64(fn) // fn > 0: fn == sn > 0
				fn, sn = fn>>k, sn>>k
			}
		} else {
			r = rosterNode(&r, &sib)
		}
		fn, sn = fn>>1, sn>>1
	}
	return sn == 0 && r == root
}

// RosterURI names a roster in its certificate:
// urn:fedrec:roster:<version>:<epoch>:<size>:<root, hex>.
func RosterURI(epoch, size uint64, root [32]byte) string {
	return fmt.Sprintf("%s%d:%d:%d:%s", rosterURIPrefix, RosterVersion, epoch, size, hex.EncodeToString(root[:]))
}

// ParseRosterURI reads a RosterURI.
func ParseRosterURI(s string) (epoch, size uint64, root [32]byte, err error) {
	rest, ok := strings.CutPrefix(s, rosterURIPrefix)
	f := strings.Split(rest, ":")
	if !ok || len(f) != 4 {
		return 0, 0, root, Errorf(CodeMalformed, "roster URI %.80q: want %s<version>:<epoch>:<size>:<root>", s, rosterURIPrefix)
	}
	if v, err := strconv.ParseUint(f[0], 10, 16); err != nil || v != RosterVersion {
		return 0, 0, root, Errorf(CodeVersion, "roster URI of version %.8q, this build reads %d", f[0], RosterVersion)
	}
	epoch, err1 := strconv.ParseUint(f[1], 10, 64)
	size, err2 := strconv.ParseUint(f[2], 10, 64)
	r, err3 := hex.DecodeString(f[3])
	if err1 != nil || err2 != nil || err3 != nil || len(r) != 32 || size == 0 || size > MaxRosterSize {
		return 0, 0, root, Errorf(CodeMalformed, "roster URI %.80q: bad epoch, size or root", s)
	}
	return epoch, size, [32]byte(r), nil
}

// RosterKey is the public key of a roster certificate: an Ed25519 key
// that is a hash of the root, so that nobody holds the private key.
func RosterKey(root [32]byte) []byte {
	k := sha256.Sum256(append([]byte("fedrec roster key\x00"), root[:]...))
	return k[:]
}

// RosterCredential is a device's credential in a signed secure round when
// its node's roster lists its certificate: the roster certificate, the
// device's entry and the entry's path. It is self-contained, so devices
// whose nodes hold different rosters (during a roster's renewal) still
// check each other; a device checks each roster certificate once. A
// device certificate (DER, which starts with 0x30) is the other kind of
// credential; an encoded RosterCredential starts with a msgpack map.
type RosterCredential struct {
	Version uint16      `msgpack:"v"`
	Roster  []byte      `msgpack:"roster"` // the roster certificate, DER
	Entry   RosterEntry `msgpack:"entry"`
	Index   uint64      `msgpack:"index"`
	Path    [][]byte    `msgpack:"path"`
}

// IsRosterCredential reports whether a credential is a RosterCredential
// rather than a certificate.
func IsRosterCredential(b []byte) bool { return len(b) > 0 && b[0] != 0x30 }

// EncodeRosterCredential encodes c.
func EncodeRosterCredential(c *RosterCredential) ([]byte, error) { return encodeValid(c) }

// DecodeRosterCredential decodes and validates a RosterCredential.
func DecodeRosterCredential(b []byte) (*RosterCredential, error) {
	return decodeValid[RosterCredential](b, "roster credential")
}

// valid is a roster type, which checks its own version and bounds.
type valid interface{ Validate() error }

func encodeValid(v valid) ([]byte, error) {
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return marshal(v)
}

func decodeValid[T any, P interface {
	*T
	valid
}](b []byte, what string) (P, error) {
	v := P(new(T))
	if err := unmarshal(b, v); err != nil {
		return nil, Errorf(CodeMalformed, "%s: %v", what, err)
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return v, nil
}

// Validate checks the version and bounds.
func (c *RosterCredential) Validate() error {
	if c.Version != RosterVersion {
		return Errorf(CodeVersion, "roster credential of version %d, this build reads %d", c.Version, RosterVersion)
	}
	if len(c.Roster) == 0 || len(c.Roster) > maxRosterCert {
		return Errorf(CodeMalformed, "roster credential: a roster certificate of %d bytes", len(c.Roster))
	}
	if len(c.Path) > MaxRosterPath {
		return Errorf(CodeMalformed, "roster credential: a path of %d", len(c.Path))
	}
	for _, p := range c.Path {
		if len(p) != 32 {
			return Errorf(CodeMalformed, "roster credential: a path hash of %d bytes", len(p))
		}
	}
	return c.Entry.check()
}

// RosterFile is a roster as the device CA writes it and nodes load it:
// the roster certificate and every entry, in leaf order.
type RosterFile struct {
	Version uint16        `msgpack:"v"`
	Cert    []byte        `msgpack:"cert"` // DER
	Entries []RosterEntry `msgpack:"entries"`
}

// maxRosterCert bounds a roster certificate.
const maxRosterCert = 4096

// EncodeRosterFile encodes f.
func EncodeRosterFile(f *RosterFile) ([]byte, error) { return encodeValid(f) }

// DecodeRosterFile decodes and validates a RosterFile. It does not check
// the certificate or the tree; the loader does (pki.ParseRoster).
func DecodeRosterFile(b []byte) (*RosterFile, error) {
	return decodeValid[RosterFile](b, "roster file")
}

// Validate checks the version and bounds.
func (f *RosterFile) Validate() error {
	if f.Version != RosterVersion {
		return Errorf(CodeVersion, "roster file of version %d, this build reads %d", f.Version, RosterVersion)
	}
	if len(f.Cert) == 0 || len(f.Cert) > maxRosterCert {
		return Errorf(CodeMalformed, "roster file: a certificate of %d bytes", len(f.Cert))
	}
	if len(f.Entries) == 0 || len(f.Entries) > MaxRosterSize {
		return Errorf(CodeMalformed, "roster file: %d entries", len(f.Entries))
	}
	for i := range f.Entries {
		if err := f.Entries[i].check(); err != nil {
			return err
		}
	}
	return nil
}

// RosterInfo is what a checked roster certificate says.
type RosterInfo struct {
	Epoch, Size         uint64
	Root                [32]byte
	NotBefore, NotAfter time.Time
}

// VerifyRosterCert checks that der is a roster certificate of the device
// CA in roots, valid at now, and returns what it says: one URI naming the
// roster, the key RosterKey of its root, no CA rights.
func VerifyRosterCert(der []byte, roots *x509.CertPool, now time.Time) (RosterInfo, error) {
	var info RosterInfo
	if roots == nil {
		return info, errors.New("wire: roster certificate: no device CA")
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return info, fmt.Errorf("wire: roster certificate: %w", err)
	}
	opts := x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := c.Verify(opts); err != nil {
		return info, fmt.Errorf("wire: roster certificate: %w", err)
	}
	if c.IsCA || len(c.URIs) != 1 || len(c.DNSNames)+len(c.IPAddresses)+len(c.EmailAddresses) > 0 {
		return info, errors.New("wire: roster certificate: not a roster certificate (one URI, no CA rights, no other names)")
	}
	if info.Epoch, info.Size, info.Root, err = ParseRosterURI(c.URIs[0].String()); err != nil {
		return info, err
	}
	if k, ok := c.PublicKey.(ed25519.PublicKey); !ok || !bytes.Equal(k, RosterKey(info.Root)) {
		return info, errors.New("wire: roster certificate: its key is not the roster's")
	}
	info.NotBefore, info.NotAfter = c.NotBefore, c.NotAfter
	return info, nil
}

// Check reports whether c proves its entry in the roster, and that the
// entry is valid at now.
func (r *RosterInfo) Check(c *RosterCredential, now time.Time) error {
	if !VerifyRosterPath(RosterLeaf(&c.Entry), c.Index, r.Size, c.Path, r.Root) {
		return fmt.Errorf("wire: %q is not entry %d of roster %d", c.Entry.ID, c.Index, r.Epoch)
	}
	if t := now.Unix(); t < c.Entry.NotBefore || t > c.Entry.NotAfter {
		return fmt.Errorf("wire: roster entry %q is not valid at %s", c.Entry.ID, now.UTC().Format(time.RFC3339))
	}
	return nil
}
