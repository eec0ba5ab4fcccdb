package pki

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// RosterFile is the roster's file in a PKI directory.
const RosterFile = "device-roster.bin"

// IssueRoster makes the device roster of epoch (wire.RosterFile): an entry
// for each device certificate in certs that this CA signed, for client
// authentication, valid at now and not revoked (the others are left out
// and named in skipped), and a roster certificate valid for validFor. The
// entries are in client-ID order. Devices check a peer in a signed round
// against the roster with a few hashes instead of a certificate chain
// (docs/security.md).
func (ca *CA) IssueRoster(certs []*x509.Certificate, revoked *Revoked, epoch uint64, validFor time.Duration) (f *wire.RosterFile, skipped []string, err error) {
	now := time.Now()
	var entries []wire.RosterEntry
	for _, c := range certs {
		id := wire.DeviceID(c)
		switch {
		case c.CheckSignatureFrom(ca.Cert) != nil:
			skipped = append(skipped, id+": not signed by this CA")
		case c.IsCA || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth):
			skipped = append(skipped, id+": not a device certificate")
		case now.Before(c.NotBefore) || now.After(c.NotAfter):
			skipped = append(skipped, id+": not valid now")
		case revoked.Has(c, id):
			skipped = append(skipped, id+": revoked")
		case checkDeviceID(id) != nil:
			skipped = append(skipped, fmt.Sprintf("%q: not a device ID", id))
		default:
			entries = append(entries, wire.RosterEntry{ID: id, Key: bytes.Clone(c.RawSubjectPublicKeyInfo), NotBefore: c.NotBefore.Unix(), NotAfter: c.NotAfter.Unix()})
		}
	}
	if len(entries) == 0 {
		return nil, skipped, errors.New("pki: roster: no device certificate to list")
	}
	slices.SortStableFunc(entries, func(a, b wire.RosterEntry) int { return cmp.Compare(a.ID, b.ID) })
	leaves := make([][32]byte, len(entries))
	for i := range entries {
		leaves[i] = wire.RosterLeaf(&entries[i])
	}
	tree, err := wire.NewRosterTree(leaves)
	if err != nil {
		return nil, skipped, err
	}
	u, err := url.Parse(wire.RosterURI(epoch, tree.Size(), tree.Root()))
	if err != nil {
		return nil, skipped, err
	}
	notAfter := now.Add(validFor)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("fedrec device roster %d", epoch), Organization: []string{"fedrec"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              notAfter,
		URIs:                  []*url.URL{u},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, ed25519.PublicKey(wire.RosterKey(tree.Root())), ca.Key)
	if err != nil {
		return nil, skipped, fmt.Errorf("pki: roster certificate: %w", err)
	}
	return &wire.RosterFile{Version: wire.RosterVersion, Cert: der, Entries: entries}, skipped, nil
}

// Roster is a checked device roster, as a node holds it to give each
// device of a signed round its credential.
type Roster struct {
	Info wire.RosterInfo
	Cert []byte // the roster certificate, DER
	file *wire.RosterFile
	tree *wire.RosterTree
	at   map[rosterKey]uint64 // entry → leaf index
}

type rosterKey struct{ id, key string }

// ParseRoster checks a roster file against the device CA in roots at now:
// its certificate (wire.VerifyRosterCert) and that its entries make the
// tree the certificate names.
func ParseRoster(b []byte, roots *x509.CertPool, now time.Time) (*Roster, error) {
	f, err := wire.DecodeRosterFile(b)
	if err != nil {
		return nil, fmt.Errorf("pki: roster: %w", err)
	}
	info, err := wire.VerifyRosterCert(f.Cert, roots, now)
	if err != nil {
		return nil, fmt.Errorf("pki: roster: %w", err)
	}
	leaves := make([][32]byte, len(f.Entries))
	at := make(map[rosterKey]uint64, len(f.Entries))
	for i := range f.Entries {
		leaves[i] = wire.RosterLeaf(&f.Entries[i])
		at[rosterKey{f.Entries[i].ID, string(f.Entries[i].Key)}] = uint64(i)
	}
	tree, err := wire.NewRosterTree(leaves)
	if err != nil {
		return nil, fmt.Errorf("pki: roster: %w", err)
	}
	if tree.Size() != info.Size || tree.Root() != info.Root {
		return nil, fmt.Errorf("pki: roster %d: its entries are not the tree its certificate names", info.Epoch)
	}
	return &Roster{Info: info, Cert: f.Cert, file: f, tree: tree, at: at}, nil
}

// LoadRoster reads and checks the roster file at path (ParseRoster).
func LoadRoster(path string, roots *x509.CertPool, now time.Time) (*Roster, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: roster: %w", err)
	}
	return ParseRoster(b, roots, now)
}

// Credential returns the roster credential (wire.RosterCredential,
// encoded) of device certificate c, and false if the roster does not list
// it with the same validity.
func (r *Roster) Credential(c *x509.Certificate) ([]byte, bool) {
	i, ok := r.at[rosterKey{wire.DeviceID(c), string(c.RawSubjectPublicKeyInfo)}]
	if !ok {
		return nil, false
	}
	e := r.file.Entries[i]
	if e.NotBefore != c.NotBefore.Unix() || e.NotAfter != c.NotAfter.Unix() {
		return nil, false
	}
	path, err := r.tree.Path(i)
	if err != nil {
		return nil, false
	}
	b, err := wire.EncodeRosterCredential(&wire.RosterCredential{Version: wire.RosterVersion, Roster: r.Cert, Entry: e, Index: i, Path: path})
	if err != nil {
		return nil, false
	}
	return b, true
}

// Len is the number of entries.
func (r *Roster) Len() int { return len(r.file.Entries) }

// WriteRoster issues the device roster of epoch with the device CA in dir
// (CA.IssueRoster) for the device certificates in the PEM files certFiles
// (a directory stands for its device-*.pem files), leaving out those
// dir's deny-list revokes, and writes it to dir's RosterFile, which the
// nodes reading dir pick up within seconds. It returns how many devices
// the roster lists and why the others were left out.
func WriteRoster(dir string, certFiles []string, epoch uint64, validFor time.Duration) (n int, skipped []string, err error) {
	ca, err := LoadDeviceCA(dir)
	if err != nil {
		return 0, nil, err
	}
	var revoked *Revoked
	if b, err := os.ReadFile(filepath.Join(dir, RevokedFile)); err == nil {
		if revoked, err = ParseRevoked(bytes.NewReader(b)); err != nil {
			return 0, nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, nil, err
	}
	var certs []*x509.Certificate
	for _, path := range certFiles {
		paths := []string{path}
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			if paths, err = filepath.Glob(filepath.Join(path, DeviceCertFile("*"))); err != nil {
				return 0, nil, err
			}
		}
		for _, p := range paths {
			if strings.HasSuffix(p, "-key.pem") {
				continue
			}
			_, cs, err := loadPool(filepath.Dir(p), filepath.Base(p))
			if err != nil {
				return 0, nil, err
			}
			certs = append(certs, cs...)
		}
	}
	f, skipped, err := ca.IssueRoster(certs, revoked, epoch, validFor)
	if err != nil {
		return 0, skipped, err
	}
	return len(f.Entries), skipped, PutRoster(dir, f)
}

// PutRoster writes f to dir's RosterFile, whole or not at all: a node may
// read it at any moment.
func PutRoster(dir string, f *wire.RosterFile) error {
	b, err := wire.EncodeRosterFile(f)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, RosterFile+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, RosterFile))
}
