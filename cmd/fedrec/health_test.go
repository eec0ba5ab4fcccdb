package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

func TestHealthDecide(t *testing.T) {
	voters := []wire.StatusNode{{ID: "a", Suffrage: "voter"}, {ID: "b", Suffrage: "voter"}, {ID: "c", Suffrage: "voter"}}
	st := func(id string, term uint64, leader string) *wire.Status {
		s := &wire.Status{Node: id, Term: term, Nodes: voters, Ready: true}
		if leader != "" {
			s.Leader = &wire.StatusNode{ID: leader}
		}
		return s
	}
	tests := []struct {
		name      string
		statuses  []*wire.Status
		reachable int
		quorum    bool
		leader    string
	}{
		{"all three", []*wire.Status{st("a", 2, "a"), st("b", 2, "a"), st("c", 2, "a")}, 3, true, "a"},
		{"two of three", []*wire.Status{st("a", 2, "a"), nil, st("c", 2, "a")}, 2, true, "a"},
		{"one of three", []*wire.Status{st("a", 2, "a"), nil, nil}, 1, false, ""},
		{"two, no leader", []*wire.Status{st("a", 3, ""), st("b", 3, ""), nil}, 2, false, ""},
		{"the same node twice", []*wire.Status{st("a", 2, "a"), st("a", 2, "a"), nil}, 1, false, ""},
		{"none", []*wire.Status{nil, nil, nil}, 0, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Health{Nodes: make([]NodeHealth, len(tt.statuses))}
			for i, s := range tt.statuses {
				if s == nil {
					h.Nodes[i].Error = "unreachable"
				} else {
					h.Nodes[i].Ready = true
				}
			}
			h.decide(tt.statuses)
			if len(h.Reachable) != tt.reachable || h.Quorum != tt.quorum || h.Leader != tt.leader {
				t.Errorf("decide = %d reachable, quorum %v, leader %q; want %d, %v, %q", len(h.Reachable), h.Quorum, h.Leader, tt.reachable, tt.quorum, tt.leader)
			}
			if h.Healthy != (tt.quorum && tt.reachable == len(tt.statuses)) {
				t.Errorf("healthy = %v", h.Healthy)
			}
		})
	}
}

// fedrec cluster health on a live node, alone and with an address nobody
// answers; fedrec version; the build in /v1/status and fedrec_build_info.
func TestClusterHealthAndVersion(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.WriteDir(dir, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	n := startAdminNode(t, dir, "a", "tok")
	base := []string{"cluster", "health", "--certs", dir, "--token", "tok", "--timeout", "30s"}
	var out bytes.Buffer
	waitFor(t, t.Context(), "a ready", func() bool { return n.Ready() == nil })
	if err := run(t.Context(), append(base, "--admin", n.AdminAddr()), &out, &bytes.Buffer{}); err != nil {
		t.Fatalf("cluster health = %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "1 of 1 voters reachable: quorum holds, leader a") {
		t.Errorf("cluster health printed:\n%s", out.String())
	}
	out.Reset()
	err := run(t.Context(), append(base, "--json", "--admin", n.AdminAddr()+","+freeAddr(t)), &out, &bytes.Buffer{})
	var h Health
	if json.Unmarshal(out.Bytes(), &h) != nil || err == nil || !h.Quorum || h.Healthy || len(h.Nodes) != 2 || h.Nodes[1].Error == "" {
		t.Errorf("cluster health with an unreachable address = %v, %+v", err, h)
	}
	// A wrong token: the node answered 401, which is not "unreachable".
	out.Reset()
	wrong := []string{"cluster", "health", "--certs", dir, "--token", "wrong", "--timeout", "30s", "--admin", n.AdminAddr()}
	if err := run(t.Context(), wrong, &out, &bytes.Buffer{}); err == nil || !strings.Contains(out.String(), "refused: GET /v1/status: 401") || strings.Contains(out.String(), "unreachable:") {
		t.Errorf("cluster health with a wrong token = %v, printed:\n%s", err, out.String())
	}
	out.Reset()
	if err := run(t.Context(), append(wrong, "--json"), &out, &bytes.Buffer{}); err == nil || json.Unmarshal(out.Bytes(), &h) != nil || len(h.Nodes) != 1 || h.Nodes[0].HTTPStatus != http.StatusUnauthorized {
		t.Errorf("cluster health --json with a wrong token = %v, %s", err, out.String())
	}

	out.Reset()
	if err := run(t.Context(), []string{"version", "--json"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var b wire.Build
	if err := json.Unmarshal(out.Bytes(), &b); err != nil || b.Version == "" || b.GoVersion == "" {
		t.Errorf("fedrec version --json = %s, %v", out.String(), err)
	}
	c, err := adminClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	st, err := getStatus(t.Context(), c, n.AdminAddr(), "tok")
	if err != nil || st.Build != b {
		t.Errorf("/v1/status build = %+v, %v; want %+v", st.Build, err, b)
	}
	code, body, err := adminDo(t.Context(), c, http.MethodGet, n.AdminAddr(), "/metrics", "tok")
	if err != nil || code != http.StatusOK || !strings.Contains(string(body), `fedrec_build_info{goversion="`+b.GoVersion+`",revision="`+b.Revision+`",version="`+b.Version+`"} 1`) {
		t.Errorf("/metrics = %d, %v, no fedrec_build_info for %+v", code, err, b)
	}
}
