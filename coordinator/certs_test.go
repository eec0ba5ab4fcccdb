package coordinator_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// certNode is a node serving everything over TLS (Raft, the client
// protocol, the admin API) from a certificates directory.
type certNode struct {
	n     *coordinator.Node
	dir   string
	ca    *pki.CA
	devCA *pki.CA
}

func newCertNode(t *testing.T, reload time.Duration, opts ...func(dir string, cfg *coordinator.Config)) *certNode {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.WriteDir(dir, []string{"n0"}, nil, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if len(opts) > 0 {
		// Options may need a device token key: make it before Load.
		if _, err := pki.MakeTokenKey(dir); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	devCA, err := pki.LoadDeviceCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pki.Load(dir, "n0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := coordinator.Config{
		ID: "n0", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", ClientAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		AdminToken: "tok", TLS: b, Bootstrap: true, Training: training(), CertReloadInterval: reload,
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(dir, &cfg)
	}
	n, err := coordinator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current() != nil }); err != nil {
		t.Fatal(err)
	}
	return &certNode{n: n, dir: dir, ca: ca, devCA: devCA}
}

// writePEMs replaces file in dir with the PEM blocks, through a rename.
func writePEMs(t *testing.T, dir, file string, blocks ...*pem.Block) {
	t.Helper()
	var b []byte
	for _, blk := range blocks {
		b = append(b, pem.EncodeToMemory(blk)...)
	}
	tmp := filepath.Join(dir, file+".new")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		t.Fatal(err)
	}
}

func certBlock(c *x509.Certificate) *pem.Block { return &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw} }

// renew writes a new certificate and key for n0, signed by the same CA,
// valid for validFor; it returns its serial.
func (c *certNode) renew(t *testing.T, validFor time.Duration) *big.Int {
	t.Helper()
	cert, err := c.ca.Issue("n0", nil, validFor)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	writePEMs(t, c.dir, pki.KeyFile("n0"), &pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	writePEMs(t, c.dir, pki.CertFile("n0"), certBlock(cert.Leaf))
	return cert.Leaf.SerialNumber
}

// served returns the serial of the certificate each TLS server of the
// node presents to a new connection: admin, client protocol, Raft.
func (c *certNode) served(t *testing.T, ctx context.Context) (admin, client, rft *big.Int) {
	t.Helper()
	pool := c.ca.Pool()
	ac, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", c.n.AdminAddr(), pki.ClientTLS(pool))
	if err != nil {
		t.Fatalf("admin handshake: %v", err)
	}
	admin = ac.ConnectionState().PeerCertificates[0].SerialNumber
	ac.Close()
	peer, err := c.ca.NodeBundle("n9")
	if err != nil {
		t.Fatal(err)
	}
	qc, err := wire.Dial(ctx, c.n.ClientAddr(), peer.PeerTLS())
	if err != nil {
		t.Fatalf("client protocol handshake: %v", err)
	}
	client = qc.ConnectionState().TLS.PeerCertificates[0].SerialNumber
	qc.CloseWithError(0, "")
	rc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", c.n.RaftAddr(), peer.PeerTLS())
	if err != nil {
		t.Fatalf("raft handshake: %v", err)
	}
	if err := rc.Handshake(); err != nil {
		t.Fatalf("raft handshake: %v", err)
	}
	rft = rc.ConnectionState().PeerCertificates[0].SerialNumber
	rc.Close()
	return admin, client, rft
}

// metrics scrapes the node's /metrics.
func (c *certNode) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(c.ca.Pool())}, Timeout: 10 * time.Second}
	defer cl.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "https://"+c.n.AdminAddr()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer tok")
	res, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, _ := strconv.ParseFloat(line[i+1:], 64)
		out[line[:i]] = v
	}
	return out
}

