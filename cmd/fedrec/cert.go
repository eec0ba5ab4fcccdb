package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

func runCert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "device":
			return runCertDevice(args[1:], stdout, stderr)
		case "revoke":
			return runCertRevoke(args[1:], stdout, stderr)
		case "device-ca":
			return runCertDeviceCA(args[1:], stdout, stderr)
		case "token":
			return runCertToken(args[1:], stdout, stderr)
		case "roster":
			return runCertRoster(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("cert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "certs", "directory for ca.pem, ca-key.pem and NAME.pem, NAME-key.pem per node")
	nodes := fs.String("nodes", "a,b,c", "comma-separated node names to issue certificates for")
	hosts := fs.String("hosts", "", "comma-separated extra host names or IP addresses for every node certificate (127.0.0.1, ::1 and localhost are always included)")
	days := fs.Int("days", 365, "validity in days")
	out := fs.String("out", "", "renew: write the node certificates into this directory instead, signed by the existing CA in --dir (which must hold ca.pem and ca-key.pem); copy them over the nodes' old ones, which reload them (docs/operations.md, Rotating certificates)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fedrec cert [flags]\n       fedrec cert --dir DIR --nodes NAMES --out NEWDIR   (renew node certificates)\n       fedrec cert device --id ID [flags]\n       fedrec cert device-ca --dir NEWDIR [--days N]   (a new device CA, for its rotation)\n       fedrec cert token --device ID [--ttl 1h] [flags]\n       fedrec cert revoke --id ID | --serial HEX [flags]\n       fedrec cert roster [--days N] CERT-FILES-OR-DIRS...\n\nMakes a development cluster CA (ECDSA P-256) and node certificates, valid for server and client authentication, so that a cluster runs with TLS without openssl, and a device CA (device-ca.pem, Ed25519; device certificates may have Ed25519 or ECDSA P-256 keys) whose certificates devices must present: nodes load it from their --certs directory. Existing CAs in --dir are reused. In production the device CA's key belongs to the app's backend, which issues short-lived device certificates ('fedrec cert device' does the same for tests); 'fedrec cert revoke' adds to revoked.txt, which nodes reload within seconds. It also makes a device token key (device-token-key.pem, the backend's, and device-token.pem, the public keys nodes accept, reloaded with the certificates) for browsers, which present a device token instead of a certificate; 'fedrec cert token' issues one.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cert: unexpected argument %q", fs.Arg(0))
	}
	if *days < 1 {
		return fmt.Errorf("cert: --days %d, want >= 1", *days)
	}
	names := splitList(*nodes)
	if len(names) == 0 {
		return fmt.Errorf("cert: --nodes is empty")
	}
	if *out != "" {
		if err := pki.WriteNodes(*dir, *out, names, splitList(*hosts), time.Duration(*days)*24*time.Hour); err != nil {
			return fmt.Errorf("cert: %w", err)
		}
		fmt.Fprintf(stdout, "wrote renewed certificates for %s in %s (signed by %s)\n", strings.Join(names, ", "), *out, filepath.Join(*dir, pki.CAFile))
		return nil
	}
	// Say which CAs were reused: an operator adding a node must not
	// wonder whether the cluster's CA was just replaced.
	var made, reused []string
	for _, f := range []string{pki.CAFile, pki.DeviceCAFile} {
		if _, err := os.Stat(filepath.Join(*dir, f)); err == nil {
			reused = append(reused, filepath.Join(*dir, f))
		} else {
			made = append(made, filepath.Join(*dir, f))
		}
	}
	if err := pki.WriteDir(*dir, names, splitList(*hosts), time.Duration(*days)*24*time.Hour); err != nil {
		return fmt.Errorf("cert: %w", err)
	}
	if ok, err := pki.MakeTokenKey(*dir); err != nil {
		return fmt.Errorf("cert: %w", err)
	} else if ok {
		made = append(made, filepath.Join(*dir, pki.DeviceTokenKeyFile))
	}
	if len(made) > 0 {
		fmt.Fprintf(stdout, "wrote %s (new CA)\n", strings.Join(made, ", "))
	}
	if len(reused) > 0 {
		fmt.Fprintf(stdout, "reused %s (existing CA)\n", strings.Join(reused, ", "))
	}
	fmt.Fprintf(stdout, "wrote certificates for %s in %s\n", strings.Join(names, ", "), *dir)
	return nil
}

// runCertDevice issues a device certificate with the device CA.
func runCertDevice(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cert device", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "certs", "directory holding device-ca.pem and device-ca-key.pem")
	out := fs.String("out", "", "directory for device-ID.pem and device-ID-key.pem (default --dir)")
	id := fs.String("id", "", "the device's client ID (the certificate's common name); required")
	days := fs.Int("days", 7, "validity in days: keep it short, devices renew")
	key := fs.String("key", string(pki.Ed25519), "the device key's type: ed25519 or p256 (both are accepted everywhere; ed25519 is cheaper in a signed secure round)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cert device: unexpected argument %q", fs.Arg(0))
	}
	if *days < 1 {
		return fmt.Errorf("cert device: --days %d, want >= 1", *days)
	}
	kt, err := pki.ParseKeyType(*key)
	if err != nil {
		return fmt.Errorf("cert device: --key: %w", err)
	}
	if *out == "" {
		*out = *dir
	}
	if err := pki.WriteDevice(*dir, *out, *id, time.Duration(*days)*24*time.Hour, kt); err != nil {
		return fmt.Errorf("cert device: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s/%s and %s\n", *out, pki.DeviceCertFile(*id), pki.DeviceKeyFile(*id))
	return nil
}

