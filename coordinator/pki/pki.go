package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// File names inside a certificate directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
	// The device CA signs device certificates. In production its key
	// stays with the app's backend, which issues short-lived device
	// certificates; coordinators need only DeviceCAFile.
	DeviceCAFile    = "device-ca.pem"
	DeviceCAKeyFile = "device-ca-key.pem"
	// RevokedFile is the deny-list of device IDs and certificate serial
	// numbers a coordinator refuses, reloaded when it changes (see
	// ParseRevoked).
	RevokedFile = "revoked.txt"
)

// DeviceCertFile and DeviceKeyFile name a device's certificate and key
// files.
func DeviceCertFile(id string) string { return "device-" + id + ".pem" }
func DeviceKeyFile(id string) string  { return "device-" + id + "-key.pem" }

// CertFile and KeyFile name a node's certificate and key files.
func CertFile(name string) string { return name + ".pem" }
func KeyFile(name string) string  { return name + "-key.pem" }

// KeyType is the algorithm of a key pki makes.
type KeyType string

const (
	// Ed25519 is the default for device certificates and the device CA:
	// in a signed secure round a device checks about fifty signatures and
	// certificates, and Ed25519's cost less than ECDSA P-256's
	// (docs/security.md).
	Ed25519 KeyType = "ed25519"
	// P256 is ECDSA P-256: the cluster CA and node certificates, and the
	// device certificates of backends that issue P-256.
	P256 KeyType = "p256"
)

// ParseKeyType parses "ed25519" or "p256".
func ParseKeyType(s string) (KeyType, error) {
	switch k := KeyType(s); k {
	case Ed25519, P256:
		return k, nil
	}
	return "", fmt.Errorf("pki: key type %q: want %s or %s", s, Ed25519, P256)
}

func (k KeyType) generate() (crypto.Signer, error) {
	switch k {
	case Ed25519:
		_, key, err := ed25519.GenerateKey(rand.Reader)
		return key, err
	case P256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("pki: key type %q: want %s or %s", k, Ed25519, P256)
}

// signer returns key as a crypto.Signer if it is a key pki makes: ECDSA
// P-256 or Ed25519.
func signer(key crypto.PrivateKey) (crypto.Signer, bool) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k, k.Curve == elliptic.P256()
	case ed25519.PrivateKey:
		return k, true
	}
	return nil, false
}

// CA is a certificate authority that can sign node or device
// certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer // ECDSA P-256 or Ed25519
}

// NewCA makes a self-signed CA with an ECDSA P-256 key valid for
// validFor.
func NewCA(name string, validFor time.Duration) (*CA, error) {
	return NewCAKey(name, validFor, P256)
}

