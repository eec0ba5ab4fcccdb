package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fedrec/fedrec/coordinator/wire"
)

const clusterUsage = `usage: fedrec cluster <list|health|join ID --raft-addr HOST:PORT [--client-addr HOST:PORT]|remove ID|transfer-leadership [ID]> --admin HOST:PORT[,HOST:PORT…] [--token T] [--json]

Changes and shows the Raft membership of a cluster through the admin API.

  list                     the members: id, suffrage, Raft and client addresses, leader
  health                   ask every --admin address for its status: which voters
                           answer, whether they agree on a leader, whether a quorum
                           holds (exit 0 only if it does and every answer is ready)
  remove ID                take node ID out of the cluster (leader only; removing a
                           node that is not a member succeeds)
  transfer-leadership [ID] hand leadership to node ID, or to the most up-to-date voter
  join ID                  add node ID as a voter (leader only): a node started
                           with neither --bootstrap nor --join, which waits to be
                           added; --raft-addr is the address it gave --raft-addr,
                           --client-addr its client address (the one clients are
                           told). Joining again with the same addresses is a no-op.
                           (A node started with --join CLIENT-ADDR adds itself.)

--admin takes one node or a comma-separated list. A leader-only command
tries them in order and stops at the leader; a follower answers with the
leader's id and admin address (registered through the membership), which
is asked next, so one address of any member is enough. health also asks
the members the answers name.
While the nodes know no leader, or leadership moves as they are asked, it
asks them all again until --timeout.

Exit status: 0 done, 1 failed or not reachable, 2 usage error.

flags:`

func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("admin", "", "admin addresses of one or more nodes, comma-separated (required)")
	token := fs.String("token", "", "operator token (default: $FEDREC_ADMIN_TOKEN)")
	certs := fs.String("certs", "certs", "directory with the cluster CA (ca.pem), as made by 'fedrec cert'")
	asJSON := fs.Bool("json", false, "print the answer's JSON (the /v1/cluster document) instead of text")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	raftAddr := fs.String("raft-addr", "", "join: the new node's Raft address, HOST:PORT")
	clientAddr := fs.String("client-addr", "", "join: the new node's client (QUIC) address, HOST:PORT, as clients reach it")
	fs.Usage = func() {
		fmt.Fprintln(stderr, clusterUsage)
		fs.PrintDefaults()
	}
	usageErr := func(msg string) error {
		fmt.Fprintf(stderr, "fedrec cluster: %s\n\n", msg)
		fs.Usage()
		return errUsage
	}
	if len(args) == 0 {
		return usageErr("a subcommand is required")
	}
	sub, args := args[0], args[1:]
	if sub == "-h" || sub == "--help" || sub == "help" {
		fs.Usage()
		return flag.ErrHelp
	}
	// Flags may come before or after the subcommand's argument.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	var method, path string
	switch sub {
	case "list":
		if len(pos) > 0 {
			return usageErr(fmt.Sprintf("list: unexpected argument %q", pos[0]))
		}
		method, path = http.MethodGet, wire.PathCluster
	case "remove":
		if len(pos) != 1 || pos[0] == "" {
			return usageErr("remove: want one node id")
		}
		method, path = http.MethodPost, wire.PathRemove+"?id="+url.QueryEscape(pos[0])
	case "transfer-leadership":
		if len(pos) > 1 {
			return usageErr("transfer-leadership: want at most one node id")
		}
		method, path = http.MethodPost, wire.PathTransfer
		if len(pos) == 1 {
			path += "?id=" + url.QueryEscape(pos[0])
		}
	case "health":
		if len(pos) > 0 {
			return usageErr(fmt.Sprintf("health: unexpected argument %q", pos[0]))
		}
	case "join":
		if len(pos) != 1 || pos[0] == "" {
			return usageErr("join: want one node id")
		}
		if *raftAddr == "" {
			return usageErr("join: --raft-addr is required")
		}
		q := url.Values{"id": {pos[0]}, "raft_addr": {*raftAddr}}
		if *clientAddr != "" {
			q.Set("client_addr", *clientAddr)
		}
		method, path = http.MethodPost, wire.PathJoin+"?"+q.Encode()
	default:
		return usageErr(fmt.Sprintf("unknown subcommand %q", sub))
	}
	if sub != "join" && (*raftAddr != "" || *clientAddr != "") {
		return usageErr("--raft-addr and --client-addr are for join")
	}
	nodes := splitList(*addrs)
	if len(nodes) == 0 {
		return usageErr("--admin is required")
	}
	if *token = adminToken(*token); *token == "" {
		return usageErr("--token or FEDREC_ADMIN_TOKEN is required")
	}
	c, err := adminClient(*certs)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if sub == "health" {
		return clusterHealth(ctx, c, nodes, *token, *asJSON, stdout)
	}

	addr, body, err := askLeader(ctx, c, nodes, method, path, *token)
	if err != nil {
		return fmt.Errorf("cluster %s: %w", sub, err)
	}
	cl, err := wire.DecodeAdmin[wire.Cluster](body)
	if err != nil {
		return fmt.Errorf("cluster %s: %s answered: %w", sub, addr, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(cl)
	}
	switch sub {
	case "join":
		fmt.Fprintf(stdout, "joined %s\n", pos[0])
	case "remove":
		fmt.Fprintf(stdout, "removed %s\n", pos[0])
	case "transfer-leadership":
		if cl.Leader != nil {
			fmt.Fprintf(stdout, "leadership transferred to %s\n", cl.Leader.ID)
		} else {
			fmt.Fprintln(stdout, "leadership transferred; new leader not known yet")
		}
	}
	printCluster(stdout, cl)
	return nil
}

