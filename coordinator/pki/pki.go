package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
	"time"
)

// File names inside a certificate directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
)

// CertFile and KeyFile name a node's certificate and key files.
func CertFile(name string) string { return name + ".pem" }
func KeyFile(name string) string  { return name + "-key.pem" }

// CA is a certificate authority that can sign node certificates.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed CA valid for validFor.
func NewCA(name string, validFor time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
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

// Bundle is what a node needs for TLS: its certificate and the cluster's
// CA pool.
type Bundle struct {
	Cert tls.Certificate
	CA   *x509.CertPool
}

// NodeBundle issues a node certificate and returns it with the CA pool.
func (ca *CA) NodeBundle(name string, hosts ...string) (*Bundle, error) {
	c, err := ca.Issue(name, hosts, 365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	return &Bundle{Cert: c, CA: ca.Pool()}, nil
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

// WriteDir makes a CA and a certificate for each node name into dir
// (created with mode 0700): ca.pem, ca-key.pem, NAME.pem, NAME-key.pem.
// hosts are added as SANs to every node certificate. An existing CA in dir
// is reused; existing files are otherwise never overwritten.
func WriteDir(dir string, names, hosts []string, validFor time.Duration) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := LoadCA(dir)
	if errors.Is(err, os.ErrNotExist) {
		if ca, err = NewCA("fedrec development CA", validFor); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, CAFile), "CERTIFICATE", ca.Cert.Raw, 0o644); err != nil {
			return err
		}
		der, err := x509.MarshalECPrivateKey(ca.Key)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, CAKeyFile), "EC PRIVATE KEY", der, 0o600); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	for _, name := range names {
		c, err := ca.Issue(name, hosts, validFor)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, CertFile(name)), "CERTIFICATE", c.Certificate[0], 0o644); err != nil {
			return err
		}
		der, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, KeyFile(name)), "EC PRIVATE KEY", der, 0o600); err != nil {
			return err
		}
	}
	return nil
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
func LoadCA(dir string) (*CA, error) {
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	key, ok := c.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("pki: %s is not an ECDSA key", CAKeyFile)
	}
	return &CA{Cert: c.Leaf, Key: key}, nil
}

// LoadPool loads the CA certificate from dir as a pool.
func LoadPool(dir string) (*x509.CertPool, error) {
	b, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("pki: no certificate in %s", filepath.Join(dir, CAFile))
	}
	return p, nil
}

// Load loads node name's certificate and the CA pool from dir.
func Load(dir, name string) (*Bundle, error) {
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile(name)), filepath.Join(dir, KeyFile(name)))
	if err != nil {
		return nil, err
	}
	pool, err := LoadPool(dir)
	if err != nil {
		return nil, err
	}
	return &Bundle{Cert: c, CA: pool}, nil
}
