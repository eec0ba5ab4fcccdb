package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

const trainingUsage = `usage: fedrec training --admin HOST:PORT[,HOST:PORT…] [--json]
       fedrec training set --admin … --reason TEXT [--operator NAME] SETTING…

Shows the cluster's training settings and every change operators made
(who, when, why, after which round), or changes the settings that may
change while the cluster runs, from the next round on: the cohort size,
the minimum number of survivors, the check-in window, the round and
secure-aggregation deadlines, and the noise multiplier of the rounds
left (not on a cluster without noise). The change is replicated through
Raft like a round; 'set' needs the operator token and asks the addresses
in turn until the leader answers.

Exit status: 0 done, 1 refused or failed, 2 usage error.

flags:`

// defaultOperator names who runs the command for the audit trail: $USER,
// else $LOGNAME, else the account's name (a shell in a container, cron or
// a systemd unit often has neither variable).
func defaultOperator() string {
	for _, v := range []string{"USER", "LOGNAME"} {
		if s := os.Getenv(v); s != "" {
			return s
		}
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return ""
}

func runTraining(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	set := len(args) > 0 && args[0] == "set"
	if set {
		args = args[1:]
	}
	fs := flag.NewFlagSet("training", flag.ContinueOnError)
	addrs := fs.String("admin", "", "comma-separated admin addresses of the nodes (required)")
	token := fs.String("token", "", "operator token (default: $FEDREC_ADMIN_TOKEN; $FEDREC_READ_TOKEN is enough to show)")
	certs := fs.String("certs", "certs", "directory with the cluster CA (ca.pem)")
	asJSON := fs.Bool("json", false, "print the /v1/training JSON")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	reason := fs.String("reason", "", "set: why (required; kept in the audit trail)")
	operator := fs.String("operator", defaultOperator(), "set: who (kept in the audit trail; default $USER, else the login name)")
	clients := fs.Int("clients-per-round", 0, "set: survivors wanted per round")
	minClients := fs.Int("min-clients", 0, "set: abandon a round with fewer survivors")
	window := fs.Duration("checkin-window", 0, "set: how long the leader gathers check-ins")
	roundTimeout := fs.Duration("round-timeout", 0, "set: deadline for uploads after selection")
	phase := fs.Duration("secagg-phase", 0, "set: deadline of each secure-aggregation phase after the first")
	noise := fs.Float64("noise-multiplier", 0, "set: noise multiplier of the rounds from now on")
	usageErr, err := parseFlags(fs, trainingUsage, args, stderr)
	if err != nil {
		return err
	}
	q := url.Values{}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "clients-per-round", "min-clients", "checkin-window", "round-timeout", "secagg-phase", "noise-multiplier":
			q.Set(strings.ReplaceAll(f.Name, "-", "_"), f.Value.String())
		}
	})
	nodes := splitList(*addrs)
	switch {
	case fs.NArg() > 0:
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case len(nodes) == 0:
		return usageErr("--admin is required")
	case !set && (len(q) > 0 || *reason != ""):
		return usageErr("settings and --reason are for 'fedrec training set'")
	case set && len(q) == 0:
		return usageErr("set: name at least one setting to change")
	case set && *reason == "":
		return usageErr("set: --reason is required: it goes into the audit trail")
	case *clients < 0 || *minClients < 0 || *window < 0 || *roundTimeout < 0 || *phase < 0 || *noise < 0:
		return usageErr("set: values must be positive")
	}
	if *token = adminToken(*token); *token == "" {
		return usageErr("--token or FEDREC_ADMIN_TOKEN is required")
	}
	c, err := adminClient(*certs)
	if err != nil {
		return fmt.Errorf("training: %w", err)
	}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	method, path := http.MethodGet, wire.PathTraining
	if set {
		q.Set("reason", *reason)
		q.Set("operator", *operator)
		method, path = http.MethodPost, path+"?"+q.Encode()
	}
	addr, body, err := askLeader(ctx, c, nodes, method, path, *token)
	if err != nil {
		return fmt.Errorf("training: %w", err)
	}
	doc, err := wire.DecodeAdmin[wire.TrainingDoc](body)
	if err != nil {
		return fmt.Errorf("training: %s answered: %w", addr, err)
	}
	if *asJSON {
		return printJSON(stdout, doc)
	}
	if set {
		fmt.Fprintln(stdout, "changed; the next round uses the new settings")
	}
	return printTraining(stdout, doc)
}

func printTraining(w io.Writer, doc *wire.TrainingDoc) error {
	s := doc.Settings
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "model\t%s, %d items, rank %d\n", s.Objective, s.Items, s.Rank)
	noise := s.Noise
	if s.Noise != "off" {
		noise += ", multiplier " + strconv.FormatFloat(s.NoiseMultiplier, 'g', -1, 64)
	}
	fmt.Fprintf(tw, "privacy\tclip %g, population %d, noise %s, secagg %v\n", s.Clip, s.Population, noise, s.SecAgg)
	fmt.Fprintf(tw, "rounds\t%d clients, at least %d, check-in window %s, round timeout %s", s.ClientsPerRound, s.MinClients, s.CheckInWindow, s.RoundTimeout)
	if s.SecAggPhase != "" {
		fmt.Fprintf(tw, ", secagg phase %s", s.SecAggPhase)
	}
	fmt.Fprintln(tw)
	if len(doc.Changes) == 0 {
		fmt.Fprintln(tw, "changes\tnone since the cluster was founded")
	}
	for i, c := range doc.Changes {
		label := ""
		if i == 0 {
			label = "changes"
		}
		keys := make([]string, 0, len(c.Set))
		for k := range c.Set {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var set []string
		for _, k := range keys {
			set = append(set, fmt.Sprintf("%s=%v", k, c.Set[k]))
		}
		fmt.Fprintf(tw, "%s\t%s after round %d by %s: %s (%s)\n", label, c.Time.Format(time.RFC3339), c.AfterRound, c.Operator, strings.Join(set, " "), c.Reason)
	}
	return tw.Flush()
}
