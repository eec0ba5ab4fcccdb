package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// operationsSection returns the ```sh blocks of docs/operations.md's
// section title, each as its command lines split into words.
func operationsSection(t *testing.T, title string) [][][]string {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sect, ok := strings.Cut(string(b), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("docs/operations.md has no section %q", title)
	}
	sect, _, _ = strings.Cut(sect, "\n## ")
	var blocks [][][]string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(sect, -1) {
		var cmds [][]string
		for _, line := range strings.Split(m[1], "\n") {
			if w := shellWords(line); len(w) > 0 {
				cmds = append(cmds, w)
			}
		}
		blocks = append(blocks, cmds)
	}
	return blocks
}

// docShell runs the commands of a docs section as a shell would in dir,
// for the few commands the section may use: ./fedrec, cp, cat … >, and
// kill -HUP of the node. Anything else fails the test, so the section
// holds only commands that were checked.
type docShell struct {
	t     *testing.T
	dir   string
	node  *proc
	admin string // the node's real admin address, for 127.0.0.1:9001
}

func (sh *docShell) run(words []string) string {
	t := sh.t
	t.Helper()
	line := strings.Join(words, " ")
	switch {
	case words[0] == "./fedrec":
		args := words[1:]
		for i, a := range args {
			if a == "127.0.0.1:9001" {
				args[i] = sh.admin
			}
		}
		// The commands run here, in the section's working directory.
		var out, errb bytes.Buffer
		wd, _ := os.Getwd()
		if err := os.Chdir(sh.dir); err != nil {
			t.Fatal(err)
		}
		err := run(t.Context(), args, &out, &errb)
		os.Chdir(wd)
		if err != nil {
			t.Fatalf("%s: %v\n%s%s", line, err, out.String(), errb.String())
		}
		return out.String()
	case words[0] == "cp" && len(words) >= 3:
		dst := filepath.Join(sh.dir, words[len(words)-1])
		for _, src := range words[1 : len(words)-1] {
			b, err := os.ReadFile(filepath.Join(sh.dir, src))
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			to := dst
			if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
				to = filepath.Join(dst, filepath.Base(src))
			}
			if err := os.WriteFile(to, b, 0o600); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
		}
	case words[0] == "cat" && len(words) >= 4 && words[len(words)-2] == ">":
		var all []byte
		for _, src := range words[1 : len(words)-2] {
			b, err := os.ReadFile(filepath.Join(sh.dir, src))
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			all = append(all, b...)
		}
		if err := os.WriteFile(filepath.Join(sh.dir, words[len(words)-1]), all, 0o600); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
	case words[0] == "kill" && len(words) == 3 && words[1] == "-HUP" && words[2] == "%1": // n1's job
		if err := sh.node.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
	default:
		t.Fatalf("docs/operations.md: a command the test cannot run: %s", line)
	}
	return ""
}

