package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/fedrec/fedrec/coordinator"
)

const restoreUsage = `usage: fedrec restore --in FILE --data-dir DIR --id ID --raft-addr HOST:PORT [--json]
       fedrec restore --in FILE --config NODE.yaml

Prepares DIR, which must be new or empty, from a backup made by
'fedrec backup': 'fedrec coordinator' started on DIR with the same --id and
--raft-addr is then the only voter of a new cluster holding exactly the
backed-up state (models, optimizer, history, ledger). Start the other nodes
with empty data directories and --join, as for any cluster. A round open
when the backup was taken is abandoned by the new leader, and training
continues from the backed-up model.

The whole file is checked before anything is written: a truncated or
corrupt backup is refused and DIR left as it was. --config reads id,
data_dir and raft_addr (advertise_raft_addr if set) from the node's
configuration file (see docs/configuration.md); the flags override it.

Exit status: 0 restored, 1 failed (bad backup, non-empty directory), 2 usage error.

flags:`

func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "backup file made by 'fedrec backup' (required)")
	configFile := fs.String("config", "", "the node's configuration file, for id, data_dir and raft_addr")
	id := fs.String("id", "", "id of the node that will start on the directory")
	dataDir := fs.String("data-dir", "", "the node's new data directory")
	raftAddr := fs.String("raft-addr", "", "the Raft address the other nodes will dial: the node's --advertise-raft-addr if it has one, else its --raft-addr")
	asJSON := fs.Bool("json", false, "print the backup's header as JSON instead of text")
	fs.Usage = func() {
		fmt.Fprintln(stderr, restoreUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	usageErr := func(msg string) error {
		fmt.Fprintf(stderr, "fedrec restore: %s\n\n", msg)
		fs.Usage()
		return errUsage
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if *configFile != "" {
		cfg, err := resolveConfig(nil, *configFile, os.LookupEnv)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		addr := cfg.RaftAddr
		if cfg.AdvertiseRaftAddr != "" {
			addr = cfg.AdvertiseRaftAddr
		}
		for p, v := range map[*string]string{id: cfg.ID, dataDir: cfg.DataDir, raftAddr: addr} {
			if *p == "" {
				*p = v
			}
		}
	}
	switch {
	case *in == "":
		return usageErr("--in is required")
	case *id == "":
		return usageErr("--id is required")
	case *dataDir == "":
		return usageErr("--data-dir is required")
	case *raftAddr == "":
		return usageErr("--raft-addr is required: the address the node will listen on, which its peers dial")
	}
	f, err := os.Open(*in)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	h, err := coordinator.RestoreBackup(bufio.NewReaderSize(f, 1<<20), *dataDir, *id, *raftAddr)
	if err != nil {
		return fmt.Errorf("restore %s: %w", *in, err)
	}
	if *asJSON {
		return printJSON(stdout, h)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "restored\t%s into %s for node %s (raft %s)\n", *in, *dataDir, *id, *raftAddr)
	printBackupHeader(tw, &h)
	fmt.Fprintf(tw, "next\tfedrec coordinator --id %s --data-dir %s --raft-addr %s …  (no --bootstrap, no --join)\n", *id, *dataDir, *raftAddr)
	return tw.Flush()
}
