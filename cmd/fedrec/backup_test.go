package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator"
	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeAddr returns a loopback TCP address nobody listens on now.
func freeAddr(t *testing.T) string { return freePort(t, "tcp") }

// startAdminNode starts a lone bootstrapped node with the admin API and
// waits for its initial model.
func startAdminNode(t *testing.T, certs, id, token string) *coordinator.Node {
	t.Helper()
	return startLoneNode(t, certs, coordinator.Config{ID: id, AdminAddr: "127.0.0.1:0", AdminToken: token,
		Training: coordinator.Training{Items: 7, Rank: 3, Mean: 3.5, Population: 100}})
}

// startLoneNode starts cfg as a lone bootstrapped node, in memory unless
// cfg.DataDir is set, with its certificate from certs, short Raft
// timeouts and a small model unless cfg says otherwise, and waits for its
// initial model. The node is closed when the test ends.
func startLoneNode(t *testing.T, certs string, cfg coordinator.Config) *coordinator.Node {
	t.Helper()
	b, err := pki.Load(certs, cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLS, cfg.Bootstrap, cfg.InMemory = b, true, cfg.DataDir == ""
	cfg.RaftAddr = cmp.Or(cfg.RaftAddr, "127.0.0.1:0")
	if cfg.Training.Items == 0 {
		cfg.Training = coordinator.Training{Items: 3, Rank: 2, Population: 100}
	}
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	n, err := coordinator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := n.WaitFor(ctx, func(s *coordinator.State) bool { return s.Current() != nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// fedrec backup saves a node's state; fedrec restore prepares a data
// directory from it; fedrec coordinator started there serves the same
// model, which fedrec model export writes to a file with that digest.
func TestBackupRestoreCommands(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := pki.WriteDir(certs, []string{"a", "b", "c"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	const token = "tok"
	t.Setenv("FEDREC_ADMIN_TOKEN", token)
	n := startAdminNode(t, certs, "a", token)
	var want string
	n.View(func(s *coordinator.State) { d := s.Current().Digest; want = hex.EncodeToString(d[:]) })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	file := filepath.Join(dir, "a.backup")
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"backup", "--admin", n.AdminAddr(), "--certs", certs, "--out", file}, &out, &errb); err != nil {
		t.Fatalf("fedrec backup: %v\n%s", err, errb.String())
	}
	for _, s := range []string{"wrote", "model     version 1 (round 0), sha256 " + want, "snapshot  version 1"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("backup output lacks %q:\n%s", s, out.String())
		}
	}
	if _, err := os.Stat(file + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("backup left %s.tmp behind", file)
	}

	// Restore for node b from its configuration file, start it on that
	// file, and ask it for its model.
	raftAddr := freeAddr(t)
	data := filepath.Join(dir, "b")
	bConf := filepath.Join(dir, "b.yaml")
	os.WriteFile(bConf, []byte("id: b\ndata_dir: "+data+"\nraft_addr: "+raftAddr+"\nclient_addr: 127.0.0.1:0\nadmin_addr: 127.0.0.1:0\ncerts: "+certs+"\nheartbeat: 100ms\nlog_level: warn\n"), 0o600)
	out.Reset()
	if err := run(ctx, []string{"restore", "--in", file, "--config", bConf, "--json"}, &out, &errb); err != nil {
		t.Fatalf("fedrec restore: %v\n%s", err, errb.String())
	}
	var h coordinator.BackupHeader
	if err := json.Unmarshal(out.Bytes(), &h); err != nil || h.ModelDigest != want || h.Node != "a" {
		t.Fatalf("restore --json = %+v, %v", h, err)
	}
	if err := run(ctx, []string{"restore", "--in", file, "--data-dir", data, "--id", "b", "--raft-addr", raftAddr}, &out, &errb); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("restore into a used directory = %v, want a refusal", err)
	}
	nodeCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		stop()
		wg.Wait()
	})
	startNode := func(name string, args ...string) *syncBuffer {
		var o syncBuffer
		wg.Go(func() {
			if err := run(nodeCtx, append([]string{"coordinator"}, args...), &o, &syncBuffer{}); err != nil {
				t.Errorf("coordinator %s: %v", name, err)
			}
		})
		return &o
	}
	bOut := startNode("b", "--config", bConf)
	reAdmin := regexp.MustCompile(`admin https://(\S+)`)
	var admin, bClients string
	waitFor(t, ctx, "node b's addresses", func() bool {
		if m := reAdmin.FindStringSubmatch(bOut.String()); m != nil {
			admin = m[1]
		}
		if m := reAddrs.FindStringSubmatch(bOut.String()); m != nil {
			bClients = m[2]
		}
		return admin != "" && bClients != ""
	})
	waitFor(t, ctx, "node b to be ready", func() bool {
		var o, e bytes.Buffer
		return run(ctx, []string{"status", "--admin", admin, "--certs", certs, "--json"}, &o, &e) == nil
	})
	// Another node joins the restored one and receives its state.
	cOut := startNode("c", "--id", "c", "--data-dir", filepath.Join(dir, "c"), "--raft-addr", "127.0.0.1:0", "--client-addr", "127.0.0.1:0",
		"--join", bClients, "--certs", certs, "--heartbeat", "100ms", "--log-level", "warn")
	var cClients string
	waitFor(t, ctx, "node c to listen", func() bool {
		if m := reAddrs.FindStringSubmatch(cOut.String()); m != nil {
			cClients = m[2]
		}
		return cClients != ""
	})
	bundle, err := pki.Load(certs, "c")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "node c to serve the backed-up model", func() bool {
		d, err := digestAt(ctx, cClients, bundle, h.ModelVersion)
		return err == nil && hex.EncodeToString(d) == want
	})
	model := filepath.Join(dir, "model.safetensors")
	out.Reset()
	if err := run(ctx, []string{"model", "export", "--admin", admin, "--certs", certs, "--out", model, "--json"}, &out, &errb); err != nil {
		t.Fatalf("fedrec model export: %v\n%s", err, errb.String())
	}
	var man modelJSON
	if err := json.Unmarshal(out.Bytes(), &man); err != nil || man.Digest != want || man.Version != 1 {
		t.Errorf("restored node exports %+v, %v; want version 1, digest %s", man, err, want)
	}
	// c's address reaches the status through a command of its own after
	// it joined, and on a loaded machine a 100 ms heartbeat may move the
	// leadership for a while (to c too): wait for the cluster to settle
	// with both nodes and a leader.
	var o []byte
	defer func() {
		if t.Failed() {
			t.Logf("restored cluster's last status: %s", o)
		}
	}()
	waitFor(t, ctx, "the restored cluster's status to show b and c and a leader", func() bool {
		var st wire.Status
		o, _ = adminStatus(ctx, admin, certs, token)
		return json.Unmarshal(o, &st) == nil && len(st.Nodes) == 2 && st.Nodes[0].ID == "b" && st.Nodes[0].RaftAddr == raftAddr && st.Nodes[1].ID == "c" && st.Leader != nil
	})
}

