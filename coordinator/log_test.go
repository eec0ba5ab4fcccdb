package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/fedrec/fedrec/coordinator/pki"
)

// lockedBuffer is a bytes.Buffer safe for concurrent writers and readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Raft's lines through the adapter: well-formed JSON, hclog's formatted
// values rendered, and the ERROR lines of a healthy cluster (a peer
// closing its connection, a follower needing a compacted entry) lowered.
func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	h := newHCLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), "raft")
	closed := fmt.Errorf("read tcp 127.0.0.1:8001->127.0.0.1:50000: %w", net.ErrClosed)
	h.Error("failed to decode incoming command", "error", closed)
	h.Error("failed to decode incoming command", "error", errors.New("read tcp: use of closed network connection"))
	h.Error("failed to get log", "index", 7, "error", raft.ErrLogNotFound)
	h.Info("snapshot network transfer progress", "read-bytes", 100, "percent-complete", hclog.Fmt("%0.2f%%", 12.5))
	h.Named("transport").Error("failed to appendEntries to", "peer", "n2", "error", errors.New("dial tcp: connection refused"))
	// A join or a restarted follower catching up: not WARN.
	h.Warn("failed to get previous log", "previous-index", 7, "last-index", 0, "error", raft.ErrLogNotFound)
	h.Warn("appendEntries rejected, sending older logs", "peer", "n2", "next", 1)
	h.Warn("previous log term mis-match", "ours", 2, "remote", 3)

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 6 {
		t.Fatalf("%d lines, want 6 (closed connections at debug):\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"INFO", "INFO", "WARN"} {
		if l := lines[3+i]; l["level"] != want {
			t.Errorf("%v logged at %v, want %s", l["msg"], l["level"], want)
		}
	}
	if lines[0]["msg"] != "failed to get log" || lines[0]["level"] != "INFO" {
		t.Errorf("compacted entry logged as %v %v, want INFO", lines[0]["level"], lines[0]["msg"])
	}
	if got := lines[1]["percent-complete"]; got != "12.50%" || lines[1]["component"] != "raft" {
		t.Errorf("percent-complete = %v (component %v), want 12.50%% (raft)", got, lines[1]["component"])
	}
	if lines[2]["level"] != "ERROR" || lines[2]["component"] != "raft.transport" {
		t.Errorf("a real failure logged as %v from %v, want ERROR from raft.transport", lines[2]["level"], lines[2]["component"])
	}
}

// A node that cannot join (its certificate is of another cluster CA)
// counts its failures and says so at WARN, not only at INFO.
func TestJoinFailuresWarn(t *testing.T) {
	ca1, err := pki.NewCA("cluster 1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := pki.NewCA("cluster 2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := ca1.NodeBundle("a")
	b2, _ := ca2.NodeBundle("b")
	_, ta := raft.NewInmemTransport("raft-a")
	a, err := New(Config{ID: "a", InMemory: true, Transport: ta, ClientAddr: "127.0.0.1:0", TLS: b1, Bootstrap: true, Training: testTraining(),
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var logs lockedBuffer
	_, tb := raft.NewInmemTransport("raft-b")
	b, err := New(Config{ID: "b", InMemory: true, Transport: tb, ClientAddr: "127.0.0.1:0", TLS: b2, Join: []string{a.ClientAddr()},
		Logger:           slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for !strings.Contains(logs.String(), `level=WARN msg="join failing"`) {
		select {
		case <-ctx.Done():
			t.Fatalf("no WARN line after %d failed join attempts:\n%s", b.joinFailures.Load(), logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if f := b.joinFailures.Load(); f < 3 {
		t.Errorf("joinFailures = %d, want >= 3", f)
	}
	if !strings.Contains(logs.String(), "certificate") {
		t.Errorf("the WARN line does not say why:\n%s", logs.String())
	}
}
