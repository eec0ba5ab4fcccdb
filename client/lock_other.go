//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package client

import (
	"fmt"
	"path/filepath"
	"sync"
)

// dirLock, where flock is not available, locks a directory against other
// Clients of this process only. In a browser it locks a database name
// against other Clients of the page: pages in other tabs are not kept out.
type dirLock struct{ dir string }

var locked sync.Map // absolute directory (database name) → struct{}

func lockDir(dir string) (*dirLock, error) {
	abs := dir // a browser has no working directory
	if !browser {
		var err error
		if abs, err = filepath.Abs(dir); err != nil {
			return nil, fmt.Errorf("client: lock %s: %w", dir, err)
		}
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
