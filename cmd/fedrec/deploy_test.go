package main

// The deployment files of docs/deploy parse, carry the fields a cluster
// needs, pass only flags 'fedrec coordinator' has, and query only metrics
// a node exports.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
)

const deployDir = "../../docs/deploy"

// yamlDocs reads every document of a YAML file.
func yamlDocs(t *testing.T, name string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(deployDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// kubeObject returns the one object of kind in the file.
func kubeObject(t *testing.T, file, kind string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, d := range yamlDocs(t, file) {
		if d["kind"] == kind {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d objects of kind %s, want 1", file, len(found), kind)
	}
	return found[0]
}

// at follows a path of map keys and list indexes through decoded YAML or
// JSON, failing the test if it leads nowhere.
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for i, k := range path {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok || m[k] == nil {
				t.Fatalf("no %v", path[:i+1])
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("no %v", path[:i+1])
			}
			v = l[k]
		}
	}
	return v
}

// coordinatorFlags lists the flags of 'fedrec coordinator'.
func coordinatorFlags(t *testing.T) map[string]bool {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"coordinator", "-h"}, &out, &errb); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("coordinator -h = %v", err)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(errb.String()+out.String(), -1) {
		flags[m[1]] = true
	}
	if !flags["id"] || !flags["join"] {
		t.Fatalf("no flags found in 'fedrec coordinator -h':\n%s", errb.String())
	}
	return flags
}

var reFlag = regexp.MustCompile(`(?:^|\s)--([a-z][a-z0-9-]*)`)

// checkFlags checks that every --flag in s is a flag of 'fedrec coordinator'.
func checkFlags(t *testing.T, where, s string, flags map[string]bool) {
	t.Helper()
	n := 0
	for _, m := range reFlag.FindAllStringSubmatch(s, -1) {
		n++
		if !flags[m[1]] {
			t.Errorf("%s: --%s is not a flag of 'fedrec coordinator'", where, m[1])
		}
	}
	if n == 0 {
		t.Errorf("%s: no flags found", where)
	}
}

