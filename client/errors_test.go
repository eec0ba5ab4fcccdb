package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fedrec/fedrec/coordinator/pki"
	"github.com/fedrec/fedrec/coordinator/wire"
)

// Every condition an app branches on matches a client sentinel with
// errors.Is, and the cluster's errors keep their wire code.
func TestSentinels(t *testing.T) {
	refused := classify(fmt.Errorf("client: check in: %w", wire.Errorf(wire.CodeUnauthenticated, "revoked")))
	if !errors.Is(refused, ErrUnauthenticated) || wire.CodeOf(refused) != wire.CodeUnauthenticated {
		t.Errorf("classify(unauthenticated) = %v, want ErrUnauthenticated keeping its code", refused)
	}
	if err := classify(wire.Errorf(wire.CodeForbidden, "not your ID")); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("classify(forbidden) = %v, want ErrUnauthenticated", err)
	}
	if err := classify(wire.Errorf(wire.CodeUnavailable, "no model yet")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("classify(unavailable) = %v, want ErrUnavailable", err)
	}
	if err := classify(wire.Errorf(wire.CodeNoRound, "x")); errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnauthenticated) {
		t.Errorf("classify(no round) = %v, want no sentinel", err)
	}

	cfg, _ := testConfig(t)
	cfg.Key = cfg.Key[:5]
	if _, err := New(cfg); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("New with a short key = %v, want ErrInvalidArgument", err)
	}
	cfg, _ = testConfig(t)
	cfg.Policy.Delta = 2
	if _, err := New(cfg); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("New with δ = 2 = %v, want ErrInvalidArgument", err)
	}
	if _, err := NewDialer(nil, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("NewDialer(nil) = %v, want ErrInvalidArgument", err)
	}

	ca, _ := pki.NewCA("test", time.Hour)
	dev, err := ca.IssueDevice("device-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := NewDialer([]string{"127.0.0.1:1"}, DeviceTLS(ca.Pool(), dev))
	if _, err := NewNetwork(NetworkConfig{ClientID: "device-2", Dialer: d, Items: itemIDs(3)}); !errors.Is(err, ErrClientIDMismatch) {
		t.Errorf("NewNetwork with another device's ID = %v, want ErrClientIDMismatch", err)
	}
	if _, err := NewNetwork(NetworkConfig{ClientID: "device-1", Dialer: d}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("NewNetwork without a catalogue = %v, want ErrInvalidArgument", err)
	}
}

// An error about an item ID quotes a bounded prefix of it, not the whole.
func TestErrorQuotesBoundedItemID(t *testing.T) {
	cfg, _ := testConfig(t)
	c := open(t, cfg)
	huge := strings.Repeat("x", 1<<20)
	err := c.Record(context.Background(), Interaction{Item: huge, Kind: View})
	if !errors.Is(err, ErrInvalidInteraction) {
		t.Fatalf("Record(1 MiB item ID) = %v, want ErrInvalidInteraction", err)
	}
	if n := len(err.Error()); n > 300 {
		t.Errorf("Record(1 MiB item ID) error of %d bytes, want a short one", n)
	}
	if !strings.Contains(err.Error(), "1048576 bytes") {
		t.Errorf("Record(1 MiB item ID) = %v, want it to say the ID's length", err)
	}
}

// A second Client on the same directory, in this process or another, is
// refused with ErrLocked until the first closes.
func TestDirectoryLock(t *testing.T) {
	cfg, _ := testConfig(t)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c2, err := New(cfg); !errors.Is(err, ErrLocked) {
		if err == nil {
			c2.Close()
		}
		t.Fatalf("second New on the same directory = %v, want ErrLocked", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, err := New(cfg)
	if err != nil {
		t.Fatalf("New after the first Client closed = %v", err)
	}
	c2.Close()
}

// The lock holds against another process: the test binary run again as a
// child opens the directory the parent holds.
func TestDirectoryLockAcrossProcesses(t *testing.T) {
	if dir := os.Getenv("FEDREC_TEST_LOCK_DIR"); dir != "" {
		_, err := New(Config{Dir: dir, Key: testKey(1)})
		if errors.Is(err, ErrLocked) {
			os.Exit(3)
		}
		os.Exit(4)
	}
	cfg, _ := testConfig(t)
	c := open(t, cfg)
	_ = c
	cmd := exec.Command(os.Args[0], "-test.run=^TestDirectoryLockAcrossProcesses$")
	cmd.Env = append(os.Environ(), "FEDREC_TEST_LOCK_DIR="+cfg.Dir)
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("another process's New on a held directory: %v, want ErrLocked (exit 3)", err)
	}
}
