package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/fedrec/fedrec/coordinator"
)

const recoverUsage = `usage: fedrec recover --data-dir DIR --id ID --raft-addr HOST:PORT [--json]
       fedrec recover --config NODE.yaml

Disaster recovery when a cluster has lost a majority of its voters for good
and no backup is at hand (etcd's --force-new-cluster, Consul's peers.json).
Run it on the data directory of ONE stopped survivor: it rewrites the
directory's membership so that 'fedrec coordinator' started on it with the
same --id and --raft-addr is the only voter of a cluster holding everything
in that directory (models, optimizer, history, privacy ledger). Start the
other nodes with empty data directories and --join, as for any cluster.

Stop every surviving node first, and pick the one with the highest applied
index ('fedrec status' on each, or the last one the logs show): entries the
old cluster had not committed yet are kept too, entries only the lost nodes
had are lost. Never start the other survivors on their old directories
again: they would still believe in the old membership.

Exit status: 0 recovered, 1 failed (running node, no state), 2 usage error.

flags:`

func runRecover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("recover", flag.ContinueOnError)
	var nd nodeDir
	nd.flags(fs, "the stopped survivor's data directory")
	asJSON := fs.Bool("json", false, "print what was recovered as JSON")
	usageErr, err := parseFlags(fs, recoverUsage, args, stderr)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if err := nd.resolve("recover", usageErr); err != nil {
		return err
	}
	rec, err := coordinator.RecoverAlone(nd.dataDir, nd.id, nd.raftAddr)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, rec)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "recovered\t%s for node %s (raft %s), the only voter\n", nd.dataDir, nd.id, nd.raftAddr)
	fmt.Fprintf(tw, "state\tlog index %d, model version %d, last round %d, %d rounds in the privacy ledger\n", rec.Index, rec.ModelVersion, rec.LastRound, rec.LedgerRounds)
	if len(rec.Dropped) > 0 {
		fmt.Fprintf(tw, "dropped\t%s (start them again only with empty data directories and --join)\n", strings.Join(rec.Dropped, ", "))
	}
	fmt.Fprintf(tw, "next\t%s\n", nd.next())
	return tw.Flush()
}