func TestDeployKubernetes(t *testing.T) {
	svc := kubeObject(t, "kubernetes/service.yaml", "Service")
	sts := kubeObject(t, "kubernetes/statefulset.yaml", "StatefulSet")
	pdb := kubeObject(t, "kubernetes/pdb.yaml", "PodDisruptionBudget")

	name := at(t, svc, "metadata", "name")
	if at(t, svc, "spec", "clusterIP") != "None" || at(t, svc, "spec", "publishNotReadyAddresses") != true {
		t.Error("the Service must be headless (clusterIP: None) and publish not-ready addresses")
	}
	if at(t, sts, "spec", "serviceName") != name {
		t.Errorf("StatefulSet serviceName = %v, want the headless Service %v", at(t, sts, "spec", "serviceName"), name)
	}
	if r := at(t, sts, "spec", "replicas"); r != 3 {
		t.Errorf("replicas = %v, want 3", r)
	}
	if p := at(t, sts, "spec", "podManagementPolicy"); p != "Parallel" {
		t.Errorf("podManagementPolicy = %v, want Parallel (a cluster restarting from a full outage needs every pod)", p)
	}
	labels := at(t, sts, "spec", "template", "metadata", "labels").(map[string]any)
	matches := func(what string, sel any) {
		for k, v := range sel.(map[string]any) {
			if labels[k] != v {
				t.Errorf("%s selects %s=%v, the pods are labelled %v", what, k, v, labels)
			}
		}
	}
	matches("the Service", at(t, svc, "spec", "selector"))
	matches("the StatefulSet", at(t, sts, "spec", "selector", "matchLabels"))
	matches("the PodDisruptionBudget", at(t, pdb, "spec", "selector", "matchLabels"))
	if at(t, pdb, "spec", "maxUnavailable") != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable = %v, want 1", at(t, pdb, "spec", "maxUnavailable"))
	}

	pod := at(t, sts, "spec", "template", "spec")
	if g, ok := at(t, pod, "terminationGracePeriodSeconds").(int); !ok || g < 15 {
		t.Errorf("terminationGracePeriodSeconds = %v, want time for a leadership transfer", g)
	}
	c := at(t, pod, "containers", 0)
	ports := map[string]string{}
	for _, p := range at(t, c, "ports").([]any) {
		ports[at(t, p, "name").(string)] = fmt.Sprint(at(t, p, "containerPort"), "/", at(t, p, "protocol"))
	}
	want := map[string]string{"client": "7001/UDP", "raft": "8001/TCP", "admin": "9001/TCP"}
	for k, v := range want {
		if ports[k] != v {
			t.Errorf("container port %s = %q, want %q", k, ports[k], v)
		}
	}
	for _, p := range at(t, svc, "spec", "ports").([]any) {
		n := at(t, p, "name").(string)
		if got := fmt.Sprint(at(t, p, "port"), "/", at(t, p, "protocol")); got != want[n] {
			t.Errorf("Service port %s = %s, want %s", n, got, want[n])
		}
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		g := at(t, c, probe, "httpGet")
		if at(t, g, "path") != path || at(t, g, "port") != "admin" || at(t, g, "scheme") != "HTTPS" {
			t.Errorf("%s = %v, want HTTPS GET %s on the admin port", probe, g, path)
		}
	}

	// The data directory is on the claim template's volume.
	claims := map[string]bool{}
	for _, v := range at(t, sts, "spec", "volumeClaimTemplates").([]any) {
		claims[at(t, v, "metadata", "name").(string)] = true
		if at(t, v, "spec", "resources", "requests", "storage") == nil {
			t.Error("a volume claim template requests no storage")
		}
	}
	script := strings.Join(func() []string {
		var s []string
		for _, a := range at(t, c, "args").([]any) {
			s = append(s, a.(string))
		}
		return s
	}(), " ")
	dataDir := regexp.MustCompile(`--data-dir (\S+)`).FindStringSubmatch(script)
	if dataDir == nil {
		t.Fatal("the container does not pass --data-dir")
	}
	onClaim := false
	for _, m := range at(t, c, "volumeMounts").([]any) {
		if at(t, m, "mountPath") == dataDir[1] && claims[at(t, m, "name").(string)] {
			onClaim = true
		}
	}
	if !onClaim {
		t.Errorf("--data-dir %s is not a persistent volume's mount", dataDir[1])
	}
	for _, f := range []string{"--advertise-raft-addr", "--advertise-client-addr", "--admin-addr", "--join", "--bootstrap"} {
		if !strings.Contains(script, f) {
			t.Errorf("the container does not pass %s", f)
		}
	}
	token := false
	for _, e := range at(t, c, "env").([]any) {
		if at(t, e, "name") == "FEDREC_ADMIN_TOKEN" {
			token = at(t, e, "valueFrom", "secretKeyRef") != nil
		}
	}
	if !token {
		t.Error("FEDREC_ADMIN_TOKEN does not come from a Secret")
	}
	checkFlags(t, "statefulset.yaml", script, coordinatorFlags(t))
	for _, e := range at(t, c, "env").([]any) {
		checkEnv(t, "statefulset.yaml", at(t, e, "name").(string))
	}
}

// checkEnv checks that a FEDREC_ variable is one 'fedrec coordinator' reads.
func checkEnv(t *testing.T, where, name string) {
	t.Helper()
	if !strings.HasPrefix(name, "FEDREC_") {
		return
	}
	if !slices.ContainsFunc(settings, func(s setting) bool { return s.env() == name }) {
		t.Errorf("%s: %s is not a setting of 'fedrec coordinator'", where, name)
	}
}

func TestDeploySystemd(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "systemd/fedrec-coordinator.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := map[string]map[string]string{}
	var sect string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#':
		case line[0] == '[':
			sect = strings.Trim(line, "[]")
			unit[sect] = map[string]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || sect == "" {
				t.Fatalf("unit line %q", line)
			}
			unit[sect][k] = v
		}
	}
	svc := unit["Service"]
	for k, want := range map[string]string{"KillSignal": "SIGTERM", "Restart": "on-failure", "StateDirectory": "fedrec"} {
		if svc[k] != want {
			t.Errorf("[Service] %s = %q, want %q", k, svc[k], want)
		}
	}
	if !strings.Contains(svc["ExecStart"], "fedrec coordinator") || svc["EnvironmentFile"] == "" || svc["TimeoutStopSec"] == "" || unit["Install"]["WantedBy"] == "" {
		t.Errorf("unit = %v", unit)
	}
	env, err := os.ReadFile(filepath.Join(deployDir, "systemd/coordinator.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(env, []byte("FEDREC_ADMIN_TOKEN=")) {
		t.Error("coordinator.env.example sets no FEDREC_ADMIN_TOKEN")
	}
	flags := coordinatorFlags(t)
	checkFlags(t, "ExecStart", svc["ExecStart"], flags)
	checkFlags(t, "coordinator.env.example", string(env), flags)
	for _, m := range regexp.MustCompile(`(?m)^(FEDREC_[A-Z_]+)=`).FindAllStringSubmatch(string(env), -1) {
		if m[1] != "FEDREC_ARGS" {
			checkEnv(t, "coordinator.env.example", m[1])
		}
	}
}

