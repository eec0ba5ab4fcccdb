//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package client

import (
	"fmt"
	"path/filepath"
	"sync"
)

// dirLock, where flock is not available, locks a directory against other
// Clients of this process only. In a browser it locks a database name
// against other Clients of the page, and through the Web Locks API against
// the pages of the same site in other tabs (pageLock).
type dirLock struct {
	dir    string
	unpage func() // releases pageLock's lock
}

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
	unpage, err := pageLock(abs)
	if err != nil {
		locked.Delete(abs)
		return nil, err
	}
	return &dirLock{dir: abs, unpage: unpage}, nil
}

func (l *dirLock) unlock() error {
	if l != nil && l.dir != "" {
		l.unpage()
		locked.Delete(l.dir)
		l.dir = ""
	}
	return nil
}