// askLeader sends a request without a body to the nodes' admin APIs and
// returns the address that answered 200 and its body. It asks the nodes in
// order and goes on to the next one only if this one is unreachable or,
// for a leader-only call, not the leader (409), whose registered admin
// address it then asks in the same round. It asks them all again, until
// ctx ends, while the nodes that answer know no leader (an election), or
// while leadership moves: the new leader may be a node asked before it
// took over (the leader asked to remove itself hands leadership over and
// names its successor). Only a leader that every node names and none of
// them is ends the search early. Any other answer is an error naming it.
func askLeader(ctx context.Context, c *http.Client, nodes []string, method, path, token string) (string, []byte, error) {
	nodes = slices.Clone(nodes)
	var lastLeaders string
	for {
		var errs []error
		retry := false
		leaders := map[string]bool{}
		for i := 0; i < len(nodes); i++ {
			addr := nodes[i]
			code, body, err := adminDo(ctx, c, method, addr, path, token)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", addr, err))
				if ctx.Err() != nil {
					break
				}
				continue
			}
			if code == http.StatusOK {
				return addr, body, nil
			}
			ce, err := wire.DecodeAdmin[wire.ClusterError](body)
			if err != nil || ce.Error == "" {
				ce = &wire.ClusterError{Error: strings.TrimSpace(string(body))}
			}
			if code != http.StatusConflict {
				return "", nil, fmt.Errorf("%s: %d %s: %s", addr, code, http.StatusText(code), ce.Error)
			}
			hint := "leader unknown"
			if ce.Leader == nil {
				retry = true // an election
			} else {
				leaders[ce.Leader.ID] = true
				hint = "the leader is " + ce.Leader.ID
				if ce.Leader.RaftAddr != "" {
					hint += " (raft " + ce.Leader.RaftAddr + ")"
				}
				if a := ce.Leader.AdminAddr; a != "" {
					// The leader registered its admin address: ask it
					// next, in this round.
					hint += ", admin " + a
					if !slices.Contains(nodes, a) {
						nodes = append(nodes, a)
					}
				} else {
					hint += ": ask its admin address"
				}
			}
			errs = append(errs, fmt.Errorf("%s is not the leader; %s", addr, hint))
		}
		named := strings.Join(slices.Sorted(maps.Keys(leaders)), ",")
		if len(leaders) > 1 || (lastLeaders != "" && named != lastLeaders) {
			retry = true // leadership moved while we asked
		}
		lastLeaders = named
		if !retry || ctx.Err() != nil {
			return "", nil, errors.Join(errs...)
		}
		select {
		case <-ctx.Done():
			return "", nil, errors.Join(errs...)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func printCluster(w io.Writer, cl *wire.Cluster) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "ID\tSUFFRAGE\tLEADER\tRAFT\tCLIENTS\tADMIN")
	for _, n := range cl.Nodes {
		mark := ""
		if n.Leader {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, n.Suffrage, mark, n.RaftAddr, orDash(n.ClientAddr), orDash(n.AdminAddr))
	}
}