func adminStatus(ctx context.Context, addr, certs, token string) ([]byte, error) {
	c, err := adminClient(certs)
	if err != nil {
		return nil, err
	}
	defer c.CloseIdleConnections()
	return adminGet(ctx, c, addr, "/v1/status", token)
}

// An exported model file reads back to the node's parameters and digest;
// a damaged one does not.
func TestModelExportRoundTrip(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "certs")
	if err := pki.WriteDir(certs, []string{"a"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	n := startAdminNode(t, certs, "a", "tok")
	var cur *coordinator.Version
	n.View(func(s *coordinator.State) { cur = s.Current() })
	file := filepath.Join(t.TempDir(), "m.safetensors")
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"model", "export", "--admin", n.AdminAddr(), "--certs", certs, "--token", "tok", "--out", file, "--version", "1"}, &out, &errb); err != nil {
		t.Fatalf("fedrec model export: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "sha256  "+hex.EncodeToString(cur.Digest[:])) {
		t.Errorf("export output:\n%s", out.String())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	man, params, err := readModelFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("readModelFile: %v", err)
	}
	m := cur.Model.Clone()
	copy(m.Params, params)
	if d := wire.Digest(m); man.Digest != hex.EncodeToString(d[:]) || d != cur.Digest || len(params) != len(cur.Model.Params) {
		t.Errorf("file digest %s, params digest %x, node's %x", man.Digest, d, cur.Digest)
	}
	for i := range params {
		if params[i] != cur.Model.Params[i] {
			t.Fatalf("param %d = %v, want %v", i, params[i], cur.Model.Params[i])
		}
	}
	// The header is 8-aligned safetensors JSON with the two tensors.
	hl := int(b[0]) | int(b[1])<<8
	var hdr map[string]json.RawMessage
	if hl%8 != 0 || json.Unmarshal(b[8:8+hl], &hdr) != nil || hdr["items"] == nil || hdr["global_mean"] == nil || hdr["__metadata__"] == nil {
		t.Errorf("header %q", b[8:8+hl])
	}
	out.Reset()
	if err := run(t.Context(), []string{"model", "verify", "--in", file}, &out, &errb); err != nil || !strings.Contains(out.String(), "(verified)") {
		t.Errorf("model verify = %v\n%s", err, out.String())
	}
	// --json prints the manifest's numbers as JSON numbers, though the
	// file's metadata holds them as strings.
	out.Reset()
	if err := run(t.Context(), []string{"model", "verify", "--in", file, "--json"}, &out, &errb); err != nil {
		t.Fatalf("model verify --json = %v\n%s", err, errb.String())
	}
	var raw map[string]any
	if err := json.Unmarshal(out.Bytes(), &raw); err != nil {
		t.Fatalf("model verify --json: %v\n%s", err, out.String())
	}
	for _, k := range []string{"format_version", "model_version", "round", "kind_code", "items", "rank", "params"} {
		if _, ok := raw[k].(float64); !ok {
			t.Errorf("model verify --json: %s = %#v, want a JSON number", k, raw[k])
		}
	}
	if raw["items"] != float64(cur.Model.Items) || raw["digest"] != man.Digest {
		t.Errorf("model verify --json = %s", out.String())
	}

	damaged := map[string][]byte{
		"flipped bit": func() []byte { c := bytes.Clone(b); c[len(c)-9] ^= 1; return c }(),
		"truncated":   b[:len(b)-8],
		"trailing":    append(bytes.Clone(b), 0),
		"empty":       nil,
		"huge header": append([]byte{0, 0, 0, 0, 0, 0, 0, 1}, b[8:]...),
	}
	for name, d := range damaged {
		if _, _, err := readModelFile(bufio.NewReader(bytes.NewReader(d))); err == nil {
			t.Errorf("readModelFile(%s) = nil error", name)
		}
	}
	tests := []struct {
		name string
		args []string
	}{
		{"no subcommand", []string{"model"}},
		{"unknown subcommand", []string{"model", "import"}},
		{"export without out", []string{"model", "export", "--admin", n.AdminAddr(), "--token", "tok"}},
		{"verify without in", []string{"model", "verify"}},
	}
	for _, tt := range tests {
		if err := run(t.Context(), tt.args, &out, &errb); !errors.Is(err, errUsage) {
			t.Errorf("%s: run(%q) = %v, want errUsage", tt.name, tt.args, err)
		}
	}
	if err := run(t.Context(), []string{"model", "export", "--admin", n.AdminAddr(), "--certs", certs, "--token", "tok", "--out", file, "--version", "99"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("export of a missing version = %v, want a 404", err)
	}
}

// FuzzReadModelFile: model files come from disk and other people; no
// bytes may panic the reader.
func FuzzReadModelFile(f *testing.F) {
	m := &wire.ModelManifest{Version: 3, Round: 2, Kind: "explicit", KindCode: 1, Items: 2, Rank: 1, Params: 5}
	raw := make([]byte, 40)
	h := wire.NewDigest(1, 2, 1, false)
	h.Write(raw)
	m.Digest = hex.EncodeToString(h.Sum(nil))
	var b bytes.Buffer
	if err := writeModelFile(&b, manifestOf(m, "seed"), m, bytes.NewReader(raw)); err != nil {
		f.Fatal(err)
	}
	if _, _, err := readModelFile(bytes.NewReader(b.Bytes())); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add(b.Bytes()[:20])
	f.Fuzz(func(t *testing.T, b []byte) {
		readModelFile(bytes.NewReader(b))
	})
}

// The scenario with the commands an operator runs: a cluster
// trains with clients from ml-latest-small; 'fedrec backup' mid-training;
// 'fedrec restore' into a fresh directory; the node started there serves
// the backed-up model's digest (fedrec model export), and clients train
// it on.
func TestBackupMidTrainingCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on a data set")
	}
	dataDir, _ := filepath.Abs(filepath.Join("..", "..", "..", "shared", "data"))
	if _, err := os.Stat(filepath.Join(dataDir, "ml-latest-small", "ratings.csv")); err != nil {
		t.Skipf("ml-latest-small not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"cert", "--dir", certs, "--nodes", "a,b"}, &out, &errb); err != nil {
		t.Fatalf("fedrec cert: %v\n%s", err, errb.String())
	}
	const token = "tok"
	t.Setenv("FEDREC_ADMIN_TOKEN", token)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	// start runs a command until its context ends; it returns the
	// command's stdout.
	start := func(ctx context.Context, name string, args ...string) *syncBuffer {
		var o syncBuffer
		wg.Go(func() {
			var e syncBuffer
			if err := run(ctx, args, &o, &e); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v\n%s", name, err, e.String())
			}
		})
		return &o
	}
	addrs := func(o *syncBuffer) (clients, admin string) {
		waitFor(t, ctx, "a node's addresses", func() bool {
			if m := reAddrs.FindStringSubmatch(o.String()); m != nil {
				clients = m[2]
			}
			if m := regexp.MustCompile(`admin https://(\S+)`).FindStringSubmatch(o.String()); m != nil {
				admin = m[1]
			}
			return clients != "" && admin != ""
		})
		return clients, admin
	}
	status := func(admin string) wire.Status {
		var st wire.Status
		b, err := adminStatus(ctx, admin, certs, token)
		if err == nil {
			json.Unmarshal(b, &st)
		}
		return st
	}
	version := func(admin string) uint64 {
		if st := status(admin); st.Model != nil {
			return st.Model.Version
		}
		return 0
	}
	node := []string{"--raft-addr", "127.0.0.1:0", "--client-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--certs", certs, "--heartbeat", "100ms", "--log-level", "warn"}
	aCtx, stopA := context.WithCancel(ctx)
	defer stopA()
	aOut := start(aCtx, "coordinator a", append([]string{"coordinator", "--id", "a", "--data-dir", filepath.Join(dir, "a"), "--bootstrap",
		"--dataset", "ml-latest-small", "--datasets-dir", dataDir, "--rank", "4", "--clients-per-round", "10", "--min-clients", "5",
		"--over-select", "0.5", "--checkin-window", "200ms", "--round-timeout", "10s"}, node...)...)
	aClients, aAdmin := addrs(aOut)
	start(aCtx, "clients of a", "client", "--data", "ml-latest-small", "--data-dir", dataDir, "--clients", "30",
		"--coordinators", aClients, "--certs", certs, "--eval=false")
	// Mid-training, and mid-round if the timing allows.
	waitFor(t, ctx, "a to commit two rounds and open a third", func() bool {
		st := status(aAdmin)
		return st.Model != nil && st.Model.Version >= 3 && st.Round != nil
	})

	// Back up while the clients train.
	file := filepath.Join(dir, "mid.backup")
	out.Reset()
	if err := run(ctx, []string{"backup", "--admin", aAdmin, "--certs", certs, "--out", file, "--json"}, &out, &errb); err != nil {
		t.Fatalf("fedrec backup: %v\n%s", err, errb.String())
	}
	var h coordinator.BackupHeader
	if err := json.Unmarshal(out.Bytes(), &h); err != nil || h.ModelVersion < 3 {
		t.Fatalf("backup header %+v, %v", h, err)
	}
	t.Logf("backup at raft index %d: model version %d, %d rounds opened", h.Index, h.ModelVersion, h.LastRound)
	stopA()

	// A fresh cluster from the backup.
	raftAddr := freeAddr(t)
	data := filepath.Join(dir, "b")
	if err := run(ctx, []string{"restore", "--in", file, "--data-dir", data, "--id", "b", "--raft-addr", raftAddr}, &out, &errb); err != nil {
		t.Fatalf("fedrec restore: %v\n%s", err, errb.String())
	}
	bOut := start(ctx, "coordinator b", append([]string{"coordinator", "--id", "b", "--data-dir", data}, append(node[2:], "--raft-addr", raftAddr)...)...)
	bClients, bAdmin := addrs(bOut)
	waitFor(t, ctx, "b to lead", func() bool { return status(bAdmin).Ready })
	model := filepath.Join(dir, "b.safetensors")
	out.Reset()
	if err := run(ctx, []string{"model", "export", "--admin", bAdmin, "--certs", certs, "--out", model, "--version", strconv.FormatUint(h.ModelVersion, 10), "--json"}, &out, &errb); err != nil {
		t.Fatalf("fedrec model export: %v\n%s", err, errb.String())
	}
	var man modelJSON
	if err := json.Unmarshal(out.Bytes(), &man); err != nil || man.Digest != h.ModelDigest {
		t.Fatalf("restored node's model version %d: %+v, %v; backup digest %s", h.ModelVersion, man, err, h.ModelDigest)
	}
	if st := status(bAdmin); st.Model == nil || st.Model.Digest != h.ModelDigest {
		t.Errorf("restored node's newest model %+v, want the backup's %d %s", st.Model, h.ModelVersion, h.ModelDigest)
	}
	// Training goes on from the backed-up model.
	out.Reset()
	if err := run(ctx, []string{"client", "--data", "ml-latest-small", "--data-dir", dataDir, "--clients", "30", "--coordinators", bClients,
		"--certs", certs, "--eval=false", "--until-version", strconv.FormatUint(h.ModelVersion+1, 10)}, &out, &errb); err != nil {
		t.Fatalf("clients of b: %v\n%s", err, errb.String())
	}
	if v := version(bAdmin); v < h.ModelVersion+1 {
		t.Errorf("restored cluster at version %d, want > %d", v, h.ModelVersion)
	}
}
