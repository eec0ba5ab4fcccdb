package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
)

func runCert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "certs", "directory for ca.pem, ca-key.pem and NAME.pem, NAME-key.pem per node")
	nodes := fs.String("nodes", "a,b,c", "comma-separated node names to issue certificates for")
	hosts := fs.String("hosts", "", "comma-separated extra host names or IP addresses for every node certificate (127.0.0.1, ::1 and localhost are always included)")
	days := fs.Int("days", 365, "validity in days")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fedrec cert [flags]\n\nMakes a development CA (ECDSA P-256) and node certificates, valid for server and client authentication, so that a cluster runs with TLS without openssl. An existing CA in --dir is reused.\n\nflags:")
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
	if err := pki.WriteDir(*dir, names, splitList(*hosts), time.Duration(*days)*24*time.Hour); err != nil {
		return fmt.Errorf("cert: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s/%s and certificates for %s\n", *dir, pki.CAFile, strings.Join(names, ", "))
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