// NewCAKey makes a self-signed CA with a key of type kt valid for
// validFor.
func NewCAKey(name string, validFor time.Duration, kt KeyType) (*CA, error) {
	key, err := kt.generate()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"fedrec"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

// Pool returns a pool holding the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue signs a certificate for a node called name, valid for server and
// client authentication, with SANs for the loopback addresses, localhost,
// name and hosts (IP addresses or DNS names).
func (ca *CA) Issue(name string, hosts []string, validFor time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"fedrec"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	for _, h := range append([]string{name}, hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && h != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// IssueDevice signs a device certificate with an Ed25519 key: client
// authentication only (it can never serve nor pass as a node), the
// device's client ID as its common name, valid for validFor (keep it
// short: days, renewed by the app's backend).
func (ca *CA) IssueDevice(id string, validFor time.Duration) (tls.Certificate, error) {
	return ca.IssueDeviceKey(id, validFor, Ed25519)
}

// IssueDeviceKey is IssueDevice with a key of type kt.
func (ca *CA) IssueDeviceKey(id string, validFor time.Duration, kt KeyType) (tls.Certificate, error) {
	if err := checkDeviceID(id); err != nil {
		return tls.Certificate{}, err
	}
	key, err := kt.generate()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id, Organization: []string{"fedrec"}, OrganizationalUnit: []string{"device"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// maxDeviceID is wire.MaxIDLen: a device's ID is its ClientID.
const maxDeviceID = 128

func checkDeviceID(id string) error {
	if id == "" || len(id) > maxDeviceID || !utf8.ValidString(id) || strings.ContainsAny(id, "/\\\x00\n\r") || id == "." || id == ".." {
		return fmt.Errorf("pki: device ID %q: want 1..%d bytes of UTF-8 without slashes or line breaks", id, maxDeviceID)
	}
	return nil
}

// Bundle is what a node needs for TLS: its certificate and the cluster's
// CA pool, and for authenticating devices the device CA pool and the
// deny-list's path.
type Bundle struct {
	Cert tls.Certificate
	CA   *x509.CertPool
	// Devices is the device CA pool. When set, the node serves only
	// devices with a valid certificate of it (and nodes); nil leaves the
	// client protocol open to anyone (development only).
	Devices *x509.CertPool
	// Revoked is the path of the deny-list (RevokedFile); "" means none.
	// A missing file is an empty list.
	Revoked string
	// Roster is the path of the device roster (RosterFile, made by
	// CA.IssueRoster); "" or a missing file means none: signed rounds then
	// relay device certificates.
	Roster string
	// TokenKeys verify device tokens (DeviceTokenPubFile), which devices
	// without a certificate (browsers over WebTransport) present; none
	// means such devices are refused when Devices is set.
	TokenKeys []ed25519.PublicKey
	// CACerts and DeviceCACerts are the certificates in CA and Devices
	// (for their expiry); Load and NodeBundle set them.
	CACerts, DeviceCACerts []*x509.Certificate
	// Dir and Name are where Load read the bundle (Reload reads them
	// again); "" for a bundle made in memory.
	Dir, Name string
}

// Files returns the paths of the files a loaded bundle comes from: the
// node's certificate and key, the cluster CA, the device CA and the
// device token keys (which may be absent); nil for a bundle made in
// memory.
func (b *Bundle) Files() []string {
	if b.Dir == "" {
		return nil
	}
	return []string{filepath.Join(b.Dir, CertFile(b.Name)), filepath.Join(b.Dir, KeyFile(b.Name)),
		filepath.Join(b.Dir, CAFile), filepath.Join(b.Dir, DeviceCAFile), filepath.Join(b.Dir, DeviceTokenPubFile)}
}

// Sum returns the SHA-256 of the contents of Files (a missing file
// counts as one that is empty and marked missing): it changes when any
// of them does.
func (b *Bundle) Sum() ([sha256.Size]byte, error) {
	h := sha256.New()
	for _, f := range b.Files() {
		c, err := os.ReadFile(f)
		switch {
		case errors.Is(err, os.ErrNotExist):
			fmt.Fprintf(h, "%s missing\n", f)
			continue
		case err != nil:
			return [sha256.Size]byte{}, err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(c))
		h.Write(c)
	}
	return [sha256.Size]byte(h.Sum(nil)), nil
}

// Reload loads a loaded bundle's files again and checks that the result
// can serve: the node's certificate is valid now and verifies against the
// cluster CA for server and client authentication, and the device CA is
// still there if it was (a node never falls back to serving
// unauthenticated devices).
func (b *Bundle) Reload(now time.Time) (*Bundle, error) {
	if b.Dir == "" {
		return nil, errors.New("pki: the bundle was not loaded from files")
	}
	nb, err := Load(b.Dir, b.Name)
	if err != nil {
		return nil, err
	}
	leaf := nb.Cert.Leaf
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("pki: %s is valid from %s to %s, not now", CertFile(b.Name), leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: nb.CA, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			return nil, fmt.Errorf("pki: %s does not verify against %s: %w", CertFile(b.Name), CAFile, err)
		}
	}
	if b.Devices != nil && nb.Devices == nil {
		return nil, fmt.Errorf("pki: %s is gone: a node that authenticates devices keeps doing so (restart it to change that)", DeviceCAFile)
	}
	if b.Devices == nil && nb.Devices != nil {
		return nil, fmt.Errorf("pki: %s appeared: restart the node to authenticate devices", DeviceCAFile)
	}
	return nb, nil
}

// Expiry returns the earliest NotAfter of certs (the zero time for none):
// a file holding several certificates expires, as far as an operator
// must act, with its first.
func Expiry(certs []*x509.Certificate) time.Time {
	var t time.Time
	for _, c := range certs {
		if t.IsZero() || c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

// NodeBundle issues a node certificate and returns it with the CA pool.
func (ca *CA) NodeBundle(name string, hosts ...string) (*Bundle, error) {
	c, err := ca.Issue(name, hosts, 365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	return &Bundle{Cert: c, CA: ca.Pool(), CACerts: []*x509.Certificate{ca.Cert}}, nil
}

// PeerTLS is mutual TLS between nodes: each side presents its certificate
// and requires the other's, signed by the cluster CA. Used for Raft and
// for joining.
func (b *Bundle) PeerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{b.Cert},
		RootCAs:      b.CA,
		ClientCAs:    b.CA,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// ServerTLS is the server side of the client protocol: the node's
// certificate; a client certificate of the cluster CA is verified if
// presented (nodes joining present theirs; devices present none).
func (b *Bundle) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{b.Cert},
		ClientCAs:    b.CA,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
}

// ClientTLS is a device's side of the client protocol: it trusts the CA.
func ClientTLS(ca *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca}
}

// DeviceTLS is a device's side of the client protocol with its device
// certificate: it trusts the cluster CA and presents cert.
func DeviceTLS(ca *x509.CertPool, cert tls.Certificate) *tls.Config {
	c := ClientTLS(ca)
	c.Certificates = []tls.Certificate{cert}
	return c
}

// WriteDir makes a cluster CA (ECDSA P-256), a device CA (Ed25519) and
// a certificate for each node name into dir (created with mode 0700): ca.pem, ca-key.pem,
// device-ca.pem, device-ca-key.pem, NAME.pem, NAME-key.pem. hosts are
// added as SANs to every node certificate. Existing CAs in dir are
// reused; existing files are otherwise never overwritten.
func WriteDir(dir string, names, hosts []string, validFor time.Duration) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := loadOrMakeCA(dir, CAFile, CAKeyFile, "fedrec development CA", validFor, P256)
	if err != nil {
		return err
	}
	if _, err := loadOrMakeCA(dir, DeviceCAFile, DeviceCAKeyFile, "fedrec development device CA", validFor, Ed25519); err != nil {
		return err
	}
	for _, name := range names {
		c, err := ca.Issue(name, hosts, validFor)
		if err != nil {
			return err
		}
		if err := writePair(dir, CertFile(name), KeyFile(name), c); err != nil {
			return err
		}
	}
	return nil
}

// WriteNodes issues a certificate for each node name with the cluster
// CA in dir, like WriteDir, but into outDir (created with mode 0700),
// whose existing files are never overwritten: the renewal of node
// certificates, which are then copied over the old ones (see
// docs/operations.md, "Rotating certificates").
func WriteNodes(dir, outDir string, names, hosts []string, validFor time.Duration) error {
	ca, err := LoadCA(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return err
	}
	for _, name := range names {
		c, err := ca.Issue(name, hosts, validFor)
		if err != nil {
			return err
		}
		if err := writePair(outDir, CertFile(name), KeyFile(name), c); err != nil {
			return err
		}
	}
	return nil
}

// WriteDeviceCA makes a new device CA with a key of type kt in dir
// (created with mode 0700): device-ca.pem and device-ca-key.pem, which
// must not exist yet. A rotation of the device CA starts here
// (docs/operations.md).
func WriteDeviceCA(dir string, validFor time.Duration, kt KeyType) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{DeviceCAFile, DeviceCAKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("pki: %s exists: a new device CA goes into a directory of its own", filepath.Join(dir, f))
		}
	}
	_, err := loadOrMakeCA(dir, DeviceCAFile, DeviceCAKeyFile, "fedrec device CA", validFor, kt)
	return err
}

// WriteDevice issues a device certificate with a key of type kt for id
// with the device CA in dir and writes it into outDir (created with mode
// 0700) as device-ID.pem and device-ID-key.pem.
func WriteDevice(dir, outDir, id string, validFor time.Duration, kt KeyType) error {
	ca, err := LoadDeviceCA(dir)
	if err != nil {
		return err
	}
	c, err := ca.IssueDeviceKey(id, validFor, kt)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return err
	}
	return writePair(outDir, DeviceCertFile(id), DeviceKeyFile(id), c)
}

// LoadDevice loads device id's certificate and key from dir.
func LoadDevice(dir, id string) (tls.Certificate, error) {
	if err := checkDeviceID(id); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(filepath.Join(dir, DeviceCertFile(id)), filepath.Join(dir, DeviceKeyFile(id)))
}

// LoadDeviceCA loads the device CA's certificate and key from dir (tools
// that simulate many devices issue their certificates in memory).
func LoadDeviceCA(dir string) (*CA, error) { return loadCA(dir, DeviceCAFile, DeviceCAKeyFile) }

// loadOrMakeCA loads the CA in dir, or makes one with a key of type kt
// if there is none (an existing CA keeps its key, whatever its type).
func loadOrMakeCA(dir, certFile, keyFile, name string, validFor time.Duration, kt KeyType) (*CA, error) {
	ca, err := loadCA(dir, certFile, keyFile)
	if !errors.Is(err, os.ErrNotExist) {
		return ca, err
	}
	if ca, err = NewCAKey(name, validFor, kt); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, certFile), "CERTIFICATE", ca.Cert.Raw, 0o644); err != nil {
		return nil, err
	}
	return ca, writeKey(filepath.Join(dir, keyFile), ca.Key)
}