// checkInAs sends a check-in as device id with a certificate of ca on a
// new connection and returns the error code (0: served).
func (c *certNode) checkInAs(t *testing.T, ctx context.Context, ca *pki.CA, id string) wire.Code {
	t.Helper()
	cert, err := ca.IssueDevice(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conn := dialAs(t, ctx, c.n.ClientAddr(), pki.DeviceTLS(c.ca.Pool(), cert))
	defer conn.CloseWithError(0, "")
	_, err = exchange(ctx, conn, &wire.GetModel{Version: wire.Version})
	return wire.CodeOf(err)
}

// The node's certificate and the device CA are replaced in their files
// and reloaded without a restart: new handshakes of the admin API, the
// client protocol and Raft present the new certificate, devices of the
// new device CA are served and those of the old one, no longer in the
// file, are refused. The expiry metrics follow; a reload of a broken
// file fails, counted, and keeps the previous certificates.
func TestCertReload(t *testing.T) {
	c := newCertNode(t, -1) // no polling: ReloadCerts only
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	first, _ := pki.Load(c.dir, "n0")
	a, q, r := c.served(t, ctx)
	for _, s := range []*big.Int{a, q, r} {
		if s.Cmp(first.Cert.Leaf.SerialNumber) != 0 {
			t.Fatalf("served serials %x %x %x, want %x", a, q, r, first.Cert.Leaf.SerialNumber)
		}
	}
	if code := c.checkInAs(t, ctx, c.devCA, "phone"); code != 0 {
		t.Fatalf("device of the device CA: code %v", code)
	}
	m := c.metrics(t)
	if got, want := m[`fedrec_cert_expiry_timestamp_seconds{cert="node"}`], float64(first.Cert.Leaf.NotAfter.Unix()); got != want {
		t.Errorf("node expiry metric = %v, want %v", got, want)
	}
	for _, k := range []string{`fedrec_cert_expiry_timestamp_seconds{cert="ca"}`, `fedrec_cert_expiry_timestamp_seconds{cert="device-ca"}`} {
		if m[k] == 0 {
			t.Errorf("no %s", k)
		}
	}

	// Certificate B: same CA, new serial, a later expiry; a new device CA
	// replaces the old one.
	serial := c.renew(t, 60*24*time.Hour)
	newDev, err := pki.NewCA("new device CA", 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writePEMs(t, c.dir, pki.DeviceCAFile, certBlock(newDev.Cert))
	if err := c.n.ReloadCerts(); err != nil {
		t.Fatalf("ReloadCerts: %v", err)
	}
	a, q, r = c.served(t, ctx)
	for _, s := range []*big.Int{a, q, r} {
		if s.Cmp(serial) != 0 {
			t.Errorf("after the reload: served serials admin %x, client %x, raft %x; want %x", a, q, r, serial)
		}
	}
	if code := c.checkInAs(t, ctx, newDev, "phone2"); code != 0 {
		t.Errorf("device of the new device CA: code %v, want served", code)
	}
	if code := c.checkInAs(t, ctx, c.devCA, "phone3"); code != wire.CodeUnauthenticated {
		t.Errorf("device of the removed device CA: code %v, want %v", code, wire.CodeUnauthenticated)
	}
	st := c.n.Status()
	if st.Certs == nil || st.Certs.NodeSerial != serial.Text(16) || st.Certs.DeviceCA == nil || !st.Certs.DeviceCA.Equal(newDev.Cert.NotAfter.Truncate(time.Second)) {
		t.Errorf("status certificates = %+v, want serial %x, device CA expiring %v", st.Certs, serial, newDev.Cert.NotAfter)
	}
	m = c.metrics(t)
	if got := m[`fedrec_cert_expiry_timestamp_seconds{cert="device-ca"}`]; got != float64(newDev.Cert.NotAfter.Unix()) {
		t.Errorf("device CA expiry metric = %v, want %v", got, newDev.Cert.NotAfter.Unix())
	}
	if m["fedrec_cert_reloads_total"] != 1 || m["fedrec_cert_reload_failures_total"] != 0 {
		t.Errorf("reloads %v, failures %v; want 1, 0", m["fedrec_cert_reloads_total"], m["fedrec_cert_reload_failures_total"])
	}

	// During a rotation the device CA file holds both CAs: both are served.
	writePEMs(t, c.dir, pki.DeviceCAFile, certBlock(newDev.Cert), certBlock(c.devCA.Cert))
	if err := c.n.ReloadCerts(); err != nil {
		t.Fatalf("ReloadCerts: %v", err)
	}
	for _, ca := range []*pki.CA{c.devCA, newDev} {
		if code := c.checkInAs(t, ctx, ca, "phone4"); code != 0 {
			t.Errorf("device of %s with both CAs in the file: code %v", ca.Cert.Subject.CommonName, code)
		}
	}
	if got := c.metrics(t)[`fedrec_cert_expiry_timestamp_seconds{cert="device-ca"}`]; got != float64(c.devCA.Cert.NotAfter.Unix()) {
		t.Errorf("device CA expiry with two CAs = %v, want the earlier %v", got, c.devCA.Cert.NotAfter.Unix())
	}

	// Broken files: a key that is not the certificate's, a missing device
	// CA, a certificate of another CA. Each reload fails and the node
	// keeps serving with B.
	other, _ := pki.NewCA("other", time.Hour)
	foreign, _ := other.Issue("n0", nil, time.Hour)
	keyDER, _ := x509.MarshalECPrivateKey(foreign.PrivateKey.(*ecdsa.PrivateKey))
	good, _ := os.ReadFile(filepath.Join(c.dir, pki.CertFile("n0")))
	goodKey, _ := os.ReadFile(filepath.Join(c.dir, pki.KeyFile("n0")))
	writePEMs(t, c.dir, pki.KeyFile("n0"), &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if err := c.n.ReloadCerts(); err == nil {
		t.Error("a key that is not the certificate's was loaded")
	}
	writePEMs(t, c.dir, pki.CertFile("n0"), certBlock(foreign.Leaf))
	if err := c.n.ReloadCerts(); err == nil {
		t.Error("a certificate of another CA was loaded")
	}
	os.WriteFile(filepath.Join(c.dir, pki.CertFile("n0")), good, 0o644)
	os.WriteFile(filepath.Join(c.dir, pki.KeyFile("n0")), goodKey, 0o600)
	os.Remove(filepath.Join(c.dir, pki.DeviceCAFile))
	if err := c.n.ReloadCerts(); err == nil {
		t.Error("the device CA's removal was loaded")
	}
	if code := c.checkInAs(t, ctx, newDev, "phone5"); code != 0 {
		t.Errorf("after failed reloads: device of the device CA: code %v", code)
	}
	if a, _, _ := c.served(t, ctx); a.Cmp(serial) != 0 {
		t.Errorf("after failed reloads: serial %x, want %x", a, serial)
	}
	if m := c.metrics(t); m["fedrec_cert_reload_failures_total"] != 3 || m["fedrec_cert_reloads_total"] != 2 {
		t.Errorf("reloads %v, failures %v; want 2, 3", m["fedrec_cert_reloads_total"], m["fedrec_cert_reload_failures_total"])
	}
}

// Without SIGHUP nor ReloadCerts, a node notices its files changed and
// loads them.
func TestCertReloadPoll(t *testing.T) {
	c := newCertNode(t, 20*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	serial := c.renew(t, 48*time.Hour)
	for {
		if a, q, r := c.served(t, ctx); a.Cmp(serial) == 0 && q.Cmp(serial) == 0 && r.Cmp(serial) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the renewed certificate was never served")
		case <-time.After(50 * time.Millisecond):
		}
	}
	// (A poll between the key's and the certificate's replacement may
	// have failed once; the next one loaded both.)
	if m := c.metrics(t); m["fedrec_cert_reloads_total"] < 1 {
		t.Errorf("reloads %v, want >= 1", m["fedrec_cert_reloads_total"])
	}
}

// The device token keys come from the certificates directory and are
// reloaded with it: after a rotation (device-token.pem replaced by the
// new key, the backend switched to it), the WebTransport listener accepts
// tokens of the new key and refuses those of the old one, without a
// restart, and serves the node's renewed certificate.
func TestCertReloadTokenKeys(t *testing.T) {
	c := newCertNode(t, -1, func(dir string, cfg *coordinator.Config) { cfg.WebTransportAddr = "127.0.0.1:0" })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	url := "https://" + c.n.WebTransportAddr() + wire.WebTransportPath
	oldKey, err := pki.LoadTokenKey(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(key ed25519.PrivateKey, device string) (*big.Int, error) {
		tok, err := wire.IssueToken(key, device, time.Now(), time.Hour, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sess, _, err := wire.DialWebTransport(ctx, url, pki.ClientTLS(c.ca.Pool()), tok)
		if err != nil {
			return nil, err
		}
		defer sess.CloseWithError(0, "")
		return sess.SessionState().ConnectionState.TLS.PeerCertificates[0].SerialNumber, nil
	}
	if _, err := dial(oldKey, "browser-1"); err != nil {
		t.Fatalf("token of the key in the files: %v", err)
	}

	pub, newKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	writePEMs(t, c.dir, pki.DeviceTokenPubFile, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
	serial := c.renew(t, 60*24*time.Hour)
	if err := c.n.ReloadCerts(); err != nil {
		t.Fatalf("ReloadCerts: %v", err)
	}
	got, err := dial(newKey, "browser-2")
	if err != nil {
		t.Fatalf("token of the new key after the reload: %v", err)
	}
	if got.Cmp(serial) != 0 {
		t.Errorf("WebTransport serves certificate %x after the reload, want %x", got, serial)
	}
	if _, err := dial(oldKey, "browser-3"); wire.CodeOf(err) != wire.CodeUnauthenticated {
		t.Errorf("token of the removed key after the reload: %v, want %v", err, wire.CodeUnauthenticated)
	}
}
