package main

import (
	"bufio"
	"context"
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
	in := fs.String("in", "", "backup file made by 'fedrec backup' (required)")
	var nd nodeDir
	nd.flags(fs, "the node's new data directory")
	asJSON := fs.Bool("json", false, "print the backup's header as JSON instead of text")
	usageErr, err := parseFlags(fs, restoreUsage, args, stderr)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if *in == "" {
		return usageErr("--in is required")
	}
	if err := nd.resolve("restore", usageErr); err != nil {
		return err
	}
	f, err := os.Open(*in)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	h, err := coordinator.RestoreBackup(bufio.NewReaderSize(f, 1<<20), nd.dataDir, nd.id, nd.raftAddr)
	if err != nil {
		return fmt.Errorf("restore %s: %w", *in, err)
	}
	if *asJSON {
		return printJSON(stdout, h)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "restored\t%s into %s for node %s (raft %s)\n", *in, nd.dataDir, nd.id, nd.raftAddr)
	printBackupHeader(tw, &h)
	fmt.Fprintf(tw, "next\t%s\n", nd.next())
	return tw.Flush()
}

// nodeDir names the data directory of a node that is not running, and the
// id and Raft address it will start with, from flags or its configuration
// file: restore and recover both prepare such a directory.
type nodeDir struct {
	configFile, id, dataDir, raftAddr string
}

func (d *nodeDir) flags(fs *flag.FlagSet, dirUsage string) {
	fs.StringVar(&d.configFile, "config", "", "the node's configuration file, for id, data_dir and raft_addr")
	fs.StringVar(&d.id, "id", "", "id of the node that will start on the directory")
	fs.StringVar(&d.dataDir, "data-dir", "", dirUsage)
	fs.StringVar(&d.raftAddr, "raft-addr", "", "the Raft address the other nodes will dial: the node's --advertise-raft-addr if it has one, else its --raft-addr")
}

// resolve fills what the flags left empty from the configuration file and
// refuses what is still missing through usageErr.
func (d *nodeDir) resolve(cmd string, usageErr func(string) error) error {
	if d.configFile != "" {
		cfg, err := resolveConfig(nil, d.configFile, os.LookupEnv)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		addr := cfg.RaftAddr
		if cfg.AdvertiseRaftAddr != "" {
			addr = cfg.AdvertiseRaftAddr
		}
		for p, v := range map[*string]string{&d.id: cfg.ID, &d.dataDir: cfg.DataDir, &d.raftAddr: addr} {
			if *p == "" {
				*p = v
			}
		}
	}
	switch {
	case d.id == "":
		return usageErr("--id is required")
	case d.dataDir == "":
		return usageErr("--data-dir is required")
	case d.raftAddr == "":
		return usageErr("--raft-addr is required: the address the node will listen on, which its peers dial")
	}
	return nil
}

// next is the command that starts the node on the prepared directory.
func (d *nodeDir) next() string {
	return fmt.Sprintf("fedrec coordinator --id %s --data-dir %s --raft-addr %s …  (no --bootstrap, no --join)", d.id, d.dataDir, d.raftAddr)
}
