// Command fedrec is the one binary of fedrec: simulations for ML engineers,
// coordinator nodes and clients for operators.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"sim":         {"run a federated-learning simulation", runSim},
		"privacy":     {"plan a privacy budget: ε for a noise multiplier, or the noise for a target ε", runPrivacy},
		"coordinator": {"run a coordinator node of a cluster", runCoordinator},
		"status":      {"show a node's view of its cluster through its admin API", runStatus},
		"cluster":     {"list the members, add or remove a node, transfer leadership", runCluster},
		"client":      {"run clients from a data set's users against a cluster", runClient},
		"cert":        {"make development CAs and node certificates; issue and revoke device certificates", runCert},
		"bench":       {"measure a three-node cluster on loopback: round latency, failover, memory", runBench},
		"config":      {"print the configuration a coordinator would run with, and check it", runConfig},
		"backup":      {"save a consistent snapshot of a cluster's replicated state to a file", runBackup},
		"restore":     {"prepare a new node's data directory from a backup", runRestore},
		"recover":     {"make one survivor the only voter when a majority is lost for good", runRecover},
		"training":    {"show the training settings and their changes; change those that may change", runTraining},
		"model":       {"export a committed model to a file a serving system reads, or verify one", runModel},
		"version":     {"print the version of this binary (nodes report theirs in status and fedrec_build_info)", runVersion},
	}
}

// errUsage marks errors already explained by a usage message.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		// Asked for help, given help: exit 0, as Go's flag package does.
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "fedrec:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "fedrec: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return errUsage
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: fedrec <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'fedrec <command> -h' for a command's flags.")
}

// parseFlags gives fs the usage text (followed by the flags), parses args
// and returns the function that reports a usage error: "fedrec NAME: msg",
// the usage, and errUsage. Asked for help, it returns flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, usage string, args []string, stderr io.Writer) (usageErr func(msg string) error, err error) {
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	return func(msg string) error {
		fmt.Fprintf(stderr, "fedrec %s: %s\n\n", fs.Name(), msg)
		fs.Usage()
		return errUsage
	}, nil
}
