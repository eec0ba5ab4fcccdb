package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"text/tabwriter"

	"github.com/fedrec/fedrec/coordinator/wire"
)

// Health is what 'fedrec cluster health' found: every asked node's answer,
// and the cluster's verdict.
type Health struct {
	Nodes []NodeHealth `json:"nodes"` // in --admin order
	// Voters is the voters of the newest configuration an answer holds;
	// Reachable those of them that answered.
	Voters    []string `json:"voters"`
	Reachable []string `json:"reachable_voters"`
	Leader    string   `json:"leader,omitempty"` // the leader the answers agree on
	Quorum    bool     `json:"quorum"`           // a majority of the voters answered and agree on Leader
	Healthy   bool     `json:"healthy"`          // Quorum, and every asked node answered and is ready
}

// NodeHealth is one asked node's answer.
type NodeHealth struct {
	Admin    string `json:"admin"`
	Node     string `json:"node,omitempty"`
	State    string `json:"raft_state,omitempty"`
	Term     uint64 `json:"term,omitempty"`
	Leader   string `json:"leader,omitempty"`
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
	Version  string `json:"version,omitempty"`
	Error    string `json:"error,omitempty"` // unreachable, wrong token …
	// HTTPStatus is the node's answer when it answered with an error (401
	// for a wrong token): reachable, but no status. 0 when it did not
	// answer at all.
	HTTPStatus int `json:"http_status,omitempty"`
}

// clusterHealth asks every node at once, then the members the answers
// name (by the admin addresses they registered) that were not asked, and
// decides.
func clusterHealth(ctx context.Context, c *http.Client, addrs []string, token string, asJSON bool, stdout io.Writer) error {
	var h Health
	var statuses []*wire.Status
	h.Nodes, statuses = askStatus(ctx, c, addrs, token)
	answered := map[string]bool{}
	for _, st := range statuses {
		if st != nil {
			answered[st.Node] = true
		}
	}
	var more []string
	for _, st := range statuses {
		for _, n := range statusNodes(st) {
			if n.AdminAddr != "" && !answered[n.ID] && !slices.Contains(addrs, n.AdminAddr) && !slices.Contains(more, n.AdminAddr) {
				more = append(more, n.AdminAddr)
			}
		}
	}
	if len(more) > 0 {
		nodes, sts := askStatus(ctx, c, more, token)
		h.Nodes, statuses = append(h.Nodes, nodes...), append(statuses, sts...)
	}
	h.decide(statuses)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(h); err != nil {
			return err
		}
	} else {
		h.print(stdout)
	}
	switch {
	case !h.Quorum:
		return errors.New("cluster health: no quorum among the answers")
	case !h.Healthy:
		return errors.New("cluster health: quorum holds, but not every node answered ready")
	}
	return nil
}

// askStatus asks every address for its status at once.
func askStatus(ctx context.Context, c *http.Client, addrs []string, token string) ([]NodeHealth, []*wire.Status) {
	nodes := make([]NodeHealth, len(addrs))
	statuses := make([]*wire.Status, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() {
			st, err := getStatus(ctx, c, addr, token)
			nh := NodeHealth{Admin: addr}
			if ae := (*answerError)(nil); errors.As(err, &ae) {
				nh.Error, nh.HTTPStatus = err.Error(), ae.Code
			} else if err != nil {
				nh.Error = err.Error()
			} else {
				statuses[i] = &st
				nh.Node, nh.State, nh.Term, nh.Ready, nh.NotReady, nh.Version = st.Node, st.State, st.Term, st.Ready, st.NotReady, st.Build.Version
				if st.Leader != nil {
					nh.Leader = st.Leader.ID
				}
			}
			nodes[i] = nh
		})
	}
	wg.Wait()
	return nodes, statuses
}

// decide fills the verdict from the answers: the configuration of the
// answer with the highest term, the voters that answered, and whether a
// majority of the voters agree on one leader.
func (h *Health) decide(statuses []*wire.Status) {
	var newest *wire.Status
	for _, st := range statuses {
		if st != nil && (newest == nil || st.Term > newest.Term) {
			newest = st
		}
	}
	h.Voters, h.Reachable = []string{}, []string{}
	if newest == nil {
		return
	}
	for _, n := range newest.Nodes {
		if n.Suffrage == "voter" {
			h.Voters = append(h.Voters, n.ID)
		}
	}
	leaders := map[string]int{}
	for _, st := range statuses {
		if st == nil || !slices.Contains(h.Voters, st.Node) || slices.Contains(h.Reachable, st.Node) {
			continue
		}
		h.Reachable = append(h.Reachable, st.Node)
		if st.Leader != nil {
			leaders[st.Leader.ID]++
		}
	}
	for id, k := range leaders {
		if 2*k > len(h.Voters) {
			h.Leader, h.Quorum = id, true
		}
	}
	h.Healthy = h.Quorum && !slices.ContainsFunc(h.Nodes, func(n NodeHealth) bool { return n.Error != "" || !n.Ready })
}

func (h *Health) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADMIN\tNODE\tSTATE\tTERM\tLEADER\tREADY\tVERSION")
	for _, n := range h.Nodes {
		if n.HTTPStatus != 0 {
			fmt.Fprintf(tw, "%s\t-\trefused: %s\n", n.Admin, n.Error)
			continue
		}
		if n.Error != "" {
			fmt.Fprintf(tw, "%s\t-\tunreachable: %s\n", n.Admin, n.Error)
			continue
		}
		ready := "yes"
		if !n.Ready {
			ready = "no: " + n.NotReady
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", n.Admin, n.Node, n.State, n.Term, orDash(n.Leader), ready, n.Version)
	}
	tw.Flush()
	verdict := "no quorum"
	if h.Quorum {
		verdict = "quorum holds, leader " + h.Leader
	}
	fmt.Fprintf(w, "\n%d of %d voters reachable: %s\n", len(h.Reachable), len(h.Voters), verdict)
}

// statusNodes returns the members a status names; none for nil.
func statusNodes(st *wire.Status) []wire.StatusNode {
	if st == nil {
		return nil
	}
	return st.Nodes
}
