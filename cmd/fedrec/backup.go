package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/wire"
)

const backupUsage = `usage: fedrec backup --admin HOST:PORT --out FILE [--token T] [--json]

Saves a consistent snapshot of the cluster's whole replicated state (training
configuration, retained models, optimizer moments, round history, privacy
ledger, open round) to FILE, through a node's admin API (GET /v1/backup).
Any node will do; ask the leader for the newest state. The file is written
to FILE.tmp, checked (size, SHA-256, every record, the model digest), then
renamed: FILE is either a whole backup or untouched.

Restore it into a new cluster with 'fedrec restore'.

Exit status: 0 saved, 1 failed, 2 usage error.

flags:`

func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	addr := fs.String("admin", "", "admin address of a node (host:port of its --admin-addr; required)")
	out := fs.String("out", "", "file to write (required; replaced atomically)")
	token := fs.String("token", "", "operator token (default: $FEDREC_ADMIN_TOKEN)")
	certs := fs.String("certs", "certs", "directory with the cluster CA (ca.pem), as made by 'fedrec cert'")
	asJSON := fs.Bool("json", false, "print the backup's header as JSON instead of text")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	usageErr, err := parseFlags(fs, backupUsage, args, stderr)
	if err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case *addr == "":
		return usageErr("--admin is required")
	case *out == "":
		return usageErr("--out is required")
	}
	if *token = adminToken(*token); *token == "" {
		return usageErr("--token or FEDREC_ADMIN_TOKEN is required")
	}
	c, err := adminClient(*certs)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	res, err := adminStream(ctx, c, *addr, wire.PathBackup, *token)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer res.Body.Close()
	var h coordinator.BackupHeader
	size, err := writeAtomic(*out, func(f *os.File) error {
		if _, err := io.Copy(f, res.Body); err != nil {
			return fmt.Errorf("download: %w", err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		h, _, err = coordinator.ReadBackup(f)
		return err
	})
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if *asJSON {
		return printJSON(stdout, h)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "wrote\t%s (%d bytes)\n", *out, size)
	printBackupHeader(tw, &h)
	return tw.Flush()
}

func printBackupHeader(w io.Writer, h *coordinator.BackupHeader) {
	fmt.Fprintf(w, "from\tnode %s, raft index %d, term %d, %s\n", h.Node, h.Index, h.Term, h.Created.Format(time.RFC3339))
	if h.ModelVersion == 0 {
		fmt.Fprintln(w, "model\tnone yet")
	} else {
		fmt.Fprintf(w, "model\tversion %d (round %d), sha256 %s\n", h.ModelVersion, h.ModelRound, h.ModelDigest)
	}
	fmt.Fprintf(w, "rounds\t%d opened\n", h.LastRound)
	fmt.Fprintf(w, "snapshot\tversion %d, %d bytes, sha256 %s\n", h.SnapshotVersion, h.SnapshotSize, h.SnapshotSHA256)
}

// adminStream GETs path from a node's admin API and returns the answer
// for the caller to read; any status but 200 is an error.
func adminStream(ctx context.Context, c *http.Client, addr, path, token string) (*http.Response, error) {
	base := addr
	if !strings.Contains(base, "://") {
		base = "https://" + base
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		defer res.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		return nil, fmt.Errorf("GET %s: %d %s: %s", path, res.StatusCode, http.StatusText(res.StatusCode), strings.TrimSpace(string(body)))
	}
	return res, nil
}

// writeAtomic creates path.tmp, lets fill write and check it, syncs it and
// renames it to path; on any failure it removes path.tmp and leaves path
// alone. It returns the file's size.
func writeAtomic(path string, fill func(f *os.File) error) (size int64, err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = fill(f); err != nil {
		return 0, err
	}
	if size, err = f.Seek(0, io.SeekEnd); err != nil {
		return 0, err
	}
	if err = f.Sync(); err != nil {
		return 0, err
	}
	if err = f.Close(); err != nil {
		return 0, err
	}
	if err = os.Rename(tmp, path); err != nil {
		return 0, err
	}
	// The rename is durable once the directory is synced.
	if d, derr := os.Open(filepath.Dir(path)); derr == nil {
		d.Sync()
		d.Close()
	}
	return size, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
