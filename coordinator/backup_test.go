package coordinator

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/store"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// A backup taken from a training cluster restores into a fresh data
// directory; a node started there is a one-node cluster holding the
// backed-up state (same model digest), others join it, and training goes
// on from the backed-up model.
func TestBackupRestoreMidTraining(t *testing.T) {
	c := newAdminCluster(t, 3, testTraining())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	// Back up while clients train, from a follower and from the leader.
	crowdCtx, stop := context.WithCancel(ctx)
	wg := c.crowd(crowdCtx, 6)
	c.waitAll(ctx, func(s *State) bool { return s.Current().Version >= 3 })
	var backups [][]byte
	for _, n := range []*Node{c.nodes[2], c.leader(ctx)} {
		code, body := c.get(n, "/v1/backup", testToken)
		if code != http.StatusOK {
			t.Fatalf("%s GET /v1/backup = %d %s", n.ID(), code, body)
		}
		backups = append(backups, body)
	}
	stop()
	wg.Wait()
	if code, _ := c.get(c.nodes[0], "/v1/backup", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/backup without the token = %d, want 401", code)
	}

	for i, b := range backups {
		h, st, err := ReadBackup(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("backup %d: ReadBackup: %v", i, err)
		}
		if h.ModelVersion < 3 || h.Index == 0 || h.Term == 0 {
			t.Errorf("backup %d header = %+v, want model >= 3 at a real index and term", i, h)
		}
		// The backed-up model is the one the cluster committed as that
		// version.
		c.nodes[0].View(func(s *State) {
			if v := s.Model(h.ModelVersion); v != nil && hex.EncodeToString(v.Digest[:]) != h.ModelDigest {
				t.Errorf("backup %d: version %d digest %s, cluster's %x", i, h.ModelVersion, h.ModelDigest, v.Digest)
			}
		})
		if cfg, ok := st.Config(); !ok || cfg != c.cfg {
			t.Errorf("backup %d: training configuration %+v, want %+v", i, cfg, c.cfg)
		}
	}
	b := backups[1]
	h, _, _ := ReadBackup(bytes.NewReader(b))

	// Restore into a fresh directory and start a node there.
	dir := filepath.Join(t.TempDir(), "restored")
	got, err := RestoreBackup(bytes.NewReader(b), dir, "r0", "restored-0")
	if err != nil {
		t.Fatalf("RestoreBackup: %v", err)
	}
	if got != h {
		t.Errorf("RestoreBackup header = %+v, want %+v", got, h)
	}
	if _, err := RestoreBackup(bytes.NewReader(b), dir, "r0", "restored-0"); err == nil {
		t.Error("RestoreBackup into a non-empty directory succeeded")
	}
	ca, err := pki.NewCA("restore CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rc := startNodes(t, "restored-", 3, Training{}, func(i int, cfg *Config) {
		bundle, err := ca.NodeBundle(fmt.Sprintf("r%d", i))
		if err != nil {
			t.Fatal(err)
		}
		cfg.ID, cfg.AdvertiseClientAddr, cfg.Seed = fmt.Sprintf("r%d", i), fmt.Sprintf("rclient-%d", i), uint64(i+10)
		cfg.TLS, cfg.AdminAddr, cfg.AdminToken = bundle, "127.0.0.1:0", testToken
		cfg.Bootstrap, cfg.Training = false, Training{}
		if i == 0 {
			cfg.DataDir, cfg.InMemory = dir, false // the restored one
		}
	})
	rc.cfg = c.cfg
	r0 := rc.leader(ctx)
	if r0 != rc.nodes[0] {
		t.Fatalf("leader of the restored cluster is %s, want r0", r0.ID())
	}
	tr := &http.Transport{TLSClientConfig: pki.ClientTLS(ca.Pool())}
	t.Cleanup(tr.CloseIdleConnections)
	ac := &adminCluster{testCluster: rc, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	var man wire.ModelManifest
	ac.getJSON(r0, "/v1/model", &man)
	if man.Digest != h.ModelDigest || man.Version != h.ModelVersion {
		t.Fatalf("restored node serves model %d %s, backup holds %d %s", man.Version, man.Digest, h.ModelVersion, h.ModelDigest)
	}
	var st wire.Status
	ac.getJSON(r0, "/v1/status", &st)
	if len(st.Nodes) != 1 || st.Nodes[0].ID != "r0" || st.Nodes[0].RaftAddr != "restored-0" {
		t.Errorf("restored cluster = %+v, want r0 alone", st.Nodes)
	}

	// Others join, and training continues from the backed-up model.
	for _, n := range rc.nodes[1:] {
		if err := r0.Join(n.ID(), n.RaftAddr(), n.ClientAddr(), ""); err != nil {
			t.Fatal(err)
		}
	}
	rc.waitAll(ctx, func(s *State) bool { return s.Model(h.ModelVersion) != nil })
	// Checked now: once training goes on, KeepModels drops the version.
	rc.nodes[1].View(func(s *State) {
		if v := s.Model(h.ModelVersion); v == nil || hex.EncodeToString(v.Digest[:]) != h.ModelDigest {
			t.Errorf("joined node lacks the backed-up version %d", h.ModelVersion)
		}
	})
	crowdCtx, stop = context.WithCancel(ctx)
	wg = rc.crowd(crowdCtx, 6)
	rc.waitAll(ctx, func(s *State) bool { return s.Current().Version >= h.ModelVersion+2 })
	stop()
	wg.Wait()
	rc.nodes[1].View(func(s *State) {
		for _, r := range s.Rounds() {
			if r.Round > h.LastRound && r.Outcome == Committed && r.Model < h.ModelVersion {
				t.Errorf("round %d after the restore trained version %d, older than the backup's %d", r.Round, r.Model, h.ModelVersion)
			}
		}
	})
}