// The rotation procedures of docs/operations.md, run literally against a
// node process: its renewed certificate is served on new connections
// after SIGHUP (no restart: the same process), and devices of the new
// device CA are served while those of the old one are served only as
// long as the file holds both.
func TestCertRotationDocumented(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	if err := pki.WriteDir(filepath.Join(dir, "certs"), []string{"n1"}, nil, 30*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	raftAddr, clientAddr, adminAddr := freePort(t, "tcp"), freePort(t, "udp"), freePort(t, "tcp")
	p := start(t, fedrecBinary(t), dir, "n1", "coordinator", "--id", "n1", "--data-dir", "n1", "--certs", "certs",
		"--raft-addr", raftAddr, "--client-addr", clientAddr, "--admin-addr", adminAddr, "--admin-token", "tok",
		"--bootstrap", "--items", "20", "--rank", "4", "--heartbeat", "500ms")
	t.Setenv("FEDREC_ADMIN_TOKEN", "tok")
	sh := &docShell{t: t, dir: dir, node: p, admin: adminAddr}
	certs := filepath.Join(dir, "certs")
	pool, err := pki.LoadPool(certs)
	if err != nil {
		t.Fatal(err)
	}
	served := func() string {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", adminAddr, pki.ClientTLS(pool))
		if err != nil {
			return ""
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
	}
	waitFor(t, ctx, "n1's admin API", func() bool { return served() != "" })
	old, err := pki.Load(certs, "n1")
	if err != nil {
		t.Fatal(err)
	}
	oldDevCA, err := pki.LoadDeviceCA(certs)
	if err != nil {
		t.Fatal(err)
	}
	// device reports whether a device of ca is served (GetModel).
	device := func(ca *pki.CA, id string) bool {
		cert, err := ca.IssueDevice(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := wire.Dial(ctx, clientAddr, pki.DeviceTLS(pool, cert))
		if err != nil {
			return false
		}
		defer conn.CloseWithError(0, "")
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return wire.Exchange(cctx, conn, &wire.GetModel{Version: wire.Version}, wire.Limits{}, func(m wire.Message) (bool, error) { return true, nil }) == nil
	}
	waitFor(t, ctx, "n1 to serve a device", func() bool { return device(oldDevCA, "phone-0") })

	blocks := operationsSection(t, "Rotating certificates")
	if len(blocks) != 3 {
		t.Fatalf("Rotating certificates: %d sh blocks, want 3 (node certificate, device CA start, device CA end)", len(blocks))
	}
	// 1. The node's certificate.
	var status string
	for _, w := range blocks[0] {
		if w[0] == "./fedrec" && w[1] == "status" {
			// Run once the node serves the new certificate.
			renewed, err := tls.LoadX509KeyPair(filepath.Join(dir, "renew", pki.CertFile("n1")), filepath.Join(dir, "renew", pki.KeyFile("n1")))
			if err != nil {
				t.Fatal(err)
			}
			serial := renewed.Leaf.SerialNumber.Text(16)
			if serial == old.Cert.Leaf.SerialNumber.Text(16) {
				t.Fatal("the renewed certificate has the old serial")
			}
			waitFor(t, ctx, "n1 to serve the renewed certificate", func() bool { return served() == serial })
			status = sh.run(w)
			if want := fmt.Sprintf("(in 365 days, serial %s)", serial); !strings.Contains(status, want) {
				t.Errorf("fedrec status after the renewal, want %q in:\n%s", want, status)
			}
			continue
		}
		sh.run(w)
	}
	if status == "" {
		t.Error("the node certificate's rotation does not show the new expiry with fedrec status")
	}
	// 2. Both device CAs.
	for _, w := range blocks[1] {
		sh.run(w)
	}
	newDevCA, err := pki.LoadDeviceCA(filepath.Join(dir, "device-ca-2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadDevice(filepath.Join(dir, "devices"), "phone-1"); err != nil {
		t.Errorf("the backend's device certificate: %v", err)
	}
	waitFor(t, ctx, "n1 to serve devices of the new device CA", func() bool { return device(newDevCA, "phone-1") })
	if !device(oldDevCA, "phone-2") {
		t.Error("during the rotation, a device of the old device CA was refused")
	}
	// 3. Only the new one.
	for _, w := range blocks[2] {
		sh.run(w)
	}
	waitFor(t, ctx, "n1 to refuse devices of the old device CA", func() bool { return !device(oldDevCA, "phone-3") })
	if !device(newDevCA, "phone-4") {
		t.Error("after the rotation, a device of the new device CA was refused")
	}
	// All without a restart, and each change loaded once, by SIGHUP or by
	// the node's own look at the files.
	select {
	case <-p.done:
		t.Fatalf("n1 exited: %s", tail(p.read(p.log)))
	default:
	}
	log := p.read(p.log)
	if k := strings.Count(log, "certificates reloaded"); k < 3 {
		t.Errorf("n1 logged %d reloads, want at least 3:\n%s", k, tail(log))
	}
	if !strings.Contains(log, "SIGHUP: reloading the certificates") {
		t.Errorf("n1 never logged a SIGHUP:\n%s", tail(log))
	}
	if strings.Contains(log, "reload failed") {
		t.Errorf("a reload failed:\n%s", tail(log))
	}
}
