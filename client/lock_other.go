//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || (js && wasm))

package client

import (
	"fmt"
	"path/filepath"
	"sync"
)

// dirLock, where flock is not available, locks a directory against other
// Clients of this process only.
type dirLock struct{ dir string }

var locked sync.Map // absolute directory → struct{}

func lockDir(dir string) (*dirLock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("client: lock %s: %w", dir, err)
	}
	if _, busy := locked.LoadOrStore(abs, struct{}{}); busy {
		return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
	}
	return &dirLock{dir: abs}, nil
}

func (l *dirLock) unlock() error {
	if l != nil && l.dir != "" {
		locked.Delete(l.dir)
		l.dir = ""
	}
	return nil
}
