package coordinator

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// The read-only token reads what monitoring needs and changes nothing; the
// operator token does both.
func TestAdminReadOnlyToken(t *testing.T) {
	c := newAdminCluster(t, 1, testTraining())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	l := c.leader(ctx)
	for _, tt := range []struct {
		method, path string
		read         int // the read-only token's answer
	}{
		{"GET", "/metrics", http.StatusOK},
		{"GET", "/v1/status", http.StatusOK},
		{"GET", "/v1/rounds", http.StatusOK},
		{"GET", "/v1/model", http.StatusOK},
		{"GET", "/v1/cluster", http.StatusOK},
		{"GET", "/v1/backup", http.StatusForbidden},
		{"POST", "/v1/cluster/join?id=x&raft_addr=127.0.0.1:1", http.StatusForbidden},
		{"POST", "/v1/cluster/remove?id=nobody", http.StatusForbidden},
		{"POST", "/v1/cluster/transfer-leadership", http.StatusForbidden},
	} {
		if code, body := c.do(l, tt.method, tt.path, testReadToken); code != tt.read {
			t.Errorf("%s %s with the read-only token = %d %s, want %d", tt.method, tt.path, code, body, tt.read)
		}
		if code, _ := c.do(l, tt.method, tt.path, testReadToken+"x"); code != http.StatusUnauthorized {
			t.Errorf("%s %s with a wrong token = %d, want 401", tt.method, tt.path, code)
		}
	}
	// The operator token still reads and changes (a no-op removal).
	if code, body := c.do(l, "POST", "/v1/cluster/remove?id=nobody", testToken); code != http.StatusOK {
		t.Errorf("remove with the operator token = %d %s, want 200", code, body)
	}
	if code, _ := c.do(l, "GET", "/v1/status", testToken); code != http.StatusOK {
		t.Errorf("status with the operator token = %d, want 200", code)
	}

	// The two tokens must differ.
	cfg := l.cfg
	cfg.ReadToken = cfg.AdminToken
	if err := cfg.validate(); err == nil {
		t.Error("a read-only token equal to the operator token was accepted")
	}
}
