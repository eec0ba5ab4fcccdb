package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// errNotReady is returned by status when the node answers but is not
// ready: exit code 1, after the status is printed.
var errNotReady = errors.New("not ready")

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	addr := fs.String("admin", "", "admin address of a node (host:port of its --admin-addr; required)")
	token := fs.String("token", "", "operator token (default: $FEDREC_ADMIN_TOKEN)")
	certs := fs.String("certs", "certs", "directory with the cluster CA (ca.pem), as made by 'fedrec cert'")
	asJSON := fs.Bool("json", false, "print the node's /v1/status JSON instead of text")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long (with --wait: waiting included)")
	wait := fs.Bool("wait", false, "ask again until the node is ready (or --timeout passes), then print its status: for scripts, e.g. between the nodes of a rolling restart")
	usageErr, err := parseFlags(fs, "usage: fedrec status --admin HOST:PORT [--token T] [--json] [--wait [--timeout D]]\n\nShows a node's view of its cluster: Raft state, leader, members, model, open round, privacy spent.\nExit status: 0 if the node is ready, 1 if it is not (with --wait: not within --timeout) or cannot be asked, 2 on a usage error.\n\nflags:", args, stderr)
	if err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case *addr == "":
		return usageErr("--admin is required")
	}
	if *token = adminToken(*token); *token == "" {
		return usageErr("--token or FEDREC_ADMIN_TOKEN is required")
	}
	c, err := adminClient(*certs)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	st, err := getStatus(ctx, c, *addr, *token)
	// --wait: not ready yet, or not answering yet (a node starting): ask
	// again until the timeout, then report the last answer.
wait:
	for *wait && (err != nil || !st.Ready) {
		select {
		case <-ctx.Done():
			break wait
		case <-time.After(250 * time.Millisecond):
		}
		next, nerr := getStatus(ctx, c, *addr, *token)
		if nerr != nil && ctx.Err() != nil {
			break // timed out during the request: keep the last answer
		}
		st, err = next, nerr
	}
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
	} else {
		printStatus(stdout, &st)
	}
	if !st.Ready {
		return fmt.Errorf("status: node %s %w: %s", st.Node, errNotReady, st.NotReady)
	}
	return nil
}

// getStatus asks a node for its /v1/status.
func getStatus(ctx context.Context, c *http.Client, addr, token string) (wire.Status, error) {
	body, err := adminGet(ctx, c, addr, wire.PathStatus, token)
	if err != nil {
		return wire.Status{}, err
	}
	st, err := wire.DecodeAdmin[wire.Status](body)
	if err != nil {
		return wire.Status{}, fmt.Errorf("%s answered: %w", addr, err)
	}
	return *st, nil
}

// adminToken is the token from its flag, else $FEDREC_ADMIN_TOKEN (which
// keeps it out of ps), else the read-only $FEDREC_READ_TOKEN, enough for
// the commands that only read.
func adminToken(flag string) string {
	for _, t := range []string{flag, os.Getenv("FEDREC_ADMIN_TOKEN")} {
		if t != "" {
			return t
		}
	}
	return os.Getenv("FEDREC_READ_TOKEN")
}

// adminClient is an HTTPS client for the admin API that trusts the cluster
// CA in the certs directory; CloseIdleConnections releases it.
func adminClient(certs string) (*http.Client, error) {
	pool, err := pki.LoadPool(certs)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(pool)}}, nil
}

// adminGet fetches path from a node's admin API.
func adminGet(ctx context.Context, c *http.Client, addr, path, token string) ([]byte, error) {
	code, body, err := adminDo(ctx, c, http.MethodGet, addr, path, token)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, &answerError{Path: path, Code: code, Body: strings.TrimSpace(string(body))}
	}
	return body, nil
}

// answerError is a node's answer other than 200: the node is reachable,
// it refused (a wrong token is 401) or failed the request.
type answerError struct {
	Path string
	Code int
	Body string
}

func (e *answerError) Error() string {
	return fmt.Sprintf("GET %s: %d %s: %s", e.Path, e.Code, http.StatusText(e.Code), e.Body)
}

// adminDo sends a request without a body to a node's admin API and returns
// the status code and body of its answer.
func adminDo(ctx context.Context, c *http.Client, method, addr, path, token string) (int, []byte, error) {
	base := addr
	if !strings.Contains(base, "://") {
		base = "https://" + base
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return 0, nil, err
	}
	return res.StatusCode, body, nil
}