func writePair(dir, certFile, keyFile string, c tls.Certificate) error {
	if err := writePEM(filepath.Join(dir, certFile), "CERTIFICATE", c.Certificate[0], 0o644); err != nil {
		return err
	}
	return writeKey(filepath.Join(dir, keyFile), c.PrivateKey)
}

// writeKey writes an ECDSA key as SEC 1 ("EC PRIVATE KEY", as files
// written before Ed25519 keys were), an Ed25519 key as PKCS #8 ("PRIVATE
// KEY", which has no other encoding); tls.LoadX509KeyPair reads both.
func writeKey(path string, key crypto.PrivateKey) error {
	var (
		typ string
		der []byte
		err error
	)
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		typ = "EC PRIVATE KEY"
		der, err = x509.MarshalECPrivateKey(k)
	case ed25519.PrivateKey:
		typ = "PRIVATE KEY"
		der, err = x509.MarshalPKCS8PrivateKey(k)
	default:
		err = fmt.Errorf("pki: cannot write a %T key", key)
	}
	if err != nil {
		return err
	}
	return writePEM(path, typ, der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LoadCA loads the CA certificate and key from dir.
func LoadCA(dir string) (*CA, error) { return loadCA(dir, CAFile, CAKeyFile) }

func loadCA(dir, certFile, keyFile string) (*CA, error) {
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	if err != nil {
		return nil, err
	}
	key, ok := signer(c.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("pki: %s is neither an ECDSA P-256 nor an Ed25519 key", keyFile)
	}
	return &CA{Cert: c.Leaf, Key: key}, nil
}

// LoadPool loads the CA certificate(s) from dir as a pool.
func LoadPool(dir string) (*x509.CertPool, error) {
	p, _, err := loadPool(dir, CAFile)
	return p, err
}

// LoadDevicePool loads the device CA certificate(s) from dir as a pool.
// The file may hold several certificates: during a rotation of the
// device CA, the old one and the new one.
func LoadDevicePool(dir string) (*x509.CertPool, error) {
	p, _, err := loadPool(dir, DeviceCAFile)
	return p, err
}

// LoadPoolFile loads the PEM certificate(s) of a file as a pool, such as
// a copy of the device CA's certificate given to devices.
func LoadPoolFile(path string) (*x509.CertPool, error) {
	p, _, err := loadPool(filepath.Dir(path), filepath.Base(path))
	return p, err
}

// loadPool reads the PEM certificates of a file as a pool and a list.
func loadPool(dir, file string) (*x509.CertPool, []*x509.Certificate, error) {
	path := filepath.Join(dir, file)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	p := x509.NewCertPool()
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" || len(blk.Headers) != 0 {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("pki: %s: %w", path, err)
		}
		p.AddCert(c)
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, nil, fmt.Errorf("pki: no certificate in %s", path)
	}
	return p, certs, nil
}

// Load loads node name's certificate and the CA pool from dir, and the
// device CA pool and deny-list path if dir holds a device CA.
func Load(dir, name string) (*Bundle, error) {
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile(name)), filepath.Join(dir, KeyFile(name)))
	if err != nil {
		return nil, err
	}
	pool, caCerts, err := loadPool(dir, CAFile)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Cert: c, CA: pool, CACerts: caCerts, Dir: dir, Name: name}
	switch dev, devCerts, err := loadPool(dir, DeviceCAFile); {
	case err == nil:
		for _, d := range devCerts {
			if slices.ContainsFunc(caCerts, d.Equal) {
				// A device certificate would pass as a node's.
				return nil, fmt.Errorf("pki: %s holds the cluster CA; devices need a CA of their own", DeviceCAFile)
			}
		}
		b.Devices, b.DeviceCACerts, b.Revoked, b.Roster = dev, devCerts, filepath.Join(dir, RevokedFile), filepath.Join(dir, RosterFile)
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	switch keys, err := LoadTokenPubs(dir); {
	case err == nil:
		b.TokenKeys = keys
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	return b, nil
}
