package coordinator

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// A data directory belongs to one node: a second process on it is told the
// directory is in use, and a node with another id is refused.
func TestDataDirClaimed(t *testing.T) {
	dir := t.TempDir()
	open := func(id string) (*Node, error) {
		_, tt := raft.NewInmemTransport(raft.ServerAddress("raft-" + id))
		return New(Config{ID: id, DataDir: dir, Transport: tt, Bootstrap: true, Training: testTraining(), Logger: testLogger(t)})
	}
	a, err := open("n0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open("n0"); !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), dir) {
		t.Errorf("a second node on %s: %v, want %v naming the directory", dir, err, ErrDataDirInUse)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := open("n1"); err == nil || !strings.Contains(err.Error(), `holds the state of node "n0", not "n1"`) {
		t.Errorf("node n1 on n0's data directory: %v, want a refusal", err)
	}
	b, err := open("n0")
	if err != nil {
		t.Fatalf("n0 again on its own data directory: %v", err)
	}
	b.Close()
}