func printStatus(w io.Writer, st *wire.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	ready := "yes"
	if !st.Ready {
		ready = "no: " + st.NotReady
	}
	fmt.Fprintf(tw, "node\t%s (%s, term %d)\n", st.Node, st.State, st.Term)
	fmt.Fprintf(tw, "ready\t%s\n", ready)
	fmt.Fprintf(tw, "raft\tcommit %d, applied %d", st.Commit, st.Applied)
	if st.State != "leader" {
		fmt.Fprintf(tw, ", leader's commit %d", st.LeaderCommit)
	}
	switch {
	case st.State == "leader":
	case st.LastContact < 0:
		fmt.Fprint(tw, ", never heard from a leader")
	default:
		fmt.Fprintf(tw, ", leader heard %s ago", time.Duration(st.LastContact*float64(time.Second)).Round(time.Millisecond))
	}
	fmt.Fprintln(tw)
	if st.Leader != nil {
		fmt.Fprintf(tw, "leader\t%s, clients %s\n", st.Leader.ID, orDash(st.Leader.ClientAddr))
	} else {
		fmt.Fprintln(tw, "leader\tunknown")
	}
	for i, n := range st.Nodes {
		label := ""
		if i == 0 {
			label = "nodes"
		}
		mark := ""
		if n.Leader {
			mark = " *"
		}
		fmt.Fprintf(tw, "%s\t%s%s\t%s\traft %s\tclients %s\n", label, n.ID, mark, n.Suffrage, n.RaftAddr, orDash(n.ClientAddr))
	}
	if st.Model != nil {
		fmt.Fprintf(tw, "model\tversion %d (round %d), sha256 %s\n", st.Model.Version, st.Model.Round, st.Model.Digest)
	} else {
		fmt.Fprintln(tw, "model\tnone yet")
	}
	if r := st.Round; r != nil {
		fmt.Fprintf(tw, "round\t%d open on version %d, cohort %d, led by %s\n", r.Round, r.Model, r.Cohort, r.Leader)
	} else {
		fmt.Fprintf(tw, "round\tnone open (last %d)\n", st.LastRound)
	}
	eps := "unbounded (a round without noise)"
	if st.Privacy.Epsilon != nil {
		eps = fmt.Sprintf("%.4g", *st.Privacy.Epsilon)
	}
	fmt.Fprintf(tw, "privacy\tε = %s at δ = %g over %d committed rounds\n", eps, st.Privacy.Delta, st.Privacy.Rounds)
	if st.InsecureDevices {
		fmt.Fprintln(tw, "devices\tNOT AUTHENTICATED: no device CA (--insecure-devices), anyone may check in under any client ID")
	}
	if st.Build.Version != "" {
		fmt.Fprintf(tw, "version\t%s\n", st.Build)
	}
	if st.Certs != nil {
		printCerts(tw, st.Certs, time.Now())
	}
}

// certWarning is how close to its expiry a certificate gets a warning in
// 'fedrec status' (and FedrecCertificateExpiring in the alert rules).
const certWarning = 14 * 24 * time.Hour

// printCerts prints the certs line: when each certificate expires, and a
// warning for those that expire within certWarning.
func printCerts(w io.Writer, c *wire.StatusCerts, now time.Time) {
	type cert struct {
		name string
		t    time.Time
	}
	certs := []cert{{"node", c.Node}, {"ca", c.CA}}
	if c.DeviceCA != nil {
		certs = append(certs, cert{"device-ca", *c.DeviceCA})
	}
	var parts, soon []string
	for _, x := range certs {
		if x.t.IsZero() {
			continue
		}
		left := x.t.Sub(now)
		in := fmt.Sprintf("in %d days", int(math.Round(left.Hours()/24)))
		switch {
		case left <= 0:
			in = "EXPIRED"
		case left < 48*time.Hour:
			in = "in " + left.Round(time.Minute).String()
		}
		p := fmt.Sprintf("%s %s (%s", x.name, x.t.UTC().Format(time.DateOnly), in)
		if x.name == "node" && c.NodeSerial != "" {
			p += ", serial " + c.NodeSerial
		}
		parts = append(parts, p+")")
		if left < certWarning {
			soon = append(soon, x.name)
		}
	}
	fmt.Fprintf(w, "certs\texpire: %s\n", strings.Join(parts, ", "))
	if len(soon) > 0 {
		fmt.Fprintf(w, "\tWARNING: %s expire(s) within %d days: rotate (docs/operations.md, Rotating certificates)\n", strings.Join(soon, ", "), int(certWarning.Hours()/24))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