// exportedMetrics scrapes a live in-process node and returns the names of
// its metrics, with the _bucket, _sum and _count series of histograms.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.WriteDir(dir, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	n := startLoneNode(t, dir, coordinator.Config{ID: "a", ClientAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", AdminToken: "tok"})
	c, err := adminClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	code, body, err := adminDo(t.Context(), c, http.MethodGet, n.AdminAddr(), "/metrics", "tok")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v", code, err)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		names[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
	}
	return names
}

// reMetric finds the metric names in PromQL: ours and the Go and process
// collectors', and Prometheus's own up.
var reMetric = regexp.MustCompile(`\b(?:fedrec|go|process)_[a-z0-9_]+\b|\bup\b`)

// checkQueries checks that every query names at least one metric, only
// metrics the node exports, and has balanced brackets.
func checkQueries(t *testing.T, where string, queries []string, exported map[string]bool) {
	t.Helper()
	if len(queries) == 0 {
		t.Fatalf("%s: no queries", where)
	}
	for _, q := range queries {
		names := reMetric.FindAllString(q, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q names no metric", where, q)
		}
		for _, name := range names {
			if name != "up" && !exported[name] {
				t.Errorf("%s: %q names %s, which a node does not export", where, q, name)
			}
		}
		for _, p := range []string{"()", "{}", "[]"} {
			if strings.Count(q, p[:1]) != strings.Count(q, p[1:]) {
				t.Errorf("%s: %q has unbalanced %s", where, q, p)
			}
		}
	}
}

func TestDeployDashboardAndAlerts(t *testing.T) {
	exported := exportedMetrics(t)

	b, err := os.ReadFile(filepath.Join(deployDir, "grafana/fedrec.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana/fedrec.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard uid %q, title %q, %d panels", dash.UID, dash.Title, len(dash.Panels))
	}
	var queries []string
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, tg := range p.Targets {
			queries = append(queries, tg.Expr)
		}
	}
	checkQueries(t, "grafana/fedrec.json", queries, exported)
	// The dashboard shows what the issue asks for.
	all := strings.Join(queries, "\n")
	for _, m := range []string{"fedrec_rounds_started_total", "fedrec_rounds_committed_total", "fedrec_rounds_abandoned_total",
		"fedrec_round_cohort_clients_total", "fedrec_round_survivor_clients_total", "fedrec_round_phase_duration_seconds_bucket",
		"fedrec_client_received_bytes_total", "fedrec_client_sent_bytes_total", "fedrec_client_connections", "fedrec_raft_state",
		"fedrec_raft_term", "fedrec_raft_commit_index", "fedrec_raft_applied_index", "fedrec_raft_last_contact_seconds",
		"fedrec_snapshot_last_size_bytes", "fedrec_privacy_epsilon"} {
		if !strings.Contains(all, m) {
			t.Errorf("the dashboard does not show %s", m)
		}
	}

	// Alerting rules: each named, with a severity and a summary, and
	// documented in docs/alerts.md.
	doc, err := os.ReadFile("../../docs/alerts.md")
	if err != nil {
		t.Fatal(err)
	}
	queries = nil
	var alerts []string
	for _, g := range at(t, yamlDocs(t, "prometheus/alerts.yaml")[0], "groups").([]any) {
		for _, r := range at(t, g, "rules").([]any) {
			name := at(t, r, "alert").(string)
			alerts = append(alerts, name)
			queries = append(queries, at(t, r, "expr").(string))
			if at(t, r, "labels", "severity") == "" || at(t, r, "annotations", "summary") == "" {
				t.Errorf("alert %s lacks a severity or a summary", name)
			}
			if !bytes.Contains(doc, []byte("### "+name)) {
				t.Errorf("docs/alerts.md has no section for %s", name)
			}
		}
	}
	checkQueries(t, "prometheus/alerts.yaml", queries, exported)
	for _, want := range []string{"FedrecNoLeader", "FedrecRoundsAbandoned", "FedrecPrivacyBudgetNearlySpent", "FedrecFollowerLagging", "FedrecSnapshotFailing"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s", want)
		}
	}
	scrape := at(t, yamlDocs(t, "prometheus/scrape.yaml")[0], "scrape_configs", 0)
	if at(t, scrape, "job_name") != "fedrec" || at(t, scrape, "scheme") != "https" || at(t, scrape, "authorization", "credentials_file") == "" {
		t.Errorf("scrape config = %v", scrape)
	}
}
