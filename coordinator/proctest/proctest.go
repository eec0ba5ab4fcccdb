package proctest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Proc is a process whose standard output and error go to the files Out
// and Log.
type Proc struct {
	Name     string
	Cmd      *exec.Cmd
	Out, Log string
	Done     <-chan struct{} // closed once the process exited
}

// Start runs bin with args in dir until the test ends, writing its output
// to dir/name.out and dir/name.log. At the end of the test it gets
// SIGTERM, and SIGKILL 10 s later; if the test failed, the tail of its log
// is logged.
func Start(t testing.TB, bin, dir, name string, args ...string) *Proc {
	t.Helper()
	done := make(chan struct{})
	p := &Proc{Name: name, Out: filepath.Join(dir, name+".out"), Log: filepath.Join(dir, name+".log"), Done: done}
	o, err := os.Create(p.Out)
	if err != nil {
		t.Fatal(err)
	}
	l, err := os.Create(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	p.Cmd = exec.Command(bin, args...)
	p.Cmd.Dir = dir
	p.Cmd.Stdout, p.Cmd.Stderr = o, l
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.Cmd.Wait()
		o.Close()
		l.Close()
		close(done)
	}()
	t.Cleanup(func() {
		p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.Cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s log tail:\n%s", p.Name, Tail(Read(p.Log), 4000))
		}
	})
	return p
}

// Read returns a file's contents so far ("" if it cannot be read).
func Read(file string) string {
	b, _ := os.ReadFile(file)
	return string(b)
}

// Tail returns the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// WaitFor polls cond every 100 ms until it holds, failing the test when
// ctx ends first.
func WaitFor(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
