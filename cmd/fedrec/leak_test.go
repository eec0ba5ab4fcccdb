package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// Every test's goroutines end with it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(withBinary{m}) }

// withBinary gives the tests that run fedrec as separate processes one
// binary, built on first use and removed after the last test.
type withBinary struct{ m *testing.M }

var built struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

func (w withBinary) Run() int {
	code := w.m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	return code
}

// fedrecBinary returns the path of the fedrec binary built from this
// package.
func fedrecBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "fedrec-bin-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "fedrec")
		built.out, built.err = exec.Command("go", "build", "-o", built.path, ".").CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("go build: %v\n%s", built.err, built.out)
	}
	return built.path
}