// Broken backups are refused with ErrBadBackup, and leave the target
// directory as it was.
func TestRestoreRefusesBadBackups(t *testing.T) {
	f := history(t)
	var snap bytes.Buffer
	if err := f.State().WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	h := BackupHeader{Format: BackupFormat, Node: "n1", Index: 20, Term: 2, SnapshotVersion: 1}
	if err := store.ScanSnapshot(bytes.NewReader(snap.Bytes()), &h); err != nil {
		t.Fatal(err)
	}
	var good bytes.Buffer
	if err := store.WriteBackupHeader(&good, &h); err != nil {
		t.Fatal(err)
	}
	hdrLen := good.Len()
	good.Write(snap.Bytes())
	if _, _, err := ReadBackup(bytes.NewReader(good.Bytes())); err != nil {
		t.Fatalf("ReadBackup(good) = %v", err)
	}
	mod := func(fn func(b []byte) []byte) []byte { return fn(bytes.Clone(good.Bytes())) }
	otherHeader := func(fn func(h *BackupHeader)) []byte {
		h2 := h
		fn(&h2)
		var b bytes.Buffer
		store.WriteBackupHeader(&b, &h2)
		b.Write(snap.Bytes())
		return b.Bytes()
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"not a backup", []byte("hello, world, this is not a backup at all")},
		{"snapshot, not a backup", snap.Bytes()},
		{"format 2", mod(func(b []byte) []byte { b[len(BackupMagic)+1] = 2; return b })},
		{"header cut", good.Bytes()[:hdrLen-3]},
		{"no snapshot", good.Bytes()[:hdrLen]},
		{"truncated mid-snapshot", good.Bytes()[:hdrLen+snap.Len()/2]},
		{"last byte missing", good.Bytes()[:good.Len()-1]},
		{"trailing byte", append(bytes.Clone(good.Bytes()), 0)},
		{"flipped param bit", mod(func(b []byte) []byte { b[len(b)-200] ^= 1; return b })},
		{"wrong checksum", otherHeader(func(h *BackupHeader) { h.SnapshotSHA256 = hex.EncodeToString(make([]byte, 32)) })},
		{"wrong digest", otherHeader(func(h *BackupHeader) { h.ModelDigest = hex.EncodeToString(make([]byte, 32)) })},
		{"wrong size", otherHeader(func(h *BackupHeader) { h.SnapshotSize += 8 })},
		{"huge header", mod(func(b []byte) []byte { b[len(BackupMagic)+2] = 0xff; return b })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			_, err := RestoreBackup(bytes.NewReader(tt.in), dir, "n1", "127.0.0.1:8001")
			if !errors.Is(err, ErrBadBackup) {
				t.Errorf("RestoreBackup(%s) = %v, want ErrBadBackup", tt.name, err)
			}
			if short := strings.Contains(tt.name, "truncated") || strings.Contains(tt.name, "missing") || tt.name == "no snapshot"; short && !strings.Contains(err.Error(), "truncated") {
				t.Errorf("RestoreBackup(%s) = %v, want it to say truncated", tt.name, err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("RestoreBackup(%s) left %s behind: %v", tt.name, dir, err)
			}
		})
	}
	// A non-empty directory is refused before the backup is read.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x"), nil, 0o600)
	if _, err := RestoreBackup(bytes.NewReader(good.Bytes()), dir, "n1", "127.0.0.1:8001"); err == nil || errors.Is(err, ErrBadBackup) {
		t.Errorf("RestoreBackup(non-empty dir) = %v, want a refusal naming the directory", err)
	}
}

// FuzzReadBackup: a backup file is untrusted input to restore; no bytes
// may panic it or pass as a backup without a valid snapshot.
func FuzzReadBackup(f *testing.F) {
	st := history(f)
	var snap bytes.Buffer
	if err := st.State().WriteSnapshot(&snap); err != nil {
		f.Fatal(err)
	}
	h := BackupHeader{Format: BackupFormat, Node: "n1", Index: 20, Term: 2, SnapshotVersion: 1}
	if err := store.ScanSnapshot(bytes.NewReader(snap.Bytes()), &h); err != nil {
		f.Fatal(err)
	}
	var good bytes.Buffer
	store.WriteBackupHeader(&good, &h)
	good.Write(snap.Bytes())
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:good.Len()/3])
	f.Add([]byte(BackupMagic + "\x00\x01\x00\x00\x00\x02{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, st, err := ReadBackup(bytes.NewReader(b))
		if err == nil && (st == nil || h.SnapshotSize <= 0) {
			t.Errorf("ReadBackup accepted %d bytes without a state", len(b))
		}
	})
}