// runCertDeviceCA makes a new device CA in a directory of its own: the
// first step of the device CA's rotation.
func runCertDeviceCA(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cert device-ca", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "new directory for device-ca.pem and device-ca-key.pem (required; must not hold a device CA)")
	days := fs.Int("days", 365, "validity in days")
	key := fs.String("key", string(pki.Ed25519), "the device CA key's type: ed25519 or p256")
	if err := fs.Parse(args); err != nil {
		return err
	}
	kt, err := pki.ParseKeyType(*key)
	switch {
	case err != nil:
		return fmt.Errorf("cert device-ca: --key: %w", err)
	case fs.NArg() > 0:
		return fmt.Errorf("cert device-ca: unexpected argument %q", fs.Arg(0))
	case *dir == "":
		return fmt.Errorf("cert device-ca: --dir is required")
	case *days < 1:
		return fmt.Errorf("cert device-ca: --days %d, want >= 1", *days)
	}
	if err := pki.WriteDeviceCA(*dir, time.Duration(*days)*24*time.Hour, kt); err != nil {
		return fmt.Errorf("cert device-ca: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s and %s (new device CA)\n", filepath.Join(*dir, pki.DeviceCAFile), filepath.Join(*dir, pki.DeviceCAKeyFile))
	return nil
}

// runCertRevoke adds devices or certificates to the deny-list.
func runCertRevoke(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cert revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "certs", "directory holding the nodes' revoked.txt")
	id := fs.String("id", "", "revoke every certificate of this client ID")
	serial := fs.String("serial", "", "revoke the certificate with this serial number (hex)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var entries []string
	if *id != "" {
		entries = append(entries, "id:"+*id)
	}
	if *serial != "" {
		entries = append(entries, "serial:"+*serial)
	}
	if len(entries) == 0 || fs.NArg() > 0 {
		return fmt.Errorf("cert revoke: want --id or --serial")
	}
	if err := pki.AppendRevoked(*dir, entries...); err != nil {
		return fmt.Errorf("cert revoke: %w", err)
	}
	fmt.Fprintf(stdout, "revoked %s in %s/%s\n", strings.Join(entries, ", "), *dir, pki.RevokedFile)
	return nil
}

// runCertRoster issues the device roster: what lets devices of a signed
// secure round check their peers with hashes instead of certificate chains.
func runCertRoster(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cert roster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "certs", "directory holding device-ca.pem, device-ca-key.pem and revoked.txt; the roster is written there as "+pki.RosterFile)
	days := fs.Int("days", 1, "validity in days: issue a new roster at least this often, and whenever devices are added or revoked")
	epoch := fs.Uint64("epoch", 0, "the roster's number, increasing (0: the current Unix time)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fedrec cert roster [flags] CERT-FILES-OR-DIRS...\n\nLists the device certificates in the given PEM files (a directory stands for its device-*.pem) that the device CA signed, valid now and not revoked, in a Merkle tree whose root the device CA signs (a roster certificate), and writes it to DIR/"+pki.RosterFile+", which nodes reading DIR load within seconds. In a signed secure round a node then relays, for each listed device, its roster entry and the entry's path instead of its certificate, which peers check with a few hashes instead of a signature (docs/security.md).\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() == 0:
		return fmt.Errorf("cert roster: name the device certificates' files or directories")
	case *days < 1:
		return fmt.Errorf("cert roster: --days %d, want >= 1", *days)
	}
	if *epoch == 0 {
		*epoch = uint64(time.Now().Unix())
	}
	n, skipped, err := pki.WriteRoster(*dir, fs.Args(), *epoch, time.Duration(*days)*24*time.Hour)
	for _, s := range skipped {
		fmt.Fprintf(stderr, "left out %s\n", s)
	}
	if err != nil {
		return fmt.Errorf("cert roster: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: roster %d of %d devices, valid %d days\n", filepath.Join(*dir, pki.RosterFile), *epoch, n, *days)
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// runCertToken issues a device token with the token key, for a browser
// (WebTransport), and prints its text form.
func runCertToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cert token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "certs", "directory holding device-token-key.pem")
	device := fs.String("device", "", "the device's client ID; required")
	ttl := fs.Duration("ttl", time.Hour, fmt.Sprintf("lifetime, at most %v: keep it short, the shop's backend issues a new one per session", wire.MaxTokenTTL))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *device == "" {
		return fmt.Errorf("cert token: want --device ID")
	}
	key, err := pki.LoadTokenKey(*dir)
	if err != nil {
		return fmt.Errorf("cert token: %w", err)
	}
	tok, err := wire.IssueToken(key, *device, time.Now(), *ttl, rand.Reader)
	if err != nil {
		return fmt.Errorf("cert token: %w", err)
	}
	fmt.Fprintln(stdout, wire.TokenText(tok))
	return nil
}
