package pki

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Revoked is a deny-list of devices: whole device IDs (every certificate
// ever issued for them) and single certificates by serial number.
//
// Its text form (RevokedFile) has one entry a line; blank lines and lines
// starting with # are ignored:
//
//	id:<client ID>
//	serial:<certificate serial number in hex>
//
// An entry need only stay until the certificates it names expire, which is
// why device certificates are short-lived.
type Revoked struct {
	ids     map[string]bool
	serials map[string]bool // lower-case hex, no leading zeros
}

// ParseRevoked reads a deny-list.
func ParseRevoked(r io.Reader) (*Revoked, error) {
	v := &Revoked{ids: map[string]bool{}, serials: map[string]bool{}}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		e := strings.TrimSpace(sc.Text())
		if e == "" || strings.HasPrefix(e, "#") {
			continue
		}
		kind, val, _ := strings.Cut(e, ":")
		switch kind {
		case "id":
			if err := checkDeviceID(val); err != nil {
				return nil, fmt.Errorf("pki: revoked line %d: %w", line, err)
			}
			v.ids[val] = true
		case "serial":
			n, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ToLower(val), "0x"), 16)
			if !ok || n.Sign() < 0 {
				return nil, fmt.Errorf("pki: revoked line %d: serial %q is not hex", line, val)
			}
			v.serials[n.Text(16)] = true
		default:
			return nil, fmt.Errorf("pki: revoked line %d: want id:<client ID> or serial:<hex>, got %q", line, e)
		}
	}
	return v, sc.Err()
}

// Len returns the number of entries.
func (v *Revoked) Len() int {
	if v == nil {
		return 0
	}
	return len(v.ids) + len(v.serials)
}

// Has reports whether cert, a certificate for device id, is revoked. A nil
// list revokes nothing.
func (v *Revoked) Has(cert *x509.Certificate, id string) bool {
	if v == nil {
		return false
	}
	return v.ids[id] || v.serials[cert.SerialNumber.Text(16)]
}

// AppendRevoked appends entries ("id:X" or "serial:HEX", checked) to the
// deny-list in dir, creating it if needed. Coordinators reading the file
// pick the change up within seconds.
func AppendRevoked(dir string, entries ...string) error {
	if _, err := ParseRevoked(strings.NewReader(strings.Join(entries, "\n"))); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, RevokedFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, err := fmt.Fprintln(f, strings.TrimSpace(e)); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// DeviceSource gives tools that act as devices (fedrec client, bench, sim
// --coordinators) the TLS configuration of each device ID.
type DeviceSource struct {
	pool     *x509.CertPool
	ca       *CA // nil: certificates are loaded from dir
	dir      string
	validFor time.Duration
}

// Devices returns the device source of a certificate directory: with the
// device CA's key in dir (development, simulations) it issues each device
// a certificate in memory, valid for validFor; else it loads
// device-ID.pem and device-ID-key.pem from dir; with neither (a cluster
// whose nodes have no device CA) devices present no certificate.
func Devices(dir string, validFor time.Duration) (*DeviceSource, error) {
	pool, err := LoadPool(dir)
	if err != nil {
		return nil, err
	}
	s := &DeviceSource{pool: pool, dir: dir, validFor: validFor}
	if s.ca, err = LoadDeviceCA(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return s, nil
}

// TLS returns device id's TLS configuration.
func (s *DeviceSource) TLS(id string) (*tls.Config, error) {
	if s.ca != nil {
		c, err := s.ca.IssueDevice(id, s.validFor)
		if err != nil {
			return nil, err
		}
		return DeviceTLS(s.pool, c), nil
	}
	c, err := LoadDevice(s.dir, id)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(s.dir, DeviceCAFile)); err == nil {
			return nil, fmt.Errorf("pki: no certificate for device %q in %s (fedrec cert device --id %s)", id, s.dir, id)
		}
		return ClientTLS(s.pool), nil
	}
	if err != nil {
		return nil, err
	}
	return DeviceTLS(s.pool, c), nil
}
